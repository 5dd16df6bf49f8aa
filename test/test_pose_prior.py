"""The lower-limb kinematic model, Pose-NDF (shipped weights) and the PosePrior filter on generated gait."""
import numpy as np
import pytest
import torch

from posesdf_ros.evaluation.prior import SequenceSpec, carried_forward, hidden_mask, metrics, walking_joint_sequences
from posesdf_ros.gait import kinematics as K
from posesdf_ros.skeleton import bone_lengths


@pytest.fixture(scope="module")
def sequences(body_model):
    """Two test walkers at 30 FPS, 2 s each: one on a treadmill, one overground."""
    spec = SequenceSpec(subjects=2, duration_s=2.0, seed=11)
    return spec, walking_joint_sequences(spec)


@pytest.fixture(scope="module")
def prior():
    from posesdf_ros.inference.prior import PosePrior

    torch.set_num_threads(1)
    return PosePrior.from_pretrained()


def test_inverse_then_forward_kinematics_reproduces_the_joints(sequences, rng):
    _, seqs = sequences
    joints = torch.as_tensor(np.concatenate(seqs))
    yaw = rng.uniform(-np.pi, np.pi)
    R = torch.tensor([[np.cos(yaw), -np.sin(yaw), 0], [np.sin(yaw), np.cos(yaw), 0], [0, 0, 1]], dtype=joints.dtype)
    joints = joints @ R.T + torch.tensor([0.3, -2.0, 0.0], dtype=joints.dtype)
    pose = K.inverse(joints)
    assert torch.allclose(pose.rotations.norm(dim=-1), torch.ones(1, dtype=joints.dtype))
    assert (K.forward(pose) - joints).abs().max() < 1e-9
    # Forward kinematics keeps the bone lengths it is given, whatever the rotations.
    pose.rotations = torch.nn.functional.normalize(pose.rotations + 0.3 * torch.randn_like(pose.rotations), dim=-1)
    lengths = bone_lengths(K.forward(pose).numpy())
    assert np.allclose(lengths, bone_lengths(joints.numpy()), atol=1e-9)


def test_signed_knee_flexion_is_negative_only_for_hyperextension(sequences):
    _, seqs = sequences
    knee = np.rad2deg(K.knee_flexion_signed(torch.as_tensor(seqs[0])).numpy())
    assert knee.min() > -1.0 and knee.max() > 45.0          # a walking knee only flexes, up to ~60 deg
    bent = seqs[0][int(np.argmax(knee[:, 0]))].copy()
    hip, kn, ankle = bent[1], bent[2], bent[3]
    mirrored = kn + (kn - hip) / np.linalg.norm(kn - hip) * np.dot(ankle - kn, (kn - hip) / np.linalg.norm(kn - hip))
    bent[3] = 2 * mirrored - ankle                           # the shank reflected to the thigh's front
    assert K.knee_flexion_signed(torch.as_tensor(bent[None]))[0, 0] < np.deg2rad(-30)


def test_distance_is_near_zero_on_gait_poses_and_grows_with_noise(prior, sequences, rng):
    import roma

    from posesdf_ros.inference.prior import rotations_of
    from posesdf_ros.training.posendf_trainer import random_rotations

    _, seqs = sequences
    poses = torch.as_tensor(rotations_of(np.concatenate(seqs)))
    on = prior.distance(poses).mean()
    grown = []
    for sigma in (0.05, 0.15, 0.4):
        noise = random_rotations(len(poses), poses.shape[1], np.full((len(poses), 1), sigma), rng)
        grown.append(prior.distance(roma.quat_product(poses, noise)).mean())
    assert on < 0.02, on
    assert on < grown[0] < grown[1] < grown[2], (on, grown)


def test_projection_lowers_the_distance(prior, sequences, rng):
    import roma

    from posesdf_ros.inference.prior import rotations_of
    from posesdf_ros.training.posendf_trainer import random_rotations

    _, seqs = sequences
    poses = torch.as_tensor(rotations_of(seqs[1][::6]))
    noisy = roma.quat_product(poses, random_rotations(len(poses), poses.shape[1], np.full((len(poses), 1), 0.3), rng))
    before = prior.distance(noisy)
    after = prior.distance(prior.project(noisy, steps=5))
    assert (after < before).mean() > 0.9 and after.mean() < 0.5 * before.mean(), (before.mean(), after.mean())


def test_filter_beats_raw_noise_and_keeps_bones_and_knees_plausible(prior, sequences):
    spec, seqs = sequences
    prior.config = prior.config.__class__(observation_sigma_m=0.02)
    for i, truth in enumerate(seqs):
        obs = truth + np.random.default_rng(i).normal(0, 0.02 / np.sqrt(3), truth.shape)
        stamps = np.arange(len(truth)) / spec.fps
        prior.reset()
        out = np.stack([prior.filter(float(t), o) for t, o in zip(stamps, obs)])
        raw, ours = metrics(obs, truth, spec.fps), metrics(out, truth, spec.fps)
        assert ours["mpjpe_mm"] < raw["mpjpe_mm"], (raw, ours)
        assert ours["jitter_mm_s2"] < 0.67 * raw["jitter_mm_s2"], (raw, ours)
        assert ours["implausible_pct"] == 0.0 and raw["implausible_pct"] > 0.0


def test_filter_fills_a_hidden_leg_better_than_carrying_it_forward(prior, sequences):
    spec, seqs = sequences
    prior.config = prior.config.__class__(observation_sigma_m=0.01)
    truth = seqs[0]
    hidden = hidden_mask(len(truth), spec, np.random.default_rng(0))
    stamps = np.arange(len(truth)) / spec.fps
    prior.reset()
    out = np.stack([prior.filter(float(t), j, ~h) for t, j, h in zip(stamps, truth, hidden)])
    err = lambda pred: np.linalg.norm(pred - truth, axis=-1)[hidden].mean()  # noqa: E731
    assert err(out) < 0.75 * err(carried_forward(truth, hidden)), (err(out), err(carried_forward(truth, hidden)))


def test_filter_handles_missing_nan_and_out_of_order_frames(prior, sequences):
    spec, seqs = sequences
    truth = seqs[1]
    prior.reset()
    partial = truth[0].copy()
    partial[3] = np.nan
    assert np.isnan(prior.filter(0.0, partial)).all()       # no start without all nine joints
    assert np.isnan(prior.filter(0.01, None)).all()
    first = prior.filter(0.02, truth[0])
    assert np.isfinite(first).all()
    second = prior.filter(0.02 + 1 / spec.fps, partial)    # NaN joint filled
    assert np.isfinite(second).all()
    again = prior.filter(0.0, truth[1])                      # out of order: ignored, counted
    assert np.array_equal(again, second) and prior.dropped == 1
    after_gap = prior.filter(5.0, truth[5])                  # a long gap restarts from the observation (same bones)
    assert np.abs(after_gap - truth[5]).max() < 0.02


def test_first_frames_bone_lengths_weigh_measurement_and_population_by_their_noise(prior, body_model):
    """Bodies whose proportions are far from the training population (test bodies 8 and 9 of `posesdf bench
    prior`): over many noisy starts, the first frames' bone lengths are closer to the truth than both the
    population's proportions (scaled by the true leg length) and the frames' own measurement."""
    from posesdf_ros.data.body import sample_phenotype
    from posesdf_ros.data.gait import GaitModel, GaitParams

    ratios = np.asarray(prior.meta["length_ratios"])
    for body in (8, 9):
        truth = body_model.pose(sample_phenotype("test", body), GaitModel(GaitParams()).angles(
            np.linspace(0.0, 0.1, 3))).joints
        true_lengths = K.inverse(torch.as_tensor(truth)).lengths[0].numpy()
        population = ratios * 0.5 * (true_lengths[[1, 2, 4, 5]].sum())
        for noise_m in (0.02, 0.04):
            prior.config = prior.config.__class__(observation_sigma_m=noise_m)
            ours, measured = [], []
            for seed in range(40):
                obs = truth + np.random.default_rng(seed).normal(0, noise_m / np.sqrt(3), truth.shape)
                prior.reset()
                for t, frame in enumerate(obs):
                    prior.filter(t / 30, frame)
                    ours.append(prior.bone_lengths() / true_lengths - 1)
                    lengths = K.inverse(torch.as_tensor(obs[:t + 1])).lengths.numpy()
                    measured.append(np.median(lengths, axis=0) / true_lengths - 1)
            error = lambda e: np.abs(np.array(e)).mean()  # noqa: E731
            assert error(ours) < error(measured), (body, noise_m, error(ours), error(measured))
            assert error(ours) < error(population / true_lengths - 1), (body, noise_m, error(ours))
