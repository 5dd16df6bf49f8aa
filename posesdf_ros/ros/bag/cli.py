"""`posesdf bag record | eval | play | info` (rclpy only for `play` and `eval --live`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from ...inference.pretrained import WEIGHT_SET_HELP
from ...provenance import command_line
from . import layout
from .writer import COMPRESSIONS, STORAGES


def _csv(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def add_parser(sub) -> None:
    from ...data.camera import NOISE_PROFILES
    from ...data.gait import CONDITIONS
    from ...data.scene import VIEWS

    bag = sub.add_parser("bag", help="rosbag2: record synthetic walks with ground truth, evaluate bags, play them",
                         description="Record, evaluate and replay rosbag2 files (MCAP or sqlite3). The layout is in "
                                     "docs/bags.md.")
    bsub = bag.add_subparsers(dest="bag_command", required=True, metavar="COMMAND")

    rec = bsub.add_parser("record", help="write generated walking sequences (or test samples) as a rosbag2",
                          description="Every condition x view x body of the lists, each for --duration seconds at "
                                      "--rate Hz, with the camera topics, the camera's extrinsics on /tf_static and "
                                      "the ground truth (joints, gait parameters).")
    rec.add_argument("out", type=Path, help="bag folder to write (replaced if it exists)")
    rec.add_argument("--conditions", type=_csv, default=("normal",),
                     help=f"comma-separated gait conditions (default normal; of {', '.join(CONDITIONS)})")
    rec.add_argument("--views", type=_csv, default=("V1",),
                     help=f"comma-separated views (default V1; of {', '.join(VIEWS)})")
    rec.add_argument("--bodies", type=_csv, default=("0",), help="comma-separated test bodies 0..99 (default 0)")
    rec.add_argument("--seed", type=int, default=1, help="seed of the gait variation, clutter and noise (default 1)")
    rec.add_argument("--noise", choices=NOISE_PROFILES, default="realistic", help="depth noise (default realistic)")
    rec.add_argument("--clutter", type=int, default=2, help="boxes beside the walkway (default 2)")
    rec.add_argument("--duration", type=float, default=2.0, help="seconds per sequence (default 2)")
    rec.add_argument("--rate", type=float, default=15.0, help="camera rate in Hz (default 15)")
    rec.add_argument("--resolution", default="640x360", help="depth/RGB resolution WxH (default 640x360)")
    rec.add_argument("--no-images", action="store_true", help="leave out the RGB image topic")
    rec.add_argument("--from-dataset", type=Path, default=None,
                     help="instead of walks, write the samples of a test build (one frame each, 2 s apart)")
    rec.add_argument("--protocol", default="all", help="with --from-dataset: CC, CV, CCCV or all (default)")
    rec.add_argument("--limit", type=int, default=None, help="with --from-dataset: samples per (condition, view) cell")
    rec.add_argument("--storage", choices=STORAGES, default="mcap", help="rosbag2 storage (default mcap)")
    rec.add_argument("--compression", choices=COMPRESSIONS, default="none",
                     help="zstd compression: none (default), per message, or of the whole file")
    rec.add_argument("--quiet", action="store_true", help="no progress bar")
    rec.set_defaults(func=_record)

    ev = bsub.add_parser("eval", help="run the pipeline over a bag and score it against its ground truth",
                         description="Reads any rosbag2, runs the canonicaliser's and estimator's steps (and the "
                                     "Pose-NDF prior) on every cloud, or with --live the real nodes on a replay, and "
                                     "scores them against the bag's ground truth where it has some. Writes a report "
                                     "folder (summary.md, summary.json, records.json, plots).")
    ev.add_argument("bag", type=Path, help="rosbag2 folder, or a .mcap / .db3 file")
    ev.add_argument("--points-topic", default=layout.POINTS_TOPIC,
                    help=f"PointCloud2 topic (default {layout.POINTS_TOPIC})")
    ev.add_argument("--image-topic", default=layout.IMAGE_TOPIC,
                    help=f"RGB image for the live overlay (default {layout.IMAGE_TOPIC})")
    ev.add_argument("--camera-info-topic", default=layout.CAMERA_INFO_TOPIC,
                    help=f"CameraInfo for the live overlay (default {layout.CAMERA_INFO_TOPIC})")
    ev.add_argument("--gt-topic", default=layout.GT_JOINTS_TOPIC,
                    help=f"ground-truth joints, PoseArray in the gravity frame (default {layout.GT_JOINTS_TOPIC}; "
                         "'none' to ignore)")
    ev.add_argument("--gait-topic", default=layout.GT_GAIT_TOPIC,
                    help=f"ground-truth gait, DiagnosticArray (default {layout.GT_GAIT_TOPIC}; 'none' to ignore)")
    ev.add_argument("--gravity-frame", default=layout.GRAVITY_FRAME,
                    help=f"gravity-aligned frame, z up, floor z = 0 (default {layout.GRAVITY_FRAME}); a cloud in it "
                         "needs no extrinsics")
    ev.add_argument("--camera-pose", default=None, metavar="HEIGHT,PITCH[,YAW,X,Y]",
                    help="fixed camera pose (m, deg, as the camera_* parameters) instead of the bag's TF")
    ev.add_argument("--gt-tolerance", type=float, default=0.01,
                    help="largest stamp difference between a cloud and its ground truth (s, default 0.01)")
    ev.add_argument("--params-file", type=Path, default=None,
                    help="node parameters (default: the package's config/posesdf.yaml)")
    ev.add_argument("--profile", choices=("realtime", "fast", "accurate"), default=None,
                    help="estimator profile (default: the YAML's)")
    ev.add_argument("--device", choices=("cpu", "cuda"), default=None, help="torch device (default: the YAML's)")
    ev.add_argument("--weights", type=Path, default=None,
                    help="PoseSDF weights folder, " + WEIGHT_SET_HELP)
    ev.add_argument("--no-prior", action="store_true", help="score the estimator's joints without the Pose-NDF prior")
    ev.add_argument("--limit", type=int, default=None, help="only the first N clouds")
    ev.add_argument("--out", type=Path, default=None, help="report folder (default: <bag>_eval next to the bag)")
    ev.add_argument("--json", type=Path, default=None,
                    help="write {frames, frames_with_person, mpjpe_mm, per_joint_mm, dropped_frames, fps} here")
    ev.add_argument("--live", action="store_true",
                    help="play the bag with /clock to the real nodes (use_sim_time) and score what they publish")
    ev.add_argument("--rate", type=float, default=0.25,
                    help="with --live: playback rate (default 0.25: a 2-core CPU runs the estimator at 1-3 FPS)")
    ev.add_argument("--output-bag", type=Path, default=None,
                    help="with --live: where to record the nodes' outputs (default: <out>/outputs.mcap)")
    ev.add_argument("--estimates", type=Path, default=None,
                    help="score the joints recorded in this bag (e.g. by launch/bag_replay.launch.py) instead of "
                         "running the pipeline")
    ev.add_argument("--estimate-topic", default=layout.ESTIMATE_TOPIC,
                    help=f"with --estimates: the joints topic (default {layout.ESTIMATE_TOPIC})")
    ev.add_argument("--quiet", action="store_true", help="no progress bar")
    ev.set_defaults(func=_eval)

    play = bsub.add_parser("play",
                           help="publish a bag's messages on their topics with /clock (like ros2 bag play --clock)",
                           description="For machines without rosbag2: publishes every message whose type is "
                                       "installed at the recorded pace times 1/--rate, and /clock "
                                       "(rosgraph_msgs/Clock) so nodes with use_sim_time follow the bag's time.")
    play.add_argument("bag", type=Path)
    play.add_argument("--rate", type=float, default=1.0, help="playback rate (default 1)")
    play.add_argument("--topics", type=_csv, default=None, help="comma-separated topics (default: all)")
    play.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    play.add_argument("--delay", type=float, default=1.0, help="seconds to wait for subscribers first (default 1)")
    play.add_argument("--quiet", action="store_true", help="no progress bar")
    play.set_defaults(func=_play)

    cmp = bsub.add_parser("compare", help="two evaluations of one bag (e.g. offline and --live) on their common frames",
                          description="MPJPE of each report over all its scored frames and over the frames both "
                                      "scored (matched by stamp), and the relative difference.")
    cmp.add_argument("reports", type=Path, nargs=2, help="report folders of `posesdf bag eval` (records.json)")
    cmp.add_argument("--json", type=Path, default=None, help="write the comparison here")
    cmp.set_defaults(func=_compare)

    info = bsub.add_parser("info", help="topics, types and counts of a bag, and what could not be read")
    info.add_argument("bag", type=Path)
    info.set_defaults(func=_info)


def _record(args: argparse.Namespace) -> int:
    from .record import RecordConfig, record_dataset, record_walks

    if args.from_dataset is not None:
        summary = record_dataset(args.out, args.from_dataset, args.protocol, args.limit, args.storage,
                                 args.compression, progress=not args.quiet)
    else:
        try:
            width, height = (int(v) for v in args.resolution.lower().split("x"))
            bodies = tuple(int(b) for b in args.bodies)
        except ValueError:
            raise ValueError(f"--resolution wants WxH and --bodies integers, got {args.resolution!r}, "
                             f"{','.join(args.bodies)!r}") from None
        config = RecordConfig(conditions=args.conditions, views=args.views, bodies=bodies, seed=args.seed,
                              noise=args.noise, clutter_boxes=args.clutter, duration_s=args.duration,
                              rate_hz=args.rate, width=width, height=height, images=not args.no_images)
        summary = record_walks(args.out, config, args.storage, args.compression, progress=not args.quiet)
    summary["command"] = command_line()
    print(json.dumps(summary, indent=1, default=str))
    return 0


def camera_pose_matrix(text: str) -> np.ndarray:
    """"HEIGHT,PITCH[,YAW,X,Y]" (m, deg) -> camera optical frame -> gravity frame (4, 4)."""
    from ...geometry import look_at_pitched

    try:
        v = [float(x) for x in text.split(",")]
    except ValueError:
        v = []
    if len(v) not in (2, 5):
        raise ValueError(f"--camera-pose wants HEIGHT,PITCH or HEIGHT,PITCH,YAW,X,Y (m, deg), got {text!r}")
    height, pitch, yaw, x, y = v + [0.0] * (5 - len(v))
    return look_at_pitched(height, np.deg2rad(pitch), np.deg2rad(yaw), (x, y))


def _eval(args: argparse.Namespace) -> int:
    from ...inference.pipeline import PipelineSettings
    from ...provenance import device_description, git_commit
    from ..bringup import default_params_file
    from .evaluate import evaluate_estimates, evaluate_offline, json_figures
    from .frames import FrameSource
    from .report import write_report

    if args.limit is not None and args.limit <= 0 or args.rate <= 0:
        raise ValueError("--limit and --rate must be positive")
    source = FrameSource(args.points_topic, None if args.gt_topic == "none" else args.gt_topic,
                         None if args.gait_topic == "none" else args.gait_topic, args.gravity_frame,
                         camera_pose_matrix(args.camera_pose) if args.camera_pose else None, args.gt_tolerance)
    settings = PipelineSettings.from_yaml(args.params_file or default_params_file(), profile=args.profile,
                                          device=args.device)
    out = args.out or args.bag.parent / f"{args.bag.name.removesuffix('.mcap').removesuffix('.db3')}_eval"
    if args.live and args.estimates:
        raise ValueError("--live and --estimates exclude each other")
    if args.estimates:
        summary, records = evaluate_estimates(args.bag, source, args.estimates, args.estimate_topic, args.limit)
    elif args.live:
        from .live import evaluate_live

        summary, records = evaluate_live(args.bag, source, settings, out, image_topic=args.image_topic,
                                         camera_info_topic=args.camera_info_topic, rate=args.rate,
                                         output_bag=args.output_bag, params_file=args.params_file,
                                         prior=not args.no_prior, limit=args.limit, progress=not args.quiet)
    else:
        import torch

        torch.set_num_threads(1)   # the nodes' torch_threads; two-core machines share their cores
        summary, records = evaluate_offline(args.bag, source, settings, not args.no_prior, args.limit,
                                            not args.quiet, args.weights)
    summary |= {"command": command_line(), "device": device_description(settings.device), "git_commit": git_commit()}
    write_report(summary, records, out)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(json_figures(summary), indent=1))
    brief = json_figures(summary) | {"mpjpe_median_mm": summary["mpjpe_median_mm"], "report": str(out)}
    print(json.dumps(brief, indent=1))
    for note in summary["notes"]:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _play(args: argparse.Namespace) -> int:
    from .play import play_bag

    if args.rate <= 0:
        raise ValueError("--rate must be positive")
    counts = play_bag(args.bag, args.rate, args.topics, clock=not args.no_clock, delay_s=args.delay,
                      progress=not args.quiet)
    print(json.dumps(counts, indent=1))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from .evaluate import compare_reports

    result = compare_reports(*args.reports)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


def _info(args: argparse.Namespace) -> int:
    from .reader import BagReader

    with BagReader(args.bag) as reader:
        topics = {t: {"type": i.msgtype, "count": i.count} for t, i in reader.topics.items()}
        print(json.dumps({"bag": str(args.bag), "compression": reader.compression, "topics": topics,
                          "notes": reader.notes}, indent=1))
    return 0
