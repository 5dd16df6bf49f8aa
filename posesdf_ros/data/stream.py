"""A walking test subject seen by the virtual depth + RGB camera, frame by frame.

The source of the `synthetic_camera` node and the bag recorder: a
`data.walker.Walker` drawn from a `WalkerConfig`, its frames as the camera
driver gives them. ROS-free: frames are numpy arrays.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .body import BodyModel
from .camera import LABEL_LOWER_LIMB, Intrinsics, RenderedFrame
from .gait import CONDITIONS
from .scene import VIEWS, CameraSetup
from .walker import Walker, draw_walker


@dataclass(frozen=True)
class WalkerConfig:
    """What the synthetic camera shows. Defaults: a normal walker at the canonical view."""

    condition: str = "normal"
    view: str = "V1"
    body_index: int = 0                 # test body 0..99 (disjoint from the training bodies)
    seed: int = 1                       # gait variation, noise, clutter
    noise: str = "realistic"
    clutter_boxes: int = 2
    cadence_spm: float = 0.0            # 0: drawn from the spec's range
    distance_m: float = 2.5             # camera to subject, horizontal
    camera_height_m: float = 0.9
    camera_pitch_deg: float = 9.0       # down from horizontal
    width: int = 640
    height: int = 360

    def __post_init__(self):
        if self.condition not in CONDITIONS:
            raise ValueError(f"unknown condition {self.condition!r}; expected one of {CONDITIONS}")
        if self.view not in VIEWS:
            raise ValueError(f"unknown view {self.view!r}; expected one of {tuple(VIEWS)}")

    def camera(self) -> CameraSetup:
        aim = self.camera_height_m - self.distance_m * np.tan(np.deg2rad(self.camera_pitch_deg))
        return CameraSetup(VIEWS[self.view], self.distance_m, self.camera_height_m, float(aim))

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class StreamFrame:
    """One frame: the organised cloud in the camera's optical frame (NaN = no return)."""

    stamp_s: float
    cloud: np.ndarray               # (H, W, 3) float32, optical frame
    rgb: np.ndarray                 # (H, W, 3) uint8
    leg_mask: np.ndarray            # (H, W) bool, the benchmark's lower-limb points
    joints: np.ndarray              # (9, 3) gravity frame
    camera_to_gravity: np.ndarray   # (4, 4)
    subject_to_gravity: np.ndarray  # (4, 4)
    intrinsics: Intrinsics

    def points_gravity(self) -> np.ndarray:
        """The valid points in the gravity frame, (N, 3) float32."""
        pts = self.cloud[np.isfinite(self.cloud).all(-1)].astype(np.float64)
        return (pts @ self.camera_to_gravity[:3, :3].T + self.camera_to_gravity[:3, 3]).astype(np.float32)


class SyntheticWalker:
    """Renders frames of one treadmill walker; `frame(t)` is deterministic in (config, t)."""

    def __init__(self, config: WalkerConfig = WalkerConfig(), body_model: BodyModel | None = None):
        self.config = config
        intrinsics = Intrinsics(width=config.width, height=config.height,
                                fx=464.0 * config.width / 640, fy=464.0 * config.width / 640)
        self.walker: Walker = draw_walker(
            np.random.default_rng([config.seed, 7919]), config.condition, body=config.body_index,
            view=config.view, camera=config.camera(), cadence_spm=config.cadence_spm,
            clutter_boxes=config.clutter_boxes, intrinsics=intrinsics, body_model=body_model)

    @property
    def cycle_s(self) -> float:
        return self.walker.cycle_s

    def frame(self, t: float) -> StreamFrame:
        """The frame at time `t` (s) of the walk."""
        rng = np.random.default_rng([self.config.seed, 104729, int(round(t * 1e6))])
        (f,) = self.walker.frames(np.array([t]), rng, self.config.noise)
        rendered = f.rendered
        return StreamFrame(float(t), rendered.organised_cloud(), rendered.rgb, self._leg_mask(rendered, f.joints),
                           f.joints.astype(np.float32), rendered.camera_to_gravity, f.subject_to_gravity,
                           self.walker.intrinsics)

    @staticmethod
    def _leg_mask(rendered: RenderedFrame, joints: np.ndarray) -> np.ndarray:
        """Lower-limb pixels below the spec's crop (pelvis + 0.10 m), as in the test samples."""
        cloud = rendered.organised_cloud().astype(np.float64)
        z = cloud @ rendered.camera_to_gravity[2, :3] + rendered.camera_to_gravity[2, 3]
        return (rendered.labels == LABEL_LOWER_LIMB) & np.isfinite(z) & (z < joints[0, 2] + 0.10)
