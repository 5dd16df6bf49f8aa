"""Inference: joint extraction, latent optimisation, the estimator on shipped weights and real samples."""
from dataclasses import replace

import numpy as np
import pytest
import torch

from posesdf_ros import GaitPoseEstimator
from posesdf_ros.data.dataset import SampleKey, make_test_sample
from posesdf_ros.data.domain import make_product_train_sample
from posesdf_ros.evaluation.metrics import angle_error_deg, heading_of, mpjpe_mm
from posesdf_ros.inference.estimator import PROFILES, SCREENED_START_ITERATIONS
from posesdf_ros.inference.joints import METHODS, sphere_centres
from posesdf_ros.inference.latent import LatentFit, fit_each, optimise_latent, screen_starts, turned
from posesdf_ros.inference.meshing import extract_mesh

#: Bound on the shipped weights' mean MPJPE over four generated test scenes (segmented by the
#: estimator, ground-truth yaw): they measured 24, 26, 28 and 32 mm (accurate profile);
#: an untrained model is over 200.
MPJPE_BOUND_MM = 45.0


@pytest.fixture(scope="module")
def estimator():
    return GaitPoseEstimator.from_pretrained(profile="accurate", rotnet=False)


@pytest.mark.parametrize("method", METHODS)
def test_joint_extraction_is_exact_on_analytic_spheres(method):
    centres = torch.rand(9, 3, generator=torch.Generator().manual_seed(3)) * 1.2 - 0.6
    field = lambda q: torch.cdist(q, centres) - 0.05  # noqa: E731
    found = sphere_centres(field, 0.05, method)
    assert (found - centres).norm(dim=-1).max() < 1e-4


def test_marching_cubes_on_an_analytic_sphere_is_cut_at_the_top():
    verts, faces = extract_mesh(lambda q: q.norm(dim=-1) - 0.5, resolution=40, top=0.2)
    r = np.linalg.norm(verts, axis=1)
    assert len(faces) > 100 and np.abs(r - 0.5).max() < 0.02
    assert verts[:, 2].max() < 0.2 + 2 * 2 / 39


def test_bad_inputs_give_a_reason_not_an_exception(estimator):
    for points, words in [(np.zeros((0, 3)), "too few"), (np.full((500, 3), np.nan), "too few"),
                          (np.zeros((10, 2)), "(N, 3)"), (np.zeros(5), "(N, 3)")]:
        res = estimator.estimate(points)
        assert not res.valid and words in res.reason and res.joints is None


@pytest.mark.parametrize("profile", ["fast", "accurate"])
def test_zero_depths_at_the_camera_are_dropped_not_fitted(body_model, profile):
    """A leg cloud holding points at the camera's position (a depth camera's invalid zeros, unprojected)
    is fitted as without them: those points lie on no ray, and the smoothing along rays and the
    free-space samples once turned them into NaN joints that were reported valid."""
    a, _ = make_test_sample(body_model, SampleKey("test", 0, "normal", "V2"), seed=1)
    camera = a["camera_to_gravity"][:3, 3]
    legs = a["points"][a["leg_mask"]]
    estimator = GaitPoseEstimator.from_pretrained(profile=profile, rotnet=False)
    yaw = heading_of(a["subject_to_gravity"])
    clean = estimator.estimate(legs, yaw=yaw, camera_origin=camera, segment=False)
    zeros = estimator.estimate(np.concatenate([legs, np.repeat(camera[None], 500, 0)]), yaw=yaw,
                               camera_origin=camera, segment=False)
    assert clean.valid and zeros.valid and np.array_equal(zeros.joints, clean.joints)


def test_unknown_backend_profile_and_missing_weights_are_clear(tmp_path):
    with pytest.raises(ValueError, match="backend"):
        GaitPoseEstimator.from_pretrained(backend="nope")
    with pytest.raises(ValueError, match="profile"):
        GaitPoseEstimator.from_pretrained(profile="nope")
    with pytest.raises(FileNotFoundError, match="posesdf train"):
        GaitPoseEstimator.from_pretrained(weights=tmp_path)


def test_shipped_weight_sets_are_complete_and_tied_to_their_trunks():
    """Both shipped sets load by name with every head, the default is the product set, and its trunk is
    the product engine's."""
    from posesdf_ros.inference.pretrained import WEIGHT_SETS, load_encoder, load_nvf, load_posesdf

    for name, bodies in (("product", 1000), ("paper", 300)):
        _, meta = load_posesdf(name)
        assert (meta.get("data_profile") or "paper") == name and meta["shapes"] == bodies
        assert len(np.load(WEIGHT_SETS[name] / "posesdf_codes.npy")) == bodies
        for loader in (load_nvf, load_encoder):
            assert loader(name)[1]["posesdf_sha256"] == load_nvf(name)[1]["posesdf_sha256"]
    assert load_posesdf()[1]["weights_dir"] == load_posesdf("product")[1]["weights_dir"]
    est = GaitPoseEstimator.from_pretrained(profile="realtime", weights="paper", rotnet=False, leg_classifier=False)
    assert est.meta["shapes"] == 300 and est.amortised is not None


def test_a_head_beside_another_trunk_is_refused(tmp_path):
    import shutil

    from posesdf_ros.inference.pretrained import WEIGHT_SETS, load_encoder

    for name in ("posesdf.pt", "posesdf.json"):
        shutil.copy(WEIGHT_SETS["product"] / name, tmp_path / name)
    for name in ("encoder.pt", "encoder.json"):
        shutil.copy(WEIGHT_SETS["paper"] / name, tmp_path / name)
    with pytest.raises(ValueError, match="other PoseSDF weights"):
        load_encoder(tmp_path)


def test_latent_optimisation_recovers_a_training_shape(estimator, body_model):
    """Training shape 0 of the product build (seed 0, as the default weights were trained): fitting its
    surface with the ground-truth normalisation lands near its own trained code."""
    arrays, _ = make_product_train_sample(body_model, SampleKey("train", 0), seed=0)
    codes = torch.from_numpy(np.load(estimator.weights_dir / "posesdf_codes.npy"))
    surface = (arrays["gt_surface"][::30] - arrays["norm_centre"]) * arrays["norm_scale"]
    fit = optimise_latent(estimator.model, torch.as_tensor(surface, dtype=torch.float32),
                          z0=estimator.latent_mean, iterations=300, refine_similarity=False, patience=50)
    dist = (codes - fit.z).norm(dim=-1)
    assert dist[0] < (codes - estimator.latent_mean).norm(dim=-1)[0]
    assert int((dist < dist[0]).sum()) < 0.1 * len(codes)


def test_the_fit_turns_a_heading_a_few_degrees_off_back(estimator, body_model):
    """Training shape 0's surface turned 8 deg either way about the vertical and fitted from its own trained
    code for 30 steps: with `yaw_lr` the fit turns it back (the code takes some of the turn: 5 and 6 deg
    measured) and fits it better than without; `unapply` undoes `apply`."""
    arrays, _ = make_product_train_sample(body_model, SampleKey("train", 0), seed=0)
    codes = torch.from_numpy(np.load(estimator.weights_dir / "posesdf_codes.npy"))
    surface = torch.as_tensor((arrays["gt_surface"][::30] - arrays["norm_centre"]) * arrays["norm_scale"],
                              dtype=torch.float32)
    for off in np.deg2rad([8.0, -8.0]):
        seen = turned(surface, torch.tensor(off, dtype=torch.float32))
        (turning,) = fit_each(estimator.model, seen, codes[:1], iterations=30, yaw_lr=0.03)
        (fixed,) = fit_each(estimator.model, seen, codes[:1], iterations=30)
        back = -float(turning.yaw) / off          # 1: turned all the way back
        assert fixed.yaw is None and 0.4 < back < 1.5, np.rad2deg(float(turning.yaw))
        assert turning.loss < fixed.loss
    fit = LatentFit(codes[0], torch.tensor([0.01, -0.02, 0.03]), torch.tensor(0.1), 0, 0.0, torch.tensor(0.14))
    assert torch.allclose(fit.unapply(fit.apply(surface)), surface, atol=1e-5)
    assert torch.allclose(turned(surface, None), surface)


def test_screening_picks_the_start_in_the_right_basin(estimator, body_model):
    """Among start codes far off (the training codes farthest from shape 0's) and shape 0's own
    trained code, a short screening on shape 0's surface keeps its code."""
    arrays, _ = make_product_train_sample(body_model, SampleKey("train", 0), seed=0)
    codes = torch.from_numpy(np.load(estimator.weights_dir / "posesdf_codes.npy"))
    far = codes[(codes - codes[0]).norm(dim=-1).argsort(descending=True)[:3]]
    surface = (arrays["gt_surface"][::60] - arrays["norm_centre"]) * arrays["norm_scale"]
    fit, index = screen_starts(estimator.model, torch.as_tensor(surface, dtype=torch.float32),
                               torch.cat([far, codes[:1]]), iterations=10)
    assert index == 3 and (fit.z - codes[0]).norm() < (fit.z - far).norm(dim=-1).min()
    alone = optimise_latent(estimator.model, torch.as_tensor(surface, dtype=torch.float32), z0=far[0],
                            iterations=10, patience=10)
    assert fit.loss < alone.loss


def test_a_turned_heading_needs_a_clearly_better_fit(body_model):
    """RotNet has test scene pronation/V1/4's true leg points right, but with the product weights a fit from
    screened start codes (and their 80 steps) seen from behind scores a little better (far off at
    turn_loss_ratio 1.0): the margin keeps RotNet's heading, and the quality's heading check reports the
    frame as ambiguous instead of confident. (Started from the encoder's code, `fast`'s default, the turned
    fit scores clearly worse.) The true leg points keep the test apart from the shipped segmentation."""
    arrays, _ = make_test_sample(body_model, SampleKey("test", 4, "pronation", "V1"), seed=1)
    camera, legs = arrays["camera_to_gravity"][:3, 3], arrays["points"][arrays["leg_mask"]]
    encoder_start = GaitPoseEstimator.from_pretrained(profile="fast", weights="product")
    first = encoder_start.estimate(legs, camera_origin=camera)
    assert first.valid and first.yaw_source == "rotnet" and first.quality_terms["heading_margin"] > 1.5
    assert mpjpe_mm(first.joints, arrays["joints"]) < 50
    est = encoder_start.with_profile(amortised=False, members=1, iterations=SCREENED_START_ITERATIONS)
    kept = est.estimate(legs, camera_origin=camera)
    assert kept.yaw_source == "rotnet" and mpjpe_mm(kept.joints, arrays["joints"]) < 120
    assert not kept.valid and "ambiguous heading" in kept.reason, kept.reason
    assert kept.quality_terms["heading"] == 0.0 and 0.8 <= kept.quality_terms["heading_margin"] < 1.0
    turned = est.with_profile(turn_loss_ratio=1.0).estimate(legs, camera_origin=camera)
    assert turned.yaw_source == "rotnet_turned" and mpjpe_mm(turned.joints, arrays["joints"]) > 200
    assert [est._heading_choice(losses) for losses in ([1.0, 0.9], [1.0, 0.7], [1.0])] == [0, 1, 0]


class _HeadingOffBy:
    """A heading estimator that answers the true heading turned by `offset` rad: RotNet's typical small error."""

    def __init__(self, truth: float, offset: float):
        self.truth, self.offset = truth, offset

    def predict(self, leg_points):
        return self.truth + self.offset, 1.0


def test_fast_screens_a_heading_a_few_degrees_off(body_model):
    """Told a heading 7 deg off the truth, `fast` fits it and 6 deg either side and keeps the fit of the lowest
    loss, each fit turning the heading in its descent: on three test bodies' leg points the kept headings and
    joints lie nearer the truth than the unscreened, unturned fit's. A heading the caller gives is screened and
    turned only with the heading check (the nodes' way)."""
    est = GaitPoseEstimator.from_pretrained(profile="fast", weights="product")
    off = np.deg2rad(7.0)
    rows = []
    for key in (SampleKey("test", 0, "normal", "V2"), SampleKey("test", 1, "supination", "V1"),
                SampleKey("test", 2, "in_toeing", "V4")):
        a, _ = make_test_sample(body_model, key, seed=1)
        truth, legs = heading_of(a["subject_to_gravity"]), a["points"][a["leg_mask"]]
        camera = a["camera_to_gravity"][:3, 3]
        est.yaw_estimator = _HeadingOffBy(truth, off)
        screened = est.estimate(legs, camera_origin=camera)
        plain = est.with_profile(yaw_offsets_deg=(), yaw_lr=0.0).estimate(legs, camera_origin=camera)
        unturned = est.with_profile(yaw_lr=0.0).estimate(legs, camera_origin=camera)
        given = est.estimate(legs, yaw=truth + off, camera_origin=camera)
        assert screened.valid and plain.valid and screened.yaw_source == plain.yaw_source == "rotnet"
        assert "heading_screening" in screened.timings and "heading_screening" not in plain.timings
        assert "heading_screening" not in given.timings and np.allclose(given.joints, plain.joints)
        checked = est.estimate(legs, yaw=truth + off, camera_origin=camera, check_heading=True)   # as the nodes ask
        assert "heading_screening" in checked.timings and np.allclose(checked.joints, screened.joints)
        heading_error = lambda r: np.deg2rad(angle_error_deg(r.yaw, truth))  # noqa: E731
        assert np.isclose(heading_error(plain), off)
        assert min(abs(heading_error(unturned) - d) for d in (off, np.deg2rad(1), np.deg2rad(13))) < 1e-6
        rows.append((heading_error(screened), mpjpe_mm(screened.joints, a["joints"]),
                     mpjpe_mm(plain.joints, a["joints"])))
    rows = np.array(rows)
    assert rows[:, 0].mean() < off and rows[:, 1].mean() < rows[:, 2].mean(), rows


def test_fast_screens_the_heading_wider_when_the_points_lie_off_the_surface(body_model, raycast_tool):
    """Ray-cast scenes (tools/raycast_scenes.py, seed 2), lateral views whose RotNet heading is far off: `fast`'s
    fit there (screened +-6 deg) leaves its points off the surface, its heading 32 and 26 deg off, and was kept
    42 and 60 mm off (70 and 86 before the flying-pixel test kept more of the legs, `rays_agree`). Such a fit is
    fitted again with the heading screened +-15 to +-45 deg; the lower loss finds a heading near the truth (5
    and 2 deg off) and the refit, scoring better, is kept (24 and 25 mm off)."""
    est = GaitPoseEstimator.from_pretrained(profile="fast")
    narrow = est.with_profile(wide_yaw_offsets_deg=())
    for index in (136, 170):
        scene, entry = raycast_tool.make_scene(index, 2, body_model)
        camera = scene["camera_to_gravity"][:3, 3]
        first, res = (e.estimate(scene["points"], camera_origin=camera) for e in (narrow, est))
        truth = heading_of(scene["subject_to_gravity"])
        heading_error = lambda r: angle_error_deg(r.yaw, truth)  # noqa: E731
        assert first.quality_terms["surface"] < 1.0 and heading_error(first) > 25, (entry["file"], first.quality_terms)
        assert "wide_heading_screening" in res.timings and "wide_heading_screening" not in first.timings
        assert res.valid and res.quality > first.quality and heading_error(res) < 20, (entry["file"], res.reason)
        assert mpjpe_mm(res.joints, scene["joints"]) < mpjpe_mm(first.joints, scene["joints"]) - 15


def test_shipped_weights_estimate_generated_test_samples(estimator, body_model):
    """Whole scene clouds (segmented by the estimator) of four test bodies, ground-truth heading."""
    errors = []
    for key in (SampleKey("test", 0, "normal", "V2"), SampleKey("test", 0, "supination", "V1"),
                SampleKey("test", 1, "supination", "V1"), SampleKey("test", 2, "pronation", "V1")):
        a, _ = make_test_sample(body_model, key, seed=1)
        res = estimator.estimate(a["points"], yaw=heading_of(a["subject_to_gravity"]),
                                 camera_origin=a["camera_to_gravity"][:3, 3], mesh=True)
        assert res.valid and res.joints.shape == (9, 3) and res.mesh is not None
        assert res.mesh.vertices[:, 2].min() > -0.1 and res.mesh.vertices[:, 2].max() < a["joints"][0, 2] + 0.3
        errors.append(mpjpe_mm(res.joints, a["joints"]))
    assert np.mean(errors) < MPJPE_BOUND_MM, errors


def test_heading_check_turns_a_front_back_confusion_round(estimator, body_model):
    """Given the heading turned by 180 deg (RotNet's typical failure), the check fits both
    headings and keeps the one the shape fits: the true one; without the check the joints
    are far off."""
    a, _ = make_test_sample(body_model, SampleKey("test", 0, "normal", "V2"), seed=1)
    pts, truth = a["points"][a["leg_mask"]], heading_of(a["subject_to_gravity"])
    camera = a["camera_to_gravity"][:3, 3]
    checked = estimator.estimate(pts, yaw=truth + np.pi, camera_origin=camera, check_heading=True)
    assert checked.yaw_source == "given_turned" and np.deg2rad(angle_error_deg(checked.yaw, truth)) < 1e-6
    assert mpjpe_mm(checked.joints, a["joints"]) < MPJPE_BOUND_MM
    unjudged = estimator.with_profile()
    unjudged.quality = replace(estimator.quality, retry_below=0.0, reject_below=0.0)
    unchecked = unjudged.estimate(pts, yaw=truth + np.pi, camera_origin=camera)
    assert unchecked.yaw_source == "given" and mpjpe_mm(unchecked.joints, a["joints"]) > 150
    right = estimator.estimate(pts, yaw=truth, camera_origin=camera, check_heading=True)
    assert right.yaw_source == "given" and mpjpe_mm(right.joints, a["joints"]) < MPJPE_BOUND_MM


class _RecordingYaw:
    """A stand-in for RotNet that reports a given heading and records the points it was given."""

    def __init__(self, yaw: float):
        self.yaw, self.inputs = yaw, []

    def predict(self, points):
        self.inputs.append(np.array(points))
        return self.yaw, {}


def test_rotnet_reads_a_leg_clouds_legs_below_the_hips(estimator, body_model):
    """A leg cloud given as such (`segment=False`) ends at the spec's crop plane, `crop_margin` over the
    pelvis: RotNet reads its points more than `heading_below_pelvis` below the pelvis, as it reads a
    segmented scene's (the skin above the hips turned its front/back call round on 8 of the shifted split's
    145 true leg clouds, 2 from below the hips), and the whole cloud when fewer than `heading_min_points`
    are there."""
    a, _ = make_test_sample(body_model, SampleKey("test", 0, "normal", "V2"), seed=1)
    legs, camera = a["points"][a["leg_mask"]].astype(np.float64), a["camera_to_gravity"][:3, 3]
    rotnet = _RecordingYaw(heading_of(a["subject_to_gravity"]))
    est = GaitPoseEstimator(estimator.model, estimator.meta, estimator.profile, yaw_estimator=rotnet)
    res = est.estimate(legs, camera_origin=camera, segment=False)
    assert res.valid and res.yaw_source == "rotnet"
    config = est.segmentation
    below_hips = legs[legs[:, 2] < legs[:, 2].max() - config.crop_margin - config.heading_below_pelvis]
    assert config.heading_min_points <= len(below_hips) < len(legs)
    np.testing.assert_array_equal(rotnet.inputs[0], below_hips)

    est.segmentation = replace(config, heading_min_points=len(below_hips) + 1)
    est.estimate(legs, camera_origin=camera, segment=False)
    np.testing.assert_array_equal(rotnet.inputs[1], legs)


def test_quality_flags_a_turned_heading_and_a_floating_cloud(estimator, body_model):
    """A fit in the wrong place scores low: given the heading turned round without the heading check, the
    first fit scores under the retry threshold and `estimate` recovers the true heading from it; a cloud
    lifted 0.4 m off the floor cannot be fitted plausibly and comes back valid=False with the reason."""
    a, _ = make_test_sample(body_model, SampleKey("test", 0, "normal", "V2"), seed=1)
    pts, truth = a["points"][a["leg_mask"]], heading_of(a["subject_to_gravity"])
    camera = a["camera_to_gravity"][:3, 3]
    q = estimator.quality
    right = estimator.estimate(pts, yaw=truth, camera_origin=camera)
    assert right.valid and right.quality >= q.retry_below and "quality_retry" not in right.timings
    assert right.joint_confidence.shape == (9,) and right.joint_confidence.min() > 0.5
    unjudged = estimator.with_profile()
    unjudged.quality = replace(q, retry_below=0.0, reject_below=0.0)
    turned = unjudged.estimate(pts, yaw=truth + np.pi, camera_origin=camera)
    assert turned.quality < q.retry_below < right.quality, (turned.quality, turned.quality_terms)
    recovered = estimator.estimate(pts, yaw=truth + np.pi, camera_origin=camera)
    assert recovered.valid and recovered.yaw_source == "given_turned" and "quality_retry" in recovered.timings
    assert mpjpe_mm(recovered.joints, a["joints"]) < MPJPE_BOUND_MM
    lifted = estimator.estimate(pts + [0.0, 0.0, 0.4], yaw=truth, camera_origin=camera)
    assert not lifted.valid and lifted.reason.startswith("implausible fit") and lifted.quality < q.reject_below


def test_quality_checks_on_hand_made_skeletons():
    """assess_fit's checks on skeletons built by hand: a plausible one scores 1, each flaw its check."""
    from posesdf_ros.inference.quality import QualityConfig, assess_fit

    joints = np.array([[0, 0, 0.95], [0, 0.1, 0.9], [0, 0.1, 0.5], [0, 0.1, 0.08], [0.15, 0.1, 0.03],
                       [0, -0.1, 0.9], [0, -0.1, 0.5], [0, -0.1, 0.08], [0.15, -0.1, 0.03]], float)
    skin = joints + [0.05, 0, 0]        # points a limb's radius from every joint
    good = assess_fit(joints, skin, np.full(100, 0.005))
    assert good.score == 1.0 and not good.problems and np.allclose(good.joint_confidence, 1.0)
    off_surface = assess_fit(joints, skin, np.full(100, 0.05))
    assert off_surface.terms["surface"] == 0.0 and off_surface.score == 0.0
    lonely = assess_fit(joints, skin[:7], np.full(100, 0.005))      # no point near the right ankle and foot
    assert lonely.joint_confidence[7:].max() < 1.0 and lonely.joint_confidence[:7].min() == 1.0
    assert lonely.terms["support"] == lonely.joint_confidence.min() and "right_" in lonely.problems[0]
    giant = joints.copy()
    giant[:, 2] *= 1.6
    assert assess_fit(giant, giant + [0.05, 0, 0], np.full(100, 0.005)).terms["anatomy"] == 0.0
    # A foot half a metre from its ankle (NVF's votes on a ray-cast scene put one there, 622 mm off, at a score of 1).
    long_foot = joints.copy()
    long_foot[4] = [0.45, 0.1, 0.03]
    stretched = assess_fit(long_foot, long_foot + [0.05, 0, 0], np.full(100, 0.005))
    assert stretched.terms["anatomy"] == 0.0 and "left_foot 0.45 m" in stretched.problems[0]
    floating = joints + [0, 0, 0.5]
    assert assess_fit(floating, floating + [0.05, 0, 0], np.full(100, 0.005)).terms["floor"] == 0.0
    # Both headings fitted: the kept one must fit better than the opposite one.
    clear = assess_fit(joints, skin, np.full(100, 0.005), heading_margin=1.3)
    assert clear.score == 1.0 and clear.terms["heading_margin"] == 1.3
    ambiguous = assess_fit(joints, skin, np.full(100, 0.005), heading_margin=0.95)
    assert ambiguous.score == 0.0 and ambiguous.terms["heading"] == 0.0 and "ambiguous heading" in ambiguous.problems[0]
    # An ensemble whose members disagree at the left foot: with a spread ramp that joint loses confidence (half,
    # halfway up the ramp), the rest keep theirs, and the frame's score does not change; without one, nothing.
    spread = np.full(9, 0.005)
    spread[4] = 0.030
    ramped = assess_fit(joints, skin, np.full(100, 0.005), QualityConfig(joint_spread_m=(0.010, 0.050)),
                        joint_spread=spread)
    assert ramped.joint_confidence[4] == pytest.approx(0.5) and np.delete(ramped.joint_confidence, 4).min() == 1.0
    assert ramped.score == 1.0 and not ramped.problems and ramped.terms["max_joint_spread_m"] == 0.030
    assert np.allclose(assess_fit(joints, skin, np.full(100, 0.005), joint_spread=spread).joint_confidence, 1.0)
    # Members that disagree at most joints (median spread 40 mm, halfway up the frame's 30 to 50 mm ramp): the
    # frame's score falls too, and is named, with or without the joints' spread ramp; without the frame's, not.
    scattered = np.full(9, 0.040)
    split = assess_fit(joints, skin, np.full(100, 0.005), QualityConfig(joint_spread_m=(0.010, 0.050)),
                       joint_spread=scattered)
    assert split.terms["agreement"] == pytest.approx(0.5) and split.score == pytest.approx(0.5)
    assert "disagree: median joint spread 40 mm" in split.problems[0]
    assert assess_fit(joints, skin, np.full(100, 0.005), joint_spread=scattered).score == pytest.approx(0.5)
    assert assess_fit(joints, skin, np.full(100, 0.005), QualityConfig(frame_spread_m=None),
                      joint_spread=scattered).score == 1.0
    # A fit the other checks doubt (the points 30 mm off its surface: 0.29, under the retry's 0.5) needs a
    # wider heading margin: 1.1 passes for a sound fit, not for a doubted one; 1.3 passes for both.
    assert assess_fit(joints, skin, np.full(100, 0.005), heading_margin=1.1).score == 1.0
    fragile = assess_fit(joints, skin, np.full(100, 0.030), heading_margin=1.1)
    assert fragile.terms["heading"] == 0.0 and fragile.score == 0.0 and "ambiguous heading" in fragile.problems[-1]
    assert assess_fit(joints, skin, np.full(100, 0.030), heading_margin=1.3).score == pytest.approx(
        assess_fit(joints, skin, np.full(100, 0.030)).score)

    # Seen from the left side, only the left leg's near face: the right leg's joints lie behind it, so with the
    # camera's position they are excused from the support check (and named), yet keep their low confidence;
    # the same right leg 1.2 m farther back (more than a person's depth) is not excused.
    camera = np.array([0.0, 3.0, 0.6])
    t = np.linspace(0, 1, 40)[:, None]
    near_leg = np.concatenate([joints[a] + t * (joints[b] - joints[a]) for a, b in ((0, 1), (1, 2), (2, 3), (3, 4))])
    near_face = np.concatenate([near_leg + [dx, 0.06, 0] for dx in (-0.03, 0.0, 0.03)])
    residual = np.full(100, 0.005)
    blind = assess_fit(joints, near_face, residual)
    seeing = assess_fit(joints, near_face, residual, camera_origin=camera)
    assert blind.score == 0.0 and "right_" in blind.problems[0]
    assert seeing.score == 1.0 and not seeing.problems and seeing.joint_confidence[6:].max() == 0.0
    assert set(seeing.terms["hidden_joints"]) == {"right_hip", "right_knee", "right_ankle", "right_foot"}
    behind = joints.copy()
    behind[5:, 1] -= 1.2
    pushed = assess_fit(behind, near_face, residual, camera_origin=camera)
    assert pushed.terms["support"] == 0.0 and not pushed.terms["hidden_joints"]

    # Seen from the front with no points near the right ankle and foot: a box 0.7 m in front of them on their
    # lines of sight hides them as the scene's points besides the legs (occluders); 1.5 m in front (farther than a
    # person's depth) it does not, nor do points just in front of them (under hidden_min_depth_m).
    camera = np.array([3.0, -0.1, 1.0])
    grid = np.stack(np.meshgrid(*[np.linspace(-0.01, 0.01, 3)] * 3), -1).reshape(-1, 3)
    towards_camera = (camera - joints[7:]) / np.linalg.norm(camera - joints[7:], axis=1, keepdims=True)
    box = {d: np.concatenate([j + d * u + grid for j, u in zip(joints[7:], towards_camera)]) for d in (0.7, 1.5)}
    floor = np.stack([j + d * u for j, u in zip(joints[7:], towards_camera) for d in (0.02, 0.05, 0.08)])
    floor = np.concatenate([floor + [0, dy, 0] for dy in (-0.005, 0.0, 0.005)])
    legs = skin[:7]
    unseen = assess_fit(joints, legs, residual, camera_origin=camera)
    assert unseen.score < 1.0 and not unseen.terms["hidden_joints"]
    boxed = assess_fit(joints, legs, residual, camera_origin=camera, occluders=box[0.7])
    assert boxed.score == 1.0 and set(boxed.terms["hidden_joints"]) == {"right_ankle", "right_foot"}
    assert boxed.joint_confidence[7:].max() < 1.0
    for far_or_under in (box[1.5], floor):
        free = assess_fit(joints, legs, residual, camera_origin=camera, occluders=far_or_under)
        assert free.score == unseen.score and not free.terms["hidden_joints"]
    # The whole right leg behind boxes is more than the scene may excuse (a foot and its ankle): a fit with a leg
    # placed behind clutter cannot be checked.
    to_camera = (camera - joints[5:]) / np.linalg.norm(camera - joints[5:], axis=1, keepdims=True)
    left_leg = skin[:5]
    boxes = np.concatenate([j + 0.7 * u + grid for j, u in zip(joints[5:], to_camera)])
    unchecked = assess_fit(joints, left_leg, residual, camera_origin=camera, occluders=boxes)
    assert unchecked.score < 0.2 and not unchecked.terms["hidden_joints"]


def test_a_board_in_front_of_a_foot_hides_it_only_as_part_of_the_scene(test_build):
    """A generated scene seen from the side (V6), the right foot's and ankle's points cut away: with a board on the
    foot's line of sight 0.6 m in front of it, the board's points hide the foot, so the fit is kept with the
    ankle and foot named hidden, from the scene as from the nodes' split of it (legs and occluders); without
    the board nothing hides them and the missing points fail the frame."""
    from posesdf_ros.inference.canonical import PersonTracker
    from posesdf_ros.skeleton import JOINT_INDEX

    fast = GaitPoseEstimator.from_pretrained(profile="fast", rotnet=False)
    a = np.load(test_build / "samples" / "test_normal_V6_000.npz")
    camera, truth = a["camera_to_gravity"][:3, 3], a["joints"]
    foot, ankle = truth[JOINT_INDEX["right_foot"]], truth[JOINT_INDEX["right_ankle"]]
    pts = a["points"]
    cut = pts[(np.linalg.norm(pts - foot, axis=1) >= 0.15) & (np.linalg.norm(pts - ankle, axis=1) >= 0.12)]
    sight = (camera - foot) / np.linalg.norm(camera - foot)
    across = np.cross(sight, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across)
    grid = np.stack(np.meshgrid(np.linspace(-0.1, 0.1, 21), np.linspace(-0.1, 0.1, 21)), -1).reshape(-1, 2)
    board = foot + 0.6 * sight + grid[:, :1] * across + grid[:, 1:] * np.cross(across, sight)
    yaw = heading_of(a["subject_to_gravity"])
    open_view = fast.estimate(cut, yaw=yaw, camera_origin=camera)
    assert not open_view.valid and "right_foot" in open_view.reason, open_view.reason
    behind_board = fast.estimate(np.concatenate([cut, board]), yaw=yaw, camera_origin=camera)
    assert behind_board.valid, behind_board.reason
    assert {"right_ankle", "right_foot"} <= set(behind_board.quality_terms["hidden_joints"])
    assert len(behind_board.legs) == len(open_view.legs)       # the board was not taken for a leg
    # As the nodes split it: the canonicaliser's step gives the legs and the scene's points that may hide a foot,
    # with which the estimator's fit of the legs is judged alike; the leg cloud alone fails.
    frame = PersonTracker(leg_classifier=fast.leg_classifier).update(0.0, np.concatenate([cut, board]), camera)
    assert frame.valid and 0 < len(frame.occluders) < len(cut)
    as_nodes = fast.estimate(frame.legs, yaw=yaw, camera_origin=camera, occluders=frame.occluders)
    assert as_nodes.valid and {"right_ankle", "right_foot"} <= set(as_nodes.quality_terms["hidden_joints"])
    assert not fast.estimate(frame.legs, yaw=yaw, camera_origin=camera).valid
    assert mpjpe_mm(behind_board.joints, truth) < MPJPE_BOUND_MM


def test_tracking_warm_starts_and_reset_forgets(estimator, body_model):
    a, _ = make_test_sample(body_model, SampleKey("test", 1, "normal", "V2"), seed=1)
    pts, yaw = a["points"][a["leg_mask"]], heading_of(a["subject_to_gravity"])
    first = estimator.estimate(pts, yaw=yaw, track=True)
    second = estimator.estimate(pts, yaw=yaw, track=True)
    assert second.iterations <= estimator.profile.track_iterations
    assert mpjpe_mm(second.joints, a["joints"]) < mpjpe_mm(first.joints, a["joints"]) + 10
    estimator.reset()
    assert estimator.estimate(pts, yaw=yaw, track=True).latent is not None


def test_narrow_band_mesh_matches_dense_grid():
    """The narrow-band evaluation gives the dense grid's mesh on the shipped model's mean shape."""
    from posesdf_ros.inference.meshing import extract_mesh

    est = GaitPoseEstimator.from_pretrained(profile="fast")
    z = est.latent_mean[None]
    sdf = lambda q: est.model(z, q[None])[0][0]  # noqa: E731
    dense_v, dense_f = extract_mesh(sdf, 33, narrow_band=False)
    band_v, band_f = extract_mesh(sdf, 33)
    assert len(dense_f) > 500
    assert len(band_v) == len(dense_v) and len(band_f) == len(dense_f)
    np.testing.assert_allclose(np.sort(band_v, axis=0), np.sort(dense_v, axis=0), atol=1e-3)


def test_heading_tracker_votes_front_back_flips_away():
    from posesdf_ros.inference.canonical import HeadingTracker

    t = HeadingTracker(window_s=1.0)
    assert t.update(0.1, 0.0) == (0.1, False)
    assert t.update(0.12, 0.1) == (0.12, False)
    yaw, flipped = t.update(0.1 + np.pi, 0.2)                  # one flip among three: turned back
    assert flipped and abs(yaw - 0.1) < 1e-9
    for k in range(3, 7):                                        # a real reversal: followed once it is the majority
        yaw, flipped = t.update(0.1 + np.pi, 0.1 * k)
    assert not flipped and t.corrected >= 1
    t.reset()
    assert t.update(2.0, 10.0) == (2.0, False) and t.corrected == 0


def _legs_moved_along_rays(test_build, offsets):
    """Each sample of the test build as (arrays, camera position (3,), leg points (N, 3)), the leg points moved
    along their camera rays by `offsets(legs, arrays)` (N,) metres."""
    import json

    for entry in json.loads((test_build / "manifest.json").read_text())["samples"]:
        with np.load(test_build / entry["file"]) as z:
            a = {k: z[k] for k in ("points", "leg_mask", "joints", "subject_to_gravity", "camera_to_gravity")}
        camera = a["camera_to_gravity"][:3, 3]
        legs = a["points"][a["leg_mask"]].astype(np.float64)
        rays = legs - camera
        yield a, camera, legs + rays / np.linalg.norm(rays, axis=1, keepdims=True) * offsets(legs, a)[:, None]


def test_an_ensemble_is_nearer_the_truth_than_its_members_and_says_how_far_they_disagree(test_build):
    """`Profile.members`: four fits on their own subsets of the same legs, joints averaged. On the CC and
    CV samples (true heading, leg points with 10 mm of range noise) the ensemble's mean error is below one
    member's; each joint's spread is reported, and without an ensemble there is none."""
    one = GaitPoseEstimator.from_pretrained(profile=replace(PROFILES["fast"], members=1), rotnet=False)
    four = one.with_profile(members=4)
    rng = np.random.default_rng(0)
    errors = {1: [], 4: []}
    for a, camera, legs in _legs_moved_along_rays(test_build, lambda legs, a: rng.normal(0, 0.01, len(legs))):
        for members, est in ((1, one), (4, four)):
            res = est.estimate(legs, yaw=heading_of(a["subject_to_gravity"]), camera_origin=camera,
                               segment=False, check_heading=False)
            assert res.valid, res.reason
            errors[members].append(mpjpe_mm(res.joints, a["joints"]))
            if members == 1:
                assert res.joint_spread is None
            else:
                assert res.joint_spread.shape == (9,) and (res.joint_spread > 0).all()
                assert res.joint_spread.max() < 0.05
    assert np.mean(errors[4]) < np.mean(errors[1]), errors
    with pytest.raises(ValueError, match="members"):
        one.with_profile(members=2, amortised=False)


def _toward_camera_m(joints: np.ndarray, truth: np.ndarray, camera: np.ndarray) -> float:
    """How far (metres) joints (9, 3) lie nearer the camera than the truth (9, 3) along each joint's ray, on
    average."""
    rays = truth - camera
    rays /= np.linalg.norm(rays, axis=1, keepdims=True)
    return float(-((joints - truth) * rays).sum(1).mean())


def _patch_noise(rng: np.random.Generator):
    """Offsets for `_legs_moved_along_rays`: 15 mm of range noise shared by each 0.014 rad patch of the
    image (a structured-light camera's blocks)."""
    def offsets(legs: np.ndarray, a: dict) -> np.ndarray:
        rays = (legs - a["camera_to_gravity"][:3, 3]) @ a["camera_to_gravity"][:3, :3]   # camera frame, z forward
        _, which = np.unique(np.floor(rays[:, :2] / rays[:, 2:] / 0.014).astype(int), axis=0, return_inverse=True)
        return rng.normal(0, 0.015, which.max() + 1)[which.ravel()]
    return offsets


def test_points_behind_the_seen_surface_keep_noisy_legs_from_drifting_toward_the_camera(test_build):
    """`Profile.behind_points`: depth noise shared by a patch of the image (a structured-light camera's)
    survives the smoothing, and an observed point's residual is its distance to the nearest skin, often
    the back or side one for a point pushed into a leg: thinner legs fit such points more cheaply, and the
    joints drift toward the camera. Points just behind the observed ones, which must be inside, keep the
    legs solid. On the CC and CV samples (true heading, one member, leg points moved along their rays by
    15 mm of noise per 0.014 rad patch) the joints lie less far toward the camera with them than without
    (at their fixed weight; the weight that grows with the noise is the next test's)."""
    without = GaitPoseEstimator.from_pretrained(profile=replace(PROFILES["fast"], members=1, behind_points=0,
                                                                noisy_behind_weight=None), rotnet=False)
    behind = PROFILES["fast"].behind_points
    with_behind = without.with_profile(behind_points=behind)
    rng = np.random.default_rng(0)
    toward_camera = {0: [], behind: []}     # metres, each joint's offset from the truth along its ray, negated
    errors = {0: [], behind: []}

    for a, camera, legs in _legs_moved_along_rays(test_build, _patch_noise(rng)):
        for count, est in ((0, without), (behind, with_behind)):
            res = est.estimate(legs, yaw=heading_of(a["subject_to_gravity"]), camera_origin=camera,
                               segment=False, check_heading=False)
            assert res.valid, res.reason
            toward_camera[count].append(_toward_camera_m(res.joints, a["joints"], camera))
            errors[count].append(mpjpe_mm(res.joints, a["joints"]))
    # Measured with 128 at 402cd58 (fast's 30 steps, its code prior at 3e-3): 3.9 mm toward the camera without,
    # 1.6 with; MPJPE 14.4 and 15.4 mm (at the prior's earlier 1e-2: 3.1 and 1.0, 14.2 and 15.1; at 80 steps
    # and 1e-2, before 4950c3e: 4.5 toward and 0.5 away, 18.1 and 16.6). On this heavy patch noise alone the
    # points behind cost the error about a millimetre; through the pipeline they lower it (the shifted split's
    # first third 21.0 -> 17.3 mm at 402cd58, our test scenes' 12.4 -> 12.0; docs/posesdf.md).
    assert np.mean(toward_camera[behind]) < np.mean(toward_camera[0]) - 0.002, toward_camera
    assert np.mean(errors[behind]) < np.mean(errors[0]) + 1.5, errors


def test_the_points_behind_weigh_more_only_where_the_depth_is_noisy(test_build):
    """`Profile.noisy_behind_weight`: the points behind the seen surface weigh `behind_weight` where the
    depth noise the smoothing leaves (perception.smoothing.depth_noise) is under the ramp's foot, and up to
    `noisy_behind_weight` above it. On the CC and CV samples (true heading, one member): a leg cloud as
    rendered, under the foot, is fitted exactly as at the fixed weight; the same clouds with 15 mm of range
    noise per 0.014 rad patch all measure above the foot and their joints lie less far toward the camera
    than at the fixed weight."""
    from posesdf_ros.perception.smoothing import depth_noise

    fixed = GaitPoseEstimator.from_pretrained(profile=replace(PROFILES["fast"], members=1, noisy_behind_weight=None),
                                              rotnet=False)
    ramp = fixed.with_profile(noisy_behind_weight=PROFILES["fast"].noisy_behind_weight)
    foot = ramp.profile.noise_ramp_m[0]
    rng = np.random.default_rng(0)
    clean_below_foot, toward = 0, {"fixed": [], "ramp": []}

    for a, camera, noisy in _legs_moved_along_rays(test_build, _patch_noise(rng)):
        yaw = heading_of(a["subject_to_gravity"])
        legs = a["points"][a["leg_mask"]].astype(np.float64)
        if depth_noise(legs, camera) < foot:
            clean_below_foot += 1
            fits = [est.estimate(legs, yaw=yaw, camera_origin=camera, segment=False, check_heading=False)
                    for est in (fixed, ramp)]
            assert np.array_equal(fits[0].joints, fits[1].joints)
            assert "depth_noise_m" not in fits[0].quality_terms and fits[1].quality_terms["behind_weight"] == 0.5
        assert depth_noise(noisy, camera) > foot
        for name, est in (("fixed", fixed), ("ramp", ramp)):
            res = est.estimate(noisy, yaw=yaw, camera_origin=camera, segment=False, check_heading=False)
            assert res.valid, res.reason
            toward[name].append(_toward_camera_m(res.joints, a["joints"], camera))
        # The noise and the weight it gave are reported with the quality's terms (the node's ~/quality).
        assert res.quality_terms["depth_noise_m"] == depth_noise(noisy, camera)
        assert 0.5 < res.quality_terms["behind_weight"] <= 2.0
    assert clean_below_foot >= 5
    # Measured: the clouds as rendered 2.1 to 4.9 mm, patch-noised 6.6 to 9.9 mm.
    assert np.mean(toward["ramp"]) < np.mean(toward["fixed"]) - 0.001, toward
