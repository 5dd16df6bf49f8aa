"""The product data engine: a domain-randomised generator, wider than the paper's protocol.

`posesdf data build --profile product` draws bodies, gaits, arms, cameras,
sensors and clutter from the ranges of `PRODUCT` (one frozen dataclass,
every range in one place; docs/data.md lists them). The paper profile
(`--profile paper`, the default) is the benchmark spec's generator,
unchanged. Everything is drawn from the sample key's random stream, so a
sample's bytes depend on its key and seed only.

Bodies: anny's adult phenotypes over the whole range, statures 1.40 to
2.05 m, with and without the knee rest correction, the ankles set to a
drawn step width. Gaits: two curve families (the paper's splines and a
Fourier family fitted to gait events drawn around clinical norms), six
styles (typical, slow, shuffling, stiff knee, crouch, asymmetric), all five
conditions, speed set through cadence and stride. Arms: any posture and
swing. Cameras: presets of common depth cameras with their sensor models
(`camera.ActiveStereoNoise`, `camera.ToFNoise`, the spec's `realistic`),
placed 0.3 to 1.8 m high, pitched -10 to 45 deg, 1 to 5 m away. Clutter:
the paper's boxes beside the walkway plus boxes close to the legs.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..geometry import yaw_matrix
from .body import ADULT_PHENOTYPE_RANGES, BODY_SEED, BodyModel
from .camera import ActiveStereoNoise, Intrinsics, ToFNoise
from .gait import (
    CONDITION_OFFSET_DEG,
    CONDITIONS,
    CURVE_ANGLES,
    TOE_OFF_PHASE,
    ArmPose,
    CurveGaitModel,
    CurveGaitParams,
    GaitStyle,
)
from .scene import VIEWS, Box, CameraSetup, WalkingSubject, sample_clutter

PROFILES: tuple[str, ...] = ("paper", "product")

#: Thigh and shank lengths as shares of stature (Winter's anthropometric tables), for the
#: planar leg model that sets the walking speed.
THIGH_SHARE, SHANK_SHARE = 0.245, 0.246

#: Gait events of the Fourier family, per angle: ((phase range, % of the cycle), (angle range, deg)),
#: drawn around clinical norms (Perry and Burnfield; Winter), independent of the spline knots.
FOURIER_EVENTS: dict[str, tuple] = {
    "hip_flexion": (((0, 0), (20, 35)), ((10, 15), (18, 32)), ((48, 56), (-20, -6)), ((60, 64), (-8, 5)),
                    ((82, 92), (28, 42))),
    "knee_flexion": (((0, 0), (0, 8)), ((12, 18), (12, 25)), ((35, 45), (0, 8)), ((58, 62), (30, 45)),
                     ((70, 76), (55, 70)), ((88, 92), (5, 20))),
    "ankle_dorsiflexion": (((0, 0), (-3, 3)), ((5, 10), (-9, -3)), ((40, 50), (6, 15)), ((60, 66), (-22, -12)),
                           ((75, 80), (-8, 0)), ((88, 95), (-3, 4))),
    "hip_adduction": (((0, 0), (0, 4)), ((12, 20), (4, 9)), ((45, 50), (0, 3)), ((65, 75), (-8, -3)),
                      ((90, 95), (-2, 1))),
    "hip_rotation": (((0, 0), (0, 4)), ((15, 25), (2, 6)), ((45, 55), (-4, 0)), ((65, 75), (-6, -2)),
                     ((88, 95), (-1, 3))),
}
FOURIER_HARMONICS = 4
FOURIER_SMOOTHING = 0.01     # ridge weight on k^4 (a roughness penalty) of harmonic k


@dataclass(frozen=True)
class CameraPreset:
    """A depth camera mode: resolution, published field of view (deg), sensor and working range.

    fx and fy come from the published horizontal and vertical fields of view,
    fx = (width / 2) / tan(HFOV / 2), fy = (height / 2) / tan(VFOV / 2); the
    principal point is the image centre.
    """

    name: str
    width: int
    height: int
    hfov_deg: float
    vfov_deg: float
    sensor: str                  # "active_stereo", "tof" or "realistic" (the spec's D435-like profile)
    min_range_m: float
    max_range_m: float
    baseline_m: float = 0.0      # stereo baseline
    fx: float | None = None      # set: overrides the FOV (the spec's camera)
    fy: float | None = None

    def intrinsics(self) -> Intrinsics:
        fx = self.fx or self.width / 2.0 / np.tan(np.deg2rad(self.hfov_deg) / 2.0)
        fy = self.fy or self.height / 2.0 / np.tan(np.deg2rad(self.vfov_deg) / 2.0)
        return Intrinsics(self.width, self.height, float(fx), float(fy))

    @property
    def vfov_rad(self) -> float:
        return float(2.0 * np.arctan(self.height / 2.0 / self.intrinsics().fy))


#: The product engine's cameras. RealSense D435 and D455 depth: 87 x 58 deg (Intel datasheet), baselines
#: 50 and 95 mm; Azure Kinect NFOV unbinned and Orbbec Femto Bolt (the same ToF sensor) NFOV unbinned
#: 640 x 576, 75 x 65 deg, 0.5 to 3.86 m, and Femto Bolt WFOV 2x2 binned 512 x 512, 120 x 120 deg,
#: 0.25 to 2.88 m (Microsoft and Orbbec hardware specifications); the spec's camera (fx = fy = 464 at 640 x 360).
CAMERA_PRESETS: dict[str, CameraPreset] = {p.name: p for p in (
    CameraPreset("d435_1280x720", 1280, 720, 87.0, 58.0, "active_stereo", 0.28, 10.0, 0.050),
    CameraPreset("d435_848x480", 848, 480, 87.0, 58.0, "active_stereo", 0.2, 10.0, 0.050),
    CameraPreset("d435_640x360", 640, 360, 87.0, 58.0, "active_stereo", 0.2, 10.0, 0.050),
    CameraPreset("d435_424x240", 424, 240, 87.0, 58.0, "active_stereo", 0.2, 10.0, 0.050),
    CameraPreset("d455_1280x720", 1280, 720, 87.0, 58.0, "active_stereo", 0.52, 10.0, 0.095),
    CameraPreset("d455_848x480", 848, 480, 87.0, 58.0, "active_stereo", 0.52, 10.0, 0.095),
    CameraPreset("azure_kinect_nfov_640x576", 640, 576, 75.0, 65.0, "tof", 0.5, 3.86),
    CameraPreset("femto_bolt_wfov_512x512", 512, 512, 120.0, 120.0, "tof", 0.25, 2.88),
    CameraPreset("spec_d435_640x360", 640, 360, 0.0, 0.0, "realistic", 0.2, 10.0, fx=464.0, fy=464.0),
)}

#: A scene whose leg points (after occlusion and the sensor's holes) are fewer is drawn again (camera,
#: placement, clutter, sensor and colours; the subject and its gait stay), at most MAX_REDRAWS times.
MIN_LEG_POINTS = 200
MAX_REDRAWS = 5

STYLES: tuple[str, ...] = ("typical", "slow", "shuffling", "stiff_knee", "crouch", "asymmetric")
ARM_MODES: tuple[str, ...] = ("swinging", "still", "hands_in_front", "free")


@dataclass(frozen=True)
class ProductRanges:
    """Every range of the product engine (uniform draws unless said otherwise; deg, m, s)."""

    # Bodies: anny phenotypes (the paper's adult ranges; weight stops at 0.9, where the thighs of the
    # heaviest bodies interpenetrate), stature uniform, the knee rest correction applied to a share.
    phenotype: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(ADULT_PHENOTYPE_RANGES))
    stature_m: tuple[float, float] = (1.40, 2.05)
    knee_correction_share: float = 0.5
    step_width_m: tuple[float, float] = (0.03, 0.30)
    # Gait.
    conditions: tuple[str, ...] = CONDITIONS
    condition_offset_deg: dict[str, tuple[float, float]] = field(default_factory=lambda: dict(CONDITION_OFFSET_DEG))
    families: tuple[str, ...] = ("spline", "fourier")
    style_weights: dict[str, float] = field(default_factory=lambda: {
        "typical": 0.3, "slow": 0.14, "shuffling": 0.14, "stiff_knee": 0.14, "crouch": 0.14, "asymmetric": 0.14})
    speed_mps: tuple[float, float] = (0.4, 1.6)
    style_speed_mps: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "typical": (0.8, 1.6), "slow": (0.4, 0.8), "shuffling": (0.4, 0.8), "stiff_knee": (0.4, 1.2),
        "crouch": (0.4, 1.0), "asymmetric": (0.5, 1.4)})
    #: Cadence aimed at for a speed v: (62 + 38 v) x this jitter; stride (hip oscillation) scaled to match.
    cadence_jitter: tuple[float, float] = (0.9, 1.1)
    #: Hip-flexion oscillation scale the speed solve may use, per style; cadence takes up the rest.
    style_stride_scale: dict[str, tuple[float, float]] = field(default_factory=lambda: {
        "typical": (0.6, 1.7), "slow": (0.35, 1.0), "shuffling": (0.3, 0.75), "stiff_knee": (0.5, 1.4),
        "crouch": (0.5, 1.4), "asymmetric": (0.5, 1.6)})
    #: Where the cadence the solve ends at must lie: beyond, the cadence is clipped and the speed follows.
    cadence_spm: tuple[float, float] = (60.0, 150.0)
    spline_amplitude: tuple[float, float] = (0.85, 1.15)
    phase_warp: tuple[float, float] = (0.0, 0.05)
    asymmetry: tuple[float, float] = (0.0, 0.15)
    foot_progression_deg: tuple[float, float] = (-5.0, 20.0)
    pelvis_amplitude: tuple[float, float] = (0.5, 1.5)     # x the paper's +-5 deg
    typical_knee_peak_scale: tuple[float, float] = (0.9, 1.1)
    knee_min_deg: tuple[float, float] = (0.0, 8.0)         # all but crouch
    slow_knee_peak_scale: tuple[float, float] = (0.75, 1.0)
    shuffling_knee_peak_deg: tuple[float, float] = (30.0, 45.0)
    shuffling_ankle_scale: tuple[float, float] = (0.3, 0.6)
    stiff_knee_peak_deg: tuple[float, float] = (20.0, 35.0)
    crouch_knee_min_deg: tuple[float, float] = (20.0, 40.0)
    crouch_knee_peak_deg: tuple[float, float] = (55.0, 70.0)
    crouch_hip_offset_deg: tuple[float, float] = (10.0, 25.0)
    crouch_ankle_offset_deg: tuple[float, float] = (5.0, 15.0)
    asymmetric_right_scale: tuple[float, float] = (0.55, 0.9)
    asymmetric_right_delay: tuple[float, float] = (0.02, 0.08)
    # Arms (per side; a mode first, then its ranges).
    arm_mode_weights: dict[str, float] = field(default_factory=lambda: {
        "swinging": 0.5, "still": 0.15, "hands_in_front": 0.2, "free": 0.15})
    arm_flexion_deg: tuple[float, float] = (-15.0, 70.0)
    arm_abduction_deg: tuple[float, float] = (0.0, 40.0)
    arm_elbow_deg: tuple[float, float] = (0.0, 110.0)
    arm_swing_deg: tuple[float, float] = (0.0, 45.0)
    # Cameras.
    camera_presets: tuple[str, ...] = tuple(CAMERA_PRESETS)
    camera_height_m: tuple[float, float] = (0.3, 1.8)
    camera_pitch_deg: tuple[float, float] = (-10.0, 45.0)
    camera_distance_m: tuple[float, float] = (1.0, 5.0)
    lateral_offset: tuple[float, float] = (-0.15, 0.15)    # subject off the optical axis, x distance
    azimuth_jitter_deg: tuple[float, float] = (-20.0, 20.0)
    range_margin_m: float = 0.6                            # slant range to the subject <= sensor max - this
    view_margin_deg: float = 3.0                           # feet and hips this far inside the view
    # Sensors (drawn per sample around each preset's model).
    stereo_subpixel_px: tuple[float, float] = (0.05, 0.12)
    stereo_min_signal: tuple[float, float] = (0.002, 0.008)
    tof_sigma_1m_m: tuple[float, float] = (0.001, 0.0025)
    tof_min_signal: tuple[float, float] = (0.005, 0.02)
    tof_multipath_m: tuple[float, float] = (0.005, 0.03)
    # Clutter: the paper's boxes beside the walkway, and boxes close to the legs.
    near_boxes: tuple[int, int] = (0, 3)
    near_gap_m: tuple[float, float] = (0.05, 0.6)          # box edge to the nearest body point, floor plane
    near_box_size_m: tuple[float, float] = (0.1, 0.6)
    near_box_height_m: tuple[float, float] = (0.1, 0.9)
    # Appearance (RGB 0..255; the sensors' reflectance is its mean / 255).
    clothing_rgb: tuple[int, int] = (10, 230)
    floor_rgb: tuple[int, int] = (30, 200)
    # Training samples.
    train_yaw_jitter_deg: float = 5.0
    train_samples: int = 1000


PRODUCT = ProductRanges()
#: Appended to a sample key's random stream, so product samples share no draws with paper ones.
PRODUCT_STREAM = 1
#: Body streams of the product engine (kept apart from the paper's 0..2 and the shifted split's).
_PRODUCT_BODY_STREAM = {"train": 10, "test": 11}


def _u(rng: np.random.Generator, r: tuple[float, float]) -> float:
    return float(rng.uniform(*r))


def _choice(rng: np.random.Generator, weights: dict[str, float]) -> str:
    names = list(weights)
    p = np.array([weights[n] for n in names], float)
    return names[int(rng.choice(len(names), p=p / p.sum()))]


def sample_build(bodies: str, index: int, ranges: ProductRanges = PRODUCT) -> dict[str, float]:
    """Body `index` of the product engine's `bodies` stream ("train" or "test"), deterministic."""
    rng = np.random.default_rng([BODY_SEED, _PRODUCT_BODY_STREAM[bodies], index])
    build = {k: _u(rng, r) for k, r in ranges.phenotype.items()}
    build["stature_m"] = _u(rng, ranges.stature_m)
    build["knee_correction"] = float(rng.random() < ranges.knee_correction_share)
    build["step_width_m"] = _u(rng, ranges.step_width_m)
    return build


def product_subject_id(bodies: str, index: int) -> str:
    return f"product-{bodies}-{index:04d}"


def fourier_coefficients(rng: np.random.Generator, angle: str) -> list[float]:
    """Fourier coefficients (deg) of one angle: a smooth periodic fit to events drawn from FOURIER_EVENTS."""
    events = FOURIER_EVENTS[angle]
    phase = np.array([rng.uniform(*p) for p, _ in events]) / 100.0
    value = np.array([rng.uniform(*v) for _, v in events])
    cols = [np.ones_like(phase)]
    for k in range(1, FOURIER_HARMONICS + 1):
        cols += [np.cos(2 * np.pi * k * phase), np.sin(2 * np.pi * k * phase)]
    A = np.stack(cols, 1)
    penalty = np.diag([0.0] + [float(k ** 4) for k in range(1, FOURIER_HARMONICS + 1) for _ in (0, 1)])
    return np.linalg.solve(A.T @ A + FOURIER_SMOOTHING * penalty, A.T @ value).tolist()


def sample_style(rng: np.random.Generator, name: str, ranges: ProductRanges = PRODUCT,
                 family_knee_peak_deg: float = 62.0) -> GaitStyle:
    """A style's reshaping, before the speed solve sets `stride_scale`."""
    knee_min = _u(rng, ranges.knee_min_deg)
    if name == "typical":
        return GaitStyle(name, knee_min_deg=knee_min,
                         knee_max_deg=family_knee_peak_deg * _u(rng, ranges.typical_knee_peak_scale))
    if name == "slow":
        return GaitStyle(name, knee_min_deg=knee_min,
                         knee_max_deg=family_knee_peak_deg * _u(rng, ranges.slow_knee_peak_scale))
    if name == "shuffling":
        return GaitStyle(name, knee_min_deg=knee_min, knee_max_deg=_u(rng, ranges.shuffling_knee_peak_deg),
                         ankle_scale=_u(rng, ranges.shuffling_ankle_scale))
    if name == "stiff_knee":
        return GaitStyle(name, knee_min_deg=knee_min, knee_max_deg=_u(rng, ranges.stiff_knee_peak_deg))
    if name == "crouch":
        lo = _u(rng, ranges.crouch_knee_min_deg)
        return GaitStyle(name, hip_offset_deg=_u(rng, ranges.crouch_hip_offset_deg), knee_min_deg=lo,
                         knee_max_deg=max(lo + 25.0, _u(rng, ranges.crouch_knee_peak_deg)),
                         ankle_offset_deg=_u(rng, ranges.crouch_ankle_offset_deg))
    if name == "asymmetric":
        return GaitStyle(name, knee_min_deg=knee_min,
                         knee_max_deg=family_knee_peak_deg * _u(rng, ranges.typical_knee_peak_scale),
                         right_scale=_u(rng, ranges.asymmetric_right_scale),
                         right_delay=_u(rng, ranges.asymmetric_right_delay))
    raise ValueError(f"unknown gait style {name!r}; expected one of {STYLES}")


def sample_arms(rng: np.random.Generator, ranges: ProductRanges = PRODUCT) -> tuple[str, ArmPose]:
    """An arm mode and the posture of both arms (each side drawn on its own within the mode)."""
    mode = _choice(rng, ranges.arm_mode_weights)
    lo_f, hi_f = ranges.arm_flexion_deg
    per_side = []
    for _ in range(2):
        if mode == "swinging":
            side = (rng.uniform(lo_f, 20.0), rng.uniform(0.0, 20.0), rng.uniform(0.0, 40.0),
                    rng.uniform(5.0, ranges.arm_swing_deg[1]))
        elif mode == "still":
            side = (rng.uniform(lo_f, 20.0), rng.uniform(0.0, 20.0), rng.uniform(0.0, 40.0), 0.0)
        elif mode == "hands_in_front":
            side = (rng.uniform(10.0, 50.0), rng.uniform(0.0, 20.0), rng.uniform(40.0, 100.0), rng.uniform(0.0, 10.0))
        else:
            side = (rng.uniform(lo_f, hi_f), rng.uniform(*ranges.arm_abduction_deg),
                    rng.uniform(*ranges.arm_elbow_deg), rng.uniform(*ranges.arm_swing_deg))
        per_side.append(tuple(float(v) for v in side))
    (fl, al, el, sl), (fr, ar, er, sr) = per_side
    return mode, ArmPose((fl, fr), (al, ar), (el, er), (sl, sr))


def cadence_for_speed(speed_mps: float) -> float:
    """Steps a minute of a walker at `speed_mps` (a linear fit of normal adults' speed-cadence relation:
    about 77 at 0.4 m/s, 111 at 1.3 m/s, 123 at 1.6 m/s)."""
    return 62.0 + 38.0 * speed_mps


def sample_gait(rng: np.random.Generator, build: dict[str, float], condition: str | None = None,
                style: str | None = None, family: str | None = None,
                ranges: ProductRanges = PRODUCT) -> tuple[CurveGaitParams, dict]:
    """One subject's gait: family, style, condition, arms, and cadence and stride for a drawn speed.

    The speed is that of a planar two-segment leg (thigh and shank of
    THIGH_SHARE and SHANK_SHARE of the stature, sagittal hip and knee
    angles): the stance ankle's travel from heel strike to toe off over
    that time. A cadence is aimed at (`cadence_for_speed` x jitter), the
    hip oscillation scaled (within the style's `stride_scale` range) to
    give the stride that speed needs at that cadence, and the cadence then
    set so the speed is met exactly; where that cadence is outside
    `cadence_spm`, it is clipped and the speed is the one it gives. Returns the parameters and a summary
    (speed, cadence, stride, style, family, arm mode) for the manifest.
    """
    condition = condition or str(rng.choice(ranges.conditions))
    family = family or str(rng.choice(ranges.families))
    style = style or _choice(rng, ranges.style_weights)
    if family == "spline":
        curves = {k: [_u(rng, ranges.spline_amplitude)] for k in CURVE_ANGLES}
    elif family == "fourier":
        curves = {k: fourier_coefficients(rng, k) for k in CURVE_ANGLES}
    else:
        raise ValueError(f"the product engine's families are {ranges.families}; got {family!r}")
    knee_peak = float(np.rad2deg(CurveGaitModel(CurveGaitParams(family=family, curves=curves))._range[
        "knee_flexion"][2]))
    gait_style = sample_style(rng, style, ranges, knee_peak)
    arm_mode, arms = sample_arms(rng, ranges)
    lo, hi = ranges.condition_offset_deg[condition]
    params = CurveGaitParams(
        condition=condition, cadence_spm=110.0, amplitude={"pelvis": _u(rng, ranges.pelvis_amplitude)},
        phase_warp=(_u(rng, ranges.phase_warp), float(rng.uniform(0.0, 1.0))),
        asymmetry=_u(rng, ranges.asymmetry), condition_offset_deg=float(rng.uniform(lo, hi)),
        foot_progression_deg=_u(rng, ranges.foot_progression_deg), arm_swing_deg=float(np.mean(arms.swing_deg)),
        family=family, curves=curves, style=gait_style, arms=arms)
    speed = _u(rng, ranges.style_speed_mps[style])
    cadence = cadence_for_speed(speed) * _u(rng, ranges.cadence_jitter)
    thigh, shank = THIGH_SHARE * build["stature_m"], SHANK_SHARE * build["stature_m"]
    model = CurveGaitModel(params)
    stance = model.unwarp(TOE_OFF_PHASE) - model.unwarp(0.0)
    needed = speed * stance * 120.0 / cadence
    s_lo, s_hi = ranges.style_stride_scale[style]
    scale = 1.0
    for _ in range(3):   # travel is close to linear in the hip oscillation's scale
        travel = model.stance_travel_m(thigh, shank)
        scale = float(np.clip(scale * needed / max(travel, 1e-3), s_lo, s_hi))
        model = CurveGaitModel(replace(params, style=replace(gait_style, stride_scale=scale)))
    travel = max(model.stance_travel_m(thigh, shank), 1e-3)
    cadence = float(120.0 * speed * stance / travel)
    if not ranges.cadence_spm[0] <= cadence <= ranges.cadence_spm[1]:
        # The stride the style allows cannot give that speed at a plausible cadence: walk at the
        # nearest plausible cadence instead, at the speed it gives (kept in the product range).
        cadence = float(np.clip(cadence, *ranges.cadence_spm))
        speed = float(np.clip(travel * cadence / (120.0 * stance), *ranges.speed_mps))
        cadence = float(120.0 * speed * stance / travel)
    params = replace(model.params, cadence_spm=cadence)
    summary = {"family": family, "style": style, "arm_mode": arm_mode, "speed_mps": speed,
               "cadence_spm": cadence, "stride_m": speed * 120.0 / cadence, "stride_scale": scale}
    return params, summary


def sample_preset(rng: np.random.Generator, ranges: ProductRanges = PRODUCT) -> CameraPreset:
    return CAMERA_PRESETS[str(rng.choice(ranges.camera_presets))]


def sample_noise(rng: np.random.Generator, preset: CameraPreset, ranges: ProductRanges = PRODUCT):
    """The preset's sensor model with its parameters drawn (the spec's camera keeps `realistic`)."""
    if preset.sensor == "realistic":
        return "realistic"
    if preset.sensor == "active_stereo":
        return ActiveStereoNoise(baseline_m=preset.baseline_m, subpixel_sigma_px=_u(rng, ranges.stereo_subpixel_px),
                                 min_signal=_u(rng, ranges.stereo_min_signal), min_range_m=preset.min_range_m,
                                 max_range_m=preset.max_range_m)
    return ToFNoise(sigma_1m_m=_u(rng, ranges.tof_sigma_1m_m), min_signal=_u(rng, ranges.tof_min_signal),
                    multipath_m=_u(rng, ranges.tof_multipath_m), min_range_m=preset.min_range_m,
                    max_range_m=preset.max_range_m)


def pitch_interval_deg(height_m: float, distance_m: float, vfov_rad: float,
                       ranges: ProductRanges = PRODUCT, hip_height_m: float = 0.9) -> tuple[float, float]:
    """Pitches (deg, down positive) within the product range that keep the feet (z = 0) and the hips
    (z = hip_height_m) at the subject's distance inside the vertical field of view; the pitch that
    aims at the knees, clipped to the range, where none does."""
    margin = np.deg2rad(ranges.view_margin_deg)
    feet = np.arctan2(height_m, distance_m)
    hips = np.arctan2(height_m - hip_height_m, distance_m)
    lo = max(np.deg2rad(ranges.camera_pitch_deg[0]), feet - vfov_rad / 2 + margin)
    hi = min(np.deg2rad(ranges.camera_pitch_deg[1]), hips + vfov_rad / 2 - margin)
    if lo > hi:
        knees = float(np.clip(np.rad2deg(np.arctan2(height_m - hip_height_m / 2, distance_m)),
                              *ranges.camera_pitch_deg))
        return knees, knees
    return float(np.rad2deg(lo)), float(np.rad2deg(hi))


def sample_camera(rng: np.random.Generator, azimuth_deg: float, preset: CameraPreset,
                  ranges: ProductRanges = PRODUCT) -> CameraSetup:
    """A camera placement for `preset`: height, distance (within the sensor's range), pitch (keeping
    the legs in view), lateral offset, and the azimuth jittered around `azimuth_deg`."""
    height = _u(rng, ranges.camera_height_m)
    # The farthest horizontal distance whose slant range, plus the subject's own depth, the sensor reaches.
    reach = max(preset.max_range_m - ranges.range_margin_m, height + 0.1)
    far = min(ranges.camera_distance_m[1], float(np.sqrt(reach ** 2 - height ** 2)))
    far = max(far, ranges.camera_distance_m[0])
    distance = float(rng.uniform(ranges.camera_distance_m[0], far))
    pitch = float(rng.uniform(*pitch_interval_deg(height, distance, preset.vfov_rad, ranges)))
    aim = height - distance * np.tan(np.deg2rad(pitch))
    return CameraSetup(azimuth_deg=float(azimuth_deg + _u(rng, ranges.azimuth_jitter_deg)), distance_m=distance,
                       height_m=height, aim_height_m=float(aim), lateral_offset=_u(rng, ranges.lateral_offset))


def sample_near_clutter(rng: np.random.Generator, body_xy: np.ndarray, ranges: ProductRanges = PRODUCT,
                        count: int | None = None) -> list[Box]:
    """Boxes close to the legs: each `near_gap_m` from the nearest body point on the floor plane
    (`body_xy`, (N, 2) gravity frame), any side, never touching the body."""
    count = int(rng.integers(ranges.near_boxes[0], ranges.near_boxes[1] + 1)) if count is None else count
    centre = body_xy.mean(0)
    reach = float(np.linalg.norm(body_xy - centre, axis=1).max())
    boxes: list[Box] = []
    for _ in range(50 * max(count, 1)):
        if len(boxes) == count:
            break
        size = (_u(rng, ranges.near_box_size_m), _u(rng, ranges.near_box_size_m), _u(rng, ranges.near_box_height_m))
        yaw = float(rng.uniform(0.0, np.pi))
        gap = _u(rng, ranges.near_gap_m)
        direction = float(rng.uniform(0.0, 2.0 * np.pi))
        xy = centre + (reach + gap + 0.5 * max(size[:2])) * np.array([np.cos(direction), np.sin(direction)])
        # Measure the gap to the box's footprint (its yaw frame) and move it out or in to the drawn one.
        local = (body_xy - xy) @ yaw_matrix(yaw)[:2, :2]
        outside = np.maximum(np.abs(local) - 0.5 * np.array(size[:2]), 0.0)
        nearest = float(np.linalg.norm(outside, axis=1).min())
        xy = xy + (gap - nearest) * np.array([np.cos(direction), np.sin(direction)])
        local = (body_xy - xy) @ yaw_matrix(yaw)[:2, :2]
        nearest = float(np.linalg.norm(np.maximum(np.abs(local) - 0.5 * np.array(size[:2]), 0.0), axis=1).min())
        if nearest < 0.02:
            continue
        colour = tuple(int(c) for c in rng.integers(*ranges.clothing_rgb, 3))
        boxes.append(Box((float(xy[0]), float(xy[1])), size, yaw, colour))
    return boxes


def sample_colours(rng: np.random.Generator, ranges: ProductRanges = PRODUCT) -> dict[str, tuple[int, int, int]]:
    """Trousers, shirt and floor colours (dark ones make the sensors' holes)."""
    def rgb(r):
        return tuple(int(c) for c in rng.integers(r[0], r[1] + 1, 3))
    return {"trousers": rgb(ranges.clothing_rgb), "shirt": rgb(ranges.clothing_rgb), "floor": rgb(ranges.floor_rgb)}


def _noise_record(noise) -> dict | str:
    from dataclasses import asdict

    return noise if isinstance(noise, str) else asdict(noise)


def make_product_train_sample(body_model: BodyModel, key, seed: int,
                              ranges: ProductRanges = PRODUCT) -> tuple[dict, dict]:
    """One product training shape: an engine body in an engine gait (any condition, family, style,
    arms), SDF samples in the canonical frame as the paper's (`dataset.make_train_sample`)."""
    from .dataset import TRAIN_SURFACE_NOISE_M, _vertex_normals
    from .sdf import sdf_samples

    rng = key.rng(seed, PRODUCT_STREAM)
    build = sample_build("train", key.index, ranges)
    params, summary = sample_gait(rng, build, ranges=ranges)
    phase = float(rng.random())
    body = body_model.pose(build, CurveGaitModel(params).angles(np.array([phase])))
    yaw = np.deg2rad(rng.uniform(-ranges.train_yaw_jitter_deg, ranges.train_yaw_jitter_deg))
    R = yaw_matrix(yaw)
    verts, joints = body.vertices[0] @ R.T, body.joints[0] @ R.T
    verts = verts + _vertex_normals(verts, body.faces) * rng.normal(0, TRAIN_SURFACE_NOISE_M, (len(verts), 1))
    crop = float(joints[0, 2] + 0.10)
    arrays = sdf_samples(verts, body.faces, body_model.lower_limb_face, joints, crop, rng)
    subject = product_subject_id("train", key.index)
    arrays |= {"joints_m": joints.astype(np.float32), "yaw_deg": np.float64(np.rad2deg(yaw)),
               "subject": np.str_(subject), "condition": np.str_(params.condition)}
    entry = {"file": f"samples/{key.filename}", "split": "train", "condition": params.condition, "view": "V1",
             "azimuth_deg": VIEWS["V1"], "subject": subject, "yaw_jitter_deg": float(np.rad2deg(yaw)),
             "phase": phase, "gait": params.to_dict(), "gait_summary": summary, "phenotype": build}
    return arrays, entry


def make_product_scene_sample(body_model: BodyModel, key, seed: int,
                              ranges: ProductRanges = PRODUCT, occluder: bool = False) -> tuple[dict, dict]:
    """One product test (or val) scene of the key's (condition, view) cell: an engine body (test
    bodies, or the product training bodies for val), gait, camera preset, placement, sensor model,
    colours and clutter (the paper's beside the walkway and boxes close to the legs); `occluder`:
    and a box between the camera and the walker (`scene.front_occluder`)."""
    from .dataset import occluder_record, scene_arrays, with_occluder

    rng = key.rng(seed, PRODUCT_STREAM)
    bodies = "train" if key.split == "val" else "test"
    count = ranges.train_samples if bodies == "train" else 100
    subject_index = int(rng.integers(0, count))
    build = sample_build(bodies, subject_index, ranges)
    params, summary = sample_gait(rng, build, key.condition, ranges=ranges)
    for redraws in range(MAX_REDRAWS + 1):
        preset = sample_preset(rng, ranges)
        camera = sample_camera(rng, VIEWS[key.view], preset, ranges)
        walker = WalkingSubject(body_model, build, CurveGaitModel(params), camera, mode="treadmill",
                                phase0=float(rng.random()))
        body, subject_to_gravity = walker.poses(np.zeros(1))
        verts = body.vertices[0] @ subject_to_gravity[0, :3, :3].T + subject_to_gravity[0, :3, 3]
        boxes = sample_clutter(rng, camera) + sample_near_clutter(rng, verts[::10, :2], ranges)
        front = with_occluder(boxes, key, seed, camera) if occluder else None
        noise = sample_noise(rng, preset, ranges)
        colours = sample_colours(rng, ranges)
        arrays, entry = scene_arrays(body_model, body, subject_to_gravity[0], camera, boxes, rng, noise, key,
                                     product_subject_id(bodies, subject_index), preset.intrinsics(), colours)
        if entry["leg_points"] >= MIN_LEG_POINTS:
            break
    entry |= {"gait": params.to_dict(), "gait_summary": summary, "phase": walker.phase0, "phenotype": build,
              "camera_preset": preset.name, "intrinsics": preset.intrinsics().to_dict(),
              "noise_model": _noise_record(noise), "colours": colours, "redraws": redraws} | occluder_record(front)
    return arrays, entry
