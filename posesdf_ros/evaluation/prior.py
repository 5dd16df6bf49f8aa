"""`posesdf bench prior`: denoising and occlusion filling of joint streams, after Pose-NDF's table.

Sequences: generated walkers (`WalkingSubject`, joints only, no rendering)
of test bodies, every condition in turn, treadmill and overground, at
`fps`. Each gets isotropic Gaussian joint noise whose RMS 3D error is
`noise_mm` (per-axis sigma = noise_mm / sqrt(3)), and in the occlusion
setting the far (right) leg's knee, ankle and foot are hidden for runs of
`hidden_frames` frames every `hidden_every` frames (flagged invalid, as a
lateral view would leave them).

Methods: `raw` (the noisy joints; hidden joints carry the last observed
value forward), `one_euro` (Casiez et al.'s One-Euro filter per
coordinate, hidden joints carried forward), `savgol` (an offline centred
Savitzky-Golay filter over linearly interpolated gaps: an upper reference
that looks ahead), `posendf` (our `PosePrior`). Metrics: MPJPE (mm),
jitter (mean joint acceleration, mm/s^2), error jitter (mean acceleration
of the error, estimate minus truth, mm/s^2: the jitter without the true
motion's own acceleration), both also as raw's over the method's (how
many times lower than raw), implausible frames (%: a bone
more than 10 % off the subject's true length, or a knee hyperextended by
more than 5 deg), latency (frames of look-ahead), and for the occlusion
setting the MPJPE of the hidden joints alone.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..skeleton import JOINT_INDEX, bone_lengths

METHODS: tuple[str, ...] = ("raw", "one_euro", "savgol", "posendf")
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


def run_savgol(obs: np.ndarray, hidden: np.ndarray, window: int, order: int = 2) -> np.ndarray:
    from scipy.signal import savgol_filter

    filled = obs.copy()
    t = np.arange(len(obs))
    for j in range(9):
        if hidden[:, j].any():
            ok = ~hidden[:, j]
            for k in range(3):
                filled[:, j, k] = np.interp(t, t[ok], obs[ok, j, k])
    return savgol_filter(filled, window, order, axis=0, mode="interp")


def run_prior(prior, stamps: np.ndarray, obs: np.ndarray, hidden: np.ndarray) -> np.ndarray:
    prior.reset()
    return np.stack([prior.filter(float(s), o, ~h) for s, o, h in zip(stamps, obs, hidden)])


def metrics(pred: np.ndarray, truth: np.ndarray, fps: float, hidden: np.ndarray | None = None) -> dict:
    """MPJPE (mm), jitter and error jitter (mm/s^2), implausible frames (%), hidden-joint MPJPE (mm) of one
    sequence."""
    import torch

    from ..gait.kinematics import knee_flexion_signed

    ok = np.isfinite(pred).all((1, 2))
    pred, truth = pred[ok], truth[ok]
    err = np.linalg.norm(pred - truth, axis=-1) * 1000
    true_len = np.median(bone_lengths(truth), axis=0)
    bad_bone = (np.abs(bone_lengths(pred) / true_len - 1) > BONE_TOLERANCE).any(1)
    knees = knee_flexion_signed(torch.as_tensor(pred)).numpy()
    bad_knee = (np.rad2deg(knees) < -HYPEREXTENSION_DEG).any(1)
    out = {"mpjpe_mm": float(err.mean()), "jitter_mm_s2": _mean_acceleration_mm_s2(pred, fps),
           "error_jitter_mm_s2": _mean_acceleration_mm_s2(pred - truth, fps),
           "implausible_pct": float(100 * (bad_bone | bad_knee).mean()), "frames": int(ok.sum())}
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


def evaluate_methods(sequences: list[np.ndarray], spec: SequenceSpec, noise_mm: float, occlusion: bool,
                     settings: dict, prior=None, methods: tuple[str, ...] = METHODS,
                     progress: bool = False) -> list[dict]:
    """Rows `{method, noise_mm, occlusion, mpjpe_mm, jitter_mm_s2, implausible_pct, latency_frames, ...}`."""
    from tqdm import tqdm

    per_method: dict[str, list[dict]] = {m: [] for m in methods}
    for i, truth in enumerate(tqdm(sequences, desc=f"{noise_mm:g} mm{' occluded' if occlusion else ''}",
                                   unit="seq", disable=not progress)):
        rng = np.random.default_rng([spec.seed, i, int(noise_mm), int(occlusion)])
        obs = _noisy(truth, noise_mm, rng)
        hidden = hidden_mask(len(truth), spec, rng) if occlusion else np.zeros(truth.shape[:2], bool)
        stamps = np.arange(len(truth)) / spec.fps
        key = f"{noise_mm:g}"
        outputs = {
            "raw": lambda: carried_forward(obs, hidden),
            "one_euro": lambda: run_one_euro(stamps, obs, hidden, *settings["one_euro"][key]),
            "savgol": lambda: run_savgol(obs, hidden, settings["savgol"][key]),
            "posendf": lambda: run_prior(prior, stamps, obs, hidden),
        }
        for m in methods:
            per_method[m].append(metrics(outputs[m](), truth, spec.fps, hidden if occlusion else None))
    rows = []
    for m in methods:
        # Only the offline filter looks ahead: half its window.
        latency = (settings["savgol"][f"{noise_mm:g}"] - 1) // 2 if m == "savgol" else 0
        rows.append({"method": m, "noise_mm": noise_mm, "occlusion": "far_leg" if occlusion else "none",
                     **_mean_rows(per_method[m]), "latency_frames": latency})
    raw = next((r for r in rows if r["method"] == "raw"), None)
    for r in rows if raw else []:
        r["jitter_ratio_raw"] = raw["jitter_mm_s2"] / r["jitter_mm_s2"]
        r["error_jitter_ratio_raw"] = raw["error_jitter_mm_s2"] / r["error_jitter_mm_s2"]
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


def tune_prior(prior, sequences: list[np.ndarray], spec: SequenceSpec, noise_mm: float = 20.0,
               motion_sigmas=(0.005, 0.01, 0.02, 0.05, 0.1), prior_weights=(0.0, 100.0, 300.0, 1000.0)) -> dict:
    """Best `motion_sigma_m` and `prior_weight` by MPJPE at one noise level (observation sigma = the noise).

    `grid` keeps every setting's MPJPE and jitters with raw's over them, so the trade-off of a smaller
    motion sigma (smoother, but lagging) can be read from the result."""
    from dataclasses import replace

    base = prior.config
    best, grid = None, []
    for ms in motion_sigmas:
        for pw in prior_weights:
            prior.config = replace(base, observation_sigma_m=noise_mm / 1000, motion_sigma_m=ms, prior_weight=pw)
            raw, row = evaluate_methods(sequences, spec, noise_mm, False, {}, prior, methods=("raw", "posendf"))
            grid.append({"motion_sigma_m": ms, "prior_weight": pw, **{k: row[k] for k in (
                "mpjpe_mm", "jitter_mm_s2", "error_jitter_mm_s2", "jitter_ratio_raw", "error_jitter_ratio_raw")}})
            best = min(best or (row["mpjpe_mm"], ms, pw), (row["mpjpe_mm"], ms, pw))
    prior.config = base
    return {"motion_sigma_m": best[1], "prior_weight": best[2], "tuned_at_noise_mm": noise_mm,
            "raw_mpjpe_mm": raw["mpjpe_mm"], "grid": grid}


def run_bench(spec: SequenceSpec, noise_levels=NOISE_MM, tune_subjects: int = 3, weights: str | None = None,
              progress: bool = True) -> dict:
    """The whole benchmark: tuning on training bodies, then every method on test bodies."""
    from dataclasses import replace

    import torch

    from ..inference.prior import PosePrior
    from ..provenance import device_description, git_commit

    torch.set_num_threads(1)
    prior = PosePrior.from_pretrained(weights)
    tune_spec = replace(spec, subjects=tune_subjects, split="train", seed=spec.seed + 100, duration_s=2.0)
    tune_seqs = walking_joint_sequences(tune_spec)
    settings = tune_baselines(tune_seqs, tune_spec, noise_levels)
    settings["posendf"] = tune_prior(prior, tune_seqs, tune_spec)
    settings["tune_subjects"] = tune_subjects
    sequences = walking_joint_sequences(spec)
    rows = []
    for occlusion in (False, True):
        for noise in noise_levels:
            prior.config = replace(prior.config, observation_sigma_m=noise / 1000,
                                   motion_sigma_m=settings["posendf"]["motion_sigma_m"],
                                   prior_weight=settings["posendf"]["prior_weight"])
            rows += evaluate_methods(sequences, spec, noise, occlusion, settings, prior, progress=progress)
    truth_jitter = _mean_rows([metrics(s, s, spec.fps) for s in sequences])["jitter_mm_s2"]
    return {"device": device_description("cpu"), "git_commit": git_commit(), "rows": rows, "settings": settings,
            "truth_jitter_mm_s2": truth_jitter, "spec": spec.__dict__, "weights": prior.meta.get("weights_dir"),
            "prior_config": prior.config.to_dict()}


def table_lines(result: dict) -> list[str]:
    """The markdown table of a `run_bench` result, with how it was made."""
    spec = result["spec"]
    lines = [f"Generated walkers: {spec['subjects']} {spec['split']} bodies (seed {spec['seed']}), "
             f"{spec['duration_s']:g} s each at {spec['fps']:g} FPS, every condition, treadmill and overground; "
             f"isotropic joint noise (RMS 3D error = noise); occlusion: the right knee, ankle and foot hidden for "
             f"{spec['hidden_frames']} frames every {spec['hidden_frames'] + spec['hidden_every']}, from the "
             f"second second on. Baselines and the prior's weights tuned on training bodies (settings in the "
             f"JSON). The true motion's own jitter is {result['truth_jitter_mm_s2']:.0f} mm/s^2. "
             f"Made by `{result.get('command', 'posesdf bench prior')}` on {result.get('device', 'cpu')}.", "",
             "| noise (mm) | occlusion | method | MPJPE (mm) | hidden joints (mm) | jitter (mm/s^2) | raw / jitter "
             "| error jitter (mm/s^2) | raw / error jitter | implausible (%) | latency (frames) |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        cells = {k: f"{r[k]:{fmt}}" if k in r else "-" for k, fmt in (
            ("hidden_mpjpe_mm", ".1f"), ("jitter_ratio_raw", ".2f"), ("error_jitter_mm_s2", ".0f"),
            ("error_jitter_ratio_raw", ".2f"))}
        lines.append(f"| {r['noise_mm']:g} | {r['occlusion']} | {r['method']} | {r['mpjpe_mm']:.1f} | "
                     f"{cells['hidden_mpjpe_mm']} | {r['jitter_mm_s2']:.0f} | {cells['jitter_ratio_raw']} | "
                     f"{cells['error_jitter_mm_s2']} | {cells['error_jitter_ratio_raw']} | "
                     f"{r['implausible_pct']:.2f} | {r['latency_frames']} |")
    tuning = result["settings"]["posendf"]
    if "grid" in tuning:
        lines += ["", f"The prior's tuning grid ({result['settings'].get('tune_subjects', 'the')} training walkers, "
                  f"{tuning['tuned_at_noise_mm']:g} mm noise, raw MPJPE {tuning['raw_mpjpe_mm']:.1f} mm; the "
                  f"setting of lowest MPJPE is used above):", "",
                  "| motion sigma (m) | prior weight | MPJPE (mm) | raw / jitter | raw / error jitter |",
                  "|---|---|---|---|---|"]
        lines += [f"| {g['motion_sigma_m']:g} | {g['prior_weight']:g} | {g['mpjpe_mm']:.1f} | "
                  f"{g['jitter_ratio_raw']:.2f} | {g['error_jitter_ratio_raw']:.2f} |" for g in tuning["grid"]]
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
    plain = [r for r in result["rows"] if r["occlusion"] == "none"]
    noises = sorted({r["noise_mm"] for r in plain})
    for m in METHODS:
        rows = sorted((r for r in plain if r["method"] == m), key=lambda r: r["noise_mm"])
        if rows:
            axes[0].plot(noises, [r["mpjpe_mm"] for r in rows], "o-", label=m)
            axes[1].plot(noises, [r["jitter_mm_s2"] / 1000 for r in rows], "o-", label=m)
    axes[1].axhline(result["truth_jitter_mm_s2"] / 1000, color="k", ls=":", label="true motion")
    axes[0].set(xlabel="joint noise (mm)", ylabel="MPJPE (mm)", title="accuracy")
    axes[1].set(xlabel="joint noise (mm)", ylabel="jitter (m/s^2)", title="jitter (mean joint acceleration)")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "prior.png", dpi=110)
    plt.close(fig)
    return out / "prior.md"


def add_parser(bench_subparsers) -> None:
    p = bench_subparsers.add_parser(
        "prior", help="the Pose-NDF prior against raw, One-Euro and Savitzky-Golay on noisy and occluded gait",
        description="Denoise generated joint streams (test bodies, every condition) with joint noise of "
                    "10, 20 and 40 mm, with and without the far leg hidden for runs of frames. The baselines' "
                    "settings and the prior's motion/prior weights are first tuned on training bodies.")
    p.add_argument("--subjects", type=int, default=10, help="test walkers (default 10)")
    p.add_argument("--duration", type=float, default=4.0, help="seconds per walker (default 4)")
    p.add_argument("--fps", type=float, default=30.0, help="frame rate of the joint stream (default 30)")
    p.add_argument("--seed", type=int, default=1, help="noise and gait seed (default 1)")
    p.add_argument("--weights", type=Path, default=None, help="Pose-NDF weights folder (default: shipped)")
    p.add_argument("--json", type=Path, default=None,
                   help="write the rows {method, noise_mm, occlusion, mpjpe_mm, jitter_mm_s2, error_jitter_mm_s2, "
                        "jitter_ratio_raw, error_jitter_ratio_raw, implausible_pct, latency_frames, "
                        "hidden_mpjpe_mm (occluded rows)} here")
    p.add_argument("--out", type=Path, default=None, help="folder for prior.md, prior.json and prior.png")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_bench_prior)


def _bench_prior(args) -> int:
    spec = SequenceSpec(subjects=args.subjects, fps=args.fps, duration_s=args.duration, seed=args.seed)
    result = run_bench(spec, weights=str(args.weights) if args.weights else None, progress=not args.quiet)
    result["command"] = ("posesdf bench prior " + f"--subjects {args.subjects} --duration {args.duration:g} "
                         f"--fps {args.fps:g} --seed {args.seed}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result["rows"], indent=1))
    if args.out:
        print((write_report(result, args.out)).read_text())
    else:
        for r in result["rows"]:
            print(r)
    return 0
