"""Kinematic gait model: joint-angle curves for the five gait conditions.

Angles follow clinical gait analysis conventions and are returned in
radians, per side, as functions of the gait phase (0 = that side's heel
strike, 1 = its next heel strike). The normal curves are periodic cubic
splines through the knots of the benchmark spec; per-subject variation
scales amplitudes (+-15 %, the knee +-10 %), warps timing (phase jitter) and makes the two
sides differ (asymmetry up to 10 %). Abnormal conditions add the foot
offsets of the spec.

Sign conventions (subject frame: x forward, y left, z up):
- hip_flexion, knee_flexion, ankle_dorsiflexion: positive = flexion /
  dorsiflexion (thigh forward, shank backward, toes up);
- hip_adduction: positive = leg towards the midline;
- hip_rotation, foot_adduction: positive = internal (toes turned in);
- foot_inversion: positive = sole turned towards the midline (supination);
- pelvis_obliquity: positive = left side up; pelvis_rotation: positive =
  counter-clockwise seen from above (right side forward).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.interpolate import CubicSpline
from scipy.optimize import brentq

from ..skeleton import SIDES

CONDITIONS: tuple[str, ...] = ("normal", "supination", "pronation", "in_toeing", "out_toeing")
ABNORMAL_CONDITIONS: tuple[str, ...] = CONDITIONS[1:]

#: Offset ranges (deg) of the abnormal conditions, from the benchmark spec.
CONDITION_OFFSET_DEG: dict[str, tuple[float, float]] = {
    "normal": (0.0, 0.0),
    "supination": (10.0, 20.0),
    "pronation": (10.0, 20.0),
    "in_toeing": (15.0, 25.0),
    "out_toeing": (15.0, 30.0),
}
#: Share of an in/out-toeing offset taken by hip rotation ("mostly from hip
#: internal rotation"); the rest turns the foot at the ankle.
HIP_SHARE_OF_TOEING = 0.8
#: Toe-off of normal gait as a fraction of the cycle (end of stance).
TOE_OFF_PHASE = 0.62

# Knots (phase in %, angle in deg) of the normal curves. The first knot is
# repeated at 100 % so the splines are periodic.
_KNOTS_DEG: dict[str, list[tuple[float, float]]] = {
    "hip_flexion": [(0, 30), (12, 27), (30, 10), (50, -10), (62, 0), (75, 22), (87, 35), (100, 30)],
    "knee_flexion": [(0, 5), (15, 18), (40, 5), (60, 38), (73, 62), (87, 25), (100, 5)],
    "ankle_dorsiflexion": [(0, 0), (7, -6), (30, 5), (45, 10), (62, -17), (75, -4), (87, 0), (100, 0)],
    "hip_adduction": [(0, 2), (15, 6), (45, 2), (62, -3), (72, -5), (90, -1), (100, 2)],
    "hip_rotation": [(0, 2), (20, 4), (50, -2), (70, -4), (90, 1), (100, 2)],
}
_PELVIS_AMPLITUDE_DEG = 5.0
#: Per-subject amplitude scales: +-15 % (spec), but +-10 % for the knee so
#: that its swing peak (62 deg mean) stays within the clinical 55 to 70 deg.
_AMPLITUDE_RANGE: dict[str, tuple[float, float]] = {"knee_flexion": (0.9, 1.1)}

LEG_ANGLES: tuple[str, ...] = (
    "hip_flexion", "hip_adduction", "hip_rotation", "knee_flexion",
    "ankle_dorsiflexion", "foot_inversion", "foot_adduction",
)
PELVIS_ANGLES: tuple[str, ...] = ("pelvis_obliquity", "pelvis_rotation")


def _periodic_spline(knots: list[tuple[float, float]]) -> CubicSpline:
    x = np.array([k[0] for k in knots], float) / 100.0
    y = np.deg2rad([k[1] for k in knots])
    return CubicSpline(x, y, bc_type="periodic")


_NORMAL_CURVES: dict[str, CubicSpline] = {k: _periodic_spline(v) for k, v in _KNOTS_DEG.items()}


def normal_curve(angle: str, phase: np.ndarray) -> np.ndarray:
    """The population-mean normal curve of one sagittal/frontal angle (rad)."""
    return _NORMAL_CURVES[angle](np.mod(phase, 1.0))


@dataclass(frozen=True)
class GaitParams:
    """One subject's gait: condition, timing and individual variation.

    All angles in degrees (they are what a clinician would read); the
    curves returned by `GaitModel` are in radians.
    """

    condition: str = "normal"
    cadence_spm: float = 110.0             # steps per minute (two steps a stride)
    amplitude: dict[str, float] = field(default_factory=dict)  # angle -> scale (0.85..1.15)
    phase_warp: tuple[float, float] = (0.0, 0.0)  # (amplitude, offset) of a sinusoidal time warp
    asymmetry: float = 0.0                 # right side amplitudes scaled by (1 - asymmetry)
    condition_offset_deg: float = 0.0      # magnitude of the abnormal foot offset
    foot_progression_deg: float = 6.0      # static toe-out of this subject's normal gait
    arm_swing_deg: float = 20.0            # shoulder flexion amplitude

    def __post_init__(self) -> None:
        if self.condition not in CONDITIONS:
            raise ValueError(f"unknown gait condition {self.condition!r}; expected one of {CONDITIONS}")

    @property
    def cycle_s(self) -> float:
        """Duration of one gait cycle (stride) in seconds."""
        return 120.0 / self.cadence_spm

    def to_dict(self) -> dict:
        return asdict(self)


def sample_gait_params(rng: np.random.Generator, condition: str = "normal") -> GaitParams:
    """Draw one subject's gait with the spec's per-subject variation."""
    lo, hi = CONDITION_OFFSET_DEG[condition]
    return GaitParams(
        condition=condition,
        cadence_spm=float(rng.uniform(95.0, 125.0)),
        amplitude={k: float(rng.uniform(*_AMPLITUDE_RANGE.get(k, (0.85, 1.15)))) for k in (*_KNOTS_DEG, "pelvis")},
        phase_warp=(float(rng.uniform(0.0, 0.02)), float(rng.uniform(0.0, 1.0))),
        asymmetry=float(rng.uniform(0.0, 0.10)),
        condition_offset_deg=float(rng.uniform(lo, hi)),
        foot_progression_deg=float(rng.normal(6.0, 3.0)),
        arm_swing_deg=float(rng.uniform(12.0, 28.0)),
    )


def add_foot_angles(angles: dict[str, np.ndarray], phase: np.ndarray, foot_progression_deg: float,
                    condition: str, offset: float) -> dict[str, np.ndarray]:
    """One leg's foot angles, in place (returns `angles`): a flat foot, the subject's normal toe-out
    (mostly from the hip, like the pathological offsets), then an abnormal condition's foot offset (rad)."""
    angles["foot_inversion"] = np.zeros_like(phase)
    angles["foot_adduction"] = np.zeros_like(phase)
    angles["hip_rotation"] = angles["hip_rotation"] - np.deg2rad(foot_progression_deg) * HIP_SHARE_OF_TOEING
    angles["foot_adduction"] -= np.deg2rad(foot_progression_deg) * (1.0 - HIP_SHARE_OF_TOEING)
    if condition == "supination":
        angles["foot_inversion"] = angles["foot_inversion"] + offset
    elif condition == "pronation":
        angles["foot_inversion"] = angles["foot_inversion"] - offset
    elif condition in ("in_toeing", "out_toeing"):
        sign = 1.0 if condition == "in_toeing" else -1.0
        angles["hip_rotation"] = angles["hip_rotation"] + sign * HIP_SHARE_OF_TOEING * offset
        angles["foot_adduction"] = angles["foot_adduction"] + sign * (1.0 - HIP_SHARE_OF_TOEING) * offset
    return angles


class GaitModel:
    """Joint angles of one subject as functions of time or phase."""

    def __init__(self, params: GaitParams):
        self.params = params

    def _warp(self, phase: np.ndarray) -> np.ndarray:
        a, off = self.params.phase_warp
        # Monotone for a < 1/(2 pi): a smooth timing jitter that keeps events in order.
        return phase + a * np.sin(2.0 * np.pi * (phase + off))

    def unwarp(self, warped: float) -> float:
        """The phase at which the warped phase, the one the angle curves run on, is `warped`.

        A side's heel strike is at its unwarped phase `unwarp(k)` and its toe
        off at `unwarp(k + TOE_OFF_PHASE)`, not at k and k + TOE_OFF_PHASE.
        """
        a = self.params.phase_warp[0]
        # The warp is monotone (a < 1 / 2 pi) and moves the phase by at most a.
        return float(brentq(lambda p: float(self._warp(p)) - warped, warped - a - 1e-9, warped + a + 1e-9))

    def leg_angles(self, phase: np.ndarray, side: str) -> dict[str, np.ndarray]:
        """Angles (rad) of one leg at its own gait phase(s). phase: (T,) -> {name: (T,)}."""
        p = self.params
        phase = self._warp(np.mod(np.asarray(phase, float), 1.0))
        side_scale = 1.0 if side == "left" else 1.0 - p.asymmetry
        angles = {
            name: side_scale * p.amplitude.get(name, 1.0) * normal_curve(name, phase)
            for name in _KNOTS_DEG
        }
        return add_foot_angles(angles, phase, p.foot_progression_deg, p.condition,
                               np.deg2rad(p.condition_offset_deg) * side_scale)

    def pelvis_angles(self, left_phase: np.ndarray) -> dict[str, np.ndarray]:
        """Pelvis obliquity and rotation (rad) at the left leg's phase(s)."""
        amp = np.deg2rad(_PELVIS_AMPLITUDE_DEG) * self.params.amplitude.get("pelvis", 1.0)
        w = 2.0 * np.pi * np.asarray(left_phase, float)
        return {
            # Left stance loads the left hip, the swinging right side drops.
            "pelvis_obliquity": amp * np.sin(w),
            # At left heel strike the left hip is forward: clockwise from above.
            "pelvis_rotation": -amp * np.cos(w),
        }

    def angles(self, left_phase: np.ndarray) -> dict[str, np.ndarray]:
        """All angles at the left leg's phase(s); the right leg is half a cycle behind.

        Keys: `pelvis_*` and `{left,right}_{LEG_ANGLES}`, plus `arm_swing`
        (left shoulder flexion; the right arm mirrors it).
        """
        left_phase = np.atleast_1d(np.asarray(left_phase, float))
        out = dict(self.pelvis_angles(left_phase))
        for side, phase in zip(SIDES, (left_phase, left_phase - 0.5)):
            for name, value in self.leg_angles(phase, side).items():
                out[f"{side}_{name}"] = value
        # Arms swing opposite to the legs: the left arm forward when the right leg is.
        out["arm_swing"] = -np.deg2rad(self.params.arm_swing_deg) * np.cos(2.0 * np.pi * left_phase)
        return out

    def phase_at(self, t: np.ndarray, phase0: float = 0.0) -> np.ndarray:
        """Left-leg phase (unwrapped) at times t (s)."""
        return phase0 + np.asarray(t, float) / self.params.cycle_s


# Curve families and gait styles beyond the paper's model (the product engine, `data.domain`, and the
# shifted validation generator, `data.shifted`). A family turns per-subject coefficients into one
# angle's curve over the warped phase; a style reshapes the curves (slow, shuffling, stiff knee,
# crouch, asymmetric); arms move freely.

#: The angles a curve family draws; the feet's frontal angles come from the condition offsets.
CURVE_ANGLES: tuple[str, ...] = tuple(_KNOTS_DEG)

#: name -> f(coefficients of one angle, angle name, warped phase (T,)) -> angle (rad). "spline" is the
#: paper's curves scaled by one coefficient; `data.domain` and `data.shifted` register theirs.
CURVE_FAMILIES: dict = {"spline": lambda coeffs, name, phase: coeffs[0] * normal_curve(name, phase)}


def fourier_curve(coeffs, name: str, phase: np.ndarray) -> np.ndarray:
    """A truncated Fourier series in degrees: [a0, a1, b1, a2, b2, ...] -> rad."""
    c = np.asarray(coeffs, float)
    out = np.full(np.shape(phase), c[0])
    for k in range(1, (len(c) - 1) // 2 + 1):
        w = 2.0 * np.pi * k * np.asarray(phase)
        out = out + c[2 * k - 1] * np.cos(w) + c[2 * k] * np.sin(w)
    return np.deg2rad(out)


CURVE_FAMILIES["fourier"] = fourier_curve


@dataclass(frozen=True)
class GaitStyle:
    """How a style reshapes a family's curves (deg; None keeps the family's value).

    Hip flexion: its oscillation about the cycle mean is scaled by
    `stride_scale` and shifted by `hip_offset_deg`. Knee flexion: mapped
    affinely so that its cycle minimum and maximum become `knee_min_deg`
    and `knee_max_deg`. Ankle: oscillation scaled by `ankle_scale`, shifted
    by `ankle_offset_deg`. The right leg's oscillations are scaled by
    `right_scale` and it runs `right_delay` of a cycle late.
    """

    name: str = "typical"
    stride_scale: float = 1.0
    hip_offset_deg: float = 0.0
    knee_min_deg: float | None = None
    knee_max_deg: float | None = None
    ankle_scale: float = 1.0
    ankle_offset_deg: float = 0.0
    right_scale: float = 1.0
    right_delay: float = 0.0


@dataclass(frozen=True)
class ArmPose:
    """Arms of any kind (deg): static shoulder flexion (+ forward: hands in front), abduction
    out from the side, elbow flexion, and swing amplitude, per side (left, right)."""

    flexion_deg: tuple[float, float] = (0.0, 0.0)
    abduction_deg: tuple[float, float] = (0.0, 0.0)
    elbow_deg: tuple[float, float] = (0.0, 0.0)
    swing_deg: tuple[float, float] = (20.0, 20.0)


@dataclass(frozen=True)
class CurveGaitParams(GaitParams):
    """A gait of a curve family: `curves` maps each of CURVE_ANGLES to its family coefficients."""

    family: str = "spline"
    curves: dict[str, list[float]] = field(default_factory=dict)
    style: GaitStyle = GaitStyle()
    arms: ArmPose = ArmPose()


class CurveGaitModel(GaitModel):
    """`GaitModel` of a `CurveGaitParams`: family curves, reshaped by the style, arms free."""

    def __init__(self, params: CurveGaitParams):
        super().__init__(params)
        if params.family not in CURVE_FAMILIES:
            raise ValueError(f"unknown curve family {params.family!r}; expected one of {tuple(CURVE_FAMILIES)}")
        grid = np.linspace(0.0, 1.0, 256, endpoint=False)
        self._range = {}
        for name in CURVE_ANGLES:
            c = self._base(name, grid)
            self._range[name] = (float(c.mean()), float(c.min()), float(c.max()))

    def _base(self, name: str, phase: np.ndarray) -> np.ndarray:
        return CURVE_FAMILIES[self.params.family](self.params.curves[name], name, phase)

    def leg_angles(self, phase: np.ndarray, side: str) -> dict[str, np.ndarray]:
        p, st = self.params, self.params.style
        right = side == "right"
        phase = self._warp(np.mod(np.asarray(phase, float) - (st.right_delay if right else 0.0), 1.0))
        scale = (1.0 - p.asymmetry) * st.right_scale if right else 1.0
        a = {name: self._base(name, phase) for name in CURVE_ANGLES}
        mean, _, _ = self._range["hip_flexion"]
        a["hip_flexion"] = mean + scale * st.stride_scale * (a["hip_flexion"] - mean) + np.deg2rad(st.hip_offset_deg)
        _, lo, hi = self._range["knee_flexion"]
        k_lo = lo if st.knee_min_deg is None else np.deg2rad(st.knee_min_deg)
        k_hi = hi if st.knee_max_deg is None else np.deg2rad(st.knee_max_deg)
        a["knee_flexion"] = k_lo + scale * (a["knee_flexion"] - lo) * (k_hi - k_lo) / max(hi - lo, 1e-9)
        mean, _, _ = self._range["ankle_dorsiflexion"]
        a["ankle_dorsiflexion"] = (mean + scale * st.ankle_scale * (a["ankle_dorsiflexion"] - mean)
                                   + np.deg2rad(st.ankle_offset_deg))
        for name in ("hip_adduction", "hip_rotation"):
            a[name] = scale * a[name]
        return add_foot_angles(a, phase, p.foot_progression_deg, p.condition,
                               np.deg2rad(p.condition_offset_deg) * scale)

    def angles(self, left_phase: np.ndarray) -> dict[str, np.ndarray]:
        """`GaitModel.angles` with per-side arm keys (`{side}_shoulder_flexion`, `_abduction`,
        `{side}_elbow_flexion`) in place of `arm_swing`."""
        out = super().angles(left_phase)
        del out["arm_swing"]
        arms = self.params.arms
        swing = np.cos(2.0 * np.pi * np.atleast_1d(np.asarray(left_phase, float)))
        for k, (side, sign) in enumerate((("left", -1.0), ("right", 1.0))):
            out[f"{side}_shoulder_flexion"] = np.deg2rad(arms.flexion_deg[k] + sign * arms.swing_deg[k] * swing)
            out[f"{side}_shoulder_abduction"] = np.full_like(swing, np.deg2rad(arms.abduction_deg[k]))
            out[f"{side}_elbow_flexion"] = np.full_like(swing, np.deg2rad(arms.elbow_deg[k]))
        return out

    def stance_travel_m(self, thigh_m: float, shank_m: float) -> float:
        """Backward travel of the stance ankle relative to the pelvis from heel strike to toe off,
        averaged over both legs, of a planar two-segment leg (sagittal hip and knee angles)."""
        hs, to = self.unwarp(0.0), self.unwarp(TOE_OFF_PHASE)
        travel = []
        for side in ("left", "right"):
            delay = self.params.style.right_delay if side == "right" else 0.0
            a = self.leg_angles(np.array([hs, to]) + delay, side)
            x = thigh_m * np.sin(a["hip_flexion"]) + shank_m * np.sin(a["hip_flexion"] - a["knee_flexion"])
            travel.append(x[0] - x[1])
        return float(np.mean(travel))
