"""`posesdf bag eval --live`: the real nodes on a replay of the bag, their outputs recorded and scored (rclpy).

The canonicaliser, the estimator and (with the prior on) the pose_prior
node run as `bringup` processes (as `ros2 launch` starts them) with
`use_sim_time`; this process plays the bag's
camera topics with /clock at `rate` and records what the nodes publish
into an output bag. Each cloud is then scored by the joints published
with its stamp (the prior's when it is on). Without tf2 (not on PyPI) the canonicaliser takes the
camera pose from its camera_* parameters, which are set from the bag's
extrinsics; that needs a camera without roll, as the parameters describe.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from ...inference.pipeline import PipelineSettings
from ..recorder import TopicRecorder
from .evaluate import NO_OUTPUT, frame_record, node_drops, summarise
from .frames import FrameSource, iter_frames
from .layout import ESTIMATE_TOPIC, PRIOR_TOPIC
from .reader import BagReader

#: What the output bag holds: topic -> type.
RECORDED = {ESTIMATE_TOPIC: "geometry_msgs/msg/PoseArray", PRIOR_TOPIC: "geometry_msgs/msg/PoseArray",
            "/canonicaliser/person": "geometry_msgs/msg/PoseArray",
            "/diagnostics": "diagnostic_msgs/msg/DiagnosticArray"}


def camera_parameters(T: np.ndarray) -> dict[str, float]:
    """The camera_* parameters (m, deg) of an optical frame -> gravity frame pose; ValueError if it has roll."""
    from ...geometry import look_at_pitched

    forward = T[:3, 2]
    pitch, yaw = float(np.arcsin(-forward[2])), float(np.arctan2(forward[1], forward[0]))
    params = {"camera_height_m": float(T[2, 3]), "camera_pitch_deg": float(np.rad2deg(pitch)),
              "camera_yaw_deg": float(np.rad2deg(yaw)), "camera_x_m": float(T[0, 3]), "camera_y_m": float(T[1, 3])}
    if not np.allclose(look_at_pitched(T[2, 3], pitch, yaw, (T[0, 3], T[1, 3])), T, atol=1e-4):
        raise ValueError("the camera is rolled about its optical axis, which the camera_* parameters cannot describe; "
                         "without tf2 the live pipeline cannot place this cloud (use the offline evaluation)")
    return params


class OutputRecorder(TopicRecorder):
    """Subscribes to the nodes' outputs: joints by stamp, the latest diagnostics per node, the raw messages."""

    def __init__(self, context, joints_topic: str = ESTIMATE_TOPIC):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        super().__init__(context, "posesdf_bag_recorder", {t: (msgtype, qos) for t, msgtype in RECORDED.items()})
        self.joints_topic = joints_topic
        self.joints: dict[int, np.ndarray] = {}
        self.received: list[float] = []

    def on_message(self, topic: str, raw: bytes, received_ns: int) -> None:
        from .messages import pose_array_joints, stamp_ns

        if topic == self.joints_topic:
            msg = self.deserialize(topic, raw)
            with self.lock:
                self.joints[stamp_ns(msg.header.stamp)] = pose_array_joints(msg)
                self.received.append(time.monotonic())


def _pipeline(settings: PipelineSettings, source: FrameSource, camera: dict, image_topic: str,
              camera_info_topic: str, prior: bool) -> dict[str, tuple[dict, dict[str, str]]]:
    """node -> (parameter overrides, remappings) of the replay: sim time, reliable input, the bag's camera."""
    from ..bringup import PIPELINE_REMAPS

    common = {"use_sim_time": "true", "device": settings.device, "gravity_frame": source.gravity_frame}
    # Reliable input (REP 2003 overrides): best-effort DDS loses large clouds even on one machine, and a
    # replay should only lose the frames the nodes skip.
    reliable = {f"qos_overrides.{topic}.subscription.reliability": "reliable"
                for topic in (source.points_topic, PIPELINE_LEGS, "/canonicaliser/person", "/canonicaliser/occluders")}
    # Values go through `--set` as YAML scalars: a frame name is quoted so that it stays a string.
    pose = {k: f"{v:.6f}" if isinstance(v, float) else json.dumps(v) for k, v in camera.items()}
    nodes = {"canonicaliser": (common | reliable | pose | {"yaw_source": settings.yaw_source},
                               {"points": source.points_topic}),
             "estimator": (common | reliable | {"profile": settings.profile},
                           PIPELINE_REMAPS["estimator"] | {"image": image_topic, "camera_info": camera_info_topic})}
    if prior:
        nodes["pose_prior"] = (common, PIPELINE_REMAPS.get("pose_prior", {}))
    return nodes


def evaluate_live(bag: Path, source: FrameSource, settings: PipelineSettings, out: Path, image_topic: str,
                  camera_info_topic: str, rate: float = 0.25, output_bag: Path | None = None,
                  params_file: Path | None = None, prior: bool = True, limit: int | None = None,
                  progress: bool = True, startup_timeout_s: float = 240.0,
                  quiet_s: float = 8.0) -> tuple[dict, list[dict]]:
    """Replay the bag to the nodes and score their outputs; returns (summary, per-frame records)."""
    import rclpy

    from ..bringup import NODE_CLASSES, default_params_file, make_executor
    from ..processes import start_node_processes, stop_node_processes
    from .play import BagPlayer
    from .writer import write_raw_bag

    notes: list[str] = []
    if prior and "pose_prior" not in NODE_CLASSES:
        notes.append("live: this checkout has no pose_prior node, so the estimator's joints are scored")
        prior = False
    if not prior:
        notes.append("Pose-NDF prior off: the estimator's joints are scored")
    joints_topic = PRIOR_TOPIC if prior else ESTIMATE_TOPIC
    with BagReader(bag) as reader:
        frames = [(f.stamp_ns, f.bag_ns, f.truth, f.labels, f.camera_to_gravity, f.problem, f.frame_id)
                  for f in iter_frames(reader, source, limit)]
        notes += reader.notes
        topics = {t: {"type": i.msgtype, "count": i.count} for t, i in reader.topics.items()}
        played = [source.points_topic] + [t for t in (image_topic, camera_info_topic) if t in reader.topics]
    if not frames:
        raise ValueError(f"bag {bag} has no clouds on {source.points_topic}")
    placed = next((f for f in frames if f[4] is not None), None)
    if placed is None:
        raise ValueError(f"no cloud of bag {bag} could be placed in {source.gravity_frame}: {frames[0][5]}")
    camera = camera_parameters(placed[4])
    nodes = _pipeline(settings, source, camera | {"camera_frame": placed[6]}, image_topic, camera_info_topic, prior)
    procs = start_node_processes(nodes, params_file or default_params_file(), out / "logs")
    context = rclpy.Context()
    rclpy.init(context=context)
    stop = threading.Event()
    t0 = time.monotonic()
    try:
        recorder = OutputRecorder(context, joints_topic)
        player = BagPlayer(bag, context, played, rate, clock=True)
        executor = make_executor(context)
        executor.add_node(recorder.node)
        executor.add_node(player.node)
        spinner = threading.Thread(target=lambda: _spin(executor, stop), daemon=True)
        spinner.start()
        # The nodes subscribe once their models are loaded (configure); /clock runs meanwhile so timers tick.
        while player.node.count_subscribers(source.points_topic) < 1 or \
                player.node.count_subscribers(PIPELINE_LEGS) < 1:
            if time.monotonic() - t0 > startup_timeout_s or any(p.poll() is not None for p, _ in procs.values()):
                raise RuntimeError(f"the nodes did not start within {startup_timeout_s:.0f} s; see {out / 'logs'}")
            player.publish_clock(frames[0][1])
            time.sleep(0.1)
        time.sleep(1.0)
        played_counts = player.run(stop, progress, end_ns=frames[-1][1])
        # Keep the clock going until the nodes have been quiet for a while: the last frames are in flight.
        end_ns, wall = player.sim_ns or frames[-1][1], time.monotonic()
        while time.monotonic() - max([wall] + recorder.received[-1:]) < quiet_s:
            player.publish_clock(end_ns + int((time.monotonic() - wall) * rate * 1e9))
            time.sleep(0.05)
        notes += [n for n in player.notes if n not in notes]
    finally:
        stop.set()
        codes = stop_node_processes(procs)
        rclpy.shutdown(context=context)
    wall_s = time.monotonic() - t0
    output_bag = output_bag or out / "outputs.mcap"
    write_raw_bag(output_bag, recorder.messages, RECORDED)
    records = [frame_record(stamp * 1e-9, labels, recorder.joints.get(stamp), truth,
                            problem or NO_OUTPUT)
               for stamp, _, truth, labels, _, problem, _ in frames]
    dropped, counters = node_drops(recorder.node_diagnostics(), len(records), sum(r["valid"] for r in records))
    span = recorder.received[-1] - recorder.received[0] if len(recorder.received) > 1 else 0.0
    summary = summarise(records, dropped, (len(recorder.received) - 1) / span if span > 0 else None)
    summary |= {"mode": "live", "bag": str(bag), "topics": topics, "notes": notes, "rate": rate,
                "played": played_counts, "output_bag": str(output_bag), "wall_s": wall_s, "exit_codes": codes,
                "node_drops": counters,
                "camera_parameters": camera,
                "source": {"points_topic": source.points_topic, "gt_topic": source.gt_topic,
                           "gravity_frame": source.gravity_frame},
                "joints_topic": joints_topic, "settings": vars(settings) | {"prior": prior}}
    return summary, records


PIPELINE_LEGS = "/canonicaliser/legs"


def _spin(executor, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            executor.spin_once(timeout_sec=0.05)
        except Exception:  # noqa: BLE001  (the context ends under us at shutdown)
            if stop.is_set():
                return
            raise
