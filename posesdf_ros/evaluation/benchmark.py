"""Accuracy runs over a test build (`posesdf eval`) and speed runs (`posesdf bench speed`)."""
from __future__ import annotations

import json
import resource
import time
import zlib
from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import provenance
from ..data.dataset import EVAL_SPLITS, PROTOCOLS, load_manifest
from ..skeleton import JOINT_NAMES
from .metrics import angle_error_deg, chamfer_1e3, heading_of, joint_errors_mm, mpjpe_mm

YAW_SOURCES = ("gt", "rotnet", "none")
INPUTS = ("legs", "scene", "surface")
YAW_DESCRIPTIONS = {"gt": "ground truth", "rotnet": "RotNet", "none": "none (assumes view V1)"}
INPUT_DESCRIPTIONS = {"legs": "ground-truth leg points (leg_mask)",
                      "scene": "whole scene clouds, segmented by perception.segment_legs",
                      "surface": "the whole true lower-limb surface (gt_surface, no camera)"}
CD_POINTS = 30_000


BACKENDS = ("posesdf", "nvf", "pn2")


def add_classifier_arguments(parser) -> None:
    """--classifier and --legseg-weights: how the segmentation picks the leg points of a scene."""
    parser.add_argument("--classifier", choices=("legseg", "legseg-fast", "none"), default="legseg",
                        help="how segmentation picks the person's leg points: legseg (default), LegSegNet on the "
                             "person's points below the pelvis guess + 0.3 m; legseg-fast, the shipped 512-point "
                             "LegSegNet (the canonicaliser's default); none, the rule-based crop at the "
                             "pelvis guess + 0.1 m without detached hands")
    parser.add_argument("--legseg-weights", type=Path, default=None,
                        help="folder of legseg.pt/legseg.json (default: the shipped weights)")


def load_estimator(backend: str, profile: str = "accurate", device: str = "cpu", weights: Path | None = None,
                   vote_decoding=None, leg_classifier=True):
    """An estimator for the benchmark: PoseSDF (either profile; joints from its sphere fields or,
    backend "nvf", by NVF voting; `leg_classifier` as in `GaitPoseEstimator.from_pretrained`)
    or the PN++ baseline."""
    if backend == "pn2":
        from ..inference.baselines import JointRegressorEstimator
        return JointRegressorEstimator.from_pretrained(device, weights)
    from ..inference.estimator import GaitPoseEstimator
    return GaitPoseEstimator.from_pretrained(backend, profile, device, weights, vote_decoding=vote_decoding,
                                             leg_classifier=leg_classifier)


def eval_estimator(backend: str, profile: str, device: str, weights: Path | None, vote_decoding, input_mode: str,
                   classifier: str, legseg_weights: Path | None = None, starts: int | None = None,
                   members: int | None = None):
    """The estimator of a `posesdf eval` run from its options: scenes are segmented with the `classifier`
    choice (`--classifier`), leg clouds keep the estimator's default; `starts` and `members` override the
    profile's."""
    from ..inference.legseg import load_for_cli

    leg_classifier = load_for_cli(classifier, legseg_weights, device) if input_mode == "scene" else True
    est = load_estimator(backend, profile, device, weights, vote_decoding, leg_classifier)
    changes = {k: v for k, v in (("starts", starts), ("members", members)) if v is not None}
    return est.with_profile(**changes) if changes else est


def read_records_jsonl(path: Path) -> list[dict]:
    """The per-sample records of a `posesdf eval --out` run's records.jsonl; a run killed mid-write leaves at
    most a torn last line, which is skipped."""
    records = []
    for line in Path(path).read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def select_samples(folder: Path, protocol: str, limit: int | None = None) -> list[dict]:
    """Manifest entries of `protocol`, at most `limit` per (condition, view) cell."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {tuple(PROTOCOLS)}")
    manifest = load_manifest(folder)
    if manifest.get("split") not in EVAL_SPLITS:
        raise ValueError(f"{folder} is a {manifest.get('split')} build; evaluation needs a scene build: "
                         "--split test (or val, or shifted), or one of tools/raycast_scenes.py")
    cells = set(PROTOCOLS[protocol])
    taken: dict[tuple, int] = defaultdict(int)
    out = []
    for e in manifest["samples"]:
        cell = (e["condition"], e["view"])
        if cell in cells and (limit is None or taken[cell] < limit):
            taken[cell] += 1
            out.append(e)
    if not out:
        raise ValueError(f"{folder} holds no samples of protocol {protocol}; build them with "
                         f"`posesdf data build --split test --protocol {protocol}`")
    return out


def shard_of(entries: list, shard: tuple[int, int]) -> list:
    """Every n-th of `entries` from the i-th, for shard (i, n): n processes share a run."""
    index, count = shard
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: expected 0 <= i < n")
    return entries[index::count]


def leg_input(arrays: dict) -> np.ndarray:
    """The ground-truth leg points of a test sample (the `legs` input)."""
    return arrays["points"][arrays["leg_mask"]]


def model_input(arrays: dict, input_mode: str) -> tuple[np.ndarray, np.ndarray | None]:
    """A test sample's points (N, 3) for `input_mode` and the camera's position (3,) they were seen from.

    "surface" is the whole lower-limb surface, front and back, with no camera: points seen from
    no viewpoint and without sensor noise, so its error is the shape space's and the joint
    extraction's own, the floor under what any view of the same bodies and poses can give.
    """
    camera = arrays["camera_to_gravity"][:3, 3]
    if input_mode == "surface":
        return arrays["gt_surface"], None
    return (arrays["points"] if input_mode == "scene" else leg_input(arrays)), camera


def with_yaw_source(estimator, yaw_source: str):
    """The estimator to run for `yaw_source`: RotNet must be loaded for "rotnet", and is left out for "none"."""
    import copy

    if yaw_source not in YAW_SOURCES:
        raise ValueError(f"unknown yaw source {yaw_source!r}; expected one of {YAW_SOURCES}")
    has_rotnet = getattr(estimator, "yaw_estimator", None) is not None
    if yaw_source == "rotnet" and not has_rotnet:
        raise ValueError(f"--yaw rotnet needs RotNet, which the {estimator.backend} estimator has not loaded "
                         "(missing weights?)")
    if yaw_source == "none" and has_rotnet:
        estimator = copy.copy(estimator)
        estimator.yaw_estimator = None
    return estimator


def evaluate(estimator, folder: Path, protocol: str, limit: int | None = None, yaw_source: str = "gt",
             mesh: bool = True, progress: bool = True, input_mode: str = "legs",
             done: dict[str, dict] | None = None, on_record=None,
             shard: tuple[int, int] = (0, 1)) -> tuple[dict, list[dict]]:
    """Run the estimator over the samples; returns (summary of the spec's JSON, per-sample records).

    input_mode "legs" feeds the ground-truth leg points, "scene" the whole
    scene cloud (PoseSDF segments it itself), "surface" the whole true
    lower-limb surface (`model_input`). `done` maps sample files to
    records of an earlier, interrupted run of the same settings: those
    samples are not run again. `on_record(record)` is called after each
    newly run sample (the CLI appends it to a records file, so a long run
    can be resumed). `shard` (i, n) runs every n-th sample from the i-th
    only: n processes (or machines) share a run, and their records files,
    put together in one folder, complete it by a `--resume`.
    """
    from tqdm import tqdm

    if input_mode not in INPUTS:
        raise ValueError(f"unknown input {input_mode!r}; expected one of {INPUTS}")
    if input_mode == "scene" and estimator.backend not in ("posesdf", "nvf"):
        raise ValueError(f"--input scene needs the posesdf or nvf backend (they segment); {estimator.backend} does not")
    runner = with_yaw_source(estimator, yaw_source)
    entries = shard_of(select_samples(folder, protocol, limit), shard)
    commit = provenance.git_commit()      # of the code that runs, read before a long run in which the checkout may move
    done = done or {}
    records = []
    for e in tqdm(entries, desc=f"eval {protocol}", unit="sample", disable=not progress,
                  initial=sum(e["file"] in done for e in entries)):
        if e["file"] in done:
            records.append(done[e["file"]])
            continue
        with np.load(Path(folder) / e["file"]) as z:
            a = {k: z[k] for k in z.files}
        gt_yaw = heading_of(a["subject_to_gravity"])
        kwargs = {"segment": True} if input_mode == "scene" else {}
        points, camera = model_input(a, input_mode)
        res = runner.estimate(points, yaw=gt_yaw if yaw_source == "gt" else None, camera_origin=camera,
                              mesh=mesh, **kwargs)
        rec = {"file": e["file"], "condition": e["condition"], "view": e["view"], "valid": res.valid,
               "reason": res.reason, "leg_points": int(a["leg_mask"].sum()), "quality": res.quality}
        # The score's terms (inference/quality), so that its thresholds can be weighed from the records.
        terms = {k: float(v) for k, v in (res.quality_terms or {}).items() if isinstance(v, (int, float))}
        if terms:
            rec["quality_terms"] = terms
        if res.joint_spread is not None:     # an ensemble's (Profile.members): how far its members disagree
            rec["joint_spread_mm"] = (res.joint_spread * 1000).tolist()
        if res.joint_confidence is not None:
            rec["joint_confidence"] = res.joint_confidence.tolist()
        if res.valid:
            errs = joint_errors_mm(res.joints, a["joints"])
            rec |= {"mpjpe_mm": float(errs.mean()), "per_joint_mm": errs.tolist(),
                    "yaw_error_deg": float(angle_error_deg(res.yaw, gt_yaw)),
                    "iterations": res.iterations, "timings": res.timings, "joints": res.joints.tolist()}
            if res.mesh is not None:
                # Seeded by the sample's name, so a resumed run samples each mesh as an uninterrupted one.
                seed = zlib.crc32(e["file"].encode())
                surf = res.mesh.sample(CD_POINTS, seed=seed) if _has_seed_arg() else res.mesh.sample(CD_POINTS)
                rec["cd_1e3"] = chamfer_1e3(surf, a["gt_surface"], float(a["norm_scale"]))
        elif res.joints is not None:
            # A fit the quality check rejected: its error, so that the threshold can be weighed
            # (`posesdf bench thresholds`); it counts in no figure of the run.
            rec["rejected_mpjpe_mm"] = float(joint_errors_mm(res.joints, a["joints"]).mean())
        records.append(rec)
        if on_record is not None:
            on_record(rec)
    return summarise(records, protocol, estimator, yaw_source, input_mode, commit), records


def _has_seed_arg() -> bool:
    import inspect

    import trimesh
    return "seed" in inspect.signature(trimesh.Trimesh.sample).parameters


def summarise(records: list[dict], protocol: str, estimator, yaw_source: str, input_mode: str = "legs",
              git_commit: str | None = None) -> dict:
    """The spec's JSON object, plus a breakdown by protocol, view and condition."""
    from ..inference.estimator import NO_PERSON, REJECTED

    def block(recs: list[dict]) -> dict:
        ok = [r for r in recs if r["valid"]]
        per_joint = np.array([r["per_joint_mm"] for r in ok]) if ok else np.zeros((0, 9))
        cds = [r["cd_1e3"] for r in ok if "cd_1e3" in r]
        yaw = np.array([r["yaw_error_deg"] for r in ok])
        # A failed frame counts in `count` and `failed`, and not in the means; the shares are of all frames.
        share = (lambda n: float(100.0 * n / len(recs))) if recs else (lambda n: None)
        mpjpe = np.array([r["mpjpe_mm"] for r in ok])
        return {"count": len(recs), "failed": len(recs) - len(ok),
                "mpjpe_mm": float(per_joint.mean()) if ok else None,
                "mpjpe_median_mm": float(np.median(mpjpe)) if ok else None,
                "no_person_pct": share(sum(r["reason"].startswith(NO_PERSON) for r in recs)),
                "rejected_pct": share(sum(r["reason"].startswith(REJECTED) for r in recs)),
                "over_150mm_pct": share(int(np.sum(mpjpe > 150.0))),
                "turned_pct": None if yaw_source == "gt" else share(int(np.sum(yaw > 90.0))),
                "per_joint_mm": dict(zip(JOINT_NAMES, per_joint.mean(0).tolist())) if ok else None,
                "cd_1e3": float(np.mean(cds)) if cds else None,
                "yaw_error_deg": None if yaw_source == "gt" or not ok else {
                    "median": float(np.median(yaw)), "p95": float(np.percentile(yaw, 95)),
                    "over_30_pct": float(100 * np.mean(yaw > 30))}}

    ok = [r for r in records if r["valid"]]
    totals = [r["timings"]["total"] for r in ok]
    out = {"protocol": protocol, "backend": estimator.backend, **block(records),
           "fps": float(1.0 / np.mean(totals)) if totals else None,
           "device": provenance.device_description(estimator.device),
           "git_commit": git_commit or provenance.git_commit(),
           "yaw_source": YAW_DESCRIPTIONS[yaw_source],
           "input": INPUT_DESCRIPTIONS[input_mode],
           "profile": asdict(estimator.profile),
           "weights": {k: estimator.meta.get(k)
                       for k in ("epochs_done", "epochs_planned", "data_seed", "data_profile", "git_commit",
                                 "command")}}
    if getattr(estimator, "nvf_head", None) is not None:
        out["nvf"] = {"radius": estimator.nvf_head.config.radius, "vote_decoding": asdict(estimator.vote_decoding)}
    if protocol == "all":
        out["by_protocol"] = {p: block([r for r in records if (r["condition"], r["view"]) in PROTOCOLS[p]])
                              for p in ("CC", "CV", "CCCV")}
    out["by_view"] = {v: block([r for r in records if r["view"] == v])["mpjpe_mm"]
                      for v in sorted({r["view"] for r in records})}
    out["by_condition"] = {c: block([r for r in records if r["condition"] == c])["mpjpe_mm"]
                           for c in sorted({r["condition"] for r in records})}
    return out


def bench_canonicalise(samples: Iterable[dict], yaw_estimator, progress: bool = True, leg_classifier=None,
                       decimation: int = 1) -> dict:
    """Latency of the canonicaliser's work on whole scene clouds: decimation (of each sample's
    organised `cloud` where it has one, else of its `points`) and segmentation (with LegSegNet's
    share when `leg_classifier` is given), then RotNet."""
    from tqdm import tqdm

    from ..perception.segment import SegmentationConfig, decimate, segment_legs

    samples = list(samples)
    config = SegmentationConfig().decimated(decimation)
    stages = defaultdict(list)
    found, centre = 0, None
    def thinned(sample: dict) -> np.ndarray:
        return decimate(sample.get("cloud", sample["points"]), decimation)

    # Untimed warm-up: the first call of each pays one-off costs (allocations, torch's first pass).
    points = thinned(samples[0])
    first = segment_legs(points, config, sensor_origin=samples[0]["camera_to_gravity"][:3, 3],
                         leg_classifier=leg_classifier)
    if first.valid:
        yaw_estimator.predict(points[first.heading_indices])
    sizes = []
    for a in tqdm(samples, desc="bench canonicalise", unit="frame", disable=not progress):
        t0 = time.perf_counter()
        points = thinned(a)
        seg = segment_legs(points, config, previous_centre=centre, sensor_origin=a["camera_to_gravity"][:3, 3],
                           leg_classifier=leg_classifier)
        t1 = time.perf_counter()
        sizes.append(len(points))
        stages["segmentation"].append(t1 - t0)
        if "leg_classifier" in seg.timings:
            stages["of which leg_classifier"].append(seg.timings["leg_classifier"])
        if seg.valid:
            found += 1
            centre = seg.centre
            yaw_estimator.predict(points[seg.heading_indices])
            stages["rotnet"].append(time.perf_counter() - t1)
        stages["total"].append(time.perf_counter() - t0)
    return {"stages_ms": {k: {"mean": 1000 * float(np.mean(v)), "p95": 1000 * float(np.percentile(v, 95))}
                          for k, v in stages.items()},
            "frames": len(samples), "frames_with_person": found,
            "scene_points": float(np.mean([len(a["points"]) for a in samples])), "decimation": decimation,
            "points_segmented": float(np.mean(sizes)),
            "rotnet_turns": yaw_estimator.turns,
            "leg_points_by": leg_classifier.description if leg_classifier else "pelvis crop",
            "device": provenance.device_description(yaw_estimator.device)}


def bench_prior_step(samples: Iterable[dict], noise_m: float = 0.015, seed: int = 0) -> dict:
    """Latency of the pose_prior node's work per frame: `PosePrior.step` with the node's parameter
    defaults, on the samples' true joints plus isotropic Gaussian noise (`noise_m` per axis)."""
    from ..inference.pipeline import PipelineSettings, load_prior
    from ..inference.prior import SOLVER

    samples = list(samples)
    prior = load_prior(True, PipelineSettings(), [])
    if prior is None:
        return {"note": "Pose-NDF weights unavailable"}
    rng = np.random.default_rng(seed)
    # The first frames start the filter (no window, no cycle yet): untimed, while later ones are left.
    untimed = min(3, len(samples) - 1)
    seconds = []
    for i, a in enumerate(samples):
        joints = np.asarray(a["joints"], float) + rng.normal(0.0, noise_m, (9, 3))
        t = time.perf_counter()
        prior.step(float(a["stamp_s"]), joints)
        if i >= untimed:
            seconds.append(time.perf_counter() - t)
    return {"step_ms": {"mean": 1000 * float(np.mean(seconds)), "p95": 1000 * float(np.percentile(seconds, 95))},
            "frames_timed": len(seconds), "noise_m": noise_m, "seed": seed,
            "settings": {k: getattr(prior.config, k) for k in ("lag_frames", "iterations", "observation_sigma_m",
                                                                "motion_sigma_m", "jerk_sigma_m", "prior_weight")}
            | {"solver": SOLVER}}


def bench_speed(estimators: dict, samples: Iterable[dict], track: bool = True, repeats: int = 1,
                progress: bool = True) -> dict:
    """Per-stage latency (mean, p95), FPS, MPJPE and peak memory of each profile over the same
    frames (a walking sequence: `track` warm-starts each frame from the previous one)."""
    import torch
    from tqdm import tqdm

    samples = list(samples)
    out = {}
    for name, est in estimators.items():
        if str(est.device).startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        est.reset()
        stages = defaultdict(list)
        points, iters, errors = [], [], []
        est.estimate(leg_input(samples[0]), yaw=heading_of(samples[0]["subject_to_gravity"]))   # warm-up
        for _ in range(repeats):
            est.reset()
            for a in tqdm(samples, desc=f"bench {name}", unit="frame", disable=not progress):
                res = est.estimate(leg_input(a), yaw=heading_of(a["subject_to_gravity"]),
                                   camera_origin=a["camera_to_gravity"][:3, 3], track=track)
                for k, v in res.timings.items():
                    stages[k].append(v)
                points.append(min(len(leg_input(a)), est.profile.points))
                iters.append(res.iterations)
                errors.append(mpjpe_mm(res.joints, a["joints"]))
        entry = {"stages_ms": {k: {"mean": 1000 * float(np.mean(v)), "p95": 1000 * float(np.percentile(v, 95))}
                               for k, v in stages.items()},
                 "fps": float(1.0 / np.mean(stages["total"])), "frames": len(stages["total"]),
                 "mpjpe_mm": float(np.mean(errors)),
                 "points": float(np.mean(points)), "iterations_mean": float(np.mean(iters)),
                 "track": track, "device": provenance.device_description(est.device),
                 "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
        if str(est.device).startswith("cuda"):
            entry["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2 ** 20
        out[name] = entry
    return out
