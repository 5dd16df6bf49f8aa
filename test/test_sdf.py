import numpy as np
import pytest
import trimesh

from posesdf_ros.data.body import sample_phenotype
from posesdf_ros.data.dataset import SampleKey, make_train_sample
from posesdf_ros.data.gait import GaitModel, GaitParams
from posesdf_ros.data.sdf import (
    JOINT_SAMPLES,
    SHAPE_SAMPLES,
    SPHERE_RADIUS,
    BodySDF,
    sphere_sdf,
    unit_sphere_normalisation,
)


@pytest.fixture(scope="module")
def posed(body_model):
    return body_model.pose(sample_phenotype("train", 3), GaitModel(GaitParams()).angles(np.array([0.2])))


def test_sdf_signs_agree_with_the_watertight_mesh(body_model, posed):
    verts, faces = posed.vertices[0], posed.faces
    mesh = trimesh.Trimesh(verts, faces, process=False)
    assert mesh.is_watertight
    rng = np.random.default_rng(0)
    lo, hi = verts.min(0), verts.max(0)
    pts = rng.uniform(lo, [hi[0], hi[1], posed.crop_height[0]], size=(3000, 3))
    sdf, _ = BodySDF(verts, faces, body_model.lower_limb_face)(pts)
    inside = _winding_number(pts, verts, faces) > 0.5
    assert inside.sum() > 50
    assert np.mean((sdf < 0) == inside) > 0.995
    # Joint centres lie inside the body.
    jsdf, _ = BodySDF(verts, faces, body_model.lower_limb_face)(posed.joints[0])
    assert (jsdf < 0).all()


def _winding_number(points, verts, faces, chunk=100):
    """Generalised winding number (Van Oosterom-Strackee solid angles): ~1 inside, ~0 outside."""
    tri = verts[faces]
    out = []
    for start in range(0, len(points), chunk):
        r = tri[None] - points[start:start + chunk, None, None, :]          # (P, F, 3, 3)
        n = np.linalg.norm(r, axis=-1)
        a, b, c = r[:, :, 0], r[:, :, 1], r[:, :, 2]
        det = np.einsum("pfi,pfi->pf", a, np.cross(b, c))
        dots = (n[..., 0] * n[..., 1] * n[..., 2] + np.einsum("pfi,pfi->pf", a, b) * n[..., 2]
                + np.einsum("pfi,pfi->pf", b, c) * n[..., 0] + np.einsum("pfi,pfi->pf", c, a) * n[..., 1])
        out.append((2 * np.arctan2(det, dots)).sum(1) / (4 * np.pi))
    return np.concatenate(out)


def test_sphere_sdf_is_analytic():
    joints = np.zeros((9, 3))
    joints[1] = [1, 0, 0]
    s = sphere_sdf(np.array([[0.0, 0.0, 0.0], [0.2, 0.0, 0.0]]), joints)
    assert s.shape == (2, 9)
    assert s[0, 0] == pytest.approx(-SPHERE_RADIUS) and s[1, 0] == pytest.approx(0.2 - SPHERE_RADIUS)
    assert s[1, 1] == pytest.approx(0.8 - SPHERE_RADIUS)


def test_training_sample_is_normalised_and_signed(body_model):
    arrays, entry = make_train_sample(body_model, SampleKey("train", 0), seed=0)
    assert arrays["points"].shape == (SHAPE_SAMPLES, 3) and arrays["sdf"].shape == (SHAPE_SAMPLES,)
    assert arrays["joint_points"].shape == (9 * JOINT_SAMPLES, 3)
    assert np.linalg.norm(arrays["points"], axis=1).max() < 1.0
    # The lower-limb surface fills the unit sphere up to DeepSDF's margin.
    surface_n = (arrays["gt_surface"] - arrays["norm_centre"]) * arrays["norm_scale"]
    assert np.linalg.norm(surface_n, axis=1).max() == pytest.approx(1 / 1.03, rel=1e-3)
    # Near-surface samples straddle the surface; some are inside.
    assert 0.2 < (arrays["sdf"] < 0).mean() < 0.6
    # Each joint's samples surround it, and the joints are inside the legs.
    per_joint = arrays["joint_points"].reshape(9, JOINT_SAMPLES, 3)
    assert np.allclose(per_joint.mean(1), arrays["joints"], atol=0.01)
    assert abs(entry["yaw_jitter_deg"]) <= 5.0


def test_unit_sphere_normalisation_round_trip():
    pts = np.random.default_rng(1).normal(size=(100, 3)) * [0.2, 0.3, 0.5] + [1, 2, 0.5]
    c, s = unit_sphere_normalisation(pts)
    assert np.linalg.norm((pts - c) * s, axis=1).max() == pytest.approx(1 / 1.03)
