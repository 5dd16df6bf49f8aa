"""Camera extrinsics: from tf2 at the message's stamp where tf2_ros is installed, else from parameters.

The parameters describe the camera as the synthetic camera and most robot
URDFs place it: at (`camera_x_m`, `camera_y_m`, `camera_height_m`) in the
gravity frame, looking along x turned by `camera_yaw_deg` and pitched down
by `camera_pitch_deg`. Clouds are in that camera's optical frame (x right,
y down, z forward), as ROS camera drivers publish them.
"""
from __future__ import annotations

import numpy as np
import transforms3d
from geometry_msgs.msg import Point, Pose, Quaternion, Transform, TransformStamped, Vector3

from ..geometry import look_at_pitched

try:  # tf2 is not on PyPI; a full ROS 2 install has it.
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the installation
    tf2_ros = None


def extrinsics_from_parameters(p) -> np.ndarray:
    """camera optical frame -> gravity frame (4, 4) from the node's camera_* parameters."""
    return look_at_pitched(p.camera_height_m, np.deg2rad(p.camera_pitch_deg), np.deg2rad(p.camera_yaw_deg),
                           (p.camera_x_m, p.camera_y_m))


class Extrinsics:
    """Looks the camera's pose up in tf2 at each cloud's stamp, falling back to the parameters.

    `source` says where the last cloud's pose came from, and `problem` is
    non-empty while the parameters stand in for a frame they do not
    describe (tf2 has no transform for it, tf2 is not installed and the
    frame is not `camera_frame`, or the cloud names no frame).
    """

    def __init__(self, node, use_tf: bool):
        self.node = node
        self.fallback = extrinsics_from_parameters(node.p)
        self.camera_frame = node.p.camera_frame
        self.buffer = None
        if use_tf and tf2_ros is not None:
            self.buffer = tf2_ros.Buffer()
            self.listener = tf2_ros.TransformListener(self.buffer, node)
        self.source = "tf2" if self.buffer is not None else "parameters"
        self.problem = ""

    def camera_to_gravity(self, header, gravity_frame: str) -> np.ndarray:
        """(4, 4) for the cloud's frame at its stamp; the parameters when tf2 has no answer."""
        frame = header.frame_id.lstrip("/")
        self.problem = ""
        if frame == gravity_frame.lstrip("/"):
            self.source = "identity (cloud in the gravity frame)"
            return np.eye(4)
        if not frame:
            return self._guess("the cloud has an empty frame_id")
        if self.buffer is None:
            if frame == self.camera_frame.lstrip("/"):
                self.source = "parameters"
                return self.fallback
            return self._guess(f"no pose for frame '{frame}': tf2_ros is not installed and the camera_* "
                               f"parameters describe '{self.camera_frame}'")
        try:
            from rclpy.time import Time

            t = self.buffer.lookup_transform(gravity_frame, frame, Time.from_msg(header.stamp))
        except Exception as err:  # noqa: BLE001  (tf2 raises several exception types)
            return self._guess(f"no transform {frame} -> {gravity_frame} at the cloud's stamp ({err})")
        self.source = "tf2"
        return _rigid(t.transform.rotation, t.transform.translation)

    def _guess(self, why: str) -> np.ndarray:
        self.source = "parameters (guessed)"
        self.problem = f"{why}; using the camera_* parameters"
        self.node.warn("extrinsics", self.problem)
        return self.fallback


def matrix_to_pose(T: np.ndarray) -> Pose:
    w, x, y, z = transforms3d.quaternions.mat2quat(T[:3, :3])
    return Pose(position=Point(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                orientation=Quaternion(x=float(x), y=float(y), z=float(z), w=float(w)))


def _rigid(q, t) -> np.ndarray:
    """(4, 4) from a geometry_msgs Quaternion and a Point or Vector3."""
    T = np.eye(4)
    T[:3, :3] = transforms3d.quaternions.quat2mat([q.w, q.x, q.y, q.z])
    T[:3, 3] = [t.x, t.y, t.z]
    return T


def pose_to_matrix(pose: Pose) -> np.ndarray:
    return _rigid(pose.orientation, pose.position)


#: Largest |norm - 1| of a quaternion read as a rotation: float32 rounding is ~1e-7, a zero or garbage
#: quaternion is far off (a zero quaternion must not be read as the identity).
QUATERNION_NORM_TOLERANCE = 1e-3


def is_rotation(q: Quaternion) -> bool:
    """A finite quaternion of norm 1 within QUATERNION_NORM_TOLERANCE."""
    norm = float(np.linalg.norm([q.w, q.x, q.y, q.z]))
    return abs(norm - 1.0) <= QUATERNION_NORM_TOLERANCE


def checked_pose(pose: Pose, max_abs_m: float, what: str) -> np.ndarray:
    """(4, 4) of a pose whose values are finite, position within `max_abs_m` of the origin on every
    axis and orientation a unit quaternion; ValueError naming `what` otherwise."""
    t, q = pose.position, pose.orientation
    position, quat = np.array([t.x, t.y, t.z]), np.array([q.w, q.x, q.y, q.z])
    if not (np.isfinite(position).all() and np.isfinite(quat).all()):
        raise ValueError(f"{what} is not finite (position {position.tolist()}, quaternion {quat.tolist()})")
    if np.abs(position).max() > max_abs_m:
        raise ValueError(f"{what} is {np.abs(position).max():.3g} m from the origin (> {max_abs_m} m)")
    if not is_rotation(q):
        raise ValueError(f"{what} has a quaternion of norm {np.linalg.norm(quat):.3g}, not a rotation")
    return pose_to_matrix(pose)


def pose_to_transform(pose: Pose, header, child_frame_id: str) -> TransformStamped:
    """The pose of `child_frame_id` in `header.frame_id`, at `header.stamp`, as a tf2 transform."""
    p, q = pose.position, pose.orientation
    return TransformStamped(header=header, child_frame_id=child_frame_id,
                            transform=Transform(translation=Vector3(x=p.x, y=p.y, z=p.z), rotation=q))


def heading_pose(centre_xy: np.ndarray, yaw: float) -> Pose:
    """The person's heading frame: on the floor below `centre_xy`, x along the heading."""
    return Pose(position=Point(x=float(centre_xy[0]), y=float(centre_xy[1]), z=0.0),
                orientation=Quaternion(z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2))))


def yaw_of(pose: Pose) -> float:
    q = pose.orientation
    return float(np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))
