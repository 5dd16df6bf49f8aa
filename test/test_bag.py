"""`posesdf bag`: record, read and evaluate rosbag2 files without rclpy (rosbags only).

Bags are small (a few 320 x 180 frames) so that the whole file runs in
well under a minute; the full-size demonstration is in docs/bags.md.
"""
from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from posesdf_ros.cli import main
from posesdf_ros.ros.bag import layout
from posesdf_ros.ros.bag.reader import BagReader
from posesdf_ros.ros.bag.record import RecordConfig, record_walks

FRAMES = 5
CONFIG = RecordConfig(duration_s=FRAMES / 15.0, width=320, height=180)


@pytest.fixture(scope="module")
def walk_bag(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bags") / "walk"
    record_walks(out, CONFIG, progress=False)
    return out


def test_recorded_bag_has_the_documented_layout_and_any_rosbags_reader_reads_it(walk_bag):
    from rosbags.highlevel import AnyReader

    from posesdf_ros.data.stream import SyntheticWalker, WalkerConfig
    from posesdf_ros.geometry import look_at_pitched
    from posesdf_ros.ros.bag.messages import pose_array_joints, transform_matrix

    with BagReader(walk_bag) as reader:
        assert {t: i.msgtype for t, i in reader.topics.items()} == layout.TYPES
        assert {t: i.count for t, i in reader.topics.items()} == {
            t: 1 if t in (layout.TF_STATIC_TOPIC, layout.GT_GAIT_TOPIC) else FRAMES for t in layout.TYPES}
    walker = SyntheticWalker(WalkerConfig(width=320, height=180))
    # rosbags' own reader, with the types the bag defines (as any ROS 2 tool would read them).
    with AnyReader([walk_bag]) as reader:
        msgs = {}
        for conn, t_ns, raw in reader.messages():
            msgs.setdefault(conn.topic, []).append((t_ns, reader.deserialize(raw, conn.msgtype)))
    tf = msgs[layout.TF_STATIC_TOPIC][0][1].transforms[0]
    assert (tf.header.frame_id, tf.child_frame_id) == (layout.GRAVITY_FRAME, layout.CAMERA_FRAME)
    np.testing.assert_allclose(transform_matrix(tf.transform), look_at_pitched(0.9, np.deg2rad(9.0)), atol=1e-9)
    for i, (t_ns, msg) in enumerate(msgs[layout.GT_JOINTS_TOPIC]):
        np.testing.assert_allclose(pose_array_joints(msg), walker.frame(i / 15.0).joints, atol=1e-6)
        cloud = msgs[layout.POINTS_TOPIC][i][1]
        assert (cloud.header.stamp.sec * 10**9 + cloud.header.stamp.nanosec, cloud.header.frame_id) == \
            (t_ns, layout.CAMERA_FRAME)
        assert (cloud.height, cloud.width) == (180, 320) and [f.name for f in cloud.fields] == ["x", "y", "z", "rgb"]
    gait = {kv.key: kv.value for kv in msgs[layout.GT_GAIT_TOPIC][0][1].status[0].values}
    assert float(gait["cadence_spm"]) == pytest.approx(walker.walker.gait.params.cadence_spm, abs=1e-3)
    assert float(gait["stride_length_m"]) == pytest.approx(walker.walker.subject.stride_length_m, abs=1e-4)
    assert (gait["condition"], gait["view"]) == ("normal", "V1")


def test_sqlite3_and_compressed_bags_hold_the_same_clouds(walk_bag, tmp_path):
    from posesdf_ros.ros.bag.messages import cloud_xyz

    config = RecordConfig(duration_s=2 / 15.0, width=160, height=90, images=False)
    clouds = {}
    for storage, compression in (("mcap", "none"), ("sqlite3", "message"), ("mcap", "file")):
        out = tmp_path / f"{storage}_{compression}"
        record_walks(out, config, storage, compression, progress=False)
        with BagReader(out) as reader:
            clouds[storage, compression] = [cloud_xyz(m) for _, _, m in reader.messages([layout.POINTS_TOPIC])]
    reference = clouds["mcap", "none"]
    assert len(reference) == 2 and len(reference[0]) > 1000
    for key, got in clouds.items():
        assert len(got) == 2 and all(np.array_equal(a, b) for a, b in zip(got, reference)), key


def test_offline_eval_writes_report_and_the_issues_json(walk_bag, tmp_path, capsys):
    out, js = tmp_path / "report", tmp_path / "figures.json"
    assert main(["bag", "eval", str(walk_bag), "--out", str(out), "--json", str(js), "--quiet"]) == 0
    figures = json.loads(js.read_text())
    assert list(figures) == ["frames", "frames_with_person", "mpjpe_mm", "per_joint_mm", "dropped_frames", "fps"]
    assert figures["frames"] == FRAMES and figures["dropped_frames"] == 0 and figures["fps"] > 0
    summary = json.loads((out / "summary.json").read_text())
    records = json.loads((out / "records.json").read_text())
    scored = [r for r in records if r["errors_mm"] is not None]
    assert figures["frames_with_person"] == len(scored) >= FRAMES - 1
    # The figures are the records' means; a walker seen from V1 at 2.5 m is within a few centimetres.
    assert figures["mpjpe_mm"] == pytest.approx(np.mean([r["errors_mm"] for r in scored]))
    assert list(figures["per_joint_mm"]) == list(json.loads(json.dumps(summary["per_joint_mm"])))
    assert figures["mpjpe_mm"] < 60.0
    assert summary["by_view"] == {"V1": pytest.approx(figures["mpjpe_mm"])}
    assert summary["settings"]["prior"] is True          # the Pose-NDF prior filters the joints by default
    assert summary["gait"]["truth"][0]["condition"] == "normal"
    for name in ("summary.md", "error_over_time.png", "per_joint_error.png", "joint_trajectories.png",
                 "knee_angles.png"):
        assert (out / name).stat().st_size > 1000, name


def test_bag_of_test_samples_scores_as_posesdf_eval_does(test_build, tmp_path):
    """The same samples through `posesdf bag eval` and `posesdf eval --input scene --yaw rotnet`, with the
    evaluation's 1,024-point LegSegNet, full-resolution clouds and 4 RotNet turns (the canonicaliser's defaults
    trade them for speed)."""
    from posesdf_ros.evaluation.benchmark import evaluate, load_estimator
    from posesdf_ros.ros.bag.record import record_dataset

    bag = tmp_path / "samples"
    record_dataset(bag, test_build, "CV", limit=1, progress=False)
    js = tmp_path / "bag.json"
    params = tmp_path / "params.yaml"
    params.write_text("canonicaliser:\n  ros__parameters:\n    decimation: 1\n    rotnet_turns: 4\n"
                      "    legseg_model: small\n")
    assert main(["bag", "eval", str(bag), "--no-prior", "--profile", "fast", "--out", str(tmp_path / "r"),
                 "--params-file", str(params), "--json", str(js), "--quiet"]) == 0
    records = json.loads((tmp_path / "r" / "records.json").read_text())
    _, reference = evaluate(load_estimator("posesdf", "fast"), test_build, "CV", 1, yaw_source="rotnet", mesh=False,
                            progress=False, input_mode="scene")
    assert [r["view"] for r in records] == [r["view"] for r in reference] and len(records) == 5
    for got, want in zip(records, reference):
        assert got["valid"] == want["valid"]
        if want["valid"]:
            assert np.mean(got["errors_mm"]) == pytest.approx(want["mpjpe_mm"], abs=0.5)


def _foreign_bag(path: Path, storage: str = "sqlite3") -> list[np.ndarray]:
    """A bag as another tool writes it: a lidar-style cloud (x, y, z, intensity, padded points) in frame
    `lidar`, placed by a two-link /tf_static chain, a std_msgs/String topic, a topic of a type with no
    definition, no ground truth. The last frame's cloud is floor only. Returns the walker's true joints."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    from rosbags.typesys import Stores, get_typestore

    from posesdf_ros.data.stream import SyntheticWalker, WalkerConfig
    from posesdf_ros.ros.bag.messages import header, tf_message

    store = get_typestore(Stores.ROS2_JAZZY)
    T = store.types
    walker = SyntheticWalker(WalkerConfig(width=320, height=180, view="V2", seed=3))
    base_to_mount = np.eye(4)
    base_to_mount[:3, 3] = [0.1, 0.0, 0.5]
    mount_to_lidar = np.linalg.inv(base_to_mount) @ walker.frame(0.0).camera_to_gravity
    truths = []
    with Writer(path, version=8, storage_plugin=getattr(StoragePlugin, storage.upper())) as w:
        tf = w.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=store)
        clouds = w.add_connection("/lidar/points", "sensor_msgs/msg/PointCloud2", typestore=store)
        text = w.add_connection("/status", "std_msgs/msg/String", typestore=store)
        blob = w.add_connection("/vendor/blob", "vendor_msgs/msg/Blob", msgdef="", rihs01="RIHS01_" + "0" * 64)
        t0 = 2_000_000_000 * 10**9
        w.write(tf, t0, store.serialize_cdr(tf_message("base_link", "mount", base_to_mount, t0),
                                            "tf2_msgs/msg/TFMessage"))
        w.write(tf, t0, store.serialize_cdr(tf_message("mount", "lidar", mount_to_lidar, t0), "tf2_msgs/msg/TFMessage"))
        for i in range(4):
            frame = walker.frame(i / 15.0)
            xyz = frame.cloud[np.isfinite(frame.cloud).all(-1)]
            if i == 3:   # nobody there: only the floor in front of the sensor
                xyz = xyz[(xyz @ frame.camera_to_gravity[2, :3] + frame.camera_to_gravity[2, 3]) < 0.02]
            truths.append(frame.joints)
            points = np.zeros(len(xyz), dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("pad", "<f4"),
                                                ("intensity", "<f4"), ("ring", "<u2"), ("pad2", "<u2")])
            points["x"], points["y"], points["z"] = xyz.T
            points["intensity"] = 1.0
            field = T["sensor_msgs/msg/PointField"]
            t = t0 + (i + 1) * 66_666_667
            msg = T["sensor_msgs/msg/PointCloud2"](
                header=header(t, "lidar"), height=1, width=len(points),
                fields=[field(name="x", offset=0, datatype=7, count=1), field(name="y", offset=4, datatype=7, count=1),
                        field(name="z", offset=8, datatype=7, count=1),
                        field(name="intensity", offset=16, datatype=7, count=1),
                        field(name="ring", offset=20, datatype=4, count=1)],
                is_bigendian=False, point_step=24, row_step=24 * len(points), data=points.view(np.uint8),
                is_dense=True)
            w.write(clouds, t, store.serialize_cdr(msg, "sensor_msgs/msg/PointCloud2"))
            w.write(text, t, store.serialize_cdr(T["std_msgs/msg/String"](data=f"frame {i}"), "std_msgs/msg/String"))
            w.write(blob, t, b"\x00\x01\x00\x00\x2a\x00\x00\x00")
    return truths


def test_foreign_bag_without_ground_truth_is_evaluated(tmp_path):
    bag = tmp_path / "foreign"
    truths = _foreign_bag(bag)
    assert main(["bag", "info", str(bag)]) == 0
    out, js = tmp_path / "r", tmp_path / "f.json"
    assert main(["bag", "eval", str(bag), "--points-topic", "/lidar/points", "--no-prior", "--out", str(out),
                 "--json", str(js), "--quiet"]) == 0
    figures = json.loads(js.read_text())
    assert figures["frames"] == 4 and figures["mpjpe_mm"] is None and figures["per_joint_mm"] is None
    assert figures["frames_with_person"] == 3            # the floor-only frame is counted as one without a person
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detection_rate"] == pytest.approx(0.75)
    assert sum(summary["no_person_reasons"].values()) == 1
    assert summary["sequences"][0]["estimate"]["bone_length_std_mm"] >= 0
    # The two-link TF chain placed the cloud: the joints land on the walker's true joints.
    records = json.loads((out / "records.json").read_text())
    errors = [np.linalg.norm(np.array(r["joints"]) - t, axis=1).mean() * 1e3 for r, t in zip(records, truths)
              if r["joints"] is not None]
    assert len(errors) == 3 and np.mean(errors) < 100.0
    # (/status and /vendor/blob are not needed; a foreign type the bag does not define is only noted if asked for.)
    with BagReader(bag) as reader:
        assert list(reader.messages(["/vendor/blob"])) == []
        assert any("vendor_msgs/msg/Blob" in n and "unknown" in n for n in reader.notes)
        assert [m.data for _, _, m in reader.messages(["/status"])] == [f"frame {i}" for i in range(4)]


def test_missing_topic_is_named_in_a_one_line_error(walk_bag, capsys):
    assert main(["bag", "eval", str(walk_bag), "--points-topic", "/no/such/points", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "/no/such/points" in err and layout.POINTS_TOPIC in err and len(err.splitlines()) == 1
    assert main(["bag", "eval", str(walk_bag), "--points-topic", layout.GT_JOINTS_TOPIC, "--quiet"]) == 2
    assert "geometry_msgs/msg/PoseArray" in capsys.readouterr().err


def test_truncated_bags_are_read_up_to_the_break(walk_bag, tmp_path):
    from posesdf_ros.ros.bag.frames import FrameSource, iter_frames

    cut = tmp_path / "cut"
    shutil.copytree(walk_bag, cut)
    mcap = next(cut.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: int(mcap.stat().st_size * 0.6)])
    with BagReader(cut) as reader:
        frames = list(iter_frames(reader, FrameSource(layout.POINTS_TOPIC, layout.GT_JOINTS_TOPIC, None)))
        assert 1 <= len(frames) < FRAMES
        assert all(f.points is not None and np.isfinite(f.points).all(-1).sum() > 1000 for f in frames)
        assert any("breaks off" in n for n in reader.notes)
    # sqlite3 storage whose last rows are missing (a recorder killed mid-write): what is there is read.
    db_bag = tmp_path / "db"
    record_walks(db_bag, RecordConfig(duration_s=3 / 15.0, width=160, height=90, images=False), "sqlite3",
                 progress=False)
    db = next(db_bag.glob("*.db3"))
    with sqlite3.connect(db) as con:
        con.execute("DELETE FROM messages WHERE timestamp = (SELECT MAX(timestamp) FROM messages)")   # the last frame
    with BagReader(db_bag) as reader:
        clouds = list(reader.messages([layout.POINTS_TOPIC]))
        assert len(clouds) == 2
        assert any(f"{layout.POINTS_TOPIC}: the bag's index lists 3 messages but only 2" in n for n in reader.notes)
