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
from ..provenance import device_description, git_commit
from .metrics import heading_of

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
    import sys

    result = bench_quality(args.data, args.limit, args.profile, not args.quiet)
    result["command"] = " ".join(["posesdf"] + sys.argv[1:])
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    table = markdown_table(result)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"Made by `{result['command']}` at {result['git_commit']} ({result['device']}; "
                                 f"data seed {result['data_seed']}, {result['profile']} profile, ground-truth leg "
                                 f"points).\n\n{table}\n")
    print(table)
    return 0
