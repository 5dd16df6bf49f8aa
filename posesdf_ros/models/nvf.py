"""Neural Voting Field head on a frozen PoseSDF (seed 002; Huang et al., CVPR 2023).

For each query point p near the surface, NVF regresses its signed distance
and, per joint j, a 4D vote (w_j, u_j): the weight w = max(R - d, 0) / R of
the point's distance d = |c_j - p| to the joint and the unit direction
u = (c_j - p) / d. A joint is decoded as a weighted mean of
p + R (1 - w) u over selected near-surface points (`inference.nvf`).

Here NVF sits on top of the shipped, frozen PoseSDF: same latent code,
same normalised canonical frame, and the signed distance is PoseSDF's
shape output (the one the latent optimisation fits), so only the votes are
learnt. The head reads the query `[z, p, Φ(p)]` and the last hidden
features of PoseSDF's shape and pose decoders (`posesdf_features`), which
already hold the nine joint-sphere distances linearly.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .posesdf import N_JOINTS, PoseSDF


@dataclass
class NVFConfig:
    # R in normalised units. The training shapes' mean scale is about 1.69 per metre, so
    # 0.25 is about 148 mm; the reference's 80 mm would be about 0.135.
    radius: float = 0.25
    width: int = 128
    layers: int = 3                # hidden layers of the vote MLP
    hidden_slope: float = 0.01

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NVFConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class PoseSDFFeatures:
    """One pass of PoseSDF with its hidden features kept."""
    shape: torch.Tensor      # (B, N) shape SDF
    pose: torch.Tensor       # (B, N, 9) sphere SDFs
    query: torch.Tensor      # (B, N, L + 3 + 18) the input [z, p, Φ(p)]
    hidden: torch.Tensor     # (B, N, 2 W) last hidden features of the shape and pose decoders


def posesdf_features(model: PoseSDF, z: torch.Tensor, p: torch.Tensor) -> PoseSDFFeatures:
    """PoseSDF's pass (`PoseSDF.decode`) with what the vote head reads. z (B, L) or (B, N, L),
    p (B, N, 3); needs the pose decoder."""
    if not model.config.pose_decoder:
        raise ValueError("NVF needs a PoseSDF with its pose decoder")
    shape, pose, hidden = model.decode(z, p)
    codes = z[:, None, :].expand(-1, p.shape[1], -1) if z.dim() == 2 else z
    return PoseSDFFeatures(shape, pose, torch.cat([codes, p, model.fourier(p)], dim=-1), hidden)


class NVFHead(nn.Module):
    """Votes from PoseSDF features: (B, N, ...) -> weights (B, N, 9), directions (B, N, 9, 3).

    The weights are raw regressions of w (trained with smooth L1, not
    squashed, as the reference); the directions are not normalised here.
    """

    def __init__(self, config: NVFConfig, posesdf_config):
        super().__init__()
        self.config = c = config
        in_dim = posesdf_config.latent_size + 3 + 6 * posesdf_config.fourier_frequencies + 2 * posesdf_config.width
        dims = [in_dim] + [c.width] * c.layers
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(c.width, 4 * N_JOINTS)

    def forward(self, query: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """query, hidden: `PoseSDFFeatures.query` and `.hidden` of the same points."""
        h = torch.cat([query, hidden], -1)
        for layer in self.hidden:
            h = nn.functional.leaky_relu(layer(h), self.config.hidden_slope)
        out = self.out(h).unflatten(-1, (N_JOINTS, 4))
        return out[..., 0], out[..., 1:]


def vote_targets(points: torch.Tensor, joints: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode the joints as votes: points (B, N, 3), joints (B, 9, 3) -> w (B, N, 9), u (B, N, 9, 3).

    w = max(R - d, 0) / R, u = (c - p) / d.
    """
    offset = joints[:, None, :, :] - points[:, :, None, :]
    d = offset.norm(dim=-1)
    return (radius - d).clamp_min(0) / radius, offset / d[..., None].clamp_min(1e-9)


def vote_losses(w: torch.Tensor, u: torch.Tensor, w_target: torch.Tensor, u_target: torch.Tensor,
                beta: float = 0.01) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth L1 on the 4D votes (the reference's vote loss): the weight term and the direction
    term, each () and summed over a vote's components, averaged over points and joints."""
    return (nn.functional.smooth_l1_loss(w, w_target, beta=beta),
            3 * nn.functional.smooth_l1_loss(u, u_target, beta=beta))
