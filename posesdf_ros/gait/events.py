"""Heel strike and toe off per side from a joint sequence.

The method of Zeni et al. (2008, Gait & Posture 27:710), which needs no
floor contact and so works the same on a treadmill and overground: along
the walking direction, relative to the pelvis,
- heel strike is near the ankle's most forward position (the leg reaches
  out before it takes the weight),
- toe off is the toe base's (`foot` joint's) most backward position.
The ankle's forward extremum comes a little before initial contact (a
few per cent of the cycle on the data engine's walkers), while
the end of terminal-swing knee extension (the knee flexion minimum within
`KNEE_SEARCH_S` of it) is close to contact but, being a shallow minimum
of a noisy angle, jitters with joint noise. So each heel strike is the
ankle extremum shifted by the median lag of the knee minimum behind it
over all the strides of the sequence (both sides): the ankle's noise
robustness with the knee's timing. Where the knee shows no minimum near
the ankle extremum (noise, a stiff knee), that stride's lag is 0. Feet
that travel less than `MIN_EXCURSION_M` relative to the pelvis (standing,
shuffling) give no events.
Each extremum is refined to sub-frame time by a least-squares parabola
over the frames around it, which also averages out joint noise. An event
is known about `KNEE_SEARCH_S + EXTREMUM_HALF_WINDOW_S` after it happened
(the parabolas need the frames after the extremum), so a sliding window
over the newest frames finds events with that delay.

The walking direction is the mean horizontal heading of the pelvis over
the sequence (straight-line walking; see `angles.heading`).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks

from ..skeleton import JOINT_INDEX, SIDES
from .angles import heading, joint_angles

#: Half width of the parabola fitted around each extremum (s); at least two frames are used.
EXTREMUM_HALF_WINDOW_S = 0.12
#: Heel strike: the knee flexion minimum within this time (s) of the ankle's forward extremum.
KNEE_SEARCH_S = 0.15
#: Shortest gait cycle (s) considered: 0.5 s is 240 steps a minute, beyond walking.
MIN_CYCLE_S = 0.5
#: An extremum must stand out of the signal by this share of its 5-95 % range,
MIN_PROMINENCE = 0.3
#: and by at least this much (m): a walking foot travels 0.3 m or more relative to the pelvis,
#: joint noise while standing still does not.
MIN_EXCURSION_M = 0.15


@dataclass(frozen=True)
class GaitEvents:
    """Event times (s, sub-frame) per side, each sorted: {side: (n,)}."""

    heel_strike_s: dict[str, np.ndarray]
    toe_off_s: dict[str, np.ndarray]


def walking_direction(joints: np.ndarray) -> np.ndarray:
    """Mean horizontal forward direction of the pelvis over a sequence. joints: (T, 9, 3) -> (3,)."""
    mean = np.nanmean(heading(joints), axis=0)
    norm = np.linalg.norm(mean)
    if not np.isfinite(norm) or norm < 1e-6:
        raise ValueError("no walking direction: the pelvis heading is undefined or turns through the sequence")
    return mean / norm


def forward_offsets(joints: np.ndarray, direction: np.ndarray) -> dict[str, np.ndarray]:
    """Position (m) of each ankle and foot joint ahead of the pelvis along `direction`.

    joints: (T, 9, 3), direction: (3,) -> {'left_ankle', 'left_foot', 'right_ankle', 'right_foot': (T,)}.
    """
    pelvis = joints[:, JOINT_INDEX["pelvis"]]
    return {f"{side}_{j}": (joints[:, JOINT_INDEX[f"{side}_{j}"]] - pelvis) @ direction
            for side in SIDES for j in ("ankle", "foot")}


def extrema(stamps_s: np.ndarray, signal: np.ndarray, maxima: bool = True) -> np.ndarray:
    """Sub-frame times (s) of the gait-cycle maxima (or minima) of a foot's forward offset.

    stamps_s: (T,) uniformly spaced, signal: (T,) finite, metres -> (n,) sorted.
    Extrema whose parabola window runs off either end are dropped, so an
    event is only reported once the frames after it have arrived.
    """
    y = signal if maxima else -signal
    dt = float(np.median(np.diff(stamps_s)))
    span = np.subtract(*np.percentile(y, [95, 5]))
    peaks, _ = find_peaks(y, distance=max(1, int(MIN_CYCLE_S / dt)),
                          prominence=max(MIN_PROMINENCE * span, MIN_EXCURSION_M))
    times = [_refine(stamps_s, y, k) for k in peaks]
    return np.asarray([t for t in times if t is not None], float)


def _refine(stamps_s: np.ndarray, y: np.ndarray, k: int) -> float | None:
    """Sub-frame time of the maximum of y at frame k (None if its window runs off an end)."""
    dt = stamps_s[1] - stamps_s[0]
    half = max(2, int(round(EXTREMUM_HALF_WINDOW_S / dt)))
    if k - half < 0 or k + half >= len(y):
        return None
    a, b = _parabola_fit(half) @ y[k - half:k + half + 1]
    # A parabola opening downwards peaks at -b / 2a (in frames); keep it within the window.
    return float(stamps_s[k] + dt * (np.clip(-b / (2 * a), -half, half) if a < 0 else 0.0))


@functools.lru_cache(maxsize=16)
def _parabola_fit(half: int) -> np.ndarray:
    """Rows giving the x^2 and x coefficients of the least-squares parabola through y(-half..half)."""
    x = np.arange(-half, half + 1, dtype=float)
    return np.linalg.pinv(np.stack([x * x, x, np.ones_like(x)], axis=1))[:2]


def _knee_extension(stamps_s: np.ndarray, knee_flexion: np.ndarray, near_s: float) -> float:
    """Time of the knee flexion minimum within KNEE_SEARCH_S of `near_s`; `near_s` if there is none inside."""
    window = np.flatnonzero(np.abs(stamps_s - near_s) <= KNEE_SEARCH_S)
    if len(window) < 3:
        return near_s
    k = window[np.argmin(knee_flexion[window])]
    if k in (window[0], window[-1]):
        return near_s
    refined = _refine(stamps_s, -knee_flexion, k)
    return near_s if refined is None else refined


def detect_events(stamps_s: np.ndarray, joints: np.ndarray) -> GaitEvents:
    """Heel strikes and toe offs of both sides.

    stamps_s: (T,) increasing and uniformly spaced, joints: (T, 9, 3) finite,
    z up (use `parameters.prepare` for raw input with gaps and NaN frames).
    """
    offsets = forward_offsets(joints, walking_direction(joints))
    angles = joint_angles(joints)
    reach = {s: extrema(stamps_s, offsets[f"{s}_ankle"], maxima=True) for s in SIDES}
    lags = [_knee_extension(stamps_s, angles[f"{s}_knee_flexion"], t) - t for s in SIDES for t in reach[s]]
    lag = float(np.median(lags)) if lags else 0.0
    return GaitEvents(
        heel_strike_s={s: reach[s] + lag for s in SIDES},
        toe_off_s={s: extrema(stamps_s, offsets[f"{s}_foot"], maxima=False) for s in SIDES},
    )
