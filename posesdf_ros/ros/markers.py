"""Messages for joints, skeleton markers and meshes (RViz 2 / Foxglove).

Marker namespaces and ids are stable (`joints`/0..8, `bones`/0, `mesh`/0),
colours are in 0..1, and every marker has a lifetime, so a person who
leaves the view does not stay frozen on screen.
"""
from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Duration
from geometry_msgs.msg import Point, Pose, PoseArray, Quaternion
from shape_msgs.msg import Mesh, MeshTriangle
from std_msgs.msg import ColorRGBA, Header
from visualization_msgs.msg import Marker

from ..skeleton import BONES, JOINT_NAMES
from .frames import is_rotation

JOINT_COLOURS = {"left": (0.2, 0.6, 1.0), "right": (1.0, 0.4, 0.2), "pelvis": (0.9, 0.9, 0.9)}


def _duration(seconds: float) -> Duration:
    return Duration(sec=int(seconds), nanosec=int((seconds % 1.0) * 1e9))


def _colour(name: str) -> ColorRGBA:
    r, g, b = JOINT_COLOURS[name.split("_")[0]]
    return ColorRGBA(r=r, g=g, b=b, a=1.0)


def segment_orientations(joints: np.ndarray) -> list[Quaternion]:
    """Per joint, the rotation taking +x onto its segment (joint to child joint), where one exists.

    The pelvis points from the right to the left hip; a foot joint has no
    child and gets the identity, as do degenerate segments.
    """
    children = {a: b for a, b in BONES if a != 0}
    directions: dict[int, np.ndarray] = ({0: joints[1] - joints[5]}
                                         | {a: joints[b] - joints[a] for a, b in children.items()})
    out = []
    for i in range(len(JOINT_NAMES)):
        d = directions.get(i)
        out.append(_quaternion_from_x(d) if d is not None else Quaternion(w=1.0))
    return out


def _quaternion_from_x(direction: np.ndarray) -> Quaternion:
    norm = np.linalg.norm(direction)
    if not np.isfinite(norm) or norm < 1e-9:
        return Quaternion(w=1.0)
    d = direction / norm
    # Shortest-arc rotation from +x to d; opposite vectors turn about z.
    w = 1.0 + d[0]
    if w < 1e-9:
        return Quaternion(x=0.0, y=0.0, z=1.0, w=0.0)
    axis = np.cross([1.0, 0.0, 0.0], d)
    q = np.array([axis[0], axis[1], axis[2], w])
    q /= np.linalg.norm(q)
    return Quaternion(x=float(q[0]), y=float(q[1]), z=float(q[2]), w=float(q[3]))


def joints_to_pose_array(joints: np.ndarray, header: Header) -> PoseArray:
    """(9, 3) joints in JOINT_NAMES order -> PoseArray with segment orientations."""
    joints = np.asarray(joints, dtype=np.float64)
    poses = [Pose(position=Point(x=float(x), y=float(y), z=float(z)), orientation=q)
             for (x, y, z), q in zip(joints, segment_orientations(joints))]
    return PoseArray(header=header, poses=poses)


def pose_array_to_joints(msg: PoseArray) -> np.ndarray:
    """PoseArray -> (N, 3) positions; ValueError if it does not hold the nine joints."""
    if len(msg.poses) != len(JOINT_NAMES):
        raise ValueError(f"expected {len(JOINT_NAMES)} joint poses, got {len(msg.poses)}")
    return np.array([[p.position.x, p.position.y, p.position.z] for p in msg.poses], dtype=np.float64)


#: No two joints of a person's lower limbs are farther apart than this (m): a standing adult of 2.1 m
#: spans about 1.2 m from pelvis to toe, a stride about 1.8 m.
MAX_SKELETON_EXTENT_M = 2.5


def implausible_joints(joints: np.ndarray, max_abs_m: float) -> str:
    """Why (9, 3) joints cannot be a person's lower limbs, or "": an infinite value, a joint beyond
    `max_abs_m` of the origin on an axis, or joints spread wider than `MAX_SKELETON_EXTENT_M`.
    NaN joints are allowed (hidden joints); only the others are checked."""
    if np.isinf(joints).any():
        return "a joint is infinite"
    seen = joints[np.isfinite(joints).all(axis=1)]
    if len(seen) and np.abs(seen).max() > max_abs_m:
        return f"a joint is {np.abs(seen).max():.3g} m from the origin (> {max_abs_m} m)"
    extent = np.linalg.norm(seen[:, None] - seen[None], axis=-1).max() if len(seen) > 1 else 0.0
    if extent > MAX_SKELETON_EXTENT_M:
        return f"the joints span {extent:.3g} m (> {MAX_SKELETON_EXTENT_M} m for a person's lower limbs)"
    return ""


def joints_from_message(msg: PoseArray, max_abs_m: float) -> np.ndarray:
    """A joints PoseArray (JOINT_NAMES order; NaN positions are hidden joints) -> (9, 3); ValueError if it
    is malformed, implausible (`implausible_joints`) or a known joint's orientation is not a unit quaternion."""
    joints = pose_array_to_joints(msg)
    problem = implausible_joints(joints, max_abs_m)
    if problem:
        raise ValueError(problem)
    for name, pose, xyz in zip(JOINT_NAMES, msg.poses, joints):
        q = pose.orientation
        if np.isfinite(xyz).all() and not is_rotation(q):
            norm = float(np.linalg.norm([q.w, q.x, q.y, q.z]))
            raise ValueError(f"joint {name} has a quaternion of norm {norm:.3g}, not a rotation")
    return joints


#: The most transparent a joint sphere gets, at confidence 0 (so that it still shows).
MIN_JOINT_ALPHA = 0.25
#: Colour of a skeleton not settled yet (the pose prior's warm-up): grey, whatever the joint.
INITIALISING_RGB = (0.6, 0.6, 0.6)


def skeleton_markers(joints: np.ndarray, header: Header, lifetime_s: float, diameter_m: float = 0.04,
                     confidence: np.ndarray | None = None, initialising: bool = False) -> list[Marker]:
    """Joint spheres (ns `joints`, ids 0..8; opacity from MIN_JOINT_ALPHA at confidence 0 to 1 at 1, when
    `confidence` (9,) is given) and bones (ns `bones`, one LINE_LIST); all grey (`INITIALISING_RGB`) when
    `initialising`."""
    def colour_of(name: str) -> ColorRGBA:
        return ColorRGBA(r=INITIALISING_RGB[0], g=INITIALISING_RGB[1], b=INITIALISING_RGB[2], a=1.0) \
            if initialising else _colour(name)

    life = _duration(lifetime_s)
    markers = []
    alphas = np.ones(len(JOINT_NAMES)) if confidence is None else \
        MIN_JOINT_ALPHA + (1.0 - MIN_JOINT_ALPHA) * np.clip(np.asarray(confidence, float), 0.0, 1.0)
    for i, (name, xyz) in enumerate(zip(JOINT_NAMES, np.asarray(joints, float))):
        colour = colour_of(name)
        colour.a = float(alphas[i])
        m = Marker(header=header, ns="joints", id=i, type=Marker.SPHERE, action=Marker.ADD,
                   lifetime=life, color=colour)
        m.pose.position = Point(x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2]))
        m.pose.orientation.w = 1.0
        m.scale.x = m.scale.y = m.scale.z = diameter_m
        markers.append(m)
    bones = Marker(header=header, ns="bones", id=0, type=Marker.LINE_LIST, action=Marker.ADD,
                   lifetime=life)
    bones.pose.orientation.w = 1.0
    bones.scale.x = diameter_m / 3
    for a, b in BONES:
        for j in (a, b):
            bones.points.append(Point(x=float(joints[j][0]), y=float(joints[j][1]), z=float(joints[j][2])))
            bones.colors.append(colour_of(JOINT_NAMES[b]))
    markers.append(bones)
    return markers


def mesh_marker(vertices: np.ndarray, faces: np.ndarray, header: Header, lifetime_s: float,
                rgba: tuple[float, float, float, float] = (0.55, 0.7, 0.9, 0.6)) -> Marker:
    """The lower-limb mesh as a TRIANGLE_LIST (RViz 2 draws no embedded mesh resources)."""
    m = Marker(header=header, ns="mesh", id=0, type=Marker.TRIANGLE_LIST, action=Marker.ADD,
               lifetime=_duration(lifetime_s), color=ColorRGBA(r=rgba[0], g=rgba[1], b=rgba[2], a=rgba[3]))
    m.pose.orientation.w = 1.0
    m.scale.x = m.scale.y = m.scale.z = 1.0
    tri = np.asarray(vertices, np.float64)[np.asarray(faces).reshape(-1)]
    m.points = [Point(x=float(x), y=float(y), z=float(z)) for x, y, z in tri]
    return m


def mesh_to_msg(vertices: np.ndarray, faces: np.ndarray) -> Mesh:
    """shape_msgs/Mesh of a triangle mesh (vertices in the header's frame of the enclosing topic)."""
    return Mesh(triangles=[MeshTriangle(vertex_indices=[int(a), int(b), int(c)]) for a, b, c in faces],
                vertices=[Point(x=float(x), y=float(y), z=float(z)) for x, y, z in vertices])

