"""GaitPoseEstimator: a leg cloud in, nine joints and a lower-limb mesh out.

Steps for one frame (all in the input frame's metres until step 2):
1. clean the cloud (finite points only) and check there is enough of it;
2. canonicalise: turn it about the vertical axis by -yaw so the subject
   faces +x (the training frame), then map it into the unit sphere with a
   first-guess normalisation regressed from the cloud's top height (the
   lower-limb crop plane; the floor is z = 0) and its horizontal centre;
3. optimise the latent code and refine the normalisation (`optimise_latent`); an
   amortised profile (`fast`, `realtime`) starts from the code and normalisation the
   encoder predicts (`models.latent_encoder`; `realtime` takes them as they are), the
   `accurate` profile's cold fit screens several start codes (`screen_starts`); with
   `check_heading`, the heading turned round is tried as well; with `members` > 1,
   an ensemble of fits, each on its own random subset of the points, is made at once;
4. read the nine sphere centres off the pose field (`sphere_centres`), or,
   with the `nvf` backend, decode the NVF votes of the observed points (`nvf_joints`),
   or with the amortised joint head, read them off the code (an ensemble's joints are
   its members' mean);
5. optionally run marching cubes on the shape field;
6. map joints and mesh back to the input frame.

A whole scene cloud (floor, clutter, the whole person) is first cut down
to the target person's lower limbs by `perception.segment_legs`; an already
segmented leg cloud skips that step (`segment=None` tells them apart by the
cloud's extent). `yaw` (the subject's heading in the input frame, radians)
comes from the argument, else from RotNet (loaded by `from_pretrained`),
else the estimator assumes the canonical view V1: the camera at the origin,
135 degrees round from the subject's heading (the paper's "w/o RotNet" case).
"""
from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from ..perception.segment import SegmentationConfig, heading_subset, segment_legs
from ..perception.smoothing import depth_noise, smoothed
from .canonical import Canonical, first_guess, heading_assuming_canonical_view
from .joints import sphere_centres
from .latent import LatentFit, fit_each, fit_objective, optimise_latent, screen_starts, start_codes
from .meshing import extract_mesh
from .nvf import DEFAULT_PROBES, VoteDecoding, nvf_joints
from .pretrained import load_encoder, load_nvf, load_posesdf
from .quality import QualityConfig, assess_fit, foot_occluders

MIN_POINTS = 50
#: How `EstimateResult.reason` begins when segmentation found no person, and when the fit check rejected the fit.
NO_PERSON, REJECTED = "no person found", "implausible fit"
BACKENDS = ("posesdf", "nvf")   # joints from the sphere fields' centres, or by NVF voting
#: A leg cloud is at most this tall and wide (m); anything bigger is a scene to segment.
LEG_CLOUD_MAX_HEIGHT_M = 1.4
LEG_CLOUD_MAX_WIDTH_M = 1.5


@dataclass(frozen=True)
class Profile:
    """Inference settings. `accurate` is the paper's fit (screened start codes, 1,024 points), `fast` refines
    the encoder's code on fewer points (lower error on our scenes), `realtime` takes the encoder's codes as
    they are (camera rate on a CPU); both average an ensemble of `members` fits, which a GPU fits in the same
    kernels but a CPU one after the other: there `fast` runs slower than `accurate` unless `members` is 1."""
    name: str = "accurate"
    points: int = 1024              # observed points used by the optimisation (random subset)
    free_points: int = 512          # free-space samples along camera rays (0: off; needs camera_origin)
    free_range_m: tuple[float, float] = (0.01, 0.08)
    # Samples `behind_range_m` behind observed points along the camera's rays, which must be inside the body
    # (0: off; needs camera_origin): depth noise the smoothing leaves (block-correlated, as structured light's)
    # otherwise thins the fitted legs and draws the joints toward the camera (inference/latent).
    behind_points: int = 0
    behind_range_m: tuple[float, float] = (0.005, 0.04)
    behind_weight: float = 0.5
    # With the camera's position, the behind points weigh up to this in frames whose depth noise (what the
    # smoothing leaves, perception.smoothing.depth_noise) reaches the ramp's top, `behind_weight` at its
    # foot, linearly between (None: always `behind_weight`). Heavier helps noisy clouds and thickens clean
    # ones' legs (docs/posesdf.md, "Behind the seen surface").
    noisy_behind_weight: float | None = None
    noise_ramp_m: tuple[float, float] = (0.004, 0.008)
    # The observed points have the depth noise averaged over this many leg points (0: raw; perception.smoothing):
    # with the camera's position, each point's range along its ray is fitted to its nearest directions';
    # without, it is the mean of its nearest points. The encoder takes its points raw, as it was trained
    # (smoothed, they turned more headings round on product val scenes); so does the paper's fit (accurate).
    smoothing_neighbours: int = 0
    iterations: int = 100
    track_iterations: int = 40      # when warm-started from the previous frame
    track_loss_ratio: float = 1.5   # a warm fit worse than this times the last cold fit's loss restarts cold
    lr: float = 5e-3
    # The code's prior in the fit (weight * |z|^2, the 1/sigma^2 of PoseSDF's eq. 8): the paper's fit keeps
    # 1e-2; `fast`, which starts from the encoder's code and stops after 30 steps, needs less of it.
    latent_reg: float = 1e-2
    similarity_lr: float = 2e-3
    patience: int = 15
    starts: int = 8                 # cold fits first try the mean code and 7 training-code clusters
    screen_iterations: int = 20     # ... for this many steps, on at most screen_points observed points
    screen_points: int = 256
    refine_similarity: bool = True
    # With the heading check, the opposite heading (RotNet's front/back confusions) is kept only when
    # its fit's loss is below this times the loss at RotNet's heading (1.0: the better fit wins). The product
    # weights' code space fits a walker seen from behind nearly as well as from the front, and at 1.0 it
    # turned 3 of 290 test and shifted scenes that RotNet had right (350 mm off, fit quality up to 1.0).
    turn_loss_ratio: float = 0.8
    # Starts from the amortised fit (models.latent_encoder) instead of screening `starts`: cold
    # fits refine the encoder's code for `iterations` steps, tracked ones refine it and the
    # previous frame's code side by side for `track_iterations` and keep the better. Weights
    # without an encoder fall back to screening `starts` when `iterations` > 0.
    amortised: bool = False
    # Cold fits with the heading check refine the turned heading only when its start (the encoder's
    # prediction, or the screened starts) fits it better; True refines both always, which the quality's
    # `heading` check needs to see an ambiguous heading (fast; the fallback below: it runs on fits that
    # scored low, where the prediction is least to be trusted, and refining one heading there once let a
    # turned fit through).
    refine_both_headings: bool = False
    # Amortised profiles: a fit scoring under the quality's retry_below is optimised from the encoder's
    # start for this many steps, its joints read off the sphere fields, and kept if it scores better. Its
    # heading, when checked, is turned in the descent at `fast`'s yaw_lr: those frames are where RotNet's
    # heading is least to be trusted (docs/posesdf.md, "Quality and fallback").
    fallback_iterations: int = 0
    # Amortised profiles, fits whose heading is checked (RotNet's, or a given one with check_heading, as the
    # nodes pass the canonicaliser's): the heading kept (the turned one included) is fitted again at these
    # offsets (degrees), started as the fit there was, and the fit of the lowest loss wins. RotNet's
    # heading is typically 3 to 8 deg off, which the fit's similarity cannot turn, and the loss tells the
    # nearer heading (docs/posesdf.md, "Heading screening"); each offset costs one more fit.
    yaw_offsets_deg: tuple[float, ...] = ()
    # Amortised profiles, fits whose heading is checked (as yaw_offsets_deg): the fit also turns the legs about
    # the vertical (Adam at this rate, radians), so that a heading a few degrees off is corrected in the descent
    # (0: the heading stays as canonicalised).
    yaw_lr: float = 0.0
    # Amortised profiles with yaw_offsets_deg: a cold fit with both headings checked whose points lie off its
    # surface (the quality's `surface` term under 1) is fitted again with the heading screened at these offsets
    # (degrees) instead, and kept if its loss is below turn_loss_ratio times the first fit's and it scores no
    # worse. RotNet misses by 10 to 50 deg on views it finds hard (ray-cast lateral views, low-resolution
    # cameras), beyond yaw_offsets_deg's reach, and the fit then leaves its points off the surface; the loss
    # tells the nearer heading (docs/posesdf.md, "The heading screened wider").
    wide_yaw_offsets_deg: tuple[float, ...] = ()
    joint_method: str = "votes"     # "votes" or "lsq" (inference.joints) or "head" (the amortised joint head)
    # The quality check's surface residual (ok, bad), metres (QualityConfig's residual_ok_m, residual_bad_m);
    # None keeps QualityConfig's, which were set on optimised fits.
    surface_residual_m: tuple[float, float] | None = None
    # The joint confidences' ramp on an ensemble's spread at each joint (ok, bad), metres (QualityConfig's
    # joint_spread_m); None leaves the confidences to the points' support. Set where it was measured to
    # predict the joint's error on val scenes (docs/quality.md).
    joint_spread_m: tuple[float, float] | None = None
    coarse_queries: int = 1024
    fine_queries: int = 48
    vote_probes: int = DEFAULT_PROBES   # nvf backend: unit-ball probes (the coarse queries' counterpart)
    mesh_resolution: int = 64
    # Amortised profiles: this many fits at once, each on its own random subset of the leg points (and its
    # own encoder start), their joints averaged; the member whose joints lie nearest the mean gives the code,
    # mesh and surface residual. A fit's code is poorly pinned down by a partial, noisy view: fits on two
    # subsets of the same legs differ by 6 to 9 mm, and their mean is nearer the truth than either.
    members: int = 1
    seed: int = 0


PROFILES = {
    "accurate": Profile(),
    # The encoder's code refined: against screening 4 starts it read 19.1 against 25.1 mm on our test
    # scenes, 31.2 against 41.0 on the shifted split and 19.2 against 28.3 on val (product weights,
    # scene input, RotNet), at 1.8 against 1.1-1.2 FPS in `posesdf eval` (docs/posesdf.md). Smoothing its
    # points over 16 neighbours: val 19.2 -> 16.5 mm, product val 41.1 -> 37.7 on the frames both kept.
    # Its points smoothed along the camera's rays lie nearer the fitted surface than raw ones, right fit or
    # wrong: the residual's ramp was set on the product engine's val scenes (docs/quality.md). Cold fits
    # refine both headings, so that the quality's `heading` check sees an ambiguous one (docs/quality.md).
    # An ensemble of 4 members: 14.2 -> 13.1 mm on our test scenes, 26.0 -> 24.0 on the shifted split (product
    # weights, scene input, RotNet), at a third of one member's CPU frame rate (docs/posesdf.md). Points behind
    # the seen surface: 24.0 -> 22.1 mm on the shifted split, 13.09 -> 13.11 on ours (docs/posesdf.md).
    # 30 cold steps instead of 80: the later steps fit the depth noise (val 12.8 -> 12.8 mm, our test scenes
    # 13.1 -> 13.0, the shifted split 22.1 -> 20.4) at 2.5 times the CPU frame rate cold (docs/posesdf.md).
    # The heading screened 6 deg either side of RotNet's: our test scenes 13.04 -> 12.54 mm, the shifted split
    # 20.10 -> 19.05, val 12.59 -> 12.01, product val 20.53 -> 20.00, at 1.6 times the CPU time a frame. The
    # heading then turned in the descent too (yaw_lr): 12.54 -> 12.27, 19.05 -> 18.68, 12.01 -> 11.78, and
    # 18.91 -> 18.19 on the product val frames both kept, at no measurable cost (docs/posesdf.md). The
    # points behind weighed up to 2 in noisy frames (noisy_behind_weight): the shifted split 18.68 -> 17.94,
    # product val 19.38 -> 18.70, ours 12.27 -> 12.30 (docs/posesdf.md, "Behind the seen surface"). The code's
    # prior at 3e-3 instead of the paper's 1e-2 (docs/posesdf.md, "The code's prior").
    "fast": Profile(name="fast", points=256, free_points=128, iterations=30, track_iterations=30, patience=30,
                    starts=4, screen_iterations=15, screen_points=128, amortised=True, smoothing_neighbours=16,
                    coarse_queries=256, fine_queries=24, vote_probes=512, mesh_resolution=33,
                    surface_residual_m=(0.016, 0.030), refine_both_headings=True, members=4,
                    joint_spread_m=(0.010, 0.050), behind_points=128, noisy_behind_weight=2.0,
                    yaw_offsets_deg=(-6.0, 6.0), yaw_lr=0.03,
                    wide_yaw_offsets_deg=(-45.0, -30.0, -15.0, 15.0, 30.0, 45.0), latent_reg=3e-3),
    # The amortised fit alone: the encoder's code and the joint head, no optimisation step (on the
    # bench sequence, steps after the encoder moved the code where the head reads it worse).
    # Its shape is predicted, not fitted, so the observed points lie farther from its surface than
    # from an optimised one's: the residual's ramp was set on val scenes (docs/quality.md). Its mesh
    # is coarser than fast's (25^3: a third of the SDF queries of 33^3), the node's largest CPU cost.
    # An ensemble of 4 encoder passes, each on its own subset of the legs: 26.7 -> 23.3 mm on our test
    # scenes, 34.9 -> 30.8 on the shifted split, at 0.8 times one member's CPU frame rate (docs/posesdf.md).
    "realtime": Profile(name="realtime", points=128, free_points=64, iterations=0, track_iterations=0,
                        starts=1, amortised=True, fallback_iterations=40, joint_method="head",
                        coarse_queries=256, fine_queries=24, vote_probes=256, mesh_resolution=25,
                        surface_residual_m=(0.035, 0.055), members=4),
}
JOINT_METHODS = ("votes", "lsq", "head")
#: Cold steps at least, when an amortised profile screens start codes instead (weights without encoder.pt):
#: a screened start lies farther from the answer than the encoder's prediction (`fast` took 80 from either
#: before 4950c3e).
SCREENED_START_ITERATIONS = 80


def quality_config(profile: Profile) -> QualityConfig:
    """The fit quality check's settings, with the profile's own ramps where it has them."""
    residual = {} if profile.surface_residual_m is None else {
        "residual_ok_m": profile.surface_residual_m[0], "residual_bad_m": profile.surface_residual_m[1]}
    return QualityConfig(**residual, joint_spread_m=profile.joint_spread_m)


def _mean_loss(fits: list[LatentFit]) -> float:
    """An ensemble's loss: its members' mean."""
    return float(np.mean([f.loss for f in fits]))


@dataclass
class EstimateResult:
    valid: bool
    reason: str = ""
    joints: np.ndarray | None = None          # (9, 3) input frame, JOINT_NAMES order
    mesh: object | None = None                # trimesh.Trimesh in the input frame, or None
    yaw: float | None = None                  # canonicalisation angle (rad)
    # "given", "rotnet" or "assumed_v1"; + "_turned" if check_heading turned it
    yaw_source: str = ""
    timings: dict = field(default_factory=dict)
    iterations: int = 0
    latent: np.ndarray | None = None
    canonical_points: np.ndarray | None = None   # (N, 3) the optimised points, normalised frame
    canonical: Canonical | None = None           # the first-guess canonicalisation of the chosen heading
    fit: LatentFit | None = None                 # the latent fit, with its refinement of that normalisation
    quality: float = 0.0                         # in [0, 1]: how far the fit can be trusted (inference/quality)
    joint_confidence: np.ndarray | None = None   # (9,) in [0, 1], JOINT_NAMES order
    quality_terms: dict = field(default_factory=dict)   # the checks behind `quality`, and its problems
    legs: np.ndarray | None = None               # (M, 3) the leg points fitted, input frame
    warm_start: bool = False                     # the fit started from the previous frame's code
    headings_tried: int = 1                      # 2 when a cold fit also tried the heading turned round
    # (9,) metres: how far an ensemble's members' joints lie from its joints, on average (Profile.members > 1)
    joint_spread: np.ndarray | None = None
    # (K, 3) the scene's points besides the legs that may hide a foot (quality.foot_occluders), input frame: found
    # in a segmented scene or given with a leg cloud; None without a camera_origin or for a leg cloud alone
    occluders: np.ndarray | None = None

    def to_fit_frame(self, points: np.ndarray) -> np.ndarray:
        """(N, 3) input frame -> the refined normalised frame the code was fitted in (where
        `canonical_points`, the sphere centres and NVF's votes live)."""
        p_n0 = torch.as_tensor(self.canonical.to_normalised(np.asarray(points, np.float64)), dtype=torch.float32)
        return self.fit.apply(p_n0.to(self.fit.z.device)).cpu().numpy()


def _refitted_from(first: EstimateResult, refit: EstimateResult) -> EstimateResult:
    """`refit`, a fit of `first`'s legs with its heading given as first.yaw, in its place: its yaw_source is
    first's, "_turned" if the refit turned that round (again), and its timings are first's (the caller adds
    the refit's time)."""
    turned = refit.yaw_source.endswith("_turned")
    refit.yaw_source = first.yaw_source.removesuffix("_turned") if turned and first.yaw_source.endswith(
        "_turned") else first.yaw_source + ("_turned" if turned else "")
    refit.timings = dict(first.timings)
    return refit


def looks_like_scene(points: np.ndarray) -> bool:
    """True for a cloud too tall or too wide to be one person's lower limbs (robust extents)."""
    lo, hi = np.percentile(points, [1.0, 99.0], axis=0)
    return bool(hi[2] - lo[2] > LEG_CLOUD_MAX_HEIGHT_M or np.hypot(*(hi[:2] - lo[:2])) > LEG_CLOUD_MAX_WIDTH_M)


def finite_points(points, camera_origin: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """The finite rows of an (N, 3) cloud as float64, without those at `camera_origin` (3,) if given (a
    depth camera's invalid zero depth, on no ray), and "" or why it cannot be used."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[-1] != 3:
        return pts, f"points must be (N, 3), got shape {pts.shape}"
    keep = np.isfinite(pts).all(axis=1)
    if camera_origin is not None:
        keep &= np.abs(pts - np.asarray(camera_origin, float)).max(axis=1) > 1e-6
    pts = pts[keep]
    if len(pts) < MIN_POINTS:
        return pts, f"too few finite points ({len(pts)} < {MIN_POINTS})"
    return pts, ""


class GaitPoseEstimator:
    """PoseSDF inference. Build with `from_pretrained`."""

    def __init__(self, model, meta: dict, profile: Profile, device: str = "cpu", backend: str = "posesdf",
                 segmentation: SegmentationConfig | None = None, yaw_estimator=None, nvf_head=None,
                 vote_decoding: VoteDecoding | None = None, leg_classifier=None, amortised=None):
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if backend == "nvf" and nvf_head is None:
            raise ValueError("the nvf backend needs its vote head (nvf_head)")
        if profile.joint_method not in JOINT_METHODS:
            raise ValueError(f"unknown joint method {profile.joint_method!r}; expected one of {JOINT_METHODS}")
        if profile.members < 1 or (profile.members > 1 and not profile.amortised):
            raise ValueError(f"profile {profile.name!r}: members must be 1, or more with an amortised fit "
                             f"(got {profile.members})")
        if (profile.amortised or profile.joint_method == "head") and amortised is None:
            raise ValueError(f"profile {profile.name!r} needs the amortised fit (encoder.pt, "
                             "`posesdf train encoder`)")
        self.model, self.meta, self.profile = model, meta, profile
        self.nvf_head, self.vote_decoding = nvf_head, vote_decoding or VoteDecoding()
        self.segmentation = segmentation or SegmentationConfig()
        self.yaw_estimator, self.leg_classifier = yaw_estimator, leg_classifier
        self.device, self.backend = torch.device(device), backend
        self.amortised = amortised      # models.latent_encoder.AmortisedFit, or None
        self.weights_dir = Path(meta["weights_dir"]) if "weights_dir" in meta else None
        self.radius = model.config.sphere_radius
        self.prior = meta["normalisation_prior"]
        self.latent_mean = torch.tensor(meta.get("latent_mean") or [0.0] * model.config.latent_size,
                                        dtype=torch.float32, device=self.device)
        codes_file = self.weights_dir / "posesdf_codes.npy" if self.weights_dir else None
        training_codes = np.load(codes_file) if codes_file and codes_file.exists() else None
        self.start_codes = start_codes(self.latent_mean, training_codes, profile.starts)
        self._previous: LatentFit | None = None
        self._reference_loss = float("inf")               # of the last cold-started fit
        self._previous_centre: np.ndarray | None = None   # xy of the tracked person
        self._variants: dict[str, GaitPoseEstimator] = {}  # made by _variant() when first needed
        self.quality = quality_config(profile)

    @classmethod
    def from_pretrained(cls, backend: str = "posesdf", profile: str | Profile = "fast", device: str = "cpu",
                        weights: str | Path | None = None, rotnet: bool = True,
                        rotnet_weights: str | Path | None = None,
                        vote_decoding: VoteDecoding | None = None,
                        leg_classifier=True, rotnet_turns: int = 4,
                        legseg_model: str = "small") -> "GaitPoseEstimator":
        """The shipped (or given) PoseSDF weights, RotNet (with `rotnet_turns` test-time turns,
        `inference.yaw.YawEstimator`) unless `rotnet=False` and the
        segmentation's shipped LegSegNet (`legseg_model`, a name of
        `inference.legseg.LEGSEG_MODELS`) unless `leg_classifier` is False or None (the
        pelvis crop) or a classifier of its own (`inference.legseg.LegClassifier`).

        backend "nvf" also loads the NVF vote head (nvf.pt/json) from the same
        folder, which must have been trained on these PoseSDF weights, and decodes
        its votes with `vote_decoding` (default: `inference.nvf.VoteDecoding()`).
        Without RotNet, `estimate` needs `yaw=` or assumes view V1. Missing
        shipped RotNet weights give a warning and that fallback; missing
        `rotnet_weights` that were asked for are a FileNotFoundError. Missing
        LegSegNet weights give a warning, and scenes are cropped at the pelvis
        guess (`perception.segment_legs` without a classifier). Weights without the
        amortised fit (encoder.pt) refuse `realtime` and give `fast` a warning and
        screened start codes.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; expected one of {BACKENDS}")
        if isinstance(profile, str):
            if profile not in PROFILES:
                raise ValueError(f"unknown profile {profile!r}; expected one of {tuple(PROFILES)}")
            profile = PROFILES[profile]
        model, meta = load_posesdf(Path(weights) if weights else None, device)
        nvf_head = load_nvf(Path(weights) if weights else None, device)[0] if backend == "nvf" else None
        amortised = None
        if profile.amortised or profile.joint_method == "head":
            try:
                amortised = load_encoder(Path(weights) if weights else None, device)[0]
            except FileNotFoundError as err:
                if profile.joint_method == "head" or profile.iterations == 0:
                    raise
                warnings.warn(f"no amortised fit for these weights ({err}); profile {profile.name!r} screens "
                              f"{profile.starts} start codes instead")
                profile = replace(profile, amortised=False, members=1,
                                  iterations=max(profile.iterations, SCREENED_START_ITERATIONS))
        yaw_estimator = None
        if rotnet:
            from .yaw import YawEstimator

            try:
                yaw_estimator = YawEstimator.from_pretrained(device, rotnet_weights, rotnet_turns)
            except FileNotFoundError as err:
                if rotnet_weights is not None:
                    raise
                warnings.warn(f"RotNet unavailable ({err}); estimate() will assume view V1 unless given yaw=")
        classifier = leg_classifier or None
        if leg_classifier is True:
            from .legseg import LegClassifier

            try:
                classifier = LegClassifier.from_pretrained(device, model=legseg_model)
            except FileNotFoundError as err:
                classifier = None
                warnings.warn(f"LegSegNet unavailable ({err}); scenes are cropped at the pelvis guess")
        return cls(model, meta, profile, device, backend, yaw_estimator=yaw_estimator, nvf_head=nvf_head,
                   vote_decoding=vote_decoding, leg_classifier=classifier, amortised=amortised)

    def warm_up(self) -> None:
        """One estimate with a mesh on a synthetic pair of legs (then `reset`), so that first-call costs
        (lazy imports, the first pass of each torch op, allocations) are not paid on live frames. The
        segmentation's models are `PersonTracker.warm_up`'s."""
        from ..geometry import standing_legs

        self.estimate(standing_legs(), yaw=0.0, camera_origin=np.array([2.0, 0.0, 1.0]), mesh=True, segment=False)
        self.reset()

    def reset(self) -> None:
        """Forget the tracked latent code (a new person or a cut in the sequence)."""
        self._previous = None
        self._previous_centre = None

    def with_profile(self, **changes) -> "GaitPoseEstimator":
        """A copy sharing the model with some profile settings changed (ablations, sweeps)."""
        copy = GaitPoseEstimator(self.model, self.meta, replace(self.profile, **changes), str(self.device),
                                 self.backend, self.segmentation, self.yaw_estimator, self.nvf_head,
                                 self.vote_decoding, self.leg_classifier, self.amortised)
        if not {"surface_residual_m", "joint_spread_m"} & set(changes):     # else the new profile's ramps
            copy.quality = self.quality
        return copy

    def estimate(self, points: np.ndarray, yaw: float | None = None, camera_origin: np.ndarray | None = None,
                 track: bool = False, mesh: bool = False, segment: bool | None = None,
                 check_heading: bool | None = None, occluders: np.ndarray | None = None) -> EstimateResult:
        """Estimate the nine joints (and optionally the lower-limb mesh) of a person.

        points: (N, 3) gravity-aligned, z-up, metres, floor at z = 0: a whole
            scene or an already segmented leg cloud.
        yaw: the subject's heading in that frame (rad); None asks RotNet, or
            assumes view V1 without it.
        camera_origin: (3,) the camera position in that frame, for the
            segmentation's range limits and the free-space samples.
        track: warm-start from the previous call's code and prefer the
            previous call's person in the segmentation.
        segment: True for a scene, False for a leg cloud, None to tell by extent.
        check_heading: cold fits also try the opposite heading and keep the one
            the shape fits better (RotNet's rare front/back confusions); None:
            only when the heading comes from RotNet here.
        occluders: (K, 3) with a leg cloud, the scene's other points that may hide
            a foot from the camera (`inference.quality.foot_occluders`, the
            canonicaliser's `~/occluders`); a segmented scene's are found here.

        Every fit is scored (`quality`, `joint_confidence`: inference/quality).
        One scoring under `quality.retry_below` is fitted again: if it was
        warm-started, cold from both headings (kept if it scores better); else,
        if the opposite heading was not tried, from that heading (kept if the
        shape fits it better, as the heading check decides). A profile with a
        fallback fit (`realtime`) also refits a cold fit whose heading check
        turned the heading round on the encoder's predictions alone. One still
        scoring under `quality.reject_below` is returned with valid=False and
        the reason.
        """
        t0 = time.perf_counter()
        if occluders is not None:
            occluders = np.asarray(occluders, dtype=np.float64)
            if occluders.ndim != 2 or occluders.shape[-1] != 3:
                return EstimateResult(False, f"occluders must be (K, 3), got shape {occluders.shape}")
            occluders = occluders[np.isfinite(occluders).all(axis=1)]
        res = self._estimate(points, yaw, camera_origin, track, mesh, segment, check_heading, occluders)
        q = self.quality
        # A cold fit of a profile with a fallback whose heading check turned the heading (RotNet's or a given
        # one) round on the encoder's predictions alone is fitted again too: a prediction at a heading 25 deg
        # off fits as badly as one turned round, and the check turned such a shifted scene round (published
        # 250 mm off at quality 0.85).
        turned_on_predictions = not res.warm_start and res.yaw_source.endswith("_turned")
        if res.valid and self.profile.fallback_iterations and (res.quality < q.retry_below or turned_on_predictions):
            t = time.perf_counter()
            # Both headings again when they were checked: the optimised fits tell them apart better.
            alt = self._fallback()._estimate(res.legs, res.yaw, camera_origin, False, mesh, False,
                                             res.headings_tried == 2, res.occluders)
            # Where the optimised fits turn the predictions' heading back, theirs is the better judgement:
            # the refit is kept whatever it scores (and rejected below reject_below).
            if alt.valid and (alt.quality >= q.retry_below
                              or (turned_on_predictions and alt.yaw_source.endswith("_turned"))):
                res = _refitted_from(res, alt)
            res.timings["quality_retry"] = time.perf_counter() - t
        elif res.valid and res.quality < q.retry_below and res.headings_tried == 1:
            t = time.perf_counter()
            if res.warm_start:     # a warm start gone wrong: a cold fit from both headings, kept if it scores better
                alt = self._estimate(res.legs, res.yaw, camera_origin, False, mesh, False, True, res.occluders)
                better = alt.valid and alt.quality > res.quality
            else:
                # The heading check the first fit did not make: the other heading, kept if the shape fits it
                # better (the check's own rule; from a lateral view the score alone cannot tell front from back).
                alt = self._estimate(res.legs, res.yaw + np.pi, camera_origin, False, mesh, False, False,
                                     res.occluders)
                alt.yaw_source = f"{res.yaw_source}_turned"
                better = alt.valid and alt.fit.loss < res.fit.loss
            if better:
                if track:
                    self._previous, self._reference_loss = alt.fit, alt.fit.loss
                res = alt
            res.timings["quality_retry"] = time.perf_counter() - t
        if (res.valid and self.profile.wide_yaw_offsets_deg and res.headings_tried == 2
                and res.quality_terms.get("surface", 1.0) < 1.0):
            t = time.perf_counter()
            alt = self._wide_heading()._estimate(res.legs, res.yaw, camera_origin, False, mesh, False, True,
                                                 res.occluders)
            # As the heading check's: the refit overrules the heading only when it fits clearly better (the
            # refits of right headings read 0.94 to 1.01 times their first fits' losses, of wrong ones 0.35 to 0.7).
            clearly_better = alt.valid and alt.fit.loss < self.profile.turn_loss_ratio * res.fit.loss
            if clearly_better and alt.quality >= res.quality:
                res = _refitted_from(res, alt)
                if track:
                    self._previous, self._reference_loss = res.fit, res.fit.loss
            res.timings["wide_heading_screening"] = time.perf_counter() - t
        res.timings["total"] = time.perf_counter() - t0
        why = ""
        if res.valid and not np.isfinite(res.joints).all():     # never published as a pose
            why = "the fit's joints are not finite"
        elif res.valid and res.quality < q.reject_below:
            why = "; ".join(res.quality_terms.get("problems", [])) + f" (quality {res.quality:.2f} < {q.reject_below})"
        if why:
            if track:           # the next frame starts cold rather than from this fit
                self._previous = None
            res.valid, res.reason = False, f"{REJECTED}: {why}"
        return res

    def _estimate(self, points: np.ndarray, yaw: float | None, camera_origin: np.ndarray | None, track: bool,
                  mesh: bool, segment: bool | None, check_heading: bool | None,
                  occluders: np.ndarray | None = None) -> EstimateResult:
        """One fit, as `estimate` describes, scored but not judged."""
        t0 = time.perf_counter()
        timings: dict[str, float] = {}
        pts, reason = finite_points(points, camera_origin)
        if reason:
            return EstimateResult(False, reason)
        heading_pts = None      # RotNet's input: the legs below the hips
        if segment or (segment is None and looks_like_scene(pts)):
            seg = segment_legs(pts, self.segmentation, self._previous_centre if track else None, camera_origin,
                               self.leg_classifier)
            timings["segmentation"] = seg.timings.get("total", 0.0)
            if not seg.valid:
                return EstimateResult(False, f"{NO_PERSON}: {seg.reason}", timings=timings)
            if camera_origin is not None:
                occluders = foot_occluders(pts, seg.indices, np.asarray(camera_origin, float), self.quality)
            pts, heading_pts = pts[seg.indices], pts[seg.heading_indices]
            if track:
                self._previous_centre = seg.centre
            if len(pts) < MIN_POINTS:
                return EstimateResult(False, f"too few leg points ({len(pts)} < {MIN_POINTS})", timings=timings)
        yaw_source = "given"
        if yaw is None and self.yaw_estimator is not None:
            t = time.perf_counter()
            if heading_pts is None:
                # A leg cloud ends at the spec's crop plane (as the first guess takes it): below it lie the
                # hips, and RotNet reads the legs below them, as from a segmented scene.
                top = float(pts[:, 2].max())
                heading_pts = pts[heading_subset(pts[:, 2], top - self.segmentation.crop_margin, self.segmentation)]
            yaw, _ = self.yaw_estimator.predict(heading_pts)
            timings["rotnet"] = time.perf_counter() - t
            yaw_source = "rotnet"
        if check_heading is None:
            check_heading = yaw_source == "rotnet"
        t1 = time.perf_counter()
        p = self.profile
        noise_terms = {}        # reported with the quality's terms: what the frame's noise made of the fit
        if p.behind_points and p.noisy_behind_weight is not None and camera_origin is not None:
            noise = depth_noise(pts, camera_origin)
            p = replace(p, behind_weight=float(np.interp(noise, p.noise_ramp_m,
                                                         (p.behind_weight, p.noisy_behind_weight))))
            noise_terms = {"depth_noise_m": noise, "behind_weight": p.behind_weight}
        rng = np.random.default_rng(p.seed)
        if yaw is None:
            yaw_source = "assumed_v1"
            yaw = heading_assuming_canonical_view(pts, None if camera_origin is None else camera_origin[:2])
        # Each member's observed, free-space and behind points: (K, N, 3), (K, M, 3) or None, (K, B, 3) or None.
        obs, free, behind = (np.stack(a) if a[0] is not None else None
                             for a in zip(*(self._sample_points(pts, rng, camera_origin) for _ in range(p.members))))
        # The heading, and with check_heading the opposite one (RotNet's front/back
        # confusions): each canonicalises the same points its own way.
        headings = [float(yaw), float(yaw) + np.pi] if check_heading else [float(yaw)]
        views = [self._canonical_view(pts, h, obs, free, behind, camera_origin) for h in headings]
        timings["canonicalise"] = time.perf_counter() - t1
        if p.amortised:
            t = time.perf_counter()
            n_enc = self.amortised.config.encoder.points
            encoder_points = np.stack([pts[rng.choice(len(pts), n_enc, replace=len(pts) < n_enc)]
                                       for _ in range(p.members)])
            # Per heading, each member's encoder prediction.
            predicted = [self._encode(view, encoder_points, p.behind_weight) for view in views]
            timings["encoder"] = time.perf_counter() - t

        t = time.perf_counter()
        warm = track and self._previous is not None
        chosen = 0
        turn_rate = p.yaw_lr if check_heading else 0.0     # a heading given unchecked is kept as it is
        heading_losses: list[float] | None = None      # both headings' refined fits' losses, when both were refined

        def refine_members(view: tuple, predictions: list[LatentFit], previous: LatentFit | None,
                           steps: int) -> list[LatentFit]:
            """Each member's encoder prediction (`predictions`, one a member) and, with `previous`, that
            frame's code at the prediction's similarity beside it, refined `steps` steps in `view` (a
            `_canonical_view`) in one batched descent; the better of the two kept per member."""
            _, obs_n, free_n, behind_n = view
            starts = [s for f in predictions for s in ([f] if previous is None else [
                f, LatentFit(previous.z, f.shift, f.log_scale, 0, float("inf"), f.yaw)])]
            per_member = len(starts) // p.members
            refined = fit_each(
                self.model, obs_n.repeat_interleave(per_member, 0), torch.stack([f.z for f in starts]),
                free_points=None if free_n is None else free_n.repeat_interleave(per_member, 0),
                behind_points=None if behind_n is None else behind_n.repeat_interleave(per_member, 0),
                shifts=torch.stack([f.shift for f in starts]),
                log_scales=torch.stack([f.log_scale for f in starts]),
                yaws=None if starts[0].yaw is None else torch.stack([f.yaw for f in starts]), iterations=steps,
                lr=p.lr, latent_reg=p.latent_reg, refine_similarity=p.refine_similarity,
                similarity_lr=p.similarity_lr, yaw_lr=turn_rate, behind_weight=p.behind_weight)
            return [min(refined[k * per_member:(k + 1) * per_member], key=lambda f: f.loss)
                    for k in range(p.members)]

        def amortised_fit(previous: LatentFit | None) -> list[LatentFit]:
            """Each member's encoder fit at the heading whose predictions fit best, refined; with
            `previous`, that frame's code (at the member's predicted similarity) refined beside it, the
            better kept."""
            nonlocal chosen, heading_losses
            steps = p.iterations if previous is None else p.track_iterations
            chosen = self._heading_choice([_mean_loss(f) for f in predicted])
            if steps == 0:
                if len(predicted) > 1:      # the predictions' losses are all there is to weigh the headings
                    heading_losses = [_mean_loss(f) for f in predicted]
                return predicted[chosen]
            # Cold, when the turned heading's predictions fit better at all, both are refined and the
            # refined fits decide (as a screened cold fit's do); else RotNet's heading alone is refined.
            # Predictions are coarse: on a shifted scene RotNet had turned round, the right heading's
            # prediction fitted 0.80 times as well, at the turn threshold, and went unrefined.
            turned_closer = len(predicted) > 1 and _mean_loss(predicted[1]) < _mean_loss(predicted[0])
            one = previous is not None or (not turned_closer and not p.refine_both_headings)
            candidates = [chosen] if one else list(range(len(views)))
            fits = [refine_members(views[view], predicted[view], previous, steps) for view in candidates]
            best = self._heading_choice([_mean_loss(f) for f in fits])
            chosen = candidates[best]
            if len(fits) > 1:
                heading_losses = [_mean_loss(f) for f in fits]
            return fits[best]

        def cold_fit() -> list[LatentFit]:
            nonlocal chosen, heading_losses
            if p.amortised:
                return amortised_fit(None)
            if len(self.start_codes) * len(views) == 1:
                chosen = 0
                return [refine(0, None, p.iterations)]
            m = p.screen_points
            screened = [screen_starts(self.model, obs_n[0, :m], self.start_codes,
                                      free_points=None if free_n is None else free_n[0, :m // 2],
                                      behind_points=None if behind_n is None else behind_n[0, :m // 2],
                                      iterations=p.screen_iterations, lr=p.lr, latent_reg=p.latent_reg,
                                      refine_similarity=p.refine_similarity, similarity_lr=p.similarity_lr,
                                      behind_weight=p.behind_weight)[0]
                        for _, obs_n, free_n, behind_n in views]
            if len(views) == 1 or (self._heading_choice([f.loss for f in screened]) == 0
                                   and not p.refine_both_headings):
                chosen = 0
                return [refine(0, screened[0], p.iterations)]
            # The turned heading screened better (or both are always refined); the screening is
            # short and on a subset, so both are refined and the full fits decide.
            fits = [refine(i, start, p.iterations) for i, start in enumerate(screened)]
            heading_losses = [f.loss for f in fits]
            chosen = self._heading_choice(heading_losses)
            return [fits[chosen]]

        def refine(view: int, start: LatentFit | None, iterations: int) -> LatentFit:
            """The optimised fit (one member: the profile is not amortised)."""
            _, obs_n, free_n, behind_n = views[view]
            return optimise_latent(self.model, obs_n[0], free_points=None if free_n is None else free_n[0],
                                   behind_points=None if behind_n is None else behind_n[0],
                                   behind_weight=p.behind_weight, z0=self.latent_mean, start=start,
                                   iterations=iterations, lr=p.lr, latent_reg=p.latent_reg,
                                   refine_similarity=p.refine_similarity,
                                   similarity_lr=p.similarity_lr, patience=p.patience)

        if warm and p.amortised:
            members = amortised_fit(self._previous)
        else:
            members = [refine(0, self._warm_start(), p.track_iterations)] if warm else cold_fit()
        # A warm start can slide into a worse basin frame after frame (large gaps between
        # frames, a wrong frame): when its fit is clearly worse than the last cold fit's,
        # start again cold. (The amortised fit weighs a fresh start against it every frame.)
        if warm and not p.amortised and members[0].loss > p.track_loss_ratio * self._reference_loss:
            heading_losses = None
            members, warm = cold_fit(), False
            timings["track_restarts"] = 1.0
        timings["latent_optimisation"] = time.perf_counter() - t
        if p.amortised and p.iterations and p.yaw_offsets_deg and check_heading:
            # Each offset's fit starts as the one at RotNet's heading did: from the encoder's predictions
            # there and, when tracking, from the previous frame's code beside them.
            t = time.perf_counter()
            base, previous = headings[chosen], self._previous if warm else None
            for offset in np.deg2rad(p.yaw_offsets_deg):
                view = self._canonical_view(pts, base + offset, obs, free, behind, camera_origin)
                screened = refine_members(view, self._encode(view, encoder_points, p.behind_weight), previous,
                                          p.track_iterations if warm else p.iterations)
                if _mean_loss(screened) < _mean_loss(members):
                    members, views[chosen], headings[chosen] = screened, view, base + offset
            timings["heading_screening"] = time.perf_counter() - t
        canon, obs_n, _, _ = views[chosen]
        turn = [float(f.yaw) for f in members if f.yaw is not None]
        if headings[chosen] != yaw or turn:
            # The descent's turn R(t) after the canonicalisation's R(-h) makes the heading h - t.
            yaw = float(np.angle(np.exp(1j * (headings[chosen] - (np.mean(turn) if turn else 0.0)))))
        if chosen:
            yaw_source = f"{yaw_source}_turned"

        t = time.perf_counter()
        member_joints = np.stack([self._joints(f, canon, obs_n[k]) for k, f in enumerate(members)])
        joints = member_joints.mean(0)
        off_mean = np.linalg.norm(member_joints - joints, axis=2)        # (K, 9) metres
        # The member nearest the mean stands for the ensemble: its code, mesh and residual; the ensemble's
        # mean loss, so that fits with and without members compare alike.
        nearest = int(off_mean.mean(1).argmin())
        fit, obs_n = replace(members[nearest], loss=_mean_loss(members)), obs_n[nearest]
        timings["joint_extraction"] = time.perf_counter() - t
        if track:
            self._previous = fit
            if not warm:
                self._reference_loss = fit.loss

        t = time.perf_counter()
        fitted = fit.apply(obs_n)
        with torch.no_grad():
            sdf = self.model(fit.z[None], fitted[None], with_pose=False)[0][0].abs()
        metres_per_unit = 1.0 / (canon.scale * float(torch.exp(fit.log_scale)))
        # How much better the kept heading's fit is than the other's (below 1: the shape prefers the other
        # heading, but not by the margin that overrules RotNet).
        heading_margin = None if heading_losses is None else heading_losses[1 - chosen] / heading_losses[chosen]
        spread = off_mean.mean(0) if p.members > 1 else None
        quality = assess_fit(joints, pts, sdf.cpu().numpy() * metres_per_unit, self.quality, camera_origin,
                             heading_margin, spread, occluders)
        timings["quality"] = time.perf_counter() - t

        mesh_out = None
        if mesh:
            t = time.perf_counter()
            mesh_out = self._mesh(fit, canon)
            timings["meshing"] = time.perf_counter() - t
        timings["total"] = time.perf_counter() - t0
        return EstimateResult(True, "", joints, mesh_out, float(yaw), yaw_source, timings, fit.iterations,
                              fit.z.cpu().numpy(), fitted.cpu().numpy(), canon, fit, quality.score,
                              quality.joint_confidence, quality.terms | noise_terms | {"problems": quality.problems},
                              pts, warm, 1 if warm else len(views), spread, occluders)

    def _variant(self, key: str, **changes) -> "GaitPoseEstimator":
        """`with_profile(**changes)`, made once per `key` and kept (the retries' estimators)."""
        if key not in self._variants:
            self._variants[key] = self.with_profile(**changes)
        return self._variants[key]

    def _fallback(self) -> "GaitPoseEstimator":
        """The optimised fit behind an amortised profile (`Profile.fallback_iterations`)."""
        p = self.profile
        return self._variant("fallback", name=f"{p.name}+fit", iterations=p.fallback_iterations,
                             fallback_iterations=0, joint_method="votes", surface_residual_m=None,
                             joint_spread_m=None, refine_both_headings=True, yaw_lr=PROFILES["fast"].yaw_lr)

    def _wide_heading(self) -> "GaitPoseEstimator":
        """This estimator screening the heading at `Profile.wide_yaw_offsets_deg`."""
        return self._variant("wide_heading", yaw_offsets_deg=self.profile.wide_yaw_offsets_deg,
                             wide_yaw_offsets_deg=())

    def _heading_choice(self, losses: list[float]) -> int:
        """Which heading's fit to keep, of RotNet's (0) and, with the heading check, the opposite (1)."""
        return int(len(losses) > 1 and losses[1] < self.profile.turn_loss_ratio * losses[0])

    def _encode(self, view: tuple, encoder_points: np.ndarray, behind_weight: float) -> list[LatentFit]:
        """Each member's amortised fit of a view (a `_canonical_view`): the encoder's prediction from the
        member's encoder_points (K, E, 3, input frame) mapped to its first-guess frame; a fit's loss is the
        objective on the member's observed (K, N, 3), free-space (K, M, 3) and behind (K, B, 3) points, the
        last weighed `behind_weight`."""
        canon, obs_n, free_n, behind_n = view
        with torch.no_grad():
            x = torch.as_tensor(canon.to_normalised(encoder_points), dtype=torch.float32, device=self.device)
            z, shift, log_scale = self.amortised.encoder(x)
            query = torch.cat([a for a in (obs_n, free_n, behind_n) if a is not None], dim=1)
            losses = fit_objective(self.model, query, obs_n.shape[1], z, shift, log_scale,
                                   latent_reg=self.profile.latent_reg,
                                   n_behind=0 if behind_n is None else behind_n.shape[1], behind_weight=behind_weight)
        return [LatentFit(z[k], shift[k], log_scale[k], 0, float(losses[k])) for k in range(len(z))]

    def _sample_points(self, pts: np.ndarray, rng: np.random.Generator, camera_origin: np.ndarray | None
                       ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """One member's observed points (N, 3): a random subset of the leg points `pts`, smoothed; its
        free-space points (M, 3) in front of them along the camera's rays and its behind points (B, 3)
        behind them (each None without the camera or when the profile has none)."""
        p = self.profile
        obs = pts[rng.choice(len(pts), p.points, replace=False)] if len(pts) > p.points else pts
        if p.smoothing_neighbours:
            obs = smoothed(pts, obs, p.smoothing_neighbours, camera_origin)
        if camera_origin is None:
            return obs, None, None

        def along_rays(count: int, distances_m: tuple[float, float]) -> np.ndarray | None:
            """`count` of the observed points moved by distances drawn in `distances_m` towards the camera
            (positive) or away from it (negative); None for none."""
            if not count:
                return None
            base = obs[rng.choice(len(obs), min(count, len(obs)), replace=False)]
            ray = np.asarray(camera_origin, float)[None] - base
            ray /= np.linalg.norm(ray, axis=1, keepdims=True)
            return base + ray * rng.uniform(*distances_m, (len(base), 1))

        low, high = p.behind_range_m
        return obs, along_rays(p.free_points, p.free_range_m), along_rays(p.behind_points, (-high, -low))

    def _joints(self, fit: LatentFit, canon: Canonical, obs_n: torch.Tensor) -> np.ndarray:
        """A fit's nine joints (9, 3) in the input frame; obs_n (N, 3) are its observed points (the NVF
        votes)."""
        p = self.profile
        if self.backend == "nvf":
            decoding = self.vote_decoding
            if decoding.probes is None:
                decoding = replace(decoding, probes=p.vote_probes)
            centres = nvf_joints(self.model, self.nvf_head, fit.z, fit.apply(obs_n), decoding,
                                 generator=torch.Generator().manual_seed(p.seed))
        elif p.joint_method == "head":
            with torch.no_grad():
                centres = self.amortised.joints(fit.z[None])[0]
        else:
            z = fit.z[None]
            field = lambda q: self.model(z, q[None])[1][0]  # noqa: E731  (N, 3) -> (N, 9)
            centres = sphere_centres(field, self.radius, p.joint_method, p.coarse_queries, p.fine_queries,
                                     generator=torch.Generator().manual_seed(p.seed), device=self.device)
        return canon.to_input(self._unrefine(fit, centres))

    def _warm_start(self) -> LatentFit:
        """The previous frame's code with the similarity back at this frame's first guess."""
        prev = self._previous
        return LatentFit(prev.z, torch.zeros_like(prev.shift), torch.zeros_like(prev.log_scale), 0, prev.loss)

    def _canonical_view(self, pts: np.ndarray, yaw: float, obs: np.ndarray, free: np.ndarray | None,
                        behind: np.ndarray | None, camera_origin: np.ndarray | None
                        ) -> tuple[Canonical, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The first-guess canonicalisation for heading `yaw` and the members' observed (K, N, 3),
        free-space (K, M, 3) and behind (K, B, 3) points mapped by it, as tensors."""
        canon = first_guess(pts, yaw, self.prior, camera_origin)
        to_tensor = lambda a: None if a is None else torch.as_tensor(  # noqa: E731
            canon.to_normalised(a), dtype=torch.float32, device=self.device)
        return canon, to_tensor(obs), to_tensor(free), to_tensor(behind)

    @staticmethod
    def _unrefine(fit: LatentFit, p_n: torch.Tensor) -> np.ndarray:
        """Refined normalised coordinates -> the first-guess normalised frame, (N, 3) numpy."""
        return fit.unapply(p_n).cpu().numpy().astype(np.float64)

    def mesh_of(self, result: EstimateResult):
        """The lower-limb mesh (trimesh.Trimesh, input frame) of a valid `result`'s fit, or None: what
        `estimate(..., mesh=True)` adds, made afterwards, so a node can publish the joints first."""
        if not result.valid or result.fit is None or result.canonical is None:
            return None
        return self._mesh(result.fit, result.canonical)

    def _mesh(self, fit: LatentFit, canon: Canonical):
        import trimesh

        z = fit.z[None]
        top_n0 = (canon.top - canon.centre[2]) * canon.scale
        top = float((top_n0 - fit.shift[2]) * torch.exp(fit.log_scale))
        verts, faces = extract_mesh(lambda q: self.model(z, q[None], with_pose=False)[0][0],
                                    self.profile.mesh_resolution, top, device=self.device)
        if len(faces) == 0:
            return None
        verts = canon.to_input(self._unrefine(fit, torch.as_tensor(verts, dtype=torch.float32, device=self.device)))
        return trimesh.Trimesh(verts, faces, process=False)
