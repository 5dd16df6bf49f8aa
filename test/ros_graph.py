"""Real nodes on a background executor, in their own rclpy context and ROS domain, with a listener that keeps
what arrives: the `graph` fixture (conftest.py) of the integration tests."""
import os
import threading
import time

import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy

from posesdf_ros.ros.bringup import make_executor

DOMAIN = 1 + os.getpid() % 200


class Graph:
    """Nodes spinning on a background executor, plus a listener that keeps what arrives."""

    def __init__(self):
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=DOMAIN)
        # The executor the nodes run on in bringup and the demo: rclpy's MultiThreadedExecutor busy-loops while a
        # task waits (ros2/rclpy#1452) and held the interpreter lock from the nodes' workers (the pose prior's
        # steps took 0.46 s instead of 0.04 s, and its test failed on a 2-core host).
        self.executor = make_executor(self.context)
        self.listener = rclpy.create_node("test_listener", context=self.context)
        self.executor.add_node(self.listener)
        self.received: dict[str, list] = {}
        self.subscriptions: dict[str, object] = {}
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()
        self.nodes = []

    def _spin(self):
        while not self._stop.is_set():
            self.executor.spin_once(timeout_sec=0.05)

    def add(self, nodes):
        for node in nodes:
            self.executor.add_node(node)
        self.nodes += nodes
        return nodes

    def listen(self, msg_type, topic):
        qos = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.received[topic] = []

        def keep(msg):
            with self.lock:
                self.received[topic].append(msg)

        self.subscriptions[topic] = self.listener.create_subscription(msg_type, topic, keep, qos)

    def publisher(self, msg_type, topic):
        return self.listener.create_publisher(msg_type, topic, QoSProfile(depth=50))

    def wait_matched(self, *publishers, timeout: float = 10.0) -> bool:
        """Discovery done: every topic listened to is matched to a publisher, and every one of the test's
        `publishers` to a subscriber. A fixed sleep is not enough on a loaded host: a reliable publisher
        drops what it sends before the match, and a test then misses the first outputs."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if all(s.get_publisher_count() > 0 for s in self.subscriptions.values()) and \
                    all(p.get_subscription_count() > 0 for p in publishers):
                return True
            time.sleep(0.05)
        return False

    def wait_for(self, condition, timeout=120.0) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if condition(self.received):
                    return True
            time.sleep(0.1)
        return False

    def now(self):
        return self.listener.get_clock().now().to_msg()

    def close(self):
        self._stop.set()
        self._thread.join()
        for node in self.nodes:
            node.release()
            node.destroy_node()
        self.listener.destroy_node()
        self.executor.shutdown()
        rclpy.shutdown(context=self.context)


def statuses(received, name: str) -> list:
    """The /diagnostics statuses received from node `name`, oldest first."""
    return [s for msg in received.get("/diagnostics", []) for s in msg.status if s.name.startswith(name)]


def status_values(status) -> dict[str, str]:
    return {kv.key: kv.value for kv in status.values}
