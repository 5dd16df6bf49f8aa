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


def test_the_running_frame_keeps_its_image_through_a_slow_estimate():
    """Newer frames and images keep coming while the worker runs (newest-frame policy): the
    frame in the worker keeps the image it pinned, the frames it never took are retired."""
    frames = OverlayFrames(TOLERANCE, buffer_s=0.2)
    frames.add_image(1.00, "rgb@1.00")
    frames.add_frame(1.00)
    frames.start(1.00)
    for k in range(1, 40):
        stamp = 1.00 + k / 15
        assert frames.add_image(stamp, f"rgb@{k}") == ([], 0)
        frames.add_frame(stamp)
    assert frames.add_result(1.00, "joints") == ([("rgb@1.00", "joints")], 0)
    assert len(frames._frames) == 1          # only the newest submission is left


def test_images_of_the_last_seconds_are_kept():
    frames = OverlayFrames(TOLERANCE, buffer_s=2.0)
    for k in range(31):                      # 15 Hz for 2 s
        frames.add_image(k / 15, f"rgb@{k}")
    frames.add_frame(0.0)                    # a depth frame 2 s late finds its image
    assert frames.add_result(0.0, "joints") == ([("rgb@0", "joints")], 0)
    frames.add_image(3.5, "rgb@3.5")         # images older than 1.5 s drop out of the buffer
    frames.add_frame(1.0)
    assert frames.add_result(1.0, "joints") == ([], 1)


def test_a_new_start_retires_the_frame_before():
    """A frame the worker gave up on (no result) does not linger."""
    frames = OverlayFrames(TOLERANCE)
    frames.add_image(1.0, "rgb@1")
    frames.add_frame(1.0)
    frames.start(1.0)
    frames.add_image(2.0, "rgb@2")
    frames.add_frame(2.0)
    frames.start(2.0)
    assert list(frames._frames) == [2.0]
    assert frames.add_result(2.0, "joints@2") == ([("rgb@2", "joints@2")], 0)


def test_result_without_image_is_given_up_once_newer_images_come():
    frames = OverlayFrames(TOLERANCE)
    frames.add_frame(1.00)
    assert frames.add_result(1.00, "joints") == ([], 0)
    assert frames.add_image(1.50, "much later") == ([], 1)
    assert frames.add_image(1.00, "stale") == ([], 0)       # the result is gone


def test_only_a_few_results_wait_for_their_images():
    frames = OverlayFrames(TOLERANCE, waiting=2)
    given_up = 0
    for stamp in (1.0, 2.0, 3.0):
        frames.start(stamp)
        given_up += frames.add_result(stamp, f"joints@{stamp:g}")[1]
    assert given_up == 1 and list(frames._frames) == [2.0, 3.0]      # the oldest is given up
    assert frames.add_image(3.0, "rgb@3") == ([("rgb@3", "joints@3")], 1)   # and 2.0 is now too old
    assert not frames._frames


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
