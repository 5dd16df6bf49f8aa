"""`posesdf bench quality`: does the fit's quality score tell right fits from wrong ones?

On a val (or test) build, each sample's ground-truth leg points are fitted
three ways, with the heading check off so that nothing else corrects them:
- `right`: the true heading;
- `turned`: the heading turned round (RotNet's front/back confusion);
- `lifted`: the cloud 0.4 m above the floor (a fit that cannot stand there).
It reports, per case, the first fit's score, whether `estimate` recovered
(a retry won) or rejected it (valid=False), and the MPJPE of what it returned.
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from ..data.dataset import load_manifest
from ..provenance import command_line, device_description, git_commit
from .metrics import heading_of
from .report import write_bench_outputs

LIFT_M = 0.4
CASES = ("right", "turned", "lifted")


def bench_quality(data: Path, limit: int | None = None, profile: str = "fast", progress: bool = True) -> dict:
    import torch
    from tqdm import tqdm

    from ..inference.estimator import GaitPoseEstimator

    torch.set_num_threads(1)
    est = GaitPoseEstimator.from_pretrained("posesdf", profile, "cpu", leg_classifier=False)
    unjudged = est.with_profile()       # the same fit, never retried nor rejected: the first fit's score
    unjudged.quality = replace(est.quality, retry_below=0.0, reject_below=0.0)
    entries = load_manifest(data)["samples"][:limit]
    rows = []
    for e in tqdm(entries, desc="bench quality", unit="sample", disable=not progress):
        with np.load(Path(data) / e["file"]) as s:
            legs, truth = s["points"][s["leg_mask"]].astype(np.float64), s["joints"].astype(np.float64)
            camera, yaw = s["camera_to_gravity"][:3, 3], heading_of(s["subject_to_gravity"])
        for case in CASES:
            lift = np.array([0.0, 0.0, LIFT_M if case == "lifted" else 0.0])
            heading = yaw + (np.pi if case == "turned" else 0.0)
            first, res = (runner.estimate(legs + lift, yaw=heading, camera_origin=camera, segment=False,
                                          check_heading=False) for runner in (unjudged, est))
            err = float(np.linalg.norm(res.joints - truth - lift, axis=1).mean() * 1e3) if res.joints is not None \
                else None
            rows.append({"file": e["file"], "case": case, "first_quality": first.quality,
                         "quality": res.quality, "valid": res.valid, "retried": "quality_retry" in res.timings,
                         "mpjpe_mm": err, "reason": res.reason})
    summary = {}
    for case in CASES:
        rs = [r for r in rows if r["case"] == case]
        kept = [r for r in rs if r["valid"]]
        summary[case] = {
            "samples": len(rs),
            "first_quality_median": float(np.median([r["first_quality"] for r in rs])),
            "first_quality_below_retry_pct": 100 * float(np.mean([r["first_quality"] < est.quality.retry_below
                                                                  for r in rs])),
            "rejected_pct": 100 * float(np.mean([not r["valid"] for r in rs])),
            "valid_over_150mm_pct": 100 * float(np.mean([r["valid"] and r["mpjpe_mm"] > 150 for r in rs])),
            "valid_mpjpe_mm": float(np.mean([r["mpjpe_mm"] for r in kept])) if kept else None,
        }
    return {"data": str(data), "data_seed": load_manifest(data).get("seed"), "profile": profile,
            "quality_config": asdict(est.quality),
            "device": device_description("cpu"), "git_commit": git_commit(), "summary": summary, "rows": rows}


def markdown_table(result: dict) -> str:
    lines = ["| case | samples | first fit's median score | first fit under the retry threshold | rejected "
             "(valid=False) | kept but > 150 mm off | MPJPE of the kept (mm) |", "|---|---|---|---|---|---|---|"]
    for case, s in result["summary"].items():
        mpjpe = "" if s["valid_mpjpe_mm"] is None else f"{s['valid_mpjpe_mm']:.1f}"
        lines.append(f"| {case} | {s['samples']} | {s['first_quality_median']:.2f} | "
                     f"{s['first_quality_below_retry_pct']:.0f} % | {s['rejected_pct']:.0f} % | "
                     f"{s['valid_over_150mm_pct']:.0f} % | {mpjpe} |")
    return "\n".join(lines)


#: `posesdf bench thresholds`: a kept fit this far off (mm) is a wrong one; a dropped one under RIGHT_MM a right one.
WRONG_MM, RIGHT_MM = 100.0, 50.0


def threshold_sweep(records: list[dict], thresholds: list[float]) -> list[dict]:
    """What rejecting the fits that score under each threshold would keep, from the records of a
    `posesdf eval` run (each fit's final score, and the error of kept and rejected fits alike).
    Exact for any threshold: the retries do not depend on it, and eval fits each frame on its own."""
    from ..inference.estimator import REJECTED

    fits = [(r["quality"], r["mpjpe_mm"] if r["valid"] else r["rejected_mpjpe_mm"]) for r in records
            if r["valid"] or "rejected_mpjpe_mm" in r]
    if len(fits) < sum(r["valid"] or r["reason"].startswith(REJECTED) for r in records):
        raise ValueError("these records lack the errors of rejected fits (eval runs before 2026-12-05); run eval again")
    score, err = np.array([q for q, _ in fits], float), np.array([e for _, e in fits], float)
    rows = []
    for t in thresholds:
        kept = score >= t
        rows.append({"threshold": t, "frames": len(records), "kept": int(kept.sum()),
                     "kept_wrong": int((kept & (err > WRONG_MM)).sum()),
                     "kept_mpjpe_mm": float(err[kept].mean()) if kept.any() else None,
                     "dropped_right": int((~kept & (err < RIGHT_MM)).sum())})
    return rows


def thresholds_table(runs: dict[str, list[dict]]) -> str:
    """Markdown: one row per threshold, one column per run (label -> `threshold_sweep` rows)."""
    labels = list(runs)
    lines = ["| threshold | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for i, t in enumerate(r["threshold"] for r in next(iter(runs.values()))):
        cells = []
        for label in labels:
            r = runs[label][i]
            mean = "" if r["kept_mpjpe_mm"] is None else f", {r['kept_mpjpe_mm']:.1f} mm"
            cells.append(f"{r['kept']} of {r['frames']} kept, {r['kept_wrong']} > {WRONG_MM:.0f} mm{mean}; "
                         f"{r['dropped_right']} < {RIGHT_MM:.0f} mm dropped")
        lines.append(f"| {t:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


#: `posesdf bench thresholds`' bins of the kept joints: (lower edge, upper edge, label), by confidence and by an
#: ensemble's spread at the joint (mm).
CONFIDENCE_BINS = ((0.0, 0.25, "0 to under 0.25"), (0.25, 0.5, "0.25 to under 0.5"), (0.5, 0.75, "0.5 to under 0.75"),
                   (0.75, 1.0, "0.75 to under 1"), (1.0, np.inf, "1"))
SPREAD_BINS_MM = ((0.0, 10.0, "under 10 mm"), (10.0, 20.0, "10 to under 20 mm"), (20.0, 30.0, "20 to under 30 mm"),
                  (30.0, 50.0, "30 to under 50 mm"), (50.0, np.inf, "50 mm or more"))


def joint_errors_by(records: list[dict], key: str, bins: tuple) -> list[dict]:
    """The kept fits' joints binned by a per-joint field of their records (`joint_confidence`, or an ensemble's
    `joint_spread_mm`) at `bins` ((lower, upper, label), ...): per bin the joints, their mean error and
    the share within RIGHT_MM of the truth. Empty when no kept record has the field."""
    kept = [r for r in records if r["valid"] and key in r]
    if not kept:
        return []
    value = np.concatenate([r[key] for r in kept])
    err = np.concatenate([r["per_joint_mm"] for r in kept])
    rows = []
    for lo, hi, label in bins:
        inside = (value >= lo) & (value < hi)
        rows.append({"bin": label, "joints": int(inside.sum()),
                     "mean_error_mm": float(err[inside].mean()) if inside.any() else None,
                     "within_right_pct": 100 * float((err[inside] < RIGHT_MM).mean()) if inside.any() else None})
    return rows


def joint_errors_table(runs: dict[str, list[dict]], what: str) -> str:
    """Markdown: one row per bin (`what` names them), one column per run (label -> `joint_errors_by` rows);
    "" when no run has the field."""
    labels = [label for label, rows in runs.items() if rows]
    if not labels:
        return ""
    lines = [f"| {what} | " + " | ".join(labels) + " |", "|---|" + "---|" * len(labels)]
    for i, name in enumerate(r["bin"] for r in runs[labels[0]]):
        cells = []
        for label in labels:
            r = runs[label][i]
            cells.append("none" if not r["joints"] else
                         f"{r['joints']} joints, {r['mean_error_mm']:.1f} mm, {r['within_right_pct']:.0f} % "
                         f"< {RIGHT_MM:.0f} mm")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_parser(bsub) -> None:
    p = bsub.add_parser("quality", help="whether the fit quality score flags wrong fits (turned, lifted)",
                        description=__doc__.split("\n\n")[1])
    p.add_argument("--data", type=Path, required=True, help="a val or test build (posesdf data build)")
    p.add_argument("--limit", type=int, default=None, help="first N samples (default: all)")
    p.add_argument("--profile", choices=("realtime", "fast", "accurate"), default="fast")
    p.add_argument("--json", type=Path, default=None, help="write the summary and per-sample rows here")
    p.add_argument("--markdown", type=Path, default=None, help="write the table here, with how it was made")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    result = bench_quality(args.data, args.limit, args.profile, not args.quiet)
    result["command"] = command_line()
    write_bench_outputs(result, markdown_table(result), args.json, args.markdown,
                        f"; data seed {result['data_seed']}, {result['profile']} profile, ground-truth leg points")
    return 0


def add_thresholds_parser(bsub) -> None:
    p = bsub.add_parser(
        "thresholds", help="what each rejection threshold of the quality score would keep, from eval runs",
        description="Read the records of `posesdf eval --out DIR` runs and tabulate, per threshold of the quality "
                    f"score, the frames a rejection there would keep, the kept fits more than {WRONG_MM:.0f} mm off "
                    f"(wrong), their mean error, and the right fits (under {RIGHT_MM:.0f} mm) it would drop; then the "
                    f"kept joints' errors by their confidence and by an ensemble's spread at them (the share within "
                    f"{RIGHT_MM:.0f} mm per bin). No fitting: the runs' own scores, confidences and errors.")
    p.add_argument("runs", type=Path, nargs="+", help="eval --out folders (records.json and settings.json)")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.25, 0.3, 0.35, 0.4, 0.45, 0.5],
                   help="scores to tabulate (default 0.25 to 0.5 in steps of 0.05)")
    p.add_argument("--markdown", type=Path, default=None, help="write the table here, with how it was made")
    p.set_defaults(func=_run_thresholds)


def _run_thresholds(args: argparse.Namespace) -> int:
    runs, confidences, spreads = {}, {}, {}
    for folder in args.runs:
        settings = json.loads((folder / "settings.json").read_text())
        label = f"{Path(settings['data']).name}, {settings['profile']}"
        records = json.loads((folder / "records.json").read_text())
        runs[label] = threshold_sweep(records, args.thresholds)
        confidences[label] = joint_errors_by(records, "joint_confidence", CONFIDENCE_BINS)
        spreads[label] = joint_errors_by(records, "joint_spread_mm", SPREAD_BINS_MM)
    table = thresholds_table(runs)
    for bins, what in ((confidences, "joint confidence"), (spreads, "ensemble's spread at the joint")):
        if binned := joint_errors_table(bins, what):
            table += (f"\n\nThe kept fits' joints by their {what}: how many, their mean error, and the share "
                      f"within {RIGHT_MM:.0f} mm of the truth.\n\n{binned}")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"Made by `{command_line()}` at {git_commit()} from the "
                                 f"records of the eval runs named by their data folder and profile.\n\n{table}\n")
    print(table)
    return 0
