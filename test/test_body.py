import numpy as np
import pytest

from posesdf_ros.data.body import STATURE_M, sample_phenotype
from posesdf_ros.data.dataset import TEST_BODIES, TRAIN_BODIES
from posesdf_ros.data.gait import GaitModel, GaitParams
from posesdf_ros.skeleton import JOINT_INDEX, bone_lengths


def _dist(j, a, b):
    return np.linalg.norm(j[..., JOINT_INDEX[a], :] - j[..., JOINT_INDEX[b], :], axis=-1)


def test_sides_are_the_subjects_own(body_model):
    j = body_model.pose(sample_phenotype("train", 0), GaitModel(GaitParams()).angles(np.array([0.25]))).joints[0]
    assert _dist(j, "left_knee", "left_hip") < _dist(j, "left_knee", "right_hip")
    assert _dist(j, "right_ankle", "right_knee") < _dist(j, "right_ankle", "left_knee")
    # Subject frame: y is the subject's left, x forward (toes ahead of ankles).
    assert j[JOINT_INDEX["left_hip"], 1] > j[JOINT_INDEX["right_hip"], 1]
    for side in ("left", "right"):
        assert j[JOINT_INDEX[f"{side}_foot"], 0] > j[JOINT_INDEX[f"{side}_ankle"], 0]


def test_bone_lengths_and_statures_are_human_for_every_body(body_model):
    # Anthropometric ranges for adults 1.45-2.0 m tall, generous by a few cm;
    # anny's oldest bodies have short thighs (hip joint set low), hence 0.28.
    ranges = {"pelvis-hip": (0.06, 0.17), "thigh": (0.28, 0.56), "shank": (0.31, 0.55), "foot": (0.09, 0.22)}
    builds = [sample_phenotype("train", i) for i in range(TRAIN_BODIES)] + \
             [sample_phenotype("test", i) for i in range(TEST_BODIES)]
    stand = GaitModel(GaitParams()).angles(np.full(len(builds), 0.3))
    posed = body_model.pose(builds, stand)
    lengths = bone_lengths(posed.joints)
    for name, cols in (("pelvis-hip", [0, 4]), ("thigh", [1, 5]), ("shank", [2, 6]), ("foot", [3, 7])):
        lo, hi = ranges[name]
        assert lengths[:, cols].min() >= lo and lengths[:, cols].max() <= hi, name
    # Left and right bones agree (anny is symmetric).
    assert np.allclose(lengths[:, :4], lengths[:, 4:], atol=0.005)
    statures = np.array([b["stature_m"] for b in builds])
    leg = (lengths[:, 1] + lengths[:, 2]) / statures      # hip to ankle, about 0.47 of stature
    assert leg.min() > 0.42 and leg.max() < 0.56
    assert statures.min() >= STATURE_M[0] and statures.max() <= STATURE_M[1]
    assert posed.vertices[:, :, 2].min() == pytest.approx(0.0, abs=1e-9)   # on the floor


def test_resolved_stature_is_the_drawn_one(body_model):
    build = sample_phenotype("test", 5)
    params = body_model.resolve(build).params
    out = body_model._forward([params])["vertices"][0, :, 2].numpy()
    assert out.max() - out.min() == pytest.approx(build["stature_m"], abs=0.01)


def test_train_and_test_bodies_are_disjoint_and_deterministic():
    train = {tuple(sample_phenotype("train", i).values()) for i in range(TRAIN_BODIES)}
    test = {tuple(sample_phenotype("test", i).values()) for i in range(TEST_BODIES)}
    assert len(train) == TRAIN_BODIES and len(test) == TEST_BODIES and not train & test
    assert sample_phenotype("test", 3) == sample_phenotype("test", 3)
    with pytest.raises(ValueError, match="unknown split"):
        sample_phenotype("validation", 0)
