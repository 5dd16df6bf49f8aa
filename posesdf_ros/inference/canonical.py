"""The canonical frame: the subject facing +x, mapped into the unit sphere.

Training shapes live in the subject frame normalised by their own
unit-sphere map (centre, scale). A partial view cannot give that map
exactly, so the first guess is regressed from what any view shows: the
top of the lower-limb crop (the floor is z = 0) gives the scale and the
centre's height, the observed horizontal extent the centre. Latent
optimisation refines it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..data.scene import VIEWS
from ..geometry import yaw_matrix
from ..perception.segment import SegmentationConfig, SegmentationResult, segment_legs
from .quality import foot_occluders

#: How far (m) the shape's centre lies beyond the observed side's centre, away from the camera.
VISIBLE_SIDE_OFFSET_M = 0.03


@dataclass
class Canonical:
    yaw: float             # the subject's heading in the input frame (rad)
    centre: np.ndarray     # (3,) in the yaw-corrected frame, metres
    scale: float           # metres -> normalised units
    top: float             # crop plane height, metres

    def to_normalised(self, p: np.ndarray) -> np.ndarray:
        """(..., 3) input frame -> normalised canonical frame."""
        return ((p @ yaw_matrix(self.yaw)) - self.centre) * self.scale

    def to_input(self, p_n: np.ndarray) -> np.ndarray:
        """(N, 3) normalised canonical frame -> input frame."""
        return (p_n / self.scale + self.centre) @ yaw_matrix(self.yaw).T


def first_guess(points: np.ndarray, yaw: float, prior: dict, camera_origin: np.ndarray | None = None) -> Canonical:
    """The normalisation guessed from a leg cloud (N, 3) and the subject's heading `yaw`.

    `prior` is the `normalisation_prior` saved with the weights
    (`SDFShapeSet.normalisation_prior`).
    """
    R = yaw_matrix(yaw)
    pc = points @ R
    top = float(np.quantile(pc[:, 2], 0.995))
    scale = 1.0 / float(np.polyval(prior["inv_scale_vs_top"], top))
    lo, hi = np.quantile(pc[:, :2], [0.02, 0.98], axis=0)
    centre_xy = 0.5 * (lo + hi)
    if camera_origin is not None:
        away = pc[:, :2].mean(0) - (np.asarray(camera_origin, float) @ R)[:2]
        centre_xy = centre_xy + VISIBLE_SIDE_OFFSET_M * away / max(np.linalg.norm(away), 1e-6)
    centre = np.array([*centre_xy, np.polyval(prior["centre_z_vs_top"], top)])
    return Canonical(float(yaw), centre, scale, top)


def heading_assuming_canonical_view(points: np.ndarray, camera_xy: np.ndarray | None = None) -> float:
    """The subject's heading if the camera saw it from V1 (azimuth 135 deg): the w/o-RotNet guess."""
    cam = np.zeros(2) if camera_xy is None else np.asarray(camera_xy, float)[:2]
    to_camera = cam - np.median(points[:, :2], axis=0)
    return float(np.arctan2(to_camera[1], to_camera[0]) - np.deg2rad(VIEWS["V1"]))


class HeadingTracker:
    """Keeps a track's heading free of front/back flips by a vote over the last `window_s` seconds.

    RotNet's large errors are flips by about 180 degrees (legs look alike
    from front and back), and seen from behind they are not rare. A
    walking person does not reverse within a second, so a frame's heading
    is turned by 180 degrees when most headings of the window point the
    other way (more than 90 degrees from it).
    """

    def __init__(self, window_s: float = 1.5):
        self.window_s = window_s
        self.reset()

    def reset(self) -> None:
        self.recent: list[tuple[float, float]] = []
        self.corrected = 0

    def update(self, yaw: float, stamp: float) -> tuple[float, bool]:
        """The heading to use for a frame at `stamp` (s) whose raw estimate is `yaw`; and whether it was flipped."""
        self.recent = [(t, y) for t, y in self.recent if stamp - self.window_s <= t <= stamp] + [(stamp, yaw)]
        opposite = sum(abs(np.angle(np.exp(1j * (y - yaw)))) > np.pi / 2 for _, y in self.recent)
        if opposite > len(self.recent) / 2:
            self.corrected += 1
            return float(np.angle(np.exp(1j * (yaw + np.pi)))), True
        return yaw, False


@dataclass
class TrackedFrame:
    """One frame of `PersonTracker`: the target's legs and heading, or why there are none."""

    reason: str                                  # empty when the person was found
    legs: np.ndarray | None = None               # (M, 3) leg points, the input's frame
    segmentation: SegmentationResult | None = None
    yaw: float = float("nan")                    # heading (rad): the subject's +x in the input frame
    # seconds: segmentation (and its leg_classifier), occluders, rotnet
    timings: dict[str, float] = field(default_factory=dict)
    # (K, 3) the scene's points besides the legs that may hide a foot (quality.foot_occluders); None without a sensor
    occluders: np.ndarray | None = None

    @property
    def valid(self) -> bool:
        return not self.reason


class PersonTracker:
    """The canonicaliser's steps, frame after frame (the node and `inference.pipeline` share them).

    Segments the target person, preferring the one nearest the last
    frame's target until `timeout_s` passes without one; takes the heading
    from RotNet (`yaw_estimator`, on the legs below the hips), kept free of
    front/back flips by a `HeadingTracker`, or without RotNet assumes the
    canonical view V1. `leg_classifier` (an `inference.legseg.LegClassifier`)
    picks the leg points of the person's window; None crops at the pelvis guess.
    """

    def __init__(self, segmentation: SegmentationConfig | None = None, yaw_estimator=None, timeout_s: float = 1.0,
                 leg_classifier=None):
        self.segmentation = segmentation or SegmentationConfig()
        self.yaw_estimator, self.leg_classifier = yaw_estimator, leg_classifier
        self.timeout_s = timeout_s
        self.headings = HeadingTracker()
        self.reset()

    @classmethod
    def from_settings(cls, settings, yaw_estimator=None, leg_classifier=None) -> "PersonTracker":
        """With the canonicaliser's parameters: any object with `min_range_m`, `max_range_m`,
        `decimation` and `track_timeout_s` (the node's parameters, or
        `inference.pipeline.PipelineSettings`). The clouds given to `update` must be thinned by
        `perception.decimate(cloud, settings.decimation)`."""
        config = SegmentationConfig(roi_min_range=settings.min_range_m, roi_max_range=settings.max_range_m)
        return cls(config.decimated(settings.decimation), yaw_estimator, settings.track_timeout_s, leg_classifier)

    def warm_up(self) -> None:
        """RotNet and LegSegNet once on a synthetic pair of legs: their first calls pay one-off costs
        (the first pass of each torch op), which should not fall on live frames."""
        from ..geometry import standing_legs

        legs = standing_legs()
        if self.yaw_estimator is not None:
            self.yaw_estimator.predict(legs)
        if self.leg_classifier is not None:
            self.leg_classifier.leg_mask(legs, legs[:, 2])

    def reset(self) -> None:
        """Forget the person."""
        self.previous_centre: np.ndarray | None = None
        self.last_seen = -np.inf
        self.headings.reset()

    def update(self, stamp: float, points: np.ndarray, sensor_origin: np.ndarray | None) -> TrackedFrame:
        """One gravity-aligned scene cloud (N, 3) at `stamp` (s); `sensor_origin` (3,) or None. A frame
        after more than the timeout, or before the last one (the stream restarted), forgets the person."""
        if not 0.0 <= stamp - self.last_seen <= self.timeout_s:
            self.reset()
        seg = segment_legs(points, self.segmentation, self.previous_centre, sensor_origin, self.leg_classifier)
        if not seg.valid:
            return TrackedFrame(f"no person: {seg.reason}", segmentation=seg)
        legs = points[seg.indices]
        self.previous_centre, self.last_seen = seg.centre, stamp
        timings = {"segmentation": seg.timings.get("total", 0.0)} | (
            {"leg_classifier": seg.timings["leg_classifier"]} if "leg_classifier" in seg.timings else {})
        occluders = None
        if sensor_origin is not None:
            t = time.perf_counter()
            occluders = foot_occluders(points, seg.indices, np.asarray(sensor_origin))
            timings["occluders"] = time.perf_counter() - t
        if self.yaw_estimator is None:
            yaw = heading_assuming_canonical_view(legs, None if sensor_origin is None else sensor_origin[:2])
            return TrackedFrame("", legs, seg, yaw, timings, occluders)
        t = time.perf_counter()
        try:
            yaw, _ = self.yaw_estimator.predict(points[seg.heading_indices])
        except ValueError as err:
            return TrackedFrame(f"RotNet rejected the legs: {err}", legs, seg, timings=timings)
        timings["rotnet"] = time.perf_counter() - t
        return TrackedFrame("", legs, seg, self.headings.update(yaw, stamp)[0], timings, occluders)
