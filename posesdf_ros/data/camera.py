"""A virtual depth + RGB camera on Open3D's RaycastingScene.

The camera frame follows REP 103's optical convention (z forward, x right,
y down). Depth is the optical z of the first hit; invalid pixels are NaN.
The `realistic` noise profile follows the benchmark spec (RealSense
D435-like): axial sigma(z) = 0.0012 + 0.0019 (z - 0.4)^2 m, 1 mm
quantisation, ~2 % random dropouts and flying pixels at silhouette edges.

The product engine (`data.domain`) and the shifted validation generator
(`data.shifted`) add sensor models of their own (`ToFNoise`,
`ActiveStereoNoise`, `StructuredLightNoise`): objects with a `name` and an
`apply` method, passed where a profile name goes. They need what the
renderer knows of each pixel's surface (`SurfaceInfo`: reflectance and
incidence) and the camera's focal length.
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
class SurfaceInfo:
    """What a depth sensor's signal depends on, per pixel: the surface's near-IR
    reflectance (0..1; taken as the visible albedo's mean) and the cosine of the
    angle between the ray and the surface normal (0 grazing .. 1 facing). NaN where no hit."""

    reflectance: np.ndarray
    cos_incidence: np.ndarray

    def signal(self, depth: np.ndarray) -> np.ndarray:
        """Returned light relative to a white wall facing the camera 1 m away."""
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(self.reflectance * self.cos_incidence / np.maximum(depth, 1e-3) ** 2)


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
                      profile, surface: SurfaceInfo | None = None,
                      intrinsics: Intrinsics | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Sensor noise of `profile` on a clean depth image (NaN = no return).

    `profile` is a name of NOISE_PROFILES or a sensor model (`ToFNoise`,
    `ActiveStereoNoise`, `StructuredLightNoise`), which also needs
    `surface` and `intrinsics`. Returns the noisy depth and labels; flying
    pixels get LABEL_NONE since they lie on no surface, and so do pixels a
    model invalidates.
    """
    if not isinstance(profile, str):
        if surface is None or intrinsics is None:
            raise ValueError(f"the {profile.name} noise model needs the surface and the intrinsics")
        return profile.apply(depth, labels, rng, surface, intrinsics)
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


def _flying_pixels(depth, labels, far, rng, rate: float = _FLYING_PIXEL_RATE):
    for axis in (0, 1):
        for shift in (1, -1):
            neighbour = _shifted(far, shift, axis)
            edge = (far - neighbour > _EDGE_JUMP_M) & np.isfinite(neighbour)
            edge &= rng.random(depth.shape) < rate / 4
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


# Sensor models of the product engine and of the shifted validation generator.

def _depth_edges(depth: np.ndarray, jump_m: float = _EDGE_JUMP_M) -> np.ndarray:
    """Pixels next to a depth step of more than `jump_m` (or next to no return), either side."""
    far = np.where(np.isfinite(depth), depth, np.inf)
    edge = np.zeros(depth.shape, bool)
    with np.errstate(invalid="ignore"):
        for axis in (0, 1):
            for shift in (1, -1):
                neighbour = _shifted(far, shift, axis)
                edge |= np.abs(far - neighbour) > jump_m
    return edge & np.isfinite(depth)


def _occluded(depth: np.ndarray, fb_px_m: float, direction: int, max_shift: int = 256) -> np.ndarray:
    """Pixels a second viewpoint `baseline` to the side cannot see (stereo occlusion, projector shadow).

    `fb_px_m` is focal length (px) x baseline (m), so a pixel's disparity is
    fb / z. A pixel is hidden when a nearer pixel on the `direction` side
    (+1: to its right, -1: to its left) lands on or beyond it in the other view.
    """
    disparity = np.where(np.isfinite(depth), fb_px_m / np.maximum(depth, 1e-3), 0.0)
    hidden = np.zeros(depth.shape, bool)
    width = depth.shape[1]
    span = int(min(max_shift, width - 1, np.ceil(disparity.max() - disparity[disparity > 0].min()) if
                   (disparity > 0).any() else 0))
    for s in range(1, span + 1):
        other = np.zeros_like(disparity)
        if direction > 0:
            other[:, :-s] = disparity[:, s:]
        else:
            other[:, s:] = disparity[:, :-s]
        hidden |= other - disparity > s
    return hidden & np.isfinite(depth)


def _box_mean(a: np.ndarray, radius: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(a.astype(np.float64), size=2 * radius + 1, mode="nearest")


@dataclass(frozen=True)
class ToFNoise:
    """Amplitude-modulated time-of-flight (Azure Kinect, Orbbec Femto):

    - axial sigma from shot noise: sigma = sigma_1m_m / sqrt(signal), signal =
      reflectance x cos(incidence) / z^2 (`SurfaceInfo.signal`), capped at sigma_max_m;
    - invalid where the signal is below `min_signal` (dark or grazing surfaces, far away)
      and outside [min_range_m, max_range_m];
    - mixed ("flying") pixels at depth steps, a share `flying_rate` of the edge pixels;
    - multipath: a pixel reads longer by up to `multipath_m` x the share of its
      9 x 9 neighbourhood that belongs to another surface within 0.3 m (light
      bouncing between the floor and a foot, or between the legs);
    - 1 mm quantisation and `dropout` random holes.
    """

    name: str = "tof"
    sigma_1m_m: float = 0.0015
    sigma_max_m: float = 0.02
    min_signal: float = 0.01
    min_range_m: float = 0.5
    max_range_m: float = 3.86
    flying_rate: float = 0.9
    multipath_m: float = 0.015
    dropout: float = 0.005

    def apply(self, depth, labels, rng, surface: SurfaceInfo, intrinsics: Intrinsics):
        depth, labels = depth.copy(), labels.copy()
        valid = np.isfinite(depth)
        signal = surface.signal(depth)
        # Multipath before anything moves: another surface close by in the image and in depth.
        near_other = np.zeros(depth.shape)
        for label in np.unique(labels[valid]):
            mine = valid & (labels == label)
            other = valid & (labels != label)
            share = _box_mean(other, 4)
            with np.errstate(invalid="ignore"):
                close = np.abs(_box_mean(np.where(other, depth, 0.0), 4) / np.maximum(share, 1e-9) - depth) < 0.3
            near_other[mine & close] = share[mine & close]
        far = np.where(valid, depth, np.inf)
        with np.errstate(invalid="ignore"):
            depth, labels = _flying_pixels(depth, labels, far, rng, self.flying_rate)
        valid = np.isfinite(depth)
        sigma = np.minimum(self.sigma_1m_m / np.sqrt(np.maximum(signal, 1e-6)), self.sigma_max_m)
        depth[valid] += (rng.normal(size=depth.shape) * sigma)[valid]
        depth[valid] += (self.multipath_m * near_other * rng.uniform(0.5, 1.0, depth.shape))[valid]
        depth = np.round(depth / _QUANTUM_M) * _QUANTUM_M
        with np.errstate(invalid="ignore"):
            dead = (signal < self.min_signal) | (depth < self.min_range_m) | (depth > self.max_range_m)
        dead |= rng.random(depth.shape) < self.dropout
        dead &= np.isfinite(depth)
        depth[dead] = np.nan
        labels[dead] = LABEL_NONE
        return depth.astype(np.float32), labels


@dataclass(frozen=True)
class ActiveStereoNoise:
    """Active infrared stereo (RealSense D4xx): depth from disparity d = fx B / z.

    - disparity noise of `subpixel_sigma_px` (RMS) then quantisation to
      `disparity_step_px`: both depth error and depth step grow with z^2
      (dz = z^2 dd / (fx B));
    - holes: pixels the right imager cannot see (a band left of nearer
      objects, `B fx (1/z_near - 1/z_far)` pixels wide), pixels within one
      pixel of a depth step (a share `edge_hole_rate`), low-texture pixels
      where the projected pattern is too faint (signal below
      `min_signal`, `SurfaceInfo.signal`: dark, grazing or far surfaces),
      outside [min_range_m, max_range_m], and `dropout` random holes;
    - flying pixels at the remaining edges (a share `flying_rate`).
    """

    name: str = "active_stereo"
    baseline_m: float = 0.050
    subpixel_sigma_px: float = 0.08
    disparity_step_px: float = 1.0 / 32.0
    min_signal: float = 0.008
    min_range_m: float = 0.28
    max_range_m: float = 10.0
    edge_hole_rate: float = 0.5
    flying_rate: float = 0.2
    dropout: float = 0.005

    def apply(self, depth, labels, rng, surface: SurfaceInfo, intrinsics: Intrinsics):
        depth, labels = depth.copy(), labels.copy()
        fb = intrinsics.fx * self.baseline_m
        signal = surface.signal(depth)
        hidden = _occluded(depth, fb, +1)
        edge_hole = _depth_edges(depth) & (rng.random(depth.shape) < self.edge_hole_rate)
        far = np.where(np.isfinite(depth), depth, np.inf)
        with np.errstate(invalid="ignore"):
            depth, labels = _flying_pixels(depth, labels, far, rng, self.flying_rate)
        depth = _through_disparity(depth, fb, rng.normal(size=depth.shape) * self.subpixel_sigma_px,
                                   self.disparity_step_px)
        with np.errstate(invalid="ignore"):
            faint = signal < self.min_signal * rng.uniform(0.5, 1.5, depth.shape)
            dead = hidden | edge_hole | faint | (depth < self.min_range_m) | (depth > self.max_range_m)
        dead |= rng.random(depth.shape) < self.dropout
        dead &= np.isfinite(depth)
        depth[dead] = np.nan
        labels[~np.isfinite(depth)] = LABEL_NONE
        return depth.astype(np.float32), labels


@dataclass(frozen=True)
class StructuredLightNoise:
    """Structured light (Kinect v1, Orbbec Astra); used by the shifted validation split only.

    - the projector's shadow: pixels the projector, `baseline_m` to the
      camera's left, cannot light (a band right of nearer objects);
    - disparity quantised to `disparity_step_px` (1/8 px) with spatially
      correlated noise (`block_sigma_px` on an 8 x 8 pixel grid, blocky like
      the sensor's correlation window) plus `pixel_sigma_px` per pixel;
    - holes where reflectance x cos(incidence) is below `min_reflect`
      (dark or grazing surfaces, whatever the range), outside
      [min_range_m, max_range_m] and at depth steps (the whole edge).

    `depth_error` and `holes` switch the two halves off for an ablation
    (`posesdf data build --split shifted --sensor`); the random draws are
    the same either way, so the scenes match pixel for pixel.
    """

    name: str = "structured_light"
    baseline_m: float = 0.075
    disparity_step_px: float = 1.0 / 8.0
    block_sigma_px: float = 0.06
    pixel_sigma_px: float = 0.03
    min_reflect: float = 0.06
    min_range_m: float = 0.6
    max_range_m: float = 5.0
    depth_error: bool = True        # disparity noise and quantisation
    holes: bool = True              # shadow, edge, dark and out-of-range holes

    def apply(self, depth, labels, rng, surface: SurfaceInfo, intrinsics: Intrinsics):
        depth, labels = depth.copy(), labels.copy()
        fb = intrinsics.fx * self.baseline_m
        shadow = _occluded(depth, fb, -1)
        edge = _depth_edges(depth)
        h, w = depth.shape
        blocks = rng.normal(size=(h // 8 + 1, w // 8 + 1)) * self.block_sigma_px
        correlated = np.repeat(np.repeat(blocks, 8, 0), 8, 1)[:h, :w]
        pixel = rng.normal(size=depth.shape) * self.pixel_sigma_px
        if self.depth_error:
            depth = _through_disparity(depth, fb, correlated + pixel, self.disparity_step_px)
        if self.holes:
            with np.errstate(invalid="ignore"):
                dark = np.nan_to_num(surface.reflectance * surface.cos_incidence) < self.min_reflect
                dead = shadow | edge | dark | (depth < self.min_range_m) | (depth > self.max_range_m)
            depth[dead & np.isfinite(depth)] = np.nan
        labels[~np.isfinite(depth)] = LABEL_NONE
        return depth.astype(np.float32), labels


def _through_disparity(depth: np.ndarray, fb: float, noise_px: np.ndarray, step_px: float) -> np.ndarray:
    """Depth as a triangulating sensor measures it: disparity fb / z plus `noise_px`, quantised to
    `step_px`, back to depth. NaN where there was no depth or the disparity is not positive."""
    valid = np.isfinite(depth)
    disparity = np.where(valid, fb / np.maximum(np.nan_to_num(depth, nan=1.0), 1e-3), np.nan)
    disparity = np.round((disparity + noise_px) / step_px) * step_px
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid & (disparity > 0), fb / disparity, np.nan)


#: The sensor model classes by name, as manifests record them.
SENSOR_MODELS = {m.name: m for m in (ToFNoise, ActiveStereoNoise, StructuredLightNoise)}


def noise_name(profile) -> str:
    return profile if isinstance(profile, str) else profile.name
