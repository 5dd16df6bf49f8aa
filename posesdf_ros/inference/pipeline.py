"""The per-frame pipeline of the nodes, without ROS: the canonicaliser's step, the estimator's step and its
reset policy, and the two run offline one after the other (with the Pose-NDF prior) for bag evaluation.

The canonicaliser and estimator nodes call `PersonTracker.from_settings` and
`EstimatorStep` with their own parameters; `NodePipeline` calls the same with
`PipelineSettings`, whose defaults are the nodes' parameter declarations
(`posesdf_ros.parameters`) and whose values come from the same YAML. So the
offline evaluation runs exactly the steps, in the order and with the state,
that the live nodes do.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from ..parameters import CANONICALISER_PARAMETERS, ESTIMATOR_PARAMETERS, POSE_PRIOR_PARAMETERS
from ..perception.segment import decimate
from .canonical import PersonTracker

_NODE_DEFAULTS = {prm.name: prm.default for prm in CANONICALISER_PARAMETERS + ESTIMATOR_PARAMETERS}


def limit_cpu_threads(threads: int) -> None:
    """What a node's `torch_threads` does to its process (0: nothing): torch's thread count, and numpy's
    BLAS (OpenBLAS's own pool, whose threads spin while they wait) held to the same. Several OpenMP threads
    per node stall each other on shared cores. OpenMP's count is per calling thread: a thread that runs
    torch later also calls `torch.set_num_threads` (the nodes' workers do)."""
    if threads > 0:
        import torch
        from threadpoolctl import threadpool_limits

        torch.set_num_threads(threads)
        threadpool_limits(limits=threads)


class EstimatorStep:
    """The estimator node's per-frame work on the canonicaliser's output: PoseSDF (or NVF) warm-started from
    the previous frame unless that is more than `track_reset_s` old, or later than this one (the stream
    restarted). `settings` is read at every frame (any object with `track`, `track_reset_s` and
    `check_heading`: the node's live parameters, or `PipelineSettings`)."""

    def __init__(self, estimator, settings):
        self.estimator, self.settings = estimator, settings
        self.last_stamp = -np.inf

    def run(self, stamp: float, legs: np.ndarray, yaw: float, camera_origin: np.ndarray | None,
            occluders: np.ndarray | None = None):
        """One frame's leg points (M, 3, gravity frame), heading and the scene's points that may hide a foot
        (K, 3, the canonicaliser's `occluders`, or None) -> `EstimateResult`."""
        s = self.settings
        if not 0.0 <= stamp - self.last_stamp <= s.track_reset_s:
            self.estimator.reset()
        self.last_stamp = stamp
        return self.estimator.estimate(legs, yaw=yaw, camera_origin=camera_origin, track=s.track,
                                       segment=False, check_heading=s.check_heading, occluders=occluders)


@dataclass(frozen=True)
class PipelineSettings:
    """The canonicaliser's and estimator's parameters that change results; defaults: their declarations."""

    profile: str = _NODE_DEFAULTS["profile"]
    device: str = _NODE_DEFAULTS["device"]
    track: bool = _NODE_DEFAULTS["track"]
    track_reset_s: float = _NODE_DEFAULTS["track_reset_s"]
    check_heading: bool = _NODE_DEFAULTS["check_heading"]
    track_timeout_s: float = _NODE_DEFAULTS["track_timeout_s"]
    min_range_m: float = _NODE_DEFAULTS["min_range_m"]
    max_range_m: float = _NODE_DEFAULTS["max_range_m"]
    decimation: int = _NODE_DEFAULTS["decimation"]
    yaw_source: str = _NODE_DEFAULTS["yaw_source"]
    rotnet_turns: int = _NODE_DEFAULTS["rotnet_turns"]
    leg_classifier: bool = _NODE_DEFAULTS["leg_classifier"]
    legseg_model: str = _NODE_DEFAULTS["legseg_model"]

    # The pose_prior node's parameters that PriorConfig has, where the YAML sets them (else the node's defaults).
    prior: tuple[tuple[str, object], ...] = ()

    @classmethod
    def from_yaml(cls, path: Path, **overrides) -> "PipelineSettings":
        """The nodes' values in a parameter file (`/**` shared, then canonicaliser, estimator, pose_prior)."""
        import yaml

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
    from .prior import PriorConfig

    return {f.name for f in fields(PriorConfig)}


@dataclass
class StepResult:
    raw_joints: np.ndarray | None   # (9, 3) gravity frame: the estimator's output for this frame
    reason: str                     # why there are no joints
    seconds: float                  # compute time of the frame
    # The frames this step finished, (stamp, joints or None): this one, unless the prior's fixed lag holds it
    # back; with the lag, earlier frames that it completes. Joints are the prior's output when it is on.
    outputs: list[tuple[float, np.ndarray | None]]


class NodePipeline:
    """The canonicaliser, the estimator and (optionally) the prior on one track, offline; `step` is one
    camera frame."""

    def __init__(self, settings: PipelineSettings, prior=None, weights: Path | None = None):
        from .estimator import GaitPoseEstimator

        self.settings = settings
        estimator = GaitPoseEstimator.from_pretrained("posesdf", settings.profile, settings.device, weights,
                                                      rotnet=settings.yaw_source == "rotnet",
                                                      leg_classifier=settings.leg_classifier,
                                                      rotnet_turns=settings.rotnet_turns,
                                                      legseg_model=settings.legseg_model)
        self.tracker = PersonTracker.from_settings(settings, estimator.yaw_estimator, estimator.leg_classifier)
        self.estimator = EstimatorStep(estimator, settings)
        self.prior = prior

    def step(self, stamp: float, points: np.ndarray, camera_origin: np.ndarray | None) -> StepResult:
        """points: the scene cloud in the gravity frame, organised (H, W, 3) with NaN where a pixel has
        no depth, or flat (N, 3); thinned by the settings' `decimation` as the canonicaliser does."""
        t0 = time.perf_counter()
        points = decimate(points, self.settings.decimation)
        frame = self.tracker.update(stamp, points, camera_origin)      # the canonicaliser
        if not frame.valid:
            return self._filtered(stamp, None, frame.reason, t0)
        res = self.estimator.run(stamp, frame.legs, frame.yaw, camera_origin, frame.occluders)
        return self._filtered(stamp, res.joints if res.valid else None, res.reason, t0)

    def _filtered(self, stamp: float, joints: np.ndarray | None, reason: str, t0: float) -> StepResult:
        if self.prior is None or joints is None:
            outputs = [(stamp, joints)]
        else:
            # As the pose_prior node: it sees the estimator's outputs only, restarts itself after gaps, gives
            # NaN until its first complete frame, and outputs each frame `lag_frames` frames later.
            outputs = _finished(self.prior.step(stamp, joints))
            reason = reason or "the prior has not started (no frame with all nine joints yet)"
        return StepResult(joints, "" if joints is not None else (reason or "no estimate"),
                          time.perf_counter() - t0, outputs)

    def finish(self) -> list[tuple[float, np.ndarray | None]]:
        """The frames the prior still holds at the end of the stream, (stamp, joints)."""
        return [] if self.prior is None else _finished(self.prior.flush())


def _finished(outputs: list) -> list[tuple[float, np.ndarray | None]]:
    """The prior's outputs as (stamp, joints), None for the NaN joints of a frame before its start."""
    return [(o.stamp_s, o.joints if np.isfinite(o.joints).all() else None) for o in outputs]


def load_prior(enabled: bool, settings: PipelineSettings, notes: list[str]):
    """The Pose-NDF prior with the pose_prior node's parameters, or None (with a note) when it is off or missing."""
    if not enabled:
        notes.append("Pose-NDF prior off (--no-prior): the estimator's joints are scored")
        return None
    try:
        from .prior import PosePrior

        node_defaults = {prm.name: prm.default for prm in POSE_PRIOR_PARAMETERS if prm.name in _prior_fields()}
        return PosePrior.from_pretrained(device=settings.device, **(node_defaults | dict(settings.prior)))
    except (ImportError, FileNotFoundError) as err:
        notes.append(f"Pose-NDF prior unavailable ({err}); the estimator's joints are scored")
        return None
