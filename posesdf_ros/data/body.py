"""Human bodies from the anny body model, posed by the gait model.

Frames: anny's own frame is z-up with the body facing -y and its left at
+x. Everything this module returns is in the *subject frame* (REP 103
body convention: x forward, y left, z up) with the lowest point of the
body on the floor plane z = 0 and the pelvis above the origin.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import torch

from ..skeleton import ANNY_JOINT_BONES, SIDES, knee_flexion

#: Ranges of anny's phenotype parameters for adults of all builds. anny's
#: age anchors are MakeHuman's: 1/3 = child (about 11 years), 2/3 = young
#: adult (25), 1 = old (90); 0.5 is about 18 years. Muscle and proportions
#: span anny's whole range; the top of weight is trimmed because the thighs
#: of the heaviest bodies interpenetrate, which makes inside/outside of the
#: mesh ill-defined. anny's `height` spans 1.2 to 2.5 m, so it is not drawn
#: directly: a stature is drawn instead (see `STATURE_M`) and `BodyModel`
#: solves for the `height` parameter that gives it.
ADULT_PHENOTYPE_RANGES: dict[str, tuple[float, float]] = {
    "gender": (0.0, 1.0),       # 0 male .. 1 female, blends between
    "age": (0.5, 1.0),          # about 18 .. 90 years
    "muscle": (0.0, 1.0),
    "weight": (0.0, 0.9),
    "proportions": (0.0, 1.0),
}
#: Adult stature (m): normal with mean 1.76 (male) to 1.63 (female) by
#: gender, sd 0.075, clipped to this range.
STATURE_M: tuple[float, float] = (1.45, 2.00)

#: Bones whose skin is left out of the lower-limb shape: the arms and hands. The spec's
#: shape is the body surface below the crop plane (pelvis + 0.10 m); that includes
#: the belly and lower back (spine skin) but must not carry a swinging hand.
_ARM_BONE_PREFIXES = ("clavicle", "shoulder", "upperarm", "lowerarm", "wrist", "metacarpal", "finger")

#: Subject frame (x forward, y left, z up) -> anny frame (forward -y, left +x).
SUBJECT_TO_ANNY = np.array([[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])

#: How far the rest A-pose arms are brought down towards the body (rad).
_ARM_ADDUCTION = np.deg2rad(38.0)
#: anny's reference forearm is bent about 43 deg; extend it to about 15.
_ELBOW_EXTENSION = np.deg2rad(28.0)


# Subject split streams: a subject is identified by (split, index) and its
# phenotype comes from its own random stream, so train and test bodies are
# disjoint by construction whatever the number of each.
_SPLIT_STREAM = {"train": 0, "test": 1, "demo": 2}
BODY_SEED = 20261123


def subject_id(split: str, index: int) -> str:
    return f"{split}-{index:04d}"


def sample_phenotype(split: str, index: int) -> dict[str, float]:
    """The build of subject `index` of `split` (deterministic).

    Returns the anny parameters of `ADULT_PHENOTYPE_RANGES` and a target
    `stature_m`; `BodyModel.resolve` turns it into anny's `height`.
    """
    if split not in _SPLIT_STREAM:
        raise ValueError(f"unknown split {split!r}; expected one of {tuple(_SPLIT_STREAM)}")
    rng = np.random.default_rng([BODY_SEED, _SPLIT_STREAM[split], index])
    out = {k: float(rng.uniform(*r)) for k, r in ADULT_PHENOTYPE_RANGES.items()}
    mean = 1.76 - 0.13 * out["gender"]
    out["stature_m"] = float(np.clip(rng.normal(mean, 0.075), *STATURE_M))
    return out


def _rx(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([o, z, z], -1), np.stack([z, c, -s], -1), np.stack([z, s, c], -1)], -2)


def _ry(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _rz(a: np.ndarray) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def segment_rotations(angles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Joint rotations (T, 3, 3) in the subject frame, keyed by anny bone.

    Each rotation acts on its bone and everything below it, composed down
    the chain in the parent's frame (anny's 'local-ref' parameterisation).
    """
    T = len(angles["pelvis_obliquity"])
    out: dict[str, np.ndarray] = {}
    pelvis = _rz(angles["pelvis_rotation"]) @ _rx(-angles["pelvis_obliquity"])
    out["root"] = pelvis
    # The trunk counter-rotates so the upper body keeps facing forward.
    out["spine05"] = np.linalg.inv(pelvis)
    for side, suffix, medial in (("left", "L", -1.0), ("right", "R", 1.0)):
        a = {k[len(side) + 1:]: v for k, v in angles.items() if k.startswith(side + "_")}
        # Signs: flexion moves the thigh forward (-y rotation), adduction and
        # internal rotation move towards the midline, which is -y for the left.
        out[f"upperleg01.{suffix}"] = (
            _ry(-a["hip_flexion"]) @ _rx(medial * a["hip_adduction"]) @ _rz(medial * a["hip_rotation"])
        )
        out[f"lowerleg01.{suffix}"] = _ry(a["knee_flexion"])
        out[f"foot.{suffix}"] = (
            _ry(-a["ankle_dorsiflexion"]) @ _rx(medial * a["foot_inversion"]) @ _rz(medial * a["foot_adduction"])
        )
        if f"{side}_shoulder_flexion" in angles:
            # Free arms (the product engine): shoulder flexion (forward), abduction (out from
            # the rest pose's arm by the side) and elbow flexion per side and frame.
            # The elbow's hinge is the upper arm's flexion axis, carried by its adduction: in the
            # upper arm's frame, the subject's y axis turned back by that adduction.
            zero = np.zeros(T)
            adduction = _rx(medial * (_ARM_ADDUCTION - angles.get(f"{side}_shoulder_abduction", zero)))
            out[f"upperarm01.{suffix}"] = _ry(-angles[f"{side}_shoulder_flexion"]) @ adduction
            elbow = _ry(_ELBOW_EXTENSION - angles.get(f"{side}_elbow_flexion", zero))
            out[f"lowerarm01.{suffix}"] = np.swapaxes(adduction, -1, -2) @ elbow @ adduction
            continue
        swing = angles["arm_swing"] if side == "left" else -angles["arm_swing"]
        out[f"upperarm01.{suffix}"] = _ry(-swing) @ _rx(np.full(T, medial * _ARM_ADDUCTION))
        out[f"lowerarm01.{suffix}"] = _ry(np.full(T, _ELBOW_EXTENSION))
    return out


@dataclass
class PosedBodies:
    """A batch of posed bodies in the subject frame.

    vertices: (B, V, 3) float64, joints: (B, 9, 3) float64 (JOINT_NAMES
    order), faces: (F, 3) int64, lower_limb_vertex: (V,) bool.
    """

    vertices: np.ndarray
    joints: np.ndarray
    faces: np.ndarray
    lower_limb_vertex: np.ndarray

    @property
    def crop_height(self) -> np.ndarray:
        """z of the lower-limb crop plane (pelvis + 0.10 m), (B,)."""
        return self.joints[:, 0, 2] + 0.10


class BodyModel:
    """anny with the gait rig: phenotype + gait angles -> posed mesh and joints."""

    def __init__(self, device: str = "cpu"):
        self.model = _load_anny(device)
        labels = list(self.model.bone_labels)
        self.bone_index = {name: i for i, name in enumerate(labels)}
        self.joint_bones = [self.bone_index[b] for b in ANNY_JOINT_BONES.values() if b is not None]
        self.faces = self.model.get_triangular_faces().cpu().numpy().astype(np.int64)
        w = self.model.vertex_bone_weights.cpu().numpy()
        idx = self.model.vertex_bone_indices.cpu().numpy()
        #: (V,) index of the bone that moves each vertex most.
        self.dominant_bone = idx[np.arange(len(idx)), w.argmax(1)]
        lower = np.array([not labels[b].startswith(_ARM_BONE_PREFIXES) for b in range(len(labels))])
        self.lower_limb_vertex = lower[self.dominant_bone]
        self.lower_limb_face = self.lower_limb_vertex[self.faces].all(axis=1)
        self._resolved: dict[tuple, RestCorrection] = {}

    def _forward(self, phenotypes: list[dict[str, float]], deltas=None) -> dict[str, torch.Tensor]:
        ph = {k: torch.tensor([p[k] for p in phenotypes], dtype=self.model.dtype)
              for k in (*ADULT_PHENOTYPE_RANGES, "height")}
        return self.model(pose_parameters=deltas, phenotype_kwargs=ph)

    def _rest_joints(self, out: dict[str, torch.Tensor]) -> np.ndarray:
        heads = out["bone_poses"][:, self.joint_bones, :3, 3].cpu().numpy() @ SUBJECT_TO_ANNY
        return np.concatenate([0.5 * (heads[:, [0]] + heads[:, [4]]), heads], axis=1)

    @torch.no_grad()
    def resolve(self, build: dict[str, float]) -> RestCorrection:
        """anny parameters of a build from `sample_phenotype`, and its rest-pose corrections.

        A build may also carry `knee_correction` (0: keep anny's rest knee
        bend) and `step_width_m` (ankle spacing of the corrected rest pose,
        instead of 3/4 of the hip width); `data.domain` draws both.

        Stature is linear in anny's `height` parameter, so two rest
        evaluations give the parameter that reaches the target stature.
        """
        key = tuple(sorted(build.items()))
        if key in self._resolved:
            return self._resolved[key]
        ends = [dict(build, height=0.0), dict(build, height=1.0)]
        z = self._forward(ends)["vertices"][..., 2].cpu().numpy()
        lo, hi = z.max(1) - z.min(1)
        height = float(np.clip((build["stature_m"] - lo) / (hi - lo), 0.0, 1.0))
        params = {k: build[k] for k in ADULT_PHENOTYPE_RANGES} | {"height": height}
        rest = self._rest_joints(self._forward([params]))[0]
        # anny's rest knee is bent a little: measured from joint positions as
        # a clinician would, flexion must read the gait curve's value. A build
        # with `knee_correction` 0 (the product engine's) keeps the bend.
        knee_rest = float(np.mean([knee_flexion(rest, s) for s in SIDES]))
        if not build.get("knee_correction", 1.0):
            knee_rest = 0.0
        # Its legs are splayed; bring the ankles in to 3/4 of the hip width,
        # which with the gait's own adduction gives a step width of ~0.1 m,
        # or, where the build asks for `step_width_m`, to that ankle spacing.
        hip_y, ankle_y = abs(rest[1, 1]), abs(rest[3, 1])
        target = 0.5 * build["step_width_m"] if "step_width_m" in build else 0.75 * hip_y
        adduction = float(np.arctan2(ankle_y - target, rest[1, 2] - rest[3, 2]))
        result = RestCorrection(params, knee_rest, adduction)
        self._resolved[key] = result
        return result

    @torch.no_grad()
    def pose(self, builds: list[dict[str, float]] | dict[str, float],
             angles: dict[str, np.ndarray]) -> PosedBodies:
        """Pose B bodies (or one body B times) with per-frame gait angles.

        builds: one or B outputs of `sample_phenotype`; angles: the output
        of `GaitModel.angles`, each (B,).
        """
        if isinstance(builds, dict):
            builds = [builds]
        B = len(angles["pelvis_obliquity"])
        if len(builds) == 1 and B > 1:
            builds = builds * B
        corrections = [self.resolve(b) for b in builds]
        angles = dict(angles)
        for side in SIDES:
            angles[f"{side}_knee_flexion"] = angles[f"{side}_knee_flexion"] - [c.knee_rest for c in corrections]
            angles[f"{side}_hip_adduction"] = angles[f"{side}_hip_adduction"] + [c.hip_adduction for c in corrections]
        deltas = {}
        for bone, R in segment_rotations(angles).items():
            m = np.tile(np.eye(4), (B, 1, 1))
            m[:, :3, :3] = SUBJECT_TO_ANNY @ R @ SUBJECT_TO_ANNY.T
            deltas[bone] = torch.as_tensor(m, dtype=self.model.dtype)
        out = self._forward([c.params for c in corrections], deltas)
        verts = out["vertices"].cpu().numpy() @ SUBJECT_TO_ANNY
        joints = self._rest_joints(out)
        # Stand on the floor; centre the pelvis over the origin.
        offset = np.concatenate([-joints[:, 0, :2], -verts[:, :, 2].min(1, keepdims=True)], axis=1)
        return PosedBodies(verts + offset[:, None], joints + offset[:, None], self.faces, self.lower_limb_vertex)


@dataclass(frozen=True)
class RestCorrection:
    """anny parameters of one build and the offsets that fix its rest pose."""

    params: dict[str, float]
    knee_rest: float        # rad, knee bend of the rest pose
    hip_adduction: float    # rad, adduction that brings the splayed legs in


@functools.lru_cache(maxsize=2)
def _load_anny(device: str):
    """Load anny once per process (its first load builds a cache, ~1 min)."""
    import warp  # anny's skinning backend; its banner would go to stdout

    warp.config.log_level = warp.LOG_WARNING
    import anny  # heavy import, kept out of module import time

    model = anny.Anny()
    return model.to(device)
