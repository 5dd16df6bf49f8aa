"""Fast DDS transport profile for large point clouds, and a two-process check that it delivers them.

With Fast DDS's default transports, organised clouds of several MB sent
between two processes on one machine are mostly lost (the default
shared-memory segment is 0.5 MB). ``config/fastdds.xml`` gives every
participant a large shared-memory segment; Fast DDS reads it from the
environment variable ``PROFILE_ENV`` when the process creates its first
participant (once per process).

    FASTRTPS_DEFAULT_PROFILES_FILE=$(ros2 pkg prefix posesdf_ros)/share/posesdf_ros/config/fastdds.xml

``exchange_clouds`` measures it: a publisher process sends organised x, y,
z + rgb clouds, this process counts what arrives; ``bench`` compares
Fast DDS's defaults with the profile:

    python -m posesdf_ros.ros.transport bench --json docs/results/transport.json \
        --markdown docs/results/transport.md
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

#: Where Fast DDS 2.x (ROS 2 Jazzy) finds its XML profiles; 3.x reads FASTDDS_DEFAULT_PROFILES_FILE.
PROFILE_ENV = "FASTRTPS_DEFAULT_PROFILES_FILE"
TOPIC = "transport_check/points"
#: Publisher: pause between seeing the subscriber and the first cloud, so both sides finish matching.
SETTLE_S = 0.5
#: Publisher: keep the participant alive after the last cloud so queued fragments (or resends) go out.
LINGER_S = 1.5


def fastdds_profile_path() -> Path:
    """config/fastdds.xml, installed or in the source tree."""
    from .bringup import config_file

    return config_file("fastdds.xml")


def environment_with_profile(env: dict[str, str] | None = None) -> dict[str, str]:
    """`env` (default: this process's) with `PROFILE_ENV` naming the shipped profile, unless it names one
    already: for node processes started by `posesdf demo` and `posesdf bag eval --live`."""
    env = dict(os.environ if env is None else env)
    env.setdefault(PROFILE_ENV, str(fastdds_profile_path()))
    return env


def cloud_qos(reliable: bool):
    """Sensor-data QoS (best effort, keep last 5) as the nodes use, or reliable keep last 5."""
    from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data

    return QoSProfile(depth=5, reliability=ReliabilityPolicy.RELIABLE) if reliable else qos_profile_sensor_data


def make_cloud(width: int, height: int, frame_id: str = "camera"):
    """Organised (height x width) cloud of float32 x, y, z + packed rgb (16 bytes a point), as depth cameras send."""
    from std_msgs.msg import Header

    from posesdf_ros.ros.conversions import xyz_to_cloud

    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    depth = np.float32(2.0)
    points = np.stack([(u - width / 2) / width * depth, (v - height / 2) / width * depth,
                       np.full_like(u, depth)], axis=-1)
    rgb = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return xyz_to_cloud(points, Header(frame_id=frame_id), rgb=rgb)


def _child_env(profile: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    if profile is None:
        env.pop(PROFILE_ENV, None)
    else:
        env[PROFILE_ENV] = str(profile)
    return env


def _node_with_profile(name: str, domain_id: int, profile: Path | None):
    """A node on a fresh rclpy Context whose participant is created with ``profile`` (or none) in the environment.

    rmw_fastrtps creates a Context's participant with its first node, and
    Fast DDS reads ``PROFILE_ENV`` only for the first participant of the
    process: if this process already created one (another Context), the
    profile loaded then, or none, stays in force whatever the environment says.
    """
    import rclpy

    previous = os.environ.pop(PROFILE_ENV, None)
    if profile is not None:
        os.environ[PROFILE_ENV] = str(profile)
    context = rclpy.Context()
    try:
        rclpy.init(context=context, domain_id=domain_id)
        return context, rclpy.create_node(name, context=context)
    except BaseException:
        context.try_shutdown()
        raise
    finally:
        os.environ.pop(PROFILE_ENV, None)
        if previous is not None:
            os.environ[PROFILE_ENV] = previous


def exchange_clouds(width: int, height: int, count: int = 30, rate_hz: float = 15.0, profile: Path | None = None,
                    reliable: bool = False, domain_id: int = 61, timeout_s: float | None = None) -> dict:
    """Send ``count`` organised clouds from a publisher process to a subscriber here; count what arrives.

    ``profile`` (a Fast DDS XML file, e.g. ``fastdds_profile_path()``) is set
    in both processes' environment; ``None`` removes ``PROFILE_ENV`` so that
    Fast DDS's defaults are what is measured (in this process only if it has
    created no participant before; see ``_node_with_profile``). The subscriber's
    callback only checks the size and counts.
    """
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import PointCloud2

    if timeout_s is None:
        timeout_s = count / rate_hz + 30.0
    expected = width * height * 16
    got = {"received": 0, "bad": 0, "stamps": set(), "latency": []}
    done = threading.Event()

    def on_cloud(msg: PointCloud2) -> None:
        if msg.width != width or msg.height != height or len(msg.data) != expected:
            got["bad"] += 1
            return
        got["received"] += 1
        got["stamps"].add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        got["latency"].append(time.time() - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))
        if got["received"] >= count:
            done.set()

    context, node = _node_with_profile(f"transport_sub_{os.getpid()}", domain_id, profile)
    with contextlib.ExitStack() as stack:
        stack.callback(context.try_shutdown)
        node.create_subscription(PointCloud2, TOPIC, on_cloud, cloud_qos(reliable))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        cmd = [sys.executable, "-m", "posesdf_ros.ros.transport", "publish", "--width", str(width),
               "--height", str(height), "--count", str(count), "--rate", str(rate_hz), "--domain", str(domain_id),
               "--wait", str(timeout_s)] + (["--reliable"] if reliable else [])
        errors = stack.enter_context(tempfile.TemporaryFile(mode="w+"))  # a pipe could fill up while we spin
        publisher = subprocess.Popen(cmd, env=_child_env(profile), stdout=subprocess.PIPE, stderr=errors, text=True)
        stack.callback(lambda: publisher.poll() is None and publisher.kill())
        deadline = time.monotonic() + timeout_s
        exited_at = None
        while not done.is_set() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
            if publisher.poll() is not None:
                exited_at = exited_at or time.monotonic()
                if time.monotonic() - exited_at > 1.0:  # the publisher lingered; nothing more is coming
                    break
        try:
            out, _ = publisher.communicate(timeout=max(5.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            publisher.kill()
            out, _ = publisher.communicate()
        errors.seek(0)
        err = errors.read()
        node.destroy_node()
        executor.shutdown()
    if publisher.returncode != 0:
        raise RuntimeError(f"publisher exited with {publisher.returncode}: {err.strip()[-2000:]}")
    sent = json.loads(out.strip().splitlines()[-1])["sent"]
    received = len(got["stamps"])
    return {"width": width, "height": height, "bytes_per_cloud": expected, "sent": sent, "received": received,
            "lost": sent - received, "bad": got["bad"], "rate_hz": rate_hz,
            "qos": "reliable" if reliable else "sensor_data", "profile": str(profile) if profile else None,
            "latency_ms": round(1e3 * float(np.median(got["latency"])), 1) if got["latency"] else None}


def publish(width: int, height: int, count: int, rate_hz: float, domain_id: int, reliable: bool,
            wait_s: float) -> int:
    """Publisher side: wait for a subscriber, send ``count`` clouds at ``rate_hz``; return how many were sent."""
    import rclpy
    from sensor_msgs.msg import PointCloud2

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)  # the profile comes from the environment
    try:
        node = rclpy.create_node(f"transport_pub_{os.getpid()}", context=context)
        publisher = node.create_publisher(PointCloud2, TOPIC, cloud_qos(reliable))
        cloud = make_cloud(width, height)
        deadline = time.monotonic() + wait_s
        while publisher.get_subscription_count() < 1:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no subscriber on {TOPIC} in domain {domain_id} after {wait_s} s")
            time.sleep(0.05)
        time.sleep(SETTLE_S)
        start, sent = time.monotonic(), 0
        for i in range(count):
            time.sleep(max(0.0, start + i / rate_hz - time.monotonic()))
            now = time.time()
            cloud.header.stamp.sec, cloud.header.stamp.nanosec = int(now), int((now % 1) * 1e9)
            publisher.publish(cloud)
            sent += 1
        time.sleep(LINGER_S)
        node.destroy_node()
    finally:
        context.try_shutdown()
    return sent


def bench(sizes: list[tuple[int, int]], repeats: int = 2, count: int = 30, rate_hz: float = 15.0,
          domain_id: int = 61) -> dict:
    """`exchange_clouds` for each size, with Fast DDS's defaults and with the shipped profile, with sensor-data
    and reliable QoS, `repeats` times each; the rows and what they were run with."""
    import platform

    from ..provenance import git_commit

    rows = []
    for width, height in sizes:
        for profile in (None, fastdds_profile_path()):
            for reliable in (False, True):
                for _ in range(repeats):
                    rows.append(exchange_clouds(width, height, count, rate_hz, profile, reliable, domain_id))
                    print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    return {"command": " ".join(["python -m posesdf_ros.ros.transport"] + sys.argv[1:]), "git_commit": git_commit(),
            "host": f"{platform.node()} ({os.cpu_count()} CPUs)", "load_average": os.getloadavg(),
            "fastdds_env": PROFILE_ENV, "rows": rows}


def bench_markdown(result: dict) -> str:
    """The bench's rows as a table: received of sent per setting, one column per repeat."""
    groups: dict[tuple, list[dict]] = {}
    for r in result["rows"]:
        groups.setdefault((r["width"], r["height"], r["profile"] is not None, r["qos"]), []).append(r)
    lines = [f"Made by `{result['command']}` at {result['git_commit']} on {result['host']}, load average "
             f"{', '.join(f'{v:.2f}' for v in result['load_average'])} at the end: organised clouds of x, y, z, rgb "
             f"(16 bytes a point) from a publisher process to a subscriber process, "
             f"{result['rows'][0]['sent']} at {result['rows'][0]['rate_hz']:g} Hz per run.", "",
             "| cloud | MB | Fast DDS settings | QoS | received of sent, per run | median latency (ms) |",
             "|---|---|---|---|---|---|"]
    for (w, h, shipped, qos), runs in groups.items():
        received = ", ".join(f"{r['received']}/{r['sent']}" for r in runs)
        latency = ", ".join("-" if r["latency_ms"] is None else f"{r['latency_ms']:.0f}" for r in runs)
        lines.append(f"| {w}x{h} | {runs[0]['bytes_per_cloud'] / 1e6:.1f} | "
                     f"{'config/fastdds.xml' if shipped else 'defaults'} | {qos} | {received} | {latency} |")
    return "\n".join(lines) + "\n"


def _size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m posesdf_ros.ros.transport", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    pub = sub.add_parser("publish", help="publisher side of exchange_clouds; prints {\"sent\": N}")
    pub.add_argument("--width", type=int, default=1280)
    pub.add_argument("--height", type=int, default=720)
    pub.add_argument("--count", type=int, default=30)
    pub.add_argument("--rate", type=float, default=15.0)
    pub.add_argument("--domain", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "0")))
    pub.add_argument("--reliable", action="store_true", help="reliable keep-last-5 instead of sensor-data QoS")
    pub.add_argument("--wait", type=float, default=30.0, help="seconds to wait for a subscriber")
    bench_parser = sub.add_parser("bench", help="clouds between two processes, Fast DDS defaults against "
                                                "config/fastdds.xml, sensor-data and reliable QoS")
    bench_parser.add_argument("--sizes", default="640x480,1280x720", help="WIDTHxHEIGHT,... (default: %(default)s)")
    bench_parser.add_argument("--repeats", type=int, default=2, help="runs per setting (default: 2)")
    bench_parser.add_argument("--count", type=int, default=30, help="clouds per run (default: 30)")
    bench_parser.add_argument("--rate", type=float, default=15.0, help="clouds per second (default: 15)")
    bench_parser.add_argument("--domain", type=int, default=61, help="ROS domain id (default: 61)")
    bench_parser.add_argument("--json", type=Path, help="write the rows here")
    bench_parser.add_argument("--markdown", type=Path, help="write the table here")
    args = parser.parse_args(argv)
    if args.command == "publish":
        sent = publish(args.width, args.height, args.count, args.rate, args.domain, args.reliable, args.wait)
        print(json.dumps({"sent": sent}), flush=True)
        return 0
    result = bench([_size(s) for s in args.sizes.split(",")], args.repeats, args.count, args.rate, args.domain)
    table = bench_markdown(result)
    print(table)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
