"""The parameters of every node, declared once: names, defaults, ranges, descriptions, which are live.

ROS-free, so that the core (the offline pipeline, benchmarks) takes its
defaults from the same declarations as the nodes (`posesdf_ros/ros/`, which
turn them into ROS parameter descriptors), config/posesdf.yaml and the
README's tables (`python -m posesdf_ros.ros.reference`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .data.camera import NOISE_PROFILES
from .data.gait import CONDITIONS
from .data.scene import VIEWS


@dataclass(frozen=True)
class Param:
    """One node parameter: its default fixes its type; `range` (numbers) or `choices` (strings) bound it, and a
    `live` one is applied to a running node by `ros2 param set` (the others are read-only)."""

    name: str
    default: Any
    description: str
    range: tuple[float, float] | None = None
    choices: tuple[str, ...] | None = None
    live: bool = False


#: Parameters every node has.
COMMON_PARAMETERS: tuple[Param, ...] = (
    Param("autostart", True, "Configure and activate the node on start-up (lifecycle)."),
    Param("max_age_s", 1.0, "Drop input frames older than this (s) when they arrive; 0 disables the check.",
          (0.0, 3600.0), live=True),
    Param("future_tolerance_s", 0.5, "Drop input frames stamped more than this ahead of the node's clock (s): a "
                                     "clock skew or a corrupt stamp; 0 disables the check.", (0.0, 3600.0),
          live=True),
    Param("diagnostics_period_s", 1.0, "Period of the /diagnostics status (s).", (0.1, 60.0)),
    Param("worker_niceness", 0, "Added to the scheduling niceness of the thread that processes the frames "
          "(Linux, per thread, so also within one bringup process): on a loaded CPU a node with a higher value "
          "yields the cores to the others' frames, and may itself fall behind (newest-frame policy).", (0, 19)),
)


def with_common(params: tuple[Param, ...]) -> tuple[Param, ...]:
    """`COMMON_PARAMETERS` plus a node's own; a node's Param of a common name replaces its default."""
    own = {p.name for p in params}
    return tuple(p for p in COMMON_PARAMETERS if p.name not in own) + params


#: For nodes that run torch models.
TORCH_THREADS = Param("torch_threads", 1, "CPU threads of torch in this process; 0 keeps torch's default (all "
                      "cores). One is fastest when other nodes or processes share the cores.", (0, 256))


#: For nodes that read coordinates from other nodes' messages.
MAX_COORDINATE = Param("max_coordinate_m", 1000.0, "Drop input messages with a coordinate farther than this from "
                       "the frame's origin on any axis (m): a corrupt or mis-scaled message.", (1.0, 1.0e7),
                       live=True)


#: Camera pose parameters shared with the canonicaliser (set once under `/**` in config/posesdf.yaml).
CAMERA_POSE_PARAMETERS: tuple[Param, ...] = (
    Param("camera_height_m", 0.9, "Height of the camera's optical centre above the floor (m).", (0.05, 5.0)),
    Param("camera_pitch_deg", 9.0, "Camera pitch, down from horizontal (deg).", (-89.0, 89.0)),
    Param("camera_yaw_deg", 0.0, "Camera yaw about the gravity frame's z axis (deg).", (-180.0, 180.0)),
    Param("camera_x_m", 0.0, "Camera position along the gravity frame's x axis (m).", (-100.0, 100.0)),
    Param("camera_y_m", 0.0, "Camera position along the gravity frame's y axis (m).", (-100.0, 100.0)),
    Param("gravity_frame", "base_link", "Gravity-aligned output frame (z up, floor at z = 0; REP 103/105)."),
    Param("camera_frame", "camera_depth_optical_frame", "Optical frame of the depth camera that the camera_* "
          "parameters place (the synthetic camera publishes in it). Without tf2 a cloud in another frame, or with "
          "none, is still placed with them, and /diagnostics warns."),
)


#: `synthetic_camera`.
SYNTHETIC_CAMERA_PARAMETERS: tuple[Param, ...] = CAMERA_POSE_PARAMETERS + (
    Param("rate_hz", 15.0, "Publishing rate (Hz).", (0.1, 60.0)),
    Param("condition", "normal", "Gait condition of the walker.", choices=CONDITIONS),
    Param("view", "V1", "Benchmark view: the camera's azimuth around the walker.", choices=tuple(VIEWS)),
    Param("body_index", 0, "Test body (0..99; disjoint from the training bodies).", (0, 99)),
    Param("seed", 1, "Seed of the gait variation, the clutter and the noise.", (0, 2**31 - 1)),
    Param("noise", "realistic", "Depth noise profile.", choices=NOISE_PROFILES),
    Param("clutter_boxes", 2, "Boxes standing beside the walkway.", (0, 6)),
    Param("cadence_spm", 0.0, "Cadence (steps/min); 0 draws one from 95..125.", (0.0, 200.0)),
    Param("distance_m", 2.5, "Horizontal distance from the camera to the walker (m).", (1.0, 6.0)),
    Param("loop_frames", 0, "Frames rendered on configure and played in a loop at rate_hz; 0: one gait cycle, "
                            "played at the rate nearest rate_hz that repeats it seamlessly.",
          (0, 600)),
    Param("publish_ground_truth", True, "Publish ~/ground_truth/joints and ~/ground_truth/gait."),
)


#: `canonicaliser`.
CANONICALISER_PARAMETERS: tuple[Param, ...] = CAMERA_POSE_PARAMETERS + (
    Param("use_tf", True, "Look the camera pose up in tf2 at the cloud's stamp (when tf2_ros is installed)."),
    Param("yaw_source", "rotnet", "Heading from RotNet, or assume the canonical view V1 (the paper's "
                                  "'w/o RotNet' ablation).", choices=("rotnet", "assume_v1")),
    Param("rotnet_weights", "", "RotNet weights file; empty: the shipped weights."),
    Param("rotnet_turns", 1, "Test-time turns of RotNet's input about the vertical (a divisor of its 24 bins): "
                             "each is a forward pass; 4 is the evaluation's setting. On segmented val and shifted "
                             "scenes 1 read the heading as well as 2 at half the cost (docs/rotnet.md).", (1, 24)),
    Param("leg_classifier", True, "Pick the person's leg points with LegSegNet (shipped weights); false: "
                                  "crop at the pelvis guess and drop detached hands (rule-based)."),
    Param("legseg_model", "fast", "Which shipped LegSegNet picks the leg points: 'fast' (512 points, about "
                                  "half the time; trained on the paper engine's scenes) or 'small' (1,024 points, "
                                  "the evaluation's; trained on both engines' scenes: more precise beside boxes "
                                  "and with far cameras, docs/segmentation.md).", choices=("fast", "small")),
    Param("device", "cpu", "Torch device of RotNet and LegSegNet.", choices=("cpu", "cuda")),
    TORCH_THREADS,
    Param("decimation", 1, "Keep every n-th row and column of an organised cloud (every n²-th point of an "
                           "unorganised one) before segmentation, as a depth camera's decimation filter does. 2 "
                           "keeps a quarter of a 640 x 360 cloud at about half the segmentation's time, but the "
                           "slivers of a far leg seen past the near one go, and the fit check then rejects some "
                           "right fits of a hidden knee (docs/segmentation.md). 1 keeps every point.", (1, 8)),
    Param("max_points", 400000, "Clouds with more valid points (after decimation) are thinned to this many.",
          (1000, 10000000), live=True),
    Param("min_range_m", 0.3, "Ignore points horizontally nearer the camera than this (m).", (0.0, 10.0)),
    Param("max_range_m", 6.0, "Ignore points horizontally farther from the camera than this (m).", (0.5, 50.0)),
    Param("track_timeout_s", 1.0, "Forget the tracked person after this long without one (s).", (0.0, 60.0)),
    Param("canonical_frame", "posesdf_canonical", "frame_id of ~/canonical_points: the person's heading frame "
                                                  "(on the floor, x along the heading), broadcast on tf."),
)


#: `estimator`.
ESTIMATOR_PARAMETERS: tuple[Param, ...] = (
    Param("backend", "posesdf", "Joint estimator.", choices=("posesdf", "nvf")),
    Param("profile", "realtime", "Inference settings: 'realtime' (the amortised fit: encoder passes, no "
                                 "optimisation; camera rate on a small CPU), 'fast' (the encoder's codes refined "
                                 "by a short latent optimisation, warm-started: the lowest error on our scenes), "
                                 "'accurate' (the paper's method: the best of 8 start codes refined on 1,024 "
                                 "points; slower, and no better than 'fast' since fast starts from the encoder).",
          choices=("realtime", "fast", "accurate")),
    Param("members", 0, "Fits per frame, each on its own random subset of the legs, their joints averaged "
                        "(realtime and fast; accurate fits one and refuses more); 0: the profile's, 4. Fewer "
                        "cost less CPU (fast's time grows with it; realtime's little) and read a little worse.",
          (0, 16)),
    Param("device", "cpu", "Torch device.", choices=("cpu", "cuda")),
    Param("weights", "", "PoseSDF weights folder (posesdf.pt with its nvf and encoder heads) or a shipped set: "
                         "product or paper; empty: the shipped default, product."),
    TORCH_THREADS,
    MAX_COORDINATE,
    Param("track", True, "Warm-start each frame's latent code from the previous frame.", live=True),
    Param("track_reset_s", 0.25, "Warm-start only from a frame at most this old (s); the gait changes too much "
                                 "in longer gaps, so a slower model fits each frame cold.",
          (0.0, 60.0), live=True),
    Param("check_heading", True, "Cold fits also try the heading turned round and keep the one the shape "
                                 "fits better: catches RotNet's front/back confusions for a second screening. "
                                 "With profile 'fast' every fit also tries the heading kept 6 deg either side "
                                 "(two more fits a frame) and turns the heading in its descent.",
          live=True),
    Param("mesh_rate_hz", 1.0, "Rate of the lower-limb mesh (marching cubes); 0 turns it off.", (0.0, 30.0),
          live=True),
    Param("marker_lifetime_s", 0.5, "Lifetime of the markers (s), so stale ones vanish.", (0.0, 60.0),
          live=True),
    Param("joint_diameter_m", 0.04, "Diameter of the joint spheres (m).", (0.001, 1.0), live=True),
    Param("overlay", True, "Publish ~/overlay (needs image and camera_info)."),
    Param("image_sync_tolerance_s", 0.05, "Largest stamp difference between depth and RGB (s).", (0.0, 1.0)),
    Param("image_buffer_s", 4.0, "RGB images kept for the overlay (s, at most 120): a depth frame reaches the "
                                 "estimator only after the canonicaliser, seconds late on a busy CPU.",
          (0.1, 60.0)),
)


#: `pose_prior`.
POSE_PRIOR_PARAMETERS: tuple[Param, ...] = (
    Param("max_age_s", 10.0, "Drop joints older than this (s) when they arrive; their stamp is the camera "
                             "frame's, so the estimator's latency counts. 0 disables the check.", (0.0, 3600.0),
          live=True),
    Param("weights", "", "Folder with posendf.pt/.json; empty: the shipped weights."),
    Param("device", "cpu", "Torch device of the Pose-NDF field; the per-frame solve runs on the CPU in float64 "
                           "(its tensors are tiny).", choices=("cpu", "cuda")),
    TORCH_THREADS,
    MAX_COORDINATE,
    Param("observation_sigma_m", 0.02, "Expected error of the incoming joints (m): the estimator's MPJPE "
                                       "(`posesdf bench prior` tunes the motion and prior weights at 0.02).",
          (0.001, 1.0)),
    Param("motion_sigma_m", 0.03, "Expected deviation of a joint from constant velocity over 1/30 s (m), "
                                  "scaled by the square of the actual time step; smaller smooths more. "
                                  "With a clear gait cycle, observed joints use 1.5 observation sigmas about the "
                                  "cycle's own accelerations instead. `posesdf bench prior` tunes 0.03 for "
                                  "lag_frames 3 and for lag_frames 0.",
          (0.001, 1.0)),
    Param("jerk_sigma_m", 0.02, "With lag_frames > 0: expected third difference of a joint over four frames at "
                                "30 FPS (m), scaled by the cube of the actual time step; smaller smooths more; 0 "
                                "turns the jerk term off (it never applies to the causal filter).",
          (0.0, 1.0)),
    Param("prior_weight", 300.0, "Weight of the Pose-NDF prior; 0 turns it off.", (0.0, 10000.0)),
    Param("iterations", 4, "Levenberg-Marquardt iterations per frame (two batched evaluations each): 4 take "
                           "about 30 ms a frame at lag 3 on one core (docs/prior.md, \"Solver\").", (1, 50)),
    Param("periodic_fill", True, "Fill a hidden leg from the other leg half a gait cycle ago."),
    Param("lag_frames", 3, "Frames of look-ahead of the fixed-lag smoother: each output is published when this "
                           "many newer frames have come in (0: causal, no added latency; 3 is 100 ms at 30 FPS).",
          (0, 10)),
    Param("restart_gap_s", 0.5, "A longer gap between frames restarts the filter (s); the bone lengths are kept.",
          (0.0, 60.0)),
    Param("gait_window_s", 6.0, "Window of the gait analysis (s).", (1.0, 120.0)),
    Param("marker_lifetime_s", 0.5, "Lifetime of the markers (s), so stale ones vanish.", (0.0, 60.0),
          live=True),
    Param("joint_diameter_m", 0.04, "Diameter of the joint spheres (m).", (0.001, 1.0), live=True),
)
