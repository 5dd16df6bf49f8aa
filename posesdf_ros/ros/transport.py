"""Fast DDS transport profile for large point clouds, and a two-process check that it delivers them.

With Fast DDS's default transports, organised clouds of several MB sent
between two processes on one machine are mostly lost (the default
shared-memory segment is 0.5 MB). ``config/fastdds.xml`` gives every
participant a large shared-memory segment; Fast DDS reads it from the
environment variable ``PROFILE_ENV`` when the process creates its first
participant (once per process).

    FASTRTPS_DEFAULT_PROFILES_FILE=$(ros2 pkg prefix posesdf_ros)/share/posesdf_ros/config/fastdds.xml

``exchange_clouds`` measures it: a publisher process sends organised x, y,
z + rgb clouds, a subscriber process counts what arrives; ``bench`` compares
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


def _run_side(side: str, width: int, height: int, count: int, rate_hz: float, domain_id: int, reliable: bool,
              wait_s: float, profile: Path | None, errors) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "posesdf_ros.ros.transport", side, "--width", str(width), "--height", str(height),
           "--count", str(count), "--rate", str(rate_hz), "--domain", str(domain_id), "--wait", str(wait_s)]
    return subprocess.Popen(cmd + (["--reliable"] if reliable else []), env=_child_env(profile),
                            stdout=subprocess.PIPE, stderr=errors, text=True)


def exchange_clouds(width: int, height: int, count: int = 30, rate_hz: float = 15.0, profile: Path | None = None,
                    reliable: bool = False, domain_id: int = 61, timeout_s: float | None = None) -> dict:
    """Send ``count`` organised clouds from a publisher process to a subscriber process; count what arrives.

    Both are fresh processes, as a camera driver and the canonicaliser are,
    so that what this process has done with DDS before plays no part (Fast
    DDS reads ``PROFILE_ENV`` once per process, with its first participant).
    ``profile`` (a Fast DDS XML file, e.g. ``fastdds_profile_path()``) is set
    in both processes' environment; ``None`` removes ``PROFILE_ENV`` so that
    Fast DDS's defaults are what is measured. The subscriber's callback only
    checks the size and counts.
    """
    if timeout_s is None:
        timeout_s = count / rate_hz + 30.0
    with contextlib.ExitStack() as stack:
        # Files, not pipes, for stderr: a full pipe would block a process while we wait for the other.
        sub_err, pub_err = (stack.enter_context(tempfile.TemporaryFile(mode="w+")) for _ in range(2))
        subscriber = _run_side("subscribe", width, height, count, rate_hz, domain_id, reliable, timeout_s, profile,
                               sub_err)
        stack.callback(lambda: subscriber.poll() is None and subscriber.kill())
        publisher = _run_side("publish", width, height, count, rate_hz, domain_id, reliable, timeout_s, profile,
                              pub_err)
        stack.callback(lambda: publisher.poll() is None and publisher.kill())
        outputs = {}
        for name, proc, err in (("publisher", publisher, pub_err), ("subscriber", subscriber, sub_err)):
            try:
                out, _ = proc.communicate(timeout=2 * timeout_s + 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
            if proc.returncode != 0:
                err.seek(0)
                raise RuntimeError(f"{name} exited with {proc.returncode}: {err.read().strip()[-2000:]}")
            outputs[name] = json.loads(out.strip().splitlines()[-1])
    sent, got = outputs["publisher"]["sent"], outputs["subscriber"]
    return {"width": width, "height": height, "bytes_per_cloud": width * height * 16, "sent": sent,
            "received": got["received"], "lost": sent - got["received"], "bad": got["bad"], "rate_hz": rate_hz,
            "qos": "reliable" if reliable else "sensor_data", "profile": str(profile) if profile else None,
            "latency_ms": got["latency_ms"]}


def subscribe(width: int, height: int, count: int, rate_hz: float, domain_id: int, reliable: bool,
              wait_s: float) -> dict:
    """Subscriber side: count the well-formed clouds that arrive until ``count`` did, or the sender has been
    quiet for 2 s after the first, or ``wait_s`` plus the sending time pass."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from sensor_msgs.msg import PointCloud2

    expected = width * height * 16
    got = {"stamps": set(), "bad": 0, "latency": [], "last": None}

    def on_cloud(msg: PointCloud2) -> None:
        got["last"] = time.monotonic()
        if msg.width != width or msg.height != height or len(msg.data) != expected:
            got["bad"] += 1
            return
        got["stamps"].add((msg.header.stamp.sec, msg.header.stamp.nanosec))
        got["latency"].append(time.time() - (msg.header.stamp.sec + msg.header.stamp.nanosec * 1e-9))

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=domain_id)  # the profile comes from the environment
    try:
        node = rclpy.create_node(f"transport_sub_{os.getpid()}", context=context)
        node.create_subscription(PointCloud2, TOPIC, on_cloud, cloud_qos(reliable))
        executor = SingleThreadedExecutor(context=context)
        executor.add_node(node)
        deadline = time.monotonic() + wait_s + count / rate_hz + LINGER_S
        while len(got["stamps"]) < count and time.monotonic() < deadline and \
                not (got["last"] is not None and time.monotonic() - got["last"] > 2.0):
            executor.spin_once(timeout_sec=0.05)
        executor.shutdown()
        node.destroy_node()
    finally:
        context.try_shutdown()
    return {"received": len(got["stamps"]), "bad": got["bad"],
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
    for side, text in (("publish", "publisher side of exchange_clouds; prints {\"sent\": N}"),
                       ("subscribe", "subscriber side of exchange_clouds; prints {\"received\": N, ...}")):
        one = sub.add_parser(side, help=text)
        one.add_argument("--width", type=int, default=1280)
        one.add_argument("--height", type=int, default=720)
        one.add_argument("--count", type=int, default=30)
        one.add_argument("--rate", type=float, default=15.0)
        one.add_argument("--domain", type=int, default=int(os.environ.get("ROS_DOMAIN_ID", "0")))
        one.add_argument("--reliable", action="store_true", help="reliable keep-last-5 instead of sensor-data QoS")
        one.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the other side")
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
    if args.command == "subscribe":
        print(json.dumps(subscribe(args.width, args.height, args.count, args.rate, args.domain, args.reliable,
                                   args.wait)), flush=True)
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
