"""Joints by NVF voting: decode the nine joints from the votes of near-surface points.

Each query point p casts, per joint, c = p + R (1 - w) u (u normalised),
which inverts the vote encoding exactly (`models.nvf.vote_targets`) for
points within R of the joint. The query points are the observed points
(on the surface by construction) plus `probes` random points of the unit
ball that the fitted shape puts within `band` of its surface: a partial
view has no points on the far side, and joints far from every observed
point (pelvis, hips, the far foot) are badly voted for without them.
Two selection rules pick the points whose votes count, both ranked by the
predicted weight w (the nearer, the more reliable), and the joint is the
w-weighted mean of their votes:
- `fraction`: the top `keep` share (the reference keeps 50 %) of the
  points that vote for the joint (w > 0);
- `knn`: the K points with the largest w (the predicted K nearest).
A joint no point votes for (every w <= 0) falls back to the K best points.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.nvf import NVFHead, posesdf_features
from ..models.posesdf import PoseSDF

SELECTIONS = ("fraction", "knn")
DEFAULT_PROBES = 2048


@dataclass(frozen=True)
class VoteDecoding:
    rule: str = "knn"
    keep: float = 0.5        # `fraction`: share of the voting points kept
    k: int = 32              # `knn`: points per joint; also the fallback count (chosen on val fits)
    probes: int | None = None  # random points of the unit ball tried as extra queries (0: observed points
                               # only; None: the estimator profile's `vote_probes`, else 2048)
    band: float = 0.04       # a probe is kept when |shape SDF| < band (normalised units)

    def __post_init__(self):
        if self.rule not in SELECTIONS:
            raise ValueError(f"unknown vote selection {self.rule!r}; expected one of {SELECTIONS}")
        if not 0 < self.keep <= 1 or self.k < 1 or (self.probes or 0) < 0 or self.band <= 0:
            raise ValueError(f"vote decoding needs 0 < keep <= 1, k >= 1, probes >= 0 and band > 0, got {self}")


def decode_votes(points: torch.Tensor, w: torch.Tensor, u: torch.Tensor, radius: float,
                 decoding: VoteDecoding = VoteDecoding()) -> torch.Tensor:
    """points (N, 3), w (N, 9), u (N, 9, 3) -> joints (9, 3), same units as `points` and `radius`."""
    unit = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    w = w.clamp(0.0, 1.0)
    votes = points[:, None, :] + (radius * (1 - w))[..., None] * unit        # (N, 9, 3)
    n = len(points)
    order = torch.argsort(w, dim=0, descending=True)                         # (N, 9)
    if decoding.rule == "knn":
        count = torch.full((w.shape[1],), min(decoding.k, n), device=w.device)
    else:
        voting = (w > 0).sum(0)
        count = torch.where(voting > 0, (decoding.keep * voting).ceil().long(),
                            torch.full_like(voting, min(decoding.k, n)))
    rank = torch.empty_like(order)
    rank.scatter_(0, order, torch.arange(n, device=w.device)[:, None].expand_as(order))
    chosen = rank < count[None]                                              # (N, 9)
    weight = torch.where(chosen, w.clamp_min(1e-6), torch.zeros_like(w))
    return (weight[..., None] * votes).sum(0) / weight.sum(0)[:, None]


def nvf_joints(model: PoseSDF, head: NVFHead, z: torch.Tensor, points: torch.Tensor,
               decoding: VoteDecoding = VoteDecoding(), generator: torch.Generator | None = None) -> torch.Tensor:
    """The nine joints (9, 3) of code z (L,) from the votes of `points` (N, 3) and of the
    near-surface probes, normalised frame. A shape-only pass of PoseSDF over the probes picks
    the near-surface ones, then one full pass and one pass of the head over the points and
    those probes: no search."""
    count = DEFAULT_PROBES if decoding.probes is None else decoding.probes
    probes = near_surface_probes(model, z, count, decoding.band, generator or torch.Generator().manual_seed(0))
    return vote_joints(model, head, z, torch.cat([points, probes.to(points)]), decoding)


def near_surface_probes(model: PoseSDF, z: torch.Tensor, count: int, band: float,
                        generator: torch.Generator) -> torch.Tensor:
    """Those of `count` random unit-ball points that code z (L,) puts within `band` of its
    surface, (P, 3). The shape-only pass is cheaper than the full one."""
    with torch.no_grad():
        ball = unit_ball(count, generator).to(z.device)
        near = model(z[None], ball[None], with_pose=False)[0][0].abs() < band
    return ball[near]


def vote_joints(model: PoseSDF, head: NVFHead, z: torch.Tensor, voters: torch.Tensor,
                decoding: VoteDecoding = VoteDecoding()) -> torch.Tensor:
    """The nine joints (9, 3) decoded from the votes of `voters` (N, 3) for code z (L), normalised frame."""
    with torch.no_grad():
        feats = posesdf_features(model, z[None], voters[None])
        w, u = head(feats.query, feats.hidden)
    return decode_votes(voters, w[0], u[0], head.config.radius, decoding)


def unit_ball(n: int, generator: torch.Generator) -> torch.Tensor:
    """(n, 3) uniform samples of the unit ball."""
    d = torch.randn(n, 3, generator=generator)
    d = d / d.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    return d * torch.rand(n, 1, generator=generator) ** (1 / 3)
