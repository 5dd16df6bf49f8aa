"""MAP latent optimisation (PoseSDF eq. 8) against an observed partial cloud.

Beyond the paper, and each optional so that its effect can be measured:
- the similarity that maps the cloud into the normalised frame (centre and
  scale, 4 numbers) is refined together with the code, since a partial view
  only gives a first guess of the shape's unit-sphere normalisation; with
  `yaw_lr`, so is a turn about the vertical, since the heading is a guess too;
- free-space points (between the camera and the observed surface) must
  not be inside the shape (hinge on negative SDF);
- points just behind the observed surface along the camera's rays must be
  inside it (hinge on positive SDF): an observed point's residual is its
  distance to the nearest skin, which for a point pushed into a leg by depth
  noise is often the back or side skin, so thinner legs fit noisy points
  more cheaply and the joints drift toward the camera; these points make
  the body behind a seen surface solid again;
- a warm start from a previous code, and an early stop once the loss stops
  improving.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.losses import free_space_loss, inside_loss, latent_penalty, tolerance_loss
from ..models.posesdf import PoseSDF

# Eager steps before a CUDA graph is captured (on a side stream, as capture needs; they also
# create Adam's state).
_EAGER_STEPS = 3


@dataclass
class LatentFit:
    z: torch.Tensor          # (L,)
    shift: torch.Tensor      # (3,) normalised units: p_n = R_z(yaw) (p_n0 - shift) * exp(log_scale)
    log_scale: torch.Tensor  # ()
    iterations: int
    loss: float
    yaw: torch.Tensor | None = None  # () radians about the vertical (z); None: not turned

    def apply(self, p_n0: torch.Tensor) -> torch.Tensor:
        """Initial normalised coordinates -> refined ones, (..., 3)."""
        return turned((p_n0 - self.shift) * torch.exp(self.log_scale), self.yaw)

    def unapply(self, p_n: torch.Tensor) -> torch.Tensor:
        """Refined normalised coordinates -> initial ones, (..., 3): `apply`'s inverse."""
        return turned(p_n, None if self.yaw is None else -self.yaw) * torch.exp(-self.log_scale) + self.shift


def turned(p: torch.Tensor, yaw: torch.Tensor | None) -> torch.Tensor:
    """Points p (..., N, 3) turned by yaw (...) radians about the vertical (z) axis; None: p as it is."""
    if yaw is None:
        return p
    c, s = torch.cos(yaw)[..., None], torch.sin(yaw)[..., None]
    x, y = p[..., 0], p[..., 1]
    return torch.stack([c * x - s * y, s * x + c * y, p[..., 2]], dim=-1)


def optimise_latent(model: PoseSDF, points: torch.Tensor, *, free_points: torch.Tensor | None = None,
                    behind_points: torch.Tensor | None = None, behind_weight: float = 0.5,
                    z0: torch.Tensor | None = None, start: LatentFit | None = None,
                    iterations: int = 100, lr: float = 5e-3,
                    latent_reg: float = 1e-2, refine_similarity: bool = True, similarity_lr: float = 2e-3,
                    free_weight: float = 0.5, patience: int = 10, min_improvement: float = 1e-3,
                    cuda_graph: bool = True) -> LatentFit:
    """Fit a latent code so that `points` (N, 3, normalised) lie on the shape's zero level set.

    `free_points` (M, 3) are known to be outside, `behind_points` (B, 3) inside. `start` (a previous frame's
    fit, or `screen_starts`' pick) warm-starts code and similarity; else the
    code starts at `z0` (or zero). Stops early when the loss has not improved
    by `min_improvement` (relative) for `patience` steps. `cuda_graph`: see `_descend`.
    """
    dev = points.device
    if start is not None:
        z0, shift0, log_scale0 = start.z, start.shift, start.log_scale
    else:
        z0 = z0 if z0 is not None else torch.zeros(model.config.latent_size, device=dev)
        shift0, log_scale0 = torch.zeros(3, device=dev), torch.zeros((), device=dev)
    z, shift, log_scale, _, _, best, it = _descend(
        model, points, free_points, z0[None], shift0[None], log_scale0[None], None, iterations=iterations, lr=lr,
        latent_reg=latent_reg, refine_similarity=refine_similarity, similarity_lr=similarity_lr,
        free_weight=free_weight, behind_points=behind_points, behind_weight=behind_weight, patience=patience,
        min_improvement=min_improvement, cuda_graph=cuda_graph)
    return LatentFit(z[0], shift[0], log_scale[0], it, best)


def fit_each(model: PoseSDF, points: torch.Tensor, codes: torch.Tensor, *,
             free_points: torch.Tensor | None = None, behind_points: torch.Tensor | None = None,
             shifts: torch.Tensor | None = None, log_scales: torch.Tensor | None = None,
             yaws: torch.Tensor | None = None, iterations: int = 20, lr: float = 5e-3, latent_reg: float = 1e-2,
             refine_similarity: bool = True, similarity_lr: float = 2e-3, yaw_lr: float = 0.0,
             free_weight: float = 0.5, behind_weight: float = 0.5, cuda_graph: bool = True) -> list[LatentFit]:
    """Fit from each of the K start `codes` (K, L) at once for `iterations` steps: the K fits,
    each with its own loss at the last step. `points` (N, 3) are every fit's, or (K, N, 3) one
    set per fit (a fit of each member of an ensemble); `free_points` (M, 3) or (K, M, 3) and
    `behind_points` (B, 3) or (K, B, 3) likewise. The starts' similarities are `shifts` (K, 3) and
    `log_scales` (K,), default the first guess (0); with `yaw_lr` > 0 the fits also turn about the
    vertical, from `yaws` (K,) (default 0)."""
    k = len(codes)
    shifts = torch.zeros(k, 3, device=points.device) if shifts is None else shifts
    log_scales = torch.zeros(k, device=points.device) if log_scales is None else log_scales
    if yaw_lr > 0:
        yaws = torch.zeros(k, device=points.device) if yaws is None else yaws
    else:
        yaws = None
    z, shift, log_scale, yaw, per_fit, _, it = _descend(
        model, points, free_points, codes, shifts, log_scales, yaws, iterations=iterations,
        lr=lr, latent_reg=latent_reg, refine_similarity=refine_similarity, similarity_lr=similarity_lr,
        yaw_lr=yaw_lr, free_weight=free_weight, behind_points=behind_points, behind_weight=behind_weight,
        patience=iterations, min_improvement=0.0, cuda_graph=cuda_graph)
    return [LatentFit(z[i], shift[i], log_scale[i], it, float(per_fit[i]), None if yaw is None else yaw[i])
            for i in range(k)]


def screen_starts(model: PoseSDF, points: torch.Tensor, codes: torch.Tensor, **kwargs) -> tuple[LatentFit, int]:
    """`fit_each` from the K start `codes` (K, L) for a few steps; return the fit with the lowest
    loss, to be refined by `optimise_latent(start=...)`, and its index.

    A single start (the mean code) lands in a wrong basin on some frames (a leg
    bent the wrong way, legs crossed); the loss tells those apart, so trying
    several codes of the training set is cheap insurance.
    """
    fits = fit_each(model, points, codes, **kwargs)
    i = min(range(len(fits)), key=lambda j: fits[j].loss)
    return fits[i], i


def start_codes(mean: torch.Tensor, training_codes: np.ndarray | None, count: int, seed: int = 0) -> torch.Tensor:
    """`count` start codes (count, L): the mean code, then k-means centres of the
    training codes (N, L), which spread the starts over the shapes seen in training."""
    if count <= 1 or training_codes is None or len(training_codes) < count:
        return mean[None]
    from scipy.cluster.vq import kmeans2

    centres, _ = kmeans2(np.asarray(training_codes, dtype=np.float64), count - 1, seed=seed, minit="++")
    return torch.cat([mean[None], torch.as_tensor(centres, dtype=mean.dtype, device=mean.device)])


def fit_objective(model: PoseSDF, query: torch.Tensor, n_obs: int, z: torch.Tensor, shift: torch.Tensor,
                  log_scale: torch.Tensor, latent_reg: float = 1e-2, free_weight: float = 0.5, n_behind: int = 0,
                  behind_weight: float = 0.5, yaw: torch.Tensor | None = None) -> torch.Tensor:
    """The MAP objective of K fits (K,): query (1 or K, N + M + B, 3) holds the N = `n_obs` observed
    points (on the surface), then M free-space points (outside), then the last B = `n_behind` points
    behind the observed surface (inside), in the first-guess frame; z (K, L), shift (K, 3), log_scale (K,)
    as `LatentFit`'s, and yaw (K,) or None."""
    q = turned((query - shift[:, None]) * torch.exp(log_scale)[:, None, None], yaw)
    sdf, _ = model(z, q, with_pose=False)                                  # (K, N + M + B)
    per_fit = tolerance_loss(sdf[:, :n_obs], torch.zeros_like(sdf[:, :n_obs]), 0.0, 0.0).mean(1)
    n_free = query.shape[1] - n_obs - n_behind
    if n_free:
        free = sdf[:, n_obs:n_obs + n_free]
        per_fit = per_fit + free_weight * free_space_loss(free, torch.zeros((), device=z.device)).mean(1)
    if n_behind:
        per_fit = per_fit + behind_weight * inside_loss(sdf[:, n_obs + n_free:]).mean(1)
    return per_fit + latent_penalty(z, latent_reg)


def _descend(model: PoseSDF, points: torch.Tensor, free_points: torch.Tensor | None, z0: torch.Tensor,
             shift0: torch.Tensor, log_scale0: torch.Tensor, yaw0: torch.Tensor | None, *, iterations: int, lr: float,
             latent_reg: float, refine_similarity: bool, similarity_lr: float, free_weight: float, patience: int,
             min_improvement: float, behind_points: torch.Tensor | None = None, behind_weight: float = 0.5,
             yaw_lr: float = 0.0, cuda_graph: bool = True):
    """Adam on K independent fits at once: z0 (K, L), shift0 (K, 3), log_scale0 (K,), yaw0 (K,) or None
    (not turned; else refined at `yaw_lr`), all
    against the same points (N, 3), free_points (M, 3) and behind_points (B, 3), or each against its own
    (K, N, 3), (K, M, 3), (K, B, 3).

    Returns z (K, L), shift (K, 3), log_scale (K,), yaw (K,) or None, each fit's loss at the last
    step (K,), the lowest summed loss seen, and the steps run.

    On a CUDA device with `cuda_graph`, the steps after the first few are replays of one
    captured CUDA graph: the same arithmetic, without the hundred-odd kernel launches per
    step from Python that otherwise bound a fit's speed on a GPU.
    """
    z = z0.clone().detach().requires_grad_(True)
    shift = shift0.clone().detach().requires_grad_(True)
    log_scale = log_scale0.clone().detach().requires_grad_(True)
    groups = [{"params": [z], "lr": lr}]
    if refine_similarity:
        groups.append({"params": [shift, log_scale], "lr": similarity_lr})
    yaw = None if yaw0 is None else yaw0.clone().detach().requires_grad_(True)
    if yaw is not None:
        groups.append({"params": [yaw], "lr": yaw_lr})
    # Capturable Adam keeps its step counts on the device, as a CUDA graph needs; eager steps on
    # a GPU use it too, so that a graphed fit and an eager one do the same arithmetic.
    opt = torch.optim.Adam(groups, capturable=points.is_cuda)
    for p in model.parameters():
        p.requires_grad_(False)
    query = torch.cat([a for a in (points, free_points, behind_points) if a is not None], dim=-2)
    query = query[None] if query.dim() == 2 else query
    n_obs, n_behind = points.shape[-2], 0 if behind_points is None else behind_points.shape[-2]

    def step() -> tuple[torch.Tensor, torch.Tensor]:
        per_fit = fit_objective(model, query, n_obs, z, shift, log_scale, latent_reg, free_weight, n_behind,
                                behind_weight, yaw)
        loss = per_fit.sum()
        loss.backward()
        opt.step()
        # Detached, so that no autograd graph outlives its step (and its stream).
        return per_fit.detach(), loss.detach()

    graphed = cuda_graph and query.is_cuda and iterations > _EAGER_STEPS + 1
    side = torch.cuda.Stream() if graphed else None
    graph, captured, best, stale, it = None, None, float("inf"), 0, 0
    per_fit = torch.full((len(z0),), float("inf"))
    try:
        for it in range(1, iterations + 1):
            if captured is not None:
                graph.replay()
                per_fit, loss = captured
            elif graphed and it > _EAGER_STEPS:
                # Gradients are allocated inside the capture, so each replay overwrites them.
                torch.cuda.current_stream().wait_stream(side)
                opt.zero_grad(set_to_none=True)
                graph = torch.cuda.CUDAGraph()
                with torch.cuda.graph(graph):
                    captured = step()
                graph.replay()
                per_fit, loss = captured
            else:
                opt.zero_grad(set_to_none=True)
                if side is not None:
                    side.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(side):
                        per_fit, loss = step()
                else:
                    per_fit, loss = step()
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
    return (z.detach(), shift.detach(), log_scale.detach(), None if yaw is None else yaw.detach(), per_fit.detach(),
            best, it)
