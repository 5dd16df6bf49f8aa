"""Spatiotemporal gait parameters and per-cycle angle curves from a joint sequence.

Definitions (a *stride* or gait cycle of a side runs from its heel strike
to its next one; a *step* from the other side's heel strike to this
side's):
- cadence (steps/min) = 120 / mean stride time over both sides;
- walking mode: overground when the pelvis travels, i.e. its horizontal
  velocity (least-squares line through its positions over the window) is
  over `OVERGROUND_MIN_SPEED_MPS`; treadmill (walking in place) otherwise;
- overground, from world-frame positions (the clinical definitions, which
  hold whatever the feet do between contacts): walking speed (m/s) = the
  pelvis' speed along its line of progression (the direction it travels);
  stride length of a side = the forward distance (along that line) between
  the ankle's positions at its successive heel strikes (its footprints),
  averaged over the strides of both sides; step length of a side = the
  forward distance from the other foot's last footprint to this side's
  footprint at its heel strike, so that the two steps add up to a stride;
- on a treadmill (no footprints in the world): walking speed (m/s) = the
  stance ankle's backward travel relative to the pelvis, along the walking
  direction, from heel strike to toe off, over the stance time, averaged
  over the strides of both sides (the belt speed); stride length = speed x
  stride time; step length of a side = speed x its step time (so that the
  two step lengths add up to the stride length);
- step width (m): the distance between the two ankles across the line of
  progression (horizontal, perpendicular to the walking direction) at each
  heel strike, averaged;
- stance / swing (% of the cycle): heel strike to toe off / toe off to the
  next heel strike;
- peak knee flexion (deg): the maximum of the side's mean knee curve;
- curves: each angle of `angles.ANGLE_NAMES` (deg) resampled to 0..100 %
  of every stride (`CURVE_POINTS` points) and averaged over the strides;
- symmetry indices (%): Robinson et al. (1987), SI = 200 (L - R) / (L + R);
  0 = symmetric.
A side needs one complete stride (two heel strikes plus the parabola
window of `events.EXTREMUM_HALF_WINDOW_S` on each side); with less, the
result has `valid=False`, a `reason` and NaN values.
"""
from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
from scipy.interpolate import CubicSpline

from ..skeleton import JOINT_INDEX, SIDES, side_joints
from .angles import ANGLE_NAMES, joint_angles, pelvis_frame
from .events import MIN_CYCLE_S, GaitEvents, detect_events, forward_offsets, walking_direction

#: Points of each per-cycle angle curve (0, 1, ..., 100 % of the cycle).
CURVE_POINTS = 101
#: Longest gait cycle (s) taken as one stride; longer gaps between heel strikes are missed events.
MAX_CYCLE_S = 2.5
#: Gaps of missing (NaN) frames up to this long are interpolated; longer ones split the sequence.
MAX_GAP_S = 0.25
#: A pelvis travelling faster than this (m/s, horizontal, over the window) walks overground; else in place.
OVERGROUND_MIN_SPEED_MPS = 0.2

Sided = dict[str, float]
_UP = np.array([0.0, 0.0, 1.0])


def symmetry_index(values: Sided) -> float:
    """Robinson's symmetry index (%) of {left, right}: 200 (L - R) / (L + R)."""
    left, right = values["left"], values["right"]
    total = left + right
    return float(200.0 * (left - right) / total) if np.isfinite(total) and total != 0 else float("nan")


def _nan_sided() -> Sided:
    return {s: float("nan") for s in SIDES}


@dataclass
class GaitParameters:
    """Gait parameters of one sequence; units in the field names, per-side values as {side: value}."""

    valid: bool
    reason: str                     # why not valid ("" when valid)
    duration_s: float               # of the analysed frames
    n_frames: int                   # measured frames analysed (not counting the NaN frames dropped)
    cadence_spm: float = float("nan")              # steps per minute
    stride_time_s: float = float("nan")
    step_time_s: Sided = field(default_factory=_nan_sided)
    stride_length_m: float = float("nan")
    step_length_m: Sided = field(default_factory=_nan_sided)
    step_width_m: float = float("nan")
    stance_pct: Sided = field(default_factory=_nan_sided)     # % of the cycle
    swing_pct: Sided = field(default_factory=_nan_sided)
    walking_speed_mps: float = float("nan")
    walking_mode: str = ""          # "overground" (the pelvis travels) or "treadmill" (in place); "" if not valid
    peak_knee_flexion_deg: Sided = field(default_factory=_nan_sided)
    n_strides: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SIDES})
    symmetry_pct: dict[str, float] = field(default_factory=dict)  # Robinson SI per parameter
    curves_deg: dict[str, np.ndarray] = field(default_factory=dict)  # ANGLE_NAMES -> (CURVE_POINTS,)
    events: GaitEvents | None = None

    def to_dict(self, curves: bool = False) -> dict:
        """Flat JSON-ready dict: per-side values as `left_<name>`/`right_<name>`, symmetry as
        `<name>_symmetry_pct`, NaN as None; the curves (lists, deg) under `curves_deg` if asked."""
        out: dict = {}
        for name, value in self.__dict__.items():
            if name in ("curves_deg", "events", "symmetry_pct"):
                continue
            if isinstance(value, dict):
                out.update({f"{side}_{name}": _json_number(v) for side, v in value.items()})
            else:
                out[name] = _json_number(value)
        out.update({f"{name}_symmetry_pct": _json_number(v) for name, v in self.symmetry_pct.items()})
        if curves:
            out["curves_deg"] = {k: [round(float(x), 3) for x in v] for k, v in self.curves_deg.items()}
        return out


def _json_number(value):
    if isinstance(value, (bool, str, int)) or value is None:
        return value
    value = float(value)
    return value if math.isfinite(value) else None


class Segment(NamedTuple):
    """A gap-free part of a sequence, resampled: stamps_s (N,), joints (N, 9, 3), and how many measured
    frames it was made from (the grid also fills scattered NaN frames and frames a live node skipped)."""

    stamps_s: np.ndarray
    joints: np.ndarray
    n_measured: int


def segments(stamps_s: np.ndarray, joints: np.ndarray) -> list[Segment]:
    """Check input and split it into gap-free parts, each resampled to uniform time steps.

    stamps_s: (T,) strictly increasing, joints: (T, 9, 3) with NaN for
    missing frames. Frames with any non-finite joint are dropped; single
    frames with swapped legs or a flipped heading are put right
    (`fix_leg_labels`); gaps over `MAX_GAP_S` split the sequence, and each
    part of two frames or more is linearly resampled at its median frame
    interval. A live stream at a few frames a second loses a few frames now
    and then: its strides between the gaps all count, not only those of its
    longest gap-free part.
    Returns [Segment(stamps (N,), joints (N, 9, 3), n_measured), ...], oldest
    first; may be empty.
    """
    stamps_s = np.asarray(stamps_s, float)
    joints = np.asarray(joints, float)
    if stamps_s.ndim != 1 or joints.shape != (len(stamps_s), 9, 3):
        raise ValueError(f"expected stamps_s (T,) and joints (T, 9, 3), got {stamps_s.shape} and {joints.shape}")
    if not np.isfinite(stamps_s).all() or (np.diff(stamps_s) <= 0).any():
        raise ValueError("stamps_s must be finite and strictly increasing")
    ok = np.isfinite(joints).all(axis=(1, 2))
    t, j = stamps_s[ok], fix_leg_labels(joints[ok])
    breaks = np.flatnonzero(np.diff(t) > MAX_GAP_S)
    parts = []
    for a, b in zip(np.r_[0, breaks + 1], np.r_[breaks + 1, len(t)]):
        if b - a < 2:
            continue
        ts, js = t[a:b], j[a:b]
        dt = float(np.median(np.diff(ts)))
        grid = ts[0] + dt * np.arange(int(np.floor((ts[-1] - ts[0]) / dt + 1e-6)) + 1)
        flat = js.reshape(len(ts), -1)
        resampled = np.stack([np.interp(grid, ts, flat[:, k]) for k in range(flat.shape[1])], axis=1)
        parts.append(Segment(grid, resampled.reshape(len(grid), 9, 3), b - a))
    return parts


def fix_leg_labels(joints: np.ndarray) -> np.ndarray:
    """Undo single-frame left/right label swaps and 180-degree heading flips.

    joints: (T, 9, 3) finite, in time order -> (T, 9, 3). A frame whose
    feet point behind its ankles, seen from the pelvis heading that its own
    hip line gives, has its legs' labels swapped: they are swapped back.
    A frame that then faces the opposite way to the frame before (no one
    turns 90 deg between two frames) was flipped, as a front/back
    confusion of the heading estimate flips it: it is turned back by 180
    deg about the vertical through its pelvis. Which way is right is what
    most frames say, so a flipped first frame is turned, not the rest.
    """
    swap = [0, *side_joints("right"), *side_joints("left")]
    out = joints.copy()
    forward = pelvis_frame(out)[:, 0]
    toes = sum(np.sum((out[:, JOINT_INDEX[f"{s}_foot"]] - out[:, JOINT_INDEX[f"{s}_ankle"]]) * forward, axis=-1)
               for s in SIDES)
    out[toes < 0] = out[toes < 0][:, swap]
    heading = pelvis_frame(out)[:, 0]
    turned = np.zeros(len(out), bool)
    for k in range(1, len(out)):
        turned[k] = turned[k - 1] ^ bool(heading[k] @ heading[k - 1] < 0)
    # Frames facing the way most frames face are the right ones (a flipped first frame must not
    # turn the rest round: overground the feet's world positions would then move).
    if turned.sum() > len(out) / 2:
        turned = ~turned
    pelvis = out[turned, :1].copy()
    out[turned] = (out[turned] - pelvis) * np.array([-1.0, -1.0, 1.0]) + pelvis
    return out


def pelvis_velocity(stamps_s: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """Horizontal velocity (m/s) of the pelvis over a sequence: the slope of the least-squares line
    through its positions. stamps_s: (T,), joints: (T, 9, 3) -> (3,) with z = 0."""
    pelvis = joints[:, JOINT_INDEX["pelvis"]]
    centred = stamps_s - stamps_s.mean()
    velocity = centred @ (pelvis - pelvis.mean(axis=0)) / (centred @ centred)
    return velocity * np.array([1.0, 1.0, 0.0])


def _positions(stamps_s: np.ndarray, points: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Linearly interpolated positions: stamps_s (T,), points (T, 3), times (n,) -> (n, 3)."""
    return np.stack([np.interp(times, stamps_s, points[:, k]) for k in range(3)], axis=-1)


def _strides(heel_strikes: np.ndarray) -> list[tuple[float, float]]:
    return [(a, b) for a, b in zip(heel_strikes[:-1], heel_strikes[1:]) if MIN_CYCLE_S <= b - a <= MAX_CYCLE_S]


def gait_parameters(stamps_s: np.ndarray, joints: np.ndarray) -> GaitParameters:
    """Gait parameters of a walking sequence.

    stamps_s: (T,) seconds, strictly increasing; joints: (T, 9, 3) metres in
    a z-up frame (gravity frame), JOINT_NAMES order, NaN rows for missing
    frames. Raises ValueError on malformed input; a sequence too short or
    too broken for one stride per side gives `valid=False` and a reason.
    Sequences with gaps (`segments`) pool the strides of their gap-free parts.
    """
    usable = segments(stamps_s, joints)
    analysed = [s for s in usable if s.n_measured >= 5]
    parts = [(s.stamps_s, s.joints) for s in analysed]
    duration = float(sum(t[-1] - t[0] for t, _ in parts))
    base = dict(duration_s=duration, n_frames=sum(s.n_measured for s in analysed))
    if not parts:
        return GaitParameters(valid=False, reason=f"only {sum(s.n_measured for s in usable)} usable frames", **base)
    try:
        direction = walking_direction(np.concatenate([j for _, j in parts]))
    except ValueError as err:
        return GaitParameters(valid=False, reason=str(err), **base)
    # The pelvis' velocity over the parts, each weighted by its duration.
    spans = np.array([t[-1] - t[0] for t, _ in parts])
    velocity = sum(w * pelvis_velocity(t, j) for w, (t, j) in zip(spans, parts)) / max(spans.sum(), 1e-9)
    overground = bool(np.linalg.norm(velocity) > OVERGROUND_MIN_SPEED_MPS)
    # The line of progression: where the pelvis travels overground, where it faces on a treadmill.
    progression = velocity / np.linalg.norm(velocity) if overground else direction
    lateral = np.cross(_UP, progression)    # across the line of progression
    measured = [_part_measures(t, j, direction, progression, lateral) for t, j in parts]
    events = GaitEvents(
        heel_strike_s={s: np.concatenate([m["events"].heel_strike_s[s] for m in measured]) for s in SIDES},
        toe_off_s={s: np.concatenate([m["events"].toe_off_s[s] for m in measured]) for s in SIDES})
    n_strides = {s: sum(len(m["strides"][s]) for m in measured) for s in SIDES}
    if not all(n_strides.values()):
        short = [s for s in SIDES if not n_strides[s]]
        return GaitParameters(valid=False, reason=f"no complete gait cycle of the {' and '.join(short)} leg "
                                                  f"in {duration:.2f} s", events=events, **base)

    def pooled(key: str, side: str | None = None) -> list:
        return [v for m in measured for v in (m[key][side] if side else m[key])]

    def mean_or_nan(values: list) -> float:
        return float(np.mean(values)) if values else float("nan")

    stride_times, speeds, widths, stride_lengths = (pooled(k) for k in ("stride_times", "speeds", "widths",
                                                                         "stride_lengths"))
    stance = {s: mean_or_nan(pooled("stance", s)) for s in SIDES}
    curves = {name: np.mean(pooled("curves", name), axis=0) for name in ANGLE_NAMES}
    step_time = {s: mean_or_nan(pooled("step_times", s)) for s in SIDES}
    step_footprints = {s: mean_or_nan(pooled("step_footprints", s)) for s in SIDES}

    stride_time = float(np.mean(stride_times))
    if overground:
        speed = float(velocity @ progression)
        stride_length = mean_or_nan(stride_lengths)
        step_length = step_footprints
    else:
        speed = mean_or_nan(speeds)
        stride_length = speed * stride_time
        step_length = {s: speed * step_time[s] for s in SIDES}
    peak = {s: float(curves[f"{s}_knee_flexion"].max()) for s in SIDES}
    return GaitParameters(
        valid=True, reason="", **base,
        cadence_spm=120.0 / stride_time, stride_time_s=stride_time, step_time_s=step_time,
        stride_length_m=stride_length, step_length_m=step_length,
        step_width_m=mean_or_nan(widths),
        stance_pct=stance, swing_pct={s: 100.0 - v for s, v in stance.items()},
        walking_speed_mps=speed, walking_mode="overground" if overground else "treadmill",
        peak_knee_flexion_deg=peak,
        n_strides=n_strides,
        symmetry_pct={"step_length": symmetry_index(step_length), "step_time": symmetry_index(step_time),
                      "stance": symmetry_index(stance), "peak_knee_flexion": symmetry_index(peak)},
        curves_deg={name: curves[name] for name in ANGLE_NAMES},
        events=events,
    )


def _part_measures(t: np.ndarray, j: np.ndarray, direction: np.ndarray, progression: np.ndarray,
                   lateral: np.ndarray) -> dict:
    """The per-stride measures of one gap-free part (uniform stamps t (T,), joints j (T, 9, 3)): its
    events and strides per side, and lists of stride times, treadmill speeds, step widths, overground
    stride lengths, stance shares and angle curves per side, step times and step footprints per side."""
    offsets = forward_offsets(j, direction)
    events = detect_events(t, j)
    strides = {s: _strides(events.heel_strike_s[s]) for s in SIDES}
    out = {"events": events, "strides": strides, "stride_times": [], "speeds": [], "widths": [],
           "stride_lengths": [], "stance": {}, "curves": {name: [] for name in ANGLE_NAMES},
           "step_times": {}, "step_footprints": {}}
    percent = np.linspace(0.0, 1.0, CURVE_POINTS)
    angle_splines = ({k: CubicSpline(t, np.rad2deg(v)) for k, v in joint_angles(j).items()}
                     if any(strides.values()) else {})
    # Overground: each heel strike's footprint, the ankle's world position along the line of progression.
    footprints = {s: _positions(t, j[:, JOINT_INDEX[f"{s}_ankle"]], events.heel_strike_s[s]) @ progression
                  for s in SIDES}
    for side in SIDES:
        ankle = offsets[f"{side}_ankle"]
        out["stance"][side] = []
        for a, b in strides[side]:
            out["stride_times"].append(b - a)
            toe_off = events.toe_off_s[side][(events.toe_off_s[side] > a) & (events.toe_off_s[side] < b)]
            if len(toe_off):
                out["stance"][side].append(100.0 * (toe_off[0] - a) / (b - a))
                # The stance ankle's backward travel relative to the pelvis: the belt's speed (treadmill).
                out["speeds"].append((np.interp(a, t, ankle) - np.interp(toe_off[0], t, ankle)) / (toe_off[0] - a))
            for name, spline in angle_splines.items():
                if name.startswith(side + "_"):
                    out["curves"][name].append(spline(a + percent * (b - a)))
        hs = events.heel_strike_s[side]
        out["stride_lengths"] += [footprints[side][k + 1] - footprints[side][k] for k in range(len(hs) - 1)
                                  if MIN_CYCLE_S <= hs[k + 1] - hs[k] <= MAX_CYCLE_S]
        for h in hs:
            between = [np.interp(h, t, (j[:, JOINT_INDEX["left_ankle"]] - j[:, JOINT_INDEX["right_ankle"]]) @ axis)
                       for axis in np.eye(3)]
            out["widths"].append(abs(float(np.dot(between, lateral))))
    other = {"left": "right", "right": "left"}
    for side in SIDES:
        hs, hs_other = events.heel_strike_s[side], events.heel_strike_s[other[side]]
        # Each heel strike after one of the other side's, within half the longest cycle: a step.
        steps = [(k, int(np.flatnonzero(hs_other < h)[-1])) for k, h in enumerate(hs) if (hs_other < h).any()]
        steps = [(k, m) for k, m in steps if hs[k] - hs_other[m] <= MAX_CYCLE_S / 2]
        out["step_times"][side] = [hs[k] - hs_other[m] for k, m in steps]
        out["step_footprints"][side] = [footprints[side][k] - footprints[other[side]][m] for k, m in steps]
    return out


class GaitAnalyser:
    """Online gait parameters over a sliding window of the newest frames.

    `update(stamp_s, joints)` per estimated frame (joints (9, 3), NaN when
    missing); `parameters()` analyses the last `window_s` seconds, at most
    once every `update_period_s` of stamp time. An event is found about
    0.3 s after it happens (see `events`), so the newest stride shows up
    with that delay.
    """

    def __init__(self, window_s: float = 8.0, update_period_s: float = 0.5):
        if window_s <= 0 or update_period_s < 0:
            raise ValueError(f"window_s must be positive and update_period_s not negative, "
                             f"got {window_s} and {update_period_s}")
        self.window_s, self.update_period_s = window_s, update_period_s
        self._frames: deque[tuple[float, np.ndarray]] = deque()
        self._cached: GaitParameters | None = None
        self._cached_stamp = -np.inf

    def update(self, stamp_s: float, joints: np.ndarray) -> None:
        joints = np.asarray(joints, float)
        if joints.shape != (9, 3):
            raise ValueError(f"joints must have shape (9, 3), got {joints.shape}")
        if self._frames and stamp_s == self._frames[-1][0]:
            return                      # a repeated frame
        if self._frames and stamp_s < self._frames[-1][0]:
            self._frames.clear()        # time went back (a bag played again): start over
            self._cached, self._cached_stamp = None, -np.inf
        self._frames.append((float(stamp_s), joints))
        while self._frames and self._frames[0][0] < stamp_s - self.window_s:
            self._frames.popleft()

    def reset(self) -> None:
        self._frames.clear()
        self._cached, self._cached_stamp = None, -np.inf

    def parameters(self, force: bool = False) -> GaitParameters:
        """The parameters of the window; recomputed once the newest frame is `update_period_s`
        (stamp time) past the last computation, else the last result (an analysis costs tens of ms).
        `force` recomputes whenever a frame came in since (a stream's end must count its last frames)."""
        newest = self._frames[-1][0] if self._frames else -np.inf
        due = newest >= self._cached_stamp + (0.0 if force else self.update_period_s)
        if self._cached is None or (due and newest != self._cached_stamp) or not self._frames:
            self._cached_stamp = newest
            if len(self._frames) < 2:
                self._cached = GaitParameters(valid=False, reason=f"only {len(self._frames)} frames",
                                              duration_s=0.0, n_frames=len(self._frames))
            else:
                stamps = np.array([f[0] for f in self._frames])
                self._cached = gait_parameters(stamps, np.stack([f[1] for f in self._frames]))
        return self._cached
