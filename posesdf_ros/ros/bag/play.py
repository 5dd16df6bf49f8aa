"""`posesdf bag play`: a bag's messages on their topics, at the recorded pace / rate, with /clock (rclpy).

What `ros2 bag play --clock` does, for machines without rosbag2: each
message is published as the CDR bytes the bag holds (rclpy publishes
serialised messages as they are), at `start + (bag time - first) / rate`
on the wall clock, and /clock (rosgraph_msgs/Clock) carries the bag time,
at every message and every `CLOCK_PERIOD_S` between them, so nodes with
`use_sim_time` see the bag's time. /tf_static keeps its transient-local
QoS. Topics whose message package is not installed (tf2_msgs is not on
PyPI) are skipped with a note.
"""
from __future__ import annotations

import importlib
import threading
import time
from pathlib import Path

from .layout import CLOCK_TOPIC, TF_STATIC_TOPIC
from .reader import BagReader

#: Wall-clock period of /clock between messages (ros2 bag play's default is 40 Hz).
CLOCK_PERIOD_S = 0.025


def message_class(msgtype: str):
    """The rclpy message class of a rosbag2 type name ("sensor_msgs/msg/Image"), or None if not installed."""
    pkg, _, name = msgtype.split("/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError):
        return None


class BagPlayer:
    """Publishes a bag from a node of the given rclpy context; `run` blocks until the end or `stop`."""

    def __init__(self, bag: Path, context=None, topics: list[str] | None = None, rate: float = 1.0,
                 clock: bool = True):
        from rclpy.node import Node
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy

        self.reader = BagReader(bag)
        self.rate, self.clock = rate, clock
        self.node = Node("posesdf_bag_player", context=context)
        self.publishers, self.counts, self.notes = {}, {}, list(self.reader.notes)
        for topic in topics or list(self.reader.topics):
            if topic not in self.reader.topics:
                raise ValueError(f"topic {topic} is not in bag {bag}; it has {', '.join(self.reader.topics)}")
            msgtype = self.reader.topics[topic].msgtype
            cls = message_class(msgtype)
            if cls is None:
                self.notes.append(f"{topic} not played: its type {msgtype} is not installed for rclpy")
                continue
            latched = topic == TF_STATIC_TOPIC
            qos = QoSProfile(depth=1 if latched else 10, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL if latched else DurabilityPolicy.VOLATILE)
            self.publishers[topic] = self.node.create_publisher(cls, topic, qos)
            self.counts[topic] = 0
        self.clock_pub = None
        if clock:
            from rosgraph_msgs.msg import Clock

            self.clock_pub = self.node.create_publisher(Clock, CLOCK_TOPIC, 10)
        self.sim_ns: int | None = None          # the bag time last put on /clock

    def publish_clock(self, t_ns: int) -> None:
        if self.clock_pub is None:
            return
        from builtin_interfaces.msg import Time
        from rosgraph_msgs.msg import Clock

        self.sim_ns = t_ns
        self.clock_pub.publish(Clock(clock=Time(sec=t_ns // 1_000_000_000, nanosec=t_ns % 1_000_000_000)))

    def _wait_until(self, wall: float, start_wall: float, first_ns: int, stop: threading.Event | None) -> bool:
        """Sleep until `wall`, keeping /clock going; False if stopped."""
        while True:
            now = time.monotonic()
            if stop is not None and stop.is_set():
                return False
            if now >= wall:
                return True
            self.publish_clock(first_ns + int((now - start_wall) * self.rate * 1e9))
            time.sleep(min(CLOCK_PERIOD_S, wall - now))

    def run(self, stop: threading.Event | None = None, progress: bool = True, end_ns: int | None = None) -> dict:
        """Play once (up to bag time `end_ns`). Returns messages per topic."""
        from tqdm import tqdm

        total = sum(self.reader.topics[t].count or 0 for t in self.publishers)
        bar = tqdm(total=total or None, desc="bag play", unit="msg", disable=not progress)
        first_ns = start_wall = None
        for topic, t_ns, raw in self.reader.raw_messages(list(self.publishers)):
            if end_ns is not None and t_ns > end_ns:
                break
            if first_ns is None:
                first_ns, start_wall = t_ns, time.monotonic()
                self.publish_clock(t_ns)
            if not self._wait_until(start_wall + (t_ns - first_ns) * 1e-9 / self.rate, start_wall, first_ns, stop):
                break
            self.publish_clock(t_ns)
            self.publishers[topic].publish(raw)
            self.counts[topic] += 1
            bar.update()
        bar.close()
        self.notes = list(dict.fromkeys(self.notes + self.reader.notes))
        return dict(self.counts)

    def close(self) -> None:
        self.node.destroy_node()
        self.reader.close()


def play_bag(bag: Path, rate: float = 1.0, topics: list[str] | None = None, clock: bool = True,
             delay_s: float = 1.0, progress: bool = True) -> dict:
    """`posesdf bag play`: its own rclpy context; Ctrl-C stops. Returns counts per topic and notes."""
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    player = BagPlayer(bag, context, topics, rate, clock)
    try:
        time.sleep(delay_s)   # discovery: let subscribers match before the first message
        counts = player.run(progress=progress)
    except KeyboardInterrupt:
        counts = dict(player.counts)
    finally:
        player.close()
        rclpy.shutdown(context=context)
    return {"published": counts, "notes": player.notes}
