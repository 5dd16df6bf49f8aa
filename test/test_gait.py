import numpy as np
import pytest

from posesdf_ros.data.body import sample_phenotype
from posesdf_ros.data.gait import CONDITION_OFFSET_DEG, GaitModel, GaitParams, normal_curve, sample_gait_params
from posesdf_ros.skeleton import JOINT_INDEX, knee_flexion

PHASE = np.linspace(0, 1, 50, endpoint=False)


def test_normal_curves_hit_the_spec_landmarks():
    def deg(name, p):
        return float(np.rad2deg(normal_curve(name, np.array([p])))[0])

    assert 25 <= deg("hip_flexion", 0.0) <= 35
    assert -13 <= deg("hip_flexion", 0.5) <= -7
    assert 15 <= deg("knee_flexion", 0.15) <= 20
    assert 60 <= deg("knee_flexion", 0.73) <= 65
    assert -7 <= deg("ankle_dorsiflexion", 0.07) <= -5
    assert 8 <= deg("ankle_dorsiflexion", 0.45) <= 12
    assert -20 <= deg("ankle_dorsiflexion", 0.62) <= -15


@pytest.mark.parametrize("index", range(5))
def test_posed_knee_flexion_peaks_between_55_and_70_deg_in_swing(body_model, index):
    rng = np.random.default_rng(index)
    model = GaitModel(sample_gait_params(rng, "normal"))
    joints = body_model.pose(sample_phenotype("test", index), model.angles(PHASE)).joints
    flexion = np.rad2deg(knee_flexion(joints, "left"))
    assert 55 <= flexion.max() <= 70
    assert 0.6 <= PHASE[flexion.argmax()] <= 0.85          # the peak is in swing
    assert flexion[0] < 15                                   # nearly straight at heel strike


def test_right_leg_is_half_a_cycle_behind_the_left():
    a = GaitModel(GaitParams()).angles(np.array([0.1, 0.6]))
    assert np.isclose(a["left_knee_flexion"][0], a["right_knee_flexion"][1])


def _foot_progression_deg(joints, side):
    v = joints[:, JOINT_INDEX[f"{side}_foot"], :2] - joints[:, JOINT_INDEX[f"{side}_ankle"], :2]
    return np.rad2deg(np.arctan2(v[:, 1], v[:, 0]))


def _kabsch_angle_deg(a, b):
    a, b = a - a.mean(0), b - b.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    r = (u @ vt).T
    return np.rad2deg(np.arccos(np.clip((np.trace(r) - 1) / 2, -1, 1)))


@pytest.mark.parametrize("condition", ["in_toeing", "out_toeing"])
def test_toeing_turns_the_foot_progression_angle_by_the_spec_amount(body_model, condition):
    lo, hi = CONDITION_OFFSET_DEG[condition]
    for seed in range(3):
        params = sample_gait_params(np.random.default_rng(seed), condition)
        normal = GaitParams(**{**params.to_dict(), "condition": "normal"})
        phase = np.array([0.3])   # mid-stance, knee nearly straight
        build = sample_phenotype("test", seed)
        fpa = {c: _foot_progression_deg(body_model.pose(build, GaitModel(p).angles(phase)).joints, "left")[0]
               for c, p in (("abnormal", params), ("normal", normal))}
        # Left foot: internal rotation turns the toes to -y, i.e. a negative angle.
        change = fpa["normal"] - fpa["abnormal"] if condition == "in_toeing" else fpa["abnormal"] - fpa["normal"]
        assert lo - 3 <= change <= hi + 3, (seed, change, params.condition_offset_deg)
        assert abs(change - params.condition_offset_deg) < 3


@pytest.mark.parametrize("condition", ["supination", "pronation"])
def test_supination_and_pronation_roll_the_foot_by_the_spec_amount(body_model, condition):
    lo, hi = CONDITION_OFFSET_DEG[condition]
    foot = body_model.dominant_bone == body_model.bone_index["foot.L"]
    params = sample_gait_params(np.random.default_rng(7), condition)
    normal = GaitParams(**{**params.to_dict(), "condition": "normal"})
    build = sample_phenotype("test", 3)
    phase = np.array([0.3])
    verts = [body_model.pose(build, GaitModel(p).angles(phase)).vertices[0][foot] for p in (params, normal)]
    angle = _kabsch_angle_deg(*verts)
    assert lo - 1 <= angle <= hi + 1
    assert abs(angle - params.condition_offset_deg) < 1.0
    # Inversion (supination) turns the sole medially: the outer edge (+y for
    # the left foot) drops relative to the inner edge; eversion lifts it.
    lateral = verts[1][:, 1] > np.median(verts[1][:, 1])
    tilt = [v[lateral, 2].mean() - v[~lateral, 2].mean() for v in verts]
    assert (tilt[0] < tilt[1]) == (condition == "supination")


def test_sequence_timing_follows_cadence():
    params = GaitParams(cadence_spm=120.0)
    model = GaitModel(params)
    assert params.cycle_s == pytest.approx(1.0)
    assert model.phase_at(np.array([0.5]))[0] == pytest.approx(0.5)


def test_unknown_condition_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown gait condition"):
        GaitParams(condition="limping")
