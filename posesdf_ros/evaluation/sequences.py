"""Walking sequences of test bodies, for tracking and speed benchmarks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data.camera import LABEL_LOWER_LIMB, Intrinsics, RenderedFrame

SEQUENCE_FORMAT = 1


def walking_sequence(frames: int = 30, fps: float = 15.0, view: str = "V2", condition: str = "normal",
                     seed: int = 1, noise: str = "realistic", body_model=None,
                     organised: bool = False) -> list[dict]:
    """`frames` consecutive frames of a test body on a treadmill seen from `view`.

    The walker (`data.walker.draw_walker`): a sampled camera, a drawn test
    body, no clutter. Each frame: `points` (the scene cloud), `leg_mask`,
    `joints`, `subject_to_gravity`, `camera_to_gravity` and `stamp_s`, as in
    a test sample; with `organised`, also `cloud`: the whole image's points in
    the gravity frame, (H, W, 3) with NaN where a pixel has no depth, as a
    camera sends them (2.8 MB a frame at 640 x 360), and `rendered` (the
    camera frame they come from, for `save_sequence`).
    """
    from ..data.walker import draw_walker

    rng = np.random.default_rng([seed, 7919, frames])
    walker = draw_walker(rng, condition, view=view, camera="sampled", body=None, body_model=body_model)
    # The depth noise continues the walker's random stream.
    return [_frame(f.rendered, f.joints, f.subject_to_gravity, f.stamp_s, organised)
            for f in walker.frames(np.arange(frames) / fps, rng, noise)]


def _frame(rendered: RenderedFrame, joints: np.ndarray, subject_to_gravity: np.ndarray, stamp_s: float,
           organised: bool) -> dict:
    points, labels = rendered.points_gravity()
    out = {"points": points, "leg_mask": (labels == LABEL_LOWER_LIMB) & (points[:, 2] < joints[0, 2] + 0.10),
           "joints": np.asarray(joints, np.float32), "subject_to_gravity": subject_to_gravity,
           "camera_to_gravity": rendered.camera_to_gravity, "stamp_s": float(stamp_s)}
    if organised:
        T = rendered.camera_to_gravity
        out["cloud"] = (rendered.organised_cloud() @ T[:3, :3].T.astype(np.float32) + T[:3, 3].astype(np.float32))
        out["rendered"] = rendered
    return out


def save_sequence(path: Path, frames: list[dict], description: dict) -> None:
    """Write organised `frames` (`walking_sequence(..., organised=True)`) to a compressed .npz: each
    frame's depth image and labels, camera pose, joints and stamp (about 0.3 MB a frame at 640 x 360
    compressed, a tenth of the clouds), so a machine without the body model (a GPU machine) times the same frames.
    `description` (JSON-able: view, seed, fps...) is kept with them."""
    if not frames or "rendered" not in frames[0]:
        raise ValueError("save_sequence needs organised frames (walking_sequence(..., organised=True))")
    r0 = frames[0]["rendered"]
    np.savez_compressed(
        path, format=np.array(SEQUENCE_FORMAT),
        description=np.array(json.dumps(description | {"intrinsics": r0.intrinsics.to_dict()})),
        depth=np.stack([f["rendered"].depth for f in frames]), labels=np.stack([f["rendered"].labels for f in frames]),
        camera_to_gravity=np.stack([f["camera_to_gravity"] for f in frames]),
        subject_to_gravity=np.stack([f["subject_to_gravity"] for f in frames]),
        joints=np.stack([f["joints"] for f in frames]), stamp_s=np.array([f["stamp_s"] for f in frames]))


def load_sequence(path: Path) -> tuple[list[dict], dict]:
    """The organised frames that `save_sequence` wrote, rebuilt bit for bit, and its description."""
    with np.load(path) as z:
        if "format" not in z.files or int(z["format"]) != SEQUENCE_FORMAT:
            raise ValueError(f"{path} is not a walking sequence of format {SEQUENCE_FORMAT} "
                             "(write one with `posesdf bench speed --save-sequence`)")
        description = json.loads(str(z["description"]))
        arrays = {k: z[k] for k in z.files if k not in ("format", "description")}
    known = {k: v for k, v in description["intrinsics"].items() if k != "K"}
    intrinsics = Intrinsics(**known)
    frames = []
    for i in range(len(arrays["depth"])):
        rendered = RenderedFrame(depth=arrays["depth"][i], rgb=np.zeros((0, 0, 3), np.uint8),
                                 labels=arrays["labels"][i], camera_to_gravity=arrays["camera_to_gravity"][i],
                                 intrinsics=intrinsics)
        frames.append(_frame(rendered, arrays["joints"][i], arrays["subject_to_gravity"][i],
                             float(arrays["stamp_s"][i]), organised=True))
    return frames, description
