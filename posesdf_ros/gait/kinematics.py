"""Lower-limb kinematic model: nine joints <-> root pose, seven local rotations and bone lengths.

The pose the prior works on. Each segment's frame is its parent's frame
turned by the *swing* (shortest-arc rotation) that takes the segment's
rest direction to its observed direction, so that inverse kinematics is
exact for any nine joints and forward kinematics with fixed bone lengths
can only produce skeletons with those lengths.

Pose layout (`ROTATIONS`, unit quaternions x, y, z, w as in `roma`):
- `pelvis`: the pelvis' obliquity (roll about the walking direction); the
  pelvis' yaw is global and not part of the pose;
- `{side}_hip`: the thigh (hip -> knee, rest straight down) in the pelvis frame;
- `{side}_knee`: the shank (knee -> ankle, rest straight down) in the thigh frame;
- `{side}_ankle`: the foot (ankle -> foot, rest forward) in the shank frame.
Frames are x forward, y left, z up (REP 103) in the gravity frame.

Bone lengths (`LENGTHS`, metres): the half hip width, then thigh, shank and
foot of each side. Everything is batched over leading dimensions and
differentiable (torch); `inverse`/`forward` take and return tensors.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..skeleton import JOINT_INDEX, SIDES, side_joints

#: Local rotations of the pose, parents before children (the prior's kinematic tree).
ROTATIONS: tuple[str, ...] = (
    "pelvis",
    "left_hip", "left_knee", "left_ankle",
    "right_hip", "right_knee", "right_ankle",
)
#: Parent of each rotation in `ROTATIONS` (-1: the root).
ROTATION_PARENTS: tuple[int, ...] = (-1, 0, 1, 2, 0, 4, 5)
LENGTHS: tuple[str, ...] = (
    "half_hip_width",
    "left_thigh", "left_shank", "left_foot",
    "right_thigh", "right_shank", "right_foot",
)
#: The two joints that measure each of `LENGTHS` (the hip width between the hips).
LENGTH_JOINTS: tuple[tuple[int, int], ...] = (
    (JOINT_INDEX["left_hip"], JOINT_INDEX["right_hip"]),
    *((a, b) for side in SIDES for a, b in zip(side_joints(side)[:-1], side_joints(side)[1:])),
)
_DOWN = (0.0, 0.0, -1.0)
_FORWARD = (1.0, 0.0, 0.0)
#: Rest direction of each side's (thigh, shank, foot) in its parent's frame.
_REST = (_DOWN, _DOWN, _FORWARD)
#: Rest direction of each rotation's swing, `ROTATIONS` order: the pelvis' left axis, then each side's `_REST`.
REST_DIRECTIONS: tuple[tuple[float, float, float], ...] = ((0.0, 1.0, 0.0),) + _REST * 2
#: The same as (column of the parent's frame, sign), each rest direction being an axis: -z, -z, +x.
_REST_AXES = tuple((max(range(3), key=lambda i: abs(r[i])), sum(r)) for r in _REST)
_EPS = 1e-9


@dataclass
class LimbPose:
    """Nine joints as a kinematic pose. Shapes for a batch of B poses."""

    root: torch.Tensor          # (B, 3) pelvis position
    heading: torch.Tensor       # (B,) yaw of the pelvis' forward axis (rad)
    rotations: torch.Tensor     # (B, 7, 4) unit quaternions (x, y, z, w), `ROTATIONS` order
    lengths: torch.Tensor       # (B, 7) metres, `LENGTHS` order


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp_min(_EPS)


def rotation_matrix(q: torch.Tensor) -> torch.Tensor:
    """Rotation matrices of unit quaternions (x, y, z, w), as `roma.unitquat_to_rotmat`. (..., 4) -> (..., 3, 3).

    R = (w² - |v|²) I + 2 v vᵀ + 2 w [v]x in a handful of tensor operations: the prior's solver
    differentiates forward kinematics dozens of times a frame on tiny tensors, where the number of
    operations, not their size, sets the time.
    """
    v, w = q[..., :3], q[..., 3:]
    eye = torch.eye(3, dtype=q.dtype, device=q.device)
    # Row j of cross(v, e_j) stacked is column j of [v]x, so the transpose is [v]x.
    rows = v[..., None, :].expand(*v.shape[:-1], 3, 3)
    skew = torch.linalg.cross(rows, eye.expand_as(rows)).transpose(-1, -2)
    scale = (w * w - (v * v).sum(-1, keepdim=True))[..., None]
    return scale * eye + 2.0 * (v[..., :, None] * v[..., None, :] + w[..., None] * skew)


def swing(rest: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """Shortest-arc unit quaternion (x, y, z, w) turning unit `rest` onto unit `direction`. (..., 3) -> (..., 4).

    Its w = 1 + cos(angle) >= 0, so the quaternion is already in the
    hemisphere the prior is trained on. Undefined only for opposite
    vectors, which no thigh, shank or foot reaches from its rest direction.
    """
    rest = rest.expand_as(direction)
    q = torch.cat([torch.cross(rest, direction, dim=-1), 1.0 + (rest * direction).sum(-1, keepdim=True)], -1)
    return _unit(q)


def pelvis_frame(joints: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Heading (yaw, rad) and pelvis frame (columns forward, left, up) from the hip line.

    (B, 9, 3) -> (B,), (B, 3, 3).
    """
    left = _unit(joints[:, JOINT_INDEX["left_hip"]] - joints[:, JOINT_INDEX["right_hip"]])
    up = torch.zeros_like(left)
    up[:, 2] = 1.0
    forward = _unit(torch.cross(left, up, dim=-1))
    frame = torch.stack([forward, left, torch.cross(forward, left, dim=-1)], -1)
    return torch.atan2(forward[:, 1], forward[:, 0]), frame


def _yaw_matrix(yaw: torch.Tensor) -> torch.Tensor:
    c, s = torch.cos(yaw), torch.sin(yaw)
    zero, one = torch.zeros_like(yaw), torch.ones_like(yaw)
    return torch.stack([torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1),
                        torch.stack([zero, zero, one], -1)], -2)


def inverse(joints: torch.Tensor) -> LimbPose:
    """Inverse kinematics: nine joints (B, 9, 3) -> `LimbPose`.

    Exact: `forward(inverse(j))` = j when the pelvis is the hips' midpoint.
    """
    heading, frame = pelvis_frame(joints)
    # The pelvis' roll about its forward axis, in the heading frame.
    local_left = (_yaw_matrix(heading).transpose(-1, -2) @ frame[..., 1:2])[..., 0]
    rest_left = torch.zeros_like(local_left)
    rest_left[:, 1] = 1.0
    rotations = [swing(rest_left, local_left)]
    lengths = [0.5 * (joints[:, JOINT_INDEX["left_hip"]] - joints[:, JOINT_INDEX["right_hip"]]).norm(dim=-1)]
    for side in SIDES:
        chain = side_joints(side)
        parent = frame
        for (a, b), rest in zip(zip(chain[:-1], chain[1:]), _REST):
            bone = joints[:, b] - joints[:, a]
            local = _unit((parent.transpose(-1, -2) @ bone[..., None])[..., 0])
            q = swing(torch.tensor(rest, dtype=joints.dtype, device=joints.device), local)
            rotations.append(q)
            lengths.append(bone.norm(dim=-1))
            parent = parent @ rotation_matrix(q)
    return LimbPose(joints[:, JOINT_INDEX["pelvis"]], heading, torch.stack(rotations, 1), torch.stack(lengths, 1))


def forward(pose: LimbPose) -> torch.Tensor:
    """Forward kinematics: `LimbPose` -> nine joints (B, 9, 3), `JOINT_NAMES` order."""
    R = rotation_matrix(_unit(pose.rotations))          # (B, 7, 3, 3)
    frame = _yaw_matrix(pose.heading) @ R[..., 0, :, :]
    # Both legs at once, (B, 2, ...) in `SIDES` order: the prior's solver evaluates this dozens of
    # times a frame on tiny tensors, where the number of operations sets the time.
    legs = R[..., 1:, :, :].unflatten(-3, (2, 3))               # (B, 2, 3 segments, 3, 3)
    lengths = pose.lengths[..., 1:].unflatten(-1, (2, 3))       # (B, 2, 3)
    side_sign = torch.tensor([1.0, -1.0], dtype=frame.dtype, device=frame.device)[:, None]
    position = pose.root[..., None, :] + side_sign * pose.lengths[..., :1, None] * frame[..., None, :, 1]
    chain = [position]
    parent = frame[..., None, :, :]
    for k, (axis, sign) in enumerate(_REST_AXES):
        parent = parent @ legs[..., k, :, :]
        position = position + (sign * lengths[..., k, None]) * parent[..., axis]
        chain.append(position)
    # JOINT_NAMES: the pelvis, then each side's hip, knee, ankle, foot.
    return torch.cat([pose.root[..., None, :], torch.stack(chain, -2).flatten(-3, -2)], -2)


def knee_flexion_signed(joints: torch.Tensor) -> torch.Tensor:
    """Knee flexion (rad) per side, negative for hyperextension, differentiable. (B, 9, 3) -> (B, 2) (left, right).

    The sign is that of the shank's turn from the thigh about the pelvis'
    left axis: a healthy knee only flexes (shank turns backwards).
    """
    _, frame = pelvis_frame(joints)
    hip, knee, ankle = (joints[..., list(index), :] for index in zip(*(side_joints(s)[:3] for s in SIDES)))
    thigh, shank = _unit(knee - hip), _unit(ankle - knee)                     # (B, 2, 3)
    sine = (torch.cross(thigh, shank, dim=-1) * frame[..., None, :, 1]).sum(-1)
    return torch.atan2(sine, (thigh * shank).sum(-1))


def geodesic_distance(a: torch.Tensor, b: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Pose-NDF's weighted geodesic distance between poses of unit quaternions. (..., K, 4) x (..., K, 4) -> (...,).

    d = sqrt(sum_k w_k / 2 * arccos(|<a_k, b_k>|)^2), insensitive to the quaternions' sign.
    """
    angle = torch.arccos((a * b).sum(-1).abs().clamp(max=1.0))
    w = torch.ones(a.shape[-2], dtype=a.dtype, device=a.device) if weights is None else weights
    return torch.sqrt((0.5 * w * angle ** 2).sum(-1))
