"""Walking sequences of test bodies, for tracking and speed benchmarks."""
from __future__ import annotations

import numpy as np

from ..data.body import BodyModel, sample_phenotype
from ..data.camera import LABEL_LOWER_LIMB
from ..data.gait import GaitModel, sample_gait_params
from ..data.scene import VIEWS, WalkingSubject, render_scene, sample_camera


def walking_sequence(frames: int = 30, fps: float = 15.0, view: str = "V2", condition: str = "normal",
                     seed: int = 1, noise: str = "realistic", body_model: BodyModel | None = None) -> list[dict]:
    """`frames` consecutive frames of a test body on a treadmill seen from `view`.

    Each frame: `points` (the scene cloud), `leg_mask`, `joints`, `subject_to_gravity`,
    `camera_to_gravity` and `stamp_s`, as in a test sample.
    """
    rng = np.random.default_rng([seed, 7919, frames])
    body_model = body_model or BodyModel()
    camera = sample_camera(rng, VIEWS[view])
    walker = WalkingSubject(body_model, sample_phenotype("test", int(rng.integers(0, 100))),
                            GaitModel(sample_gait_params(rng, condition)), camera, mode="treadmill",
                            phase0=float(rng.random()))
    times = np.arange(frames) / fps
    bodies, transforms = walker.poses(times)
    out = []
    for i, t in enumerate(times):
        frame, _, joints = render_scene(bodies, i, transforms[i], camera, [], rng, noise, body_model.lower_limb_face)
        points, labels = frame.points_gravity()
        out.append({"points": points, "leg_mask": (labels == LABEL_LOWER_LIMB) & (points[:, 2] < joints[0, 2] + 0.10),
                    "joints": joints.astype(np.float32), "subject_to_gravity": transforms[i],
                    "camera_to_gravity": frame.camera_to_gravity, "stamp_s": float(t)})
    return out
