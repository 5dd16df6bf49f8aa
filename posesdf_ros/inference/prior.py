"""PosePrior: causal smoothing and occlusion filling of nine-joint gait poses with Pose-NDF.

Each `filter` call solves, for the current frame only (no look-ahead:
latency 0 frames), Pose-NDF's motion-denoising objective (seed 003) over
the kinematic pose of `gait.kinematics` (root position, heading, seven
local rotations) with the subject's running bone lengths held fixed:

    E = sum_valid |FK - J_obs|^2 / sigma_obs^2                (data)
      + sum_all   |FK - J_pred|^2 / (sigma_motion (dt 30)^2)^2  (motion)
      + sum_rot   |q - q_periodic|^2 / sigma^2                  (gait periodicity)
      + w_prior * f(rotations)                                  (Pose-NDF prior)
      + sum_knees relu(-flexion)^2 / sigma_knee^2               (knee limit)

J_pred continues each joint's last velocity (damped while unobserved).
q_periodic is each rotation one gait cycle ago and, for a leg whose
joints are missing or flagged unreliable, the other leg half a cycle ago,
mirrored. Fixed bone lengths make every output skeleton consistent by
construction. docs/prior.md explains each term.
"""
from __future__ import annotations

import json
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..gait.kinematics import LENGTH_JOINTS, LimbPose, forward, inverse, knee_flexion_signed
from ..models.posendf import PoseNDF, PoseNDFConfig, canonical_hemisphere
from ..skeleton import side_joints
from .pretrained import weights_path

#: Frame rate at which `PriorConfig.motion_sigma_m` is given.
MOTION_REFERENCE_FPS = 30.0
#: Knee, ankle and foot of each side: what a lateral view hides of the far leg.
LEFT_LEG, RIGHT_LEG = (list(side_joints(s)[1:]) for s in ("left", "right"))


@dataclass(frozen=True)
class PriorConfig:
    """Filter settings. `posesdf bench prior` tunes motion_sigma_m and prior_weight on training bodies."""

    observation_sigma_m: float = 0.02     # expected per-joint error of the estimator
    # Expected deviation from constant velocity over one frame at 30 FPS; it grows with the
    # square of the time step (an acceleration's effect), so any frame rate or dropped frames work.
    motion_sigma_m: float = 0.05
    hidden_motion_sigma_m: float = 0.1    # the same for joints not observed in this frame (the prior leads)
    prior_weight: float = 300.0           # weight of f (quaternion units) against the squared residuals
    velocity_damping: float = 1.0         # share of the last velocity carried into the prediction
    hidden_velocity_damping: float = 0.5  # the same while a joint is not observed (no drift)
    iterations: int = 8                   # L-BFGS iterations per frame (at most twice as many evaluations)
    knee_limit_sigma_rad: float = 0.01    # stiffness of the knee's limit at full extension
    length_window: int = 60               # frames in the running median of each bone length
    restart_gap_s: float = 0.5            # a longer gap between frames restarts the filter
    periodic_fill: bool = True            # fill a hidden leg from the other leg half a gait cycle ago
    fill_sigma: float = 0.05              # expected error of that fill (quaternion units: half the angle, rad)
    cycle_sigma: float = 0.03             # expected change of a rotation over one gait cycle (same units)
    history_s: float = 3.0                # output history kept for the gait period
    cycle_range_s: tuple[float, float] = (0.7, 2.0)   # gait cycles searched (cadence 60 to 170 steps/min)

    def to_dict(self) -> dict:
        return asdict(self)


class PosePrior:
    """Stateful filter over one subject's joint stream. Build with `from_pretrained`."""

    def __init__(self, model: PoseNDF, meta: dict, config: PriorConfig | None = None, device: str = "cpu"):
        self.model, self.meta = model, meta
        self.config = config or PriorConfig()
        self.device = torch.device(device)
        self.reset()

    @classmethod
    def from_pretrained(cls, weights: str | Path | None = None, device: str = "cpu", **config) -> "PosePrior":
        """The shipped (or given folder's) Pose-NDF weights; keyword arguments override `PriorConfig`."""
        path = weights_path("posendf", Path(weights) if weights else None)
        meta = json.loads(path.with_suffix(".json").read_text()) | {"weights_dir": str(path.parent)}
        model = PoseNDF(PoseNDFConfig.from_dict(meta["config"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        for p in model.parameters():
            p.requires_grad_(False)
        return cls(model.to(device).eval(), meta, replace(PriorConfig(), **config), device)

    def reset(self) -> None:
        """Forget the subject (a new person, or a cut in the stream)."""
        self._lengths: deque[np.ndarray] = deque(maxlen=self.config.length_window)
        self.dropped = 0                    # calls ignored: out-of-order stamps
        self._restart()

    def _restart(self) -> None:
        """Forget the motion after a gap, but keep the subject's bone lengths."""
        self._stamps: deque[float] = deque(maxlen=2)
        self._outputs: deque[np.ndarray] = deque(maxlen=2)
        self._unseen = np.zeros(9, int)     # frames since each joint was last observed
        self._history: deque[tuple[float, np.ndarray]] = deque()   # (stamp, rotations (7, 4)) of outputs

    # -- the field -----------------------------------------------------------------------------
    def distance(self, rotations: np.ndarray | torch.Tensor) -> np.ndarray:
        """Pose-NDF distance of poses from the gait manifold. (B, 7, 4) quaternions -> (B,)."""
        q = canonical_hemisphere(torch.as_tensor(rotations, dtype=torch.float32, device=self.device))
        with torch.no_grad():
            return self.model(q).clamp_min(0).cpu().numpy()

    def project(self, rotations: np.ndarray | torch.Tensor, steps: int = 10) -> np.ndarray:
        """Project poses onto the manifold: q <- q - f(q) grad f / |grad f|, renormalised. (B, 7, 4) -> (B, 7, 4)."""
        q = canonical_hemisphere(torch.as_tensor(rotations, dtype=torch.float32, device=self.device))
        for _ in range(steps):
            q = q.detach().requires_grad_(True)
            f = self.model(q)
            (g,) = torch.autograd.grad(f.sum(), q)
            norm = g.flatten(1).norm(dim=1).clamp_min(1e-9)[:, None, None]
            q = q - f.clamp_min(0)[:, None, None] * g / norm
            q = canonical_hemisphere(q / q.norm(dim=-1, keepdim=True))
        return q.detach().cpu().numpy()

    # -- the filter ----------------------------------------------------------------------------
    def filter(self, stamp_s: float, joints: np.ndarray | None, valid: np.ndarray | None = None) -> np.ndarray:
        """One frame in, the filtered joints of that frame out: (9, 3) in the input frame.

        joints: (9, 3), or None for a frame without an estimate. valid: (9,)
        bool, False for joints to fill (NaN joints are never used). Before
        the first frame with all nine joints the output is NaN. A stamp not
        after the previous one is ignored (counted in `dropped`) and the
        previous output returned.
        """
        obs = np.full((9, 3), np.nan) if joints is None else np.asarray(joints, np.float64).reshape(9, 3)
        seen = np.isfinite(obs).all(1) & (np.ones(9, bool) if valid is None else np.asarray(valid, bool))
        if self._stamps and stamp_s <= self._stamps[-1]:
            self.dropped += 1
            return self._outputs[-1].copy()
        if self._stamps and stamp_s - self._stamps[-1] > self.config.restart_gap_s:
            self._restart()
        if not self._outputs and not seen.all():
            return np.full((9, 3), np.nan)
        self._update_lengths(obs, seen)
        self._unseen = np.where(seen, 0, self._unseen + 1)
        return self._accept(stamp_s, self._solve(stamp_s, obs, seen))

    def _accept(self, stamp_s: float, out: np.ndarray) -> np.ndarray:
        self._stamps.append(float(stamp_s))
        self._outputs.append(out)
        self._history.append((float(stamp_s), rotations_of(out[None])[0]))
        while self._history[0][0] < stamp_s - self.config.history_s:
            self._history.popleft()
        return out.copy()

    def cycle_period(self) -> float | None:
        """The gait cycle (s) of the recent outputs: the lag at which the hip and knee rotations
        repeat best; None without a clear period or with too short a history."""
        lo, hi = self.config.cycle_range_s
        if len(self._history) < 10:
            return None
        t = np.array([h[0] for h in self._history])
        feats = np.stack([h[1][[1, 2, 4, 5]].ravel() for h in self._history])
        dt = float(np.median(np.diff(t)))
        grid = np.arange(t[0], t[-1] + 1e-9, dt)
        f = np.stack([np.interp(grid, t, feats[:, k]) for k in range(feats.shape[1])], 1)
        lags = np.arange(max(1, int(lo / dt)), min(int(hi / dt), len(grid) - int(0.4 / dt)) + 1)
        if len(lags) < 3:
            return None
        mismatch = np.array([np.mean((f[lag:] - f[:-lag]) ** 2) for lag in lags])
        best = int(np.argmin(mismatch))
        # A periodic gait repeats far better at its cycle than at a typical lag.
        if mismatch[best] > 0.3 * np.median(mismatch):
            return None
        return float(lags[best] * dt)

    def _rotations_at(self, when: float, rows: slice) -> np.ndarray | None:
        """Output rotations `rows` (R, 4) interpolated at stamp `when`; None before the history."""
        t = np.array([h[0] for h in self._history])
        if when < t[0]:
            return None
        rot = np.stack([h[1][rows] for h in self._history])
        q = np.stack([[np.interp(when, t, rot[:, j, k]) for k in range(4)] for j in range(rot.shape[1])])
        return q / np.linalg.norm(q, axis=-1, keepdims=True)

    def _periodic_targets(self, stamp_s: float, seen: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """Rotation targets from the gait's periodicity, (7, 4) and (7,) weights; None without a clear cycle.

        Every rotation: its value one cycle ago (the gait repeats, so this averages
        noise over cycles without lag). A hidden leg: the other leg half a cycle
        ago, mirrored through the sagittal plane (M R M with M = diag(1, -1, 1)).
        """
        c = self.config
        period = self.cycle_period()
        if period is None:
            return None
        target, weight = np.zeros((7, 4)), np.zeros(7)
        cycle = self._rotations_at(stamp_s - period, slice(0, 7))
        if cycle is not None and c.cycle_sigma > 0:
            target, weight[:] = cycle, c.cycle_sigma ** -2
        for side, leg in enumerate((LEFT_LEG, RIGHT_LEG)):
            if seen[leg].all() or not c.periodic_fill:
                continue
            other = self._rotations_at(stamp_s - 0.5 * period, slice(4, 7) if side == 0 else slice(1, 4))
            if other is not None:
                rows = slice(1 + 3 * side, 4 + 3 * side)
                target[rows], weight[rows] = other * [-1.0, 1.0, -1.0, 1.0], c.fill_sigma ** -2
        return target, weight

    def _update_lengths(self, obs: np.ndarray, seen: np.ndarray) -> None:
        lengths = inverse(torch.as_tensor(np.nan_to_num(obs)[None])).lengths[0].numpy()
        usable = np.array([seen[a] & seen[b] for a, b in LENGTH_JOINTS])
        self._lengths.append(np.where(usable, lengths, np.nan))

    def bone_lengths(self) -> np.ndarray:
        """The subject's running bone lengths, (7,) metres, `kinematics.LENGTHS` order.

        The measurement: each bone's median squared length over the recent
        frames, debiased for the joint noise (E|d + n|^2 = |d|^2 + 2 sigma^2
        for two joints with RMS error sigma), left and right taken as equal.
        It is combined by inverse variance with the training bodies'
        proportions scaled to this subject's leg length (thigh + shank): the
        measurement's variance is one frame's (2 sigma^2 / 3 along the bone,
        a quarter of it for the half hip width) times pi / 2 (a median) over
        the frames in, the population's is the spread of the training
        bodies' proportions plus the leg length's own uncertainty. So the
        first frames lean on the population the more the noisier the joints,
        and the subject's own lengths take over as frames come in.
        """
        if not self._lengths:
            return np.full(7, np.nan)
        history = np.stack(self._lengths)
        sigma2 = self.config.observation_sigma_m ** 2
        # Variance of one frame's length along the bone: two joints' noise along one axis.
        frame_var = np.full(7, 2 * sigma2 / 3)
        frame_var[0] /= 4   # the half hip width is half the distance between two joints
        squared = np.nanmedian(history ** 2, axis=0)
        # The noise along all three axes lengthens the bone: debias by the noise's whole variance.
        lengths = np.sqrt(np.maximum(squared - 3 * frame_var, 0.25 * squared))
        frames = np.isfinite(history).sum(0).astype(float)
        lengths[1:4] = lengths[4:7] = 0.5 * (lengths[1:4] + lengths[4:7])
        frames[1:4] = frames[4:7] = frames[1:4] + frames[4:7]
        ratios, ratio_sds = self.meta.get("length_ratios"), self.meta.get("length_ratio_sds")
        if ratios is None or ratio_sds is None:
            return lengths
        measured_var = np.pi / 2 * frame_var / np.maximum(frames, 1.0)
        leg = 0.5 * (lengths[1] + lengths[2] + lengths[4] + lengths[5])
        population = np.asarray(ratios) * leg
        population_var = ((np.asarray(ratio_sds) * leg) ** 2
                          + np.asarray(ratios) ** 2 * (measured_var[1] + measured_var[2]))
        weight = population_var / (population_var + measured_var)
        return np.where(frames > 0, weight * lengths + (1 - weight) * population, population)

    def _prediction(self, stamp_s: float) -> np.ndarray:
        last = self._outputs[-1]
        if len(self._outputs) < 2:
            return last
        c = self.config
        damping = np.where(self._unseen > 0, c.hidden_velocity_damping ** self._unseen, c.velocity_damping)
        ratio = (stamp_s - self._stamps[-1]) / max(self._stamps[-1] - self._stamps[-2], 1e-6)
        return last + damping[:, None] * ratio * (last - self._outputs[-2])

    def _solve(self, stamp_s: float, obs: np.ndarray, seen: np.ndarray) -> np.ndarray:
        c = self.config
        # The first frame has no motion to follow yet: data, prior and knee limit alone.
        first = not self._outputs
        pred = obs if first else self._prediction(stamp_s)
        # Start from the observation where there is one, the prediction elsewhere.
        start = np.where(seen[:, None], obs, pred)
        pose = inverse(torch.as_tensor(start[None], dtype=torch.float32))
        lengths = torch.as_tensor(self.bone_lengths()[None], dtype=torch.float32)
        target, weight = np.where(seen[:, None], np.nan_to_num(obs), 0.0), seen / c.observation_sigma_m ** 2
        periodic = self._periodic_targets(stamp_s, seen)
        rot_target, rot_w = (np.zeros((7, 4)), np.zeros(7)) if periodic is None else periodic
        if periodic is not None:
            filled = rot_w >= c.fill_sigma ** -2
            pose.rotations[0, filled] = torch.as_tensor(rot_target[filled], dtype=torch.float32)
        rot_target_t = torch.as_tensor(rot_target, dtype=torch.float32)
        rot_w_t = torch.as_tensor(rot_w, dtype=torch.float32)
        root = pose.root.clone().requires_grad_(True)
        heading = pose.heading.clone().requires_grad_(True)
        rotations = pose.rotations.clone().requires_grad_(True)
        obs_t = torch.as_tensor(target, dtype=torch.float32)
        pred_t = torch.as_tensor(pred, dtype=torch.float32)
        data_w = torch.as_tensor(weight, dtype=torch.float32)[:, None]
        if first:
            motion_w = torch.zeros(9, 1)
        else:
            steps = ((stamp_s - self._stamps[-1]) * MOTION_REFERENCE_FPS) ** 2
            motion_w = torch.as_tensor((steps * np.where(seen, c.motion_sigma_m, c.hidden_motion_sigma_m)) ** -2.0,
                                       dtype=torch.float32)[:, None]
        # Quasi-Newton: the energy is a well-scaled sum of squares plus a near-linear prior term,
        # which a handful of L-BFGS steps solve far better than first-order steps of fixed size.
        opt = torch.optim.LBFGS([root, heading, rotations], lr=1.0, max_iter=c.iterations, max_eval=2 * c.iterations,
                                line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad(set_to_none=True)
            q = rotations / rotations.norm(dim=-1, keepdim=True)
            joints = forward(LimbPose(root, heading, q, lengths))[0]
            energy = ((data_w * (joints - obs_t) ** 2).sum()
                      + (motion_w * (joints - pred_t) ** 2).sum()
                      + (rot_w_t * ((canonical_hemisphere(q[0]) - rot_target_t) ** 2).sum(-1)).sum()
                      + c.prior_weight * self.model(canonical_hemisphere(q)).clamp_min(0).sum()
                      # The knee's anatomical limit, which the learned field only approximates.
                      + (torch.relu(-knee_flexion_signed(joints[None])) ** 2).sum() / c.knee_limit_sigma_rad ** 2)
            energy.backward()
            return energy

        opt.step(closure)
        with torch.no_grad():
            q = rotations / rotations.norm(dim=-1, keepdim=True)
            return forward(LimbPose(root, heading, q, lengths))[0].numpy().astype(np.float64)


def rotations_of(joints: np.ndarray) -> np.ndarray:
    """The prior's pose (seven local quaternions, w >= 0) of nine-joint skeletons. (B, 9, 3) -> (B, 7, 4)."""
    return canonical_hemisphere(inverse(torch.as_tensor(np.asarray(joints, np.float64))).rotations).float().numpy()

