"""Joints by NVF voting: decode the nine joints from the votes of near-surface points.

Each query point p casts, per joint, c = p + R (1 - w) u (u normalised),
which inverts the vote encoding exactly (`models.nvf.vote_targets`) for
points within R of the joint. Two selection rules pick the points whose
votes count, both ranked by the predicted weight w (the nearer, the more
reliable), and the joint is the w-weighted mean of their votes:
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


@dataclass(frozen=True)
class VoteSelection:
    rule: str = "fraction"
    keep: float = 0.5        # `fraction`: share of the voting points kept
    k: int = 32              # `knn`: points per joint; also the fallback count

    def __post_init__(self):
        if self.rule not in SELECTIONS:
            raise ValueError(f"unknown vote selection {self.rule!r}; expected one of {SELECTIONS}")
        if not 0 < self.keep <= 1 or self.k < 1:
            raise ValueError(f"vote selection needs 0 < keep <= 1 and k >= 1, got keep={self.keep}, k={self.k}")


def decode_votes(points: torch.Tensor, w: torch.Tensor, u: torch.Tensor, radius: float,
                 selection: VoteSelection = VoteSelection()) -> torch.Tensor:
    """points (N, 3), w (N, 9), u (N, 9, 3) -> joints (9, 3), same units as `points` and `radius`."""
    unit = u / u.norm(dim=-1, keepdim=True).clamp_min(1e-9)
    w = w.clamp(0.0, 1.0)
    votes = points[:, None, :] + (radius * (1 - w))[..., None] * unit        # (N, 9, 3)
    n = len(points)
    order = torch.argsort(w, dim=0, descending=True)                         # (N, 9)
    if selection.rule == "knn":
        count = torch.full((w.shape[1],), min(selection.k, n), device=w.device)
    else:
        voting = (w > 0).sum(0)
        count = torch.where(voting > 0, (selection.keep * voting).ceil().long(),
                            torch.full_like(voting, min(selection.k, n)))
    rank = torch.empty_like(order)
    rank.scatter_(0, order, torch.arange(n, device=w.device)[:, None].expand_as(order))
    chosen = rank < count[None]                                              # (N, 9)
    weight = torch.where(chosen, w.clamp_min(1e-6), torch.zeros_like(w))
    return (weight[..., None] * votes).sum(0) / weight.sum(0)[:, None]


def nvf_joints(model: PoseSDF, head: NVFHead, z: torch.Tensor, points: torch.Tensor,
               selection: VoteSelection = VoteSelection()) -> torch.Tensor:
    """The nine joints (9, 3) of code z (L,) from the votes of `points` (N, 3), normalised frame.

    One forward pass of PoseSDF and the head over the points: no search.
    """
    with torch.no_grad():
        feats = posesdf_features(model, z[None], points[None])
        w, u = head(feats)
    return decode_votes(points, w[0], u[0], head.config.radius, selection)
