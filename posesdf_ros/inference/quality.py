"""How far a fit can be trusted: a per-frame quality score and per-joint confidences.

A latent fit always returns nine joints, even when it landed in a wrong
place (a heading turned round, a cloud floating above the floor, a clutter
object taken for a leg). Four checks, each in [0, 1], say whether the
result is a person's lower limbs standing on the floor where the points are:

- `support`: every joint lies near the observed points (a joint centre sits
  a limb's radius inside the skin; an occluded far leg a little farther).
  Per joint, 1 within `support_ok_m` of the nearest observed point, falling
  to 0 at `support_bad_m`: the joint confidences. The frame's term is that
  of the least supported joint the camera could have seen: a joint hidden
  behind observed points (`hidden_joints`: the far hip behind the near
  thigh in a side view, a foot behind a box) has no points of its own to
  lie near, so it keeps its low confidence but does not fail the frame.
  With an ensemble's `joint_spread` (how far its members' joints lie from
  their mean) and a `joint_spread_m` ramp, each joint's confidence is also
  multiplied by 1 up to the ramp's first value, 0 from its second: members
  that disagree at a joint say its estimate is unsure (docs/quality.md).
  That term lowers the joints' confidences; the frame's score only where the
  members disagree everywhere (`agreement`).
- `agreement` (with an ensemble's spread, any profile): 1 while the median
  of the joints' spreads is under `frame_spread_m`'s first value, 0 from its
  second: members whose fits land apart at most joints found no pose the
  points pin down.
- `surface`: the observed points lie on the fitted surface: the 90th
  percentile of their |SDF|, 1 up to `residual_ok_m`, 0 from `residual_bad_m`.
- `anatomy`: thigh, shank, foot and hip width within adult ranges, left and
  right thighs and shanks within `max_asymmetry` of each other (0 or 1).
- `floor`: the lowest ankle or foot joint within `floor_range_m` of the
  floor (z = 0 of the gravity frame; 0 or 1).
- `heading`: when both headings were fitted (the heading check), the kept
  one's fit loss at least `heading_margin_min` times lower than the other's
  (0 or 1; 1 when only one heading was fitted). Below it RotNet and the
  shape disagree: the shape fits the turned heading better, though not by
  the margin that overrules RotNet, and a fit turned front to back covers
  the points as well as a right one, so no other check can tell them. A fit
  the other checks doubt (their score under `retry_below`) needs the wider
  margin `doubted_heading_margin_min`.

score = min(support, surface, agreement) * anatomy * floor * heading. The thresholds
were chosen on val scenes of the training bodies (`docs/quality.md`), never
on the test split.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..skeleton import BONES, JOINT_INDEX, JOINT_NAMES
from ..skeleton import bone_lengths as skeleton_bone_lengths

#: The named bones checked, as indices into `BONES`.
_CHECKED_BONES = {"left_thigh": BONES.index((1, 2)), "right_thigh": BONES.index((5, 6)),
                  "left_shank": BONES.index((2, 3)), "right_shank": BONES.index((6, 7)),
                  "left_foot": BONES.index((3, 4)), "right_foot": BONES.index((7, 8))}


@dataclass(frozen=True)
class QualityConfig:
    support_ok_m: float = 0.12
    support_bad_m: float = 0.22
    residual_ok_m: float = 0.018
    residual_bad_m: float = 0.035
    thigh_m: tuple[float, float] = (0.25, 0.56)
    shank_m: tuple[float, float] = (0.25, 0.56)
    hip_width_m: tuple[float, float] = (0.10, 0.36)
    # Ankle to foot joint: 0.13 to 0.19 m on every build's bodies, 0.12 to 0.21 in `fast`'s fits; NVF's votes
    # have put a foot half a metre from its ankle (docs/quality.md).
    foot_m: tuple[float, float] = (0.08, 0.26)
    max_asymmetry: float = 0.25
    floor_range_m: tuple[float, float] = (-0.10, 0.25)
    # A joint is hidden when at least `hidden_min_points` observed points (the legs', or a segmented
    # scene's) lie within `hidden_radius_m` of its line of sight (a limb's radius) and in front of
    # it, by at least `hidden_min_depth_m` (its own limb's skin, or the floor under a foot, does not hide
    # a joint centre) and at most `hidden_max_depth_m` (a person's depth along a line of sight: seen from
    # above, a foot lies 0.5 to 0.9 m behind its own knee and thigh; a fit pushed farther back is not
    # excused, nor one pushed behind a box far in front of the legs; docs/quality.md).
    hidden_radius_m: float = 0.05
    hidden_min_depth_m: float = 0.1
    hidden_max_depth_m: float = 1.0
    hidden_min_points: int = 5
    # The scene's points besides the legs excuse only these joints, at most `scene_hidden_max` of them: one foot
    # and its ankle behind a box on the floor. A fit with more of a leg behind clutter cannot be checked: with
    # knees too, `realtime` kept a fit turned round 392 mm off (docs/quality.md).
    scene_hidden_joints: tuple[str, ...] = ("left_ankle", "left_foot", "right_ankle", "right_foot")
    scene_hidden_max: int = 2
    # An ensemble's joint spread (ok, bad), metres, for the joint confidences; None: not used (docs/quality.md).
    joint_spread_m: tuple[float, float] | None = None
    # The median of the joints' spreads (ok, bad), metres, for the frame's `agreement`; None: not used. The val
    # builds' kept fits read at most 21 mm (`fast`) and 27 mm (`realtime`; docs/quality.md).
    frame_spread_m: tuple[float, float] | None = (0.03, 0.05)
    heading_margin_min: float = 1.0  # the other heading's fit loss over the kept one's (docs/quality.md: why 1.0)
    doubted_heading_margin_min: float = 1.2  # the same, for a fit the other checks score under `retry_below`
    retry_below: float = 0.5        # a fit scoring less is tried again (the other heading, or cold)
    reject_below: float = 0.4       # a fit scoring less is reported valid=False (docs/quality.md: why 0.4)


@dataclass
class FitQuality:
    score: float                            # in [0, 1]
    joint_confidence: np.ndarray            # (9,) in [0, 1], JOINT_NAMES order
    terms: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return f"quality {self.score:.2f}" + (f" ({'; '.join(self.problems)})" if self.problems else "")


def _ramp(x: np.ndarray | float, ok: float, bad: float):
    """1 up to `ok`, 0 from `bad`, linear between."""
    return np.clip((bad - np.asarray(x, float)) / (bad - ok), 0.0, 1.0)


def bone_lengths(joints: np.ndarray) -> dict[str, float]:
    """Thigh, shank and foot (ankle to foot joint) per side (m) and the hip width, of (9, 3) joints."""
    lengths = skeleton_bone_lengths(joints)
    hips = joints[JOINT_INDEX["left_hip"]] - joints[JOINT_INDEX["right_hip"]]
    return {name: float(lengths[i]) for name, i in _CHECKED_BONES.items()} | {"hip_width": float(np.linalg.norm(hips))}


def _sight_box(targets: np.ndarray, camera_origin: np.ndarray, config: QualityConfig) -> tuple[np.ndarray, np.ndarray]:
    """(lo, hi) (3,) of the box around the last `hidden_max_depth_m` of the lines of sight from `camera_origin`
    to the targets (T, 3), widened by `hidden_radius_m` (the sight cone's radius): where a point can hide one."""
    rel = targets - camera_origin
    starts = camera_origin + rel * np.clip(1.0 - config.hidden_max_depth_m / np.linalg.norm(rel, axis=1), 0.0,
                                           1.0)[:, None]
    return (np.minimum(starts, targets).min(0) - config.hidden_radius_m,
            np.maximum(starts, targets).max(0) + config.hidden_radius_m)


def hidden_joints(joints: np.ndarray, observed: np.ndarray, camera_origin: np.ndarray,
                  config: QualityConfig = QualityConfig()) -> np.ndarray:
    """(J,) bool: which of the joints (J, 3) the observed points (N, 3) hide from a camera at
    `camera_origin` (3,): enough of them near the joint's line of sight (within `hidden_radius_m`
    of it at the joint's range) and in front of the joint by `hidden_min_depth_m` to `hidden_max_depth_m`."""
    joint_rel = joints - camera_origin
    joint_ranges = np.linalg.norm(joint_rel, axis=1)
    # First the box around the stretches of the lines of sight that count (a whole scene, a million points,
    # lies mostly elsewhere; NaN rows fall out here too).
    lo, hi = _sight_box(joints, camera_origin, config)
    rel = np.asarray(observed[((observed >= lo) & (observed <= hi)).all(1)], float) - camera_origin
    ranges = np.linalg.norm(rel, axis=1)
    # None within 5 cm of the camera: a depth camera's invalid zero depths, at the camera.
    rel, ranges = rel[ranges > 0.05], ranges[ranges > 0.05]
    cos = (rel / ranges[:, None]) @ (joint_rel / joint_ranges[:, None]).T                # (N, J)
    on_sight_line = cos > np.cos(np.arctan2(config.hidden_radius_m, joint_ranges))[None]
    depth_behind = joint_ranges[None] - ranges[:, None]                                 # (N, J)
    in_front = on_sight_line & (depth_behind >= config.hidden_min_depth_m) & (depth_behind <= config.hidden_max_depth_m)
    return in_front.sum(0) >= config.hidden_min_points


def foot_occluders(scene: np.ndarray, leg_indices: np.ndarray, camera_origin: np.ndarray,
                   config: QualityConfig = QualityConfig(), reach_m: float = 0.5) -> np.ndarray:
    """(K, 3): the points of a segmented scene (N, 3) besides its legs (`leg_indices`) and its floor that
    could hide a foot or ankle of a fit to the legs from a camera at `camera_origin` (3,) (the
    `scene_hidden_joints`): those in the box around the last `hidden_max_depth_m` of the lines of sight to
    the 0.6 m above the floor under the legs, widened by `reach_m` (how far an unsupported foot may lie
    from the points: a leg whose shank is hidden too). What the canonicaliser hands the estimator
    (`~/occluders`), some thousands of a whole scene's points."""
    legs = scene[leg_indices]
    lo = np.append(legs[:, :2].min(0) - reach_m, 0.0)
    hi = np.append(legs[:, :2].max(0) + reach_m, 0.6)
    box_lo, box_hi = _sight_box(np.stack(np.meshgrid(*zip(lo, hi), indexing="ij"), -1).reshape(-1, 3),
                                camera_origin, config)
    # The floor lies below every line of sight to a foot farther than hidden_min_depth_m: it hides none.
    keep = ((scene >= box_lo) & (scene <= box_hi)).all(1) & (scene[:, 2] > 0.03)
    keep[leg_indices] = False
    return scene[keep]


def assess_fit(joints: np.ndarray, observed: np.ndarray, surface_residual_m: np.ndarray,
               config: QualityConfig = QualityConfig(), camera_origin: np.ndarray | None = None,
               heading_margin: float | None = None, joint_spread: np.ndarray | None = None,
               occluders: np.ndarray | None = None) -> FitQuality:
    """joints (9, 3) and all the observed leg points (N, 3) in the gravity frame (floor at z = 0);
    surface_residual_m (M,) the |SDF| under the fit of the points it was fitted to, metres;
    camera_origin (3,) the camera's position there, which excuses hidden joints from `support`
    (None: every joint must be supported); heading_margin the other heading's fit loss over the
    kept heading's (None: only one heading was fitted); joint_spread (9,) metres, an ensemble's
    members' mean distance from its joints (None: one fit); occluders (K, 3) the scene's points besides
    the legs near their lines of sight (`foot_occluders`), which may hide a foot and its ankle too
    (`scene_hidden_joints`: a box in front of them; None: the leg points alone hide joints)."""
    joints, observed = np.asarray(joints, float), np.asarray(observed, float)
    nearest = np.sqrt(((joints[:, None, :] - observed[None, :, :]) ** 2).sum(-1).min(1))
    supported = _ramp(nearest, config.support_ok_m, config.support_bad_m)
    hidden = np.zeros(len(joints), bool)
    if camera_origin is not None and supported.min() < 1.0:
        camera_origin = np.asarray(camera_origin, float)
        hidden = hidden_joints(joints, observed, camera_origin, config) & (supported < 1.0)
        if occluders is not None and len(occluders):
            by_scene = hidden_joints(joints, np.asarray(occluders), camera_origin, config) & (supported < 1.0) & ~hidden
            eligible = np.isin(JOINT_NAMES, config.scene_hidden_joints)
            if not (by_scene & ~eligible).any() and by_scene.sum() <= config.scene_hidden_max:
                hidden |= by_scene
    problems = []
    seen = ~hidden
    support = float(supported[seen].min()) if seen.any() else 1.0
    if support < 1.0:
        worst = int(np.argmax(np.where(seen, nearest, -1.0)))
        problems.append(f"{JOINT_NAMES[worst]} {100 * nearest[worst]:.0f} cm from the points")
    residual = float(np.percentile(surface_residual_m, 90))
    surface = float(_ramp(residual, config.residual_ok_m, config.residual_bad_m))
    if surface < 1.0:
        problems.append(f"points {1000 * residual:.0f} mm off the surface (90th percentile)")
    bones = bone_lengths(joints)
    limits = {"left_thigh": config.thigh_m, "right_thigh": config.thigh_m, "left_shank": config.shank_m,
              "right_shank": config.shank_m, "left_foot": config.foot_m, "right_foot": config.foot_m,
              "hip_width": config.hip_width_m}
    bad_bones = [f"{k} {v:.2f} m" for k, v in bones.items() if not limits[k][0] <= v <= limits[k][1]]
    for part in ("thigh", "shank"):
        left, right = bones[f"left_{part}"], bones[f"right_{part}"]
        if abs(left - right) > config.max_asymmetry * max(left, right):
            bad_bones.append(f"{part}s {left:.2f} / {right:.2f} m")
    anatomy = 0.0 if bad_bones else 1.0
    if bad_bones:
        problems.append("implausible bones: " + ", ".join(bad_bones))
    agreement = 1.0
    if joint_spread is not None and config.frame_spread_m is not None:
        median_spread = float(np.median(joint_spread))
        agreement = float(_ramp(median_spread, *config.frame_spread_m))
        if agreement < 1.0:
            problems.append(f"the ensemble's fits disagree: median joint spread {1000 * median_spread:.0f} mm")
    feet = [JOINT_INDEX[name] for name in ("left_ankle", "left_foot", "right_ankle", "right_foot")]
    lowest = float(joints[feet, 2].min())
    floor = 1.0 if config.floor_range_m[0] <= lowest <= config.floor_range_m[1] else 0.0
    if not floor:
        problems.append(f"lowest foot joint {100 * lowest:.0f} cm from the floor")
    checked = min(support, surface, agreement) * anatomy * floor
    margin_min = config.heading_margin_min if checked >= config.retry_below else config.doubted_heading_margin_min
    heading = 1.0 if heading_margin is None or heading_margin >= margin_min else 0.0
    if not heading:
        problems.append(f"ambiguous heading: the opposite heading's fit loss {heading_margin:.2f} times the kept one's")
    score = checked * heading
    confidence = supported
    if joint_spread is not None and config.joint_spread_m is not None:
        confidence = supported * _ramp(joint_spread, *config.joint_spread_m)
    terms = {"support": support, "surface": surface, "agreement": agreement, "anatomy": anatomy, "floor": floor,
             "heading": heading,
             "surface_residual_p90_m": residual, "max_joint_distance_m": float(nearest.max()),
             "hidden_joints": [JOINT_NAMES[i] for i in np.flatnonzero(hidden)]}
    if heading_margin is not None:
        terms["heading_margin"] = float(heading_margin)
    if joint_spread is not None:
        terms["max_joint_spread_m"] = float(np.max(joint_spread))
    return FitQuality(score, confidence, terms, problems)
