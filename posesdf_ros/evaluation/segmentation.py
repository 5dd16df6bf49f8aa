"""Segmentation accuracy on a test build: point precision and recall against the true leg points, pelvis
error, failures and stage timings of `perception.segment_legs`."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..perception.segment import SegmentationConfig, segment_legs


def pixel_decimation(depth: np.ndarray, factor: int) -> np.ndarray:
    """Mask over a sample's `points` (its depth image's valid pixels, row-major) of those on every
    `factor`-th row and column: what `perception.decimate` keeps of the organised cloud."""
    rows, cols = np.nonzero(np.isfinite(depth) & (depth > 0))
    return (rows % factor == 0) & (cols % factor == 0)


def measure_segmentation(folder: str | Path, per_cell: int | None = 3,
                         config: SegmentationConfig | None = None, leg_classifier=None,
                         decimation: int = 1) -> dict:
    """Point precision and recall against `leg_mask`, and stage timings, on a test build.

    The subset: the first `per_cell` samples (by file name, i.e. by index)
    of every (condition, view) cell in the manifest; None takes all. Each
    sample's sensor origin is the translation of its `camera_to_gravity`;
    `leg_classifier` is handed to `segment_legs`; with `decimation` > 1 the
    clouds keep every n-th pixel row and column (`pixel_decimation`) and the
    config is `config.decimated(n)`;
    its floor is z = 0, so the pelvis error is the estimate minus the true
    pelvis z. A warm-up call on the first sample (first-call overheads) is
    not timed. Returns pooled and median per-sample precision and recall,
    failures by reason, the share of kept points that are not leg_mask
    above and below the true pelvis, the pelvis error by cue, timings
    (median and p95 per stage, ms) and one row per sample.
    """
    folder = Path(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    taken: dict[tuple[str, str], int] = {}
    subset = []
    for entry in sorted(manifest["samples"], key=lambda e: e["file"]):
        cell = (entry["condition"], entry["view"])
        if per_cell is None or taken.get(cell, 0) < per_cell:
            taken[cell] = taken.get(cell, 0) + 1
            subset.append(entry)
    config = (config or SegmentationConfig()).decimated(decimation)
    if subset:  # keep first-call overheads out of the timings
        with np.load(folder / subset[0]["file"]) as sample:
            segment_legs(sample["points"], config, sensor_origin=sample["camera_to_gravity"][:3, 3],
                         leg_classifier=leg_classifier)
    rows = []
    for entry in subset:
        with np.load(folder / entry["file"]) as sample:
            points, truth = sample["points"], sample["leg_mask"]
            sensor, true_pelvis = sample["camera_to_gravity"][:3, 3], float(sample["joints"][0, 2])
            if decimation > 1:
                keep = pixel_decimation(sample["depth"], decimation)
                points, truth = points[keep], truth[keep]
        result = segment_legs(points, config, sensor_origin=sensor, leg_classifier=leg_classifier)
        kept = np.zeros(len(points), bool)
        kept[result.indices] = True
        wrong = kept & ~truth
        rows.append({"file": entry["file"], "condition": entry["condition"], "view": entry["view"],
                     "valid": result.valid, "reason": result.reason, "points": len(points),
                     "true_positive": int((kept & truth).sum()), "kept": int(kept.sum()),
                     "truth": int(truth.sum()),
                     "false_positive_above_pelvis": int((wrong & (points[:, 2] > true_pelvis)).sum()),
                     "pelvis_cue": result.pelvis_cue, "pelvis_error": result.pelvis_height - true_pelvis,
                     "timings": result.timings})
    return summarise_segmentation(rows)


def summarise_segmentation(rows: list[dict]) -> dict:
    """The summary of `measure_segmentation` rows (see there)."""
    true_positive = sum(r["true_positive"] for r in rows)
    precision = [r["true_positive"] / r["kept"] if r["kept"] else 0.0 for r in rows]
    recall = [r["true_positive"] / r["truth"] if r["truth"] else 0.0 for r in rows]
    failures: dict[str, int] = {}
    for r in rows:
        if not r["valid"]:
            failures[r["reason"]] = failures.get(r["reason"], 0) + 1
    timing_ms = {}
    for stage in dict.fromkeys(s for r in rows for s in r["timings"]):
        seconds = [r["timings"].get(stage, 0.0) for r in rows]
        timing_ms[stage] = {"median": 1e3 * float(np.median(seconds)), "p95": 1e3 * float(np.percentile(seconds, 95))}
    kept = sum(r["kept"] for r in rows)
    wrong_above = sum(r["false_positive_above_pelvis"] for r in rows)
    wrong_below = kept - true_positive - wrong_above
    pelvis_error_m = {}
    for cue in sorted({r["pelvis_cue"] for r in rows if r["valid"]}):
        errors = np.array([r["pelvis_error"] for r in rows if r["valid"] and r["pelvis_cue"] == cue])
        pelvis_error_m[cue] = {"count": len(errors), "mean": float(errors.mean()),
                               "median_abs": float(np.median(np.abs(errors))),
                               "p95_abs": float(np.percentile(np.abs(errors), 95))}
    return {"count": len(rows), "valid": sum(r["valid"] for r in rows), "failures": failures,
            "precision_pooled": true_positive / max(1, kept),
            "recall_pooled": true_positive / max(1, sum(r["truth"] for r in rows)),
            "precision_median": float(np.median(precision)) if rows else float("nan"),
            "recall_median": float(np.median(recall)) if rows else float("nan"),
            "false_positive_share": {"above_true_pelvis": wrong_above / max(1, kept),
                                     "below_true_pelvis": wrong_below / max(1, kept)},
            "pelvis_error_m": pelvis_error_m,
            "median_points": int(np.median([r["points"] for r in rows])) if rows else 0,
            "timing_ms": timing_ms, "samples": rows}
