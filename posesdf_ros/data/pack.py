"""A compact copy of a training build, to carry where the build cannot be made.

A product train build is 2 GB (50,000 shape and 72,000 joint SDF samples
a shape, float32); a GPU machine without the body model receives at most
tens of MB. The pack keeps a random subset of each shape's samples in
float16 (normalised units: 0.1 mm steps near the surface and finer in
SDF), near-surface samples first then uniform ones in the build's
proportion, plus the per-shape arrays PoseSDF training needs, and the
build's manifest. `training.posesdf_trainer.SDFShapeSet` reads a pack as
it reads a build folder.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .dataset import load_manifest, save_npz
from .sdf import SHAPE_SAMPLES, UNIFORM_SHARE

PACK_VERSION = 1
PER_SHAPE = ("points", "sdf", "joint_points", "joint_points_sdf")


def pack_training_build(data: Path, out: Path, shape_samples: int = 3072, joint_samples: int = 192,
                        seed: int = 0, progress: bool = True) -> dict:
    """Write `out` (.npz) from the train build `data`; returns a summary.

    `shape_samples` of the 50,000 shape samples and `joint_samples` of the
    8,000 around each joint are kept per shape, drawn without replacement.
    """
    from tqdm import tqdm

    manifest = load_manifest(data)
    if manifest.get("split") != "train":
        raise ValueError(f"{data} is a {manifest.get('split')} build; only a train build can be packed")
    n_uniform = int(round(shape_samples * UNIFORM_SHARE))
    n_near, build_near = shape_samples - n_uniform, SHAPE_SAMPLES - int(SHAPE_SAMPLES * UNIFORM_SHARE)
    rng = np.random.default_rng(seed)
    arrays: dict[str, list] = {k: [] for k in (*PER_SHAPE, "joints", "norm_centre", "norm_scale", "surface_top")}
    for entry in tqdm(manifest["samples"], desc="packing shapes", unit="shape", disable=not progress):
        with np.load(Path(data) / entry["file"]) as z:
            pts, sdf, jp, js = z["points"], z["sdf"], z["joint_points"], z["joint_points_sdf"]
            per_joint = len(jp) // 9
            rows = np.concatenate([rng.choice(build_near, n_near, replace=False),
                                   build_near + rng.choice(len(pts) - build_near, n_uniform, replace=False)])
            joint_rows = np.concatenate([k * per_joint + rng.choice(per_joint, joint_samples, replace=False)
                                         for k in range(9)])
            arrays["points"].append(pts[rows])
            arrays["sdf"].append(sdf[rows])
            arrays["joint_points"].append(jp[joint_rows])
            arrays["joint_points_sdf"].append(js[joint_rows])
            arrays["joints"].append(z["joints"])
            arrays["norm_centre"].append(z["norm_centre"])
            arrays["norm_scale"].append(float(z["norm_scale"]))
            arrays["surface_top"].append(float(z["gt_surface"][:, 2].max()))
    packed = {k: np.stack(arrays[k]).astype(np.float16) for k in PER_SHAPE}
    packed |= {k: np.asarray(arrays[k], dtype=np.float64) for k in ("joints", "norm_centre", "norm_scale",
                                                                    "surface_top")}
    pack_info = {"version": PACK_VERSION, "source": str(data), "shape_samples": shape_samples,
                 "near_samples": n_near, "joint_samples": joint_samples, "seed": seed}
    packed["manifest"] = np.array(json.dumps(manifest | {"pack": pack_info}))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_npz(out, packed)
    return {"out": str(out), "shapes": len(manifest["samples"]), **pack_info,
            "megabytes": round(out.stat().st_size / 2**20, 1)}


def is_pack(path: Path) -> bool:
    return Path(path).is_file() and Path(path).suffix == ".npz"


def load_pack(path: Path, limit: int | None = None) -> tuple[dict, dict[str, np.ndarray]]:
    """(manifest, arrays) of the first `limit` shapes of a pack; samples and joints float32."""
    with np.load(path) as z:
        manifest = json.loads(str(z["manifest"]))
        if manifest.get("pack", {}).get("version") != PACK_VERSION:
            raise ValueError(f"{path} is not a training pack of version {PACK_VERSION}: rewrite it with "
                             f"`posesdf data pack`")
        arrays = {k: z[k][:limit] for k in z.files if k != "manifest"}
    for k in (*PER_SHAPE, "joints"):
        arrays[k] = arrays[k].astype(np.float32)
    manifest["samples"] = manifest["samples"][:limit]
    return manifest, arrays
