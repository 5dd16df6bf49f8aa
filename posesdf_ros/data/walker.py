"""A walker over time: a body walking with the gait model, seen by the camera.

The one home of generated walks. `draw_walker` draws a walker's camera,
body, gait, view, clutter and start phase from a random generator, in that
order, each only where the caller leaves it open; `Walker` gives its poses
and joints at any stamps and renders its frames. Used by `posesdf bench
gait` (`evaluation.gait.walking_sequences`), `posesdf bench prior`
(`evaluation.prior.walking_joint_sequences`), `posesdf bench speed`
(`evaluation.sequences.walking_sequence`) and the synthetic camera
(`data.stream.SyntheticWalker`: the synthetic_camera node, the bag
recorder). Each of those seeds its own generator (`np.random.default_rng`
of its own key), so its walks are its own.

ROS-free: frames are numpy arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterator

import numpy as np

from .body import BodyModel, sample_phenotype
from .camera import Intrinsics, RenderedFrame
from .gait import GaitModel, GaitParams, sample_gait_params
from .scene import VIEWS, Box, CameraSetup, WalkingSubject, render_scene, sample_camera, sample_clutter


@dataclass
class WalkerFrame:
    """One rendered frame of a walker: the camera's frame, the joints (9, 3) and the subject's pose, gravity frame."""

    stamp_s: float
    rendered: RenderedFrame
    joints: np.ndarray              # (9, 3) float64
    subject_to_gravity: np.ndarray  # (4, 4)


@dataclass
class Walker:
    """One body walking (`subject`: its build, gait, camera, mode and start phase) in a scene.

    `body_index` of `split` is the body; `view` the benchmark view the
    camera sees it from; `clutter` and `intrinsics` what rendering adds.
    """

    subject: WalkingSubject
    condition: str
    split: str
    body_index: int
    view: str
    clutter: list[Box] = field(default_factory=list)
    intrinsics: Intrinsics = Intrinsics()

    @property
    def body_model(self) -> BodyModel:
        return self.subject.body_model

    @property
    def gait(self) -> GaitModel:
        return self.subject.gait

    @property
    def camera(self) -> CameraSetup:
        return self.subject.camera

    @property
    def mode(self) -> str:
        return self.subject.mode

    @property
    def cycle_s(self) -> float:
        return self.gait.params.cycle_s

    def poses(self, stamps_s: np.ndarray):
        """The posed bodies at `stamps_s` (s) and their subject_to_gravity transforms (T, 4, 4)."""
        return self.subject.poses(stamps_s)

    def joints(self, stamps_s: np.ndarray) -> np.ndarray:
        """The joints at `stamps_s` (s), (T, 9, 3) float64 in the gravity frame."""
        body, transforms = self.poses(stamps_s)
        return body.joints @ transforms[:, :3, :3].transpose(0, 2, 1) + transforms[:, None, :3, 3]

    def frames(self, stamps_s: np.ndarray, rng: np.random.Generator,
               noise: str = "realistic") -> Iterator[WalkerFrame]:
        """Rendered frames at `stamps_s` (posed together), depth noise `noise` drawn from `rng` frame by frame."""
        stamps_s = np.atleast_1d(np.asarray(stamps_s, float))
        bodies, transforms = self.poses(stamps_s)
        for i, t in enumerate(stamps_s):
            rendered, _, joints = render_scene(bodies, i, transforms[i], self.camera, self.clutter, rng, noise,
                                               self.body_model.lower_limb_face, self.intrinsics)
            yield WalkerFrame(float(t), rendered, joints, transforms[i])


def draw_walker(rng: np.random.Generator, condition: str = "normal", *, body: int | None = None,
                split: str = "test", view: str | None = "V1", camera: CameraSetup | str = "spec",
                mode: str = "treadmill", duration_s: float = 4.0, cycles: float | None = None,
                cadence_spm: float = 0.0, clutter_boxes: int = 0, intrinsics: Intrinsics = Intrinsics(),
                body_model: BodyModel | None = None) -> Walker:
    """A walker in `condition`, what is left open drawn from `rng` in this order:

    1. the camera's placement, where `camera` is "sampled" (`sample_camera`'s
       ranges: distance, height, aim, lateral offset); "spec" is
       `CameraSetup`'s defaults, a `CameraSetup` its own placement;
    2. the body, where `body` is None: one of the test split's bodies;
    3. the gait (`sample_gait_params`), its cadence then set to `cadence_spm` if > 0;
    4. the view, where `view` is None: one of `VIEWS`;
    5. `clutter_boxes` boxes beside the walkway (no wall);
    6. the start phase.

    The camera always sees the subject at the view's azimuth. `mode` is
    "treadmill" or "overground"; the walk lasts `cycles` gait cycles if
    given, else `duration_s` (overground, the subject passes the camera's
    azimuth at mid-walk).
    """
    body_model = body_model or BodyModel()
    if camera == "sampled":
        if view is None:
            raise ValueError("a sampled camera needs a view: the view is drawn after the camera")
        placement = sample_camera(rng, VIEWS[view])
    elif camera == "spec":
        placement = CameraSetup(0.0)
    elif isinstance(camera, CameraSetup):
        placement = camera
    else:
        raise ValueError(f"camera must be 'spec', 'sampled' or a CameraSetup; got {camera!r}")
    if body is None:
        if split != "test":
            raise ValueError(f"bodies are drawn from the test split only; got split {split!r}")
        from .dataset import TEST_BODIES

        body = int(rng.integers(0, TEST_BODIES))
    params = sample_gait_params(rng, condition)
    if cadence_spm > 0:
        params = GaitParams(**(params.to_dict() | {"cadence_spm": float(cadence_spm)}))
    gait = GaitModel(params)
    if view is None:
        view = list(VIEWS)[int(rng.integers(len(VIEWS)))]
    camera = replace(placement, azimuth_deg=float(VIEWS[view]))
    clutter = sample_clutter(rng, camera, n_boxes=clutter_boxes, wall=False)   # no draws for no boxes
    duration = cycles * params.cycle_s if cycles is not None else duration_s
    subject = WalkingSubject(body_model, sample_phenotype(split, body), gait, camera, mode=mode,
                             duration_s=duration, phase0=float(rng.random()))
    return Walker(subject, condition, split, body, view, clutter, intrinsics)
