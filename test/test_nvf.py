"""NVF voting backend: vote encoding, the head on PoseSDF features, training, the backend switch."""
import json
import shutil

import numpy as np
import pytest
import torch

from posesdf_ros.evaluation.benchmark import leg_input
from posesdf_ros.evaluation.metrics import heading_of, mpjpe_mm
from posesdf_ros.inference.estimator import GaitPoseEstimator
from posesdf_ros.inference.nvf import VoteDecoding, decode_votes
from posesdf_ros.inference.pretrained import load_nvf, load_posesdf, weights_folder
from posesdf_ros.models.nvf import posesdf_features, vote_targets
from posesdf_ros.perception.smoothing import smoothed


@pytest.mark.parametrize("selection", [VoteDecoding("fraction", 0.5), VoteDecoding("knn", k=16)])
def test_vote_encoding_inverts_exactly_on_synthetic_points(selection):
    gen = torch.Generator().manual_seed(0)
    joints = torch.rand(1, 9, 3, generator=gen) - 0.5
    radius = 0.3
    # Points within R of every joint vote for it; far points (w = 0) must not matter.
    near = joints[0, torch.randint(0, 9, (400,), generator=gen)] + 0.05 * torch.randn(400, 3, generator=gen)
    far = 5.0 + torch.rand(100, 3, generator=gen)
    points = torch.cat([near, far])[None].double()
    w, u = vote_targets(points, joints.double(), radius)
    assert w.min() >= 0 and w.max() <= 1 and (w[0, 400:] == 0).all()
    assert torch.allclose(u.norm(dim=-1), torch.ones_like(w))
    decoded = decode_votes(points[0], w[0], u[0], radius, selection)
    assert torch.allclose(decoded, joints[0].double(), atol=1e-9)


def test_vote_decoding_weighs_by_w_and_falls_back_when_nobody_votes():
    points = torch.zeros(3, 3)
    u = torch.zeros(3, 9, 3)
    u[..., 0] = 1.0
    w = torch.zeros(3, 9)
    w[:, 0] = torch.tensor([0.5, 0.25, -0.1])     # joint 0: two voters, top half keeps the first
    c = decode_votes(points, w, u, 1.0, VoteDecoding("fraction", 0.5, k=2))
    assert torch.allclose(c[0], torch.tensor([0.5, 0.0, 0.0]))
    # Joints 1..8: no point has w > 0; the k = 2 best (w clamped to 0, equal weights) vote R along u.
    assert torch.allclose(c[1:], torch.tensor([1.0, 0.0, 0.0]).expand(8, 3))
    with pytest.raises(ValueError, match="selection"):
        VoteDecoding("median")


def test_features_reproduce_the_posesdf_forward_pass_exactly():
    model, _ = load_posesdf()
    z, p = 0.05 * torch.randn(2, 64), torch.rand(2, 100, 3) - 0.5
    with torch.no_grad():
        shape, pose = model(z, p)
        feats = posesdf_features(model, z, p)
    assert torch.equal(feats.shape, shape) and torch.equal(feats.pose, pose)
    assert feats.hidden.shape == (2, 100, 2 * model.config.width)


def test_head_trains_on_a_tiny_set_and_loads_as_a_backend(train_build, tmp_path):
    """Tiny training on two real shapes with the shipped trunk: the loss falls, the run folder loads."""
    from posesdf_ros.training.nvf_trainer import preset, train_nvf

    trunk = tmp_path / "trunk"
    trunk.mkdir()
    for name in ("posesdf.pt", "posesdf.json", "posesdf_codes.npy"):
        shutil.copy(weights_folder() / name, trunk / name)
    config = preset("tiny")
    summary = train_nvf(train_build, tmp_path / "run", config, trunk, progress=False)
    history = _history(tmp_path / "run")
    assert summary["epochs_done"] == config.epochs and len(history) == config.epochs
    first, last = np.mean([h["loss"] for h in history[:3]]), np.mean([h["loss"] for h in history[-3:]])
    assert last < 0.5 * first, (first, last)
    assert history[-1]["train_joint_error_mm"] < history[0]["train_joint_error_mm"]
    head, meta = load_nvf(tmp_path / "run")
    assert meta["epochs_done"] == config.epochs and head.config.radius == config.model.radius
    # A head is tied to its trunk: other PoseSDF weights beside it are refused.
    state = torch.load(tmp_path / "run" / "posesdf.pt", weights_only=True)
    next(iter(state.values())).add_(1.0)
    torch.save(state, tmp_path / "run" / "posesdf.pt")
    with pytest.raises(ValueError, match="other PoseSDF weights"):
        load_nvf(tmp_path / "run")


def test_surface_set_reads_a_pack_like_its_build(train_build, tmp_path):
    """The vote head's training points from a pack (`posesdf data pack`): near-surface samples of the
    same shapes, within the band, with the build's joints and scales."""
    from posesdf_ros.data.pack import pack_training_build
    from posesdf_ros.training.nvf_trainer import SurfaceSet

    pack_training_build(train_build, tmp_path / "train.npz", 2000, 10, progress=False)
    build = SurfaceSet(train_build, 0.03, 500, progress=False)
    packed = SurfaceSet(tmp_path / "train.npz", 0.03, 500, progress=False)
    assert packed.points.shape == build.points.shape == (2, 500, 3)
    np.testing.assert_allclose(packed.joints, build.joints, atol=1e-6)
    np.testing.assert_allclose(packed.scale, build.scale, rtol=1e-12)
    manifest = json.loads((train_build / "manifest.json").read_text())
    for k, entry in enumerate(manifest["samples"]):
        # Each packed point lies within float16 rounding of one of the build's near-surface points.
        with np.load(train_build / entry["file"]) as z:
            near = z["points"][:45_000][np.abs(z["sdf"][:45_000]) < 0.03]
        assert torch.cdist(packed.points[k], torch.from_numpy(near)).min(1).values.max() < 1e-3


def test_fits_of_val_views_train_the_head_in_the_fit_frame(train_build, test_build, body_model, tmp_path):
    """`nvf-fits` keeps codes fitted to val views with their voters and ground truth in the fit's
    frame (the frame of `canonical_points`, exactly), and `train nvf --fits` learns from them."""
    from posesdf_ros.data.dataset import build_dataset, load_manifest
    from posesdf_ros.training.nvf_fits import FittedSet, collect_fits
    from posesdf_ros.training.nvf_trainer import SWEPT_DECODINGS, decoding_sweep, preset, train_nvf

    val = tmp_path / "val"
    build_dataset(val, "val", protocol="CC", limit=1, progress=False, body_model=body_model)
    # The fit frame: every optimised point is one of the (smoothed, as `fast` fits them) leg points mapped by
    # to_fit_frame.
    with np.load(val / load_manifest(val)["samples"][0]["file"]) as z:
        a = {k: z[k] for k in z.files}
    est = GaitPoseEstimator.from_pretrained("posesdf", "fast", rotnet=False, leg_classifier=False)
    camera = a["camera_to_gravity"][:3, 3]
    res = est.estimate(leg_input(a), yaw=heading_of(a["subject_to_gravity"]), camera_origin=camera)
    legs = leg_input(a).astype(np.float64)
    mapped = torch.as_tensor(res.to_fit_frame(smoothed(legs, legs, est.profile.smoothing_neighbours, camera)))
    nearest = torch.cdist(torch.as_tensor(res.canonical_points), mapped,
                          compute_mode="donot_use_mm_for_euclid_dist").min(1).values
    assert nearest.max() < 1e-5, nearest.max()

    for shard in ((0, 2), (1, 2)):
        collect_fits(val, tmp_path / "fits", "fast", shard=shard, progress=False)
    fits = FittedSet.load(tmp_path / "fits")
    assert len(fits) == 4 and (fits.counts > fits.observed).all() and (fits.observed == 256).all()
    assert np.all((fits.sphere_mm > 0) & (fits.sphere_mm < 200))
    assert (fits.joints.norm(dim=-1) < 1.2).all() and ((fits.scale > 1.0) & (fits.scale < 2.5)).all()
    with pytest.raises(ValueError, match="is a test build"):     # never fitted to the test bodies
        collect_fits(test_build, tmp_path / "nope", "fast", progress=False)

    trunk = tmp_path / "trunk"
    trunk.mkdir()
    for name in ("posesdf.pt", "posesdf.json", "posesdf_codes.npy"):
        shutil.copy(weights_folder() / name, trunk / name)
    summary = train_nvf(train_build, tmp_path / "run", preset("tiny"), trunk, progress=False,
                        fits=tmp_path / "fits", val_fits=tmp_path / "fits")
    history = _history(tmp_path / "run")
    assert summary["epochs_done"] == len(history)
    assert history[-1]["val_fit_error_mm"] < history[0]["val_fit_error_mm"]
    assert history[0]["val_fit_sphere_mm"] == pytest.approx(fits.sphere_mm.mean())
    meta = load_nvf(tmp_path / "run")[1]
    assert meta["fitted_views"] == 4 and "--fits" in meta["command"]
    # The vote selections compared on fits: the default one is the logged val-fit error of the exported head.
    sweep = decoding_sweep(tmp_path / "fits", tmp_path / "run")
    assert len(sweep["rows"]) == len(SWEPT_DECODINGS) and sweep["views"] == 4
    assert sweep["sphere_mpjpe_mm"] == pytest.approx(fits.sphere_mm.mean())
    default = next(r for r in sweep["rows"] if r["rule"] == "knn" and r["k"] == VoteDecoding().k)
    assert default["mpjpe_mm"] == pytest.approx(history[-1]["val_fit_error_mm"], rel=1e-5)


def _history(run):
    import csv

    with open(run / "loss.csv") as f:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(f)]


def test_backend_switch_same_latent_fit_joints_by_voting(test_build):
    """The shipped weights: nvf reuses posesdf's latent fit and only changes joint extraction."""
    from posesdf_ros.data.dataset import load_manifest

    entry = load_manifest(test_build)["samples"][0]
    with np.load(test_build / entry["file"]) as z:
        a = {k: z[k] for k in z.files}
    results = {}
    for backend in ("posesdf", "nvf"):
        est = GaitPoseEstimator.from_pretrained(backend, "fast", rotnet=False)
        assert est.backend == backend and (est.nvf_head is not None) == (backend == "nvf")
        results[backend] = est.estimate(leg_input(a), yaw=heading_of(a["subject_to_gravity"]),
                                        camera_origin=a["camera_to_gravity"][:3, 3])
    sdf, nvf = results["posesdf"], results["nvf"]
    assert sdf.valid and nvf.valid and "joint_extraction" in nvf.timings
    assert np.array_equal(sdf.latent, nvf.latent)
    assert not np.allclose(sdf.joints, nvf.joints)
    assert mpjpe_mm(nvf.joints, a["joints"]) < 80.0, mpjpe_mm(nvf.joints, a["joints"])
    with pytest.raises(ValueError, match="backend"):
        GaitPoseEstimator(est.model, est.meta, est.profile, backend="nvf")   # no head


def test_estimator_node_parameter_switches_to_nvf_over_dds(graph):
    """`backend:=nvf` on the real estimator node, fed by the synthetic camera and canonicaliser over DDS."""
    from diagnostic_msgs.msg import DiagnosticArray
    from geometry_msgs.msg import PoseArray
    from ros_graph import status_values, statuses

    from posesdf_ros.ros.bringup import make_nodes
    from posesdf_ros.ros.markers import pose_array_to_joints

    for msg_type, topic in ((PoseArray, "/synthetic_camera/ground_truth/joints"),
                            (PoseArray, "/estimator/joints"), (DiagnosticArray, "/diagnostics")):
        graph.listen(msg_type, topic)
    graph.add(make_nodes(["synthetic_camera", "canonicaliser", "estimator"], context=graph.context, overrides={
        "synthetic_camera": {"rate_hz": 4.0, "loop_frames": 3},
        "estimator": {"backend": "nvf", "mesh_rate_hz": 0.0, "overlay": False}}))
    assert graph.wait_for(lambda r: len(r["/estimator/joints"]) >= 3
                          and any(status_values(s).get("backend") == "nvf" for s in statuses(r, "estimator"))), \
        "no joints or no nvf diagnostics from the estimator"
    r = graph.received
    truth = {(m.header.stamp.sec, m.header.stamp.nanosec): pose_array_to_joints(m)
             for m in r["/synthetic_camera/ground_truth/joints"]}
    errors = [np.linalg.norm(pose_array_to_joints(m) - truth[(m.header.stamp.sec, m.header.stamp.nanosec)],
                             axis=1).mean() * 1e3 for m in r["/estimator/joints"]]
    assert np.mean(errors) < 60.0, f"MPJPE {np.mean(errors):.1f} mm over {len(errors)} frames"
