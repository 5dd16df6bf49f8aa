"""The nine lower-limb joints of the benchmark, their bones and joint angles.

Everything here is plain data shared by the data engine, the models, the
evaluation and the ROS nodes, so that joint order is defined once.
"""
from __future__ import annotations

import numpy as np

#: Joint order of every (9, 3) joint array in the package (benchmark spec).
JOINT_NAMES: tuple[str, ...] = (
    "pelvis",
    "left_hip", "left_knee", "left_ankle", "left_foot",
    "right_hip", "right_knee", "right_ankle", "right_foot",
)
JOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(JOINT_NAMES)}

#: anny bone whose posed head position defines each joint; the pelvis is the
#: midpoint of the two hips (as ICL-Gait derives it), so it has no bone.
ANNY_JOINT_BONES: dict[str, str | None] = {
    "pelvis": None,
    "left_hip": "upperleg01.L", "left_knee": "lowerleg01.L",
    "left_ankle": "foot.L", "left_foot": "toe3-1.L",
    "right_hip": "upperleg01.R", "right_knee": "lowerleg01.R",
    "right_ankle": "foot.R", "right_foot": "toe3-1.R",
}

#: Parent-child joint pairs drawn as the skeleton (pelvis to hips, then legs).
BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 4),
    (0, 5), (5, 6), (6, 7), (7, 8),
)

SIDES: tuple[str, ...] = ("left", "right")


def side_joints(side: str) -> tuple[int, int, int, int]:
    """Indices of (hip, knee, ankle, foot) of one side."""
    return tuple(JOINT_INDEX[f"{side}_{j}"] for j in ("hip", "knee", "ankle", "foot"))


def bone_lengths(joints: np.ndarray) -> np.ndarray:
    """Lengths of `BONES`. joints: (..., 9, 3) -> (..., 8)."""
    joints = np.asarray(joints)
    a = joints[..., [b[0] for b in BONES], :]
    b = joints[..., [b[1] for b in BONES], :]
    return np.linalg.norm(b - a, axis=-1)


def _angle_between(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    u = u / np.linalg.norm(u, axis=-1, keepdims=True)
    v = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return np.arccos(np.clip(np.sum(u * v, axis=-1), -1.0, 1.0))


def knee_flexion(joints: np.ndarray, side: str) -> np.ndarray:
    """Knee flexion in radians (0 = straight leg) from joint positions.

    joints: (..., 9, 3) -> (...,). The angle between thigh and shank
    directions, which is what a clinician reads off a sagittal plot.
    """
    hip, knee, ankle, _ = side_joints(side)
    joints = np.asarray(joints)
    thigh = joints[..., knee, :] - joints[..., hip, :]
    shank = joints[..., ankle, :] - joints[..., knee, :]
    return _angle_between(thigh, shank)
