"""numpy <-> rosbags messages (the typestore's dataclasses, no rclpy).

`cloud_xyz` and `pose_array_joints` also read rclpy messages: they use only
the message fields.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import transforms3d

from ...skeleton import JOINT_NAMES
from .layout import GT_GAIT_STATUS

#: PointField datatype -> numpy type code (sensor_msgs/PointField constants).
POINT_FIELD_TYPES = {1: "i1", 2: "u1", 3: "i2", 4: "u2", 5: "i4", 6: "u4", 7: "f4", 8: "f8"}
FLOAT32 = 7


@lru_cache(maxsize=1)
def typestore():
    """The ROS 2 Jazzy message types of `rosbags` (tf2_msgs and rosgraph_msgs included)."""
    from rosbags.typesys import Stores, get_typestore

    return get_typestore(Stores.ROS2_JAZZY)


def _t(name: str):
    return typestore().types[name]


def time_msg(t_ns: int):
    return _t("builtin_interfaces/msg/Time")(sec=int(t_ns // 1_000_000_000), nanosec=int(t_ns % 1_000_000_000))


def header(t_ns: int, frame_id: str):
    return _t("std_msgs/msg/Header")(stamp=time_msg(t_ns), frame_id=frame_id)


def stamp_ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


# --------------------------------------------------------------------------- clouds and images


def cloud_msg(xyz: np.ndarray, hdr, rgb: np.ndarray | None = None):
    """PointCloud2 of float32 x, y, z (+ packed PCL rgb): (H, W, 3) organised (NaN holes) or (N, 3)."""
    xyz = np.asarray(xyz, dtype="<f4")
    height, width = xyz.shape[:2] if xyz.ndim == 3 else (1, len(xyz))
    floats = 3 if rgb is None else 4
    buffer = np.empty((height, width, floats), dtype="<f4")
    buffer[..., :3] = xyz.reshape(height, width, 3)
    if rgb is not None:
        r, g, b = (rgb.reshape(height, width, 3)[..., i].astype("<u4") for i in range(3))
        buffer.view("<u4")[..., 3] = (r << 16) | (g << 8) | b
    field = _t("sensor_msgs/msg/PointField")
    return _t("sensor_msgs/msg/PointCloud2")(
        header=hdr, height=height, width=width,
        fields=[field(name=n, offset=4 * i, datatype=FLOAT32, count=1)
                for i, n in enumerate(("x", "y", "z", "rgb")[:floats])],
        is_bigendian=False, point_step=4 * floats, row_step=4 * floats * width,
        data=buffer.reshape(-1).view(np.uint8), is_dense=bool(np.isfinite(xyz).all()))


def cloud_xyz(msg, keep_organised: bool = False) -> np.ndarray:
    """(N, 3) float32 finite points of a PointCloud2 (any point_step, row padding, byte order, f4/f8 xyz);
    with `keep_organised`, (height, width, 3) with NaN where a pixel has none."""
    fields = {f.name: f for f in msg.fields}
    missing = [n for n in "xyz" if n not in fields]
    if missing:
        raise ValueError(f"cloud has no {', '.join(missing)} field (fields: {', '.join(fields) or 'none'})")
    order = ">" if msg.is_bigendian else "<"
    for n in "xyz":
        if fields[n].datatype not in (7, 8):
            raise ValueError(f"cloud field '{n}' has datatype {fields[n].datatype}; x, y, z must be FLOAT32 or FLOAT64")
    dtype = np.dtype({"names": list("xyz"), "formats": [order + POINT_FIELD_TYPES[fields[n].datatype] for n in "xyz"],
                      "offsets": [fields[n].offset for n in "xyz"], "itemsize": msg.point_step})
    data = np.frombuffer(msg.data, dtype=np.uint8)
    if data.size < msg.height * msg.row_step or msg.width * msg.point_step > msg.row_step:
        raise ValueError(f"cloud data has {data.size} bytes, less than height {msg.height} x row_step {msg.row_step}")
    points = np.ndarray((msg.height, msg.width), dtype=dtype, buffer=data, strides=(msg.row_step, msg.point_step))
    xyz = np.stack([points[n].astype(np.float32) for n in "xyz"], axis=-1)
    if keep_organised:
        return xyz
    xyz = xyz.reshape(-1, 3)
    return xyz[np.isfinite(xyz).all(axis=1)]


def image_msg(rgb: np.ndarray, hdr):
    height, width = rgb.shape[:2]
    return _t("sensor_msgs/msg/Image")(header=hdr, height=height, width=width, encoding="rgb8", is_bigendian=0,
                                        step=3 * width, data=np.ascontiguousarray(rgb, np.uint8).reshape(-1))


def camera_info_msg(K: np.ndarray, width: int, height: int, hdr):
    K = np.asarray(K, float)
    roi = _t("sensor_msgs/msg/RegionOfInterest")(x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return _t("sensor_msgs/msg/CameraInfo")(
        header=hdr, height=height, width=width, distortion_model="plumb_bob", d=np.zeros(5), k=K.reshape(-1),
        r=np.eye(3).reshape(-1), p=np.hstack([K, np.zeros((3, 1))]).reshape(-1), binning_x=0, binning_y=0, roi=roi)


# --------------------------------------------------------------------------- joints


def pose_array_msg(joints: np.ndarray, hdr):
    """PoseArray of the nine joints in JOINT_NAMES order (positions; identity orientations)."""
    point, quat, pose = (_t(f"geometry_msgs/msg/{n}") for n in ("Point", "Quaternion", "Pose"))
    return _t("geometry_msgs/msg/PoseArray")(header=hdr, poses=[
        pose(position=point(x=float(p[0]), y=float(p[1]), z=float(p[2])), orientation=quat(x=0.0, y=0.0, z=0.0, w=1.0))
        for p in np.asarray(joints, float)])


def pose_array_joints(msg) -> np.ndarray:
    """(9, 3) joint positions of a PoseArray; ValueError unless it holds nine poses."""
    if len(msg.poses) != len(JOINT_NAMES):
        raise ValueError(f"joints PoseArray has {len(msg.poses)} poses, expected {len(JOINT_NAMES)}")
    return np.array([[p.position.x, p.position.y, p.position.z] for p in msg.poses], dtype=np.float64)


# --------------------------------------------------------------------------- transforms


def tf_message(parent: str, child: str, T: np.ndarray, t_ns: int):
    """tf2_msgs/TFMessage with one transform: `child` expressed in `parent` (T maps child -> parent)."""
    w, x, y, z = transforms3d.quaternions.mat2quat(np.asarray(T)[:3, :3])
    vec, quat = _t("geometry_msgs/msg/Vector3"), _t("geometry_msgs/msg/Quaternion")
    transform = _t("geometry_msgs/msg/Transform")(translation=vec(x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3])),
                                                  rotation=quat(x=float(x), y=float(y), z=float(z), w=float(w)))
    stamped = _t("geometry_msgs/msg/TransformStamped")(header=header(t_ns, parent), child_frame_id=child,
                                                       transform=transform)
    return _t("tf2_msgs/msg/TFMessage")(transforms=[stamped])


def transform_matrix(transform) -> np.ndarray:
    """(4, 4) of a geometry_msgs/Transform."""
    q, t = transform.rotation, transform.translation
    T = np.eye(4)
    T[:3, :3] = transforms3d.quaternions.quat2mat([q.w, q.x, q.y, q.z])
    T[:3, 3] = [t.x, t.y, t.z]
    return T


# --------------------------------------------------------------------------- ground-truth gait


def gait_message(values: dict, t_ns: int):
    """DiagnosticArray with one status named GT_GAIT_STATUS whose key-values are `values` (str())."""
    kv = _t("diagnostic_msgs/msg/KeyValue")
    status = _t("diagnostic_msgs/msg/DiagnosticStatus")(
        level=0, name=GT_GAIT_STATUS, message="ground truth of the generator", hardware_id="posesdf bag record",
        values=[kv(key=k, value=str(v)) for k, v in values.items()])
    return _t("diagnostic_msgs/msg/DiagnosticArray")(header=header(t_ns, ""), status=[status])


def gait_values(msg) -> dict[str, str] | None:
    """The key-values of a DiagnosticArray's ground-truth gait status, or None if it has none."""
    for status in msg.status:
        if status.name == GT_GAIT_STATUS:
            return {kv.key: kv.value for kv in status.values}
    return None
