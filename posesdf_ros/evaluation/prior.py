"""`posesdf bench prior`: denoising and occlusion filling of joint streams, after Pose-NDF's table.

Sequences: generated walkers (`WalkingSubject`, joints only, no rendering)
of test bodies, every condition in turn, treadmill and overground, at
`fps`. Each gets isotropic Gaussian joint noise whose RMS 3D error is
`noise_mm` (per-axis sigma = noise_mm / sqrt(3)), and in the occlusion
setting the far (right) leg's knee, ankle and foot are hidden for runs of
`hidden_frames` frames every `hidden_every` frames (flagged invalid, as a
lateral view would leave them).

Besides this synthetic noise, `estimator_sequences` are the estimator's
own joints (the nodes' pipeline: segmentation, RotNet, PoseSDF fast,
tracked) on rendered walks of test bodies seen from the side, so that the
far leg is occluded as it really is; their rows have `input` "estimator".

Methods: `raw` (the noisy joints; hidden joints carry the last observed
value forward), `one_euro` (Casiez et al.'s One-Euro filter per
coordinate, hidden joints carried forward), `savgol` (an offline centred
Savitzky-Golay filter over linearly interpolated gaps: an upper reference
that looks ahead), `posendf` (our `PosePrior`, causal: `lag_frames` 0),
`posendf_lag` (the same at the node's default fixed lag). Metrics: MPJPE
(mm), jitter (mean joint acceleration, mm/s^2), acceleration error (mean
norm of the acceleration of the error, estimate minus truth, mm/s^2: the
jitter without the true motion's own; `accel_error_mm_s2`, also kept
under its former name `error_jitter_mm_s2`), both also as raw's over the
method's (how many times lower than raw), implausible frames (%: a bone
more than 10 % off the subject's true length, or a knee hyperextended by
more than 5 deg; for the prior also after its warm-up alone, and the
frames it flagged as initialising), latency (frames of look-ahead), and
for the occlusion setting the MPJPE of the hidden joints alone.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..skeleton import JOINT_INDEX, bone_lengths

METHODS: tuple[str, ...] = ("raw", "one_euro", "savgol", "posendf", "posendf_lag")
NOISE_MM: tuple[float, ...] = (10.0, 20.0, 40.0)
HIDDEN_JOINTS: tuple[int, ...] = tuple(JOINT_INDEX[f"right_{j}"] for j in ("knee", "ankle", "foot"))
BONE_TOLERANCE = 0.10
HYPEREXTENSION_DEG = 5.0


@dataclass(frozen=True)
class SequenceSpec:
    subjects: int = 10
    fps: float = 30.0
    duration_s: float = 4.0
    split: str = "test"
    seed: int = 1
    hidden_frames: int = 15        # half a second at 30 FPS
    hidden_every: int = 30


def walking_joint_sequences(spec: SequenceSpec) -> list[np.ndarray]:
    """Ground-truth joint sequences, each (T, 9, 3) in the gravity frame.

    Walkers (`data.walker.draw_walker`) of bodies 0..subjects-1 of the
    spec's split, seen from V2 by a sampled camera, all drawn from one
    random stream in turn.
    """
    from ..data.body import BodyModel
    from ..data.gait import CONDITIONS
    from ..data.walker import draw_walker

    body_model = BodyModel()
    rng = np.random.default_rng([spec.seed, 4409])
    times = np.arange(int(spec.duration_s * spec.fps)) / spec.fps
    out = []
    for i in range(spec.subjects):
        walker = draw_walker(rng, CONDITIONS[i % len(CONDITIONS)], body=i, split=spec.split, view="V2",
                             camera="sampled", mode=("treadmill", "overground")[i % 2],
                             duration_s=spec.duration_s, body_model=body_model)
        # Not walker.joints (a matmul): einsum rounds differently in the last bit (<= 4e-16 m), and these
        # are the joints the bench has always scored against.
        bodies, transforms = walker.poses(times)
        out.append(np.einsum("tij,tkj->tki", transforms[:, :3, :3], bodies.joints) + transforms[:, None, :3, 3])
    return out


@dataclass(frozen=True)
class EstimatorSpec:
    """Rendered walks whose joints come from the estimator (the nodes' pipeline, tracked)."""

    walks: int = 4
    duration_s: float = 3.0
    fps: float = 30.0
    views: tuple[str, ...] = ("V2", "V5")     # left and right lateral: the far leg is occluded
    seed: int = 1
    profile: str = "fast"


def estimator_sequences(spec: EstimatorSpec, progress: bool = True) -> list[dict]:
    """Per walk `{truth, estimates}`, (T, 9, 3) each in the gravity frame, estimates NaN where the pipeline
    gave none; each walk starts at its first estimate. Walk i: condition i of `CONDITIONS` (cycling), view
    i of `spec.views` (cycling), the scene cloud with realistic noise, `NodePipeline` with the nodes'
    defaults (segmentation, RotNet, PoseSDF `spec.profile`, tracking)."""
    from tqdm import tqdm

    from ..data.gait import CONDITIONS
    from ..inference.pipeline import NodePipeline, PipelineSettings
    from .sequences import walking_sequence

    out = []
    bar = tqdm(total=spec.walks * int(spec.duration_s * spec.fps), desc="estimator on rendered walks",
               unit="frame", disable=not progress)
    for i in range(spec.walks):
        frames = walking_sequence(int(spec.duration_s * spec.fps), spec.fps, spec.views[i % len(spec.views)],
                                  CONDITIONS[i % len(CONDITIONS)], seed=spec.seed + i)
        pipe = NodePipeline(PipelineSettings(profile=spec.profile))
        estimates = []
        for f in frames:
            step = pipe.step(f["stamp_s"], f["points"], f["camera_to_gravity"][:3, 3])
            estimates.append(np.full((9, 3), np.nan) if step.raw_joints is None else step.raw_joints)
            bar.update()
        estimates, truth = np.asarray(estimates, np.float64), np.stack([f["joints"] for f in frames]).astype(float)
        found = np.flatnonzero(np.isfinite(estimates).all((1, 2)))
        if len(found):
            out.append({"truth": truth[found[0]:], "estimates": estimates[found[0]:]})
    bar.close()
    return out


def hidden_mask(frames: int, spec: SequenceSpec, rng: np.random.Generator) -> np.ndarray:
    """(T, 9) bool, True where a joint is hidden: runs of the far leg, starting after one second."""
    mask = np.zeros((frames, 9), bool)
    start = int(spec.fps) + int(rng.integers(0, spec.hidden_every))
    while start < frames:
        mask[start:start + spec.hidden_frames, list(HIDDEN_JOINTS)] = True
        start += spec.hidden_frames + spec.hidden_every
    return mask


class OneEuro:
    """Casiez et al.'s One-Euro filter over arrays (each element its own filter)."""

    def __init__(self, min_cutoff_hz: float = 1.0, beta: float = 0.5, derivative_cutoff_hz: float = 1.0):
        self.min_cutoff, self.beta, self.d_cutoff = min_cutoff_hz, beta, derivative_cutoff_hz
        self._x = self._dx = self._t = None

    @staticmethod
    def _alpha(cutoff, dt):
        tau = 1.0 / (2 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def __call__(self, t: float, x: np.ndarray) -> np.ndarray:
        if self._x is None:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = max(t - self._t, 1e-6)
        dx = (x - self._x) / dt
        a_d = self._alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1 - a_d) * self._dx
        a = self._alpha(self.min_cutoff + self.beta * np.abs(self._dx), dt)
        self._x = a * x + (1 - a) * self._x
        self._t = t
        return self._x.copy()


def carried_forward(obs: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    """Hidden joints hold their last observed value. (T, 9, 3), (T, 9) -> (T, 9, 3)."""
    out = obs.copy()
    for t in range(1, len(out)):
        out[t, hidden[t]] = out[t - 1, hidden[t]]
    return out


def run_one_euro(stamps: np.ndarray, obs: np.ndarray, hidden: np.ndarray, min_cutoff_hz: float,
                 beta: float) -> np.ndarray:
    f = OneEuro(min_cutoff_hz, beta)
    out = np.empty_like(obs)
    for t in range(len(obs)):
        out[t] = f(stamps[t], obs[t])
        if hidden[t].any() and t > 0:
            out[t, hidden[t]] = out[t - 1, hidden[t]]
            f._x[hidden[t]] = out[t - 1, hidden[t]]
    return out


def interpolated(obs: np.ndarray, missing: np.ndarray) -> np.ndarray:
    """(T, 9, 3) joints with the `missing` (T, 9) ones linearly interpolated over time (held at the ends)."""
    filled = obs.copy()
    t = np.arange(len(obs))
    for j in range(9):
        if missing[:, j].any():
            ok = ~missing[:, j]
            for k in range(3):
                filled[:, j, k] = np.interp(t, t[ok], obs[ok, j, k])
    return filled


def run_savgol(obs: np.ndarray, hidden: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    from scipy.signal import savgol_filter

    return savgol_filter(interpolated(obs, hidden), window, order, axis=0, mode="interp")


def run_prior(prior, stamps: np.ndarray, obs: np.ndarray, hidden: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The prior's outputs (T, 9, 3) placed at their frames' stamps, and their `initialising` flags (T,); the
    frames still open at the end are flushed."""
    prior.reset()
    outputs = [o for s, j, h in zip(stamps, obs, hidden) for o in prior.step(float(s), j, ~h)] + prior.flush()
    index = {float(s): i for i, s in enumerate(stamps)}
    joints, flagged = np.full(obs.shape, np.nan), np.ones(len(stamps), bool)
    for o in outputs:
        joints[index[o.stamp_s]], flagged[index[o.stamp_s]] = o.joints, o.initialising
    return joints, flagged


def metrics(pred: np.ndarray, truth: np.ndarray, fps: float, hidden: np.ndarray | None = None,
            flagged: np.ndarray | None = None) -> dict:
    """MPJPE (mm), jitter and acceleration error (mm/s^2), implausible frames (%: all, and those not `flagged`
    as initialising, (T,) bool), hidden-joint MPJPE (mm) of one sequence."""
    import torch

    from ..gait.kinematics import knee_flexion_signed

    ok = np.isfinite(pred).all((1, 2)) & np.isfinite(truth).all((1, 2))
    flagged = np.zeros(len(pred), bool) if flagged is None else np.asarray(flagged, bool)
    pred, truth, flagged = pred[ok], truth[ok], flagged[ok]
    err = np.linalg.norm(pred - truth, axis=-1) * 1000
    true_len = np.median(bone_lengths(truth), axis=0)
    bad_bone = (np.abs(bone_lengths(pred) / true_len - 1) > BONE_TOLERANCE).any(1)
    knees = knee_flexion_signed(torch.as_tensor(pred)).numpy()
    bad_knee = (np.rad2deg(knees) < -HYPEREXTENSION_DEG).any(1)
    bad = bad_bone | bad_knee
    accel_error = _mean_acceleration_mm_s2(pred - truth, fps)
    out = {"mpjpe_mm": float(err.mean()), "jitter_mm_s2": _mean_acceleration_mm_s2(pred, fps),
           "accel_error_mm_s2": accel_error, "error_jitter_mm_s2": accel_error,
           "implausible_pct": float(100 * bad.mean()),
           "implausible_after_warm_up_pct": float(100 * bad[~flagged].mean()) if (~flagged).any() else 0.0,
           "initialising_frames": int(flagged.sum()), "frames": int(ok.sum())}
    if hidden is not None and hidden[ok].any():
        out["hidden_mpjpe_mm"] = float(err[hidden[ok]].mean())
    return out


def _mean_acceleration_mm_s2(points: np.ndarray, fps: float) -> float:
    """Mean magnitude of the second difference of (T, J, 3) metres, as an acceleration in mm/s^2."""
    return float(np.linalg.norm(points[2:] - 2 * points[1:-1] + points[:-2], axis=-1).mean() * fps ** 2 * 1000)


def _noisy(truth: np.ndarray, noise_mm: float, rng: np.random.Generator) -> np.ndarray:
    return truth + rng.normal(0.0, noise_mm / 1000 / math.sqrt(3), truth.shape)


def _mean_rows(results: list[dict]) -> dict:
    """Frame-weighted mean of per-sequence metrics."""
    w = np.array([r["frames"] for r in results], float)
    keys = [k for k in results[0] if k != "frames"]
    return {k: float(np.average([r[k] for r in results], weights=w)) for k in keys}


def noisy_inputs(sequences: list[np.ndarray], spec: SequenceSpec, noise_mm: float, occlusion: bool
                 ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(truth, observed, hidden (T, 9) bool) per sequence, the noise and the hidden runs drawn per sequence."""
    inputs = []
    for i, truth in enumerate(sequences):
        rng = np.random.default_rng([spec.seed, i, int(noise_mm), int(occlusion)])
        obs = _noisy(truth, noise_mm, rng)
        hidden = hidden_mask(len(truth), spec, rng) if occlusion else np.zeros(truth.shape[:2], bool)
        inputs.append((truth, obs, hidden))
    return inputs


def evaluate_methods(sequences: list[np.ndarray], spec: SequenceSpec, noise_mm: float, occlusion: bool,
                     settings: dict, priors: dict | None = None, methods: tuple[str, ...] = METHODS,
                     progress: bool = False) -> list[dict]:
    """Rows `{method, input, noise_mm, occlusion, mpjpe_mm, accel_error_mm_s2, latency_frames, ...}` on
    `sequences` of true joints with generated noise. `priors`: {"posendf": PosePrior, "posendf_lag": ...}."""
    inputs = noisy_inputs(sequences, spec, noise_mm, occlusion)
    rows = score_methods(inputs, spec.fps, f"{noise_mm:g}", settings, priors, methods, occlusion,
                         desc=f"{noise_mm:g} mm{' occluded' if occlusion else ''}", progress=progress)
    for r in rows:
        r |= {"input": "noise", "noise_mm": noise_mm, "occlusion": "far_leg" if occlusion else "none"}
    return rows


def score_methods(inputs: list[tuple[np.ndarray, np.ndarray, np.ndarray]], fps: float, baseline_key: str,
                  settings: dict, priors: dict | None, methods: tuple[str, ...], score_hidden: bool,
                  desc: str = "", progress: bool = False) -> list[dict]:
    """Each method on (truth (T, 9, 3), observed (T, 9, 3), hidden (T, 9)) sequences: one row per method with
    the frame-weighted mean metrics, its latency and its ratios to raw. `baseline_key`: the noise level whose
    tuned One-Euro and Savitzky-Golay settings are used."""
    from tqdm import tqdm

    priors = priors or {}
    per_method: dict[str, list[dict]] = {m: [] for m in methods}
    for truth, obs, hidden in tqdm(inputs, desc=desc, unit="seq", disable=not progress):
        stamps = np.arange(len(truth)) / fps
        # Frames without an estimate: the baselines hold the last value (as they do for hidden joints).
        obs_held = np.where(np.isfinite(obs), obs, carried_forward(obs, hidden))
        outputs = {
            "raw": lambda: (carried_forward(obs, hidden), None),
            "one_euro": lambda: (run_one_euro(stamps, obs_held, hidden, *settings["one_euro"][baseline_key]),
                                 None),
            "savgol": lambda: (run_savgol(obs, hidden, settings["savgol"][baseline_key]), None),
            "posendf": lambda: run_prior(priors["posendf"], stamps, obs, hidden),
            "posendf_lag": lambda: run_prior(priors["posendf_lag"], stamps, obs, hidden),
        }
        for m in methods:
            pred, flagged = outputs[m]()
            per_method[m].append(metrics(pred, truth, fps, hidden if score_hidden else None, flagged))
    rows = []
    for m in methods:
        latency = {"savgol": (settings["savgol"][baseline_key] - 1) // 2 if "savgol" in settings else 0,
                   "posendf_lag": priors["posendf_lag"].config.lag_frames if "posendf_lag" in priors else 0}
        rows.append({"method": m, **_mean_rows(per_method[m]), "latency_frames": latency.get(m, 0)})
    raw = next((r for r in rows if r["method"] == "raw"), None)
    for r in rows if raw else []:
        r["jitter_ratio_raw"] = raw["jitter_mm_s2"] / r["jitter_mm_s2"]
        r["accel_error_ratio_raw"] = r["error_jitter_ratio_raw"] = raw["accel_error_mm_s2"] / r["accel_error_mm_s2"]
    return rows


def tune_baselines(sequences: list[np.ndarray], spec: SequenceSpec, noise_levels=NOISE_MM) -> dict:
    """Best One-Euro (min cutoff, beta) and Savitzky-Golay window per noise level, by MPJPE on `sequences`."""
    settings: dict = {"one_euro": {}, "savgol": {}}
    for noise in noise_levels:
        key = f"{noise:g}"
        best = None
        # Up to settings that barely filter, so the tuned filter is never worse than raw by its grid.
        for mc in (0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
            for beta in (0.05, 0.5, 2.0, 8.0, 32.0):
                s = {"one_euro": {key: (mc, beta)}, "savgol": {key: 5}}
                err = evaluate_methods(sequences, spec, noise, False, s, methods=("one_euro",))[0]["mpjpe_mm"]
                best = min(best or (err, (mc, beta)), (err, (mc, beta)))
        settings["one_euro"][key] = best[1]
        best = None
        for window in (5, 7, 9, 11, 15, 21):
            s = {"one_euro": {}, "savgol": {key: window}}
            err = evaluate_methods(sequences, spec, noise, False, s, methods=("savgol",))[0]["mpjpe_mm"]
            best = min(best or (err, window), (err, window))
        settings["savgol"][key] = best[1]
    return settings


#: The prior's tuning keeps, of the settings within this share of the best MPJPE, the smoothest.
TUNING_MPJPE_SLACK = 0.05


def tune_prior(prior, sequences: list[np.ndarray], spec: SequenceSpec, noise_mm: float = 20.0,
               motion_sigmas=(0.01, 0.015, 0.02, 0.03, 0.05), prior_weights=(300.0, 1000.0)) -> dict:
    """`motion_sigma_m` and `prior_weight` for `prior` (its lag as configured) at one noise level (observation
    sigma = the noise): of the settings whose MPJPE is within `TUNING_MPJPE_SLACK` of the best, the one with
    the lowest acceleration error (smoothness bought at no real cost in accuracy).

    `grid` keeps every setting's MPJPE and jitters with raw's over them, so the trade-off of a smaller
    motion sigma (smoother, but lagging) can be read from the result."""
    from dataclasses import replace

    base = prior.config
    grid = []
    for ms in motion_sigmas:
        for pw in prior_weights:
            prior.config = replace(base, observation_sigma_m=noise_mm / 1000, motion_sigma_m=ms, prior_weight=pw)
            raw, row = evaluate_methods(sequences, spec, noise_mm, False, {}, {"posendf": prior},
                                        methods=("raw", "posendf"))
            grid.append({"motion_sigma_m": ms, "prior_weight": pw, **{k: row[k] for k in (
                "mpjpe_mm", "jitter_mm_s2", "accel_error_mm_s2", "jitter_ratio_raw", "accel_error_ratio_raw")}})
    prior.config = base
    best_mpjpe = min(g["mpjpe_mm"] for g in grid)
    chosen = min((g for g in grid if g["mpjpe_mm"] <= (1 + TUNING_MPJPE_SLACK) * best_mpjpe),
                 key=lambda g: g["accel_error_mm_s2"])
    return {"motion_sigma_m": chosen["motion_sigma_m"], "prior_weight": chosen["prior_weight"],
            "lag_frames": base.lag_frames, "tuned_at_noise_mm": noise_mm, "raw_mpjpe_mm": raw["mpjpe_mm"],
            "grid": grid}


#: Weights of the acceleration term against the position term of `linear_bound`'s fits (per frame at 30 FPS).
LINEAR_BOUND_WEIGHTS: tuple[float, ...] = (0.0, 0.001, 0.01, 0.1)


def linear_bound(inputs: list[tuple[np.ndarray, ...]], fps: float, lag: int, past: int = 12,
                 accel_weights=LINEAR_BOUND_WEIGHTS) -> list[dict]:
    """The best linear time-invariant smoother with `lag` frames of look-ahead, fitted with the truth in hand on
    the very sequences it is scored on: an optimistic bound on what a linear filter reaches there with that
    look-ahead (Savitzky-Golay, a moving average; a steady-state Kalman filter as far as its weights fade within
    the `past` frames).

    inputs: (truth (T, 9, 3), observed (T, 9, 3), ...), observed NaN where missing (interpolated). Per joint
    one set of taps (the frame, `past` before it, `lag` after it) for all three axes, by least squares on
    (1 - w) |position error|^2 + w |30 x acceleration error|^2 (both per frame at 30 FPS); scored on the frames
    with a full window, as MPJPE and raw / acceleration error (both over those frames). One row per weight w."""
    def windows(x: np.ndarray) -> np.ndarray:      # (T,) -> (T - past - lag, past + lag + 1)
        return np.stack([x[i:len(x) - past - lag + i] for i in range(past + lag + 1)], 1)

    def second(x: np.ndarray) -> np.ndarray:
        return x[2:] - 2 * x[1:-1] + x[:-2]

    truths = [i[0] for i in inputs]
    filled = [interpolated(i[1], ~np.isfinite(i[1]).all(-1)) for i in inputs]
    accel_scale = fps ** 2 / 30.0       # the second difference as an acceleration per frame at 30 FPS
    rows = []
    for w in accel_weights:
        taps = []
        for j in range(9):
            X = [windows(o[:, j, k]) for o in filled for k in range(3)]
            y = [t[past:len(t) - lag, j, k] for t in truths for k in range(3)]
            A = np.concatenate([np.sqrt(1 - w) * np.concatenate(X),
                                np.sqrt(w) * accel_scale * np.concatenate([second(x) for x in X])])
            b = np.concatenate([np.sqrt(1 - w) * np.concatenate(y),
                                np.sqrt(w) * accel_scale * np.concatenate([second(v) for v in y])])
            taps.append(np.linalg.lstsq(A, b, rcond=None)[0])
        errors, raw_accel, accel = [], [], []
        for t, o in zip(truths, filled):
            pred = np.stack([np.stack([windows(o[:, j, k]) @ taps[j] for k in range(3)], -1) for j in range(9)], 1)
            truth, obs = t[past:len(t) - lag], o[past:len(t) - lag]
            errors.append(np.linalg.norm(pred - truth, axis=-1).ravel())
            raw_accel.append(_mean_acceleration_mm_s2(obs - truth, fps) * (len(truth) - 2))
            accel.append(_mean_acceleration_mm_s2(pred - truth, fps) * (len(truth) - 2))
        rows.append({"lag_frames": lag, "past_frames": past, "accel_weight": w,
                     "mpjpe_mm": float(np.concatenate(errors).mean() * 1000),
                     "accel_error_ratio_raw": float(sum(raw_accel) / sum(accel))})
    return rows


def run_bench(spec: SequenceSpec, noise_levels=NOISE_MM, tune_subjects: int = 3, weights: str | None = None,
              lag_frames: int | None = None, estimator: EstimatorSpec | None = None, progress: bool = True,
              iterations: int | None = None, jerk_sigma_m: float | None = None) -> dict:
    """The whole benchmark: tuning on training bodies, then every method on test bodies, with generated noise
    and (when `estimator` is given) on the estimator's own joints. `lag_frames`, `iterations` and
    `jerk_sigma_m` default to the pose_prior node's."""
    from dataclasses import replace

    import torch

    from ..inference.prior import SOLVER, PosePrior
    from ..parameters import POSE_PRIOR_PARAMETERS
    from ..provenance import device_description, git_commit

    torch.set_num_threads(1)
    node = {prm.name: prm.default for prm in POSE_PRIOR_PARAMETERS}
    lag = node["lag_frames"] if lag_frames is None else lag_frames
    solver = {"iterations": node["iterations"] if iterations is None else iterations,
              "jerk_sigma_m": node["jerk_sigma_m"] if jerk_sigma_m is None else jerk_sigma_m}
    priors = {"posendf": PosePrior.from_pretrained(weights, lag_frames=0, **solver),
              "posendf_lag": PosePrior.from_pretrained(weights, lag_frames=lag, **solver)}
    tune_spec = replace(spec, subjects=tune_subjects, split="train", seed=spec.seed + 100, duration_s=2.0)
    tune_seqs = walking_joint_sequences(tune_spec)
    settings = tune_baselines(tune_seqs, tune_spec, noise_levels)
    for name, prior in priors.items():
        settings[name] = tune_prior(prior, tune_seqs, tune_spec)
    settings["tune_subjects"] = tune_subjects
    sequences = walking_joint_sequences(spec)
    rows = []
    # Sequences on which the best linear smoothers are fitted and scored (no hidden runs: they have nothing to
    # interpolate from).
    bound_inputs = {f"{noise:g} mm noise": noisy_inputs(sequences, spec, noise, False) for noise in noise_levels}
    for occlusion in (False, True):
        for noise in noise_levels:
            for name, prior in priors.items():
                prior.config = replace(prior.config, observation_sigma_m=noise / 1000,
                                       motion_sigma_m=settings[name]["motion_sigma_m"],
                                       prior_weight=settings[name]["prior_weight"])
            rows += evaluate_methods(sequences, spec, noise, occlusion, settings, priors, progress=progress)
    result = {"device": device_description("cpu"), "git_commit": git_commit(), "rows": rows, "settings": settings,
              "truth_jitter_mm_s2": _mean_rows([metrics(s, s, spec.fps) for s in sequences])["jitter_mm_s2"],
              "spec": spec.__dict__, "weights": priors["posendf"].meta.get("weights_dir"),
              "prior_config": {name: prior.config.to_dict() for name, prior in priors.items()}, "solver": SOLVER}
    if estimator is not None:
        walks = estimator_sequences(estimator, progress=progress)
        for name, prior in priors.items():
            prior.config = replace(prior.config, observation_sigma_m=node["observation_sigma_m"])
        errors = np.concatenate([np.linalg.norm(w["estimates"] - w["truth"], axis=-1).ravel() for w in walks])
        raw_mm = float(np.nanmean(errors)) * 1000       # over the frames with an estimate
        key = f"{min(noise_levels, key=lambda n: abs(n - raw_mm)):g}"
        inputs = [(w["truth"], w["estimates"], ~np.isfinite(w["estimates"]).all(-1)) for w in walks]
        est_rows = score_methods(inputs, estimator.fps, key, settings, priors, METHODS, False,
                                 desc="estimator output", progress=progress)
        for r in est_rows:
            r |= {"input": "estimator", "noise_mm": None, "occlusion": "as_rendered", "baselines_tuned_at_mm": key}
        rows += est_rows
        bound_inputs["estimator"] = inputs
        result["estimator"] = estimator.__dict__ | {
            "raw_mpjpe_mm": float(raw_mm), "frames": int(sum(len(w["truth"]) for w in walks)),
            "frames_without_estimate": int(sum((~np.isfinite(w["estimates"]).all((1, 2))).sum() for w in walks)),
            "observation_sigma_m": node["observation_sigma_m"]}
    result["linear_bound"] = [{"input": name, **row} for name, inputs in bound_inputs.items()
                              for lag_frames in (0, lag) for row in linear_bound(inputs, spec.fps, lag_frames)]
    return result


def table_lines(result: dict) -> list[str]:
    """The markdown tables of a `run_bench` result, with how they were made."""
    spec = result["spec"]
    est = result.get("estimator")
    lines = [f"Generated walkers: {spec['subjects']} {spec['split']} bodies (seed {spec['seed']}), "
             f"{spec['duration_s']:g} s each at {spec['fps']:g} FPS, every condition, treadmill and overground; "
             f"isotropic joint noise (RMS 3D error = noise); occlusion: the right knee, ankle and foot hidden for "
             f"{spec['hidden_frames']} frames every {spec['hidden_frames'] + spec['hidden_every']}, from the "
             f"second second on. Baselines and the prior's weights tuned on training bodies (settings in the "
             f"JSON). The true motion's own jitter is {result['truth_jitter_mm_s2']:.0f} mm/s^2. "
             f"Made by `{result.get('command', 'posesdf bench prior')}` on {result.get('device', 'cpu')}."]
    lagged = result.get("prior_config", {}).get("posendf_lag")
    if lagged:
        jerk = lagged.get("jerk_sigma_m", 0.0)
        lines[0] += (f" The priors ran {lagged['iterations']} {result.get('solver', 'L-BFGS')} iterations a frame; "
                     "the fixed lag's jerk term " + (f"at sigma {jerk:g} m." if jerk > 0 else "was off."))
    if est:
        lines += ["", f"Estimator output (`input` estimator): {est['walks']} rendered walks of test bodies, "
                  f"{est['duration_s']:g} s at {est['fps']:g} FPS, views {', '.join(est['views'])} (lateral: the "
                  f"far leg occluded as rendered), seed {est['seed']}, the nodes' pipeline (segmentation, RotNet, "
                  f"PoseSDF `{est['profile']}`, tracking); {est['frames']} frames, "
                  f"{est['frames_without_estimate']} without an estimate; the estimator's MPJPE "
                  f"{est['raw_mpjpe_mm']:.1f} mm; the prior at the node's observation sigma "
                  f"({1000 * est['observation_sigma_m']:g} mm), the baselines at the settings of the nearest "
                  f"noise level."]
    lines += ["", "Acceleration error: the mean norm of the acceleration of (estimate - truth). Implausible after "
              "warm-up: frames the prior had not flagged as initialising (for the baselines: all frames).", "",
              "| input | occlusion | method | MPJPE (mm) | hidden joints (mm) | accel error (mm/s^2) | raw / accel "
              "error | jitter (mm/s^2) | implausible (%) | after warm-up (%) | flagged frames / seq | latency "
              "(frames) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        source = f"{r['noise_mm']:g} mm noise" if r.get("input", "noise") == "noise" else "estimator"
        hidden = f"{r['hidden_mpjpe_mm']:.1f}" if "hidden_mpjpe_mm" in r else "-"
        ratio = f"{r['accel_error_ratio_raw']:.2f}" if "accel_error_ratio_raw" in r else "-"
        lines.append(f"| {source} | {r['occlusion']} | {r['method']} | {r['mpjpe_mm']:.1f} | {hidden} | "
                     f"{r['accel_error_mm_s2']:.0f} | {ratio} | {r['jitter_mm_s2']:.0f} | "
                     f"{r['implausible_pct']:.2f} | {r['implausible_after_warm_up_pct']:.2f} | "
                     f"{r['initialising_frames']:.1f} | {r['latency_frames']} |")
    bound = result.get("linear_bound")
    if bound:
        weights = sorted({r["accel_weight"] for r in bound})
        lines += ["", f"The best linear smoother: one set of taps per joint (the frame, {bound[0]['past_frames']} "
                  "before it and the lag's after it) fitted by least squares with the truth in hand on the very "
                  "sequences it is scored on, weighing the acceleration error by w against the position error: an "
                  "optimistic bound on a linear filter with that look-ahead (Savitzky-Golay, a moving average; a "
                  "steady-state Kalman filter as far as its weights fade within that past). Cells: MPJPE (mm) / "
                  "raw over acceleration error, on the frames with a full window "
                  "(`evaluation.prior.linear_bound`).", "",
                  "| input | lag (frames) | " + " | ".join(f"w = {w:g}" for w in weights) + " |",
                  "|---|---|" + "---|" * len(weights)]
        for name in dict.fromkeys(r["input"] for r in bound):
            for lag_frames in dict.fromkeys(r["lag_frames"] for r in bound):
                cells = {r["accel_weight"]: r for r in bound if r["input"] == name and r["lag_frames"] == lag_frames}
                lines.append(f"| {name} | {lag_frames} | " + " | ".join(
                    f"{cells[w]['mpjpe_mm']:.1f} / {cells[w]['accel_error_ratio_raw']:.2f}" for w in weights) + " |")
    for name in ("posendf", "posendf_lag"):
        tuning = result["settings"].get(name, {})
        if "grid" not in tuning:
            continue
        lines += ["", f"The tuning grid of `{name}` (lag {tuning['lag_frames']} frames; "
                  f"{result['settings'].get('tune_subjects', 'the')} training walkers, "
                  f"{tuning['tuned_at_noise_mm']:g} mm noise, raw MPJPE {tuning['raw_mpjpe_mm']:.1f} mm; used "
                  f"above: of the settings within {100 * TUNING_MPJPE_SLACK:g} % of the best MPJPE, the lowest "
                  f"acceleration error: motion sigma {tuning['motion_sigma_m']:g} m, prior weight "
                  f"{tuning['prior_weight']:g}):", "",
                  "| motion sigma (m) | prior weight | MPJPE (mm) | accel error (mm/s^2) | raw / accel error |",
                  "|---|---|---|---|---|"]
        lines += [f"| {g['motion_sigma_m']:g} | {g['prior_weight']:g} | {g['mpjpe_mm']:.1f} | "
                  f"{g['accel_error_mm_s2']:.0f} | {g['accel_error_ratio_raw']:.2f} |" for g in tuning["grid"]]
    return lines


def write_report(result: dict, out: Path) -> Path:
    """prior.md (table), prior.json (rows + settings) and prior.png (MPJPE and jitter by noise) in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "prior.json").write_text(json.dumps(result, indent=1))
    lines = table_lines(result)
    (out / "prior.md").write_text("\n".join(lines) + "\n")

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    plain = [r for r in result["rows"] if r["occlusion"] == "none" and r.get("input", "noise") == "noise"]
    noises = sorted({r["noise_mm"] for r in plain})
    for m in METHODS:
        rows = sorted((r for r in plain if r["method"] == m), key=lambda r: r["noise_mm"])
        if rows:
            axes[0].plot(noises, [r["mpjpe_mm"] for r in rows], "o-", label=m)
            axes[1].plot(noises, [r["accel_error_mm_s2"] / 1000 for r in rows], "o-", label=m)
    axes[0].set(xlabel="joint noise (mm)", ylabel="MPJPE (mm)", title="accuracy")
    axes[1].set(xlabel="joint noise (mm)", ylabel="acceleration error (m/s^2)",
                title="acceleration error (mean |accel(estimate - truth)|)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "prior.png", dpi=110)
    plt.close(fig)
    return out / "prior.md"


def add_parser(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "prior", help="the Pose-NDF prior (causal and fixed-lag) against raw, One-Euro and Savitzky-Golay",
        description="Denoise generated joint streams (test bodies, every condition) with joint noise of "
                    "10, 20 and 40 mm, with and without the far leg hidden for runs of frames, and the "
                    "estimator's own joints on rendered lateral walks. The baselines' settings and the prior's "
                    "motion/prior weights (causal, and at the fixed lag) are first tuned on training bodies. For "
                    "scale, the report adds the best linear smoother fitted with the truth in hand on the scored "
                    "sequences (causal and at the lag).")
    p.add_argument("--subjects", type=int, default=10, help="test walkers (default 10)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per walker (default 4)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the joint stream (default 30)")
    p.add_argument("--seed", type=int, default=1, help="noise and gait seed (default 1)")
    p.add_argument("--lag", type=int, default=None,
                   help="lag_frames of the fixed-lag rows (default: the pose_prior node's default)")
    p.add_argument("--iterations", type=int, default=None,
                   help="solver iterations per frame of both priors (default: the pose_prior node's)")
    p.add_argument("--jerk-sigma", type=float, default=None,
                   help="jerk_sigma_m of the fixed-lag prior (default: the pose_prior node's)")
    p.add_argument("--estimator-walks", type=int, default=4,
                   help="rendered walks scored with the estimator's own joints (default 4; 0 skips them)")
    p.add_argument("--weights", type=Path, default=None, help="Pose-NDF weights folder (default: shipped)")
    p.add_argument("--json", type=Path, default=None,
                   help="write the rows {method, input, noise_mm, occlusion, mpjpe_mm, jitter_mm_s2, "
                        "accel_error_mm_s2 (= error_jitter_mm_s2), jitter_ratio_raw, accel_error_ratio_raw "
                        "(= error_jitter_ratio_raw), implausible_pct, implausible_after_warm_up_pct, "
                        "initialising_frames, latency_frames, hidden_mpjpe_mm (occluded rows)} here")
    p.add_argument("--out", type=Path, default=None, help="folder for prior.md, prior.json and prior.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_bench_prior)


def _bench_prior(args) -> int:
    spec = SequenceSpec(subjects=args.subjects, fps=args.fps, duration_s=args.duration, seed=args.seed)
    estimator = EstimatorSpec(walks=args.estimator_walks, seed=args.seed) if args.estimator_walks > 0 else None
    result = run_bench(spec, weights=str(args.weights) if args.weights else None, lag_frames=args.lag,
                       estimator=estimator, progress=not args.quiet, iterations=args.iterations,
                       jerk_sigma_m=args.jerk_sigma)
    result["command"] = ("posesdf bench prior " + f"--subjects {args.subjects} --duration {args.duration:g} "
                         f"--fps {args.fps:g} --seed {args.seed} --estimator-walks {args.estimator_walks}"
                         + (f" --lag {args.lag}" if args.lag is not None else "")
                         + (f" --iterations {args.iterations}" if args.iterations is not None else "")
                         + (f" --jerk-sigma {args.jerk_sigma:g}" if args.jerk_sigma is not None else ""))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result["rows"], indent=1))
    if args.out:
        print((write_report(result, args.out)).read_text())
    else:
        for r in result["rows"]:
            print(r)
    return 0
