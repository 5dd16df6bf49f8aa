"""The skeleton drawn on the RGB image, projected through the camera's intrinsics (numpy only)."""
from __future__ import annotations

import numpy as np

from ..skeleton import BONES, JOINT_NAMES

SIDE_RGB = {"left": (40, 150, 255), "right": (255, 110, 50), "pelvis": (235, 235, 235)}


def project(points_gravity: np.ndarray, camera_to_gravity: np.ndarray, K: np.ndarray) -> np.ndarray:
    """(N, 3) gravity-frame points -> (N, 2) pixels (NaN behind the camera)."""
    T = np.linalg.inv(camera_to_gravity)
    cam = points_gravity @ T[:3, :3].T + T[:3, 3]
    uv = cam @ np.asarray(K, float).T
    with np.errstate(divide="ignore", invalid="ignore"):
        px = uv[:, :2] / uv[:, 2:3]
    px[cam[:, 2] <= 1e-6] = np.nan
    return px


def _disk(image: np.ndarray, centre: np.ndarray, radius: float, colour) -> None:
    h, w = image.shape[:2]
    if not np.isfinite(centre).all():
        return
    x0, x1 = int(max(0, centre[0] - radius)), int(min(w, centre[0] + radius + 1))
    y0, y1 = int(max(0, centre[1] - radius)), int(min(h, centre[1] + radius + 1))
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1]
    inside = (xx + 0.5 - centre[0]) ** 2 + (yy + 0.5 - centre[1]) ** 2 <= radius ** 2
    image[y0:y1, x0:x1][inside] = colour


def _line(image: np.ndarray, a: np.ndarray, b: np.ndarray, width: float, colour) -> None:
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return
    steps = int(np.clip(np.linalg.norm(b - a), 1, 4000))
    for t in np.linspace(0.0, 1.0, steps + 1):
        _disk(image, a + t * (b - a), width / 2, colour)


def draw_skeleton(rgb: np.ndarray, joints_gravity: np.ndarray, camera_to_gravity: np.ndarray, K: np.ndarray,
                  joint_radius_px: float = 4.0) -> np.ndarray:
    """A copy of `rgb` (H, W, 3 uint8) with the bones and joints drawn on it."""
    out = np.array(rgb, dtype=np.uint8, copy=True)
    px = project(np.asarray(joints_gravity, float), camera_to_gravity, K)
    colours = [SIDE_RGB[n.split("_")[0]] for n in JOINT_NAMES]
    for a, b in BONES:
        _line(out, px[a], px[b], joint_radius_px * 0.8, colours[b])
    for i in range(len(JOINT_NAMES)):
        _disk(out, px[i], joint_radius_px, colours[i])
    return out
