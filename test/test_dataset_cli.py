import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from posesdf_ros.data.dataset import PROTOCOLS, build_dataset, sample_keys

SPEC_TEST_KEYS = {
    "points": ((None, 3), np.float32), "leg_mask": ((None,), np.bool_), "joints": ((9, 3), np.float32),
    "camera_to_gravity": ((4, 4), np.float64), "gt_surface": ((30000, 3), np.float32),
    "norm_centre": ((3,), np.float64), "norm_scale": ((), np.float64),
}


def _posesdf(*args, cwd=None):
    exe = Path(sys.executable).with_name("posesdf")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=600)


def test_protocols_match_the_spec_sizes():
    assert len(PROTOCOLS["CC"]) * 100 == 400
    assert len(PROTOCOLS["CV"]) * 100 == 500
    assert len(PROTOCOLS["CCCV"]) * 100 == 2000
    assert len(sample_keys("test", "all")) == 2900
    assert len(sample_keys("train")) == 300
    assert ("normal", "V1") not in PROTOCOLS["all"]


def test_cli_builds_a_test_set_that_matches_the_spec(tmp_path):
    out = tmp_path / "test"
    run = _posesdf("data", "build", "--split", "test", "--protocol", "CC", "--limit", "1", "--out", str(out), "--quiet")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["samples"] == 4
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["split"] == "test" and manifest["seed"] == 1 and manifest["count"] == 4
    for entry in manifest["samples"]:
        assert {"file", "condition", "view", "azimuth_deg", "subject"} <= set(entry)
        assert entry["view"] == "V1" and entry["protocols"] == ["CC"]
        with np.load(out / entry["file"]) as z:
            for key, (shape, dtype) in SPEC_TEST_KEYS.items():
                arr = z[key]
                assert arr.dtype == dtype, key
                assert all(a == b for a, b in zip(arr.shape, shape) if b is not None) and arr.ndim == len(shape), key
            assert len(z["points"]) == len(z["leg_mask"]) and np.isfinite(z["points"]).all()
            assert 1000 < z["leg_mask"].sum() < len(z["points"])
            assert str(z["condition"]) == entry["condition"] and str(z["subject"]).startswith("test-")
            # Ground-truth joints lie among the leg points.
            legs = z["points"][z["leg_mask"]]
            near = np.linalg.norm(legs[:, None] - z["joints"][None, 1:], axis=-1).min(0)
            assert near.max() < 0.15

    # A rerun keeps what is there; a build with another seed into it is refused.
    before = {p: p.stat().st_mtime_ns for p in (out / "samples").iterdir()}
    assert _posesdf("data", "build", "--split", "test", "--protocol", "CC", "--limit", "1", "--out", str(out),
                    "--quiet").returncode == 0
    assert before == {p: p.stat().st_mtime_ns for p in (out / "samples").iterdir()}
    refused = _posesdf("data", "build", "--split", "test", "--seed", "5", "--limit", "1", "--out", str(out), "--quiet")
    assert refused.returncode != 0 and "seed" in refused.stderr


def test_builds_are_deterministic_and_subsets_of_bigger_builds(tmp_path, body_model):
    a = build_dataset(tmp_path / "a", "train", limit=1, progress=False, body_model=body_model)
    b = build_dataset(tmp_path / "b", "train", limit=2, progress=False, body_model=body_model)
    assert a["count"] == 1 and b["count"] == 2
    name = a["samples"][0]["file"]
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    build_dataset(tmp_path / "c", "test", protocol="CV", limit=1, progress=False, body_model=body_model)
    build_dataset(tmp_path / "d", "test", protocol="CV", limit=1, progress=False, body_model=body_model)
    for f in sorted((tmp_path / "c" / "samples").iterdir()):
        assert f.read_bytes() == (tmp_path / "d" / "samples" / f.name).read_bytes()


def test_val_split_holds_test_like_scenes_of_training_bodies(tmp_path, body_model):
    from posesdf_ros.evaluation.benchmark import select_samples

    val = build_dataset(tmp_path / "val", "val", protocol="CC", limit=1, progress=False, body_model=body_model)
    test = build_dataset(tmp_path / "test", "test", protocol="CC", limit=1, progress=False, body_model=body_model)
    assert (val["split"], val["seed"], val["count"]) == ("val", 2, len(PROTOCOLS["CC"]))
    assert all(e["subject"].startswith("train-") and e["file"].startswith("samples/val_") for e in val["samples"])
    assert all(e["subject"].startswith("test-") and e["file"].startswith("samples/test_") for e in test["samples"])
    with np.load(tmp_path / "val" / val["samples"][0]["file"]) as sample:
        assert sample["leg_mask"].any() and str(sample["subject"]).startswith("train-")
    assert len(select_samples(tmp_path / "val", "CC")) == len(PROTOCOLS["CC"])    # posesdf eval takes it


def test_the_occluder_stands_between_the_camera_and_the_walker_of_the_same_scene(tmp_path, body_model):
    """`--occluder`: a box within `OccluderRanges`, on the line from the camera to the walker, hiding leg
    points; the walker and the rest of the scene drawn as without it. Builds record it and do not mix."""
    from dataclasses import asdict

    import pytest

    from posesdf_ros.data.dataset import SampleKey, make_test_sample
    from posesdf_ros.data.scene import OCCLUDER

    key = SampleKey("test", 0, "normal", "V1")
    plain, plain_entry = make_test_sample(body_model, key, 1)
    hidden, entry = make_test_sample(body_model, key, 1, occluder=True)
    assert np.array_equal(plain["joints"], hidden["joints"]) and plain_entry["phase"] == entry["phase"]
    assert "occluder" not in plain_entry
    box = entry["occluder"]
    camera, walker = hidden["camera_to_gravity"][:2, 3], hidden["joints"][0, :2]
    sight = (walker - camera) / np.linalg.norm(walker - camera)
    offset = np.asarray(box["centre_xy"]) - camera
    along = offset @ sight / np.linalg.norm(walker - camera)
    aside = offset @ np.array([-sight[1], sight[0]])
    # The walker's pelvis is within a few cm of the point the box was placed toward.
    assert OCCLUDER.along[0] - 0.03 <= along <= OCCLUDER.along[1] + 0.03
    assert OCCLUDER.aside_m[0] - 0.05 <= aside <= OCCLUDER.aside_m[1] + 0.05
    for value, bounds in zip(box["size"], (OCCLUDER.depth_m, OCCLUDER.width_m, OCCLUDER.height_m)):
        assert bounds[0] <= value <= bounds[1]
    assert hidden["leg_mask"].sum() < 0.9 * plain["leg_mask"].sum()

    built = build_dataset(tmp_path / "o", "test", protocol="CC", limit=1, progress=False, body_model=body_model,
                          occluder=True)
    on_disk = json.loads((tmp_path / "o" / "manifest.json").read_text())
    assert on_disk["occluder"] == json.loads(json.dumps(asdict(OCCLUDER)))
    assert all("occluder" in e for e in built["samples"])
    with pytest.raises(SystemExit, match="--occluder"):
        build_dataset(tmp_path / "o", "test", protocol="CC", limit=1, progress=False, body_model=body_model)
    with pytest.raises(ValueError, match="train split"):
        build_dataset(tmp_path / "t", "train", limit=1, progress=False, body_model=body_model, occluder=True)


def test_preview_writes_pngs(tmp_path):
    run = _posesdf("data", "preview", "--out", str(tmp_path))
    assert run.returncode == 0, run.stderr
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert pngs == ["gait_curves.png"] + [f"preview_V{i}.png" for i in range(1, 7)]
    for p in tmp_path.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and p.stat().st_size > 20_000


def test_help_texts():
    for args in (["--help"], ["data", "--help"], ["data", "build", "--help"], ["data", "preview", "--help"]):
        run = _posesdf(*args)
        assert run.returncode == 0 and "usage: posesdf" in run.stdout
    bad = _posesdf("data", "build", "--split", "holdout", "--out", "x")
    assert bad.returncode == 2 and "invalid choice" in bad.stderr
