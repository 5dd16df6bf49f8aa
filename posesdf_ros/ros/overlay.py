"""The skeleton drawn on the RGB image, projected through the camera's intrinsics, and the pairing of
estimated depth frames with their RGB images (no ROS imports)."""
from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Any

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
    """The pixels whose centres lie within width / 2 of the segment a-b (a capsule), in one pass over
    its bounding box (a disk per pixel step along the bone took 16 % of the estimator node's time)."""
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        return
    h, w = image.shape[:2]
    r = width / 2
    x0, x1 = int(max(0, min(a[0], b[0]) - r)), int(min(w, max(a[0], b[0]) + r + 1))
    y0, y1 = int(max(0, min(a[1], b[1]) - r)), int(min(h, max(a[1], b[1]) + r + 1))
    if x0 >= x1 or y0 >= y1:
        return
    yy, xx = np.mgrid[y0:y1, x0:x1] + 0.5
    d = b - a
    t = np.clip(((xx - a[0]) * d[0] + (yy - a[1]) * d[1]) / max(float(d @ d), 1e-12), 0.0, 1.0)
    inside = (xx - a[0] - t * d[0]) ** 2 + (yy - a[1] - t * d[1]) ** 2 <= r * r
    image[y0:y1, x0:x1][inside] = colour


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


class OverlayFrames:
    """Pairs each estimated depth frame with its RGB image, whichever of the two comes last.

    For a worker that takes only the newest frame (`ManagedNode.submit`): a
    submitted frame pins its image (or takes it when it arrives, if later),
    because a slow estimate lets newer images push it out of the image
    buffer; a newer submission supersedes a frame the worker has not
    started, and the worker's next start retires the frame before. A result
    whose image is not in yet waits for it, and is given up once an image
    newer than its stamp plus the tolerance arrives. Stamps are seconds;
    images and results are opaque. Thread-safe: the executor adds frames
    and images, the worker starts frames and adds results.
    """

    def __init__(self, tolerance_s: float, buffer_s: float = 4.0, max_images: int = 120, waiting: int = 4):
        self.tolerance_s, self.buffer_s = tolerance_s, buffer_s
        # The RGB images of the last `buffer_s` seconds: a depth frame reaches the estimator only
        # after the canonicaliser, seconds late when the CPU is busy.
        self._images: deque[tuple[float, Any]] = deque(maxlen=max_images)
        # stamp -> {"image": ..., "result": ..., "state": "pending" | "running" | "done"}
        self._frames: OrderedDict[float, dict] = OrderedDict()
        self._waiting = waiting     # results kept waiting for their image
        self._lock = threading.Lock()

    def add_frame(self, stamp: float) -> None:
        """A depth frame is submitted to the worker."""
        with self._lock:
            self._retire("pending")
            self._frames[stamp] = {"image": self._image_near(stamp), "result": None, "state": "pending"}

    def start(self, stamp: float) -> None:
        """The worker starts on the frame at `stamp`."""
        with self._lock:
            self._retire("running")
            entry = self._frames.setdefault(stamp, {"image": self._image_near(stamp), "result": None})
            entry["state"] = "running"

    def _retire(self, state: str) -> None:
        for frame in [f for f, e in self._frames.items() if e["state"] == state]:
            del self._frames[frame]

    def add_image(self, stamp: float, image: Any) -> tuple[list[tuple[Any, Any]], int]:
        """An RGB image came in. Returns the (image, result) pairs now complete and how many
        results were given up."""
        with self._lock:
            self._images.append((stamp, image))
            while self._images[0][0] < stamp - self.buffer_s:
                self._images.popleft()
            for frame, entry in self._frames.items():
                if entry["image"] is None and abs(frame - stamp) <= self.tolerance_s:
                    entry["image"] = image
            return self._take_ready()

    def add_result(self, stamp: float, result: Any) -> tuple[list[tuple[Any, Any]], int]:
        """The worker's result for a frame. Returns what `add_image` does."""
        with self._lock:
            entry = self._frames.setdefault(stamp, {"image": None, "result": None})
            entry["image"] = entry["image"] or self._image_near(stamp)
            entry["result"], entry["state"] = result, "done"
            ready, expired = self._take_ready()
            waiting = [f for f, e in self._frames.items() if e["state"] == "done"]
            for frame in waiting[:max(len(waiting) - self._waiting, 0)]:
                del self._frames[frame]
                expired += 1
            return ready, expired

    def _image_near(self, stamp: float) -> Any | None:
        near = min(self._images, key=lambda item: abs(item[0] - stamp), default=None)
        return near[1] if near is not None and abs(near[0] - stamp) <= self.tolerance_s else None

    def _take_ready(self) -> tuple[list[tuple[Any, Any]], int]:
        newest = self._images[-1][0] if self._images else -np.inf
        ready, expired = [], 0
        for frame in list(self._frames):
            entry = self._frames[frame]
            if entry["result"] is None:
                continue
            if entry["image"] is not None:
                ready.append((entry["image"], entry["result"]))
            elif newest > frame + self.tolerance_s:
                expired += 1
            else:
                continue
            del self._frames[frame]
        return ready, expired
