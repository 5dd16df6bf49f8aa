"""Losses as pure functions, shared by training and inference (latent optimisation)."""
from __future__ import annotations

import torch


def tolerance_loss(pred: torch.Tensor, target: torch.Tensor, lam: float, eps: float) -> torch.Tensor:
    """Sign-weighted tolerance loss of PoseSDF eq. 4-6, elementwise, same shape as the inputs.

    ω max(|ŝ - s| - ε, 0) with ω = 1 + λ sign(s) sign(s - ŝ): an error towards
    the surface and the other sign costs (1 + λ) times, one away from the
    surface (1 - λ) times. This is the weighting of Curriculum DeepSDF, which
    the paper cites for it and describes ("punishes the wrong estimation of
    signs"); eq. 5 as printed has sign(ŝ - s), which would do the opposite.
    """
    diff = pred - target
    weight = 1 + lam * torch.sign(target) * torch.sign(-diff)
    return weight * torch.clamp(diff.abs() - eps, min=0)


def latent_penalty(z: torch.Tensor, weight: float) -> torch.Tensor:
    """weight * |z|^2 of each code (the 1/σ² |z|² prior of eq. 7 and 8). z: (B, L) -> (B,)."""
    return weight * z.pow(2).sum(-1)


def latent_regulariser(z: torch.Tensor, weight: float) -> torch.Tensor:
    """`latent_penalty` averaged over the codes of a batch (training). z: (B, L) -> ()."""
    return latent_penalty(z, weight).mean()


def free_space_loss(pred: torch.Tensor, margin: torch.Tensor) -> torch.Tensor:
    """Hinge for points known to be outside by at least `margin`: max(margin - ŝ, 0), elementwise."""
    return torch.clamp(margin - pred, min=0)


def inside_loss(pred: torch.Tensor) -> torch.Tensor:
    """Hinge for points known to be inside the shape: max(ŝ, 0), elementwise."""
    return torch.clamp(pred, min=0)
