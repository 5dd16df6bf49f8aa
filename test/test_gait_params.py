"""Gait angles, events and parameters against the data engine's walkers (posesdf_ros.gait)."""
import json

import numpy as np
import pytest

from posesdf_ros.data.body import sample_phenotype
from posesdf_ros.data.gait import CONDITIONS, GaitModel, normal_curve, sample_gait_params
from posesdf_ros.data.walker import draw_walker
from posesdf_ros.evaluation.gait import compare, event_errors
from posesdf_ros.gait.angles import ANGLE_NAMES, joint_angles
from posesdf_ros.gait.parameters import GaitAnalyser, gait_parameters
from posesdf_ros.gait.truth import true_events, true_parameters
from posesdf_ros.skeleton import JOINT_INDEX

FPS = 15.0


def walk(body_model, index, condition="normal", mode="treadmill", cadence=None, cycles=3.0, fps=FPS, view="V2"):
    """A generated walk: (stamps (T,), joints (T, 9, 3) gravity frame, WalkingSubject)."""
    walker = draw_walker(np.random.default_rng([77, index]), condition, body=index, view=view, mode=mode,
                         cycles=cycles, cadence_spm=cadence or 0.0, body_model=body_model)
    stamps = np.arange(0.0, walker.subject.duration_s, 1.0 / fps)
    return stamps, walker.joints(stamps), walker.subject


# Several bodies, all conditions, both modes, cadences across the spec's 95-125 steps/min.
CASES = [(0, "normal", "treadmill", 95), (1, "supination", "overground", 110), (2, "pronation", "treadmill", 125),
         (3, "in_toeing", "overground", 100), (4, "out_toeing", "treadmill", 118), (5, "normal", "overground", 122)]


def test_joint_angles_follow_the_generator(body_model):
    phase = np.linspace(0.0, 1.0, 40, endpoint=False)
    for index, condition in enumerate(CONDITIONS):
        gait = GaitModel(sample_gait_params(np.random.default_rng(index), condition))
        angles = gait.angles(phase)
        measured = joint_angles(body_model.pose(sample_phenotype("test", index), angles).joints)
        assert tuple(measured) == ANGLE_NAMES
        for name in ANGLE_NAMES:
            diff = np.rad2deg(measured[name] - angles[name])
            # The shape of every curve is the generator's; hip angles sit on anny's rest offsets.
            assert diff.std() < 0.5, name
            bound = {"knee_flexion": 0.5, "ankle_dorsiflexion": 3.5, "hip_flexion": 6.0, "hip_adduction": 4.0}
            assert abs(diff.mean()) < bound[name.split("_", 1)[1]], name


def test_joint_angles_are_vectorised_and_check_their_input(body_model):
    _, joints, _ = walk(body_model, 0)
    batched = joint_angles(np.stack([joints, joints[::-1]]))
    single = joint_angles(joints)
    assert batched["left_knee_flexion"].shape == (2, len(joints))
    np.testing.assert_allclose(batched["right_hip_flexion"][0], single["right_hip_flexion"])
    np.testing.assert_allclose(batched["right_hip_flexion"][1], single["right_hip_flexion"][::-1])
    with pytest.raises(ValueError, match="9, 3"):
        joint_angles(np.zeros((5, 8, 3)))


def test_true_heel_strikes_are_where_the_warped_curves_start(body_model):
    _, _, subject = walk(body_model, 7)
    params = subject.gait.params
    assert params.phase_warp[0] > 0.005          # a subject whose warp moves the events
    events = true_events(subject, 0.0, subject.duration_s)
    for side in ("left", "right"):
        times = events.heel_strike_s[side]
        assert len(times) >= 2
        knee = subject.gait.angles(subject.gait.phase_at(times, subject.phase0))[f"{side}_knee_flexion"]
        scale = params.amplitude["knee_flexion"] * (1.0 if side == "left" else 1.0 - params.asymmetry)
        np.testing.assert_allclose(knee, scale * normal_curve("knee_flexion", np.zeros(len(times))), atol=1e-6)
        np.testing.assert_allclose(np.diff(times), params.cycle_s, atol=1e-6)


def test_walking_speed_is_both_stance_ankles_travel_between_the_true_events(body_model):
    """The generator's speed is the mean over both legs of the stance ankle's backward travel relative
    to the pelvis from true heel strike to true toe off, over that time (so a leg-symmetric measurement
    reads it), and overground the subject moves at it."""
    asymmetric = 0
    for index, condition, mode, cadence in CASES:
        _, _, subject = walk(body_model, index, condition, mode, cadence)
        events = true_events(subject, 0.0, subject.duration_s)
        speeds = {}
        for side in ("left", "right"):
            heel_strike = events.heel_strike_s[side][0]
            toe_off = events.toe_off_s[side][events.toe_off_s[side] > heel_strike][0]
            body, transforms = subject.poses(np.array([heel_strike, toe_off]))
            joints = body.joints @ transforms[:, :3, :3].transpose(0, 2, 1) + transforms[:, None, :3, 3]
            forward = np.sum((joints[:, JOINT_INDEX[f"{side}_ankle"]] - joints[:, 0]) * transforms[:, :3, 0], axis=-1)
            speeds[side] = (forward[0] - forward[1]) / (toe_off - heel_strike)
        # The legs differ by the gait's asymmetry (the right leg's amplitudes are the smaller); the
        # generator's speed is their mean.
        if subject.gait.params.asymmetry > 0.03:
            asymmetric += 1
            assert speeds["left"] > speeds["right"] * 1.01, index
        assert subject.walking_speed_mps == pytest.approx(np.mean(list(speeds.values())), rel=1e-6)
        if mode == "overground":
            _, transforms = subject.poses(np.array([0.0, 1.0]))
            distance = np.linalg.norm(transforms[1, :2, 3] - transforms[0, :2, 3])
            assert distance == pytest.approx(subject.walking_speed_mps)
    assert asymmetric >= 2


@pytest.mark.parametrize("noise_mm", [0.0, 20.0])
def test_gait_events_land_on_the_right_frames(body_model, noise_mm):
    rng = np.random.default_rng(5)
    on_frame, count = 0, 0
    for index, condition, mode, cadence in CASES:
        stamps, joints, subject = walk(body_model, index, condition, mode, cadence)
        joints = joints + rng.normal(0.0, noise_mm / 1000.0, joints.shape)
        found = gait_parameters(stamps, joints).events
        truth = true_events(subject, 0.0, subject.duration_s)
        for kind, result in event_errors(found, truth, stamps, subject.gait.params.cycle_s).items():
            assert result["missed"] == 0, (index, kind)
            assert np.all(np.abs(result["frame_offsets"]) <= 1), (index, kind, result)
            on_frame += int(np.sum(np.asarray(result["frame_offsets"]) == 0))
            count += len(result["frame_offsets"])
    assert count >= 6 * 8
    # Measured on these walks: 78 % clean, 82 % at 20 mm (15 FPS, a frame is 6 to 8 % of a cycle).
    assert on_frame / count >= 0.7


def test_parameters_meet_the_issue_tolerances_on_clean_walks(body_model):
    stride_errors = []
    for index, condition, mode, cadence in CASES:
        stamps, joints, subject = walk(body_model, index, condition, mode, cadence)
        measured, truth = gait_parameters(stamps, joints), true_parameters(subject)
        assert measured.valid, measured.reason
        errors = compare(measured, truth)
        assert abs(errors["cadence_spm"]) <= 2.0
        assert np.all(np.abs(errors["peak_knee_flexion_deg"]) <= 5.0)
        assert abs(errors["stance_pct"]) <= 6.0
        assert abs(errors["step_width_mm"]) <= 30.0
        stride_errors.append(errors["stride_length_pct"])
    # Issue 6: stride length within 5 %. On these walks it is in all (worst 0.7 %, a treadmill walk); over
    # the 50 walks of `posesdf bench gait` on every overground walk but not on every treadmill one
    # (docs/gait.md), so single walks get 8 %.
    assert np.mean(np.abs(stride_errors)) <= 5.0
    assert np.max(np.abs(stride_errors)) <= 8.0


def test_overground_stride_length_is_the_distance_between_footprints(body_model):
    """Overground, stride length comes from the world positions at heel strike: within 2 % of the truth
    (the pelvis' travel per cycle) on every clean walk, feet sliding or not (asymmetric gaits)."""
    walks = [case for case in CASES if case[2] == "overground"] + [
        (6, "pronation", "overground", 98), (7, "out_toeing", "overground", 115), (8, "supination", "overground", 125)]
    for index, condition, mode, cadence in walks:
        stamps, joints, subject = walk(body_model, index, condition, mode, cadence)
        measured, truth = gait_parameters(stamps, joints), true_parameters(subject)
        assert measured.valid and measured.walking_mode == truth.walking_mode == "overground", index
        # The truth is the pelvis' travel per cycle.
        pelvis = joints[:, 0, :2]
        travel = np.linalg.norm(pelvis[-1] - pelvis[0]) / (stamps[-1] - stamps[0]) * subject.gait.params.cycle_s
        assert truth.stride_length_m == pytest.approx(travel, rel=1e-3)
        assert abs(measured.stride_length_m / truth.stride_length_m - 1.0) <= 0.02, (index, condition)
        assert abs(measured.walking_speed_mps / truth.walking_speed_mps - 1.0) <= 0.02, (index, condition)
        for side in ("left", "right"):
            assert abs(measured.step_length_m[side] / truth.step_length_m[side] - 1.0) <= 0.05, (index, side)
    # In place, the belt-speed method: a treadmill walk is recognised as one.
    stamps, joints, _ = walk(body_model, 0, "normal", "treadmill", 95)
    assert gait_parameters(stamps, joints).walking_mode == "treadmill"


def test_parameters_hold_under_joint_noise(body_model):
    rng = np.random.default_rng(11)
    for index, condition, mode, cadence in CASES[:3]:
        stamps, joints, subject = walk(body_model, index, condition, mode, cadence)
        noisy = gait_parameters(stamps, joints + rng.normal(0.0, 0.02, joints.shape))
        errors = compare(noisy, true_parameters(subject))
        assert noisy.valid, noisy.reason
        assert abs(errors["cadence_spm"]) <= 3.0
        assert abs(errors["stride_length_pct"]) <= 12.0


def test_to_dict_is_flat_strict_json_with_units(body_model):
    stamps, joints, _ = walk(body_model, 0)
    result = gait_parameters(stamps, joints)
    flat = result.to_dict()
    text = json.dumps(flat, allow_nan=False)
    for key in ("cadence_spm", "stride_length_m", "walking_speed_mps", "left_step_length_m",
                "right_stance_pct", "left_peak_knee_flexion_deg", "step_length_symmetry_pct"):
        assert isinstance(flat[key], float), key
    assert "curves_deg" not in flat
    curves = result.to_dict(curves=True)["curves_deg"]
    assert set(curves) == set(ANGLE_NAMES) and all(len(c) == 101 for c in curves.values())
    # An invalid result still serialises, with None for what was not measured.
    short = gait_parameters(stamps[:8], joints[:8]).to_dict()
    assert short["valid"] is False and short["cadence_spm"] is None
    assert json.loads(text)["valid"] is True


def test_bad_input_gives_a_reason_or_a_clear_error(body_model):
    stamps, joints, _ = walk(body_model, 1, cycles=3.5)
    too_short = gait_parameters(stamps[:10], joints[:10])
    assert not too_short.valid and "gait cycle" in too_short.reason
    one_frame = gait_parameters(stamps[:1], joints[:1])
    assert not one_frame.valid and "frames" in one_frame.reason
    all_nan = gait_parameters(stamps, np.full_like(joints, np.nan))
    assert not all_nan.valid
    # Standing still with joint noise is no gait (no foot travels 0.15 m).
    standing = joints[[10] * len(joints)] + np.random.default_rng(0).normal(0.0, 0.015, joints.shape)
    still = gait_parameters(stamps, standing)
    assert not still.valid and "no complete gait cycle" in still.reason
    with pytest.raises(ValueError, match="increasing"):
        gait_parameters(stamps[::-1], joints)
    with pytest.raises(ValueError, match="9, 3"):
        gait_parameters(stamps, joints[:, :8])

    # Scattered NaN frames (dropped detections) are bridged: the result barely moves.
    holes = joints.copy()
    holes[[5, 12, 13, 30, 41]] = np.nan
    clean, bridged = gait_parameters(stamps, joints), gait_parameters(stamps, holes)
    assert bridged.valid
    assert abs(bridged.cadence_spm - clean.cadence_spm) < 1.0
    assert abs(bridged.stride_length_m / clean.stride_length_m - 1.0) < 0.03
    # n_frames counts the frames measured, not those the bridging filled in.
    assert clean.n_frames == len(stamps) and bridged.n_frames == len(stamps) - 5
    # A long gap splits the walk; the longer part is analysed.
    gap = joints.copy()
    gap[:12] = np.nan
    split = gait_parameters(stamps, gap)
    assert split.n_frames == len(stamps) - 12


def test_a_stream_with_dropped_frames_pools_the_strides_between_its_gaps(body_model):
    """A live stream at 8 FPS that loses a third of a second every 2.5 s (the demo's estimator, busy
    with a mesh or a retry): every gap-free part's strides count, not only the longest part's."""
    stamps, joints, subject = walk(body_model, 2, "normal", "treadmill", 120, cycles=10.0, fps=8.0)
    lost = np.zeros(len(stamps), bool)
    for start in np.arange(2.0, stamps[-1], 2.5):
        lost |= (stamps >= start) & (stamps < start + 0.34)
    kept_stamps, kept = stamps[~lost], joints[~lost]
    pooled = gait_parameters(kept_stamps, kept)
    longest = max(np.split(np.arange(len(kept_stamps)), np.flatnonzero(np.diff(kept_stamps) > 0.25) + 1), key=len)
    alone = gait_parameters(kept_stamps[longest], kept[longest])
    truth = true_parameters(subject)
    assert pooled.valid and sum(pooled.n_strides.values()) >= 2 * sum(alone.n_strides.values()) > 0
    # Every frame counts but those of a part too short to analyse (under 5 frames: here the last one).
    assert len(kept_stamps) - 4 <= pooled.n_frames <= len(kept_stamps) and pooled.duration_s < stamps[-1]
    # As the whole walk without gaps reads, and within single walks' bounds of the truth (at 8 FPS the
    # treadmill stride reads 5.7 % long with or without the gaps).
    whole = gait_parameters(stamps, joints)
    assert pooled.cadence_spm == pytest.approx(whole.cadence_spm, rel=0.005)
    assert pooled.stride_length_m == pytest.approx(whole.stride_length_m, rel=0.01)
    errors = compare(pooled, truth)
    assert abs(errors["cadence_spm"]) <= 2.0 and abs(errors["stride_length_pct"]) <= 8.0
    assert set(np.round(pooled.events.heel_strike_s["left"], 6)) >= set(
        np.round(alone.events.heel_strike_s["left"], 6))


def test_swapped_legs_and_flipped_headings_in_single_frames_are_undone(body_model):
    stamps, joints, subject = walk(body_model, 3, "in_toeing", "overground", 105)
    clean = gait_parameters(stamps, joints)
    swapped = joints.copy()
    frames = [0, 7, 8, 20, 33]                    # the first frame too
    swapped[frames] = swapped[frames][:, [0, 5, 6, 7, 8, 1, 2, 3, 4]]
    flipped = joints.copy()
    pelvis = flipped[frames, :1]
    flipped[frames] = (flipped[frames] - pelvis) * np.array([-1.0, -1.0, 1.0]) + pelvis
    for broken in (swapped, flipped):
        result = gait_parameters(stamps, broken)
        assert result.valid
        assert result.cadence_spm == pytest.approx(clean.cadence_spm, abs=1e-6)
        assert result.stride_length_m == pytest.approx(clean.stride_length_m, abs=1e-6)
        assert result.peak_knee_flexion_deg == pytest.approx(clean.peak_knee_flexion_deg, abs=1e-6)


def test_analyser_follows_a_stream(body_model):
    stamps, joints, subject = walk(body_model, 2, cycles=6.0)
    analyser = GaitAnalyser(window_s=4.0)
    assert not analyser.parameters().valid
    for t, frame in zip(stamps, joints):
        analyser.update(t, frame)
    online = analyser.parameters()
    window = stamps >= stamps[-1] - 4.0
    batch = gait_parameters(stamps[window], joints[window])
    assert online.valid and online.cadence_spm == pytest.approx(batch.cadence_spm)
    assert abs(online.cadence_spm - subject.gait.params.cadence_spm) <= 2.0
    # Recomputed only every update_period_s (0.5 s) of stamp time.
    analyser.update(stamps[-1] + 0.1, joints[-1])
    assert analyser.parameters() is online
    # ... unless forced (a stream's end), and then only when a frame came in since.
    forced = analyser.parameters(force=True)
    in_window = stamps >= stamps[-1] + 0.1 - 4.0
    assert forced is not online and forced.n_frames == in_window.sum() + 1
    assert analyser.parameters(force=True) is forced
    analyser.update(stamps[-1] + 0.6, joints[-1])
    assert analyser.parameters() is not forced
    analyser.update(0.0, joints[0])          # time went back: a replayed bag starts over
    assert analyser.parameters().n_frames == 1
    with pytest.raises(ValueError):
        analyser.update(1.0, joints)


def test_bench_gait_command_writes_json(tmp_path, body_model):
    from posesdf_ros.cli import main

    out = tmp_path / "gait.json"
    assert main(["bench", "gait", "--subjects", "1", "--noise-mm", "0", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    summary = result["by_noise"]["0.0"]
    assert summary["valid"] == summary["sequences"] == len(CONDITIONS)
    assert summary["cadence_abs_spm"]["max"] <= 2.0
    assert result["settings"]["fps"] == 15.0 and "command" in result
