"""Joint centres from the nine sphere SDFs of the pose decoder.

The paper only says "the centre of each sphere". Two estimators, both
exact on a perfect sphere field s_j(q) = |q - c_j| - r:
- `votes`: each query point q votes c = q - (s_j(q) + r) ∇s_j / |∇s_j|
  (it walks down the distance field to the centre); the votes of the
  queries nearest to the sphere are averaged with a robust (trimmed) mean.
- `lsq`: a linear least-squares trilateration: |q - c|² = (s_j(q) + r)² is
  linear in (c, |c|²) over the queries.
Both run in two rounds: queries spread over the shape first, then queries
in a small ball around each first estimate, where the field was trained
most densely (sphere samples within three radii).
"""
from __future__ import annotations

from typing import Callable

import torch

SphereField = Callable[[torch.Tensor], torch.Tensor]   # (N, 3) -> (N, 9)
METHODS = ("votes", "lsq")


def field_gradient(field: SphereField, q: torch.Tensor, h: float = 1e-3) -> tuple[torch.Tensor, torch.Tensor]:
    """Values (N, 9) and central-difference gradients (N, 9, 3), forward passes only."""
    offsets = torch.cat([torch.zeros(1, 3), h * torch.eye(3), -h * torch.eye(3)]).to(q)
    vals = field((q[None] + offsets[:, None]).reshape(-1, 3)).reshape(7, len(q), -1)
    grad = (vals[1:4] - vals[4:7]).permute(1, 2, 0) / (2 * h)
    return vals[0], grad


def _votes(q: torch.Tensor, s: torch.Tensor, g: torch.Tensor, radius: float) -> torch.Tensor:
    """q (N, 3), s (N,), g (N, 3) -> centre (3,): trimmed mean of the votes."""
    unit = g / g.norm(dim=-1, keepdim=True).clamp_min(1e-6)
    v = q - (s + radius)[:, None] * unit
    med = v.median(0).values
    d = (v - med).norm(dim=-1)
    keep = d <= d.quantile(0.75)
    return v[keep].mean(0)


def _lsq(q: torch.Tensor, s: torch.Tensor, radius: float) -> torch.Tensor:
    """|q|² - d² = 2 q·c - |c|²: solve for (c, k = |c|²) in least squares."""
    d = (s + radius).clamp_min(0)
    A = torch.cat([2 * q, -torch.ones(len(q), 1, dtype=q.dtype, device=q.device)], 1)
    b = (q * q).sum(-1) - d * d
    sol = torch.linalg.lstsq(A.double(), b.double()[:, None]).solution[:, 0]
    return sol[:3].to(q.dtype)


def _centres(field: SphereField, q: torch.Tensor, radius: float, method: str, nearest: int) -> torch.Tensor:
    s, g = field_gradient(field, q) if method == "votes" else (field(q), None)
    out = []
    for j in range(s.shape[1]):
        idx = torch.topk(s[:, j], min(nearest, len(q)), largest=False).indices
        out.append(_votes(q[idx], s[idx, j], g[idx, j], radius) if method == "votes"
                   else _lsq(q[idx], s[idx, j], radius))
    return torch.stack(out)


def sphere_centres(field: SphereField, radius: float, method: str = "votes", coarse_queries: int = 1024,
                   fine_queries: int = 48, fine_radius: float = 0.12, nearest: int = 48,
                   generator: torch.Generator | None = None, device: str | torch.device = "cpu") -> torch.Tensor:
    """The nine sphere centres (9, 3) in normalised units."""
    if method not in METHODS:
        raise ValueError(f"unknown joint method {method!r}; expected one of {METHODS}")
    gen = generator or torch.Generator().manual_seed(0)
    q = _ball(coarse_queries, 1.0, gen).to(device)
    with torch.no_grad():
        coarse = _centres(field, q, radius, method, nearest)
        n_j = len(coarse)
        local = (coarse[:, None] + _ball(n_j * fine_queries, fine_radius, gen).to(device).reshape(n_j, fine_queries, 3))
        s_all, g_all = (field_gradient(field, local.reshape(-1, 3)) if method == "votes"
                        else (field(local.reshape(-1, 3)), None))
        fine = []
        for j in range(n_j):
            rows = slice(j * fine_queries, (j + 1) * fine_queries)
            qj, sj = local[j], s_all[rows, j]
            fine.append(_votes(qj, sj, g_all[rows, j], radius) if method == "votes" else _lsq(qj, sj, radius))
    return torch.stack(fine)


def _ball(n: int, radius: float, gen: torch.Generator) -> torch.Tensor:
    d = torch.randn(n, 3, generator=gen)
    d = d / d.norm(dim=-1, keepdim=True)
    return d * radius * torch.rand(n, 1, generator=gen) ** (1 / 3)
