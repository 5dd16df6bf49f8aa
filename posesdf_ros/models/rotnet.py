"""RotNet (PoseSDF paper, section III-B): the subject's heading from a lower-limb cloud.

Input: a segmented leg cloud in the gravity frame (z up, floor at z = 0),
centred horizontally on its own mean (`centre_cloud`), so only the heading
about the vertical axis is left to find. Output: the heading `yaw` (rad),
the direction the subject faces, as in `inference.canonical`.

Output encoding: `bins` angle classes over the full circle plus a residual
per class, not a continuous (cos, sin). Legs are nearly symmetric front to
back: which way the knees bend and the feet point is a small cue, easily
lost to noise or a partial view, so the posterior over the heading is often
bimodal, about 180 deg apart. A (cos, sin) regressor trained with an L2 or
cosine loss answers such a case with the mean of the two modes, a heading
90 deg off both, with a short vector. Classes keep the modes apart: the
arg-max picks one of them, the residual refines it within its bin, and the
probability mass around the arg-max is an honest confidence (about 0.5 for
a coin flip between front and back). Soft (circular Gaussian) class targets
tell the network that neighbouring bins are near misses.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .pointnet2 import PointNet2Config, PointNet2Encoder


@dataclass
class RotNetConfig:
    encoder: PointNet2Config = field(default_factory=lambda: PointNet2Config(
        points=512, sa1=(128, 0.08, 32, (32, 32, 64)), sa2=(32, 0.2, 32, (64, 64, 128)),
        sa3=(None, 0.0, 0, (128, 256))))                       # radii in metres
    bins: int = 24
    hidden: int = 128
    dropout: float = 0.2

    @property
    def bin_width(self) -> float:
        return 2 * math.pi / self.bins

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "RotNetConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["encoder"] = PointNet2Config.from_dict(d.get("encoder", {}))
        return cls(**d)


def centre_cloud(points: torch.Tensor) -> torch.Tensor:
    """(B, N, 3) or (N, 3) gravity frame -> the same, horizontal mean moved to x = y = 0."""
    shift = points[..., :2].mean(dim=-2, keepdim=True)
    return torch.cat([points[..., :2] - shift, points[..., 2:]], dim=-1)


class RotNet(nn.Module):
    """PointNet++ encoder + heading head.

    forward(xyz (B, N, 3), centred) -> (logits (B, bins), residual (B, bins)):
    residual[k] is the heading's offset from bin k's centre k * bin_width,
    in bin widths. `same_distances=True` for a batch of turns of one cloud
    (shares the encoder's sampling and grouping).
    """

    def __init__(self, config: RotNetConfig | None = None):
        super().__init__()
        self.config = c = config or RotNetConfig()
        self.encoder = PointNet2Encoder(c.encoder)
        self.head = nn.Sequential(nn.Linear(self.encoder.out_dim, c.hidden), nn.LayerNorm(c.hidden), nn.ReLU(),
                                  nn.Dropout(c.dropout), nn.Linear(c.hidden, 2 * c.bins))

    def forward(self, xyz: torch.Tensor, same_distances: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.encoder(xyz, same_distances))
        return out[:, :self.config.bins], out[:, self.config.bins:]


def heading_targets(yaw: torch.Tensor, bins: int, sigma_bins: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """yaw (B,) -> (soft class targets (B, bins) summing to 1, residuals (B, bins) in bin widths)."""
    width = 2 * math.pi / bins
    centres = torch.arange(bins, device=yaw.device, dtype=yaw.dtype) * width
    offset = torch.remainder(yaw[:, None] - centres + math.pi, 2 * math.pi) - math.pi   # (B, bins), wrapped
    residual = offset / width
    soft = torch.softmax(-0.5 * (residual / sigma_bins) ** 2, dim=-1)
    return soft, residual


def heading_loss(logits: torch.Tensor, residual: torch.Tensor, yaw: torch.Tensor,
                 sigma_bins: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(class loss, residual loss) for predictions (B, bins) and true headings yaw (B,).

    The residual is trained on the bins within 1.5 widths of the truth, the
    ones an arg-max may land on."""
    soft, target = heading_targets(yaw, logits.shape[-1], sigma_bins)
    cls = -(soft * torch.log_softmax(logits, -1)).sum(-1).mean()
    near = (target.abs() < 1.5).float()
    reg = (nn.functional.smooth_l1_loss(residual, target, reduction="none", beta=0.1) * near).sum() / near.sum()
    return cls, reg


def decode_heading(logits: torch.Tensor, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, bins) predictions -> (yaw (B,) in (-pi, pi], confidence (B,) in 0..1).

    Confidence: the probability mass on the arg-max bin and its two
    neighbours, that is within about one bin width of the answer."""
    bins = logits.shape[-1]
    prob = torch.softmax(logits, -1)
    k = prob.argmax(-1)
    width = 2 * math.pi / bins
    yaw = (k.to(residual.dtype) + residual.gather(-1, k[:, None])[:, 0]) * width
    yaw = torch.atan2(torch.sin(yaw), torch.cos(yaw))
    near = torch.stack([(k + d) % bins for d in (-1, 0, 1)], -1)
    return yaw, prob.gather(-1, near).sum(-1)
