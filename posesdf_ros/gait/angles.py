"""Clinical lower-limb joint angles from the nine joints.

Angles are in radians with the signs of `posesdf_ros.data.gait` (positive
= hip flexion, hip adduction, knee flexion, ankle dorsiflexion) and are
measured in a *pelvis frame* estimated from the joints themselves, so they
do not depend on where the subject walks or faces:
- y: the hip line, right hip -> left hip (it tilts with pelvic obliquity);
- x: horizontal and perpendicular to the hip line, the subject's forward;
- z = x cross y (up, tilted with the obliquity).
This is the generator's pelvis frame (pelvis rotation and obliquity, no
pelvic tilt: nine joints cannot show the pelvis' forward tilt).

Definitions (joints: hip H, knee K, ankle A, foot F = toe base):
- hip flexion: the thigh's (H -> K) angle from the pelvis' -z in the x-z
  plane, positive forward;
- hip adduction: the thigh's inclination towards the midline, out of that
  plane;
- knee flexion: the angle between thigh and shank (K -> A) directions, 0 =
  straight leg, negative when the shank bends forward of the thigh
  (hyperextension);
- ankle dorsiflexion: `ANKLE_NEUTRAL_DEG` minus the angle between the shank
  (pointing up, A -> K) and the foot (A -> F); the foot line of a
  toe-base joint slopes down from the ankle, so standing neutral is not 90
  deg.
"""
from __future__ import annotations

import numpy as np

from ..skeleton import JOINT_INDEX, SIDES, side_joints

#: Publish order of `joint_angles` (JointState names of the pose_prior node).
ANGLE_NAMES: tuple[str, ...] = tuple(
    f"{side}_{name}" for side in SIDES
    for name in ("hip_flexion", "hip_adduction", "knee_flexion", "ankle_dorsiflexion")
)
#: Shank-to-foot angle (deg) at zero dorsiflexion: about its mean over anny
#: test bodies posed at zero ankle angle. It varies by a few degrees with the
#: body and the condition (pronation turns the toe base); `posesdf bench gait`
#: reports the resulting ankle offsets.
ANKLE_NEUTRAL_DEG = 105.5
_UP = np.array([0.0, 0.0, 1.0])
_EPS = 1e-12


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), _EPS)


def pelvis_frame(joints: np.ndarray) -> np.ndarray:
    """Rows x (forward), y (left), z (up) of the pelvis frame. joints: (..., 9, 3) -> (..., 3, 3)."""
    joints = np.asarray(joints, float)
    y = _unit(joints[..., JOINT_INDEX["left_hip"], :] - joints[..., JOINT_INDEX["right_hip"], :])
    x = _unit(np.cross(y, _UP))
    return np.stack([x, y, np.cross(x, y)], axis=-2)


def heading(joints: np.ndarray) -> np.ndarray:
    """Horizontal unit forward direction of the pelvis. joints: (..., 9, 3) -> (..., 3)."""
    return pelvis_frame(joints)[..., 0, :]


def _angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return np.arccos(np.clip(np.sum(_unit(u) * _unit(v), axis=-1), -1.0, 1.0))


def joint_angles(joints: np.ndarray) -> dict[str, np.ndarray]:
    """Hip flexion/adduction, knee flexion and ankle dorsiflexion per side (rad).

    joints: (..., 9, 3) in any z-up frame -> {name in ANGLE_NAMES: (...)}.
    NaN joints give NaN angles.
    """
    joints = np.asarray(joints, float)
    if joints.shape[-2:] != (9, 3):
        raise ValueError(f"joints must have shape (..., 9, 3), got {joints.shape}")
    frame = pelvis_frame(joints)
    out: dict[str, np.ndarray] = {}
    for side in SIDES:
        hip, knee, ankle, foot = (joints[..., i, :] for i in side_joints(side))
        # Thigh and shank in pelvis coordinates (x forward, y left, z up).
        thigh = np.einsum("...ij,...j->...i", frame, knee - hip)
        shank = np.einsum("...ij,...j->...i", frame, ankle - knee)
        medial = -1.0 if side == "left" else 1.0      # the midline is -y for the left leg
        out[f"{side}_hip_flexion"] = np.arctan2(thigh[..., 0], -thigh[..., 2])
        out[f"{side}_hip_adduction"] = np.arcsin(np.clip(medial * _unit(thigh)[..., 1], -1.0, 1.0))
        # Hyperextension: the shank points forward of the thigh in the leg's sagittal plane.
        bend = np.cross(thigh, shank)[..., 1]
        sign = np.where(bend < 0.0, -1.0, 1.0)
        out[f"{side}_knee_flexion"] = sign * _angle(thigh, shank)
        out[f"{side}_ankle_dorsiflexion"] = np.deg2rad(ANKLE_NEUTRAL_DEG) - _angle(knee - ankle, foot - ankle)
    return {name: out[name] for name in ANGLE_NAMES}
