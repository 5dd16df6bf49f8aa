"""Amortised inference for PoseSDF: a leg cloud straight to a latent code, its normalisation
and the nine joints, in one forward pass.

PoseSDF's auto-decoder finds a code by optimisation (`inference.latent`):
accurate, but a cold multi-start fit costs about a second on a CPU. The
encoder (PointNet++, as RotNet) reads the canonical leg points in the
first-guess normalised frame and predicts what that optimisation would
find: the code z and the similarity (shift, log scale) that refines the
first guess. The joint head reads the code alone and gives the nine
joints in the code's own normalised frame, where PoseSDF's sphere fields
put them, so it follows the code through any refinement steps that come
after the encoder (the `realtime` profile runs a few).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import torch
from torch import nn

from .pointnet2 import PointNet2Config, PointNet2Encoder
from .posesdf import N_JOINTS


@dataclass
class LatentEncoderConfig:
    encoder: PointNet2Config = field(default_factory=lambda: PointNet2Config(
        points=256, sa1=(64, 0.1, 16, (32, 32, 64)), sa2=(16, 0.25, 16, (64, 64, 128)),
        sa3=(None, 0.0, 0, (128, 256))))                       # radii in normalised units
    latent_size: int = 64
    hidden: int = 256
    joint_hidden: int = 256

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LatentEncoderConfig":
        d = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        d["encoder"] = PointNet2Config.from_dict(d.get("encoder", {}))
        return cls(**d)


class LatentEncoder(nn.Module):
    """forward(points (B, N, 3), first-guess normalised) -> z (B, L), shift (B, 3), log_scale (B,)

    The code is predicted as an offset from `latent_mean` in units of `latent_std`
    (buffers set from the PoseSDF weights), so the output layer starts near the
    mean code whatever the code scale. The similarity follows `inference.latent.LatentFit`:
    p_code = (p_first_guess - shift) * exp(log_scale).
    """

    def __init__(self, config: LatentEncoderConfig | None = None):
        super().__init__()
        self.config = c = config or LatentEncoderConfig()
        self.backbone = PointNet2Encoder(c.encoder)
        self.head = nn.Sequential(nn.Linear(self.backbone.out_dim, c.hidden), nn.ReLU(),
                                  nn.Linear(c.hidden, c.latent_size + 4))
        self.register_buffer("latent_mean", torch.zeros(c.latent_size))
        self.register_buffer("latent_std", torch.ones(()))

    def forward(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.head(self.backbone(points))
        z = self.latent_mean + self.latent_std * out[:, :-4]
        return z, 0.1 * out[:, -4:-1], 0.1 * out[:, -1]


class JointHead(nn.Module):
    """forward(z (B, L)) -> joints (B, 9, 3) in the code's normalised frame (JOINT_NAMES order)."""

    def __init__(self, config: LatentEncoderConfig | None = None):
        super().__init__()
        c = config or LatentEncoderConfig()
        self.net = nn.Sequential(nn.Linear(c.latent_size, c.joint_hidden), nn.ReLU(),
                                 nn.Linear(c.joint_hidden, c.joint_hidden), nn.ReLU(),
                                 nn.Linear(c.joint_hidden, N_JOINTS * 3))
        self.register_buffer("latent_mean", torch.zeros(c.latent_size))
        self.register_buffer("latent_std", torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net((z - self.latent_mean) / self.latent_std).reshape(-1, N_JOINTS, 3)


class AmortisedFit(nn.Module):
    """The encoder and the joint head, saved and loaded together (encoder.pt / encoder.json)."""

    def __init__(self, config: LatentEncoderConfig | None = None):
        super().__init__()
        self.config = config or LatentEncoderConfig()
        self.encoder = LatentEncoder(self.config)
        self.joints = JointHead(self.config)

    def set_code_statistics(self, mean: torch.Tensor, std: float) -> None:
        """The PoseSDF codes' mean (L,) and spread, which both parts are scaled by."""
        for part in (self.encoder, self.joints):
            part.latent_mean.copy_(mean)
            part.latent_std.fill_(std)
