"""Benchmark datasets: splits, protocols, deterministic sample files.

A dataset is a folder with `manifest.json` and one `.npz` per sample under
`samples/` (benchmark spec, "Files"). Every sample comes from its own
random stream, keyed by (seed, split, condition, view, index), so a build
limited to a protocol or a few samples writes exactly the files a full
build would, and reruns skip what is already written.
"""
from __future__ import annotations

import io
import json
import os
import time
import zipfile
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import __version__
from ..geometry import yaw_matrix
from .body import BodyModel, sample_phenotype, subject_id
from .camera import LABEL_LOWER_LIMB, Intrinsics, noise_name
from .gait import ABNORMAL_CONDITIONS, CONDITIONS, GaitModel, sample_gait_params
from .scene import (
    OCCLUDER,
    OCCLUDER_STREAM,
    VIEWS,
    Box,
    WalkingSubject,
    front_occluder,
    render_scene,
    sample_camera,
    sample_clutter,
)
from .sdf import SURFACE_SAMPLES, lower_limb_surface, sdf_samples, unit_sphere_normalisation

#: "val" holds scenes like the test split's, but of the training bodies (data seed 2): a split to
#: tune inference and perception on without touching the test bodies. "shifted" holds scenes of a
#: second, independent generator (`data.shifted`, data seed 3), to validate on only.
SPLITS = ("train", "test", "val", "shifted")
SCENE_SPLITS = ("test", "val", "shifted")
#: Scene builds `posesdf eval` reads: those of `posesdf data build` and the ray-cast validation generator's
#: (`tools/raycast_scenes.py`, docs/data.md), in the same format.
EVAL_SPLITS = (*SCENE_SPLITS, "raycast")
#: Generators: "paper" is the benchmark spec's, "product" the domain-randomised engine (`data.domain`);
#: the shifted split has its own ("shifted"). A manifest without a profile is a paper build.
PROFILES = ("paper", "product")
TRAIN_BODIES = 300
TEST_BODIES = 100
TEST_SAMPLES_PER_CELL = 100
TRAIN_YAW_JITTER_DEG = 5.0
TRAIN_SURFACE_NOISE_M = 0.0015
TEST_NOISE = "realistic"
DEFAULT_SEEDS = {"train": 0, "test": 1, "val": 2, "shifted": 3}

_NON_CANONICAL = ("V2", "V3", "V4", "V5", "V6")
#: Protocol -> (condition, view) cells, after the PoseSDF paper.
PROTOCOLS: dict[str, tuple[tuple[str, str], ...]] = {
    "CC": tuple((c, "V1") for c in ABNORMAL_CONDITIONS),
    "CV": tuple(("normal", v) for v in _NON_CANONICAL),
    "CCCV": tuple((c, v) for c in ABNORMAL_CONDITIONS for v in _NON_CANONICAL),
}
PROTOCOLS["all"] = PROTOCOLS["CC"] + PROTOCOLS["CV"] + PROTOCOLS["CCCV"]


def protocols_of(condition: str, view: str) -> list[str]:
    return [p for p, cells in PROTOCOLS.items() if p != "all" and (condition, view) in cells]


def save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write an npz with fixed zip timestamps (same arrays, same bytes), atomically."""
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for key in sorted(arrays):
            buf = io.BytesIO()
            np.lib.format.write_array(buf, np.asanyarray(arrays[key]), allow_pickle=False)
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, buf.getvalue(), compresslevel=1)
    os.replace(tmp, path)


@dataclass(frozen=True)
class SampleKey:
    split: str
    index: int
    condition: str = "normal"
    view: str = "V1"

    @property
    def filename(self) -> str:
        if self.split == "train":
            return f"train_{self.index:04d}.npz"
        return f"{self.split}_{self.condition}_{self.view}_{self.index:03d}.npz"

    def rng(self, seed: int, *stream: int) -> np.random.Generator:
        """The sample's random stream; generators other than the paper's append a `stream` of their own."""
        return np.random.default_rng([seed, SPLITS.index(self.split), CONDITIONS.index(self.condition),
                                      list(VIEWS).index(self.view), self.index, *stream])


def sample_keys(split: str, protocol: str = "all", limit: int | None = None,
                profile: str = "paper") -> list[SampleKey]:
    """The samples of a split. Train: `limit` bodies (of TRAIN_BODIES, or of the product engine's
    `train_samples`); test, val and shifted: the cells of `protocol`, `limit` capping the samples per
    (condition, view) cell."""
    if split == "train":
        if profile == "product":
            from .domain import PRODUCT
            total = PRODUCT.train_samples
        else:
            total = TRAIN_BODIES
        return [SampleKey("train", i) for i in range(total if limit is None else min(limit, total))]
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {tuple(PROTOCOLS)}")
    n = TEST_SAMPLES_PER_CELL if limit is None else min(limit, TEST_SAMPLES_PER_CELL)
    return [SampleKey(split, i, c, v) for c, v in PROTOCOLS[protocol] for i in range(n)]


def make_test_sample(body_model: BodyModel, key: SampleKey, seed: int,
                     noise: str = TEST_NOISE, clutter: bool = True, occluder: bool = False) -> tuple[dict, dict]:
    """One test (or val) sample: a scene cloud of a test (training) body in a random gait phase;
    `occluder`: with a box between the camera and the walker (`scene.front_occluder`).

    Returns the arrays of the spec and the manifest entry.
    """
    rng = key.rng(seed)
    bodies = "train" if key.split == "val" else "test"
    subject_index = int(rng.integers(0, TRAIN_BODIES if bodies == "train" else TEST_BODIES))
    build = sample_phenotype(bodies, subject_index)
    params = sample_gait_params(rng, key.condition)
    camera = sample_camera(rng, VIEWS[key.view])
    walker = WalkingSubject(body_model, build, GaitModel(params), camera, mode="treadmill",
                            phase0=float(rng.random()))
    body, subject_to_gravity = walker.poses(np.zeros(1))
    boxes = sample_clutter(rng, camera) if clutter else []
    front = with_occluder(boxes, key, seed, camera) if occluder else None
    arrays, entry = scene_arrays(body_model, body, subject_to_gravity[0], camera, boxes, rng, noise, key,
                                 subject_id(bodies, subject_index))
    entry |= {"gait": params.to_dict(), "phase": walker.phase0} | occluder_record(front)
    return arrays, entry


def with_occluder(clutter: list, key: SampleKey, seed: int, camera) -> Box:
    """Append to `clutter` the key's box between the camera and the walker (`scene.front_occluder`), drawn
    from a stream of its own; returns it."""
    box = front_occluder(key.rng(seed, OCCLUDER_STREAM), camera)
    clutter.append(box)
    return box


def occluder_record(box: Box | None) -> dict:
    """The manifest entry's record of a scene's occluder: {} without one."""
    return {} if box is None else {"occluder": asdict(box)}


def scene_arrays(body_model: BodyModel, body, subject_to_gravity: np.ndarray, camera, boxes: list, rng,
                 noise, key: SampleKey, subject: str, intrinsics: Intrinsics = Intrinsics(),
                 colours: dict | None = None) -> tuple[dict, dict]:
    """Render posed body 0 of `body` in a scene and return a test sample's arrays and manifest entry
    (without the gait): the renderer's and the lower-limb surface's draws come from `rng`."""
    lower_face = body_model.lower_limb_face
    frame, verts, joints = render_scene(body, 0, subject_to_gravity, camera, boxes, rng, noise, lower_face,
                                        intrinsics, colours)
    crop = float(joints[0, 2] + 0.10)
    points, labels = frame.points_gravity()
    leg_mask = (labels == LABEL_LOWER_LIMB) & (points[:, 2] < crop)
    surface = lower_limb_surface(verts, body.faces, lower_face, crop, SURFACE_SAMPLES, rng)
    centre, scale = unit_sphere_normalisation(surface)
    arrays = {
        "points": points, "leg_mask": leg_mask, "joints": joints.astype(np.float32),
        "camera_to_gravity": frame.camera_to_gravity, "gt_surface": surface.astype(np.float32),
        "norm_centre": centre, "norm_scale": np.float64(scale),
        "subject_to_gravity": subject_to_gravity, "K": frame.intrinsics.K,
        "rgb": frame.rgb, "depth": frame.depth,
        "condition": np.str_(key.condition), "view": np.str_(key.view),
        "azimuth_deg": np.float64(camera.azimuth_deg), "subject": np.str_(subject),
    }
    entry = {
        "file": f"samples/{key.filename}", "split": key.split, "condition": key.condition, "view": key.view,
        "azimuth_deg": camera.azimuth_deg, "subject": subject,
        "protocols": protocols_of(key.condition, key.view), "points": int(len(points)),
        "leg_points": int(leg_mask.sum()), "noise": noise_name(noise), "clutter_objects": len(boxes),
        "camera": camera.to_dict(),
    }
    return arrays, entry


def make_train_sample(body_model: BodyModel, key: SampleKey, seed: int) -> tuple[dict, dict]:
    """One training shape: a training body in normal gait, SDF samples in the canonical frame.

    The canonical frame is the subject frame (x forward, y left, z up),
    turned by a random yaw of up to +-5 deg, and normalised into the unit
    sphere; the surface carries small noise along its normals.
    """
    rng = key.rng(seed)
    build = sample_phenotype("train", key.index)
    params = sample_gait_params(rng, "normal")
    phase = float(rng.random())
    body = body_model.pose(build, GaitModel(params).angles(np.array([phase])))
    yaw = np.deg2rad(rng.uniform(-TRAIN_YAW_JITTER_DEG, TRAIN_YAW_JITTER_DEG))
    R = yaw_matrix(yaw)
    verts, joints = body.vertices[0] @ R.T, body.joints[0] @ R.T
    verts = verts + _vertex_normals(verts, body.faces) * rng.normal(0, TRAIN_SURFACE_NOISE_M, (len(verts), 1))
    crop = float(joints[0, 2] + 0.10)
    arrays = sdf_samples(verts, body.faces, body_model.lower_limb_face, joints, crop, rng)
    arrays |= {"joints_m": joints.astype(np.float32), "yaw_deg": np.float64(np.rad2deg(yaw)),
               "subject": np.str_(subject_id("train", key.index))}
    entry = {"file": f"samples/{key.filename}", "split": "train", "condition": "normal", "view": "V1",
             "azimuth_deg": VIEWS["V1"], "subject": subject_id("train", key.index),
             "yaw_jitter_deg": float(np.rad2deg(yaw)), "phase": phase, "gait": params.to_dict(),
             "phenotype": build}
    return arrays, entry


def _vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    tri = vertices[faces]
    fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    vn = np.zeros_like(vertices)
    for k in range(3):
        np.add.at(vn, faces[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def build_dataset(out: Path, split: str, protocol: str = "all", limit: int | None = None, seed: int | None = None,
                  progress: bool = True, body_model: BodyModel | None = None, profile: str | None = None,
                  sensor: str = "full", occluder: bool = False) -> dict:
    """Write (or complete) a dataset folder and return its manifest.

    `profile` is "paper" (default) or "product" for train, test and val;
    the shifted split has its own generator and takes none. A folder holds
    one profile: completing it with another is refused. `sensor` (shifted
    split only, `shifted.SENSOR_PARTS`) switches halves of its sensor model
    off, for an ablation. `occluder` (scene splits only) stands a box
    between the camera and the walker in every scene (`scene.front_occluder`).
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    if split == "shifted":
        if profile not in (None, "shifted"):
            raise ValueError("the shifted split has its own generator: build it without a profile")
        profile = "shifted"
    elif profile is None:
        profile = "paper"
    elif profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    if sensor != "full" and split != "shifted":
        raise ValueError("--sensor ablates the shifted split's sensor model; the other splits have none to ablate")
    if occluder and split not in SCENE_SPLITS:
        raise ValueError("--occluder stands a box in front of the walker in scenes; the train split has none")
    seed = DEFAULT_SEEDS[split] if seed is None else seed
    out = Path(out)
    manifest_path = out / "manifest.json"
    params = {"split": split, "seed": seed, "protocol": protocol if split in SCENE_SPLITS else None,
              "noise": TEST_NOISE if split in SCENE_SPLITS else "train surface noise",
              "intrinsics": Intrinsics().to_dict(), "profile": profile,
              "occluder": asdict(OCCLUDER) if occluder else None}
    if profile == "product":
        from .domain import PRODUCT, make_product_scene_sample, make_product_train_sample
        params |= {"noise": "per sample: the camera preset's sensor model (noise, noise_model)"
                   if split in SCENE_SPLITS else "train surface noise",
                   "intrinsics": "per sample: the camera preset (camera_preset, intrinsics)",
                   "ranges": asdict(PRODUCT)}
        make = make_product_train_sample if split == "train" else make_product_scene_sample
    elif profile == "shifted":
        from dataclasses import replace

        from .shifted import SENSOR_PARTS, SHIFTED, make_shifted_sample
        if sensor not in SENSOR_PARTS:
            raise ValueError(f"unknown sensor {sensor!r}; expected one of {tuple(SENSOR_PARTS)}")
        choices = replace(SHIFTED, **SENSOR_PARTS[sensor])
        params |= {"noise": "per sample: structured light (noise_model)", "sensor": sensor,
                   "intrinsics": "per sample: the camera (camera_preset, intrinsics)", "choices": asdict(choices)}
        make = partial(make_shifted_sample, choices=choices)
    else:
        make = make_train_sample if split == "train" else make_test_sample
    if occluder:
        make = partial(make, occluder=True)
    entries: dict[str, dict] = {}
    if manifest_path.exists():
        old = json.loads(manifest_path.read_text())
        if old.get("split") != split or old.get("seed") != seed:
            raise SystemExit(f"{out} holds a {old.get('split')} build with seed {old.get('seed')}; "
                             f"use another --out for split={split} seed={seed}")
        if old.get("profile", "paper") != profile:
            raise SystemExit(f"{out} holds a {old.get('profile', 'paper')} build; use another --out for "
                             f"profile {profile}")
        if old.get("sensor", "full") != sensor:
            raise SystemExit(f"{out} holds a build with --sensor {old.get('sensor', 'full')}; use another --out "
                             f"for --sensor {sensor}")
        if bool(old.get("occluder")) != occluder:
            raise SystemExit(f"{out} holds a build {'with' if old.get('occluder') else 'without'} --occluder; "
                             "use another --out")
        entries = {e["file"]: e for e in old["samples"]}
    (out / "samples").mkdir(parents=True, exist_ok=True)
    _write_manifest(manifest_path, params, entries)    # the folder's split, seed and profile, from the start
    keys = sample_keys(split, protocol, limit, profile)
    body_model = body_model or BodyModel()
    from tqdm import tqdm

    start, made = time.perf_counter(), 0
    for key in tqdm(keys, desc=f"{split} samples", unit="sample", disable=not progress):
        rel = f"samples/{key.filename}"
        if (out / rel).exists() and rel in entries:
            continue
        arrays, entry = make(body_model, key, seed)
        save_npz(out / rel, arrays)
        entries[rel] = entry
        made += 1
        if made % 20 == 0:
            _write_manifest(manifest_path, params, entries)
    elapsed = time.perf_counter() - start
    manifest = _write_manifest(manifest_path, params, entries)
    manifest["build_stats"] = {"written": made, "seconds": elapsed,
                               "samples_per_s": made / elapsed if made else None}
    return manifest


def _write_manifest(path: Path, params: dict, entries: dict[str, dict]) -> dict:
    manifest = {"generator": "posesdf_ros.data", "generator_version": __version__, **params,
                "count": len(entries), "samples": [entries[k] for k in sorted(entries)]}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(manifest, indent=1))
    os.replace(tmp, path)
    return manifest


def load_manifest(folder: Path) -> dict:
    path = Path(folder) / "manifest.json"
    if not path.exists():
        raise FileNotFoundError(f"no manifest.json in {folder}: build it with `posesdf data build`")
    return json.loads(path.read_text())


def data_provenance(manifest: dict) -> dict:
    """What trained weights record of their build (a build's or a pack's manifest): its data seed, its
    engine (`data_profile`; builds written before profiles were recorded are the paper's) and, for a
    pack, how it was packed (`data_pack`)."""
    return {"data_seed": manifest.get("seed"), "data_profile": manifest.get("profile", "paper"),
            "data_pack": manifest.get("pack")}


def iter_samples(folder: Path, protocol: str | None = None) -> Iterable[tuple[dict, dict[str, np.ndarray]]]:
    """(manifest entry, arrays) of each sample, optionally of one protocol."""
    manifest = load_manifest(folder)
    for entry in manifest["samples"]:
        if protocol and protocol != "all" and protocol not in entry.get("protocols", []):
            continue
        with np.load(Path(folder) / entry["file"]) as z:
            yield entry, {k: z[k] for k in z.files}
