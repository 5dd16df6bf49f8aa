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
from geometry_msgs.msg import Point, Pose, Quaternion

from ..data.camera import look_at_pitched

try:  # tf2 is not on PyPI; a full ROS 2 install has it.
    import tf2_ros
except ImportError:  # pragma: no cover - depends on the installation
    tf2_ros = None


def extrinsics_from_parameters(p) -> np.ndarray:
    """camera optical frame -> gravity frame (4, 4) from the node's camera_* parameters."""
    return look_at_pitched(p.camera_height_m, np.deg2rad(p.camera_pitch_deg), np.deg2rad(p.camera_yaw_deg),
                           (p.camera_x_m, p.camera_y_m))


class Extrinsics:
    """Looks the camera's pose up in tf2 at each cloud's stamp, falling back to the parameters."""

    def __init__(self, node, use_tf: bool):
        self.node = node
        self.fallback = extrinsics_from_parameters(node.p)
        self.buffer = None
        if use_tf and tf2_ros is not None:
            self.buffer = tf2_ros.Buffer()
            self.listener = tf2_ros.TransformListener(self.buffer, node)

    @property
    def source(self) -> str:
        return "tf2" if self.buffer is not None else "parameters"

    def camera_to_gravity(self, header, gravity_frame: str) -> np.ndarray:
        """(4, 4) for the cloud's frame at its stamp; the parameters when tf2 has no answer."""
        if header.frame_id == gravity_frame:
            return np.eye(4)
        if self.buffer is None or not header.frame_id:
            return self.fallback
        try:
            from rclpy.time import Time

            t = self.buffer.lookup_transform(gravity_frame, header.frame_id, Time.from_msg(header.stamp))
        except Exception as err:  # noqa: BLE001  (tf2 raises several exception types)
            self.node.warn("tf", f"no transform {header.frame_id} -> {gravity_frame} at the cloud's stamp "
                                 f"({err}); using the camera_* parameters")
            return self.fallback
        return _rigid(t.transform.rotation, t.transform.translation)


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


def heading_pose(centre_xy: np.ndarray, yaw: float) -> Pose:
    """The person's heading frame: on the floor below `centre_xy`, x along the heading."""
    return Pose(position=Point(x=float(centre_xy[0]), y=float(centre_xy[1]), z=0.0),
                orientation=Quaternion(z=float(np.sin(yaw / 2)), w=float(np.cos(yaw / 2))))


def yaw_of(pose: Pose) -> float:
    q = pose.orientation
    return float(np.arctan2(2.0 * (q.w * q.z + q.x * q.y), 1.0 - 2.0 * (q.y * q.y + q.z * q.z)))
