"""`posesdf demo`: the command-line face of the ROS layer (rclpy is imported only when it runs)."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..data.gait import CONDITIONS
from ..data.scene import VIEWS


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="the live walking demo over real ROS 2 topics, scored against ground truth",
        description="Runs synthetic_camera, canonicaliser, estimator and pose_prior, one process each as "
                    "ros2 launch would start them, over real DDS topics for a bounded time; prints per-frame and "
                    "overall MPJPE, FPS and latency and, once the pose prior holds a stride of each side, the "
                    "gait parameters against the walker's; writes an MCAP rosbag2, a GIF of the estimated legs "
                    "beside the ground truth, RGB overlays and summary.json.")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default: demo_out)")
    p.add_argument("--duration", type=float, default=20.0,
                   help="seconds to run after the first camera frame (default: 20)")
    p.add_argument("--frames", type=int, default=200,
                   help="stop after this many scored frames, a first overlay and a first output of the "
                        "pose prior (default: 200)")
    p.add_argument("--params-file", type=Path, default=None,
                   help="node parameters (default: the package's config/posesdf.yaml)")
    p.add_argument("--profile", choices=("realtime", "fast", "accurate"), default=None,
                   help="estimator profile (default: the YAML's, realtime)")
    p.add_argument("--device", choices=("cpu", "cuda"), default=None, help="torch device (default: the YAML's)")
    p.add_argument("--camera-rate", type=float, default=None,
                   help="synthetic camera rate in Hz (default: the YAML's 15, what a depth camera sends; the "
                        "walker's gait cycle is played at the nearest rate that loops it seamlessly)")
    p.add_argument("--view", choices=tuple(VIEWS), default=None,
                   help="benchmark view of the synthetic camera (default: the YAML's, V1)")
    p.add_argument("--condition", choices=CONDITIONS, default=None,
                   help="gait condition of the walker (default: the YAML's, normal)")
    p.add_argument("--bag-input-every", type=int, default=10,
                   help="record the camera's cloud and image every n-th frame (default: 10)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .demo import print_summary, run_demo

    if args.duration <= 0 or args.frames <= 0 or args.bag_input_every <= 0 or (args.camera_rate or 1) <= 0:
        raise ValueError("--duration, --frames, --bag-input-every and --camera-rate must be positive")
    overrides: dict[str, dict] = {"synthetic_camera": {}, "canonicaliser": {}, "estimator": {}}
    if args.camera_rate:
        overrides["synthetic_camera"]["rate_hz"] = args.camera_rate
    for key, node in (("profile", "estimator"), ("view", "synthetic_camera"), ("condition", "synthetic_camera")):
        if getattr(args, key):
            overrides[node][key] = getattr(args, key)
    if args.device:
        overrides["estimator"]["device"] = overrides["canonicaliser"]["device"] = args.device
    summary = run_demo(args.out, args.duration, args.frames, args.params_file, overrides, args.bag_input_every)
    print_summary(summary, args.out)
    return 0 if summary["frames_scored"] > 0 else 1
