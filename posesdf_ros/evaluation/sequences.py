"""Walking sequences of test bodies, for tracking and speed benchmarks."""
from __future__ import annotations

import numpy as np

from ..data.body import BodyModel
from ..data.camera import LABEL_LOWER_LIMB
from ..data.walker import draw_walker


def walking_sequence(frames: int = 30, fps: float = 15.0, view: str = "V2", condition: str = "normal",
                     seed: int = 1, noise: str = "realistic", body_model: BodyModel | None = None,
                     organised: bool = False) -> list[dict]:
    """`frames` consecutive frames of a test body on a treadmill seen from `view`.

    The walker (`data.walker.draw_walker`): a sampled camera, a drawn test
    body, no clutter. Each frame: `points` (the scene cloud), `leg_mask`,
    `joints`, `subject_to_gravity`, `camera_to_gravity` and `stamp_s`, as in
    a test sample; with `organised`, also `cloud`: the whole image's points in
    the gravity frame, (H, W, 3) with NaN where a pixel has no depth, as a
    camera sends them (2.8 MB a frame at 640 x 360).
    """
    rng = np.random.default_rng([seed, 7919, frames])
    walker = draw_walker(rng, condition, view=view, camera="sampled", body=None, body_model=body_model)
    out = []
    # The depth noise continues the walker's random stream.
    for f in walker.frames(np.arange(frames) / fps, rng, noise):
        points, labels = f.rendered.points_gravity()
        out.append({"points": points,
                    "leg_mask": (labels == LABEL_LOWER_LIMB) & (points[:, 2] < f.joints[0, 2] + 0.10),
                    "joints": f.joints.astype(np.float32), "subject_to_gravity": f.subject_to_gravity,
                    "camera_to_gravity": f.rendered.camera_to_gravity, "stamp_s": f.stamp_s})
        if organised:
            T = f.rendered.camera_to_gravity
            out[-1]["cloud"] = (f.rendered.organised_cloud() @ T[:3, :3].T.astype(np.float32)
                                + T[:3, 3].astype(np.float32))
    return out
