"""The product engine (`data.domain`), its sensor models and the shifted validation generator (`data.shifted`).

Cheap: parameter draws without rendering, sensor models on synthetic depth
images, and one product and one shifted scene rendered at a small size.
"""
import json
from dataclasses import replace

import numpy as np
import pytest

from posesdf_ros.data import domain, shifted
from posesdf_ros.data.camera import (
    LABEL_FLOOR,
    LABEL_LOWER_LIMB,
    ActiveStereoNoise,
    Intrinsics,
    StructuredLightNoise,
    SurfaceInfo,
    ToFNoise,
    apply_depth_noise,
)
from posesdf_ros.data.dataset import SCENE_SPLITS, SampleKey, build_dataset
from posesdf_ros.data.gait import CURVE_ANGLES, CurveGaitModel, CurveGaitParams, GaitStyle
from posesdf_ros.skeleton import JOINT_INDEX

P = domain.PRODUCT
DRAWS = 200


def _inside(value, bounds, tol=1e-9):
    return bounds[0] - tol <= value <= bounds[1] + tol


def test_product_bodies_and_gaits_honour_the_ranges():
    rng = np.random.default_rng(0)
    seen = {"style": set(), "family": set(), "condition": set(), "arm_mode": set(), "knee_correction": set()}
    for i in range(DRAWS):
        build = domain.sample_build("train", i)
        for k, r in P.phenotype.items():
            assert _inside(build[k], r), k
        assert _inside(build["stature_m"], P.stature_m) and _inside(build["step_width_m"], P.step_width_m)
        params, summary = domain.sample_gait(rng, build)
        assert _inside(summary["speed_mps"], P.speed_mps) and _inside(summary["cadence_spm"], P.cadence_spm, 1e-6)
        # The style's speed, unless the cadence had to be clipped (then the speed is what the bound gives).
        assert _inside(summary["speed_mps"], P.style_speed_mps[summary["style"]], 1e-9) or \
            min(abs(summary["cadence_spm"] - c) for c in P.cadence_spm) < 1e-6
        assert params.cadence_spm == summary["cadence_spm"]
        assert _inside(summary["stride_scale"], P.style_stride_scale[summary["style"]])
        assert _inside(params.condition_offset_deg, P.condition_offset_deg[params.condition])
        st, arms = params.style, params.arms
        if st.name == "stiff_knee":
            assert _inside(st.knee_max_deg, P.stiff_knee_peak_deg)
        if st.name == "crouch":
            assert _inside(st.knee_min_deg, P.crouch_knee_min_deg) and _inside(st.hip_offset_deg,
                                                                                P.crouch_hip_offset_deg)
        if st.name == "asymmetric":
            assert _inside(st.right_scale, P.asymmetric_right_scale)
            assert _inside(st.right_delay, P.asymmetric_right_delay)
        for values, r in ((arms.flexion_deg, P.arm_flexion_deg), (arms.abduction_deg, P.arm_abduction_deg),
                          (arms.elbow_deg, P.arm_elbow_deg), (arms.swing_deg, P.arm_swing_deg)):
            assert all(_inside(v, r) for v in values)
        if summary["arm_mode"] == "still":
            assert arms.swing_deg == (0.0, 0.0)
        for key in ("style", "family", "arm_mode"):
            seen[key].add(summary[key])
        seen["condition"].add(params.condition)
        seen["knee_correction"].add(build["knee_correction"])
    assert seen["style"] == set(domain.STYLES) and seen["family"] == set(P.families)
    assert seen["condition"] == set(P.conditions) and seen["arm_mode"] == set(domain.ARM_MODES)
    assert seen["knee_correction"] == {0.0, 1.0}


def test_styles_shape_the_knee_as_documented():
    rng = np.random.default_rng(3)
    build = domain.sample_build("train", 0)
    phase = np.linspace(0, 1, 200, endpoint=False)
    for style, check in (("stiff_knee", lambda k, st: abs(k.max() - st.knee_max_deg) < 0.5),
                         ("crouch", lambda k, st: k.min() >= st.knee_min_deg - 0.5 and k.min() >= 19.5),
                         ("shuffling", lambda k, st: k.max() <= P.shuffling_knee_peak_deg[1] + 0.5)):
        for family in P.families:
            params, _ = domain.sample_gait(rng, build, style=style, family=family)
            knee = np.rad2deg(CurveGaitModel(params).angles(phase)["left_knee_flexion"])
            assert check(knee, params.style), (style, family)
    # Asymmetric: the right leg's hip oscillates less than the left.
    params, _ = domain.sample_gait(rng, build, style="asymmetric")
    a = CurveGaitModel(params).angles(phase)
    assert np.ptp(a["right_hip_flexion"]) < np.ptp(a["left_hip_flexion"])


def test_the_fourier_family_is_not_the_spline():
    rng = np.random.default_rng(4)
    curves = {k: domain.fourier_coefficients(rng, k) for k in CURVE_ANGLES}
    four = CurveGaitModel(CurveGaitParams(family="fourier", curves=curves))
    spline = CurveGaitModel(CurveGaitParams(family="spline", curves={k: [1.0] for k in CURVE_ANGLES}))
    phase = np.linspace(0, 1, 100, endpoint=False)
    knee_f, knee_s = (np.rad2deg(m.angles(phase)["left_knee_flexion"]) for m in (four, spline))
    assert 45 < knee_f.max() < 80 and np.abs(knee_f - knee_s).max() > 2.0


def test_product_cameras_honour_the_ranges():
    rng = np.random.default_rng(1)
    presets = set()
    for _ in range(DRAWS):
        preset = domain.sample_preset(rng)
        presets.add(preset.name)
        cam = domain.sample_camera(rng, 135.0, preset)
        assert _inside(cam.height_m, P.camera_height_m) and _inside(cam.distance_m, P.camera_distance_m)
        assert _inside(np.rad2deg(cam.pitch_rad), P.camera_pitch_deg, 1e-6)
        assert _inside(cam.azimuth_deg - 135.0, P.azimuth_jitter_deg)
        # The subject is within the sensor's range (the slant range to its feet, with the margin).
        assert np.hypot(cam.distance_m, cam.height_m) <= max(preset.max_range_m - P.range_margin_m,
                                                              np.hypot(P.camera_distance_m[0], cam.height_m)) + 1e-6
        K = preset.intrinsics()
        assert 424 * 240 <= K.width * K.height <= 1280 * 720
        noise = domain.sample_noise(rng, preset)
        assert (noise == "realistic") == (preset.sensor == "realistic")
    assert presets == set(P.camera_presets)


def test_presets_take_fx_fy_from_the_published_fov():
    d435 = domain.CAMERA_PRESETS["d435_848x480"].intrinsics()
    assert d435.fx == pytest.approx(424 / np.tan(np.deg2rad(43.5)))
    assert d435.fy == pytest.approx(240 / np.tan(np.deg2rad(29)))
    kinect = domain.CAMERA_PRESETS["azure_kinect_nfov_640x576"].intrinsics()
    assert (kinect.width, kinect.height) == (640, 576) and kinect.fx == pytest.approx(320 / np.tan(np.deg2rad(37.5)))
    assert domain.CAMERA_PRESETS["spec_d435_640x360"].intrinsics() == Intrinsics()


def test_near_clutter_stands_close_to_the_legs_without_touching_them():
    rng = np.random.default_rng(2)
    legs = np.column_stack([rng.normal(2.0, 0.15, 500), rng.normal(0.0, 0.1, 500)])
    for _ in range(20):
        for box in domain.sample_near_clutter(rng, legs, count=2):
            corners = box.mesh()[0][:4, :2]
            local = (legs - box.centre_xy) @ np.array([[np.cos(box.yaw), -np.sin(box.yaw)],
                                                       [np.sin(box.yaw), np.cos(box.yaw)]])
            gap = np.linalg.norm(np.maximum(np.abs(local) - 0.5 * np.array(box.size[:2]), 0), axis=1).min()
            assert 0.02 <= gap <= P.near_gap_m[1] + 1e-6, gap
            assert len(corners) == 4


def _wall(depth_m=2.0, shape=(120, 200)):
    depth = np.full(shape, depth_m, np.float32)
    labels = np.full(shape, LABEL_FLOOR, np.uint8)
    return depth, labels


def _surface(depth, reflectance=0.8, cos=1.0):
    return SurfaceInfo(np.full(depth.shape, reflectance), np.full(depth.shape, cos))


def test_active_stereo_quantises_disparity_and_its_error_grows_with_z_squared():
    K = domain.CAMERA_PRESETS["d435_848x480"].intrinsics()
    model = ActiveStereoNoise(dropout=0.0, min_signal=0.0)
    errors = {}
    for z in (1.0, 3.0):
        depth, labels = _wall(z)
        noisy, _ = apply_depth_noise(depth, labels, np.random.default_rng(0), model, _surface(depth), K)
        valid = np.isfinite(noisy)
        disparity = K.fx * model.baseline_m / noisy[valid]
        steps = disparity / model.disparity_step_px
        assert np.allclose(steps, np.round(steps), atol=1e-3)        # quantised in disparity
        errors[z] = np.std(noisy[valid] - z)
    assert 9 * 0.6 < errors[3.0] / errors[1.0] < 9 * 1.5              # ~ z^2
    expected = 9.0 * model.subpixel_sigma_px / (K.fx * model.baseline_m)
    assert errors[3.0] == pytest.approx(expected, rel=0.35)


def test_active_stereo_and_tof_make_holes_on_dark_surfaces_and_at_edges():
    K = Intrinsics(200, 120, 150.0, 150.0)
    depth, labels = _wall(3.0)
    depth[:, 80:120] = 1.5                                            # a near object: edges and occlusion
    labels[:, 80:120] = LABEL_LOWER_LIMB
    reflect = np.full(depth.shape, 0.8)
    reflect[:60] = 0.02                                               # dark upper half
    surface = SurfaceInfo(reflect, np.ones(depth.shape))
    for model in (ActiveStereoNoise(), ToFNoise(max_range_m=5.0)):
        noisy, new_labels = apply_depth_noise(depth, labels, np.random.default_rng(0), model, surface, K)
        holes = ~np.isfinite(noisy)
        assert holes[:60, :70].mean() > 0.9 and holes[60:].mean() < 0.3, model.name
        assert (new_labels[holes] == 0).all()
        if model.name == "active_stereo":
            # The right imager cannot see a band left of the near object: fb (1/1.5 - 1/3) = 5 px wide.
            band = int(150 * model.baseline_m * (1 / 1.5 - 1 / 3.0))
            assert holes[60:, 80 - band:80].mean() > 0.9 and holes[60:, 120:125].mean() < 0.5
    # ToF: beyond its range nothing, and sigma grows with range.
    far, labels = _wall(4.5)
    noisy, _ = apply_depth_noise(far, labels, np.random.default_rng(0), ToFNoise(), _surface(far), K)
    assert not np.isfinite(noisy).any()
    spread = {}
    for z in (1.0, 3.0):
        d, lab = _wall(z)
        n, _ = apply_depth_noise(d, lab, np.random.default_rng(0), ToFNoise(dropout=0.0), _surface(d), K)
        spread[z] = np.nanstd(n[10:-10, 10:-10])
    assert spread[3.0] > 2 * spread[1.0]
    with pytest.raises(ValueError, match="surface"):
        apply_depth_noise(depth, labels, np.random.default_rng(0), ToFNoise())


def test_structured_light_shadows_the_other_side_and_steps_coarser():
    K = Intrinsics(200, 120, 150.0, 150.0)
    depth, labels = _wall(3.0)
    depth[:, 80:120] = 1.5
    model = StructuredLightNoise()
    noisy, _ = apply_depth_noise(depth, labels, np.random.default_rng(0), model, _surface(depth), K)
    holes = ~np.isfinite(noisy)
    band = int(150 * model.baseline_m * (1 / 1.5 - 1 / 3.0))
    assert holes[:, 121:120 + band].mean() > 0.9 and holes[:, 70:79].mean() < 0.1   # shadow right of it only
    steps = K.fx * model.baseline_m / noisy[np.isfinite(noisy)] / model.disparity_step_px
    assert np.allclose(steps, np.round(steps), atol=1e-3)


def test_product_and_shifted_samples_are_deterministic_scenes_of_the_test_format(body_model, monkeypatch):
    from test_dataset_cli import SPEC_TEST_KEYS

    small = {n: replace(p, width=p.width // 4, height=p.height // 4) for n, p in domain.CAMERA_PRESETS.items()}
    monkeypatch.setattr(domain, "CAMERA_PRESETS", small)
    key = SampleKey("test", 0, "supination", "V2")
    arrays, entry = domain.make_product_scene_sample(body_model, key, 1)
    again, _ = domain.make_product_scene_sample(body_model, key, 1)
    assert all(arrays[k].tobytes() == again[k].tobytes() for k in arrays)
    shifted_small = replace(shifted.SHIFTED, cameras={n: (c[0] // 4, c[1] // 4, *c[2:])
                                                      for n, c in shifted.SHIFTED.cameras.items()})
    s_arrays, s_entry = shifted.make_shifted_sample(body_model, SampleKey("shifted", 0, "supination", "V2"), 3,
                                                    shifted_small)
    for a, e in ((arrays, entry), (s_arrays, s_entry)):
        for k, (shape, dtype) in SPEC_TEST_KEYS.items():
            assert a[k].dtype == dtype and a[k].ndim == len(shape), k
        assert len(a["points"]) == len(a["leg_mask"]) == e["points"] and a["leg_mask"].sum() == e["leg_points"]
        assert str(a["condition"]) == "supination" and str(a["view"]) == "V2"
        assert a["depth"].shape == (e["intrinsics"]["height"], e["intrinsics"]["width"])
        legs = a["points"][a["leg_mask"]]
        assert len(legs) >= domain.MIN_LEG_POINTS or e["redraws"] == domain.MAX_REDRAWS
        assert np.all(legs[:, 2] < a["joints"][JOINT_INDEX["pelvis"], 2] + 0.10 + 1e-5)
        json.dumps(e)                                                  # the manifest entry is JSON
    assert entry["subject"].startswith("product-test-") and s_entry["subject"].startswith("shifted-")
    assert entry["camera_preset"] in domain.CAMERA_PRESETS and entry["noise"] in ("tof", "active_stereo", "realistic")
    assert s_entry["noise"] == "structured_light" and s_entry["camera_preset"] not in domain.CAMERA_PRESETS
    assert s_entry["gait"]["family"] not in P.families
    # The shifted camera is rolled: its optical x axis leaves the horizontal plane.
    assert abs(s_arrays["camera_to_gravity"][2, 0]) == pytest.approx(abs(np.sin(np.deg2rad(
        s_entry["camera"]["roll_deg"]))) * np.cos(np.deg2rad(s_entry["camera"]["pitch_deg"])), abs=1e-6)


def test_product_train_sample_and_profiles_do_not_mix(tmp_path, body_model, train_build):
    out = tmp_path / "product"
    manifest = build_dataset(out, "train", limit=1, progress=False, body_model=body_model, profile="product")
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["profile"] == "product" and on_disk["ranges"]["speed_mps"] == list(P.speed_mps)
    entry = manifest["samples"][0]
    assert entry["subject"] == "product-train-0000" and entry["gait_summary"]["style"] in domain.STYLES
    with np.load(out / entry["file"]) as z:
        assert z["points"].shape == (50_000, 3) and z["joint_points"].shape == (9 * 8000, 3)
        assert str(z["condition"]) == entry["condition"]
    # A paper folder is not completed with product samples, nor the other way round.
    with pytest.raises(SystemExit, match="paper build"):
        build_dataset(train_build, "train", limit=1, progress=False, body_model=body_model, profile="product")
    with pytest.raises(SystemExit, match="product build"):
        build_dataset(out, "train", limit=1, progress=False, body_model=body_model)
    with pytest.raises(ValueError, match="own generator"):
        build_dataset(tmp_path / "s", "shifted", limit=1, progress=False, body_model=body_model, profile="product")
    assert json.loads((train_build / "manifest.json").read_text())["profile"] == "paper"
    # The shifted split is a scene split `posesdf eval` reads.
    from posesdf_ros.evaluation.benchmark import select_samples

    shifted_build = build_dataset(tmp_path / "shifted", "shifted", protocol="CV", limit=1, progress=False,
                                  body_model=body_model)
    assert shifted_build["profile"] == "shifted" and shifted_build["seed"] == 3 and "shifted" in SCENE_SPLITS
    assert len(select_samples(tmp_path / "shifted", "CV")) == 5


def test_the_knee_and_step_width_corrections_are_what_the_build_asks(body_model):
    from posesdf_ros.skeleton import knee_flexion

    build = domain.sample_build("train", 1)
    gait = CurveGaitModel(CurveGaitParams(curves={k: [0.0] for k in CURVE_ANGLES},
                                          style=GaitStyle(knee_min_deg=0.0, knee_max_deg=0.0),
                                          arms=replace(CurveGaitParams().arms, swing_deg=(0.0, 0.0))))
    zero = gait.angles(np.array([0.0]))
    for knee_correction, width in ((1.0, 0.05), (0.0, 0.28)):
        b = dict(build, knee_correction=knee_correction, step_width_m=width)
        joints = body_model.pose(b, zero).joints[0]
        spacing = abs(joints[JOINT_INDEX["left_ankle"], 1] - joints[JOINT_INDEX["right_ankle"], 1])
        assert spacing == pytest.approx(width, abs=0.02)
        bend = np.rad2deg(knee_flexion(joints, "left"))
        assert (bend < 1.5) if knee_correction else (bend > 4.0)


def test_the_shifted_sensor_ablation_keeps_the_scene_and_drops_only_its_half(body_model, tmp_path):
    cameras = {n: (c[0] // 4, c[1] // 4, *c[2:]) for n, c in shifted.SHIFTED.cameras.items()}
    small = replace(shifted.SHIFTED, cameras=cameras)
    key = SampleKey("shifted", 0, "normal", "V3")
    depth, joints = {}, {}
    for name, parts in shifted.SENSOR_PARTS.items():
        arrays, entry = shifted.make_shifted_sample(body_model, key, 3, replace(small, **parts))
        assert entry["noise_model"]["depth_error"] == parts["sensor_depth_error"]
        assert entry["noise_model"]["holes"] == parts["sensor_holes"]
        depth[name], joints[name] = arrays["depth"], arrays["joints"].tobytes()
        near, far = entry["noise_model"]["min_range_m"], entry["noise_model"]["max_range_m"]
    assert len(set(joints.values())) == 1
    exact, full = depth["none"], depth["full"]
    # Holes only: the full model's holes, the rendered depth elsewhere; the range limits are applied to
    # exact depth, so holes differ from the full model's only at pixels near them.
    differ = np.isnan(depth["holes"]) != np.isnan(full)
    assert differ.mean() < 0.01
    assert np.all((np.abs(exact[differ] - near) < 0.2) | (np.abs(exact[differ] - far) < 0.2))
    seen = np.isfinite(depth["holes"])
    assert np.array_equal(depth["holes"][seen], exact[seen])
    # Depth error only: no holes beyond the render's, the full model's depth wherever that has one.
    assert np.array_equal(np.isnan(depth["depth-error"]), np.isnan(exact))
    seen = np.isfinite(full)
    assert np.array_equal(depth["depth-error"][seen], full[seen])
    assert np.isnan(full).sum() > np.isnan(exact).sum() and np.abs(full - exact)[seen].max() > 0.005
    # Builds record the ablation and are not completed with another.
    build_dataset(tmp_path / "s", "shifted", protocol="CV", limit=1, progress=False, body_model=body_model,
                  sensor="holes")
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["sensor"] == "holes"
    with pytest.raises(SystemExit, match="--sensor holes"):
        build_dataset(tmp_path / "s", "shifted", protocol="CV", limit=1, progress=False, body_model=body_model)
    with pytest.raises(ValueError, match="shifted split"):
        build_dataset(tmp_path / "t", "test", limit=1, progress=False, body_model=body_model, sensor="none")
