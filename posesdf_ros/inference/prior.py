"""PosePrior: smoothing and occlusion filling of nine-joint gait poses with Pose-NDF, causal or at a fixed lag.

Each frame solves Pose-NDF's motion-denoising objective (seed 003) over
the kinematic pose of `gait.kinematics` (root position, heading, seven
local rotations) of the frames still open, with the subject's running
bone lengths held fixed. With `lag_frames` L = 0 only the newest frame is
open (a causal filter, no added latency); with L > 0 the newest L + 1
frames are solved together and the oldest of them is output, so each
output has seen L frames after it (a fixed-lag smoother, L frames of
latency). The energy over the open frames k:

    E = sum_k sum_valid |FK_k - J_obs,k|^2 / sigma_obs^2                      (data)
      + sum_k sum_all   |FK_k - pred_k|^2 / (sigma_motion (dt_k 30)^2)^2      (motion)
      + sum_k sum_all   |6 FK[t_k-3 .. t_k] / 30^3|^2 / sigma_jerk^2         (jerk; lag only; hidden: 2 sigma)
      + sum_k sum_rot   |q_k - q_periodic,k|^2 / sigma^2                      (gait periodicity)
      + w_prior sum_k f(rotations_k)                                          (Pose-NDF prior)
      + sum_k sum_knees relu(-flexion_k)^2 / sigma_knee^2                     (knee limit)

pred_k continues the velocity of the two frames before k (outputs already
published, or open frames), damped while a joint is unobserved, so the
motion term is a second difference: an acceleration penalty; the jerk
term is the third divided difference over the frame and the three before
it. With a clear gait cycle the motion term expects the acceleration the
outputs made one cycle earlier instead of none, an observed joint's sigma
then `cycle_motion_scale` sigma_obs. q_periodic
is each rotation one gait cycle ago and, for a leg whose joints are
missing or flagged unreliable, the other leg half a cycle ago, mirrored.
Fixed bone lengths make every output skeleton consistent by construction.
Until the bone lengths have settled (`PriorConfig.settled_length_sd_m`,
at most `warm_up_frames` frames) every output is flagged `initialising`.
A few Levenberg-Marquardt iterations (`levenberg_marquardt`) minimise E
on the CPU in float64, whatever the device of the field's own calls.
docs/prior.md explains each term and the solver.
"""
from __future__ import annotations

import copy
import json
from collections import deque
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch

from ..gait.kinematics import (
    LENGTH_JOINTS,
    REST_DIRECTIONS,
    LimbPose,
    forward,
    inverse,
    knee_flexion_signed,
    rotation_matrix,
    swing,
)
from ..models.posendf import PoseNDF, PoseNDFConfig, canonical_hemisphere
from ..skeleton import side_joints
from .pretrained import weights_path

#: How each frame's energy is minimised (recorded with benchmark results).
SOLVER = "Levenberg-Marquardt"
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
    # The same for joints not observed in this frame (the prior and the periodic fill lead). 0.07 and the
    # damping 0.8 read better than 0.1 and 0.5 on every far-leg row of the bench's training walkers, causal
    # and at lag 3 (docs/prior.md, "Choices").
    hidden_motion_sigma_m: float = 0.07
    prior_weight: float = 300.0           # weight of f (quaternion units) against the squared residuals
    # Expected third difference of a joint over four frames at 30 FPS, with a lag only (0: off); 0.02 chosen
    # on the bench's training walkers (docs/prior.md, "Choices").
    jerk_sigma_m: float = 0.02
    # The same for joints not observed in the frame: their filled path smooth too, but led by the fill.
    hidden_jerk_sigma_m: float = 0.04
    velocity_damping: float = 1.0         # share of the last velocity carried into the prediction
    hidden_velocity_damping: float = 0.8  # the same per frame a joint is not observed (no drift)
    iterations: int = 4                   # Levenberg-Marquardt iterations per frame (two batched evaluations each)
    knee_limit_sigma_rad: float = 0.01    # stiffness of the knee's limit at full extension
    length_window: int = 60               # frames in the running median of each bone length
    restart_gap_s: float = 0.5            # a longer gap between frames restarts the filter
    periodic_fill: bool = True            # fill a hidden leg from the other leg half a gait cycle ago
    # Expected error of that fill (quaternion units: half the angle, rad). 0.03 filled a hidden far leg better
    # than 0.05 causal and at lag 3, with no lower acceleration ratio (docs/prior.md, "Choices").
    fill_sigma: float = 0.03
    cycle_sigma: float = 0.03             # expected change of a rotation over one gait cycle (same units)
    # With a clear gait cycle, an observed joint's acceleration is expected to repeat the one a cycle earlier,
    # to within this many observation sigmas (0: off; the motion term then expects none). 1.5 lowered the MPJPE
    # of every row of the bench's training walkers, causal and at lag 3 (docs/prior.md, "Choices").
    cycle_motion_scale: float = 1.5
    history_s: float = 3.0                # output history kept for the gait period
    cycle_range_s: tuple[float, float] = (0.7, 2.0)   # gait cycles searched (cadence 60 to 170 steps/min)
    lag_frames: int = 0                   # frames of look-ahead (0: causal); outputs are this many frames late
    warm_up_frames: int = 10              # outputs are flagged initialising for at most this many frames ...
    settled_length_sd_m: float = 0.005    # ... or until every bone length's standard error is below this,
    warm_up_min_frames: int = 3           # ... but for at least this many (one frame's lengths may be an outlier)
    length_bias_sd: float = 0.05          # systematic error of the incoming bone lengths (share of the length)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class PriorOutput:
    """One smoothed frame: the joints of the input frame stamped `stamp_s` (`lag` frames before the newest)."""

    stamp_s: float
    joints: np.ndarray          # (9, 3) in the input frame; NaN before the filter has started
    initialising: bool          # the bone lengths have not settled yet: not a settled output
    lag: int                    # frames that arrived after this one before it was output


@dataclass
class _OpenFrame:
    """A frame not output yet: its input, and its current solution."""

    stamp_s: float
    observed: np.ndarray        # (9, 3), NaN where not observed
    seen: np.ndarray            # (9,) bool
    unseen: np.ndarray          # (9,) int, frames since each joint was last observed
    solution: np.ndarray | None = None    # (9, 3)


class PosePrior:
    """Stateful filter over one subject's joint stream. Build with `from_pretrained`."""

    def __init__(self, model: PoseNDF, meta: dict, config: PriorConfig | None = None, device: str = "cpu"):
        self.model, self.meta = model, meta
        # The solver's copy: its Jacobian is taken by forward differences, which float32 would drown.
        self._field = copy.deepcopy(model).double().cpu()
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
        """Forget the subject (a new person, or a cut in the stream). Frames not output yet are dropped."""
        self._lengths: deque[np.ndarray] = deque(maxlen=self.config.length_window)
        self.dropped = 0                    # calls ignored: out-of-order stamps
        self.frames_in = 0                  # frames filtered since the reset (the warm-up counts these)
        self._last: PriorOutput | None = None
        self._open: list[_OpenFrame] = []
        self._restart()

    def _restart(self) -> None:
        """Forget the motion after a gap, but keep the subject's bone lengths."""
        self._stamps: deque[float] = deque(maxlen=3)        # of the last three outputs (the motion terms')
        self._outputs: deque[np.ndarray] = deque(maxlen=3)
        self._unseen = np.zeros(9, int)     # frames since each joint was last observed
        # (stamp, rotations (7, 4), joints (9, 3)) of the outputs
        self._history: deque[tuple[float, np.ndarray, np.ndarray]] = deque()

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
        """One frame in, the newest output's joints out: (9, 3) in the input frame.

        With `lag_frames` 0 the output is this frame's; with a lag it is the
        frame `lag_frames` before (`step` says which, with its stamp), and NaN
        until the first one is out. Before the first frame with all nine
        joints the output is NaN. A stamp not after the previous one is
        ignored (counted in `dropped`) and the previous output returned.
        """
        self.step(stamp_s, joints, valid)
        return np.full((9, 3), np.nan) if self._last is None else self._last.joints.copy()

    def step(self, stamp_s: float, joints: np.ndarray | None, valid: np.ndarray | None = None) -> list[PriorOutput]:
        """One frame in; the frames it completes out, oldest first (usually one; none while the lag fills,
        or for an out-of-order stamp; several when a gap flushes the open frames).

        joints: (9, 3), or None for a frame without an estimate. valid: (9,)
        bool, False for joints to fill (NaN joints are never used). A frame
        before the filter has started (no frame with all nine joints yet)
        comes straight back with NaN joints.
        """
        obs = np.full((9, 3), np.nan) if joints is None else np.asarray(joints, np.float64).reshape(9, 3)
        seen = np.isfinite(obs).all(1) & (np.ones(9, bool) if valid is None else np.asarray(valid, bool))
        newest = self._open[-1].stamp_s if self._open else (self._stamps[-1] if self._stamps else None)
        if newest is not None and stamp_s <= newest:
            self.dropped += 1
            return []
        out = []
        if newest is not None and stamp_s - newest > self.config.restart_gap_s:
            out = self.flush()
            self._restart()
        if not self._outputs and not self._open and not seen.all():
            return out + [self._emit(PriorOutput(float(stamp_s), np.full((9, 3), np.nan), True, 0))]
        self._update_lengths(obs, seen)
        self.frames_in += 1
        self._unseen = np.where(seen, 0, self._unseen + 1)
        self._open.append(_OpenFrame(float(stamp_s), obs, seen, self._unseen.copy()))
        self._solve()
        while len(self._open) > self.config.lag_frames:
            out.append(self._output_oldest())
        return out

    @property
    def open_frames(self) -> int:
        """Frames in, not output yet (at most `lag_frames`)."""
        return len(self._open)

    def flush(self) -> list[PriorOutput]:
        """Output every open frame now (the end of a stream): their look-ahead is cut short."""
        return [self._output_oldest() for _ in range(len(self._open))]

    @property
    def initialising(self) -> bool:
        """True until the bone lengths have settled: the first `warm_up_min_frames` frames since the reset are
        always initialising, the next ones until every measured bone length's standard error
        (`bone_length_sd`) is under `settled_length_sd_m`, and none after the first `warm_up_frames`."""
        c = self.config
        if self.frames_in <= c.warm_up_min_frames:
            return True
        if self.frames_in > c.warm_up_frames:
            return False
        sd = self.bone_length_sd()
        return not (np.isfinite(sd).all() and sd.max() < c.settled_length_sd_m)

    def _output_oldest(self) -> PriorOutput:
        frame = self._open.pop(0)
        self._stamps.append(frame.stamp_s)
        self._outputs.append(frame.solution)
        self._history.append((frame.stamp_s, rotations_of(frame.solution[None])[0], frame.solution.copy()))
        while self._history[0][0] < frame.stamp_s - self.config.history_s:
            self._history.popleft()
        return self._emit(PriorOutput(frame.stamp_s, frame.solution.copy(), self.initialising, len(self._open)))

    def _emit(self, output: PriorOutput) -> PriorOutput:
        self._last = output
        return output

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
        # Between grid lags: the vertex of the parabola through the best lag and its neighbours (at 5 FPS
        # the grid alone would miss the cycle by up to 0.1 s, a tenth of it).
        shift = 0.0
        if 0 < best < len(lags) - 1:
            before, at, after = mismatch[best - 1:best + 2]
            curvature = before - 2 * at + after
            shift = float(np.clip(0.5 * (before - after) / curvature, -0.5, 0.5)) if curvature > 0 else 0.0
        return float((lags[best] + shift) * dt)

    def _rotations_at(self, when: float, rows: slice) -> np.ndarray | None:
        """Output rotations `rows` (R, 4) interpolated at stamp `when` (the newest after it); None before the
        history."""
        t = np.array([h[0] for h in self._history])
        if when < t[0]:
            return None
        rot = np.stack([h[1][rows] for h in self._history])
        q = np.stack([[np.interp(when, t, rot[:, j, k]) for k in range(4)] for j in range(rot.shape[1])])
        return q / np.linalg.norm(q, axis=-1, keepdims=True)

    def _joints_at(self, when: np.ndarray) -> np.ndarray:
        """Output joints (W, 9, 3) interpolated at stamps `when` (W,); NaN outside the history."""
        t = np.array([h[0] for h in self._history])
        joints = np.stack([h[2] for h in self._history]).reshape(len(t), 27)
        out = np.stack([np.interp(when, t, joints[:, k], left=np.nan, right=np.nan) for k in range(27)], 1)
        return out.reshape(len(when), 9, 3)

    def _periodic_targets(self, period: float | None, stamp_s: float, seen: np.ndarray
                          ) -> tuple[np.ndarray, np.ndarray]:
        """Rotation targets from the gait's periodicity, (7, 4) and (7,) weights (zero without a clear cycle).

        Every rotation: its value one cycle ago (the gait repeats, so this averages
        noise over cycles without lag). A hidden leg: the other leg half a cycle
        ago, mirrored through the sagittal plane (M R M with M = diag(1, -1, 1)).
        """
        c = self.config
        target, weight = np.zeros((7, 4)), np.zeros(7)
        if period is None:
            return target, weight
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
        the frames in, plus the estimator's systematic error (`length_bias_sd`
        of the length, which no number of frames averages out); the
        population's is the spread of the training bodies' proportions plus
        the leg length's own uncertainty. So the first frames lean on the
        population the more the noisier the joints, the subject's own lengths
        take over as frames come in, and the population keeps a share where
        its spread is comparable to the estimator's bias (the hip width).
        """
        return self._length_estimate()[0]

    def bone_length_sd(self) -> np.ndarray:
        """Standard error (m) of the subject's measured bone lengths from the joint noise alone (sigma_obs over
        the frames seen; the warm-up waits for it): how far the running estimate has converged. inf before
        a bone is seen."""
        return np.sqrt(self._length_estimate()[1])

    def _length_estimate(self) -> tuple[np.ndarray, np.ndarray]:
        """`bone_lengths()` and the measurement's noise variances, (7,) each."""
        if not self._lengths:
            return np.full(7, np.nan), np.full(7, np.inf)
        c = self.config
        history = np.stack(self._lengths)
        sigma2 = c.observation_sigma_m ** 2
        # Variance of one frame's length along the bone: two joints' noise along one axis.
        frame_var = np.full(7, 2 * sigma2 / 3)
        frame_var[0] /= 4   # the half hip width is half the distance between two joints
        squared = np.nanmedian(history ** 2, axis=0)
        # The noise along all three axes lengthens the bone: debias by the noise's whole variance.
        lengths = np.sqrt(np.maximum(squared - 3 * frame_var, 0.25 * squared))
        frames = np.isfinite(history).sum(0).astype(float)
        lengths[1:4] = lengths[4:7] = 0.5 * (lengths[1:4] + lengths[4:7])
        frames[1:4] = frames[4:7] = frames[1:4] + frames[4:7]
        noise_var = np.where(frames > 0, np.pi / 2 * frame_var / np.maximum(frames, 1.0), np.inf)
        ratios, ratio_sds = self.meta.get("length_ratios"), self.meta.get("length_ratio_sds")
        if ratios is None or ratio_sds is None:
            return lengths, noise_var
        # The estimator's own systematic error does not average out over frames.
        measured_var = noise_var + (c.length_bias_sd * lengths) ** 2
        leg = 0.5 * (lengths[1] + lengths[2] + lengths[4] + lengths[5])
        population = np.asarray(ratios) * leg
        population_var = ((np.asarray(ratio_sds) * leg) ** 2
                          + np.asarray(ratios) ** 2 * (measured_var[1] + measured_var[2]))
        weight = population_var / (population_var + measured_var)
        return np.where(frames > 0, weight * lengths + (1 - weight) * population, population), noise_var

    def _solve(self) -> None:
        """Solve the open frames together (their solutions updated in place); the outputs before them fixed."""
        c = self.config
        open_ = self._open
        fixed = list(self._outputs)
        fixed_stamps = list(self._stamps)
        # Start each new frame from the observation where there is one, the motion's prediction elsewhere.
        for k, frame in enumerate(open_):
            if frame.solution is None:
                before = fixed + [f.solution for f in open_[:k]]
                stamps = fixed_stamps + [f.stamp_s for f in open_[:k]]
                pred = (frame.observed if not before else
                        _extrapolated(before[-2:], stamps[-2:], frame.stamp_s, self._damping(frame.unseen)))
                frame.solution = np.where(frame.seen[:, None], frame.observed, pred)
        period = self.cycle_period()
        motion = self._motion_terms(fixed, fixed_stamps, period)
        start = self._linear_start(fixed, motion)
        targets = [self._periodic_targets(period, f.stamp_s, f.seen) for f in open_]
        pose = inverse(torch.as_tensor(start, dtype=torch.float64))
        # The newest frame's rotations with a strong periodic target start from it.
        filled = targets[-1][1] >= c.fill_sigma ** -2
        pose.rotations[-1, filled] = torch.as_tensor(targets[-1][0][filled], dtype=torch.float64)
        K = len(open_)
        energy = _Energy(
            field=self._field, prior_weight=c.prior_weight, knee_sigma=c.knee_limit_sigma_rad,
            lengths=torch.as_tensor(self.bone_lengths()).expand(K, 7),
            observed=torch.as_tensor(np.stack([np.where(f.seen[:, None], np.nan_to_num(f.observed), 0.0)
                                               for f in open_])),
            data_w=torch.as_tensor(np.stack([f.seen / c.observation_sigma_m ** 2 for f in open_]))[..., None],
            rot_target=torch.as_tensor(np.stack([t for t, _ in targets])),
            rot_w=torch.as_tensor(np.stack([w for _, w in targets])),
            fixed=torch.as_tensor(np.stack(fixed)) if fixed else torch.zeros(0, 9, 3, dtype=torch.float64),
            motion=None if motion is None else (torch.as_tensor(motion[0]),
                                                *(torch.as_tensor(m)[..., None] for m in motion[1:3]),
                                                torch.as_tensor(motion[3])))
        solved = levenberg_marquardt(energy, pose.root, pose.heading, pose.rotations, c.iterations)
        for frame, joints in zip(open_, solved.numpy()):
            frame.solution = joints

    def _linear_start(self, fixed: list, motion: tuple | None) -> np.ndarray:
        """The open frames' joints (K, 9, 3) minimising the data and motion terms alone (no kinematics, prior or
        periodicity): a linear least-squares problem per joint, whose solution starts the nonlinear solve close
        to its optimum, so that few iterations suffice however many frames are open."""
        open_ = self._open
        K, F = len(open_), len(fixed)
        current = np.stack([f.solution for f in open_])
        if motion is None or K == 1 and F == 0:
            return current
        c = self.config
        # Normal equations per joint: A (9, K, K) x = rhs (9, K, 3). A pull to the current solution keeps
        # joints without data or motion determined; for the hidden joints of frames solved before (all but the
        # newest) it is as strong as an observation, so that their fill from the gait cycle is kept.
        data_w = np.stack([f.seen / c.observation_sigma_m ** 2 for f in open_], 1)        # (9, K)
        anchor_w = np.full((9, K), 1e-6 / c.observation_sigma_m ** 2)
        anchor_w[:, :-1] += (data_w[:, :-1] == 0) / c.observation_sigma_m ** 2
        A = np.zeros((9, K, K))
        A[:, range(K), range(K)] = anchor_w
        rhs = np.einsum("jk,kjd->jkd", anchor_w, current)
        A[:, range(K), range(K)] += data_w
        rhs += np.einsum("jk,kjd->jkd", data_w, np.nan_to_num(np.stack([f.observed for f in open_])))
        track = fixed + [None] * K
        index, coefficients, weight, offset = motion
        for m in range(len(index)):
            # The residual sum_n c_n x_n is linear in the open frames, the fixed ones are constants.
            coeffs: dict[int, np.ndarray] = {}
            for i, cf in zip(index[m], coefficients[m]):
                coeffs[int(i)] = coeffs.get(int(i), 0.0) + cf
            const = sum((cf[:, None] * track[i] for i, cf in coeffs.items() if i < F), -offset[m])
            free = {i - F: cf for i, cf in coeffs.items() if i >= F}
            w = weight[m]
            for i, ci in free.items():
                rhs[:, i] -= (w * ci)[:, None] * const
                for j, cj in free.items():
                    A[:, i, j] += w * ci * cj
        return np.linalg.solve(A, rhs).transpose(1, 0, 2)

    def _damping(self, unseen: np.ndarray) -> np.ndarray:
        """(9, 1) share of the last velocity carried into a prediction, by frames each joint has been unseen."""
        c = self.config
        return np.where(unseen > 0, c.hidden_velocity_damping ** unseen, c.velocity_damping)[:, None]

    def _motion_terms(self, fixed: list, fixed_stamps: list, period: float | None
                      ) -> tuple[np.ndarray, ...] | None:
        """The open frames' motion residuals `sum_n coeffs[m, n] track[index[m, n]] - offset[m]` with their
        weights, as (M, 4) indices into [fixed outputs..., open frames...], (M, 4, 9) coefficients, (M, 9)
        weights and (M, 9, 3) offsets; None without any.

        Acceleration: `track[i] - (track[i-1] + gain (track[i-1] - track[i-2]))`, the prediction's damped
        constant velocity; a frame right after the first output is predicted to stand still (no velocity
        yet); a frame with no output before it has no motion term. Jerk (with a lag only): the third divided
        difference over the frame and the three before it, in metres at 30 FPS (the joints not observed in
        the frame under `hidden_jerk_sigma_m`). A causal filter that extrapolated a constant acceleration
        from its own outputs would oscillate; with frames after it to hold it, the jerk term lets the window
        follow the steady accelerations of the swing and damps the noise that a pure acceleration penalty
        passes. With a gait `period` (and `cycle_motion_scale` > 0) an acceleration row's offset is the same
        difference of the outputs one cycle earlier, where the history holds it: the walk's own accelerations
        (the heel strike, the swing) then cost nothing, and an observed joint's sigma becomes
        `cycle_motion_scale` observation sigmas: the recurring motion is known, so its noise can be damped
        harder. The jerk rows keep expecting none: offset too, they let the fixed lag pass an estimator's
        error that repeats with the cycle (docs/prior.md, "Choices").
        """
        c = self.config
        stamps = fixed_stamps + [f.stamp_s for f in self._open]
        rows = []
        for k, frame in enumerate(self._open):
            index = len(fixed) + k
            if index == 0 or (index == 1 and not fixed):
                continue
            dt = stamps[index] - stamps[index - 1]
            sigma = np.where(frame.seen, c.motion_sigma_m, c.hidden_motion_sigma_m)
            weight = ((dt * MOTION_REFERENCE_FPS) ** 2 * sigma) ** -2.0
            if index == 1:
                gain, before = np.zeros(9), index     # (a zero coefficient: any index will do)
            else:
                ratio = dt / max(stamps[index - 1] - stamps[index - 2], 1e-6)
                gain, before = ratio * self._damping(frame.unseen)[:, 0], index - 2
            # Four slots like the jerk's; the last is unused (zero coefficient).
            rows.append(([index, index - 1, before, index], [np.ones(9), -(1 + gain), gain, np.zeros(9)], weight,
                         frame.seen, True))
            if c.lag_frames > 0 and c.jerk_sigma_m > 0 and index >= 3:
                t = np.array(stamps[index - 3:index + 1])
                # Third divided difference (jerk / 6) times 6 dt_ref^3: x3 - 3 x2 + 3 x1 - x0 at 30 FPS.
                divided = [1.0 / np.prod([t[n] - t[m] for m in range(4) if m != n]) for n in range(4)]
                scale = 6.0 / MOTION_REFERENCE_FPS ** 3
                sigma = np.where(frame.seen, c.jerk_sigma_m, c.hidden_jerk_sigma_m)
                rows.append((list(range(index - 3, index + 1)), [np.full(9, scale * d) for d in divided],
                             sigma ** -2.0, frame.seen, False))
        if not rows:
            return None
        index, coeffs, weight, seen, acceleration = (np.array(x) for x in zip(*rows))
        coeffs, offset = coeffs.astype(float), np.zeros((len(rows), 9, 3))
        if period is not None and c.cycle_motion_scale > 0:
            # The acceleration rows' differences one cycle earlier, where the history holds all their frames.
            past = self._joints_at(np.array(stamps)[index[acceleration]].ravel() - period)
            past = past.reshape(-1, 4, 9, 3)
            known = np.isfinite(past).all((1, 2, 3))
            rows_known = np.flatnonzero(acceleration)[known]
            offset[rows_known] = (coeffs[rows_known][..., None] * past[known]).sum(1)
            # sigma_motion -> cycle_motion_scale sigma_obs for the observed joints of those rows.
            tighter = (c.cycle_motion_scale * c.observation_sigma_m / c.motion_sigma_m) ** -2.0
            weight[rows_known] = np.where(seen[rows_known], weight[rows_known] * tighter, weight[rows_known])
        return index, coeffs, weight, offset


def _extrapolated(before: list[np.ndarray], stamps: list[float], stamp_s: float, damping: np.ndarray) -> np.ndarray:
    """Constant-velocity prediction at `stamp_s` from the last one or two (9, 3) poses, damped per joint."""
    if len(before) < 2:
        return before[-1]
    ratio = (stamp_s - stamps[-1]) / max(stamps[-1] - stamps[-2], 1e-6)
    return before[-1] + damping * ratio * (before[-1] - before[-2])


def rotations_of(joints: np.ndarray) -> np.ndarray:
    """The prior's pose (seven local quaternions, w >= 0) of nine-joint skeletons. (B, 9, 3) -> (B, 7, 4)."""
    return canonical_hemisphere(inverse(torch.as_tensor(np.asarray(joints, np.float64))).rotations).float().numpy()


@dataclass
class _Energy:
    """One solve's energy over a batch of candidate solutions (the terms of the module docstring). float64."""

    field: PoseNDF              # the Pose-NDF weights in float64
    prior_weight: float
    knee_sigma: float
    lengths: torch.Tensor       # (K, 7) bone lengths
    observed: torch.Tensor      # (K, 9, 3), zero where not observed
    data_w: torch.Tensor        # (K, 9, 1) 1 / sigma_obs^2, zero where not observed
    rot_target: torch.Tensor    # (K, 7, 4) periodic targets
    rot_w: torch.Tensor         # (K, 7) their weights
    fixed: torch.Tensor         # (F, 9, 3) outputs before the window
    motion: tuple | None        # `_motion_terms` as tensors: (M, 4) indices, (M, 4, 9, 1) coefficients, (M, 9, 1)
                                # weights, (M, 9, 3) offsets

    def terms(self, root: torch.Tensor, heading: torch.Tensor, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Candidates (B, K, 3), (B, K), (B, K, 7, 4) unit quaternions -> the squared terms' residuals (B, R) and
        the Pose-NDF distances (B, K)."""
        B, K = heading.shape
        joints = forward(LimbPose(root, heading, q, self.lengths.expand(B, K, 7)))
        canonical = canonical_hemisphere(q)
        parts = [(self.data_w.sqrt() * (joints - self.observed)).flatten(1),
                 (self.rot_w.sqrt()[..., None] * (canonical - self.rot_target)).flatten(1),
                 # The knee's anatomical limit, which the learned field only approximates.
                 (torch.relu(-knee_flexion_signed(joints.flatten(0, 1))) / self.knee_sigma).reshape(B, -1)]
        if self.motion is not None:
            index, coeffs, weight, offset = self.motion
            track = torch.cat([self.fixed.expand(B, *self.fixed.shape), joints], 1)
            parts.append((weight.sqrt() * ((coeffs * track[:, index]).sum(2) - offset)).flatten(1))
        return torch.cat(parts, 1), self.field(canonical.flatten(0, 1)).clamp_min(0).reshape(B, K)

    def value(self, residuals: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        """E of each candidate: (B, R), (B, K) -> (B,)."""
        return (residuals ** 2).sum(1) + self.prior_weight * distances.sum(1)


_SWING_REST = torch.tensor(REST_DIRECTIONS, dtype=torch.float64)
#: Variables per frame: root (3), heading (1), seven swing directions (2 each, in their tangent planes).
_FRAME_VARIABLES = 18


def _tangents(directions: torch.Tensor) -> torch.Tensor:
    """Two unit vectors orthogonal to each unit direction and to each other. (..., 3) -> (..., 2, 3)."""
    helper = torch.zeros_like(directions)
    helper[..., 0] = 1.0
    helper[directions[..., 0].abs() > 0.9] = torch.tensor([0.0, 1.0, 0.0], dtype=directions.dtype)
    first = torch.linalg.cross(helper, directions)
    first = first / first.norm(dim=-1, keepdim=True)
    return torch.stack([first, torch.linalg.cross(directions, first)], -2)


def _moved(root: torch.Tensor, heading: torch.Tensor, directions: torch.Tensor, delta: torch.Tensor
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Candidates from root (K, 3), heading (K,) and unit swing directions (K, 7, 3) moved by `delta` (B, K, 18):
    (B, K, 3) roots, (B, K) headings, (B, K, 7, 4) rotations (each the swing from its rest direction to its
    direction, as `kinematics.inverse` makes them: a twist would change no joint but would take the Pose-NDF
    field off the poses it was trained on) and (B, K, 7, 3) directions. A direction moves in its tangent plane
    (a move along it would change nothing, and the solver would find no curvature to bound it)."""
    B, K = delta.shape[:2]
    d = directions + (delta[..., 4:].reshape(B, K, 7, 2, 1) * _tangents(directions)).sum(-2)
    d = d / d.norm(dim=-1, keepdim=True)
    return root + delta[..., :3], heading + delta[..., 3], swing(_SWING_REST, d), d


def levenberg_marquardt(energy: _Energy, root: torch.Tensor, heading: torch.Tensor, rotations: torch.Tensor,
                        iterations: int, step: float = 1e-6) -> torch.Tensor:
    """Minimise `energy` from root (K, 3), heading (K,) and swing rotations (K, 7, 4); returns the joints (K, 9, 3).

    Gauss-Newton with Levenberg-Marquardt damping. The Pose-NDF term w f is
    linearised as the squares (w / 2 f_k) f^2 (iteratively reweighted: the
    same gradient at the current f_k, plus curvature along grad f), so one
    Jacobian serves all terms. The Jacobian comes from forward differences
    of all 18 K variables in one batched evaluation (float64), which on
    these tiny tensors costs about what one backward pass does; four damping
    strengths are tried in one more evaluation and the best that lowers the
    energy is taken. A handful of iterations reach what the L-BFGS solver it
    replaced reached in twenty (docs/prior.md, "Solver").
    """
    K = heading.shape[0]
    n = _FRAME_VARIABLES * K
    directions = (rotation_matrix(rotations) @ _SWING_REST[..., None])[..., 0]
    damping = 1e-3
    probes = torch.cat([torch.zeros(1, n, dtype=torch.float64), step * torch.eye(n, dtype=torch.float64)])
    with torch.no_grad():
        for _ in range(iterations):
            residuals, distances = energy.terms(*_moved(root, heading, directions, probes.reshape(n + 1, K, -1))[:3])
            current = energy.value(residuals[:1], distances[:1])[0]
            reweighted = (energy.prior_weight / (2 * distances[0].clamp_min(0.01))).sqrt() * distances
            residuals = torch.cat([residuals, reweighted], 1)
            jacobian = (residuals[1:] - residuals[0]).T / step                # (R, n)
            hessian = 2 * jacobian.T @ jacobian
            gradient = 2 * jacobian.T @ residuals[0]
            scale = torch.diag(hessian.diagonal().clamp_min(1e-6))
            strengths = damping * torch.tensor([0.1, 1.0, 10.0, 100.0], dtype=torch.float64)
            steps = torch.stack([torch.linalg.solve(hessian + s * scale, -gradient) for s in strengths])
            candidates = _moved(root, heading, directions, steps.reshape(len(strengths), K, -1))
            values = energy.value(*energy.terms(*candidates[:3]))
            best = int(values.argmin())
            if values[best] < current:
                root, heading, rotations, directions = (x[best] for x in candidates)
                damping = float(strengths[best]) / 3
            else:
                damping *= 100
        return forward(LimbPose(root, heading, rotations, energy.lengths))
