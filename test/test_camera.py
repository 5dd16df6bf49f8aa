import numpy as np
import pytest

from posesdf_ros.data.body import sample_phenotype
from posesdf_ros.data.camera import LABEL_FLOOR, LABEL_LOWER_LIMB, apply_depth_noise
from posesdf_ros.data.gait import GaitModel, GaitParams
from posesdf_ros.data.scene import VIEWS, Box, CameraSetup, WalkingSubject, render_scene
from posesdf_ros.skeleton import JOINT_INDEX


def _render(body_model, view, noise="clean", clutter=(), seed=0, phase=0.0, distance=2.5):
    camera = CameraSetup(azimuth_deg=VIEWS[view], distance_m=distance, height_m=0.9, aim_height_m=0.5)
    walker = WalkingSubject(body_model, sample_phenotype("test", seed), GaitModel(GaitParams()), camera,
                            phase0=phase)
    body, place = walker.poses(np.zeros(1))
    frame, verts, joints = render_scene(body, 0, place[0], camera, list(clutter), np.random.default_rng(seed),
                                        noise, body_model.lower_limb_face)
    return frame, joints


def test_organised_cloud_is_nan_exactly_where_depth_is_invalid(body_model):
    frame, _ = _render(body_model, "V1", noise="realistic")
    cloud = frame.organised_cloud()
    assert cloud.shape == (360, 640, 3) and cloud.dtype == np.float32
    invalid = ~np.isfinite(frame.depth)
    assert invalid.any() and np.isnan(cloud[invalid]).all() and np.isfinite(cloud[~invalid]).all()
    pts, labels = frame.points_gravity()
    assert len(pts) == (~invalid).sum() and np.isfinite(pts).all()
    # The floor is at z = 0 in the gravity frame (clean profile: exactly).
    clean, _ = _render(body_model, "V1")
    pts, labels = clean.points_gravity()
    assert np.abs(pts[labels == LABEL_FLOOR, 2]).max() < 1e-4


def test_realistic_noise_matches_the_spec_model():
    rng = np.random.default_rng(0)
    depth = np.full((200, 300), 2.0, np.float32)           # a flat wall 2 m away
    labels = np.full(depth.shape, LABEL_FLOOR, np.uint8)
    noisy, _ = apply_depth_noise(depth, labels, rng, "realistic")
    valid = np.isfinite(noisy)
    assert 0.015 < 1 - valid.mean() < 0.025                   # ~2 % dropouts
    sigma = 0.0012 + 0.0019 * (2.0 - 0.4) ** 2
    assert np.std(noisy[valid] - 2.0) == pytest.approx(np.sqrt(sigma ** 2 + 0.001 ** 2 / 12), rel=0.1)
    assert np.allclose(noisy[valid] * 1000, np.round(noisy[valid] * 1000), atol=1e-3)   # 1 mm steps
    clean, _ = apply_depth_noise(depth, labels, rng, "clean")
    assert np.array_equal(clean, depth)
    with pytest.raises(ValueError, match="noise profile"):
        apply_depth_noise(depth, labels, rng, "blurry")


def test_flying_pixels_appear_at_silhouette_edges():
    depth = np.full((100, 100), 4.0, np.float32)
    depth[:, :50] = 2.0
    noisy, labels = apply_depth_noise(depth, np.ones_like(depth, np.uint8), np.random.default_rng(1), "realistic")
    between = np.isfinite(noisy) & (noisy > 2.2) & (noisy < 3.8)
    assert between.any() and np.all(np.abs(np.argwhere(between)[:, 1] - 50) <= 1)
    assert (labels[between] == 0).all()


@pytest.mark.parametrize("view,near,far", [("V2", "left", "right"), ("V5", "right", "left")])
def test_a_lateral_view_sees_the_near_leg_more_than_the_far_one(body_model, view, near, far):
    counts = {near: 0, far: 0}
    for seed, phase in ((0, 0.3), (1, 0.0), (2, 0.8)):
        frame, joints = _render(body_model, view, seed=seed, phase=phase)
        pts, labels = frame.points_gravity()
        leg = pts[(labels == LABEL_LOWER_LIMB) & (pts[:, 2] < joints[0, 2])]
        d = {s: np.min([_segment_distance(leg, joints[JOINT_INDEX[f"{s}_{a}"]], joints[JOINT_INDEX[f"{s}_{b}"]])
                        for a, b in (("hip", "knee"), ("knee", "ankle"), ("ankle", "foot"))], axis=0)
             for s in counts}
        for s in counts:
            counts[s] += int((d[s] < d[near if s == far else far]).sum())
    assert counts[near] > 1.3 * counts[far]


def _segment_distance(p, a, b):
    t = np.clip((p - a) @ (b - a) / np.dot(b - a, b - a), 0, 1)
    return np.linalg.norm(p - (a + t[:, None] * (b - a)), axis=1)


def test_views_put_the_camera_at_the_requested_azimuth(body_model):
    for view, azimuth in VIEWS.items():
        camera = CameraSetup(azimuth_deg=azimuth, lateral_offset=0.1)
        walker = WalkingSubject(body_model, sample_phenotype("test", 0), GaitModel(GaitParams()), camera)
        _, place = walker.poses(np.zeros(1))
        facing = place[0, :2, 0]
        to_camera = camera.camera_to_gravity()[:2, 3] - place[0, :2, 3]
        got = np.rad2deg(np.arctan2(np.cross(facing, to_camera), facing @ to_camera)) % 360
        assert got == pytest.approx(azimuth % 360, abs=1e-6), view


def test_clutter_is_rendered_and_labelled(body_model):
    frame, _ = _render(body_model, "V1", clutter=[Box((2.0, 1.0), (0.5, 0.5, 0.8), colour=(0, 200, 0))])
    assert (frame.labels == 2).sum() > 100


def test_overground_walking_moves_the_subject_at_a_plausible_speed(body_model):
    camera = CameraSetup(azimuth_deg=90.0)
    walker = WalkingSubject(body_model, sample_phenotype("test", 0), GaitModel(GaitParams()), camera,
                            mode="overground", duration_s=2.0)
    _, place = walker.poses(np.array([0.0, 2.0]))
    travelled = np.linalg.norm(place[1, :2, 3] - place[0, :2, 3])
    assert 0.8 < walker.speed_mps < 1.8 and travelled == pytest.approx(2.0 * walker.speed_mps)
    # Spec: stride length about 0.75 x stature; our foot-locked kinematics give 0.6-0.7 (README: limits).
    assert 0.55 < walker.stride_length_m / walker.build["stature_m"] < 0.9
