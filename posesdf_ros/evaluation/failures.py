"""`posesdf bench failures`: what went wrong in the failed frames of a `posesdf eval` run?

A frame failed when its fit was rejected (valid=False after a fit) or kept more than `over_mm` off. Each
is fitted again three ways with the run's own estimator (its backend, profile, weights and leg classifier)
and the code at hand (not the run's; with the same code the first reproduces the run's fit exactly):
- `as_run`: the run's input and heading source;
- `true_heading`: the same input, the true heading (a scene is segmented as the run did);
- `true_legs`: the ground-truth leg points (`leg_mask`) and the true heading: no segmentation.
An `as_run` fit that is right (at most `ok_mm` off) but rejected is blamed on the quality `check`; any
other failure on the first fix that makes the fit right (kept, at most `ok_mm` off): `heading` when the
true heading does, else `segmentation` when the true leg points do, else `fit` (neither fix helps: the
shape space, the fit, or the check rejecting right refits too). For scene runs each row also gives the
segmented points' precision and recall against `leg_mask`, and the `as_run` heading error.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ..provenance import command_line, device_description, git_commit
from .metrics import angle_error_deg, heading_of
from .report import write_bench_outputs

FIXES = ("true_heading", "true_legs")
CAUSES = ("check", "heading", "segmentation", "fit")


def failed_records(records: list[dict], over_mm: float) -> list[dict]:
    """The records of frames whose fit was rejected, or kept more than `over_mm` off (frames without a fit,
    such as "no person", are not among them: nothing was fitted)."""
    return [r for r in records if (r["valid"] and r["mpjpe_mm"] > over_mm)
            or (not r["valid"] and r.get("rejected_mpjpe_mm") is not None)]


def blame(fits: dict[str, tuple[bool, float | None]], ok_mm: float) -> str:
    """The cause of a failure from the fits {name: (valid, mpjpe_mm)} of `as_run` and `FIXES`: `check` when
    the run's fit was right (at most `ok_mm` off) but rejected; else the first of `FIXES` whose fit is right
    and kept names it; none does: `fit`."""
    valid, err = fits["as_run"]
    if not valid and err is not None and err <= ok_mm:
        return "check"
    for fix, cause in zip(FIXES, ("heading", "segmentation")):
        valid, err = fits[fix]
        if valid and err is not None and err <= ok_mm:
            return cause
    return "fit"


def run_estimator(settings: dict):
    """The estimator of an eval run from its settings.json (strings, as `posesdf eval` wrote them)."""
    from ..inference.nvf import VoteDecoding
    from .benchmark import eval_estimator

    def opt(key: str, kind=str):
        return None if settings.get(key) in (None, "None") else kind(settings[key])

    if (settings["backend"] == "pn2" or settings["input"] == "surface"
            or (settings["input"] != "scene" and settings["yaw"] == "gt")):
        raise ValueError("nothing to attribute: the run's backend or settings leave no heading or segmentation "
                         "to blame (needs posesdf or nvf, and --input scene or --yaw rotnet|none; not "
                         "--input surface)")
    return eval_estimator(settings["backend"], settings["profile"], settings["device"], opt("weights", Path),
                          VoteDecoding(settings["vote_rule"], float(settings["vote_keep"]), int(settings["vote_k"]),
                                       opt("vote_probes", int)), settings["input"], settings["classifier"],
                          opt("legseg_weights", Path), opt("starts", int))


def attribute_failures(run: Path, data: Path | None = None, over_mm: float = 100.0, ok_mm: float = 60.0,
                       limit: int | None = None, progress: bool = True) -> dict:
    """Refit the failed frames of the eval run in folder `run` (its records and settings.json; the samples from
    `data`, default the run's) and blame each failure (module docstring)."""
    import torch
    from tqdm import tqdm

    from ..data.dataset import load_manifest
    from ..perception.segment import segment_legs
    from .benchmark import read_records_jsonl, with_yaw_source

    torch.set_num_threads(1)
    settings = json.loads((run / "settings.json").read_text())
    data = Path(settings["data"]) if data is None else data
    records_file = run / "records.json"
    records = json.loads(records_file.read_text()) if records_file.exists() else read_records_jsonl(
        run / "records.jsonl")
    failed = failed_records(records, over_mm)
    examined = failed[:limit]
    est = run_estimator(settings)
    as_run = with_yaw_source(est, settings["yaw"])
    scene = settings["input"] == "scene"
    entries = {e["file"]: e for e in load_manifest(data)["samples"]}
    rows = []
    for r in tqdm(examined, desc="bench failures", unit="frame", disable=not progress):
        with np.load(data / r["file"]) as s:
            points, mask, truth = s["points"], s["leg_mask"], s["joints"].astype(np.float64)
            camera, yaw = s["camera_to_gravity"][:3, 3], heading_of(s["subject_to_gravity"])
        legs = points[mask]
        run_input = points if scene else legs
        kwargs = {"segment": True} if scene else {}

        def scored(res) -> tuple[bool, float | None]:
            err = None if res.joints is None else float(np.linalg.norm(res.joints - truth, axis=1).mean() * 1e3)
            return bool(res.valid), err

        first = as_run.estimate(run_input, yaw=yaw if settings["yaw"] == "gt" else None, camera_origin=camera,
                                **kwargs)
        fits = {"as_run": scored(first),
                "true_heading": scored(est.estimate(run_input, yaw=yaw, camera_origin=camera, **kwargs)),
                "true_legs": scored(est.estimate(legs, yaw=yaw, camera_origin=camera, segment=False,
                                                 check_heading=False))}
        row = {"file": r["file"], "view": r["view"], "condition": r["condition"], "leg_points": int(mask.sum()),
               "recorded_mpjpe_mm": r["mpjpe_mm"] if r["valid"] else r["rejected_mpjpe_mm"],
               "reason": first.reason, **{f"{k}_valid": v for k, (v, _) in fits.items()},
               **{f"{k}_mpjpe_mm": e for k, (_, e) in fits.items()}, "cause": blame(fits, ok_mm),
               "heading_error_deg": None if first.yaw is None else float(angle_error_deg(first.yaw, yaw))}
        entry = entries.get(r["file"], {})
        row |= {"sensor": entry.get("noise"), "camera_distance_m": entry.get("camera", {}).get("distance_m")}
        if scene:       # as `posesdf eval-seg` counts it (segment_legs skips NaN rows; indices are the input's)
            chosen = np.zeros(len(points), bool)
            chosen[segment_legs(points, est.segmentation, None, camera, est.leg_classifier).indices] = True
            hits = int((chosen & mask).sum())
            row |= {"segmentation_precision": hits / chosen.sum() if chosen.any() else None,
                    "segmentation_recall": hits / mask.sum() if mask.any() else None}
        rows.append(row)
    counts = {c: sum(row["cause"] == c for row in rows) for c in CAUSES}
    return {"run": str(run), "data": str(data), "run_settings": settings, "over_mm": over_mm, "ok_mm": ok_mm,
            "frames": len(records), "failed": len(failed), "examined": len(examined), "causes": counts,
            "device": device_description("cpu"), "git_commit": git_commit(), "rows": rows}


def markdown(result: dict) -> str:
    """The causes' counts, then one row per failed frame."""
    s = result["run_settings"]
    lines = [f"{result['failed']} of {result['frames']} frames failed (rejected after a fit, or kept more than "
             f"{result['over_mm']:g} mm off) in the run over `{Path(result['data']).name}` ({s['backend']}, "
             f"{s['profile']}, input {s['input']}, heading {s['yaw']})" + (
                 f"; the first {result['examined']} refitted" if result["examined"] < result["failed"] else "") +
             f". A refit right means kept and at most {result['ok_mm']:g} mm off.", "",
             "| cause | frames | what fixed it |", "|---|---|---|"]
    fixed_by = {"check": "nothing to fix: the run's fit was right but rejected", "heading": "the true heading",
                "segmentation": "the true leg points (and heading)", "fit": "neither"}
    lines += [f"| {c} | {n} | {fixed_by[c]} |" for c, n in result["causes"].items()]

    def mm(valid: bool, err: float | None) -> str:
        return "–" if err is None else f"{err:.0f}{'' if valid else ' (rejected)'}"

    def share(x: float | None) -> str:
        return "–" if x is None else f"{x:.2f}"

    lines += ["", "| file | sensor | distance (m) | leg points | precision | recall | heading error (deg) | as run "
              "(mm) | true heading (mm) | true legs (mm) | cause |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        dist = "–" if r["camera_distance_m"] is None else f"{r['camera_distance_m']:.1f}"
        head = "–" if r["heading_error_deg"] is None else f"{r['heading_error_deg']:.0f}"
        lines.append(f"| {Path(r['file']).name} | {r['sensor'] or '–'} | {dist} | {r['leg_points']} | "
                     f"{share(r.get('segmentation_precision'))} | {share(r.get('segmentation_recall'))} | {head} | "
                     f"{mm(r['as_run_valid'], r['as_run_mpjpe_mm'])} | "
                     f"{mm(r['true_heading_valid'], r['true_heading_mpjpe_mm'])} | "
                     f"{mm(r['true_legs_valid'], r['true_legs_mpjpe_mm'])} | {r['cause']} |")
    return "\n".join(lines)


def add_parser(bsub) -> None:
    p = bsub.add_parser("failures", help="blame an eval run's failed frames on the heading, segmentation or fit",
                        description=__doc__.split("\n\n")[1])
    p.add_argument("run", type=Path, help="an eval --out folder (records and settings.json)")
    p.add_argument("--data", type=Path, default=None, help="the run's test build, if it moved (default: the run's)")
    p.add_argument("--over-mm", type=float, default=100.0,
                   help="a kept fit more than this far off (mm) failed (default 100)")
    p.add_argument("--ok-mm", type=float, default=60.0,
                   help="a refit kept and at most this far off (mm) is right (default 60)")
    p.add_argument("--limit", type=int, default=None, help="the first N failed frames (default: all)")
    p.add_argument("--json", type=Path, default=None, help="write the counts and per-frame rows here")
    p.add_argument("--markdown", type=Path, default=None, help="write the tables here, with how they were made")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    try:
        result = attribute_failures(args.run, args.data, args.over_mm, args.ok_mm, args.limit, not args.quiet)
    except (FileNotFoundError, ValueError) as err:
        raise SystemExit(f"posesdf bench failures: {err}") from None
    result["command"] = command_line()
    write_bench_outputs(result, markdown(result), args.json, args.markdown)
    return 0
