"""Pose-NDF for gait: an unsigned distance field on the manifold of plausible lower-limb poses.

After Tiwari et al., "Pose-NDF" (ECCV 2022; seed 003): a pose is K unit
quaternions, one per joint of a kinematic tree; a hierarchical encoder
gives each joint a feature from its own rotation and its parent's
feature (so a joint is read in its ancestors' context), and an MLP maps
the concatenated features to the distance of the pose from the manifold,
whose zero level set is the set of plausible poses.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class PoseNDFConfig:
    """Network sizes. The paper uses 2-layer joint encoders and a 5-layer distance MLP."""

    parents: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5)   # kinematic tree, parents first
    feature_size: int = 16        # per-joint feature
    encoder_width: int = 64
    width: int = 128              # distance MLP
    layers: int = 5

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PoseNDFConfig":
        return cls(**(d | {"parents": tuple(d["parents"])}))


class PoseNDF(nn.Module):
    """f: (S^3)^K -> R+, the distance of a pose from the gait manifold."""

    def __init__(self, config: PoseNDFConfig | None = None):
        super().__init__()
        self.config = c = config or PoseNDFConfig()
        if any(p >= k for k, p in enumerate(c.parents)):
            raise ValueError(f"parents must come before their children: {c.parents}")
        self.encoders = nn.ModuleList(
            nn.Sequential(nn.Linear(4 + (c.feature_size if p >= 0 else 0), c.encoder_width), nn.LeakyReLU(0.01),
                          nn.Linear(c.encoder_width, c.feature_size), nn.LeakyReLU(0.01))
            for p in c.parents)
        dims = [c.feature_size * len(c.parents)] + [c.width] * c.layers
        layers: list[nn.Module] = []
        for a, b in zip(dims[:-1], dims[1:]):
            layers += [nn.Linear(a, b), nn.LeakyReLU(0.01)]
        self.distance = nn.Sequential(*layers, nn.Linear(dims[-1], 1))

    def forward(self, rotations: torch.Tensor) -> torch.Tensor:
        """rotations: (B, K, 4) unit quaternions (x, y, z, w), w >= 0 -> distances (B,)."""
        features: list[torch.Tensor] = []
        for k, parent in enumerate(self.config.parents):
            x = rotations[:, k] if parent < 0 else torch.cat([rotations[:, k], features[parent]], -1)
            features.append(self.encoders[k](x))
        return self.distance(torch.cat(features, -1))[:, 0]


def canonical_hemisphere(q: torch.Tensor) -> torch.Tensor:
    """q and -q are one rotation: the representative with w >= 0. (..., 4) -> (..., 4)."""
    return torch.where(q[..., 3:4] < 0, -q, q)


def distance_loss(predicted: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 between predicted and true distances from the manifold. (B,), (B,) -> ()."""
    return (predicted - target).abs().mean()


def eikonal_loss(gradient: torch.Tensor, target_norm: float = 1.0) -> torch.Tensor:
    """(|grad f| - 1)^2 over off-manifold samples: f grows like a distance. (B, K, 4) -> ()."""
    return ((gradient.flatten(1).norm(dim=-1) - target_norm) ** 2).mean()
