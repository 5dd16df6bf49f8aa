"""The canonicaliser's and estimator's per-frame steps without ROS, for offline evaluation.

Same order and state as the nodes (posesdf_ros/ros/canonicaliser.py and
estimator.py), with their parameters read from config/posesdf.yaml: the
canonicaliser's `PersonTracker` (segment the person in the scene, following
the previous frame's person until `track_timeout_s` passes without one,
RotNet's heading kept free of flips), then PoseSDF on the leg points with that
heading, warm-started unless the previous frame is more than
`track_reset_s` old; the Pose-NDF prior, when on, filters the joints of
the frames with a person, as the `pose_prior` node does.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class PipelineSettings:
    """The nodes' parameters that change results (defaults: config/posesdf.yaml)."""

    profile: str = "fast"
    device: str = "cpu"
    track: bool = True
    track_reset_s: float = 0.25
    check_heading: bool = True
    track_timeout_s: float = 1.0
    min_range_m: float = 0.3
    max_range_m: float = 6.0
    yaw_source: str = "rotnet"
    leg_classifier: bool = True

    prior: tuple[tuple[str, object], ...] = ()   # the pose_prior node's parameters that PriorConfig has

    @classmethod
    def from_yaml(cls, path: Path | None = None, **overrides) -> "PipelineSettings":
        """The nodes' values in a parameter file (`/**` shared, then canonicaliser, estimator, pose_prior)."""
        import yaml

        from ..bringup import default_params_file

        path = path or default_params_file()
        doc = yaml.safe_load(Path(path).read_text()) or {}

        def section(name: str) -> dict:
            """A node's parameters under any of the keys rcl matches it by in the root namespace."""
            out = {}
            for key in (name, f"/{name}", f"/**/{name}"):
                out |= (doc.get(key) or {}).get("ros__parameters", {}) or {}
            return out

        values = section("/**") | section("canonicaliser") | section("estimator")
        names = {f.name for f in fields(cls)} - {"prior"}
        prior = tuple(sorted((k, v) for k, v in section("pose_prior").items() if k in _prior_fields()))
        return cls(**({k: v for k, v in values.items() if k in names} | {"prior": prior}
                      | {k: v for k, v in overrides.items() if v is not None}))


def _prior_fields() -> set[str]:
    try:
        from ...inference.prior import PriorConfig
    except ImportError:
        return set()
    return {f.name for f in fields(PriorConfig)}


@dataclass
class StepResult:
    joints: np.ndarray | None       # (9, 3) gravity frame: the prior's output when it is on
    raw_joints: np.ndarray | None   # (9, 3) the estimator's output
    reason: str                     # why there are no joints
    seconds: float                  # compute time of the frame


class NodePipeline:
    """One track's state across frames; `step` is one camera frame."""

    def __init__(self, settings: PipelineSettings, prior=None, weights: Path | None = None):
        from ...inference.canonical import PersonTracker
        from ...inference.estimator import GaitPoseEstimator
        from ...perception.segment import SegmentationConfig

        self.settings = settings
        self.estimator = GaitPoseEstimator.from_pretrained("posesdf", settings.profile, settings.device, weights,
                                                           rotnet=settings.yaw_source == "rotnet",
                                                           leg_classifier=settings.leg_classifier)
        self.tracker = PersonTracker(SegmentationConfig(roi_min_range=settings.min_range_m,
                                                        roi_max_range=settings.max_range_m),
                                     self.estimator.yaw_estimator, settings.track_timeout_s,
                                     self.estimator.leg_classifier)
        self.prior = prior
        self.last_stamp = -np.inf

    def step(self, stamp: float, points: np.ndarray, camera_origin: np.ndarray | None) -> StepResult:
        t0 = time.perf_counter()
        s = self.settings
        frame = self.tracker.update(stamp, points, camera_origin)      # the canonicaliser
        if not frame.valid:
            return self._filtered(stamp, None, frame.reason, t0)
        if stamp - self.last_stamp > s.track_reset_s:        # estimator: too old to warm-start from
            self.estimator.reset()
        res = self.estimator.estimate(frame.legs, yaw=frame.yaw, camera_origin=camera_origin, track=s.track,
                                      segment=False, check_heading=s.check_heading)
        self.last_stamp = stamp
        return self._filtered(stamp, res.joints if res.valid else None, res.reason, t0)

    def _filtered(self, stamp: float, joints: np.ndarray | None, reason: str, t0: float) -> StepResult:
        out = joints
        if self.prior is not None and joints is not None:
            # As the pose_prior node: it sees the estimator's outputs only, restarts itself after
            # gaps, and gives NaN until its first complete frame.
            smooth = np.asarray(self.prior.filter(stamp, joints), dtype=np.float64)
            out = smooth if np.isfinite(smooth).all() else None
            reason = reason or "the prior is warming up"
        return StepResult(out, joints, "" if out is not None else (reason or "no estimate"),
                          time.perf_counter() - t0)


def load_prior(enabled: bool, settings: PipelineSettings, notes: list[str]):
    """The Pose-NDF prior with the pose_prior node's parameters, or None (with a note) when it is off or missing."""
    if not enabled:
        notes.append("Pose-NDF prior off (--no-prior): the estimator's joints are scored")
        return None
    try:
        from ...inference.prior import PosePrior

        return PosePrior.from_pretrained(device=settings.device, **dict(settings.prior))
    except (ImportError, FileNotFoundError) as err:
        notes.append(f"Pose-NDF prior unavailable ({err}); the estimator's joints are scored")
        return None
