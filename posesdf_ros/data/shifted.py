"""A second, independent scene generator, for the `shifted` validation split only.

Nothing here is used to train: `posesdf data build --split shifted` writes
scenes in the test split's format (same keys, same (condition, view)
cells, so `posesdf eval --data DIR` reads them) from choices that neither
the paper's generator nor the product engine (`data.domain`) makes:

- bodies of their own stream, drawn from Beta distributions (mostly
  near-binary gender, mid-range age and build) rather than uniform ones;
- gait curves of another family, "bumps": a baseline plus von Mises bumps
  at the gait events, on a time axis warped so that stance lasts 56 to 66 %
  of the cycle (the other generators fix toe-off at 62 %); cadence drawn
  on its own, not from a speed;
- structured-light cameras (Kinect v1, Orbbec Astra) and their sensor
  model (`camera.StructuredLightNoise`: projector shadows, 1/8 px
  disparity steps, blocky correlated noise);
- another camera model: aimed at a point on the subject (look-at) and
  rolled about its optical axis, its principal point off the image centre;
- cylinders (poles, chair and table legs, bins) as clutter, and other
  colours.

Its figures measure generalisation to data no model was fitted on; they
do not replace the test split's benchmark figures.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .body import BODY_SEED, BodyModel
from .camera import Intrinsics, StructuredLightNoise
from .domain import MAX_REDRAWS, MIN_LEG_POINTS
from .gait import (
    CONDITION_OFFSET_DEG,
    CURVE_ANGLES,
    CURVE_FAMILIES,
    TOE_OFF_PHASE,
    ArmPose,
    CurveGaitModel,
    CurveGaitParams,
)
from .scene import VIEWS, Box, CameraSetup, WalkingSubject

#: Appended to a sample key's random stream (the product engine's is 1).
SHIFTED_STREAM = 2
_SHIFTED_BODY_STREAM = 12

#: The bumps family, per angle: baseline (deg) and bumps (centre as % of the cycle *in the gait
#: events' own time*, amplitude deg, width as von Mises concentration), each drawn in these ranges.
BUMP_EVENTS: dict[str, tuple] = {
    "hip_flexion": ((8.0, 14.0), (((0, 5), (12, 22), (4, 7)), ((50, 56), (-30, -20), (3, 5)),
                                  ((85, 92), (16, 28), (4, 7)))),
    "knee_flexion": ((2.0, 6.0), (((12, 17), (8, 18), (25, 40)), ((70, 75), (50, 64), (6, 10)))),
    "ankle_dorsiflexion": ((0.0, 2.0), (((5, 9), (-6, -3), (40, 80)), ((42, 50), (6, 12), (8, 14)),
                                        ((62, 66), (-22, -14), (25, 45)))),
    "hip_adduction": ((0.0, 1.0), (((14, 20), (3, 7), (8, 14)), ((68, 76), (-7, -3), (8, 14)))),
    "hip_rotation": ((-1.0, 1.0), (((18, 26), (2, 5), (4, 8)), ((66, 76), (-5, -2), (4, 8)))),
}


def bump_curve(coeffs, name: str, phase: np.ndarray) -> np.ndarray:
    """[stance, baseline, (centre, amplitude, kappa) ...] in deg -> rad, on a stance-warped time axis."""
    stance, base, bumps = coeffs[0], coeffs[1], np.reshape(coeffs[2:], (-1, 3))
    p = np.mod(np.asarray(phase, float), 1.0)
    # Event time: the curves' own toe-off (TOE_OFF_PHASE) lands at the drawn stance share.
    t = np.where(p < stance, p * TOE_OFF_PHASE / stance,
                 TOE_OFF_PHASE + (p - stance) * (1.0 - TOE_OFF_PHASE) / (1.0 - stance))
    out = np.full(p.shape, float(base))
    for centre, amplitude, kappa in bumps:
        out = out + amplitude * np.exp(kappa * (np.cos(2.0 * np.pi * (t - centre)) - 1.0))
    return np.deg2rad(out)


CURVE_FAMILIES["bumps"] = bump_curve


@dataclass(frozen=True)
class ShiftedChoices:
    """Every choice of the shifted generator (docs/data.md lists them)."""

    # Bodies: Beta(a, b) over the phenotype range.
    phenotype_beta: dict[str, tuple[float, float, float, float]] = field(default_factory=lambda: {
        "gender": (0.5, 0.5, 0.0, 1.0), "age": (2.0, 2.0, 0.5, 1.0), "muscle": (2.0, 2.0, 0.0, 1.0),
        "weight": (2.0, 3.0, 0.0, 0.9), "proportions": (2.0, 2.0, 0.0, 1.0)})
    stature_sd_m: float = 0.09                          # about 1.76 (male) .. 1.63 (female)
    stature_m: tuple[float, float] = (1.42, 2.02)
    step_width_mean_sd_m: tuple[float, float] = (0.12, 0.04)
    step_width_m: tuple[float, float] = (0.04, 0.26)
    # Gait.
    stance_share: tuple[float, float] = (0.56, 0.66)
    cadence_spm: tuple[float, float] = (85.0, 130.0)
    asymmetry: tuple[float, float] = (0.0, 0.08)
    foot_progression_mean_sd_deg: tuple[float, float] = (7.0, 4.0)
    arm_swing_deg: tuple[float, float] = (10.0, 35.0)
    arm_flexion_deg: tuple[float, float] = (-5.0, 15.0)
    arm_elbow_deg: tuple[float, float] = (10.0, 50.0)
    # Cameras: structured light; published FOVs (Kinect v1 57 x 43 deg; Orbbec Astra 60 x 49.5 deg).
    cameras: dict[str, tuple] = field(default_factory=lambda: {
        # name: (width, height, hfov, vfov, baseline m, min range, max range)
        "kinect_v1_640x480": (640, 480, 57.0, 43.0, 0.075, 0.8, 4.0),
        "astra_640x480": (640, 480, 60.0, 49.5, 0.075, 0.6, 8.0),
    })
    principal_offset: tuple[float, float] = (-0.04, 0.04)   # share of the image size
    camera_height_m: tuple[float, float] = (0.5, 1.5)
    camera_distance_m: tuple[float, float] = (1.5, 3.5)
    aim_height_m: tuple[float, float] = (0.2, 0.7)         # look-at point on the subject
    roll_deg: tuple[float, float] = (-8.0, 8.0)
    azimuth_jitter_deg: tuple[float, float] = (-15.0, 15.0)
    sensor_block_sigma_px: tuple[float, float] = (0.03, 0.1)
    sensor_min_reflect: tuple[float, float] = (0.02, 0.06)
    # The structured-light model's two halves (`SENSOR_PARTS`; both on for the shifted split itself).
    sensor_depth_error: bool = True
    sensor_holes: bool = True
    # Clutter: cylinders, 1 to 4 of them, their surface 0.1 to 1.2 m from the subject; a wall half the time.
    cylinders: tuple[int, int] = (1, 4)
    cylinder_radius_m: tuple[float, float] = (0.02, 0.25)
    cylinder_height_m: tuple[float, float] = (0.3, 1.2)
    cylinder_gap_m: tuple[float, float] = (0.1, 1.2)
    wall_share: float = 0.5
    clothing_palette: tuple[tuple[int, int, int], ...] = (
        (35, 45, 70), (20, 20, 22), (150, 130, 95), (110, 110, 115), (70, 90, 60), (200, 195, 185), (120, 30, 40))
    floor_rgb: tuple[tuple[int, int], tuple[int, int], tuple[int, int]] = ((110, 175), (80, 125), (50, 85))


SHIFTED = ShiftedChoices()

#: `posesdf data build --split shifted --sensor`: which halves of the structured-light model apply. The
#: random draws do not depend on it, so the builds hold the same scenes, pixel for pixel (but for a scene
#: redrawn for too few leg points: its manifest entry's `redraws`), and their figures can be compared frame by
#: frame: an ablation of the sensor's share of the shifted split's error.
SENSOR_PARTS = {"full": {"sensor_depth_error": True, "sensor_holes": True},
                "depth-error": {"sensor_depth_error": True, "sensor_holes": False},
                "holes": {"sensor_depth_error": False, "sensor_holes": True},
                "none": {"sensor_depth_error": False, "sensor_holes": False}}


def _u(rng, r) -> float:
    return float(rng.uniform(*r))


def sample_shifted_build(index: int, choices: ShiftedChoices = SHIFTED) -> dict[str, float]:
    """Body `index` of the shifted split's own stream."""
    rng = np.random.default_rng([BODY_SEED, _SHIFTED_BODY_STREAM, index])
    build = {k: float(lo + (hi - lo) * rng.beta(a, b)) for k, (a, b, lo, hi) in choices.phenotype_beta.items()}
    mean = 1.76 - 0.13 * build["gender"]
    build["stature_m"] = float(np.clip(rng.normal(mean, choices.stature_sd_m), *choices.stature_m))
    build["step_width_m"] = float(np.clip(rng.normal(*choices.step_width_mean_sd_m), *choices.step_width_m))
    return build


def sample_shifted_gait(rng: np.random.Generator, condition: str, choices: ShiftedChoices = SHIFTED
                        ) -> CurveGaitParams:
    stance = _u(rng, choices.stance_share)
    curves = {}
    for name in CURVE_ANGLES:
        base, bumps = BUMP_EVENTS[name]
        coeffs = [stance, _u(rng, base)]
        for centre, amplitude, kappa in bumps:
            coeffs += [_u(rng, centre) / 100.0, _u(rng, amplitude), _u(rng, kappa)]
        curves[name] = coeffs
    lo, hi = CONDITION_OFFSET_DEG[condition]
    swing = _u(rng, choices.arm_swing_deg)
    arms = ArmPose((_u(rng, choices.arm_flexion_deg),) * 2, (0.0, 0.0), (_u(rng, choices.arm_elbow_deg),) * 2,
                   (swing, swing))
    return CurveGaitParams(
        condition=condition, cadence_spm=_u(rng, choices.cadence_spm), amplitude={"pelvis": 1.0},
        asymmetry=_u(rng, choices.asymmetry), condition_offset_deg=float(rng.uniform(lo, hi)),
        foot_progression_deg=float(rng.normal(*choices.foot_progression_mean_sd_deg)), arm_swing_deg=swing,
        family="bumps", curves=curves, arms=arms)


@dataclass(frozen=True)
class LookAtCamera(CameraSetup):
    """A camera aimed at `aim_height_m` over the subject and rolled by `roll_deg` about its optical axis."""

    roll_deg: float = 0.0

    def camera_to_gravity(self) -> np.ndarray:
        T = super().camera_to_gravity()
        r = np.deg2rad(self.roll_deg)
        c, s = np.cos(r), np.sin(r)
        T[:3, :3] = T[:3, :3] @ np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
        return T

    def to_dict(self) -> dict:
        return super().to_dict() | asdict(self)


def sample_shifted_camera(rng, azimuth_deg: float, choices: ShiftedChoices = SHIFTED
                          ) -> tuple[str, Intrinsics, LookAtCamera, StructuredLightNoise]:
    name = str(rng.choice(list(choices.cameras)))
    width, height, hfov, vfov, baseline, near, far = choices.cameras[name]
    fx = width / 2.0 / np.tan(np.deg2rad(hfov) / 2.0)
    fy = height / 2.0 / np.tan(np.deg2rad(vfov) / 2.0)
    cx = width / 2.0 * (1.0 + 2.0 * _u(rng, choices.principal_offset))
    cy = height / 2.0 * (1.0 + 2.0 * _u(rng, choices.principal_offset))
    intrinsics = Intrinsics(width, height, float(fx), float(fy), float(cx), float(cy))
    camera = LookAtCamera(azimuth_deg=float(azimuth_deg + _u(rng, choices.azimuth_jitter_deg)),
                          distance_m=_u(rng, choices.camera_distance_m), height_m=_u(rng, choices.camera_height_m),
                          aim_height_m=_u(rng, choices.aim_height_m), roll_deg=_u(rng, choices.roll_deg))
    noise = StructuredLightNoise(baseline_m=baseline, block_sigma_px=_u(rng, choices.sensor_block_sigma_px),
                                 min_reflect=_u(rng, choices.sensor_min_reflect), min_range_m=near, max_range_m=far,
                                 depth_error=choices.sensor_depth_error, holes=choices.sensor_holes)
    return name, intrinsics, camera, noise


@dataclass(frozen=True)
class Cylinder:
    """An upright cylinder on the floor (a pole, a chair or table leg, a bin): clutter of the shifted split."""

    centre_xy: tuple[float, float]
    radius: float
    height: float
    colour: tuple[int, int, int] = (120, 120, 120)
    sides: int = 16

    def mesh(self) -> tuple[np.ndarray, np.ndarray]:
        a = np.linspace(0.0, 2.0 * np.pi, self.sides, endpoint=False)
        ring = np.column_stack([self.centre_xy[0] + self.radius * np.cos(a),
                                self.centre_xy[1] + self.radius * np.sin(a)])
        n = self.sides
        verts = np.concatenate([np.column_stack([ring, np.zeros(n)]), np.column_stack([ring, np.full(n, self.height)]),
                                [[*self.centre_xy, self.height]]])
        faces = []
        for i in range(n):
            j = (i + 1) % n
            faces += [[i, j, n + j], [i, n + j, n + i], [n + i, n + j, 2 * n]]
        return verts, np.array(faces)


def sample_cylinders(rng, subject_xy: np.ndarray, body_xy: np.ndarray, camera: CameraSetup,
                     choices: ShiftedChoices = SHIFTED) -> list:
    """Cylinders around the subject, `cylinder_gap_m` from its footprint, and a wall behind it half the time."""
    out: list = []
    count = int(rng.integers(choices.cylinders[0], choices.cylinders[1] + 1))
    for _ in range(50 * count):
        if len(out) == count:
            break
        radius, height = _u(rng, choices.cylinder_radius_m), _u(rng, choices.cylinder_height_m)
        direction = float(rng.uniform(0.0, 2.0 * np.pi))
        gap = _u(rng, choices.cylinder_gap_m)
        reach = float(np.linalg.norm(body_xy - subject_xy, axis=1).max())
        xy = subject_xy + (reach + gap + radius) * np.array([np.cos(direction), np.sin(direction)])
        if np.linalg.norm(body_xy - xy, axis=1).min() - radius < 0.05:
            continue
        colour = tuple(int(c) for c in rng.integers(40, 220, 3))
        out.append(Cylinder((float(xy[0]), float(xy[1])), radius, height, colour))
    if rng.random() < choices.wall_share:
        d = camera.distance_m + rng.uniform(1.0, 2.5)
        out.append(Box((d, 0.0), (0.1, 12.0, 2.5), float(rng.uniform(-0.3, 0.3)), (190, 185, 200)))
    return out


def make_shifted_sample(body_model: BodyModel, key, seed: int, choices: ShiftedChoices = SHIFTED,
                        occluder: bool = False) -> tuple[dict, dict]:
    """One scene of the shifted split, in the test split's format (`dataset.scene_arrays`); `occluder`:
    with a box between the camera and the walker (`scene.front_occluder`)."""
    from .dataset import occluder_record, scene_arrays, with_occluder

    rng = key.rng(seed, SHIFTED_STREAM)
    subject_index = int(rng.integers(0, 100))
    build = sample_shifted_build(subject_index, choices)
    params = sample_shifted_gait(rng, key.condition, choices)
    for redraws in range(MAX_REDRAWS + 1):   # as the product engine: too few leg points, draw the scene again
        camera_name, intrinsics, camera, noise = sample_shifted_camera(rng, VIEWS[key.view], choices)
        walker = WalkingSubject(body_model, build, CurveGaitModel(params), camera, mode="treadmill",
                                phase0=float(rng.random()))
        body, subject_to_gravity = walker.poses(np.zeros(1))
        verts = body.vertices[0] @ subject_to_gravity[0, :3, :3].T + subject_to_gravity[0, :3, 3]
        clutter = sample_cylinders(rng, camera.subject_xy(), verts[::10, :2], camera, choices)
        front = with_occluder(clutter, key, seed, camera) if occluder else None
        palette = choices.clothing_palette
        colours = {"trousers": palette[int(rng.integers(len(palette)))],
                   "shirt": palette[int(rng.integers(len(palette)))],
                   "floor": tuple(int(rng.integers(lo, hi + 1)) for lo, hi in choices.floor_rgb)}
        arrays, entry = scene_arrays(body_model, body, subject_to_gravity[0], camera, clutter, rng, noise, key,
                                     f"shifted-{subject_index:04d}", intrinsics, colours)
        if entry["leg_points"] >= MIN_LEG_POINTS:
            break
    entry |= {"gait": params.to_dict(), "phase": walker.phase0, "phenotype": build, "camera_preset": camera_name,
              "intrinsics": intrinsics.to_dict(), "noise_model": asdict(noise), "colours": colours,
              "redraws": redraws} | occluder_record(front)
    return arrays, entry
