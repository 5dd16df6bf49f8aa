"""PoseSDF: one latent code, a shape SDF and nine joint-sphere SDFs (seed 000, section III).

Input of every query is `[z, p, Φ(p)]`: the shape's latent code, the point in
the canonical normalised frame and its Fourier encoding. An encoder maps it
to a feature that is concatenated with the input again and fed to two
decoders. The paper gives neither layer counts nor the exchange pattern;
ours, chosen to match its 256-wide MLPs:

- encoder: `encoder_layers` linear layers (2);
- shape decoder (1 output) and pose decoder (9 outputs): `decoder_layers`
  hidden layers each (5) plus a linear output layer;
- feature exchange: each of the first `exchange_layers` (2) hidden layers of
  one decoder also reads the previous hidden feature of the other decoder
  (`h_s' = act(W_s [h_s, h_p])`, `h_p' = act(W_p [h_p, h_s])`), so gradients
  of the shape loss reach the pose branch and the pose branch shapes the
  latent code the shape loss optimises at inference. `exchange_layers=0`
  is the "w/o exchange" ablation and `encoder_layers=0` the "w/o encoder" one.
- the output activation is a LeakyReLU instead of DeepSDF's tanh, as the
  paper says; its negative slope (0.2) lets interior (negative) distances
  through with a usable gradient.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

N_JOINTS = 9


@dataclass
class PoseSDFConfig:
    latent_size: int = 64
    width: int = 256
    encoder_layers: int = 2
    decoder_layers: int = 5
    exchange_layers: int = 2
    fourier_frequencies: int = 3          # 3 axes x 3 frequencies x (sin, cos) = 18 dims
    pose_decoder: bool = True             # False: a shape-only DeepSDF-like network
    hidden_slope: float = 0.01
    output_slope: float = 0.2
    sphere_radius: float = 0.05           # normalised units

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PoseSDFConfig":
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


class FourierEncoding(nn.Module):
    """Φ(p) = [sin(2π ω_m·p), cos(2π ω_m·p)] with axis-aligned ω = 2^k e_axis (eq. 3).

    (..., 3) -> (..., 6 * frequencies)
    """

    def __init__(self, frequencies: int = 3):
        super().__init__()
        omega = torch.cat([(2.0 ** k) * torch.eye(3) for k in range(frequencies)])   # (3F, 3)
        self.register_buffer("omega", omega, persistent=False)

    @property
    def out_dim(self) -> int:
        return 2 * self.omega.shape[0]

    def forward(self, p: torch.Tensor) -> torch.Tensor:
        phase = 2 * math.pi * p @ self.omega.T
        return torch.cat([torch.sin(phase), torch.cos(phase)], dim=-1)


def _mlp(in_dim: int, width: int, layers: int) -> nn.ModuleList:
    return nn.ModuleList(nn.Linear(in_dim if i == 0 else width, width) for i in range(layers))


class PoseSDF(nn.Module):
    """f(z, p) -> (shape SDF, nine sphere SDFs).

    forward(z: (B, L) or (B, N, L), p: (B, N, 3)) -> shape (B, N), pose (B, N, 9) or None
    """

    def __init__(self, config: PoseSDFConfig | None = None):
        super().__init__()
        self.config = c = config or PoseSDFConfig()
        self.fourier = FourierEncoding(c.fourier_frequencies)
        in_dim = c.latent_size + 3 + self.fourier.out_dim
        self.encoder = _mlp(in_dim, c.width, c.encoder_layers)
        dec_in = in_dim + (c.width if c.encoder_layers else 0)
        self.shape_layers = self._decoder(dec_in)
        self.shape_out = nn.Linear(c.width, 1)
        if c.pose_decoder:
            self.pose_layers = self._decoder(dec_in)
            self.pose_out = nn.Linear(c.width, N_JOINTS)

    def _decoder(self, dec_in: int) -> nn.ModuleList:
        c = self.config
        layers = nn.ModuleList()
        for i in range(c.decoder_layers):
            exchanged = c.pose_decoder and 0 < i <= c.exchange_layers
            src = dec_in if i == 0 else c.width * (2 if exchanged else 1)
            layers.append(nn.Linear(src, c.width))
        return layers

    def forward(self, z: torch.Tensor, p: torch.Tensor,
                with_pose: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """with_pose=False returns (shape, None) and skips the pose layers the shape
        output does not read (those after the exchange): latent optimisation and
        meshing only need the shape field, and this is a third less work."""
        shape, pose, _ = self.decode(z, p, with_pose)
        return shape, pose

    def decode(self, z: torch.Tensor, p: torch.Tensor, with_pose: bool = True
               ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """`forward` keeping the last hidden features: (shape (B, N), pose (B, N, 9) or None,
        hidden (B, N, W), or (B, N, 2 W) [shape, pose] with the pose decoder and with_pose)."""
        c = self.config
        act = lambda t: nn.functional.leaky_relu(t, c.hidden_slope)  # noqa: E731
        points = torch.cat([p, self.fourier(p)], dim=-1)
        if z.dim() == 2:
            # One code per shape: its share of the first layers is the same for every
            # point, so it is projected once instead of once per point.
            first = lambda layer, before=None: _per_shape_code_linear(layer, z, points, before)  # noqa: E731
        else:
            x = torch.cat([z, points], dim=-1)
            first = lambda layer, before=None: layer(x if before is None else torch.cat([before, x], -1))  # noqa: E731
        h = None
        for i, layer in enumerate(self.encoder):
            h = act(first(layer) if i == 0 else layer(h))
        if not c.encoder_layers:
            h = None
        hs = act(first(self.shape_layers[0], h))
        if not c.pose_decoder:
            for layer in self.shape_layers[1:]:
                hs = act(layer(hs))
            return nn.functional.leaky_relu(self.shape_out(hs), c.output_slope)[..., 0], None, hs
        hp = act(first(self.pose_layers[0], h))
        for i in range(1, c.decoder_layers):
            if i <= c.exchange_layers:
                hs_next = act(self.shape_layers[i](torch.cat([hs, hp], -1)))
                if with_pose or i < c.exchange_layers:
                    hp = act(self.pose_layers[i](torch.cat([hp, hs], -1)))
                hs = hs_next
            else:
                hs = act(self.shape_layers[i](hs))
                if with_pose:
                    hp = act(self.pose_layers[i](hp))
        shape = nn.functional.leaky_relu(self.shape_out(hs), c.output_slope)[..., 0]
        if not with_pose:
            return shape, None, hs
        pose = nn.functional.leaky_relu(self.pose_out(hp), c.output_slope)
        return shape, pose, torch.cat([hs, hp], -1)


def _per_shape_code_linear(layer: nn.Linear, z: torch.Tensor, points: torch.Tensor,
                           before: torch.Tensor | None = None) -> torch.Tensor:
    """layer(cat([before, z, points])) with z (B, L) one code per shape, points (B, N, D),
    before (B, N, W) or None -> (B, N, out), without repeating z for every point."""
    w = layer.weight
    start = 0 if before is None else before.shape[-1]
    w_code = w[:, start:start + z.shape[-1]]
    w_rest = torch.cat([w[:, :start], w[:, start + z.shape[-1]:]], dim=1)
    rest = points if before is None else torch.cat([before, points], dim=-1)
    return rest @ w_rest.T + (z @ w_code.T + layer.bias)[:, None, :]
