"""Poses, transforms and their validation (posesdf_ros/ros/frames.py); no DDS needed."""
import numpy as np
import pytest
from geometry_msgs.msg import Point, Pose, Quaternion
from std_msgs.msg import Header

from posesdf_ros.ros.frames import checked_pose, heading_pose, matrix_to_pose, pose_to_matrix, pose_to_transform


def test_checked_pose_accepts_rotations_and_refuses_non_finite_far_or_non_unit_poses():
    good = heading_pose(np.array([1.0, -2.0]), 0.7)
    assert np.allclose(checked_pose(good, 100.0, "pose"), pose_to_matrix(good))
    cases = {
        "not finite": Pose(position=Point(x=float("nan")), orientation=Quaternion(w=1.0)),
        "from the origin": Pose(position=Point(x=1e12), orientation=Quaternion(w=1.0)),
        "norm 0": Pose(orientation=Quaternion(x=0.0, y=0.0, z=0.0, w=0.0)),
        "norm 2": Pose(orientation=Quaternion(w=2.0)),
    }
    for words, pose in cases.items():
        with pytest.raises(ValueError, match=words.split()[-1]):
            checked_pose(pose, 100.0, "the pose")


def test_pose_to_transform_carries_the_pose_header_and_child():
    T = np.eye(4)
    T[:3, :3] = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = [0.5, 1.5, 0.9]
    header = Header(frame_id="base_link")
    header.stamp.sec = 42
    t = pose_to_transform(matrix_to_pose(T), header, "camera_depth_optical_frame")
    assert t.header.frame_id == "base_link" and t.header.stamp.sec == 42
    assert t.child_frame_id == "camera_depth_optical_frame"
    back = pose_to_matrix(Pose(position=Point(x=t.transform.translation.x, y=t.transform.translation.y,
                                              z=t.transform.translation.z), orientation=t.transform.rotation))
    assert np.allclose(back, T)
