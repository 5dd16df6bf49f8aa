"""PointNet++ (Qi et al. 2017) set abstraction in plain torch, CPU and CUDA alike.

Shared by RotNet and the PN++ joint-regression baseline. Sampling and
grouping follow the reference CUDA ops: farthest point sampling from a
given first point, ball query taking the first `nsample` points (in index
order) within the radius and padding with the first one found.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn


def farthest_point_sample(xyz: torch.Tensor, npoint: int, start: torch.Tensor | None = None) -> torch.Tensor:
    """Indices (B, npoint) of `npoint` mutually far points of xyz (B, N, 3), starting at `start` (B,) or 0."""
    b, n, _ = xyz.shape
    if b == 1 and xyz.device.type == "cpu":
        # One cloud at inference: numpy's per-call overhead is a fraction of torch's in this
        # sequential loop (256 of 1,024 points: 1.7 ms against 7.2 ms in torch on one thread).
        return torch.from_numpy(_farthest_point_sample_numpy(xyz[0].detach().numpy(), npoint,
                                                             0 if start is None else int(start[0])))[None]
    idx = torch.zeros(b, npoint, dtype=torch.long, device=xyz.device)
    dist = torch.full((b, n), float("inf"), device=xyz.device, dtype=xyz.dtype)
    current = torch.zeros(b, dtype=torch.long, device=xyz.device) if start is None else start.to(xyz.device)
    rows = torch.arange(b, device=xyz.device)
    for i in range(npoint):
        idx[:, i] = current
        d = (xyz - xyz[rows, current][:, None]).pow(2).sum(-1)
        dist = torch.minimum(dist, d)
        current = dist.argmax(-1)
    return idx


def _farthest_point_sample_numpy(xyz: np.ndarray, npoint: int, start: int) -> np.ndarray:
    # Per-coordinate columns and in-place ufuncs: a row-wise sum over three columns costs
    # several times more than these elementwise passes.
    x, y, z = (np.ascontiguousarray(xyz[:, i]) for i in range(3))
    idx = np.empty(npoint, np.int64)
    dist = np.full(len(xyz), np.inf, xyz.dtype)
    d, t = np.empty_like(dist), np.empty_like(dist)
    current = start
    for i in range(npoint):
        idx[i] = current
        np.subtract(x, x[current], out=d)
        np.multiply(d, d, out=d)
        for column in (y, z):
            np.subtract(column, column[current], out=t)
            np.multiply(t, t, out=t)
            d += t
        np.minimum(dist, d, out=dist)
        current = int(dist.argmax())
    return idx


def ball_query(radius: float, nsample: int, xyz: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """For each centre (B, S, 3), the first `nsample` indices of xyz (B, N, 3) within
    `radius`, padded with the first found: (B, S, nsample). A centre with no
    neighbour gets its nearest point."""
    n = xyz.shape[1]
    d2 = torch.cdist(centres, xyz).pow(2)                                     # (B, S, N)
    order = torch.arange(n, device=xyz.device).expand_as(d2)
    key = torch.where(d2 <= radius * radius, order, torch.full_like(order, n))
    first = key.topk(min(nsample, n), dim=-1, largest=False).values.sort(-1).values   # (B, S, k)
    if first.shape[-1] < nsample:
        first = torch.cat([first, first[..., :1].expand(*first.shape[:-1], nsample - first.shape[-1])], -1)
    nearest = d2.argmin(-1, keepdim=True)
    head = torch.where(first[..., :1] == n, nearest, first[..., :1])
    return torch.where(first == n, head, first)


def gather(points: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """points (B, N, C), idx (B, ...) -> (B, ..., C)."""
    b = points.shape[0]
    flat = idx.reshape(b, -1)
    out = torch.gather(points, 1, flat[..., None].expand(-1, -1, points.shape[-1]))
    return out.reshape(*idx.shape, points.shape[-1])


def shared_mlp(sizes: list[int]) -> nn.Sequential:
    """Linear, LayerNorm and ReLU per layer, `sizes[0]` channels in, `sizes[-1]` out, applied to
    every point (or group member) alike."""
    layers = []
    for c_in, c_out in zip(sizes[:-1], sizes[1:]):
        layers += [nn.Linear(c_in, c_out), nn.LayerNorm(c_out), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


class SetAbstraction(nn.Module):
    """Sample `npoint` centres, group `nsample` neighbours within `radius`, shared MLP, max-pool.

    forward(xyz (B, N, 3), features (B, N, C) or None) -> (centres (B, S, 3), features (B, S, mlp[-1]))
    `npoint=None` groups all points around the origin (the global layer).
    `same_distances=True` says that the batch members are rigid motions of one
    cloud (test-time turns): sampling and grouping only read distances, so they
    are computed on the first member and shared.
    """

    def __init__(self, npoint: int | None, radius: float, nsample: int, in_channels: int, mlp: list[int]):
        super().__init__()
        self.npoint, self.radius, self.nsample = npoint, radius, nsample
        self.mlp = shared_mlp([in_channels + 3, *mlp])

    def forward(self, xyz: torch.Tensor, features: torch.Tensor | None,
                same_distances: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        if self.npoint is None:
            centres = xyz.new_zeros(xyz.shape[0], 1, 3)
            local = xyz[:, None]                                          # (B, 1, N, 3)
            grouped = features[:, None] if features is not None else None
        else:
            first = xyz[:1] if same_distances else xyz
            sampled = farthest_point_sample(first, self.npoint)
            idx = ball_query(self.radius, self.nsample, first, gather(first, sampled))
            if same_distances:
                sampled, idx = sampled.expand(len(xyz), -1), idx.expand(len(xyz), -1, -1)
            centres = gather(xyz, sampled)
            local = (gather(xyz, idx) - centres[:, :, None]) / self.radius
            grouped = gather(features, idx) if features is not None else None
        x = local if grouped is None else torch.cat([local, grouped], -1)
        return centres, self.mlp(x).amax(dim=2)


@dataclass
class PointNet2Config:
    points: int = 1024                    # input points (resampled)
    sa1: tuple = (256, 0.1, 32, (32, 32, 64))
    sa2: tuple = (64, 0.25, 32, (64, 64, 128))
    sa3: tuple = (None, 0.0, 0, (128, 256, 512))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PointNet2Config":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()
                      if k in cls.__dataclass_fields__})


class PointNet2Encoder(nn.Module):
    """Three set-abstraction levels to a global feature: (B, N, 3) -> (B, out_dim).
    `same_distances`: see `SetAbstraction`."""

    def __init__(self, config: PointNet2Config | None = None):
        super().__init__()
        self.config = c = config or PointNet2Config()
        chans = 0
        levels = []
        for npoint, radius, nsample, mlp in (c.sa1, c.sa2, c.sa3):
            levels.append(SetAbstraction(npoint, radius, nsample, chans, list(mlp)))
            chans = mlp[-1]
        self.levels = nn.ModuleList(levels)
        self.out_dim = chans

    def forward(self, xyz: torch.Tensor, same_distances: bool = False) -> torch.Tensor:
        feats = None
        for level in self.levels:
            xyz, feats = level(xyz, feats, same_distances)
        return feats[:, 0]


class PointNet2Regressor(nn.Module):
    """The PN++ baseline: a canonical leg cloud to nine joints. (B, N, 3) -> (B, 9, 3)."""

    def __init__(self, config: PointNet2Config | None = None):
        super().__init__()
        self.encoder = PointNet2Encoder(config)
        self.head = nn.Sequential(nn.Linear(self.encoder.out_dim, 256), nn.ReLU(), nn.Linear(256, 27))

    @property
    def config(self) -> PointNet2Config:
        return self.encoder.config

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(xyz)).reshape(-1, 9, 3)
