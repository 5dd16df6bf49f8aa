"""The amortised fit: its training targets, a tiny training run, the shipped encoder in the realtime profile."""
import math
import shutil

import numpy as np
import pytest
import torch

from posesdf_ros import GaitPoseEstimator
from posesdf_ros.data.dataset import SampleKey, make_test_sample
from posesdf_ros.evaluation.metrics import angle_error_deg, heading_of, mpjpe_mm
from posesdf_ros.inference.estimator import SCREENED_START_ITERATIONS
from posesdf_ros.inference.pretrained import load_encoder, weights_folder

#: Bound on the shipped encoder's mean MPJPE over the four scenes below (ground-truth heading): it
#: measured 23, 27, 23 and 26 mm on them.
REALTIME_BOUND_MM = 45.0


def test_similarity_between_recovers_a_known_similarity():
    from posesdf_ros.training.encoder_trainer import similarity_between

    a = np.random.default_rng(0).normal(size=(200, 3))
    shift, log_scale = np.array([0.1, -0.2, 0.05]), math.log(1.3)
    found = similarity_between(a, (a - shift) * math.exp(log_scale))
    assert np.allclose(found[0], shift) and math.isclose(found[1], log_scale)


def test_batch_targets_map_the_first_guess_onto_the_shapes_own_frame(train_build):
    """Without heading error or tilt, the target similarity takes the view's first-guess frame
    onto the shape's normalised frame, where the code and its joints live."""
    from dataclasses import replace

    from posesdf_ros.inference.pretrained import load_posesdf
    from posesdf_ros.training.encoder_trainer import make_batch, preset, shape_targets
    from posesdf_ros.training.rotnet_trainer import make_views

    config = preset("tiny")
    config.yaw_error_deg, config.augment = 0.0, replace(config.augment, tilt_deg=0.0)
    _, meta = load_posesdf()
    targets = shape_targets(train_build, meta, None)
    assert targets.codes.shape == (2, 64)
    # The views' headings as the shapes' frames have them (the shapes' own +-5 deg jitter aside, which
    # the first guess, like RotNet, sees as part of the heading and no similarity can undo).
    views = [replace(v, yaw=0.0) for v in make_views(train_build, config, None, progress=False)]
    batch = make_batch(views, targets, np.arange(len(views)), config, meta["normalisation_prior"],
                       np.random.default_rng(1))
    assert batch["clouds"].shape == (len(views), config.model.encoder.points, 3)
    mapped = (batch["joints_first_guess"] - batch["shift"][:, None]) * torch.exp(batch["log_scale"])[:, None, None]
    assert torch.allclose(mapped, batch["joints_code"], atol=1e-4)
    # The shapes' own codes, in the manifest's order.
    assert torch.equal(batch["codes"][0], targets.codes[0])


def test_tiny_encoder_trains_exports_and_serves_the_realtime_profile(train_build, tmp_path):
    from posesdf_ros.training.encoder_trainer import preset, train_encoder

    run = tmp_path / "run"
    summary = train_encoder(train_build, run, preset("tiny"), progress=False)
    assert summary["epochs_done"] == 2 and (run / "encoder.pt").exists() and (run / "loss.png").exists()
    # Beside the PoseSDF weights it was trained on, it loads; beside others, it is refused.
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("posesdf.pt", "posesdf.json", "posesdf_codes.npy"):
        shutil.copy(weights_folder() / name, weights / name)
    shutil.copy(run / "encoder.pt", weights / "encoder.pt")
    shutil.copy(run / "encoder.json", weights / "encoder.json")
    est = GaitPoseEstimator.from_pretrained(profile="realtime", weights=weights, rotnet=False, leg_classifier=None)
    with np.load(next((train_build / "samples").glob("*.npz"))) as z:
        res = est.estimate(z["gt_surface"][::10].astype(np.float64), yaw=0.0)
    assert res.joints is not None and res.joints.shape == (9, 3) and np.isfinite(res.joints).all()
    state = torch.load(weights / "posesdf.pt", weights_only=True)
    first = next(iter(state))
    state[first] = state[first] + 1e-3
    torch.save(state, weights / "posesdf.pt")
    with pytest.raises(ValueError, match="other PoseSDF weights"):
        load_encoder(weights)


def test_realtime_profile_needs_the_encoder(tmp_path):
    for name in ("posesdf.pt", "posesdf.json"):
        shutil.copy(weights_folder() / name, tmp_path / name)
    with pytest.raises(FileNotFoundError, match="encoder"):
        GaitPoseEstimator.from_pretrained(profile="realtime", weights=tmp_path, rotnet=False, leg_classifier=None)


def test_fast_profile_refines_the_encoders_start_and_screens_without_one(body_model, tmp_path):
    """`fast` starts from the encoder's code and refines it; beside weights without an encoder it warns and
    screens its start codes instead. Either way the fit lands on the test body."""
    a, _ = make_test_sample(body_model, SampleKey("test", 1, "normal", "V2"), seed=1)
    yaw, camera = heading_of(a["subject_to_gravity"]), a["camera_to_gravity"][:3, 3]
    est = GaitPoseEstimator.from_pretrained(profile="fast", rotnet=False)
    assert est.profile.amortised and est.amortised is not None
    res = est.estimate(a["points"], yaw=yaw, camera_origin=camera)
    assert res.valid and res.iterations > 0 and "encoder" in res.timings
    for name in ("posesdf.pt", "posesdf.json", "posesdf_codes.npy"):
        shutil.copy(weights_folder() / name, tmp_path / name)
    with pytest.warns(UserWarning, match="screens 4 start codes"):
        screened = GaitPoseEstimator.from_pretrained(profile="fast", weights=tmp_path, rotnet=False)
    assert not screened.profile.amortised and screened.amortised is None
    assert screened.profile.iterations == SCREENED_START_ITERATIONS > est.profile.iterations
    res_screened = screened.estimate(a["points"], yaw=yaw, camera_origin=camera)
    assert res_screened.valid and "encoder" not in res_screened.timings
    assert max(mpjpe_mm(res.joints, a["joints"]), mpjpe_mm(res_screened.joints, a["joints"])) < REALTIME_BOUND_MM


def test_shipped_encoder_estimates_test_scenes_without_optimisation(body_model):
    """The shipped realtime profile on whole scenes of four test bodies (segmented by the estimator,
    ground-truth heading): no optimisation step, and about as accurate as the fits."""
    est = GaitPoseEstimator.from_pretrained(profile="realtime", rotnet=False)
    errors = []
    for key in (SampleKey("test", 0, "normal", "V2"), SampleKey("test", 0, "supination", "V1"),
                SampleKey("test", 1, "supination", "V1"), SampleKey("test", 2, "pronation", "V1")):
        a, _ = make_test_sample(body_model, key, seed=1)
        res = est.estimate(a["points"], yaw=heading_of(a["subject_to_gravity"]),
                           camera_origin=a["camera_to_gravity"][:3, 3])
        assert res.valid, res.reason
        assert res.iterations == 0 and "encoder" in res.timings and "latent_optimisation" in res.timings
        errors.append(mpjpe_mm(res.joints, a["joints"]))
    assert np.mean(errors) < REALTIME_BOUND_MM, errors


def test_realtime_fit_flags_a_floating_cloud(body_model):
    """The realtime profile's own residual ramp still rejects a cloud lifted off the floor."""
    est = GaitPoseEstimator.from_pretrained(profile="realtime", rotnet=False)
    a, _ = make_test_sample(body_model, SampleKey("test", 0, "normal", "V1"), seed=1)
    legs = a["points"][a["leg_mask"]].astype(np.float64)
    res = est.estimate(legs + [0.0, 0.0, 0.4], yaw=heading_of(a["subject_to_gravity"]), segment=False)
    assert not res.valid and "implausible" in res.reason


def test_realtime_doubts_a_heading_the_other_ones_prediction_fits_better(body_model, raycast_tool):
    """Ray-cast scenes (tools/raycast_scenes.py, seed 2) RotNet reads turned round: `realtime` kept scene 142
    328 mm off at a score of 0.78, the turned heading's encoder prediction fitting the points 0.81 times as well
    as the kept one's, short of the 0.8 that turns it. Those predictions' losses are now the quality's heading
    margin: under 1 the frame is fitted again (both headings, optimised, each turning the heading in its
    descent). Scene 142's refit turns it back, 24 mm off; scene 25's (173 deg off, 209 mm) does not pass
    either (margin 0.81), and the frame is reported as an ambiguous heading instead of published. (Scene 138,
    the first example until the flying-pixel test kept more of its legs, `rays_agree`, is now turned by the
    first check.)"""
    est = GaitPoseEstimator.from_pretrained(profile="realtime")
    scene, entry = raycast_tool.make_scene(25, 2, body_model)
    res = est.estimate(scene["points"], camera_origin=scene["camera_to_gravity"][:3, 3])
    assert res.quality_terms["heading_margin"] < 1.0, (entry["file"], res.quality_terms)
    assert not res.valid and "ambiguous heading" in res.reason, (entry["file"], res.reason)
    scene, entry = raycast_tool.make_scene(142, 2, body_model)
    res = est.estimate(scene["points"], camera_origin=scene["camera_to_gravity"][:3, 3])
    heading_error = angle_error_deg(res.yaw, heading_of(scene["subject_to_gravity"]))
    assert res.valid and "quality_retry" in res.timings and res.yaw_source == "rotnet_turned", res.reason
    assert heading_error < 20.0 and mpjpe_mm(res.joints, scene["joints"]) < 50.0


def test_realtime_refits_a_heading_turned_on_the_predictions_alone(body_model):
    """A shifted scene (data seed 3, subject 3, normal gait, V2) where RotNet's heading is 25 deg off: the
    encoder's prediction there fits the points as badly as the one turned round, and the heading check
    turned the frame round on those losses, which `realtime` then published 250 mm off at a score of 0.85.
    A heading turned on the predictions alone now runs the optimised fallback, whose fits turn it back;
    its fit there scores too low and the frame is rejected, not published turned round."""
    from posesdf_ros.data.shifted import make_shifted_sample

    est = GaitPoseEstimator.from_pretrained(profile="realtime")
    scene = make_shifted_sample(body_model, SampleKey("shifted", 3, "normal", "V2"), 3)[0]
    camera, truth = scene["camera_to_gravity"][:3, 3], heading_of(scene["subject_to_gravity"])
    first = est._estimate(scene["points"], None, camera, False, False, True, None, None)
    assert first.valid and first.yaw_source == "rotnet_turned" and first.quality >= est.quality.retry_below
    assert angle_error_deg(first.yaw, truth) > 90.0
    res = est.estimate(scene["points"], camera_origin=camera)
    assert "quality_retry" in res.timings
    assert not (res.valid and angle_error_deg(res.yaw, truth) > 90.0), (res.reason, res.quality)


def test_realtime_fallback_turns_the_heading_in_its_descent(body_model):
    """`realtime`'s optimised fallback runs on the frames it doubts, where RotNet's heading is least to be
    trusted: told a checked heading 7 deg off the truth, each of its fits turns the heading in its descent (at
    `fast`'s rate), and the headings kept lie nearer the truth than it was told, on three test bodies."""
    fallback = GaitPoseEstimator.from_pretrained(profile="realtime")._fallback()
    off_deg, errors = 7.0, []
    for key in (SampleKey("test", 0, "normal", "V2"), SampleKey("test", 1, "supination", "V1"),
                SampleKey("test", 2, "in_toeing", "V4")):
        a, _ = make_test_sample(body_model, key, seed=1)
        truth, legs = heading_of(a["subject_to_gravity"]), a["points"][a["leg_mask"]].astype(np.float64)
        res = fallback.estimate(legs, yaw=truth + np.deg2rad(off_deg), camera_origin=a["camera_to_gravity"][:3, 3],
                                segment=False, check_heading=True)
        assert res.valid, res.reason
        errors.append(angle_error_deg(res.yaw, truth))
    assert np.mean(errors) < off_deg - 1.0, errors
