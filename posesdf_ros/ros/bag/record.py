"""`posesdf bag record`: generated walking sequences, or test-build samples, as a rosbag2 with ground truth.

Each sequence (one condition x view x body) starts with the camera's
extrinsics on /tf_static and its ground-truth gait on /ground_truth/gait,
then one message per frame on the camera topics and /ground_truth/joints,
all with the frame's stamp as header stamp and bag time. Sequences are
`gap_s` apart, longer than the pipeline's track timeouts, so every
sequence starts a new track on replay. docs/bags.md has the layout.
"""
from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .layout import (
    CAMERA_FRAME,
    CAMERA_INFO_TOPIC,
    GRAVITY_FRAME,
    GT_GAIT_TOPIC,
    GT_JOINTS_TOPIC,
    IMAGE_TOPIC,
    POINTS_TOPIC,
    TF_STATIC_TOPIC,
    TYPES,
)
from .messages import camera_info_msg, cloud_msg, gait_message, header, image_msg, pose_array_msg, tf_message
from .writer import BagWriter

#: Bag time of the first frame: fixed, so the same settings give the same messages (2023-11-14T22:13:20Z).
START_NS = 1_700_000_000 * 1_000_000_000


@dataclass(frozen=True)
class RecordConfig:
    """What `posesdf bag record` generates: every condition x view x body for `duration_s` at `rate_hz`."""

    conditions: tuple[str, ...] = ("normal",)
    views: tuple[str, ...] = ("V1",)
    bodies: tuple[int, ...] = (0,)
    seed: int = 1
    noise: str = "realistic"
    clutter_boxes: int = 2
    duration_s: float = 2.0
    rate_hz: float = 15.0
    width: int = 640
    height: int = 360
    images: bool = True
    gap_s: float = 2.0                  # between sequences (s): longer than the nodes' track timeouts

    def __post_init__(self):
        if self.duration_s <= 0 or self.rate_hz <= 0 or self.gap_s < 0:
            raise ValueError("duration and rate must be positive, the gap not negative")

    @property
    def frames_per_sequence(self) -> int:
        return max(1, int(round(self.duration_s * self.rate_hz)))


def _write_frame(bag: BagWriter, t_ns: int, cloud: np.ndarray, rgb: np.ndarray | None, K: np.ndarray,
                 joints: np.ndarray) -> None:
    """One camera frame (organised optical-frame cloud with colour, image, camera info) and its GT joints."""
    cam = header(t_ns, CAMERA_FRAME)
    bag.write(POINTS_TOPIC, TYPES[POINTS_TOPIC], t_ns, cloud_msg(cloud, cam, rgb))
    if rgb is not None:
        bag.write(IMAGE_TOPIC, TYPES[IMAGE_TOPIC], t_ns, image_msg(rgb, cam))
    bag.write(CAMERA_INFO_TOPIC, TYPES[CAMERA_INFO_TOPIC], t_ns,
              camera_info_msg(K, cloud.shape[1], cloud.shape[0], cam))
    bag.write(GT_JOINTS_TOPIC, TYPES[GT_JOINTS_TOPIC], t_ns, pose_array_msg(joints, header(t_ns, GRAVITY_FRAME)))


def _write_sequence_start(bag: BagWriter, t_ns: int, camera_to_gravity: np.ndarray, gait: dict) -> None:
    bag.write(TF_STATIC_TOPIC, TYPES[TF_STATIC_TOPIC], t_ns,
              tf_message(GRAVITY_FRAME, CAMERA_FRAME, camera_to_gravity, t_ns))
    bag.write(GT_GAIT_TOPIC, TYPES[GT_GAIT_TOPIC], t_ns, gait_message(gait, t_ns))


def record_walks(out: Path, config: RecordConfig = RecordConfig(), storage: str = "mcap", compression: str = "none",
                 progress: bool = True) -> dict:
    """Write the walks of `config` to the bag folder `out`; returns a summary (frames, sequences, bytes)."""
    from tqdm import tqdm

    from ...data.body import BodyModel
    from ...data.scene import VIEWS
    from ...data.stream import SyntheticWalker, WalkerConfig

    sequences = list(itertools.product(config.conditions, config.views, config.bodies))
    n = config.frames_per_sequence
    body_model = BodyModel()
    t_ns = START_NS
    bar = tqdm(total=n * len(sequences), desc="bag record", unit="frame", disable=not progress)
    with BagWriter(out, storage, compression) as bag:
        for index, (condition, view, body) in enumerate(sequences):
            camera = SyntheticWalker(WalkerConfig(condition=condition, view=view, body_index=body, seed=config.seed,
                                                  noise=config.noise, clutter_boxes=config.clutter_boxes,
                                                  width=config.width, height=config.height), body_model)
            walker = camera.walker
            gait = walker.gait.params
            truth = {"sequence": index, "condition": condition, "view": view, "azimuth_deg": VIEWS[view],
                     "body_index": body, "subject": f"test_{body:03d}", "seed": config.seed, "noise": config.noise,
                     "cadence_spm": round(gait.cadence_spm, 4),
                     "stride_length_m": round(float(walker.subject.stride_length_m), 5),
                     "walking_speed_mps": round(float(walker.subject.walking_speed_mps), 5),
                     "cycle_s": round(gait.cycle_s, 5), "foot_progression_deg": round(gait.foot_progression_deg, 4),
                     "condition_offset_deg": round(gait.condition_offset_deg, 4)}
            for i in range(n):
                frame = camera.frame(i / config.rate_hz)
                stamp = t_ns + int(round(i * 1e9 / config.rate_hz))
                if i == 0:
                    _write_sequence_start(bag, stamp, frame.camera_to_gravity, truth)
                _write_frame(bag, stamp, frame.cloud, frame.rgb if config.images else None, frame.intrinsics.K,
                             frame.joints)
                bar.update()
            t_ns += int(round((n / config.rate_hz + config.gap_s) * 1e9))
    bar.close()
    return {"bag": str(out), "storage": storage, "compression": compression, "sequences": len(sequences),
            "frames": n * len(sequences), "config": asdict(config), "bytes": _folder_bytes(out)}


def record_dataset(out: Path, folder: Path, protocol: str = "all", limit: int | None = None, storage: str = "mcap",
                   compression: str = "none", gap_s: float = 2.0, progress: bool = True) -> dict:
    """Write test-build samples (`posesdf data build --split test`) as one-frame sequences `gap_s` apart.

    The organised cloud is the sample's depth image back-projected through
    its K, so that the points in the gravity frame are those `posesdf eval
    --input scene` reads; bag and build then score the same frames.
    """
    from tqdm import tqdm

    from ...data.camera import Intrinsics
    from ...evaluation.benchmark import select_samples

    entries = select_samples(Path(folder), protocol, limit)
    with BagWriter(out, storage, compression) as bag:
        for index, entry in enumerate(tqdm(entries, desc="bag record", unit="frame", disable=not progress)):
            with np.load(Path(folder) / entry["file"]) as z:
                a = {k: z[k] for k in ("depth", "K", "rgb", "joints", "camera_to_gravity")}
            K, depth = a["K"], a["depth"]
            intrinsics = Intrinsics(width=depth.shape[1], height=depth.shape[0], fx=float(K[0, 0]), fy=float(K[1, 1]),
                                    cx=float(K[0, 2]), cy=float(K[1, 2]))
            cloud = (intrinsics.pixel_rays() * depth[..., None]).astype(np.float32)
            t_ns = START_NS + int(round(index * gap_s * 1e9))
            gait = entry.get("gait", {})
            truth = {"sequence": index, "condition": entry["condition"], "view": entry["view"],
                     "azimuth_deg": entry["azimuth_deg"], "subject": entry["subject"], "sample": entry["file"],
                     "cadence_spm": gait.get("cadence_spm", "")}
            _write_sequence_start(bag, t_ns, a["camera_to_gravity"], truth)
            _write_frame(bag, t_ns, cloud, a["rgb"], K, a["joints"])
    return {"bag": str(out), "storage": storage, "compression": compression, "sequences": len(entries),
            "frames": len(entries), "dataset": str(folder), "protocol": protocol, "limit": limit,
            "bytes": _folder_bytes(out)}


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
