import numpy as np

from posesdf_ros import BONES, JOINT_NAMES
from posesdf_ros.skeleton import ANNY_JOINT_BONES, bone_lengths, knee_flexion, side_joints


def test_joint_order_is_the_spec_order():
    assert JOINT_NAMES == ("pelvis", "left_hip", "left_knee", "left_ankle", "left_foot",
                           "right_hip", "right_knee", "right_ankle", "right_foot")
    assert list(ANNY_JOINT_BONES) == list(JOINT_NAMES)
    assert ANNY_JOINT_BONES["left_foot"] == "toe3-1.L"


def test_bones_form_two_chains_from_the_pelvis():
    assert len(BONES) == 8
    assert {b[0] for b in BONES if b[0] == 0} == {0}
    assert side_joints("left") == (1, 2, 3, 4)
    assert side_joints("right") == (5, 6, 7, 8)


def test_knee_flexion_of_a_straight_and_a_right_angle_leg():
    j = np.zeros((9, 3))
    j[1], j[2], j[3] = [0, 0.1, 1.0], [0, 0.1, 0.5], [0, 0.1, 0.0]
    assert np.isclose(knee_flexion(j, "left"), 0.0, atol=1e-6)
    j[3] = [-0.5, 0.1, 0.5]
    assert np.isclose(np.rad2deg(knee_flexion(j, "left")), 90.0)
    assert bone_lengths(j).shape == (8,)
