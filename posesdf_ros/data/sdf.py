"""Lower-limb surfaces, their unit-sphere normalisation and SDF samples.

The lower-limb shape is the posed body surface below z_pelvis + 0.10 m
(benchmark spec). Arm and hand skin is left out of it even where a
swinging hand dips below that plane: its surface samples come from the
lower-limb triangles only, and SDF samples whose nearest body triangle
belongs to an arm are dropped, so the zero level set in the region is the
legs' surface. Signed distances are those of the whole watertight body
mesh (Open3D, sign by a majority vote of 3 rays).

Sample layout (DeepSDF, as in the PoseSDF paper): near-surface points
(surface points displaced along a random direction with sigma 0.05 and
0.0158 in normalised units, DeepSDF's variances 0.0025 and 0.00025),
uniform points in the unit sphere, all inside the crop region, and 8,000
points per joint sphere (radius 0.05 normalised), whose sphere SDFs are
analytic (`sphere_sdf`).
"""
from __future__ import annotations

import numpy as np

SURFACE_SAMPLES = 30_000
SHAPE_SAMPLES = 50_000
UNIFORM_SHARE = 0.1
JOINT_SAMPLES = 8_000
SPHERE_RADIUS = 0.05          # normalised units (paper: r = 0.05)
NEAR_SIGMAS = (0.05, 0.0158)  # normalised units
NORMALISATION_MARGIN = 1.03   # DeepSDF: the shape fills 1/1.03 of the unit sphere


def sample_triangles(vertices: np.ndarray, faces: np.ndarray, count: int,
                     rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform samples on triangles: (count, 3)."""
    tri = vertices[faces]
    area = 0.5 * np.linalg.norm(np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]), axis=1)
    choice = rng.choice(len(faces), size=count, p=area / area.sum())
    u, v = rng.random((2, count))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[choice]
    return t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])


def lower_limb_surface(vertices: np.ndarray, faces: np.ndarray, lower_limb_face: np.ndarray,
                       crop_height: float, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` points on the lower-limb surface below the crop plane: (count, 3)."""
    keep = lower_limb_face & (vertices[faces][:, :, 2].min(axis=1) < crop_height)
    out = np.empty((0, 3))
    while len(out) < count:
        pts = sample_triangles(vertices, faces[keep], int(count * 1.3) + 16, rng)
        out = np.concatenate([out, pts[pts[:, 2] < crop_height]])
    return out[:count]


def unit_sphere_normalisation(surface: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre (3,) and scale mapping `surface` into the unit sphere: x' = (x - c) * s."""
    centre = 0.5 * (surface.min(0) + surface.max(0))
    radius = np.linalg.norm(surface - centre, axis=1).max()
    return centre, float(1.0 / (NORMALISATION_MARGIN * radius))


def sphere_sdf(points: np.ndarray, joints: np.ndarray, radius: float = SPHERE_RADIUS) -> np.ndarray:
    """Signed distances to the nine joint spheres. (N, 3), (9, 3) -> (N, 9)."""
    return np.linalg.norm(points[:, None, :] - joints[None], axis=-1) - radius


class BodySDF:
    """Signed distance to a watertight body mesh, and which triangles are arms."""

    def __init__(self, vertices: np.ndarray, faces: np.ndarray, lower_limb_face: np.ndarray):
        import open3d as o3d

        self.scene = o3d.t.geometry.RaycastingScene()
        self.scene.add_triangles(o3d.core.Tensor(vertices.astype(np.float32)),
                                 o3d.core.Tensor(faces.astype(np.uint32)))
        self.lower_limb_face = lower_limb_face

    def __call__(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Signed distance (N,) (negative inside) and whether the nearest triangle is lower-limb (N,)."""
        import open3d as o3d

        q = o3d.core.Tensor(points.astype(np.float32))
        sdf = self.scene.compute_signed_distance(q, nsamples=3).numpy()
        nearest = self.scene.compute_closest_points(q)["primitive_ids"].numpy()
        return sdf, self.lower_limb_face[nearest]


def sdf_samples(vertices: np.ndarray, faces: np.ndarray, lower_limb_face: np.ndarray,
                joints: np.ndarray, crop_height: float, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """SDF training samples of one posed body (subject frame, metres in).

    Returns, in normalised units: `points` (SHAPE_SAMPLES, 3) and `sdf`;
    `joint_points` (9 * JOINT_SAMPLES, 3) and their shape `joint_points_sdf`;
    `joints` (9, 3); plus `norm_centre`, `norm_scale` and `gt_surface`
    (SURFACE_SAMPLES, 3, metres) of the lower-limb shape.
    """
    surface = lower_limb_surface(vertices, faces, lower_limb_face, crop_height, SURFACE_SAMPLES, rng)
    centre, scale = unit_sphere_normalisation(surface)
    sdf_of = BodySDF((vertices - centre) * scale, faces, lower_limb_face)
    crop = (crop_height - centre[2]) * scale
    surface_n = (surface - centre) * scale
    joints_n = (joints - centre) * scale

    def draw(make, count: int) -> tuple[np.ndarray, np.ndarray]:
        pts, sdf = np.empty((0, 3)), np.empty(0)
        while len(pts) < count:
            cand = make(count)
            cand = cand[(cand[:, 2] < crop) & (np.linalg.norm(cand, axis=1) < 1.0)]
            s, on_legs = sdf_of(cand)
            pts, sdf = np.concatenate([pts, cand[on_legs]]), np.concatenate([sdf, s[on_legs]])
        return pts[:count], sdf[:count]

    def near(count: int) -> np.ndarray:
        base = surface_n[rng.integers(0, len(surface_n), count)]
        sigma = np.where(rng.random(count) < 0.5, *NEAR_SIGMAS)
        return base + rng.normal(size=(count, 3)) * sigma[:, None]

    def uniform(count: int) -> np.ndarray:
        d = rng.normal(size=(count, 3))
        return d / np.linalg.norm(d, axis=1, keepdims=True) * rng.random((count, 1)) ** (1 / 3)

    n_uniform = int(SHAPE_SAMPLES * UNIFORM_SHARE)
    p_near, s_near = draw(near, SHAPE_SAMPLES - n_uniform)
    p_uni, s_uni = draw(uniform, n_uniform)

    joint_pts, joint_sdf = [], []
    for j in joints_n:
        def around(count: int, j=j) -> np.ndarray:
            # Half on the sphere's shell, half filling a ball of 3 radii.
            d = rng.normal(size=(count, 3))
            d /= np.linalg.norm(d, axis=1, keepdims=True)
            shell = SPHERE_RADIUS * (1 + 0.2 * rng.normal(size=count))
            ball = 3 * SPHERE_RADIUS * rng.random(count) ** (1 / 3)
            r = np.where(rng.random(count) < 0.5, shell, ball)
            return j + d * np.abs(r)[:, None]
        pts = around(JOINT_SAMPLES)
        joint_pts.append(pts)
        joint_sdf.append(sdf_of(pts)[0])
    return {
        "points": np.concatenate([p_near, p_uni]).astype(np.float32),
        "sdf": np.concatenate([s_near, s_uni]).astype(np.float32),
        "joint_points": np.concatenate(joint_pts).astype(np.float32),
        "joint_points_sdf": np.concatenate(joint_sdf).astype(np.float32),
        "joints": joints_n.astype(np.float32),
        "norm_centre": centre.astype(np.float64),
        "norm_scale": np.float64(scale),
        "gt_surface": surface.astype(np.float32),
    }
