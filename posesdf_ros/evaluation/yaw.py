"""Heading (yaw) accuracy of a yaw estimator on a test build (`posesdf eval-yaw`).

Each sample's heading is predicted from (a) its ground-truth leg points
(`leg_mask`) and, with `use_segmentation`, (b) the legs that
`perception.segment_legs` finds in the whole scene cloud. Errors are the
wrapped absolute difference to the heading of `subject_to_gravity`.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .benchmark import add_classifier_arguments, leg_input, select_samples
from .metrics import angle_error_deg, heading_of

OVER_DEG = 30.0


def error_stats(errors_deg: list[float], failed: int = 0) -> dict:
    """Median, 95th percentile and share over 30 deg of errors (deg); a failed
    prediction counts as an error over 30 deg."""
    e = np.asarray(errors_deg, float)
    count = len(e) + failed
    return {"count": count, "failed": failed,
            "median": float(np.median(e)) if len(e) else None,
            "p95": float(np.percentile(e, 95)) if len(e) else None,
            "over_30_pct": float(100 * (np.sum(e > OVER_DEG) + failed) / count) if count else None}


def evaluate_yaw(folder: Path, per_cell_limit: int | None, estimator, use_segmentation: bool,
                 progress: bool = True, leg_classifier=None) -> tuple[dict, list[dict]]:
    """Yaw errors over all test cells (at most `per_cell_limit` samples each).

    `estimator.predict((N, 3)) -> (yaw, confidence)`; `leg_classifier` goes
    to `segment_legs`. Returns (summary by input source: overall and per
    view, per-sample records)."""
    from tqdm import tqdm

    from ..perception.segment import segment_legs

    sources = ("gt_legs", "segmented") if use_segmentation else ("gt_legs",)
    records = []
    for e in tqdm(select_samples(folder, "all", per_cell_limit), desc="eval-yaw", unit="sample",
                  disable=not progress):
        with np.load(Path(folder) / e["file"]) as z:
            a = {k: z[k] for k in z.files}
        clouds = {"gt_legs": leg_input(a)}
        if use_segmentation:
            seg = segment_legs(a["points"], sensor_origin=a["camera_to_gravity"][:3, 3],
                               leg_classifier=leg_classifier)
            clouds["segmented"] = a["points"][seg.heading_indices] if seg.valid else None
        gt = heading_of(a["subject_to_gravity"])
        rec = {"file": e["file"], "view": e["view"], "condition": e["condition"], "gt_yaw": gt}
        for source, cloud in clouds.items():
            try:
                yaw, conf = estimator.predict(cloud) if cloud is not None else (None, None)
            except ValueError:
                yaw, conf = None, None
            rec[source] = None if yaw is None else {
                "yaw": yaw, "confidence": conf, "error_deg": float(angle_error_deg(yaw, gt)), "points": len(cloud)}
        records.append(rec)

    def stats(recs: list[dict], source: str) -> dict:
        ok = [r[source]["error_deg"] for r in recs if r[source] is not None]
        return error_stats(ok, len(recs) - len(ok))

    summary = {}
    for source in sources:
        summary[source] = {"overall": stats(records, source),
                           "by_view": {v: stats([r for r in records if r["view"] == v], source)
                                       for v in sorted({r["view"] for r in records})}}
    return summary, records


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval-yaw", help="heading (yaw) error of RotNet on a test build",
        description="Predict each test sample's heading with RotNet from its ground-truth leg points and, with "
                    "--segment, from segment_legs on the scene cloud; report the median, 95th percentile and "
                    "share over 30 deg of the yaw error, overall and per view.")
    p.add_argument("--data", type=Path, required=True, help="test build folder")
    p.add_argument("--limit", type=int, default=None, help="at most N samples per (condition, view) cell")
    p.add_argument("--segment", action="store_true", help="also from segment_legs on the scene cloud")
    add_classifier_arguments(p)
    p.add_argument("--weights", type=Path, default=None, help="folder of rotnet.pt/json (default: the shipped ones)")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--turns", type=int, default=4,
                   help="test-time turns of the cloud, a divisor of RotNet's bins (default 4)")
    p.add_argument("--json", type=Path, default=None, help="write the summary here")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_eval_yaw)


def _eval_yaw(args) -> int:
    import json
    import time

    from ..data.dataset import load_manifest
    from ..inference.legseg import load_for_cli
    from ..inference.yaw import YawEstimator
    from ..provenance import command_line, device_description, git_commit

    est = YawEstimator.from_pretrained(args.device, args.weights, args.turns)
    classifier = load_for_cli(args.classifier, args.legseg_weights, args.device) if args.segment else None
    t0 = time.perf_counter()
    summary, records = evaluate_yaw(args.data, args.limit, est, args.segment, progress=not args.quiet,
                                    leg_classifier=classifier)
    out = {"command": command_line(), "data": str(args.data), "data_seed": load_manifest(args.data).get("seed"),
           "samples_per_cell": args.limit or "all", "count": len(records),
           "device": device_description(est.device), "rotnet_points": est.model.config.encoder.points,
           "test_time_turns": est.turns,
           "leg_points_by": (classifier.description if classifier is not None
                             else "pelvis crop" if args.segment else None),
           "seconds": round(time.perf_counter() - t0, 1),
           "git_commit": git_commit(),
           "weights": {k: est.meta.get(k) for k in ("epochs_done", "epochs_planned", "train_minutes", "data_seed",
                                                    "git_commit", "device")},
           **summary}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1))
    print(json.dumps({k: out[k] for k in ("count", *summary)} | {s: summary[s]["overall"] for s in summary},
                     indent=1))
    return 0
