"""tools/raycast_scenes.py: the third, ray-cast validation generator writes builds that `posesdf eval` reads,
with the benchmark's joints inside the bodies it renders."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np


def _build(tool, out: Path, n: int, seed: int) -> dict:
    tool.main(["--n", str(n), "--seed", str(seed), "--out", str(out)])
    return json.loads((out / "manifest.json").read_text())


def test_a_raycast_build_holds_its_walkers_on_the_floor_and_its_joints_in_them(raycast_tool, tmp_path):
    manifest = _build(raycast_tool, tmp_path / "a", 3, seed=5)
    assert manifest["split"] == "raycast" and manifest["count"] == 3
    for entry in manifest["samples"]:
        scene = np.load(tmp_path / "a" / entry["file"])
        legs = scene["points"][scene["leg_mask"]]
        assert len(legs) == entry["leg_points"] >= 200
        camera = scene["camera_to_gravity"][:3, 3]
        assert 0.4 <= camera[2] <= 1.7 and np.linalg.norm(camera[:2]) > 0.0
        # The floor is z = 0: the lowest leg points stand on it, and no point lies far below it.
        assert abs(np.percentile(legs[:, 2], 0.5)) < 0.05 and np.percentile(scene["points"][:, 2], 1) > -0.05
        # Hips and knees lie inside the rendered body; every leg point below the crop plane (pelvis + 0.1 m).
        assert (np.asarray(entry["joint_sdf_m"])[[1, 2, 5, 6]] < 0).all()
        assert legs[:, 2].max() < scene["joints"][0, 2] + 0.1
        # The heading: the walker faces `azimuth_deg` away from the camera's bearing, as the other builds say.
        to_camera = camera[:2] - scene["subject_to_gravity"][:2, 3]
        facing = scene["subject_to_gravity"][:2, 0]
        cross = facing[0] * to_camera[1] - facing[1] * to_camera[0]
        angle = np.degrees(np.arctan2(cross, facing @ to_camera)) % 360
        assert abs((angle - float(scene["azimuth_deg"]) + 180) % 360 - 180) < 1e-6
    # Seeded: the same build again is the same scenes.
    again = _build(raycast_tool, tmp_path / "b", 1, seed=5)
    first = again["samples"][0]["file"]
    assert np.array_equal(np.load(tmp_path / "a" / first)["points"], np.load(tmp_path / "b" / first)["points"])


def test_posesdf_eval_reads_a_raycast_build(raycast_tool, tmp_path):
    _build(raycast_tool, tmp_path / "data", 2, seed=6)
    js = tmp_path / "eval.json"
    command = [str(Path(sys.executable).parent / "posesdf"), "eval", "--protocol", "all", "--profile", "fast",
               "--input", "legs", "--yaw", "gt", "--no-mesh", "--data", str(tmp_path / "data"), "--json", str(js),
               "--quiet"]
    run = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    summary = json.loads(js.read_text())
    assert summary["data_split"] == "raycast" and summary["data_profile"] == "raycast" and summary["count"] == 2
