"""LegSegNet: which points of a person's lower body lie on the lower limbs.

`perception.segment_legs` finds the person and guesses the pelvis height;
a fixed crop plane then keeps too much (hands hanging beside the thighs,
the lower torso when the guess is high) or too little (when it is low).
This PointNet++ segmentation network (set abstraction down to a global
feature, then feature propagation back by inverse-distance interpolation
of the three nearest coarse points, as in Qi et al. 2017) labels each
point of the person's window below `pelvis guess + window` instead. Its
input frame is the person's: x, y centred on the window's mean, z the
height above the floor, metres; it is trained under random turns about
the vertical, so the heading does not matter.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .pointnet2 import PointNet2Config, SetAbstraction, gather, shared_mlp

#: Heights are shifted by this much (m) so that the network's inputs are centred on the hips.
HEIGHT_OFFSET_M = 0.7


@dataclass
class LegSegConfig(PointNet2Config):
    """The set abstraction's settings (`PointNet2Config`, radii in metres) and the feature
    propagation's widths."""

    points: int = 1024                         # points the set abstraction reads (resampled)
    sa1: tuple = (256, 0.08, 32, (32, 32, 64))
    sa2: tuple = (64, 0.2, 32, (64, 64, 128))
    sa3: tuple = (None, 0.0, 0, (128, 256))
    fp2: tuple = (128, 128)                    # global + level 2 -> level 2 centres
    fp1: tuple = (128, 64)                     # level 2 + level 1 -> level 1 centres
    fp0: tuple = (64, 32)                      # level 1 + input xyz -> every query point


def interpolate(xyz: torch.Tensor, centres: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """Features (B, S, C) at centres (B, S, 3) carried to xyz (B, N, 3) by inverse-distance
    weights of the three nearest centres: (B, N, C)."""
    d2, idx = torch.cdist(xyz, centres).pow(2).topk(min(3, centres.shape[1]), dim=-1, largest=False)
    w = 1.0 / (d2 + 1e-8)
    w = w / w.sum(-1, keepdim=True)
    return (gather(features, idx) * w[..., None]).sum(2)


class LegSegNet(nn.Module):
    """forward(xyz (B, N, 3)) -> leg logits (B, N) of the resampled window's points."""

    def __init__(self, config: LegSegConfig | None = None):
        super().__init__()
        self.config = c = config or LegSegConfig()
        self.sa1 = SetAbstraction(c.sa1[0], c.sa1[1], c.sa1[2], 0, list(c.sa1[3]))
        self.sa2 = SetAbstraction(c.sa2[0], c.sa2[1], c.sa2[2], c.sa1[3][-1], list(c.sa2[3]))
        self.sa3 = SetAbstraction(None, 0.0, 0, c.sa2[3][-1], list(c.sa3[3]))
        self.fp2 = shared_mlp([c.sa3[3][-1] + c.sa2[3][-1], *c.fp2])
        self.fp1 = shared_mlp([c.fp2[-1] + c.sa1[3][-1], *c.fp1])
        self.fp0 = shared_mlp([c.fp1[-1] + 3, *c.fp0])
        self.head = nn.Linear(c.fp0[-1], 1)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        c1, f1 = self.sa1(xyz, None)
        c2, f2 = self.sa2(c1, f1)
        _, f3 = self.sa3(c2, f2)
        g2 = self.fp2(torch.cat([f3.expand(-1, c2.shape[1], -1), f2], -1))
        g1 = self.fp1(torch.cat([interpolate(c1, c2, g2), f1], -1))
        g0 = self.fp0(torch.cat([interpolate(xyz, c1, g1), xyz], -1))
        return self.head(g0)[..., 0]


def to_network_frame(points: torch.Tensor, height: torch.Tensor, centre_xy: torch.Tensor) -> torch.Tensor:
    """Points (..., N, 3), their heights above the floor (..., N) and the window's centre
    (..., 2) -> network input (..., N, 3)."""
    return torch.cat([points[..., :2] - centre_xy[..., None, :], (height - HEIGHT_OFFSET_M)[..., None]], -1)


def leg_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy of leg logits (B, M) against labels (B, M) in {0, 1}."""
    return nn.functional.binary_cross_entropy_with_logits(logits, labels.float())
