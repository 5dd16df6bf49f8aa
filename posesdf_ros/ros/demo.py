"""`posesdf demo`: the live walking demo over real ROS 2 topics, scored against ground truth.

Starts `synthetic_camera`, `canonicaliser`, `estimator` and `pose_prior`,
one process each, plus a recorder node that listens on the topics as any
other ROS 2 node would: it pairs `/estimator/joints` (and the prior's
`/pose_prior/joints`) with `/synthetic_camera/ground_truth/joints` by
stamp, prints each frame's MPJPE and latency, and at the end writes to `--out`:
- `demo.mcap/` (rosbag2, MCAP): every output topic, the ground truth,
  camera_info and diagnostics, and the camera's cloud and image every
  `--bag-input-every`-th frame (a 640 x 360 cloud is 3.7 MB);
- `legs.gif`: the estimated skeleton and mesh beside the ground truth;
- `overlay.png` (a contact sheet) and `overlay_NNN.png`: the RGB overlay;
- `summary.json`: MPJPE, FPS, latency, drops, device, settings.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np

from ..evaluation.plots import write_legs_gif, write_overlays
from ..skeleton import JOINT_NAMES
from .bag.writer import write_raw_bag
from .recorder import TopicRecorder

GT_TOPIC = "/synthetic_camera/ground_truth/joints"
GAIT_TOPIC = "/pose_prior/gait"
TRUE_GAIT_TOPIC = "/synthetic_camera/ground_truth/gait"
#: The gait parameters the demo prints and scores: (key, label, unit, format).
GAIT_SHOWN = (("cadence_spm", "cadence", "steps/min", ".1f"), ("stride_length_m", "stride", "m", ".3f"),
              ("left_stance_pct", "stance L", "%", ".1f"), ("right_stance_pct", "stance R", "%", ".1f"),
              ("left_peak_knee_flexion_deg", "peak knee L", "deg", ".1f"),
              ("right_peak_knee_flexion_deg", "peak knee R", "deg", ".1f"))
JOINTS_TOPIC = "/estimator/joints"
PRIOR_TOPIC = "/pose_prior/joints"
PRIOR_QUALITY_TOPIC = "/pose_prior/quality"
#: topic -> (message type, record every n-th message); types are the rosbag2 names.
RECORDED = {
    "/synthetic_camera/points": ("sensor_msgs/msg/PointCloud2", None),   # n from --bag-input-every
    "/synthetic_camera/image": ("sensor_msgs/msg/Image", None),
    "/synthetic_camera/camera_info": ("sensor_msgs/msg/CameraInfo", 1),
    GT_TOPIC: ("geometry_msgs/msg/PoseArray", 1),
    "/canonicaliser/legs": ("sensor_msgs/msg/PointCloud2", 1),
    "/canonicaliser/person": ("geometry_msgs/msg/PoseArray", 1),
    "/canonicaliser/canonical_points": ("sensor_msgs/msg/PointCloud2", 1),
    JOINTS_TOPIC: ("geometry_msgs/msg/PoseArray", 1),
    "/estimator/markers": ("visualization_msgs/msg/MarkerArray", 1),
    "/estimator/mesh": ("shape_msgs/msg/Mesh", 1),
    "/estimator/overlay": ("sensor_msgs/msg/Image", 1),
    PRIOR_TOPIC: ("geometry_msgs/msg/PoseArray", 1),
    "/pose_prior/markers": ("visualization_msgs/msg/MarkerArray", 1),
    PRIOR_QUALITY_TOPIC: ("diagnostic_msgs/msg/DiagnosticArray", 1),
    "/pose_prior/gait_angles": ("sensor_msgs/msg/JointState", 1),
    GAIT_TOPIC: ("diagnostic_msgs/msg/DiagnosticArray", 1),
    TRUE_GAIT_TOPIC: ("diagnostic_msgs/msg/DiagnosticArray", 1),
    "/diagnostics": ("diagnostic_msgs/msg/DiagnosticArray", 1),
}


class DemoRecorder(TopicRecorder):
    """Subscribes to the pipeline's topics, scores joints against ground truth, keeps the bag's messages."""

    def __init__(self, context, input_every: int, max_frames: int):
        from rclpy.qos import QoSProfile, ReliabilityPolicy

        def qos(every):     # the camera's big messages are best effort, as the camera sends them
            big = every is None
            return QoSProfile(depth=2 if big else 50,
                              reliability=ReliabilityPolicy.BEST_EFFORT if big else ReliabilityPolicy.RELIABLE)

        super().__init__(context, "demo_recorder",
                         {topic: (ros_type, qos(every)) for topic, (ros_type, every) in RECORDED.items()})
        self.truth: dict[tuple[int, int], np.ndarray] = {}
        self.frames: list[dict] = []
        # Stamp key -> MPJPE (mm) of the estimator's and the prior's output of that frame, and whether the
        # prior flagged its output as initialising: the prior is judged on the frames both scored.
        self.estimator_by_stamp: dict[tuple[int, int], float] = {}
        self.prior_by_stamp: dict[tuple[int, int], float] = {}
        self.prior_initialising: dict[tuple[int, int], bool] = {}
        self.prior_joints: dict[float, np.ndarray] = {}     # stamp (s) -> the prior's joints, for the whole run
        self.overlays: list[np.ndarray] = []
        self.mesh: tuple[np.ndarray, np.ndarray] | None = None
        self.input_every, self.max_frames = input_every, max_frames
        self.first_truth: float | None = None
        self.gait: dict | None = None            # the latest complete gait parameters of pose_prior
        self.gait_updates = 0
        self.true_gait: dict | None = None
        self._gait_printed = -np.inf
        self.done = threading.Event()

    def keep(self, topic: str, n: int) -> bool:
        return n % (RECORDED[topic][1] or self.input_every) == 0

    def on_message(self, topic: str, raw: bytes, received_ns: int) -> None:
        if topic in (GT_TOPIC, JOINTS_TOPIC, PRIOR_TOPIC):
            self._on_joints(topic, self.deserialize(topic, raw), received_ns)
        elif topic == "/estimator/overlay" and len(self.overlays) < 64:
            from .conversions import image_to_rgb

            self.overlays.append(image_to_rgb(self.deserialize(topic, raw)))
            self._check_done()
        elif topic in (GAIT_TOPIC, TRUE_GAIT_TOPIC):
            self._on_gait(topic, self.deserialize(topic, raw))
        elif topic == PRIOR_QUALITY_TOPIC:
            msg = self.deserialize(topic, raw)
            values = {kv.key: kv.value for st in msg.status for kv in st.values}
            if "initialising" in values:
                self.prior_initialising[(msg.header.stamp.sec, msg.header.stamp.nanosec)] = \
                    values["initialising"] == "true"
        elif topic == "/estimator/mesh":
            msg = self.deserialize(topic, raw)
            self.mesh = (np.array([[v.x, v.y, v.z] for v in msg.vertices]),
                         np.array([t.vertex_indices for t in msg.triangles]))

    def _on_joints(self, topic: str, msg, now_ns: int) -> None:
        from .markers import pose_array_to_joints
        from .node_base import stamp_seconds

        key = (msg.header.stamp.sec, msg.header.stamp.nanosec)
        joints = pose_array_to_joints(msg)
        if topic == GT_TOPIC:
            self.truth[key] = joints
            self.first_truth = self.first_truth or time.monotonic()
            return
        truth = self.truth.get(key)
        if truth is None:
            return
        err = np.linalg.norm(joints - truth, axis=1) * 1e3
        if topic == PRIOR_TOPIC:
            self.prior_by_stamp[key] = float(err.mean())
            self.prior_joints[stamp_seconds(msg.header.stamp)] = joints
            self._check_done()
            return
        self.estimator_by_stamp[key] = float(err.mean())
        frame = {"stamp_s": stamp_seconds(msg.header.stamp), "mpjpe_mm": float(err.mean()),
                 "per_joint_mm": err.tolist(), "latency_ms": (now_ns * 1e-9 - stamp_seconds(msg.header.stamp)) * 1e3,
                 "received_s": time.monotonic(), "joints": joints, "truth": truth, "mesh": self.mesh}
        self.frames.append(frame)
        print(f"  frame {len(self.frames):4d}  MPJPE {frame['mpjpe_mm']:6.1f} mm  "
              f"latency {frame['latency_ms']:6.0f} ms", flush=True)
        self._check_done()

    def _on_gait(self, topic: str, msg) -> None:
        from .gait_messages import gait_values

        if not msg.status:
            return
        values = gait_values(msg.status[0])
        if topic == TRUE_GAIT_TOPIC:
            self.true_gait = values
            return
        if not all(values.get(key) is not None for key, *_ in GAIT_SHOWN):
            return
        self.gait, self.gait_updates = values, self.gait_updates + 1
        now = time.monotonic()
        if now - self._gait_printed >= 2.0:     # the parameters change slowly; a line every 2 s
            self._gait_printed = now
            print("  gait   " + gait_line(values, self.true_gait), flush=True)

    def _check_done(self) -> None:
        # Also wait for a first overlay and a first output of the pose prior: on a busy CPU best-effort
        # RGB images get lost, and the prior lags the estimator by its `lag_frames` and its own work, so
        # a short run could end with scored frames but no image drawn and nothing smoothed.
        if len(self.frames) >= self.max_frames and self.overlays and self.prior_by_stamp:
            self.done.set()


def gait_line(measured: dict, truth: dict | None) -> str:
    """'cadence 112.0 (true 110.9) steps/min, ...' for the parameters of GAIT_SHOWN."""
    parts = []
    for key, label, unit, fmt in GAIT_SHOWN:
        value, true = measured.get(key), (truth or {}).get(key)
        parts.append(f"{label} {'n/a' if value is None else format(value, fmt)}"
                     + (f" (true {true:{fmt}})" if true is not None else "") + f" {unit}")
    return ", ".join(parts)


def gait_summary(rec: DemoRecorder) -> dict:
    """The last complete gait parameters of pose_prior against the walker's, with their errors."""
    keys = [key for key, *_ in GAIT_SHOWN]
    out = {"updates": rec.gait_updates,
           "measured": {k: rec.gait.get(k) for k in keys + ["n_strides", "walking_mode"]} if rec.gait else None,
           "true": {k: rec.true_gait.get(k) for k in keys} if rec.true_gait else None}
    if rec.gait and rec.true_gait:
        out["error"] = _gait_errors(rec.gait, rec.true_gait, keys)
    # The whole run's strides together, as a gait lab reports a trial (the live line shows the last window).
    if len(rec.prior_joints) >= 2:
        from ..gait.parameters import gait_parameters

        stamps = np.array(sorted(rec.prior_joints))
        whole = gait_parameters(stamps, np.stack([rec.prior_joints[t] for t in stamps]))
        values = whole.to_dict()
        out["whole_run"] = {k: values.get(k) for k in keys + ["left_n_strides", "right_n_strides", "duration_s"]}
        out["whole_run"]["valid"], out["whole_run"]["reason"] = whole.valid, whole.reason
        if whole.valid and rec.true_gait:
            out["whole_run_error"] = _gait_errors(values, rec.true_gait, keys)
    return out


def _gait_errors(measured: dict, truth: dict, keys: list[str]) -> dict:
    """Measured minus true per key, and the stride length's error in per cent."""
    out = {k: measured[k] - truth[k] for k in keys if truth.get(k) is not None and measured.get(k) is not None}
    if truth.get("stride_length_m") and "stride_length_m" in out:
        out["stride_length_pct"] = 100.0 * out["stride_length_m"] / truth["stride_length_m"]
    return out


def prior_comparison(rec: DemoRecorder) -> dict:
    """The prior against the estimator on the same frames (those both scored), all of them and the
    settled ones (the prior's quality status not `initialising`)."""
    both = [k for k in rec.prior_by_stamp if k in rec.estimator_by_stamp]
    settled = [k for k in both if rec.prior_initialising.get(k) is False]

    def mean(values):
        return float(np.mean(values)) if values else None

    return {"frames": len(both), "prior_mpjpe_mm": mean([rec.prior_by_stamp[k] for k in both]),
            "estimator_mpjpe_mm": mean([rec.estimator_by_stamp[k] for k in both]),
            "settled_frames": len(settled),
            "settled_prior_mpjpe_mm": mean([rec.prior_by_stamp[k] for k in settled]),
            "settled_estimator_mpjpe_mm": mean([rec.estimator_by_stamp[k] for k in settled]),
            "initialising_frames": sum(rec.prior_initialising.get(k) is True for k in both)}


def summarise(rec: DemoRecorder, wall_s: float, settings: dict) -> dict:
    frames = rec.frames
    err = np.array([f["mpjpe_mm"] for f in frames]) if frames else np.array([])
    lat = np.array([f["latency_ms"] for f in frames]) if frames else np.array([])
    span = frames[-1]["received_s"] - frames[0]["received_s"] if len(frames) > 1 else 0.0
    diag = {name: next((v for k, v in rec.diagnostics.items() if k.startswith(name)), {})
            for name in ("synthetic_camera", "canonicaliser", "estimator", "pose_prior")}
    from ..provenance import device_description, git_commit

    return {
        "frames_scored": len(frames),
        "camera_frames": rec.counts.get(GT_TOPIC, 0),
        "mpjpe_mm": float(err.mean()) if len(err) else None,
        "mpjpe_median_mm": float(np.median(err)) if len(err) else None,
        "per_joint_mm": dict(zip(JOINT_NAMES, np.mean([f["per_joint_mm"] for f in frames], 0).round(1).tolist()))
        if frames else None,
        "fps": (len(frames) - 1) / span if span > 0 else None,
        "latency_mean_ms": float(lat.mean()) if len(lat) else None,
        "latency_p95_ms": float(np.percentile(lat, 95)) if len(lat) else None,
        # Every frame of the prior scored, warm-up included; `prior_vs_estimator` pairs them with the estimator's.
        "prior_frames_scored": len(rec.prior_by_stamp),
        "prior_mpjpe_mm": float(np.mean(list(rec.prior_by_stamp.values()))) if rec.prior_by_stamp else None,
        "prior_vs_estimator": prior_comparison(rec),
        "gait": gait_summary(rec),
        "dropped": {n: diag[n].get("frames_dropped") for n in ("canonicaliser", "estimator", "pose_prior")},
        "walker": {k: diag["synthetic_camera"].get(k) for k in ("condition", "view", "body_index", "seed", "noise",
                                                                  "rate_hz")},
        "estimator": {k: diag["estimator"].get(k) for k in ("backend", "profile", "device")},
        "yaw_source": diag["canonicaliser"].get("yaw_source"),
        "diagnostics": rec.diagnostics,
        "wall_s": wall_s,
        "device": device_description(diag["estimator"].get("device") or "cpu"),
        "git_commit": git_commit(),
        "settings": settings,
    }


def run_demo(out: Path, duration_s: float = 20.0, max_frames: int = 200, params_file: Path | None = None,
             overrides: dict[str, dict] | None = None, bag_input_every: int = 10,
             startup_timeout_s: float = 180.0) -> dict:
    """Run the demo; returns the summary (also written to out/summary.json).

    overrides: node -> {parameter: value}, on top of the YAML.
    """
    import rclpy

    from .bringup import default_params_file, remaps_for, spin
    from .processes import start_node_processes, stop_node_processes

    out.mkdir(parents=True, exist_ok=True)
    params_file = params_file or default_params_file()
    overrides = overrides or {}
    names = ["synthetic_camera", "canonicaliser", "estimator", "pose_prior"]
    print(f"starting {', '.join(names)}, one process each (rendering the walk and "
          f"loading the models takes a few seconds; node logs in {out / 'logs'})...", flush=True)
    procs = start_node_processes({n: (overrides.get(n, {}), remaps_for(n, names)) for n in names}, params_file,
                                 out / "logs")
    context = rclpy.Context()
    rclpy.init(context=context)
    t0 = time.monotonic()
    try:
        rec = DemoRecorder(context, bag_input_every, max_frames)
        stop = threading.Event()

        def watchdog():
            while not rec.done.is_set():
                now = time.monotonic()
                if rec.first_truth is not None and now - rec.first_truth > duration_s:
                    break
                if rec.first_truth is None and now - t0 > startup_timeout_s:
                    print(f"no camera frame within {startup_timeout_s:.0f} s; see {out / 'logs'}", flush=True)
                    break
                if any(proc.poll() is not None for proc, _ in procs.values()):
                    print(f"a node process exited early; see {out / 'logs'}", flush=True)
                    break
                time.sleep(0.1)
            time.sleep(1.5)  # let the last diagnostics arrive
            stop.set()

        threading.Thread(target=watchdog, daemon=True).start()
        spin([rec.node], context=context, stop=stop)
    finally:
        rclpy.shutdown(context=context)
        codes = stop_node_processes(procs)
    wall = time.monotonic() - t0
    settings = {"params_file": str(params_file), "overrides": overrides, "duration_s": duration_s,
                "max_frames": max_frames, "exit_codes": codes}
    summary = summarise(rec, wall, settings)
    write_raw_bag(out / "demo.mcap", rec.messages, {topic: ros_type for topic, (ros_type, _) in RECORDED.items()})
    if rec.frames:
        write_legs_gif(out / "legs.gif", rec.frames[:80])
    if rec.overlays:
        write_overlays(out, rec.overlays)
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def print_summary(summary: dict, out: Path) -> None:
    def fmt(v, unit=""):
        return "n/a" if v is None else f"{v:.1f}{unit}"

    walker, est = summary["walker"], summary["estimator"]
    print(f"\nposesdf demo: {summary['frames_scored']} frames scored of {summary['camera_frames']} camera frames; "
          f"{walker['condition']} gait at view {walker['view']} (test body {walker['body_index']}, seed "
          f"{walker['seed']}, {walker['noise']} noise); {est['backend']} {est['profile']} on {est['device']}; "
          f"heading from {summary['yaw_source']}")
    print(f"  MPJPE  mean {fmt(summary['mpjpe_mm'], ' mm')}, median {fmt(summary['mpjpe_median_mm'], ' mm')}; "
          f"after pose_prior {fmt(summary['prior_mpjpe_mm'], ' mm')} over {summary['prior_frames_scored']} frames")
    pair = summary["prior_vs_estimator"]
    print(f"  prior  on the {pair['settled_frames']} settled frames both scored: "
          f"{fmt(pair['settled_prior_mpjpe_mm'], ' mm')} against the estimator's "
          f"{fmt(pair['settled_estimator_mpjpe_mm'], ' mm')} ({pair['initialising_frames']} initialising frames "
          "left out)")
    print(f"  speed  {fmt(summary['fps'], ' FPS')}, latency mean {fmt(summary['latency_mean_ms'], ' ms')}, "
          f"p95 {fmt(summary['latency_p95_ms'], ' ms')} on {summary['device']}")
    gait = summary["gait"]
    if gait["measured"]:
        print(f"  gait   {gait_line(gait['measured'], gait['true'])} (after {gait['updates']} updates)")
    else:
        print("  gait   n/a: the pose_prior's window never held a complete stride of each side")
    whole = gait.get("whole_run")
    if whole and whole["valid"]:
        print(f"  gait   over the whole run: {gait_line(whole, gait['true'])} "
              f"({whole['left_n_strides']:.0f} + {whole['right_n_strides']:.0f} strides)")
    print(f"  dropped frames (newest-frame policy): canonicaliser {summary['dropped']['canonicaliser']}, "
          f"estimator {summary['dropped']['estimator']}, pose_prior {summary['dropped']['pose_prior']}")
    print(f"  wrote {out}/demo.mcap, legs.gif, overlay.png, summary.json")
