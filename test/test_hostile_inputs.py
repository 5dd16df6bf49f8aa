"""Hostile inputs over real DDS: bad stamps, non-finite or absurd messages, unknown camera frames.

The nodes run in this process on their own domain (the `graph` fixture,
test/ros_graph.py); the test publishes what a broken driver, a clock skew or
a corrupt upstream node would, and reads every output topic.
"""
from __future__ import annotations

import copy
import time

import numpy as np
import pytest
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PoseArray
from ros_graph import status_values, statuses
from sensor_msgs.msg import JointState, PointCloud2
from std_msgs.msg import Header
from visualization_msgs.msg import MarkerArray

from posesdf_ros.ros.bringup import make_nodes
from posesdf_ros.ros.conversions import cloud_to_xyz, xyz_to_cloud
from posesdf_ros.ros.markers import joints_to_pose_array, pose_array_to_joints

DAY_S = 86400


@pytest.fixture(scope="module")
def walk():
    from posesdf_ros.data.stream import SyntheticWalker, WalkerConfig

    walker = SyntheticWalker(WalkerConfig())   # the YAML's default camera pose
    return [walker.frame(t) for t in (0.0, 0.1, 0.2, 0.3)]


def _shifted(stamp: Time, seconds: float) -> Time:
    ns = stamp.sec * 10**9 + stamp.nanosec + int(seconds * 1e9)
    return Time(sec=ns // 10**9, nanosec=ns % 10**9)


def _key(header) -> tuple[int, int]:
    return header.stamp.sec, header.stamp.nanosec


def _stamps(msg) -> set[tuple[int, int]]:
    """The input stamps an output message answers (a MarkerArray's are its markers')."""
    return {_key(m.header) for m in msg.markers} if isinstance(msg, MarkerArray) else {_key(msg.header)}


def _answered(graph, topic, header) -> bool:
    return graph.wait_for(lambda r: any(_key(m.header) == _key(header) for m in r[topic]))


def test_a_frame_stamped_a_day_ahead_costs_only_itself(graph, walk):
    graph.listen(PoseArray, "/estimator/joints")
    graph.listen(DiagnosticArray, "/diagnostics")
    graph.add(make_nodes(["canonicaliser", "estimator"], context=graph.context,
                         overrides={"estimator": {"mesh_rate_hz": 0.0, "overlay": False}}))
    points = graph.publisher(PointCloud2, "/points")
    assert graph.wait_matched(points)  # discovery

    def send(frame, seconds_ahead=0.0):
        header = Header(stamp=_shifted(graph.now(), seconds_ahead), frame_id="camera_depth_optical_frame")
        points.publish(xyz_to_cloud(frame.cloud, header, rgb=frame.rgb))
        return header

    first = send(walk[0])
    assert _answered(graph, "/estimator/joints", first)
    future = send(walk[1], DAY_S)
    time.sleep(0.2)
    second = send(walk[2])          # the very next good frame is answered
    assert _answered(graph, "/estimator/joints", second), "joints did not resume after a frame a day ahead"
    skewed = send(walk[3], 3.0)      # a 3 s skew: dropped too
    time.sleep(0.2)
    third = send(walk[0])
    assert _answered(graph, "/estimator/joints", third)
    answered = {_key(m.header) for m in graph.received["/estimator/joints"]}
    assert _key(future) not in answered and _key(skewed) not in answered

    def counted(r):
        canon = statuses(r, "canonicaliser")
        return canon and int(status_values(canon[-1]).get("dropped_future", 0)) == 2
    assert graph.wait_for(counted, 10), "the future frames were not counted on /diagnostics"


def test_stream_going_back_in_time_restarts_ordering_after_one_frame(graph, walk):
    """A stamp accepted within the tolerance but ahead of the stream (or a replay restarting) costs at most
    one good frame: two frames in order behind the newest stamp restart the ordering."""
    graph.listen(PoseArray, "/pose_prior/joints")
    graph.listen(DiagnosticArray, "/diagnostics")
    # Causal (lag_frames 0), so that every frame accepted is answered at once.
    (prior,) = graph.add(make_nodes(["pose_prior"], context=graph.context, overrides={"pose_prior": {"lag_frames": 0}}))
    joints_in = graph.publisher(PoseArray, "/estimator/joints")
    assert graph.wait_matched(joints_in)  # discovery
    truth = [f.joints for f in walk]
    t0 = graph.now()
    sent = []
    # Good frames at 10 Hz, one frame 0.4 s ahead (within future_tolerance_s 0.5), then the stream goes on.
    offsets = [0.0, 0.1, 0.2, 0.7, 0.3, 0.4, 0.5]
    for i, dt in enumerate(offsets):
        header = Header(stamp=_shifted(t0, dt), frame_id="base_link")
        joints_in.publish(joints_to_pose_array(truth[i % 4], header))
        sent.append(header)
        time.sleep(0.25)
    assert graph.wait_for(lambda r: any(_key(m.header) == _key(sent[-1]) for m in r["/pose_prior/joints"]), 20)
    answered = {_key(m.header) for m in graph.received["/pose_prior/joints"]}
    # The frame at 0.3 s is behind the 0.7 s one and dropped; the 0.4 s one follows it: ordering restarts.
    assert _key(sent[4]) not in answered
    assert {_key(sent[5]), _key(sent[6])} <= answered
    assert prior.stats.dropped["out_of_order"] == 1 and prior.stats.ordering_resets == 1


def _hostile_people(person: PoseArray):
    """Copies of a good `person` message, each broken in one way."""
    def broken(edit):
        msg = copy.deepcopy(person)
        edit(msg)
        return msg

    yield "NaN heading", broken(lambda m: setattr(m.poses[0].position, "x", float("nan")))
    yield "inf camera", broken(lambda m: setattr(m.poses[1].position, "z", float("inf")))
    yield "NaN quaternion", broken(lambda m: setattr(m.poses[0].orientation, "w", float("nan")))

    def zero_quaternion(m):
        q = m.poses[0].orientation
        q.x = q.y = q.z = q.w = 0.0
    yield "zero quaternion", broken(zero_quaternion)
    yield "huge heading", broken(lambda m: setattr(m.poses[0].position, "x", 1e12))
    yield "one pose", broken(lambda m: m.poses.pop())


def _hostile_joints(good: np.ndarray, header_now):
    nan = good.copy()
    nan[:] = np.nan
    inf = good.copy()
    inf[3, 2] = np.inf
    yield "inf joint", joints_to_pose_array(inf, header_now())
    yield "scaled by 1e12", joints_to_pose_array(good * 1e12, header_now())
    yield "moved by 1e12", joints_to_pose_array(good + 1e12, header_now())
    yield "one joint 5 m off", joints_to_pose_array(good + np.eye(9, 3)[:, :1].repeat(3, 1) * 5.0, header_now())
    zero_q = joints_to_pose_array(good, header_now())
    q = zero_q.poses[2].orientation
    q.x = q.y = q.z = q.w = 0.0
    yield "zero quaternion", zero_q
    short = joints_to_pose_array(good, header_now())
    short.poses = short.poses[:5]
    yield "five joints", short


def _finite_and_near(msg, limit_m: float = 20.0) -> bool:
    """Every coordinate of an output message is finite and within `limit_m` of the origin."""
    if isinstance(msg, PoseArray):
        values = [v for p in msg.poses for v in (p.position.x, p.position.y, p.position.z,
                                                 p.orientation.x, p.orientation.y, p.orientation.z,
                                                 p.orientation.w)]
    elif isinstance(msg, MarkerArray):
        values = [v for m in msg.markers for v in (m.pose.position.x, m.pose.position.y, m.pose.position.z)]
        values += [v for m in msg.markers for p in m.points for v in (p.x, p.y, p.z)]
    elif isinstance(msg, JointState):
        values = list(msg.position)
    else:
        raise TypeError(type(msg))
    return bool(np.isfinite(values).all() and np.abs(values).max(initial=0.0) <= limit_m)


def test_non_finite_and_absurd_messages_never_reach_an_output(graph, walk):
    outputs = {"/estimator/joints": PoseArray, "/estimator/markers": MarkerArray,
               "/pose_prior/joints": PoseArray, "/pose_prior/markers": MarkerArray,
               "/pose_prior/gait_angles": JointState}
    for topic, msg_type in outputs.items():
        graph.listen(msg_type, topic)
    graph.listen(PoseArray, "/canonicaliser/person")
    graph.listen(PointCloud2, "/canonicaliser/legs")
    graph.listen(DiagnosticArray, "/diagnostics")
    graph.add(make_nodes(["canonicaliser", "estimator", "pose_prior"], context=graph.context,
                         overrides={"estimator": {"mesh_rate_hz": 0.0, "overlay": False},
                                    "pose_prior": {"lag_frames": 0}}))    # a good frame is answered at once
    points = graph.publisher(PointCloud2, "/points")
    legs_out, person_out = graph.publisher(PointCloud2, "/canonicaliser/legs"), \
        graph.publisher(PoseArray, "/canonicaliser/person")
    occluders_out = graph.publisher(PointCloud2, "/canonicaliser/occluders")
    joints_out = graph.publisher(PoseArray, "/estimator/joints")
    assert graph.wait_matched(points, legs_out, person_out, occluders_out, joints_out)  # discovery

    def header(frame_id="base_link"):
        return Header(stamp=graph.now(), frame_id=frame_id)

    good = header("camera_depth_optical_frame")
    points.publish(xyz_to_cloud(walk[0].cloud, good, rgb=walk[0].rgb))
    assert _answered(graph, "/estimator/joints", good)
    legs, person = graph.received["/canonicaliser/legs"][-1], graph.received["/canonicaliser/person"][-1]
    hostile = set()

    def pair(legs_msg, person_msg):
        h = header()
        legs_msg, person_msg = copy.deepcopy(legs_msg), copy.deepcopy(person_msg)
        legs_msg.header, person_msg.header = h, h
        legs_out.publish(legs_msg)
        person_out.publish(person_msg)
        hostile.add(_key(h))
        time.sleep(0.3)

    for _, bad in _hostile_people(person):
        pair(legs, bad)
    far = xyz_to_cloud((cloud_to_xyz(legs) * 1e12).astype(np.float32), legs.header)
    pair(far, person)
    moved = xyz_to_cloud((cloud_to_xyz(legs) + [30.0, 0.0, 0.0]).astype(np.float32), legs.header)
    pair(moved, person)      # legs 30 m from the person's heading pose
    lifted = xyz_to_cloud((cloud_to_xyz(legs) + [0.0, 0.0, 0.4]).astype(np.float32), legs.header)
    pair(lifted, person)     # legs floating 0.4 m above the floor: fitted, judged implausible, not published
    # Absurd or unreadable occluders beside good legs: left out with a warning, and the frame is answered.
    for bad_occluders in (xyz_to_cloud(np.full((50, 3), 1e12, np.float32), legs.header),
                          PointCloud2(header=legs.header, height=1, width=3, point_step=4, row_step=12,
                                      data=bytes(12))):
        h = header()
        bad_occluders.header = h
        occluders_out.publish(bad_occluders)
        time.sleep(0.1)
        good_legs, good_person = copy.deepcopy(legs), copy.deepcopy(person)
        good_legs.header, good_person.header = h, h
        legs_out.publish(good_legs)
        person_out.publish(good_person)
        assert _answered(graph, "/estimator/joints", h), "bad occluders must not cost the frame"
    own = set()     # the test's own messages on /estimator/joints, the pose prior's input
    for _, bad in _hostile_joints(walk[1].joints.astype(np.float64), header):
        joints_out.publish(bad)
        own.add(_key(bad.header))
        time.sleep(0.2)
    # A good frame after all that is still answered by both nodes.
    again = header("camera_depth_optical_frame")
    points.publish(xyz_to_cloud(walk[2].cloud, again, rgb=walk[2].rgb))
    assert _answered(graph, "/estimator/joints", again) and _answered(graph, "/pose_prior/joints", again)

    with graph.lock:
        received = {topic: [m for m in graph.received[topic] if not _stamps(m) & own] for topic in outputs}
    for topic, messages in received.items():
        assert messages, f"nothing on {topic}"
        for msg in messages:
            assert _finite_and_near(msg), f"{topic} published a non-finite or absurd message"
            assert not _stamps(msg) & (hostile | own), f"{topic} answered a hostile message"
        for m in messages:
            if isinstance(m, PoseArray):
                assert np.isfinite(pose_array_to_joints(m)).all()

    def counted(r):
        est, prior = statuses(r, "estimator"), statuses(r, "pose_prior")
        return est and prior and int(status_values(est[-1]).get("dropped_bad_person", 0)) == 6 \
            and int(status_values(est[-1]).get("dropped_implausible", 0)) == 2 \
            and int(status_values(est[-1]).get("dropped_invalid", 0)) >= 1 \
            and int(status_values(prior[-1]).get("dropped_bad_joints", 0)) == 6
    def last_counters():
        with graph.lock:
            return {node: status_values(found[-1]) if (found := statuses(graph.received, node)) else None
                    for node in ("estimator", "pose_prior")}
    assert graph.wait_for(counted, 10), f"the hostile messages were not all counted on /diagnostics: {last_counters()}"


def test_camera_pose_guessed_for_an_unknown_frame_is_diagnosed(graph, walk):
    """Without a transform for the cloud's frame the camera_* parameters stand in, and /diagnostics says so
    for as long as it lasts; a cloud in the frame they describe clears it."""
    graph.listen(PoseArray, "/canonicaliser/person")
    graph.listen(DiagnosticArray, "/diagnostics")
    (canon,) = graph.add(make_nodes(["canonicaliser"], context=graph.context))
    points = graph.publisher(PointCloud2, "/points")
    assert graph.wait_matched(points)  # discovery

    def latest(r):
        found = statuses(r, "canonicaliser")
        return found[-1] if found else None

    for frame_id in ("", "some_other_camera"):
        h = Header(stamp=graph.now(), frame_id=frame_id)
        points.publish(xyz_to_cloud(walk[0].cloud, h, rgb=walk[0].rgb))
        assert _answered(graph, "/canonicaliser/person", h), "the node must keep running on its parameters"
        # The next diagnostics period names this frame's problem (a loaded host once took over 1.5 s).
        assert graph.wait_for(lambda r: (s := latest(r)) is not None and (frame_id or "empty frame_id") in s.message,
                              10), latest(graph.received)
        status = latest(graph.received)
        assert status.level == DiagnosticStatus.WARN and "camera_* parameters" in status.message, status.message
        assert status_values(status)["extrinsics"] == "parameters (guessed)"
    h = Header(stamp=graph.now(), frame_id="camera_depth_optical_frame")
    points.publish(xyz_to_cloud(walk[1].cloud, h, rgb=walk[1].rgb))
    assert _answered(graph, "/canonicaliser/person", h)
    assert graph.wait_for(lambda r: latest(r).level == DiagnosticStatus.OK, 5), latest(graph.received).message
    assert canon.extrinsics.problem == ""
