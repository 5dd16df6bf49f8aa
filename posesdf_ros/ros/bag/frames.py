"""Camera frames of a bag in the gravity frame, with the ground truth matched by stamp (rclpy-free).

Extrinsics come from the bag's /tf_static and /tf (any chain of frames
between the cloud's frame and the gravity frame), from a fixed camera
pose given by the user, or are the identity for a cloud already in the
gravity frame.
"""
from __future__ import annotations

from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from .layout import TF_STATIC_TOPIC, TF_TOPIC
from .messages import cloud_xyz, gait_values, pose_array_joints, stamp_ns, transform_matrix
from .reader import BagReader

CLOUD_TYPES = ("sensor_msgs/msg/PointCloud2",)
JOINTS_TYPES = ("geometry_msgs/msg/PoseArray",)
GAIT_TYPES = ("diagnostic_msgs/msg/DiagnosticArray",)
TF_TYPES = ("tf2_msgs/msg/TFMessage",)


class TfTree:
    """The latest transform of each parent -> child edge; lookups compose along any path of edges."""

    def __init__(self):
        self.edges: dict[tuple[str, str], np.ndarray] = {}

    def add(self, msg, replace: bool = True) -> None:
        """The transforms of a TFMessage; with `replace=False` an edge already known keeps its transform."""
        for t in msg.transforms:
            edge = (t.header.frame_id.lstrip("/"), t.child_frame_id.lstrip("/"))
            if replace or edge not in self.edges:
                self.edges[edge] = transform_matrix(t.transform)

    def lookup(self, target: str, source: str) -> np.ndarray | None:
        """(4, 4) mapping points in `source` to `target`, or None when no chain of transforms joins them."""
        target, source = target.lstrip("/"), source.lstrip("/")
        if target == source:
            return np.eye(4)
        links: dict[str, list[tuple[str, np.ndarray]]] = {}
        for (parent, child), T in self.edges.items():
            links.setdefault(child, []).append((parent, T))                 # child -> parent: T
            links.setdefault(parent, []).append((child, np.linalg.inv(T)))  # parent -> child: T^-1
        seen, queue = {source}, deque([(source, np.eye(4))])
        while queue:
            frame, to_target = queue.popleft()
            for nxt, T in links.get(frame, []):
                if nxt in seen:
                    continue
                M = T @ to_target
                if nxt == target:
                    return M
                seen.add(nxt)
                queue.append((nxt, M))
        return None


@dataclass
class BagFrame:
    """One cloud of the bag, ready for the estimator."""

    stamp_s: float
    points: np.ndarray | None           # (H, W, 3) float32 gravity frame, NaN where no depth; None if unusable
    camera_origin: np.ndarray | None    # (3,) gravity frame, when the extrinsics are known
    truth: np.ndarray | None            # (9, 3) ground truth matched by stamp
    labels: dict = field(default_factory=dict)   # the ground-truth gait key-values of the frame's sequence
    problem: str = ""                   # why `points` is None
    bag_ns: int = 0                     # the message's bag time
    stamp_ns: int = 0                   # the header stamp, exactly (a float of seconds since 1970 is not)
    camera_to_gravity: np.ndarray | None = None   # (4, 4) the extrinsics used
    frame_id: str = ""                  # the cloud's frame


@dataclass
class FrameSource:
    """Where a bag's frames come from (topics and frames), as chosen by flags with the defaults of layout.py."""

    points_topic: str
    gt_topic: str | None
    gait_topic: str | None
    gravity_frame: str = "base_link"
    camera_to_gravity: np.ndarray | None = None   # a fixed camera pose, instead of the bag's TF
    gt_tolerance_s: float = 0.01


def _nearest(stamps: list[int], values: list, t: int, tolerance_ns: int):
    i = bisect_left(stamps, t)
    best = min((j for j in (i - 1, i) if 0 <= j < len(stamps)), key=lambda j: abs(stamps[j] - t), default=None)
    return values[best] if best is not None and abs(stamps[best] - t) <= tolerance_ns else None


def ground_truth(reader: BagReader, source: FrameSource) -> tuple[list[int], list[np.ndarray], list[tuple[int, dict]]]:
    """GT joints sorted by header stamp (ns), and the GT gait messages as (bag time ns, key-values)."""
    topics = [t for t in (source.gt_topic, source.gait_topic) if t and t in reader.topics]
    joints: dict[int, np.ndarray] = {}
    gait: list[tuple[int, dict]] = []
    for topic, t_ns, msg in reader.messages(topics):
        if topic == source.gt_topic:
            try:
                joints[stamp_ns(msg.header.stamp)] = pose_array_joints(msg)
            except ValueError as err:
                reader.notes.append(f"{topic}: {err}; message skipped")
        elif (values := gait_values(msg)) is not None:
            gait.append((t_ns, values))
    stamps = sorted(joints)
    return stamps, [joints[s] for s in stamps], sorted(gait, key=lambda g: g[0])


def check_topics(reader: BagReader, source: FrameSource) -> None:
    """Clear errors for missing or mistyped topics the user asked for."""
    reader.require(source.points_topic, CLOUD_TYPES)
    if source.gt_topic and source.gt_topic in reader.topics:
        reader.require(source.gt_topic, JOINTS_TYPES)


def iter_frames(reader: BagReader, source: FrameSource, limit: int | None = None) -> Iterator[BagFrame]:
    """The bag's clouds in bag order, in the gravity frame, each with its ground truth if the bag has it."""
    check_topics(reader, source)
    gt_stamps, gt_joints, gait = ground_truth(reader, source)
    gait_times = [g[0] for g in gait]
    tol = int(source.gt_tolerance_s * 1e9)
    tf = TfTree()
    tf_topics = [t for t in (TF_STATIC_TOPIC, TF_TOPIC) if source.camera_to_gravity is None
                 and t in reader.topics and reader.topics[t].msgtype in TF_TYPES]
    if TF_STATIC_TOPIC in tf_topics:
        # A static transform holds from the start of the bag wherever it was recorded; a later one for
        # the same edge replaces it from its own time on (tf2's static buffer keeps the latest).
        for _, _, msg in reader.messages([TF_STATIC_TOPIC]):
            tf.add(msg, replace=False)
    n = 0
    for topic, t_ns, msg in reader.messages([source.points_topic] + tf_topics):
        if topic in tf_topics:
            tf.add(msg)
            continue
        stamp = stamp_ns(msg.header.stamp)
        i = bisect_left(gait_times, t_ns + 1) - 1
        frame = BagFrame(stamp * 1e-9, None, None, _nearest(gt_stamps, gt_joints, stamp, tol),
                         gait[i][1] if i >= 0 else {}, bag_ns=t_ns, stamp_ns=stamp, frame_id=msg.header.frame_id)
        T = source.camera_to_gravity if source.camera_to_gravity is not None else \
            tf.lookup(source.gravity_frame, msg.header.frame_id)
        if T is None:
            frame.problem = (f"no transform from the cloud's frame '{msg.header.frame_id}' to "
                             f"'{source.gravity_frame}' in the bag's /tf_static or /tf")
        else:
            frame.camera_to_gravity = T
            try:
                # Organised, NaN where a pixel has none: the pipeline decimates it as the canonicaliser does.
                xyz = cloud_xyz(msg, keep_organised=True).astype(np.float64)
                frame.points = (xyz @ T[:3, :3].T + T[:3, 3]).astype(np.float32)
                is_gravity = source.camera_to_gravity is None and \
                    msg.header.frame_id.lstrip("/") == source.gravity_frame.lstrip("/")
                frame.camera_origin = None if is_gravity else T[:3, 3].copy()
            except ValueError as err:
                frame.problem = f"unreadable cloud: {err}"
        yield frame
        n += 1
        if limit is not None and n >= limit:
            return
