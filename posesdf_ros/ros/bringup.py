"""`bringup`: any set of the package's nodes in one process, from the same YAML as the launch files.

    ros2 run posesdf_ros bringup [--nodes synthetic_camera,canonicaliser,estimator]
                                 [--params-file config/posesdf.yaml] [--duration S] [--ros-args ...]

It is the in-process equivalent of `launch/posesdf.launch.py` (no
synthetic camera) and `launch/demo.launch.py` (with it), for machines
without `ros2 launch`. The nodes run on one multi-threaded executor; each
does its heavy work on its own worker thread. Wiring (`PIPELINE_REMAPS`)
is the same as in the launch files; `--ros-args -r points:=/camera/...`
connects a real camera.
"""
from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

NODE_CLASSES = {
    "synthetic_camera": ("posesdf_ros.ros.synthetic_camera", "SyntheticCameraNode"),
    "canonicaliser": ("posesdf_ros.ros.canonicaliser", "CanonicaliserNode"),
    "estimator": ("posesdf_ros.ros.estimator", "EstimatorNode"),
    "pose_prior": ("posesdf_ros.ros.pose_prior", "PosePriorNode"),
}
DEFAULT_NODES = ("synthetic_camera", "canonicaliser", "estimator", "pose_prior")

#: node -> remappings that connect the pipeline (the launch files use the same).
PIPELINE_REMAPS: dict[str, dict[str, str]] = {
    "estimator": {"legs": "/canonicaliser/legs", "person": "/canonicaliser/person",
                  "occluders": "/canonicaliser/occluders"},
    "pose_prior": {"joints": "/estimator/joints"},
}
#: With the synthetic camera in the process, its topics feed the pipeline.
SYNTHETIC_CAMERA_REMAPS: dict[str, dict[str, str]] = {
    "canonicaliser": {"points": "/synthetic_camera/points"},
    "estimator": {"image": "/synthetic_camera/image", "camera_info": "/synthetic_camera/camera_info"},
}


def config_file(name: str) -> Path:
    """config/<name>: in the installed share directory, else in the source tree."""
    try:
        from ament_index_python.packages import get_package_share_directory

        installed = Path(get_package_share_directory("posesdf_ros")) / "config" / name
        if installed.exists():
            return installed
    except (ImportError, LookupError, OSError):  # not installed by colcon, or no AMENT_PREFIX_PATH
        pass
    return Path(__file__).resolve().parents[2] / "config" / name


def default_params_file() -> Path:
    """config/posesdf.yaml, the parameters of every node."""
    return config_file("posesdf.yaml")


def relative_remaps(name: str) -> dict[str, str]:
    """`PIPELINE_REMAPS[name]` with relative targets, which resolve in the node's namespace
    (posesdf.launch.py's `namespace:=` moves the whole pipeline)."""
    return {src: dst.lstrip("/") for src, dst in PIPELINE_REMAPS.get(name, {}).items()}


def remaps_for(name: str, nodes: list[str]) -> dict[str, str]:
    remaps = dict(PIPELINE_REMAPS.get(name, {}))
    if "synthetic_camera" in nodes:
        remaps |= SYNTHETIC_CAMERA_REMAPS.get(name, {})
    return remaps


def make_node(name: str, params_file: Path | None, remaps: dict[str, str] | None = None, context=None,
              overrides: dict | None = None):
    """One node, with the YAML's parameters, the given remappings and parameter overrides, started
    (configured and activated unless its `autostart` is false)."""
    import importlib

    from rclpy.parameter import Parameter

    if name not in NODE_CLASSES:
        raise ValueError(f"unknown node {name!r}; expected one of {tuple(NODE_CLASSES)}")
    module, cls = NODE_CLASSES[name]
    node_cls = getattr(importlib.import_module(module), cls)
    args = ["--ros-args"]
    if params_file is not None:
        args += ["--params-file", str(params_file)]
    for src, dst in (remaps or {}).items():
        args += ["-r", f"{src}:={dst}"]
    node = node_cls(cli_args=args, context=context,
                    parameter_overrides=[Parameter(k, value=v) for k, v in (overrides or {}).items()])
    node.start()
    return node


def make_nodes(names: list[str], params_file: Path | None = None, context=None,
               overrides: dict[str, dict] | None = None) -> list:
    """The named nodes, wired together as the launch files wire them."""
    params_file = params_file or default_params_file()
    if not params_file.exists():
        raise FileNotFoundError(f"parameter file {params_file} not found")
    return [make_node(n, params_file, remaps_for(n, names), context, (overrides or {}).get(n)) for n in names]


def make_executor(context=None):
    """rclpy's EventsExecutor (C++, `rclpy.experimental`), else a SingleThreadedExecutor.

    One thread is enough: every callback only hands work to its node's worker thread. What
    matters is how long the executor holds the interpreter lock, which each of the worker's
    torch calls must take back: rclpy 7.1's MultiThreadedExecutor re-yields queued tasks without
    waiting (ros2/rclpy#1452), and the Python wait loop of the single-threaded one costs more
    than the C++ EventsExecutor. The live demo (`posesdf demo --duration 20`, 2 cores) ran at 1.0,
    2.2 to 2.5 and 3.2 to 3.4 FPS with the three, the rest of the code as of this change.
    """
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:
        from rclpy.executors import SingleThreadedExecutor

        return SingleThreadedExecutor(context=context)
    return EventsExecutor(context=context)


def spin(nodes: list, duration_s: float = 0.0, context=None, stop: threading.Event | None = None) -> None:
    """Spin the nodes on one executor until Ctrl-C, `duration_s` or `stop` (`make_executor`)."""
    import rclpy
    from rclpy.executors import ExternalShutdownException

    executor = make_executor(context)
    for node in nodes:
        executor.add_node(node)
    end = time.monotonic() + duration_s if duration_s > 0 else float("inf")
    try:
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            executor.spin_once(timeout_sec=0.1)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:  # noqa: BLE001
        # Ctrl-C ends the context; a callback caught mid-publish then fails: that is a clean stop.
        if rclpy.ok(context=context):
            raise
    finally:
        for node in nodes:
            if hasattr(node, "release"):
                node.release()
            executor.remove_node(node)
            node.destroy_node()
        executor.shutdown()


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM (what `ros2 launch` sends), in place of rclpy's handlers.

    rclpy's own handlers end the context at once, while a node's worker may
    still be publishing its frame ("publisher's context is invalid"). Here
    the signal only ends the spin loop: the nodes then stop their workers
    and shut down while the context is valid. A second signal interrupts.
    """
    stop = threading.Event()

    def handle(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handle)
    return stop


def init_for_main(args=None) -> threading.Event:
    """`rclpy.init` for an executable's main(): our signal handling, not rclpy's (see `stop_on_signals`)."""
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    return stop_on_signals()


def run_single(node_cls, args=None) -> None:
    """Entry point of one node's executable (`ros2 run posesdf_ros <node>`); exits 0 on SIGINT/SIGTERM."""
    import rclpy

    stop = init_for_main(args)
    try:
        node = node_cls()
        node.start()
        spin([node], stop=stop)
    finally:
        if rclpy.ok():
            rclpy.shutdown()


def make_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bringup", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default=",".join(DEFAULT_NODES),
                        help=f"comma-separated nodes to run (default: {','.join(DEFAULT_NODES)})")
    parser.add_argument("--params-file", type=Path, default=None,
                        help="YAML with every node's parameters (default: the package's config/posesdf.yaml)")
    parser.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 runs until Ctrl-C")
    parser.add_argument("--set", action="append", default=[], metavar="NAME:=VALUE",
                        help="override a parameter of every started node that has it, over the YAML (repeatable; "
                             "a node's own `--params-file` beats global `--ros-args -p`, this beats both)")
    return parser


def parse_overrides(items: list[str]) -> dict:
    """["rate_hz:=5.0", "view:=V2"] -> {"rate_hz": 5.0, "view": "V2"} (values read as YAML scalars)."""
    import yaml

    out = {}
    for item in items:
        name, sep, value = item.partition(":=")
        if not sep or not name:
            raise ValueError(f"--set wants NAME:=VALUE, got {item!r}")
        out[name] = yaml.safe_load(value)
    return out


def main(argv: list[str] | None = None) -> int:
    import rclpy
    from rclpy.utilities import remove_ros_args

    argv = sys.argv if argv is None else argv
    args = make_parser().parse_args(remove_ros_args(argv)[1:])
    names = [n.strip() for n in args.nodes.split(",") if n.strip()]
    stop = init_for_main(argv)
    try:
        overrides = parse_overrides(args.set)
        nodes = make_nodes(names, args.params_file, overrides={n: overrides for n in names})
        spin(nodes, args.duration, stop=stop)
    except (ValueError, FileNotFoundError) as err:
        print(f"bringup: error: {err}", file=sys.stderr)
        return 2
    finally:
        if rclpy.ok():
            rclpy.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
