"""Gait parameters measured on generated walking sequences against the generator's values.

`walking_sequences` poses anny walkers with the data engine's gait model
(no rendering: the joints come straight from the posed body) and
`evaluate_gait` runs `gait_parameters` on them, clean and with Gaussian
joint noise, and compares with `truth.true_parameters`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.body import BodyModel
from ..data.gait import CONDITIONS
from ..data.scene import WalkingSubject
from ..data.walker import draw_walker
from ..gait.angles import joint_angles
from ..gait.events import GaitEvents, forward_offsets, walking_direction
from ..gait.parameters import GaitParameters, gait_parameters
from ..gait.truth import true_parameters
from ..skeleton import SIDES


@dataclass
class WalkingSequence:
    """One generated walk: stamps (T,) s, joints (T, 9, 3) gravity frame, and its subject."""

    name: str
    condition: str
    mode: str
    stamps_s: np.ndarray
    joints: np.ndarray
    subject: WalkingSubject


def walking_sequences(subjects: int = 10, conditions: tuple[str, ...] = CONDITIONS, fps: float = 15.0,
                      cycles: float = 3.0, seed: int = 0, body_model: BodyModel | None = None):
    """Yield walks of test bodies 0..subjects-1 in each condition.

    Gait (cadence 95-125 steps/min, amplitudes, asymmetry, warp), view and
    start phase are drawn from `seed` (`data.walker.draw_walker`, the spec's
    camera placement); treadmill and overground alternate.
    """
    body_model = body_model or BodyModel()
    for i in range(subjects):
        for c, condition in enumerate(conditions):
            mode = ("treadmill", "overground")[(i + c) % 2]
            walker = draw_walker(np.random.default_rng([seed, i, c]), condition, body=i, view=None, mode=mode,
                                 cycles=cycles, body_model=body_model)
            stamps = np.arange(0.0, walker.subject.duration_s, 1.0 / fps)
            yield WalkingSequence(f"test-{i:04d}/{condition}/{mode}", condition, mode, stamps,
                                  walker.joints(stamps), walker.subject)


def event_errors(found: GaitEvents, truth: GaitEvents, stamps_s: np.ndarray, cycle_s: float) -> dict:
    """Timing errors (s, found - true) of matched events and whether they land on the true event's frame.

    A true event is matched by the nearest found event of the same kind and
    side within a quarter cycle; true events closer than half a cycle to
    either end of the sequence are not counted as missed.
    """
    out = {}
    for kind in ("heel_strike_s", "toe_off_s"):
        errors, frame_offsets, missed = [], [], 0
        for side in SIDES:
            f, tr = getattr(found, kind)[side], getattr(truth, kind)[side]
            for t in tr:
                inside = stamps_s[0] + cycle_s / 2 <= t <= stamps_s[-1] - cycle_s / 2
                if not len(f) or np.abs(f - t).min() > cycle_s / 4:
                    missed += int(inside)
                    continue
                e = float(f[np.abs(f - t).argmin()] - t)
                errors.append(e)
                frame_offsets.append(int(np.abs(stamps_s - (t + e)).argmin() - np.abs(stamps_s - t).argmin()))
        out[kind.removesuffix("_s")] = {"errors_s": errors, "frame_offsets": frame_offsets, "missed": missed}
    return out


def compare(measured: GaitParameters, truth: GaitParameters) -> dict:
    """Errors of one sequence's parameters (measured - true), NaN where not measured."""
    def mean(d):
        return float(np.mean([d[s] for s in SIDES]))

    return {
        "cadence_spm": measured.cadence_spm - truth.cadence_spm,
        "stride_length_pct": 100.0 * (measured.stride_length_m / truth.stride_length_m - 1.0),
        "walking_speed_pct": 100.0 * (measured.walking_speed_mps / truth.walking_speed_mps - 1.0),
        "step_time_ms": 1000.0 * (mean(measured.step_time_s) - mean(truth.step_time_s)),
        "stance_pct": mean(measured.stance_pct) - mean(truth.stance_pct),
        "step_width_mm": 1000.0 * (measured.step_width_m - truth.step_width_m),
        "peak_knee_flexion_deg": [measured.peak_knee_flexion_deg[s] - truth.peak_knee_flexion_deg[s] for s in SIDES],
        "knee_curve_rms_deg": float(np.sqrt(np.mean(
            [(measured.curves_deg[f"{s}_knee_flexion"] - truth.curves_deg[f"{s}_knee_flexion"]) ** 2
             for s in SIDES]))),
    }


def angle_offsets(seq: WalkingSequence) -> dict[str, dict[str, float]]:
    """Measured minus generator angle (deg) over a clean walk: {angle kind: {mean, sd}}, both sides pooled."""
    generated = seq.subject.gait.angles(seq.subject.gait.phase_at(seq.stamps_s, seq.subject.phase0))
    measured = joint_angles(seq.joints)
    out = {}
    for kind in ("hip_flexion", "hip_adduction", "knee_flexion", "ankle_dorsiflexion"):
        diff = np.rad2deg(np.concatenate([measured[f"{s}_{kind}"] - generated[f"{s}_{kind}"] for s in SIDES]))
        out[kind] = {"mean": float(diff.mean()), "sd": float(diff.std())}
    return out


def stance_chord_speeds(seq: WalkingSequence, truth: GaitParameters) -> dict[str, float]:
    """Each leg's stance-ankle speed (m/s) with the *true* events, on the clean joints.

    The speed formula of `gait_parameters` without event-timing errors:
    how far each leg's own kinematics agree with the generator's speed.
    """
    offsets = forward_offsets(seq.joints, walking_direction(seq.joints))
    out = {}
    for side in SIDES:
        ankle, speeds = offsets[f"{side}_ankle"], []
        for hs in truth.events.heel_strike_s[side]:
            to = truth.events.toe_off_s[side][truth.events.toe_off_s[side] > hs]
            if len(to) and seq.stamps_s[0] <= hs and to[0] <= seq.stamps_s[-1]:
                speeds.append((np.interp(hs, seq.stamps_s, ankle) - np.interp(to[0], seq.stamps_s, ankle))
                              / (to[0] - hs))
        out[side] = float(np.mean(speeds)) if speeds else float("nan")
    return out


def _json_ready(value):
    """NaN -> None (strict JSON), also inside lists."""
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return float(value) if np.isfinite(value) else None


def _summary(records: list[dict]) -> dict:
    valid = [r for r in records if r["valid"]]

    def stat(key):
        return np.array([r["errors"][key] for r in valid], float).ravel()

    out = {"sequences": len(records), "valid": len(valid)}
    if not valid:
        return out
    out["cadence_abs_spm"] = _abs_stats(stat("cadence_spm"))
    out["stride_length_abs_pct"] = _abs_stats(stat("stride_length_pct"))
    out["stride_length_within_5pct"] = float(np.mean(np.abs(stat("stride_length_pct")) <= 5.0))
    out["walking_speed_abs_pct"] = _abs_stats(stat("walking_speed_pct"))
    # Treadmill walks (belt-speed method) and overground ones (footprints, pelvis travel) apart.
    out["by_mode"] = {}
    for mode in ("treadmill", "overground"):
        walks = [r for r in valid if r["mode"] == mode]
        if walks:
            stride = np.array([r["errors"]["stride_length_pct"] for r in walks], float)
            out["by_mode"][mode] = {
                "sequences": len(walks),
                "detected_as_mode": float(np.mean([r["measured"]["walking_mode"] == mode for r in walks])),
                "stride_length_abs_pct": _abs_stats(stride),
                "stride_length_within_5pct": float(np.mean(np.abs(stride) <= 5.0)),
                "stride_length_within_2pct": float(np.mean(np.abs(stride) <= 2.0)),
                "walking_speed_abs_pct": _abs_stats(np.array([r["errors"]["walking_speed_pct"] for r in walks],
                                                             float))}
    out["speed_vs_true_event_chord_abs_pct"] = _abs_stats(stat("speed_vs_true_event_chord_pct"))
    out["peak_knee_flexion_abs_deg"] = _abs_stats(stat("peak_knee_flexion_deg"))
    out["knee_curve_rms_deg"] = _abs_stats(stat("knee_curve_rms_deg"))
    out["stance_abs_pct_points"] = _abs_stats(stat("stance_pct"))
    out["step_width_abs_mm"] = _abs_stats(stat("step_width_mm"))
    for kind in ("heel_strike", "toe_off"):
        errors = np.concatenate([r["events"][kind]["errors_s"] for r in valid]) * 1000.0
        offsets = np.concatenate([r["events"][kind]["frame_offsets"] for r in valid])
        out[kind] = {"mean_ms": float(errors.mean()), "sd_ms": float(errors.std()),
                     "max_abs_ms": float(np.abs(errors).max()), "count": int(len(errors)),
                     "on_true_frame": float(np.mean(offsets == 0)),
                     "within_one_frame": float(np.mean(np.abs(offsets) <= 1)),
                     "missed": int(sum(r["events"][kind]["missed"] for r in valid))}
    return out


def _abs_stats(values: np.ndarray) -> dict:
    """Mean and max of |error|, and the signed mean (bias)."""
    values = values[np.isfinite(values)]
    if not len(values):
        return {}
    return {"mean": float(np.abs(values).mean()), "max": float(np.abs(values).max()), "bias": float(values.mean())}


def evaluate_gait(subjects: int = 10, conditions: tuple[str, ...] = CONDITIONS, fps: float = 15.0,
                  cycles: float = 3.0, noise_mm: tuple[float, ...] = (0.0, 10.0, 20.0), seed: int = 0,
                  progress: bool = True) -> dict:
    """Gait parameter errors against the generator on subjects x conditions walks, per joint-noise level.

    Noise: independent Gaussian per joint coordinate with sd `noise_mm`.
    Returns {settings, by_noise: {mm: summary}, records: [per sequence and noise]}.
    """
    from tqdm import tqdm

    if subjects < 1 or fps <= 0 or cycles <= 0 or not conditions or min(noise_mm, default=-1.0) < 0:
        raise ValueError(f"need subjects >= 1, fps > 0, cycles > 0, conditions and noise levels >= 0; got "
                         f"{subjects}, {fps}, {cycles}, {conditions}, {noise_mm}")
    rng = np.random.default_rng([seed, 4242])
    records, generator = [], []
    sequences = walking_sequences(subjects, conditions, fps, cycles, seed)
    for seq in tqdm(sequences, total=subjects * len(conditions), disable=not progress, desc="gait"):
        truth = true_parameters(seq.subject)
        chords = stance_chord_speeds(seq, truth)
        generator.append({"sequence": seq.name, "angle_offsets_deg": angle_offsets(seq),
                          "stance_chord_speed_error_pct": {
                              s: 100.0 * (v / truth.walking_speed_mps - 1.0) for s, v in chords.items()}})
        for sd in noise_mm:
            joints = seq.joints + rng.normal(0.0, sd / 1000.0, seq.joints.shape)
            measured = gait_parameters(seq.stamps_s, joints)
            record = {"sequence": seq.name, "condition": seq.condition, "mode": seq.mode, "noise_mm": sd,
                      "valid": measured.valid, "reason": measured.reason,
                      "truth": truth.to_dict(), "measured": measured.to_dict()}
            if measured.valid:
                errors = compare(measured, truth)
                # The same speed formula with the true events, both legs: what event timing alone costs
                # (treadmill walks only: overground the speed is the pelvis', not this formula's).
                errors["speed_vs_true_event_chord_pct"] = (100.0 * (
                    measured.walking_speed_mps / np.mean(list(chords.values())) - 1.0)
                    if measured.walking_mode == "treadmill" else float("nan"))
                record["errors"] = {k: _json_ready(v) for k, v in errors.items()}
                record["events"] = event_errors(measured.events, truth.events, seq.stamps_s,
                                                seq.subject.gait.params.cycle_s)
            records.append(record)
    return {
        "settings": {"subjects": subjects, "conditions": list(conditions), "fps": fps, "cycles": cycles,
                     "noise_mm": list(noise_mm), "seed": seed, "bodies": "test split 0..subjects-1"},
        "by_noise": {str(sd): _summary([r for r in records if r["noise_mm"] == sd]) for sd in noise_mm},
        "generator": _generator_summary(generator),
        "records": records,
    }


def _generator_summary(walks: list[dict]) -> dict:
    """How the joints of clean walks relate to the generator's angles and speed, over all walks."""
    out = {"angle_offsets_deg": {}, "stance_chord_speed_error_pct": {}}
    for kind in walks[0]["angle_offsets_deg"]:
        means = np.array([w["angle_offsets_deg"][kind]["mean"] for w in walks])
        sds = np.array([w["angle_offsets_deg"][kind]["sd"] for w in walks])
        out["angle_offsets_deg"][kind] = {"mean": float(means.mean()), "min": float(means.min()),
                                          "max": float(means.max()), "max_sd_within_walk": float(sds.max())}
    for side in SIDES:
        errors = np.array([w["stance_chord_speed_error_pct"][side] for w in walks])
        errors = errors[np.isfinite(errors)]
        out["stance_chord_speed_error_pct"][side] = {"mean": float(errors.mean()), "min": float(errors.min()),
                                                     "max": float(errors.max())}
    return out


def markdown_table(result: dict) -> str:
    """The summary of `evaluate_gait` as a markdown table, one column per noise level."""
    rows = [
        ("valid sequences", lambda s: f"{s['valid']}/{s['sequences']}"),
        ("cadence error, mean / max (steps/min)", lambda s: _fmt(s["cadence_abs_spm"], 2)),
        ("stride length error, mean / max (%)", lambda s: _fmt(s["stride_length_abs_pct"], 1)),
        ("stride length within 5 %", lambda s: f"{100 * s['stride_length_within_5pct']:.0f} %"),
        ("walking speed error, mean / max (bias) (%)", lambda s: _fmt(s["walking_speed_abs_pct"], 1, True)),
        ("stride length error, treadmill walks (belt speed x cycle), mean / max (bias) (%)",
         lambda s: _fmt(s["by_mode"]["treadmill"]["stride_length_abs_pct"], 1, True)),
        ("stride length error, overground walks (footprints), mean / max (bias) (%)",
         lambda s: _fmt(s["by_mode"]["overground"]["stride_length_abs_pct"], 1, True)),
        ("walking mode recognised, treadmill / overground walks",
         lambda s: " / ".join(f"{100 * s['by_mode'][m]['detected_as_mode']:.0f} %"
                              for m in ("treadmill", "overground"))),
        ("stride length within 5 % / within 2 %, treadmill walks", lambda s: _within(s["by_mode"]["treadmill"])),
        ("stride length within 5 % / within 2 %, overground walks", lambda s: _within(s["by_mode"]["overground"])),
        ("walking speed error, treadmill / overground walks, mean / max (%)",
         lambda s: _fmt(s["by_mode"]["treadmill"]["walking_speed_abs_pct"], 1) + ", "
         + _fmt(s["by_mode"]["overground"]["walking_speed_abs_pct"], 1)),
        ("treadmill speed vs the same formula with the true events, mean / max (bias) (%)",
         lambda s: _fmt(s["speed_vs_true_event_chord_abs_pct"], 1, True)),
        ("peak knee flexion error, mean / max (deg)", lambda s: _fmt(s["peak_knee_flexion_abs_deg"], 1)),
        ("knee curve RMS error, mean / max (deg)", lambda s: _fmt(s["knee_curve_rms_deg"], 1)),
        ("stance error, mean / max (% of cycle)", lambda s: _fmt(s["stance_abs_pct_points"], 1)),
        ("step width error, mean / max (mm)", lambda s: _fmt(s["step_width_abs_mm"], 0)),
        ("heel strike timing, mean +- sd (ms)", lambda s: _event(s["heel_strike"])),
        ("heel strike on the true frame / within 1", lambda s: _frames(s["heel_strike"])),
        ("toe off timing, mean +- sd (ms)", lambda s: _event(s["toe_off"])),
        ("toe off on the true frame / within 1", lambda s: _frames(s["toe_off"])),
    ]
    levels = list(result["by_noise"])
    lines = ["| | " + " | ".join(f"noise {float(n):g} mm" for n in levels) + " |",
             "|---|" + "---|" * len(levels)]
    for label, cell in rows:
        values = []
        for n in levels:
            summary = result["by_noise"][n]
            try:
                values.append(cell(summary))
            except (KeyError, TypeError):
                values.append("-")
        lines.append(f"| {label} | " + " | ".join(values) + " |")
    gen = result.get("generator")
    if gen:
        lines += ["", "| clean joints vs the generator (all walks) | mean | range over walks |", "|---|---|---|"]
        for kind, o in gen["angle_offsets_deg"].items():
            lines.append(f"| {kind.replace('_', ' ')} minus the generator's (deg; sd within a walk <= "
                         f"{o['max_sd_within_walk']:.1f}) | {o['mean']:+.1f} | {o['min']:+.1f} .. {o['max']:+.1f} |")
        for side, o in gen["stance_chord_speed_error_pct"].items():
            lines.append(f"| {side} stance ankle's speed with the true events vs the generator's speed (%) | "
                         f"{o['mean']:+.1f} | {o['min']:+.1f} .. {o['max']:+.1f} |")
    return "\n".join(lines)


def _fmt(stats: dict, digits: int, bias: bool = False) -> str:
    text = f"{stats['mean']:.{digits}f} / {stats['max']:.{digits}f}"
    return text + f" ({stats['bias']:+.{digits}f})" if bias else text


def _within(m: dict) -> str:
    n = m["sequences"]
    return f"{round(n * m['stride_length_within_5pct'])}/{n} / {round(n * m['stride_length_within_2pct'])}/{n}"


def _event(e: dict) -> str:
    return f"{e['mean_ms']:+.0f} +- {e['sd_ms']:.0f} (n = {e['count']}, missed {e['missed']})"


def _frames(e: dict) -> str:
    return f"{100 * e['on_true_frame']:.0f} % / {100 * e['within_one_frame']:.0f} %"


def plot_knee_curves(path, subjects: int = 3, condition: str = "normal", fps: float = 15.0, cycles: float = 4.0,
                     noise_mm: tuple[float, ...] = (0.0, 20.0), seed: int = 0) -> None:
    """PNG of measured knee flexion curves (mean over cycles) against the generator's, per subject and side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..gait.parameters import CURVE_POINTS

    rng = np.random.default_rng([seed, 4242])
    fig, axes = plt.subplots(subjects, 2, figsize=(9, 2.6 * subjects), sharex=True, squeeze=False)
    percent = np.linspace(0.0, 100.0, CURVE_POINTS)
    for row, seq in enumerate(walking_sequences(subjects, (condition,), fps, cycles, seed)):
        truth = true_parameters(seq.subject)
        measured = {sd: gait_parameters(seq.stamps_s, seq.joints + rng.normal(0.0, sd / 1000.0, seq.joints.shape))
                    for sd in noise_mm}
        for col, side in enumerate(SIDES):
            ax = axes[row, col]
            ax.plot(percent, truth.curves_deg[f"{side}_knee_flexion"], "k-", lw=2, label="generator")
            for k, (sd, m) in enumerate(measured.items()):
                if m.valid:
                    ax.plot(percent, m.curves_deg[f"{side}_knee_flexion"], f"C{k + 1}--", lw=1.5,
                            label=f"measured, noise {sd:g} mm ({m.n_strides[side]} cycles)")
            ax.set_title(f"{seq.name}, {side} knee", fontsize=9)
            ax.set_ylabel("flexion (deg)")
            ax.legend(fontsize=7, loc="upper left")
    for ax in axes[-1]:
        ax.set_xlabel("% of gait cycle (heel strike to heel strike)")
    fig.suptitle(f"Knee flexion per gait cycle vs the generator: {fps:g} FPS, seed {seed}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
