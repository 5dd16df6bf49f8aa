"""Scenes: a posed subject on a floor, optional clutter, seen by the camera.

Frames: the *gravity frame* is the robot's `base_link` (REP 103: x
forward, y left, z up, origin on the floor below the camera). The camera
looks along +x, pitched down at the legs. The subject stands in front of
it and faces the direction that puts the camera at the requested azimuth
(benchmark spec: 0 = camera in front of the subject, 90 = at its left).
"""
from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from ..geometry import look_at_pitched, yaw_matrix
from ..skeleton import JOINT_NAMES
from .body import BodyModel, PosedBodies
from .camera import (
    LABEL_BODY,
    LABEL_CLUTTER,
    LABEL_FLOOR,
    LABEL_LOWER_LIMB,
    LABEL_NONE,
    Intrinsics,
    RenderedFrame,
    SurfaceInfo,
    apply_depth_noise,
    raycast,
    shade,
)
from .gait import TOE_OFF_PHASE, GaitModel

#: The benchmark's views: name -> azimuth (deg) of the camera around the subject.
VIEWS: dict[str, float] = {"V1": 135.0, "V2": 90.0, "V3": 180.0, "V4": 225.0, "V5": 270.0, "V6": 0.0}
CANONICAL_VIEW = "V1"


@dataclass(frozen=True)
class CameraSetup:
    """Where the camera is relative to the subject (spec ranges by default)."""

    azimuth_deg: float
    distance_m: float = 2.5          # horizontal, camera to subject
    height_m: float = 0.9            # camera above the floor
    aim_height_m: float = 0.5        # the optical axis passes this high over the subject
    lateral_offset: float = 0.0      # subject off the optical axis, as a fraction of distance

    @property
    def pitch_rad(self) -> float:
        return float(np.arctan2(self.height_m - self.aim_height_m, self.distance_m))

    def camera_to_gravity(self) -> np.ndarray:
        return look_at_pitched(self.height_m, self.pitch_rad)

    def subject_xy(self) -> np.ndarray:
        return np.array([self.distance_m, self.lateral_offset * self.distance_m])

    def subject_yaw(self, subject_xy: np.ndarray | None = None) -> float:
        """Yaw of the subject's facing direction that puts the camera at `azimuth_deg`."""
        xy = self.subject_xy() if subject_xy is None else subject_xy
        to_camera = np.arctan2(-xy[1], -xy[0])
        return float(to_camera - np.deg2rad(self.azimuth_deg))

    def to_dict(self) -> dict:
        return asdict(self) | {"pitch_deg": float(np.rad2deg(self.pitch_rad))}


def sample_camera(rng: np.random.Generator, azimuth_deg: float) -> CameraSetup:
    """A camera of the spec's ranges: 1.5-3.5 m away, 0.6-1.3 m high, aimed at the legs."""
    return CameraSetup(
        azimuth_deg=float(azimuth_deg),
        distance_m=float(rng.uniform(1.5, 3.5)),
        height_m=float(rng.uniform(0.6, 1.3)),
        aim_height_m=float(rng.uniform(0.35, 0.65)),
        lateral_offset=float(rng.uniform(-0.12, 0.12)),
    )


@dataclass(frozen=True)
class Box:
    """An axis-aligned-in-yaw box standing on the floor (clutter or a wall)."""

    centre_xy: tuple[float, float]
    size: tuple[float, float, float]
    yaw: float = 0.0
    colour: tuple[int, int, int] = (150, 120, 90)

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        sx, sy, sz = self.size
        corners = np.array([[x, y, z] for x in (-sx / 2, sx / 2) for y in (-sy / 2, sy / 2) for z in (0.0, sz)])
        corners = corners @ yaw_matrix(self.yaw).T + [*self.centre_xy, 0.0]
        faces = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]])
        return corners, faces


def sample_clutter(rng: np.random.Generator, camera: CameraSetup, n_boxes: int | None = None,
                   wall: bool | None = None) -> list[Box]:
    """Boxes on the floor beside the walkway, and maybe a wall behind the subject.

    Clutter never stands between the camera and the subject nor within
    0.8 m of the subject, so it can hide the floor but not the legs.
    """
    subject = camera.subject_xy()
    n_boxes = int(rng.integers(0, 4)) if n_boxes is None else n_boxes
    boxes: list[Box] = []
    for _ in range(200):
        if len(boxes) == n_boxes:
            break
        xy = np.array([rng.uniform(0.8, camera.distance_m + 2.0), rng.uniform(-2.5, 2.5)])
        seg = subject / np.linalg.norm(subject)
        along = np.clip(xy @ seg, 0.0, np.linalg.norm(subject))
        if np.linalg.norm(xy - along * seg) < 0.9 or np.linalg.norm(xy - subject) < 0.8:
            continue
        size = (rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.2, 1.2))
        colour = tuple(int(c) for c in rng.integers(60, 220, 3))
        boxes.append(Box((float(xy[0]), float(xy[1])), size, float(rng.uniform(0, np.pi)), colour))
    if wall if wall is not None else rng.random() < 0.5:
        d = camera.distance_m + rng.uniform(1.0, 2.5)
        boxes.append(Box((d, 0.0), (0.1, 12.0, 2.5), float(rng.uniform(-0.3, 0.3)), (200, 190, 170)))
    return boxes


@dataclass(frozen=True)
class OccluderRanges:
    """Where `front_occluder` puts its box, each drawn uniformly in its range."""

    along: tuple[float, float] = (0.45, 0.75)       # share of the way from the camera to the subject
    aside_m: tuple[float, float] = (-0.35, 0.35)     # off the line of sight, sideways
    width_m: tuple[float, float] = (0.2, 0.6)        # across the line of sight
    depth_m: tuple[float, float] = (0.2, 0.6)        # along it
    height_m: tuple[float, float] = (0.3, 0.9)
    turn_deg: tuple[float, float] = (-20.0, 20.0)    # its faces off square to the line of sight


OCCLUDER = OccluderRanges()
#: Appended to a sample key's random stream for the occluder (`front_occluder`), so that a build with
#: one draws everything else as the build without.
OCCLUDER_STREAM = 7


def front_occluder(rng: np.random.Generator, camera: CameraSetup, ranges: OccluderRanges = OCCLUDER) -> Box:
    """A box standing on the floor between the camera and the subject, which the clutter of
    `sample_clutter` never does: it hides part of the legs (or all of them) in most scenes. For
    measuring how a pipeline copes with occlusion (`posesdf data build --occluder`)."""
    subject = camera.subject_xy()
    sight = subject / np.linalg.norm(subject)
    aside = np.array([-sight[1], sight[0]])
    centre = subject * rng.uniform(*ranges.along) + aside * rng.uniform(*ranges.aside_m)
    size = (rng.uniform(*ranges.depth_m), rng.uniform(*ranges.width_m), rng.uniform(*ranges.height_m))
    yaw = float(np.arctan2(sight[1], sight[0]) + np.deg2rad(rng.uniform(*ranges.turn_deg)))
    colour = tuple(int(c) for c in rng.integers(60, 220, 3))
    return Box((float(centre[0]), float(centre[1])), tuple(float(v) for v in size), yaw, colour)


def render_scene(body: PosedBodies, index: int, subject_to_gravity: np.ndarray, camera: CameraSetup,
                 clutter: list[Box], rng: np.random.Generator, noise: str,
                 lower_limb_face: np.ndarray, intrinsics: Intrinsics = Intrinsics(),
                 colours: dict[str, tuple[int, int, int]] | None = None
                 ) -> tuple[RenderedFrame, np.ndarray, np.ndarray]:
    """Render body `index` of a posed batch, placed by `subject_to_gravity`.

    `noise` is a profile name or a sensor model (`camera.ToFNoise`, ...);
    `colours` may name "trousers", "shirt" and "floor" (RGB). Returns the
    frame and the body's vertices and joints in the gravity frame.
    """
    import open3d as o3d

    R, t = subject_to_gravity[:3, :3], subject_to_gravity[:3, 3]
    verts = body.vertices[index] @ R.T + t
    joints = body.joints[index] @ R.T + t
    scene = o3d.t.geometry.RaycastingScene()
    f32, i32 = o3d.core.Dtype.Float32, o3d.core.Dtype.UInt32

    def add(v: np.ndarray, f: np.ndarray) -> int:
        return scene.add_triangles(o3d.core.Tensor(v.astype(np.float32), f32),
                                   o3d.core.Tensor(f.astype(np.uint32), i32))

    body_id = add(verts, body.faces)
    floor = np.array([[-20.0, -20.0, 0.0], [20.0, -20.0, 0.0], [20.0, 20.0, 0.0], [-20.0, 20.0, 0.0]])
    floor_id = add(floor, np.array([[0, 1, 2], [0, 2, 3]]))
    clutter_ids = {add(*box.mesh()): box for box in clutter}

    cam = camera.camera_to_gravity()
    hit = raycast(scene, intrinsics, cam)
    depth = np.where(np.isfinite(hit["t_hit"]), hit["t_hit"], np.nan).astype(np.float32)
    gid, pid = hit["geometry_ids"], hit["primitive_ids"]
    labels = np.full(depth.shape, LABEL_NONE, np.uint8)
    labels[gid == floor_id] = LABEL_FLOOR
    is_body = gid == body_id
    labels[is_body] = LABEL_BODY
    lower = np.zeros_like(is_body)
    lower[is_body] = lower_limb_face[pid[is_body]]
    labels[lower] = LABEL_LOWER_LIMB

    colours = colours or {"trousers": (40, 60, 110), "shirt": (170, 50, 50)}
    albedo = np.full(depth.shape + (3,), 30.0)
    dirs = intrinsics.pixel_rays() @ cam[:3, :3].T
    hits = cam[:3, 3] + dirs * np.nan_to_num(depth)[..., None]
    checker = (np.floor(hits[..., 0] * 2) + np.floor(hits[..., 1] * 2)) % 2
    floor_rgb = np.array(colours.get("floor", (170.0, 170.0, 165.0)), float)
    albedo[gid == floor_id] = (floor_rgb + 30 * checker[..., None])[gid == floor_id]
    for cid, box in clutter_ids.items():
        albedo[gid == cid] = box.colour
    albedo[is_body] = colours["shirt"]
    albedo[lower] = colours["trousers"]
    rgb = shade(hit["primitive_normals"], dirs, albedo)
    for cid in clutter_ids:
        labels[gid == cid] = LABEL_CLUTTER
    surface = None
    if not isinstance(noise, str):   # the sensor models' signal: reflectance and incidence of each hit
        hit_any = np.isfinite(depth)
        normals = hit["primitive_normals"] / np.maximum(np.linalg.norm(hit["primitive_normals"], axis=-1,
                                                                       keepdims=True), 1e-9)
        cos = np.abs(np.sum(normals * dirs / np.linalg.norm(dirs, axis=-1, keepdims=True), axis=-1))
        surface = SurfaceInfo(np.where(hit_any, albedo.mean(-1) / 255.0, np.nan), np.where(hit_any, cos, np.nan))
    depth, labels = apply_depth_noise(depth, labels, rng, noise, surface, intrinsics)
    return RenderedFrame(depth, rgb, labels, cam, intrinsics), verts, joints


class WalkingSubject:
    """One subject walking with a gait model, posed and placed frame by frame.

    `mode` is `treadmill` (the subject stays in place) or `overground`
    (the subject walks along its facing direction at `walking_speed_mps`,
    the speed its legs' stance kinematics give; the camera sees it at the
    setup's azimuth at mid-sequence).
    """

    def __init__(self, body_model: BodyModel, build: dict[str, float], gait: GaitModel,
                 camera: CameraSetup, mode: str = "treadmill", duration_s: float = 4.0,
                 phase0: float = 0.0):
        if mode not in ("treadmill", "overground"):
            raise ValueError(f"unknown walking mode {mode!r}; expected 'treadmill' or 'overground'")
        self.body_model, self.build, self.gait, self.camera = body_model, build, gait, camera
        self.mode, self.duration_s, self.phase0 = mode, duration_s, phase0
        self.yaw = camera.subject_yaw()
        self.speed_mps = self.walking_speed_mps if mode == "overground" else 0.0

    @functools.cached_property
    def walking_speed_mps(self) -> float:
        """The belt speed (treadmill) or the subject's speed (overground), m/s.

        The stance ankle's backward travel relative to the pelvis, along the
        subject's forward axis, from its heel strike to its toe off (the
        warped phases 0 and TOE_OFF_PHASE, `GaitModel.unwarp`) over that
        time, averaged over both legs. The right leg's amplitudes are scaled
        by (1 - asymmetry), so its stance ankle travels slower than the left
        one; no one speed keeps both feet put, and each slides by half the
        difference.
        """
        heel_strike, toe_off = self.gait.unwarp(0.0), self.gait.unwarp(TOE_OFF_PHASE)
        # Left leg's phases for both legs' events: the right leg runs half a cycle behind.
        phases = np.array([heel_strike, toe_off, heel_strike + 0.5, toe_off + 0.5])
        joints = self.body_model.pose(self.build, self.gait.angles(phases)).joints
        forward = joints[..., 0] - joints[:, JOINT_NAMES.index("pelvis"), None, 0]
        travel = [forward[2 * k, ankle] - forward[2 * k + 1, ankle]
                  for k, ankle in enumerate((JOINT_NAMES.index("left_ankle"), JOINT_NAMES.index("right_ankle")))]
        return float(np.mean(travel) / ((toe_off - heel_strike) * self.gait.params.cycle_s))

    @property
    def stride_length_m(self) -> float:
        return self.walking_speed_mps * self.gait.params.cycle_s

    def poses(self, times_s: np.ndarray) -> tuple[PosedBodies, np.ndarray]:
        """Posed bodies at `times_s` and their subject_to_gravity transforms (T, 4, 4)."""
        times_s = np.atleast_1d(np.asarray(times_s, float))
        body = self.body_model.pose(self.build, self.gait.angles(self.gait.phase_at(times_s, self.phase0)))
        R = yaw_matrix(self.yaw)
        start = self.camera.subject_xy() - R[:2, 0] * self.speed_mps * self.duration_s / 2
        T = np.tile(np.eye(4), (len(times_s), 1, 1))
        T[:, :3, :3] = R
        T[:, :2, 3] = start + np.outer(times_s * self.speed_mps, R[:2, 0])
        return body, T
