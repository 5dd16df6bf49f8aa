"""MAP latent optimisation (PoseSDF eq. 8) against an observed partial cloud.

Beyond the paper, and each optional so that its effect can be measured:
- the similarity that maps the cloud into the normalised frame (centre and
  scale, 4 numbers) is refined together with the code, since a partial view
  only gives a first guess of the shape's unit-sphere normalisation;
- free-space points (between the camera and the observed surface) must
  not be inside the shape (hinge on negative SDF);
- a warm start from a previous code, and an early stop once the loss stops
  improving.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..models.posesdf import PoseSDF
from ..training.losses import free_space_loss, latent_regulariser, tolerance_loss


@dataclass
class LatentFit:
    z: torch.Tensor          # (L,)
    shift: torch.Tensor      # (3,) normalised units: p_n = (p_n0 - shift) * exp(log_scale)
    log_scale: torch.Tensor  # ()
    iterations: int
    loss: float

    def apply(self, p_n0: torch.Tensor) -> torch.Tensor:
        """Initial normalised coordinates -> refined ones, (..., 3)."""
        return (p_n0 - self.shift) * torch.exp(self.log_scale)


def optimise_latent(model: PoseSDF, points: torch.Tensor, *, free_points: torch.Tensor | None = None,
                    z0: torch.Tensor | None = None, start: LatentFit | None = None,
                    iterations: int = 100, lr: float = 5e-3,
                    latent_reg: float = 1e-2, refine_similarity: bool = True, similarity_lr: float = 2e-3,
                    free_weight: float = 0.5, patience: int = 10, min_improvement: float = 1e-3) -> LatentFit:
    """Fit a latent code so that `points` (N, 3, normalised) lie on the shape's zero level set.

    `free_points` (M, 3) are known to be outside. `start` (a previous frame's
    fit) warm-starts code and similarity; else the code starts at `z0` (or
    zero). Stops early when the loss has not improved by `min_improvement`
    (relative) for `patience` steps.
    """
    dev = points.device
    if start is not None:
        z0, shift0, log_scale0 = start.z, start.shift, start.log_scale
    else:
        z0 = z0 if z0 is not None else torch.zeros(model.config.latent_size, device=dev)
        shift0, log_scale0 = torch.zeros(3, device=dev), torch.zeros((), device=dev)
    z = z0.clone().detach().requires_grad_(True)
    shift = shift0.clone().detach().requires_grad_(True)
    log_scale = log_scale0.clone().detach().requires_grad_(True)
    groups = [{"params": [z], "lr": lr}]
    if refine_similarity:
        groups.append({"params": [shift, log_scale], "lr": similarity_lr})
    opt = torch.optim.Adam(groups)
    for p in model.parameters():
        p.requires_grad_(False)
    query = points if free_points is None else torch.cat([points, free_points])
    n_obs = len(points)
    best, stale, it = float("inf"), 0, 0
    try:
        for it in range(1, iterations + 1):
            q = (query - shift) * torch.exp(log_scale)
            sdf, _ = model(z[None], q[None])
            sdf = sdf[0]
            loss = tolerance_loss(sdf[:n_obs], torch.zeros_like(sdf[:n_obs]), 0.0, 0.0).mean()
            if free_points is not None:
                loss = loss + free_weight * free_space_loss(sdf[n_obs:], torch.zeros((), device=dev)).mean()
            loss = loss + latent_regulariser(z[None], latent_reg)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            value = loss.item()
            if value < best * (1 - min_improvement):
                best, stale = value, 0
            else:
                stale += 1
                if stale >= patience:
                    break
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    return LatentFit(z.detach(), shift.detach(), log_scale.detach(), it, best)
