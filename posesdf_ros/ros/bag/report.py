"""The report folder of `posesdf bag eval`: summary.md, summary.json, records.json and plots (matplotlib)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...skeleton import JOINT_NAMES, knee_flexion

PLOTS = ("error_over_time.png", "per_joint_error.png", "joint_trajectories.png", "knee_angles.png")
#: Joints whose trajectories are drawn (height above the floor and horizontal position).
TRAJECTORY_JOINTS = ("left_knee", "left_ankle", "right_knee", "right_ankle")


def _series(records: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    """(T,) times from the first frame and (T, 9, 3) joints, NaN where `key` is missing."""
    t0 = records[0]["stamp_s"]
    t = np.array([r["stamp_s"] - t0 for r in records])
    J = np.full((len(records), 9, 3), np.nan)
    for i, r in enumerate(records):
        if r[key] is not None:
            J[i] = r[key]
    return t, J


def write_plots(records: list[dict], out: Path, title: str) -> list[str]:
    """The four plots; those needing ground truth are drawn with the estimate alone when it is missing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not records:
        return []
    t, est = _series(records, "joints")
    _, gt = _series(records, "truth")
    has_gt = bool(np.isfinite(gt).any())
    written = []

    fig, ax = plt.subplots(figsize=(7, 3))
    err = np.array([np.mean(r["errors_mm"]) if r["errors_mm"] is not None else np.nan for r in records])
    if has_gt:
        ax.plot(t, err, ".-", lw=1)
        ax.set_ylabel("MPJPE (mm)")
    else:
        ax.plot(t, np.isfinite(est[:, 0, 0]).astype(float), ".", lw=0)
        ax.set_ylabel("person found")
    missed = ~np.isfinite(est[:, 0, 0])
    if missed.any():
        ax.plot(t[missed], np.zeros(missed.sum()), "rx", label="no person / no estimate")
        ax.legend(fontsize=8)
    ax.set_xlabel("time since the first frame (s)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(out / PLOTS[0], dpi=90)
    plt.close(fig)
    written.append(PLOTS[0])

    if has_gt and np.isfinite(err).any():
        errs = np.array([r["errors_mm"] for r in records if r["errors_mm"] is not None])
        fig, ax = plt.subplots(figsize=(7, 3))
        ax.bar(range(9), errs.mean(0), yerr=errs.std(0), capsize=3, color="#4a7fb5")
        ax.set_xticks(range(9), JOINT_NAMES, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("error (mm), mean and s.d.")
        ax.set_title(f"per-joint error over {len(errs)} frames", fontsize=9)
        fig.tight_layout()
        fig.savefig(out / PLOTS[1], dpi=90)
        plt.close(fig)
        written.append(PLOTS[1])

    fig, axes = plt.subplots(2, len(TRAJECTORY_JOINTS), figsize=(11, 4.5), sharex=True, squeeze=False)
    for c, name in enumerate(TRAJECTORY_JOINTS):
        j = JOINT_NAMES.index(name)
        for row, (axis, label) in enumerate(((2, "height z (m)"), (0, "x (m)"))):
            ax = axes[row, c]
            if has_gt:
                ax.plot(t, gt[:, j, axis], "k--", lw=1, label="ground truth")
            ax.plot(t, est[:, j, axis], ".-", lw=1, ms=3, label="estimate")
            if c == 0:
                ax.set_ylabel(label)
            if row == 0:
                ax.set_title(name, fontsize=9)
    axes[0, 0].legend(fontsize=7)
    for ax in axes[1]:
        ax.set_xlabel("time (s)")
    fig.tight_layout()
    fig.savefig(out / PLOTS[2], dpi=80)
    plt.close(fig)
    written.append(PLOTS[2])

    fig, axes = plt.subplots(1, 2, figsize=(9, 3), sharey=True)
    for ax, side in zip(axes, ("left", "right")):
        if has_gt:
            ax.plot(t, np.rad2deg(knee_flexion(gt, side)), "k--", lw=1, label="ground truth")
        ax.plot(t, np.rad2deg(knee_flexion(est, side)), ".-", lw=1, ms=3, label="estimate")
        ax.set_title(f"{side} knee flexion", fontsize=9)
        ax.set_xlabel("time (s)")
    axes[0].set_ylabel("deg")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / PLOTS[3], dpi=90)
    plt.close(fig)
    written.append(PLOTS[3])
    return written


def _fmt(v, unit: str = "", digits: int = 1) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}{unit}"


def write_summary_md(summary: dict, plots: list[str], out: Path) -> None:
    s = summary
    lines = [f"# Bag evaluation ({s['mode']}): `{s['bag']}`", "",
             f"Made by `{s.get('command', 'posesdf bag eval')}` on {s.get('device', 'n/a')}.", "",
             "| figure | value |", "|---|---|",
             f"| frames (clouds) | {s['frames']} |",
             f"| frames with a person | {s['frames_with_person']} ({_fmt(100 * (s['detection_rate'] or 0), ' %')}) |",
             f"| frames with ground truth / scored | {s['frames_with_truth']} / {s['frames_scored']} |",
             f"| MPJPE mean / median | {_fmt(s['mpjpe_mm'], ' mm')} / {_fmt(s['mpjpe_median_mm'], ' mm')} |",
             f"| dropped frames | {s['dropped_frames']} |",
             f"| FPS | {_fmt(s['fps'], '', 2)} |", ""]
    if s["per_joint_mm"]:
        lines += ["Per joint (mm): " + ", ".join(f"{k} {v:.1f}" for k, v in s["per_joint_mm"].items()), ""]
    for key in ("by_condition", "by_view"):
        if s.get(key):
            lines += [f"MPJPE {key.replace('_', ' ')} (mm): " + ", ".join(f"{k} {_fmt(v)}" for k, v in s[key].items()),
                      ""]
    lines += ["## Sequences", "",
              "| # | condition | view | frames | with person | MPJPE (mm) | jitter (mm) est / GT | "
              "bone-length s.d. (mm) est / GT | pelvis speed (m/s) |", "|---|---|---|---|---|---|---|---|---|"]
    for q in s["sequences"]:
        e, g = q["estimate"], q["truth"]
        lines.append(f"| {q['sequence']} | {q['condition']} | {q['view']} | {q['frames']} | "
                     f"{q['frames_with_person']} | "
                     f"{_fmt(q['mpjpe_mm'])} | {_fmt(e.get('jitter_mm'))} / {_fmt(g.get('jitter_mm'))} | "
                     f"{_fmt(e.get('bone_length_std_mm'))} / {_fmt(g.get('bone_length_std_mm'))} | "
                     f"{_fmt(e.get('pelvis_speed_mps'), '', 2)} |")
    gait = s["gait"]
    lines += ["", "## Gait parameters", ""]
    if gait.get("note"):
        lines += [gait["note"], ""]
    keys = ("cadence_spm", "stride_length_m", "walking_speed_mps")
    for i, truth in enumerate(gait["truth"]):
        est = (gait.get("estimated") or [None] * len(gait["truth"]))[i]
        line = f"- sequence {truth.get('sequence', i)}: ground truth " + \
            (", ".join(f"{k} {truth[k]}" for k in keys if k in truth) or "none")
        if est:
            line += "; estimated " + ", ".join(f"{k} {_fmt(est.get(k), '', 3)}" for k in keys)
            if est.get("reason"):
                line += f" ({est['reason']})"
        lines.append(line)
    if s.get("no_person_reasons"):
        lines += ["", "Frames without joints, by reason: " + ", ".join(f"{k}: {v}" for k, v in
                                                                      s["no_person_reasons"].items())]
    if s.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {n}" for n in s["notes"]]
    lines += ["", "## Plots", ""] + [f"![{p}]({p})" for p in plots]
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def write_report(summary: dict, records: list[dict], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    title = f"{Path(summary['bag']).name} ({summary['mode']})"
    plots = write_plots(records, out, title)
    summary["plots"] = plots
    (out / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (out / "records.json").write_text(json.dumps(records, default=str))
    write_summary_md(summary, plots, out)
