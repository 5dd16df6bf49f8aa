"""What `posesdf demo` and `posesdf bag eval --live` record of a running pipeline: the raw messages of chosen
topics (for a bag), each handed on as it arrives, and the latest /diagnostics status of every node."""
from __future__ import annotations

import threading
import time


class TopicRecorder:
    """A node subscribed (raw) to `topics`: topic -> (rosbag2 type name, QoS). Each message is kept as
    (topic, receipt time ns, serialized bytes) when `keep(topic, n)` says so (n: its index on the topic),
    then handed to `on_message`; /diagnostics, when recorded, fills `diagnostics` (status name -> key-values
    and its message)."""

    def __init__(self, context, name: str, topics: dict[str, tuple[str, object]]):
        from rclpy.node import Node

        from .bag.play import message_class

        self.node = Node(name, context=context)
        self.types = {topic: ros_type for topic, (ros_type, _) in topics.items()}
        self.classes = {topic: message_class(ros_type) for topic, ros_type in self.types.items()}
        self.lock = threading.Lock()
        self.messages: list[tuple[str, int, bytes]] = []
        self.counts: dict[str, int] = {}
        self.diagnostics: dict[str, dict[str, str]] = {}
        for topic, (_, qos) in topics.items():
            self.node.create_subscription(self.classes[topic], topic, lambda raw, t=topic: self._on_raw(t, raw), qos,
                                          raw=True)

    def keep(self, topic: str, n: int) -> bool:
        """Whether the n-th message (0-based) of `topic` goes into the bag; all of them by default."""
        return True

    def on_message(self, topic: str, raw: bytes, received_ns: int) -> None:
        """Called for every message after it is kept."""

    def deserialize(self, topic: str, raw: bytes):
        from rclpy.serialization import deserialize_message

        return deserialize_message(raw, self.classes[topic])

    def _on_raw(self, topic: str, raw: bytes) -> None:
        now_ns = time.time_ns()
        with self.lock:
            n = self.counts.get(topic, 0)
            self.counts[topic] = n + 1
            if self.keep(topic, n):
                self.messages.append((topic, now_ns, bytes(raw)))
        if topic == "/diagnostics":
            for status in self.deserialize(topic, raw).status:
                self.diagnostics[status.name] = {kv.key: kv.value for kv in status.values} | {
                    "message": status.message}
        self.on_message(topic, raw, now_ns)

    def node_diagnostics(self) -> dict[str, dict[str, str]]:
        """The latest key-values by node name (a status "estimator: pipeline" is the estimator's)."""
        return {name.split(":")[0]: values for name, values in self.diagnostics.items()}
