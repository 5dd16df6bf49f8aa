"""A virtual depth + RGB camera on Open3D's RaycastingScene.

The camera frame follows REP 103's optical convention (z forward, x right,
y down). Depth is the optical z of the first hit; invalid pixels are NaN.
The `realistic` noise profile follows the benchmark spec (RealSense
D435-like): axial sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2 m, 1 mm
quantisation, ~2 % random dropouts and flying pixels at silhouette edges.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

NOISE_PROFILES: tuple[str, ...] = ("clean", "realistic")

#: Pixel labels of a rendered frame.
LABEL_NONE, LABEL_FLOOR, LABEL_CLUTTER, LABEL_BODY, LABEL_LOWER_LIMB = 0, 1, 2, 3, 4

_DROPOUT_RATE = 0.02
_FLYING_PIXEL_RATE = 0.5     # share of silhouette-edge pixels that become mixed
_EDGE_JUMP_M = 0.05          # depth step that makes a silhouette edge
_QUANTUM_M = 0.001


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics; defaults are the spec's D435-like depth camera."""

    width: int = 640
    height: int = 360
    fx: float = 464.0
    fy: float = 464.0
    cx: float | None = None   # None: image centre
    cy: float | None = None

    @property
    def K(self) -> np.ndarray:
        cx = self.width / 2.0 if self.cx is None else self.cx
        cy = self.height / 2.0 if self.cy is None else self.cy
        return np.array([[self.fx, 0.0, cx], [0.0, self.fy, cy], [0.0, 0.0, 1.0]])

    def pixel_rays(self) -> np.ndarray:
        """(H, W, 3) ray directions in the optical frame with z = 1, so the
        hit distance along a ray is the pixel's depth."""
        K = self.K
        u, v = np.meshgrid(np.arange(self.width) + 0.5, np.arange(self.height) + 0.5)
        return np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)

    def to_dict(self) -> dict:
        return asdict(self) | {"K": self.K.tolist()}


@dataclass
class RenderedFrame:
    """One camera frame.

    depth: (H, W) float32 optical z in metres, NaN where invalid;
    rgb: (H, W, 3) uint8; labels: (H, W) uint8 (LABEL_*);
    camera_to_gravity: (4, 4) float64.
    """

    depth: np.ndarray
    rgb: np.ndarray
    labels: np.ndarray
    camera_to_gravity: np.ndarray
    intrinsics: Intrinsics

    def organised_cloud(self) -> np.ndarray:
        """(H, W, 3) float32 points in the optical frame, NaN where invalid."""
        return (self.intrinsics.pixel_rays() * self.depth[..., None]).astype(np.float32)

    def points_gravity(self) -> tuple[np.ndarray, np.ndarray]:
        """Valid points in the gravity frame (N, 3) float32 and their labels (N,)."""
        cloud = self.organised_cloud()
        valid = np.isfinite(self.depth)
        pts = cloud[valid].astype(np.float64)
        R, t = self.camera_to_gravity[:3, :3], self.camera_to_gravity[:3, 3]
        return (pts @ R.T + t).astype(np.float32), self.labels[valid]


def raycast(scene, intrinsics: Intrinsics, camera_to_gravity: np.ndarray) -> dict[str, np.ndarray]:
    """Cast one ray per pixel into an Open3D RaycastingScene (gravity frame).

    Returns t_hit (H, W) (= depth), geometry_ids, primitive_ids and
    primitive_normals (gravity frame), as numpy arrays.
    """
    import open3d as o3d

    dirs = intrinsics.pixel_rays() @ camera_to_gravity[:3, :3].T
    origins = np.broadcast_to(camera_to_gravity[:3, 3], dirs.shape)
    rays = np.concatenate([origins, dirs], -1).astype(np.float32)
    ans = scene.cast_rays(o3d.core.Tensor(rays))
    return {k: ans[k].numpy() for k in ("t_hit", "geometry_ids", "primitive_ids", "primitive_normals")}


def apply_depth_noise(depth: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                      profile: str) -> tuple[np.ndarray, np.ndarray]:
    """Sensor noise of `profile` on a clean depth image (NaN = no return).

    Returns the noisy depth and labels; flying pixels get LABEL_NONE since
    they lie on no surface.
    """
    if profile not in NOISE_PROFILES:
        raise ValueError(f"unknown noise profile {profile!r}; expected one of {NOISE_PROFILES}")
    if profile == "clean":
        return depth, labels
    depth = depth.copy()
    labels = labels.copy()
    # Flying pixels: at a depth step, the farther pixel mixes both surfaces.
    far = np.where(np.isfinite(depth), depth, np.inf)
    with np.errstate(invalid="ignore"):  # inf - inf where both pixels have no return
        depth, labels = _flying_pixels(depth, labels, far, rng)
    valid = np.isfinite(depth)
    sigma = 0.0012 + 0.0019 * (depth[valid] - 0.4) ** 2
    depth[valid] += rng.normal(size=sigma.shape) * sigma
    depth = np.round(depth / _QUANTUM_M) * _QUANTUM_M
    dropout = rng.random(depth.shape) < _DROPOUT_RATE
    depth[dropout] = np.nan
    return depth.astype(np.float32), labels


def _shifted(a: np.ndarray, shift: int, axis: int) -> np.ndarray:
    """`a` moved by one pixel along `axis`, padded with NaN (no wrap-around)."""
    out = np.full_like(a, np.nan)
    src = [slice(None)] * 2
    dst = [slice(None)] * 2
    src[axis], dst[axis] = (slice(None, -1), slice(1, None)) if shift > 0 else (slice(1, None), slice(None, -1))
    out[tuple(dst)] = a[tuple(src)]
    return out


def _flying_pixels(depth, labels, far, rng):
    for axis in (0, 1):
        for shift in (1, -1):
            neighbour = _shifted(far, shift, axis)
            edge = (far - neighbour > _EDGE_JUMP_M) & np.isfinite(neighbour)
            edge &= rng.random(depth.shape) < _FLYING_PIXEL_RATE / 4
            alpha = rng.uniform(0.2, 0.8, size=depth.shape)
            mixed = alpha * neighbour + (1 - alpha) * np.where(np.isfinite(far), far, neighbour + 1.0)
            depth[edge] = mixed[edge]
            labels[edge] = LABEL_NONE
    return depth, labels


def shade(normals: np.ndarray, view_dirs: np.ndarray, albedo: np.ndarray) -> np.ndarray:
    """Lambertian shading with a head light: (H, W, 3) uint8."""
    n = normals / np.maximum(np.linalg.norm(normals, axis=-1, keepdims=True), 1e-9)
    v = view_dirs / np.linalg.norm(view_dirs, axis=-1, keepdims=True)
    lambert = np.abs(np.sum(n * v, axis=-1, keepdims=True))
    return np.clip(albedo * (0.3 + 0.7 * lambert), 0, 255).astype(np.uint8)
