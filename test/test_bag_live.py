"""`posesdf bag play` and `posesdf bag eval --live`: real rclpy publishers, subscribers and node processes.

Each test runs on its own ROS domain (derived from the process id) so that
parallel runs do not hear each other; the node processes inherit it.
"""
from __future__ import annotations

import json
import os
import threading
import time

import numpy as np
import pytest
import rclpy

from posesdf_ros.cli import main
from posesdf_ros.ros.bag import layout
from posesdf_ros.ros.bag.reader import BagReader
from posesdf_ros.ros.bag.record import RecordConfig, record_walks

DOMAIN = 201 + os.getpid() % 30


@pytest.fixture(scope="module")
def small_bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("live") / "walk"
    record_walks(out, RecordConfig(duration_s=4 / 15.0, width=320, height=180, images=False), progress=False)
    return out


def test_play_publishes_every_message_with_the_bags_clock(small_bag):
    from geometry_msgs.msg import PoseArray
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from rosgraph_msgs.msg import Clock
    from sensor_msgs.msg import PointCloud2

    from posesdf_ros.ros.bag.play import BagPlayer

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=DOMAIN)
    try:
        listener = rclpy.create_node("bag_listener", context=context)
        got: dict[str, list] = {"points": [], "truth": [], "clock": []}
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        listener.create_subscription(PointCloud2, layout.POINTS_TOPIC, got["points"].append, qos)
        listener.create_subscription(PoseArray, layout.GT_JOINTS_TOPIC, got["truth"].append, qos)
        listener.create_subscription(Clock, layout.CLOCK_TOPIC, got["clock"].append, qos)
        player = BagPlayer(small_bag, context, rate=2.0)
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(listener)
        executor.add_node(player.node)
        stop = threading.Event()

        def spin():
            while not stop.is_set():
                executor.spin_once(timeout_sec=0.05)

        spinner = threading.Thread(target=spin)
        spinner.start()
        deadline = time.monotonic() + 10
        while player.node.count_subscribers(layout.POINTS_TOPIC) < 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        t0 = time.monotonic()
        counts = player.run(progress=False)
        played_s = time.monotonic() - t0
        time.sleep(1.0)
        stop.set()
        spinner.join()
        player.close()
    finally:
        rclpy.shutdown(context=context)
    assert counts[layout.POINTS_TOPIC] == 4 and layout.TF_STATIC_TOPIC not in counts   # no tf2_msgs for rclpy
    assert any("tf2_msgs/msg/TFMessage" in n for n in player.notes)
    assert len(got["points"]) == 4 and len(got["truth"]) == 4
    stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec for m in got["points"]]
    assert stamps == [1_700_000_000 * 10**9 + round(i * 1e9 / 15) for i in range(4)]
    clock = {m.clock.sec * 10**9 + m.clock.nanosec for m in got["clock"]}
    assert set(stamps) <= clock and min(clock) == stamps[0]
    # Three frame intervals of 1/15 s at rate 2 take 0.1 s of wall time (plus scheduling).
    assert 0.09 < played_s < 1.0


def test_live_eval_scores_the_nodes_outputs_and_counts_drops(small_bag, tmp_path, monkeypatch):
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN))
    out, js = tmp_path / "live", tmp_path / "live.json"
    assert main(["bag", "eval", str(small_bag), "--live", "--rate", "0.25", "--no-prior", "--out", str(out),
                 "--json", str(js), "--quiet"]) == 0
    figures = json.loads(js.read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_codes"] == {"canonicaliser": 0, "estimator": 0}
    assert figures["frames"] == 4 and summary["played"][layout.POINTS_TOPIC] == 4
    # Every frame is either answered, skipped by a node (counted on /diagnostics) or had no person.
    assert 1 <= figures["frames_with_person"] and figures["frames_with_person"] + figures["dropped_frames"] <= 4
    drops = summary["node_drops"]
    assert int(drops["canonicaliser"]["frames_received"]) == 4
    assert int(drops["estimator"]["frames_published"]) == figures["frames_with_person"]
    assert figures["mpjpe_mm"] < 60.0
    # The output bag holds the joints with the bag's stamps; scoring it again gives the same figures.
    with BagReader(out / "outputs.mcap") as reader:
        stamps = [m.header.stamp.sec * 10**9 + m.header.stamp.nanosec
                  for _, _, m in reader.messages([layout.ESTIMATE_TOPIC])]
    assert set(stamps) <= {1_700_000_000 * 10**9 + round(i * 1e9 / 15) for i in range(4)}
    js2 = tmp_path / "again.json"
    assert main(["bag", "eval", str(small_bag), "--estimates", str(out / "outputs.mcap"), "--out",
                 str(tmp_path / "again"), "--json", str(js2)]) == 0
    again = json.loads(js2.read_text())
    assert {k: again[k] for k in ("frames", "frames_with_person", "dropped_frames")} == \
        {k: figures[k] for k in ("frames", "frames_with_person", "dropped_frames")}
    assert again["mpjpe_mm"] == pytest.approx(figures["mpjpe_mm"])
    assert np.isfinite(again["fps"])
    # The offline evaluation (inference.pipeline: the nodes' steps without ROS) gives the nodes' joints, frame
    # by frame, up to the first frame the live nodes skipped (a skip changes the next frame's warm start).
    assert main(["bag", "eval", str(small_bag), "--no-prior", "--out", str(tmp_path / "offline"), "--quiet"]) == 0
    live, offline = (json.loads((folder / "records.json").read_text()) for folder in (out, tmp_path / "offline"))
    assert [r["stamp_s"] for r in live] == [r["stamp_s"] for r in offline]
    compared = 0
    for a, b in zip(live, offline):
        if a["joints"] is None:
            break
        assert b["joints"] is not None and np.abs(np.subtract(a["joints"], b["joints"])).max() < 1e-3, (a, b)
        compared += 1
    assert compared >= 1
