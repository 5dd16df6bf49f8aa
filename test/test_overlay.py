"""Tests of posesdf_ros.ros.overlay: the skeleton drawing and the frame/image pairing."""
import numpy as np

from posesdf_ros.ros.overlay import OverlayFrames, draw_skeleton, project
from posesdf_ros.skeleton import JOINT_NAMES

TOLERANCE = 0.02


def test_result_after_its_image_draws_at_once():
    frames = OverlayFrames(TOLERANCE)
    frames.add_image(1.00, "rgb@1.00")
    frames.add_frame(1.00)
    assert frames.add_result(1.00, "joints@1.00") == ([("rgb@1.00", "joints@1.00")], 0)


def test_result_before_its_image_waits_for_it():
    frames = OverlayFrames(TOLERANCE)
    frames.add_frame(1.00)
    assert frames.add_result(1.00, "joints") == ([], 0)
    assert frames.add_image(0.90, "too early") == ([], 0)
    assert frames.add_image(1.01, "rgb") == ([("rgb", "joints")], 0)
    assert frames.add_image(1.02, "later") == ([], 0)       # drawn once only


def test_pinned_image_survives_a_slow_estimate():
    """Newer images fill the buffer while the worker runs; the frame keeps the image it had."""
    frames = OverlayFrames(TOLERANCE, images=3)
    frames.add_image(1.00, "rgb@1.00")
    frames.add_frame(1.00)
    for k in range(1, 10):
        assert frames.add_image(1.00 + k / 15, f"rgb@{k}") == ([], 0)
    assert frames.add_result(1.00, "joints") == ([("rgb@1.00", "joints")], 0)


def test_result_without_image_is_given_up_once_newer_images_come():
    frames = OverlayFrames(TOLERANCE)
    frames.add_frame(1.00)
    assert frames.add_result(1.00, "joints") == ([], 0)
    assert frames.add_image(1.50, "much later") == ([], 1)
    assert frames.add_image(1.00, "stale") == ([], 0)       # the result is gone


def test_only_the_latest_frames_are_kept():
    frames = OverlayFrames(TOLERANCE, frames=2)
    for stamp in (1.0, 2.0, 3.0):
        frames.add_frame(stamp)
    frames.add_image(1.0, "rgb@1")
    frames.add_image(3.0, "rgb@3")
    # Frame 1.0 fell out of the map before its image came: its late result finds the buffered image.
    assert frames.add_result(3.0, "joints@3") == ([("rgb@3", "joints@3")], 0)
    assert frames.add_result(1.0, "joints@1") == ([("rgb@1", "joints@1")], 0)


def test_skeleton_is_drawn_where_the_joints_project():
    K = np.array([[300.0, 0, 160], [0, 300.0, 120], [0, 0, 1]])
    camera_to_gravity = np.eye(4)
    joints = np.zeros((len(JOINT_NAMES), 3))
    joints[:, 2] = 2.0                       # two metres in front of the camera (optical z)
    joints[:, 0] = np.linspace(-0.3, 0.3, len(JOINT_NAMES))
    rgb = np.zeros((240, 320, 3), np.uint8)
    drawn = draw_skeleton(rgb, joints, camera_to_gravity, K)
    pixels = project(joints, camera_to_gravity, K)
    for u, v in np.round(pixels).astype(int):
        assert drawn[v, u].any()
    assert not drawn[5, 5].any()
    assert not rgb.any()                     # a copy is drawn on
