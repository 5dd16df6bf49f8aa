"""The generator's true gait parameters, as a clinician would read them.

For a `WalkingSubject` (or a `SyntheticWalker`, through its `walker.subject`):
- events: heel strike where a side's gait-angle curves are at phase 0 and
  toe off where they are at `TOE_OFF_PHASE`; the curves run on a warped
  phase `w = p + a sin(2 pi (p + off))` (`GaitModel._warp`), so the event
  times solve `w(p) = k` (resp. `k + TOE_OFF_PHASE`), not `p = k`
  (`GaitModel.unwarp`);
- cadence: `GaitParams.cadence_spm`; stride time: `cycle_s`; step time of
  a side: from the other side's heel strike to its own;
- walking speed: `WalkingSubject.walking_speed_mps` (the stance ankle's
  backward travel relative to the pelvis from the true heel strike to the
  true toe off, over that time, averaged over both legs): the belt speed
  on a treadmill, and overground the speed at which the generator moves
  the subject (its pelvis); stride length = speed x cycle_s, which overground is the
  pelvis' travel per cycle and so the distance between a foot's
  successive heel strikes (the pose repeats every cycle);
- step length of a side: on a treadmill speed x its step time; overground
  the clinical (footprint) one: the forward distance, along the subject's
  line of progression, from the other ankle at its heel strike to this
  side's ankle at its next heel strike, on the noise-free joints (the two
  add up to the stride; they differ from speed x step time where the
  legs' amplitudes differ);
- stance: toe off minus heel strike over the cycle;
- peak knee flexion: the maximum over the cycle of the generator's knee
  flexion curve (`GaitModel.leg_angles`). The body model corrects anny's
  bent rest knee so that the angle between thigh and shank from the joints
  equals that curve (`posesdf bench gait` reports the difference: 0.1 deg),
  so it is the angle a clinician reads off the joints;
- step width: the distance between the two ankles across the subject's
  line of progression at each heel strike of the noise-free joints (the generator has no step-width
  parameter; its legs are set to about 0.1 m);
- angle curves: the generator's hip flexion/adduction, knee flexion and
  ankle dorsiflexion over 0..100 % of the cycle. Hip angles are relative
  to anny's rest thigh, which is not vertical: the joints read them a few
  degrees higher, depending on the body and the hip rotation (the
  offsets are in `posesdf bench gait`'s second table).
"""
from __future__ import annotations

import numpy as np

from ..data.gait import TOE_OFF_PHASE
from ..data.scene import WalkingSubject
from ..skeleton import JOINT_INDEX, SIDES
from .angles import ANGLE_NAMES
from .events import GaitEvents
from .parameters import CURVE_POINTS, GaitParameters, symmetry_index

#: The right leg runs half a cycle behind the left (`GaitModel.angles`).
_SIDE_LAG = {"left": 0.0, "right": 0.5}


def _subject(subject) -> WalkingSubject:
    """A WalkingSubject, or the `walker.subject` of a SyntheticWalker."""
    return getattr(subject, "subject", subject)


def _phase_times(subject: WalkingSubject, side: str, target: float, t0: float, t1: float) -> np.ndarray:
    """Times in [t0, t1] at which a side's warped curve phase is `target` mod 1."""
    gait = subject.gait
    cycle = gait.params.cycle_s

    def side_phase(t: float) -> float:
        return float(gait.phase_at(np.array([t]), subject.phase0)[0]) - _SIDE_LAG[side]

    times = []
    lo, hi = side_phase(t0), side_phase(t1)
    # The warp moves the phase by less than one, so warped phases k + target cover [lo, hi] for these k.
    for k in range(int(np.floor(lo - target)) - 1, int(np.ceil(hi - target)) + 2):
        t = (gait.unwarp(k + target) + _SIDE_LAG[side] - subject.phase0) * cycle
        if t0 <= t <= t1:
            times.append(t)
    return np.asarray(times, float)


def true_events(subject, t0: float, t1: float) -> GaitEvents:
    """The generator's heel strikes and toe offs in [t0, t1] (s)."""
    subject = _subject(subject)
    return GaitEvents(
        heel_strike_s={s: _phase_times(subject, s, 0.0, t0, t1) for s in SIDES},
        toe_off_s={s: _phase_times(subject, s, TOE_OFF_PHASE, t0, t1) for s in SIDES},
    )


def true_curves(subject, points: int = CURVE_POINTS) -> dict[str, np.ndarray]:
    """The generator's angle curves (deg) over 0..100 % of each side's cycle: {ANGLE_NAMES: (points,)}."""
    subject = _subject(subject)
    # The cycle starts at heel strike, where the warped phase is 0; the unwarped phase runs 1 a cycle.
    start = subject.gait.unwarp(0.0)
    out = {}
    for side in SIDES:
        angles = subject.gait.leg_angles(start + np.linspace(0.0, 1.0, points), side)
        for name in ANGLE_NAMES:
            if name.startswith(side + "_"):
                out[name] = np.rad2deg(angles[name[len(side) + 1:]])
    return out


def true_parameters(subject, t0: float = 0.0, t1: float | None = None) -> GaitParameters:
    """The generator's gait parameters for a walk over [t0, t1] (default: the subject's duration)."""
    subject = _subject(subject)
    t1 = subject.duration_s if t1 is None else t1
    params = subject.gait.params
    cycle, speed = params.cycle_s, subject.walking_speed_mps
    # Events over a wider span so that every step and stance in [t0, t1] is complete.
    events = true_events(subject, t0 - cycle, t1 + cycle)
    hs, to = events.heel_strike_s, events.toe_off_s
    other = {"left": "right", "right": "left"}
    step_time, stance, width, footprint_steps = {}, {}, [], {}
    for side in SIDES:
        # Step time of a side: the other side's heel strike -> this side's next one.
        prev = np.array([hs[other[side]][hs[other[side]] < t].max() for t in hs[side] if (hs[other[side]] < t).any()])
        later = hs[side][-len(prev):]
        step_time[side] = float(np.mean(later - prev))
        if subject.mode == "overground":
            forward = {}
            for key, times, leg in (("later", later, side), ("prev", prev, other[side])):
                body, transforms = subject.poses(times)
                joints = body.joints @ transforms[:, :3, :3].transpose(0, 2, 1) + transforms[:, None, :3, 3]
                # Along the line of progression: the subject's forward axis, which it travels along.
                forward[key] = np.sum(joints[:, JOINT_INDEX[f"{leg}_ankle"]] * transforms[:, :3, 0], axis=-1)
            footprint_steps[side] = float(np.mean(forward["later"] - forward["prev"]))
        after = np.array([to[side][to[side] > t].min() for t in hs[side][:-1]])
        stance[side] = float(np.mean((after - hs[side][:-1]) / cycle * 100.0))
        in_walk = hs[side][(hs[side] >= t0) & (hs[side] <= t1)]
        if len(in_walk):
            body, transforms = subject.poses(in_walk)
            joints = body.joints @ transforms[:, :3, :3].transpose(0, 2, 1) + transforms[:, None, :3, 3]
            lateral = transforms[:, :3, 1]          # the subject's left: across its line of progression
            width.extend(np.abs(np.sum((joints[:, 3] - joints[:, 7]) * lateral, axis=-1)))
    curves = true_curves(subject)
    peak = {s: float(curves[f"{s}_knee_flexion"].max()) for s in SIDES}
    step_length = footprint_steps if subject.mode == "overground" else {s: speed * step_time[s] for s in SIDES}
    return GaitParameters(
        valid=True, reason="", duration_s=float(t1 - t0), n_frames=0,
        cadence_spm=float(params.cadence_spm), stride_time_s=float(cycle),
        step_time_s=step_time, stride_length_m=float(speed * cycle), step_length_m=step_length,
        step_width_m=float(np.mean(width)) if width else float("nan"),
        stance_pct=stance, swing_pct={s: 100.0 - v for s, v in stance.items()},
        walking_speed_mps=float(speed), walking_mode=subject.mode, peak_knee_flexion_deg=peak,
        n_strides={s: int(np.sum((hs[s] >= t0) & (hs[s] <= t1))) - 1 for s in SIDES},
        symmetry_pct={"step_length": symmetry_index(step_length), "step_time": symmetry_index(step_time),
                      "stance": symmetry_index(stance), "peak_knee_flexion": symmetry_index(peak)},
        curves_deg=curves,
        events=true_events(subject, t0, t1),
    )
