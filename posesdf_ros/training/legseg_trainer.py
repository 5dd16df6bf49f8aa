"""LegSegNet training: lower-limb points of a person's window, from scenes of the training bodies.

The scenes are made like those of the test split (every condition and
view, clutter, the `realistic` noise profile), but of the 300 training
bodies and with their own data seed (default 3; the val split uses 2,
test 1), so neither the test bodies nor the val scenes are seen. Each
scene goes through `segment_legs`' person finder (`find_person`); the
points of the person below `pelvis guess + window` and their `leg_mask`
labels are cached once in OUT/windows.npz. With `profile` "product" the
scenes come from the product engine instead (`data.domain`: its training
bodies, gaits, camera presets with their sensor models, clutter near the
legs), as a product val build would draw them. Batches draw a fresh variant
of each window: a random turn about the vertical, a mirror image half the
time, scale +-8 %, floor height +-2 cm, a tilt up to 2 deg, jitter up to
5 mm, and a random subsample.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..models.legseg import LegSegConfig, LegSegNet, leg_loss, to_network_frame
from ..provenance import git_commit
from .checkpoint import export_weights, open_network_run
from .loop import Step, fit

#: Points kept per cached window (a random subset of larger ones).
CACHE_POINTS = 3072


@dataclass
class LegSegTrainConfig:
    name: str = "small"
    model: LegSegConfig = field(default_factory=LegSegConfig)
    scenes_per_cell: int = 70            # x 29 (condition, view) cells
    data_seed: int = 3
    # Scene engine: "paper" (the test split's), "product" (data.domain) or "mixed" (both, scenes_per_cell each)
    profile: str = "paper"
    window_above_pelvis: float = 0.30    # m above the pelvis guess: the window's top
    epochs: int = 40
    batch: int = 16
    lr: float = 1e-3
    lr_step_epochs: int = 15
    checkpoint_every: int = 1
    seed: int = 0
    scale: float = 0.08
    floor_shift: float = 0.02
    tilt_deg: float = 2.0
    jitter: float = 0.005

    def to_dict(self) -> dict:
        return asdict(self)


def preset(name: str) -> LegSegTrainConfig:
    if name == "small":
        return LegSegTrainConfig()
    if name == "fast":      # a quarter of small's work per window, for the realtime canonicaliser
        return LegSegTrainConfig(name="fast", model=LegSegConfig(points=512, sa1=(128, 0.1, 16, (32, 32, 64)),
                                                                  sa2=(32, 0.25, 16, (64, 64, 128))))
    if name == "tiny":      # tests: a few scenes, a few epochs
        return LegSegTrainConfig(name="tiny", model=LegSegConfig(points=256, sa1=(64, 0.1, 16, (16, 32)),
                                                                  sa2=(16, 0.25, 16, (32, 64)),
                                                                  sa3=(None, 0.0, 0, (64,)), fp2=(64,),
                                                                  fp1=(32,), fp0=(32,)),
                                 scenes_per_cell=1, epochs=3, batch=4)
    raise ValueError(f"unknown LegSegNet config {name!r}; expected small, fast or tiny")


def person_window(points: np.ndarray, sensor: np.ndarray, window_above_pelvis: float):
    """(indices into points, heights above the floor) of the found person's points below the
    pelvis guess + `window_above_pelvis`, or None when no person is found."""
    from ..perception.segment import SegmentationConfig, find_person

    person = find_person(np.asarray(points, np.float32), SegmentationConfig(), None, sensor)
    if isinstance(person, str):
        return None
    members = person.members_below(person.pelvis_height + window_above_pelvis)
    return person.roi[members], person.height[members]


#: `LegSegTrainConfig.profile`: the scene engines whose windows make the training set.
PROFILE_ENGINES = {"paper": ("paper",), "product": ("product",), "mixed": ("paper", "product")}


def make_windows(config: LegSegTrainConfig, progress: bool = True) -> dict[str, np.ndarray]:
    """Render the training scenes and cut out the person windows (see the module docstring): those of
    each engine of the profile in turn, `scenes_per_cell` scenes per cell each."""
    if config.profile not in PROFILE_ENGINES:
        raise ValueError(f"unknown profile {config.profile!r}; expected one of {', '.join(PROFILE_ENGINES)}")
    parts = [engine_windows(config, engine, progress) for engine in PROFILE_ENGINES[config.profile]]
    offsets, start = [np.zeros(1, np.int64)], 0
    for part in parts:      # each engine's window offsets, continued after the windows before it
        offsets.append(part["offsets"][1:] + start)
        start += len(part["points"])
    joined = {key: np.concatenate([part[key] for part in parts]) for key in ("points", "height", "label", "cells")}
    return joined | {"offsets": np.concatenate(offsets), "scenes": np.int64(sum(int(p["scenes"]) for p in parts))}


def engine_windows(config: LegSegTrainConfig, engine: str, progress: bool = True) -> dict[str, np.ndarray]:
    """The person windows of one scene engine ("paper" or "product")."""
    from tqdm import tqdm

    from ..data.body import BodyModel
    from ..data.dataset import make_test_sample, sample_keys
    from ..data.domain import make_product_scene_sample

    make = make_product_scene_sample if engine == "product" else make_test_sample
    body_model = BodyModel()
    keys = sample_keys("val", "all", config.scenes_per_cell)
    pts, hts, labels, offsets, cells = [], [], [], [0], []
    for key in tqdm(keys, desc=f"legseg scenes ({engine})", unit="scene", disable=not progress):
        arrays, _ = make(body_model, key, config.data_seed)
        found = person_window(arrays["points"], arrays["camera_to_gravity"][:3, 3], config.window_above_pelvis)
        if found is None or len(found[0]) < 100:
            continue
        idx, height = found
        rng = key.rng(config.data_seed + 1000)
        keep = rng.choice(len(idx), min(len(idx), CACHE_POINTS), replace=False)
        pts.append(arrays["points"][idx[keep]].astype(np.float32))
        hts.append(height[keep].astype(np.float32))
        labels.append(arrays["leg_mask"][idx[keep]])
        offsets.append(offsets[-1] + len(keep))
        cells.append(f"{key.condition}/{key.view}")
    return {"points": np.concatenate(pts), "height": np.concatenate(hts), "label": np.concatenate(labels),
            "offsets": np.array(offsets), "cells": np.array(cells), "scenes": np.int64(len(keys))}


def load_or_make_windows(out: Path, config: LegSegTrainConfig, progress: bool = True) -> dict[str, np.ndarray]:
    cache = out / "windows.npz"
    stamp = np.array([config.scenes_per_cell, config.data_seed, int(1000 * config.window_above_pelvis),
                      list(PROFILE_ENGINES).index(config.profile)])
    if cache.exists():
        with np.load(cache) as z:
            if z["stamp"].shape == stamp.shape and np.array_equal(z["stamp"], stamp):
                return {k: z[k] for k in z.files}
    windows = make_windows(config, progress)
    np.savez(cache, stamp=stamp, **windows)
    return windows


def _turn(points: np.ndarray, yaw: float, tilt: np.ndarray) -> np.ndarray:
    c, s = np.cos(yaw), np.sin(yaw)
    R = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    tx, ty = tilt
    Rx = np.array([[1, 0, 0], [0, np.cos(tx), -np.sin(tx)], [0, np.sin(tx), np.cos(tx)]])
    Ry = np.array([[np.cos(ty), 0, np.sin(ty)], [0, 1, 0], [-np.sin(ty), 0, np.cos(ty)]])
    return points @ (Rx @ Ry @ R).T


def augmented(points: np.ndarray, height: np.ndarray, label: np.ndarray, n: int, config: LegSegTrainConfig,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One variant of a window: (network input (n, 3), labels (n,))."""
    pick = rng.choice(len(points), n, replace=len(points) < n)
    centre = points[:, :2].mean(0)
    local = np.column_stack([points[pick, :2] - centre, height[pick]])
    if rng.random() < 0.5:
        local[:, 1] = -local[:, 1]
    tilt = np.deg2rad(rng.uniform(-config.tilt_deg, config.tilt_deg, 2))
    local = _turn(local, rng.uniform(-np.pi, np.pi), tilt)
    local = local * (1 + rng.uniform(-config.scale, config.scale))
    local[:, 2] += rng.uniform(-config.floor_shift, config.floor_shift)
    local += rng.normal(0, rng.uniform(0, config.jitter), local.shape)
    x = to_network_frame(torch.from_numpy(local[None]).float(), torch.from_numpy(local[None, :, 2]).float(),
                         torch.from_numpy(local[None, :, :2].mean(1)).float())[0]
    return x.numpy(), label[pick]


#: Thresholds on the leg probability tried by `sweep_thresholds`.
THRESHOLDS = tuple(round(0.3 + 0.05 * i, 2) for i in range(13))


def sweep_thresholds(folder: Path, classifier, thresholds=THRESHOLDS, progress: bool = True) -> list[dict]:
    """Pooled point precision and recall against `leg_mask` of `segment_legs` with `classifier`
    at each threshold, over a val (or test) build's scenes: one network pass per scene."""
    from tqdm import tqdm

    from ..data.dataset import load_manifest

    folder = Path(folder)
    hits, kept = np.zeros(len(thresholds)), np.zeros(len(thresholds))
    truth_total = 0
    for entry in tqdm(load_manifest(folder)["samples"], desc="legseg thresholds", unit="scene",
                      disable=not progress):
        with np.load(folder / entry["file"]) as z:
            points, truth, sensor = z["points"], z["leg_mask"], z["camera_to_gravity"][:3, 3]
        truth_total += int(truth.sum())
        found = person_window(points, sensor, classifier.window_above_pelvis)
        if found is None:
            continue
        idx, height = found
        probability = classifier.leg_probability(points[idx], height)
        for i, t in enumerate(thresholds):
            mask = probability > t
            hits[i] += truth[idx[mask]].sum()
            kept[i] += mask.sum()
    return [{"threshold": t, "precision": float(h / max(k, 1)), "recall": float(h / max(truth_total, 1))}
            for t, h, k in zip(thresholds, hits, kept)]


def mislabelled(precision: float, recall: float) -> float:
    """Points labelled wrong, false positives and false negatives alike, per true leg point, from pooled
    precision and recall: recall / precision - 2 recall + 1."""
    return recall / max(precision, 1e-12) - 2.0 * recall + 1.0


def best_threshold(sweep: list[dict]) -> dict:
    """The row of a threshold sweep that mislabels the fewest points (the lowest threshold among equals).
    Not the best min(precision, recall), which the trainer took before: on the product engine's val scenes
    that sat at the sweep's lowest threshold, buying recall with precision, while a fit pays more for a
    wrong point than for a missing one (a hand kept beside the hip draws the hips; a missing patch leaves
    the surface less covered): docs/segmentation.md, "The threshold the fit needs"."""
    return min(sweep, key=lambda r: (round(mislabelled(r["precision"], r["recall"]), 9), r["threshold"]))


def tune_threshold(out: Path, folder: Path, progress: bool = True) -> dict:
    """Pick the threshold of the exported legseg.pt in `out` that mislabels the fewest points
    (`best_threshold`) on the build in `folder` (a val split: training bodies, not the test ones) and
    store it, with the sweep, in legseg.json."""
    import json

    from ..data.dataset import load_manifest
    from ..inference.legseg import LegClassifier

    manifest = load_manifest(folder)
    split = manifest.get("split")
    if split != "val":
        raise SystemExit(f"{folder} is a {split} build; tune the threshold on `posesdf data build --split val`")
    sweep = sweep_thresholds(folder, LegClassifier.from_pretrained(weights=out), progress=progress)
    best = best_threshold(sweep)
    meta_path = Path(out) / "legseg.json"
    meta = json.loads(meta_path.read_text())
    meta |= {"threshold": best["threshold"], "threshold_sweep": sweep,
             "threshold_data": {"folder": str(folder), "split": split, "data_seed": manifest.get("seed"),
                                "scenes": manifest.get("count")}}
    meta_path.write_text(json.dumps(meta, indent=1))
    return best


def train_legseg(out: Path, config: LegSegTrainConfig, device: str = "cpu", resume: bool = True,
                 progress: bool = True, max_minutes: float | None = None, export_only: bool = False) -> dict:
    """Train (or resume) into `out`: windows.npz, checkpoint.pt, loss.csv, loss.png, legseg.pt/legseg.json."""
    t_start = time.perf_counter()
    out = Path(out)
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    model = LegSegNet(config.model).to(dev)
    # A rerun may extend the epochs, nothing else.
    run = open_network_run(out, model, config.lr, config.lr_step_epochs, config.to_dict() | {"epochs": None},
                           dev, resume)
    windows = load_or_make_windows(out, config, progress)
    offsets = windows["offsets"]
    count = len(offsets) - 1
    hits = {"tp": 0, "fp": 0, "fn": 0}      # the epoch's point counts

    def batches(epoch: int) -> Iterator[tuple]:
        """(network inputs (B, n, 3), leg labels (B, n)) per batch, freshly augmented."""
        rng = np.random.default_rng([config.seed, epoch])
        hits.update(tp=0, fp=0, fn=0)
        for ids in np.array_split(rng.permutation(count), max(1, count // config.batch)):
            pairs = [augmented(windows["points"][offsets[i]:offsets[i + 1]],
                               windows["height"][offsets[i]:offsets[i + 1]],
                               windows["label"][offsets[i]:offsets[i + 1]], config.model.points, config, rng)
                     for i in ids]
            yield (torch.from_numpy(np.stack([p for p, _ in pairs])).to(dev),
                   torch.from_numpy(np.stack([lab for _, lab in pairs])).to(dev))

    def step(batch) -> Step:
        x, y = batch
        logits = model(x)
        pred = logits.detach() > 0
        hits["tp"] += int((pred & y).sum())
        hits["fp"] += int((pred & ~y).sum())
        hits["fn"] += int((~pred & y).sum())
        return Step({"loss": leg_loss(logits, y)}, len(x))

    def epoch_logs(epoch: int) -> dict:
        tp, fp, fn = hits["tp"], hits["fp"], hits["fn"]
        return {"precision": tp / max(1, tp + fp), "recall": tp / max(1, tp + fn),
                "lr": run.optimizer.param_groups[0]["lr"]}

    stopped_early = not export_only and fit(
        run, config.epochs, batches, step, checkpoint_every=config.checkpoint_every, max_minutes=max_minutes,
        started=t_start, epoch_logs=epoch_logs, plot=("loss", "precision", "recall"),
        desc=f"legseg[{config.name}]", progress=progress,
        postfix=lambda h: {"loss": f"{h['loss']:.3f}", "p": f"{h['precision']:.3f}", "r": f"{h['recall']:.3f}"})
    history, done = run.history, run.epochs_done
    train_seconds = sum(h["seconds"] for h in history)
    meta = {"model": "legseg", "config": config.model.to_dict(), "train_config": config.to_dict(),
            "window_above_pelvis": config.window_above_pelvis,
            "epochs_done": done, "epochs_planned": config.epochs, "complete": done >= config.epochs,
            "data_seed": config.data_seed, "data_profile": config.profile, "scenes": int(windows["scenes"]),
            "windows": count,
            "device": str(dev), "torch_threads": torch.get_num_threads(),
            "train_minutes": round(train_seconds / 60, 1), "git_commit": git_commit(),
            "final": history[-1] if history else None,
            "command": f"posesdf train legseg --config {config.name} --epochs {config.epochs} "
                       f"--scenes-per-cell {config.scenes_per_cell} --data-seed {config.data_seed} "
                       f"--profile {config.profile} "
                       f"--out {out} --device {device}"}
    export_weights(out, "legseg", model, meta)
    return {"out": str(out), "epochs_done": done, "epochs_planned": config.epochs, "stopped_early": stopped_early,
            "final": history[-1] if history else None}
