"""RotNet training: the heading of partial leg views seen from any azimuth.

Views are made as for the PN++ baseline (hidden point removal on the 300
training shapes, `pn2_trainer.hidden_point_removal`), but from every
azimuth around the subject, with the spec's camera heights and distances.
They are computed once; every batch then draws a fresh variant of each
view, so that 300 bodies in one gait phase each go a long way:

- a random heading: the view is turned about the vertical by a uniform
  angle, which is the target (plus the shape's own +-5 deg jitter);
- a mirror image about the sagittal plane half the time (a left-right
  swapped walker faces the same way);
- body proportions: horizontal and vertical scale +-10 %;
- the segmentation's errors: crop plane lower by up to 10 cm, a slab of
  the cloud hidden (clutter in front), a few floor points at the feet,
  a tilt of up to 2 deg (floor fit);
- sensor noise of either test profile: isotropic jitter (light) or the
  `realistic` axial noise sigma(r) = 0.0012 + 0.0019 (r - 0.4)^2 along
  the ray, with flying pixels pushed behind the legs; dropout and density
  by random subsampling.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import load_manifest
from ..geometry import yaw_matrix
from ..models.rotnet import RotNet, RotNetConfig, centre_cloud, decode_heading, heading_loss
from ..provenance import git_commit
from .checkpoint import export_weights, load_init_weights, open_network_run
from .loop import Step, fit
from .pn2_trainer import hidden_point_removal


@dataclass
class Augment:
    mirror_prob: float = 0.5
    scale: float = 0.1                   # +- fraction, horizontal and vertical apart
    crop_prob: float = 0.5
    crop_max_m: float = 0.10
    occlude_prob: float = 0.25
    occlude_max_fraction: float = 0.3
    floor_prob: float = 0.3
    floor_max_fraction: float = 0.03
    tilt_deg: float = 2.0
    realistic_prob: float = 0.7          # else the light profile
    light_sigma_m: float = 0.003
    flying_prob: float = 0.5
    flying_max_fraction: float = 0.03
    flying_max_m: float = 0.3


@dataclass
class RotNetTrainConfig:
    name: str = "small"
    model: RotNetConfig = field(default_factory=RotNetConfig)
    augment: Augment = field(default_factory=Augment)
    epochs: int = 60
    views_per_shape: int = 16
    hpr_surface_points: int = 12000      # surface subsample before hidden point removal (speed)
    batch: int = 32
    lr: float = 1e-3
    lr_step_epochs: int = 20
    sigma_bins: float = 1.0
    residual_weight: float = 1.0
    checkpoint_every: int = 1
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def preset(name: str) -> RotNetTrainConfig:
    if name == "small":
        return RotNetTrainConfig()
    if name == "tiny":   # tests only
        from ..models.pointnet2 import PointNet2Config
        enc = PointNet2Config(points=128, sa1=(32, 0.1, 8, (16,)), sa2=(8, 0.25, 8, (32,)), sa3=(None, 0.0, 0, (32,)))
        return RotNetTrainConfig(name="tiny", model=RotNetConfig(encoder=enc, bins=12, hidden=32), epochs=2,
                                 views_per_shape=2, hpr_surface_points=3000, batch=4)
    raise ValueError(f"unknown config {name!r}; expected small or tiny")


@dataclass
class View:
    points: np.ndarray      # (M, 3) visible surface points, shape frame (subject at the origin)
    camera: np.ndarray      # (3,) camera position, same frame
    yaw: float              # the shape's heading in that frame (its +-5 deg jitter)


#: Camera distance and height (m) of the views of a paper build's shapes: the spec's views.
PAPER_CAMERA_DISTANCE_M, PAPER_CAMERA_HEIGHT_M = (1.5, 3.5), (0.6, 1.3)


def camera_ranges(manifest: dict) -> tuple[tuple[float, float], tuple[float, float]]:
    """(distance, height) ranges of the views' cameras (m): the product engine's for a product build,
    the spec's otherwise."""
    if manifest.get("profile") == "product":
        from ..data.domain import PRODUCT

        return PRODUCT.camera_distance_m, PRODUCT.camera_height_m
    return PAPER_CAMERA_DISTANCE_M, PAPER_CAMERA_HEIGHT_M


def make_views(folder: Path, config: RotNetTrainConfig, limit: int | None = None,
               progress: bool = True) -> list[View]:
    """`views_per_shape` partial views of each training shape from uniform azimuths, the cameras at the
    build's `camera_ranges`."""
    from tqdm import tqdm

    manifest = load_manifest(folder)
    entries = manifest["samples"][:limit]
    distances, heights = camera_ranges(manifest)
    rng = np.random.default_rng(config.seed)
    views = []
    for e in tqdm(entries, desc="partial views", unit="shape", disable=not progress):
        with np.load(Path(folder) / e["file"]) as z:
            surface, yaw = z["gt_surface"].astype(np.float64), math.radians(float(z["yaw_deg"]))
        surface = surface[rng.choice(len(surface), min(len(surface), config.hpr_surface_points), replace=False)]
        for az in (rng.random() + np.arange(config.views_per_shape)) * 2 * np.pi / config.views_per_shape:
            dist, height = rng.uniform(*distances), rng.uniform(*heights)
            camera = np.array([dist * np.cos(az), dist * np.sin(az), height])
            views.append(View(surface[hidden_point_removal(surface, camera)].astype(np.float32), camera, yaw))
    return views


def augmented(view: View, n: int, aug: Augment, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """A fresh variant of `view`: ((n, 3) gravity-frame cloud, its heading in rad)."""
    p, cam, yaw = view.points.astype(np.float64), view.camera.copy(), view.yaw
    if rng.random() < aug.mirror_prob:
        p, cam, yaw = p * [1, -1, 1], cam * [1, -1, 1], -yaw
    scale = np.array([*[rng.uniform(1 - aug.scale, 1 + aug.scale)] * 2, rng.uniform(1 - aug.scale, 1 + aug.scale)])
    p, cam = p * scale, cam * scale
    keep = np.ones(len(p), bool)
    if rng.random() < aug.crop_prob:
        keep &= p[:, 2] < p[:, 2].max() - rng.uniform(0, aug.crop_max_m)
    if rng.random() < aug.occlude_prob:
        d = p[:, :2] @ yaw_matrix(rng.uniform(0, 2 * np.pi))[:2, 0]
        keep &= d < np.quantile(d, 1 - rng.uniform(0, aug.occlude_max_fraction))
    p = p[keep] if keep.sum() >= 32 else p
    p = p[rng.choice(len(p), n, replace=len(p) < n)]
    ray = p - cam
    r = np.linalg.norm(ray, axis=1, keepdims=True)
    ray /= r
    if rng.random() < aug.realistic_prob:
        p = p + ray * rng.normal(size=r.shape) * (0.0012 + 0.0019 * (r - 0.4) ** 2)
    else:
        p = p + rng.normal(0, rng.uniform(0, aug.light_sigma_m), p.shape)
    if rng.random() < aug.flying_prob:
        fly = rng.random(n) < rng.uniform(0, aug.flying_max_fraction)
        p[fly] += ray[fly] * rng.uniform(0.02, aug.flying_max_m, (fly.sum(), 1))
    if rng.random() < aug.floor_prob:
        floor = rng.random(n) < rng.uniform(0, aug.floor_max_fraction)
        feet = p[p[:, 2] < np.quantile(p[:, 2], 0.1)]
        base = feet[rng.integers(len(feet), size=floor.sum())]
        p[floor] = np.c_[base[:, :2] + rng.normal(0, 0.08, (floor.sum(), 2)), rng.normal(0, 0.005, floor.sum())]
    axis = rng.uniform(0, 2 * np.pi)
    tilt = math.radians(rng.uniform(-aug.tilt_deg, aug.tilt_deg))
    R_tilt = yaw_matrix(axis) @ np.array([[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)],
                                      [0, math.sin(tilt), math.cos(tilt)]]) @ yaw_matrix(-axis)
    turn = rng.uniform(-np.pi, np.pi)
    p = p @ (yaw_matrix(turn) @ R_tilt).T
    return p.astype(np.float32), float(np.angle(np.exp(1j * (yaw + turn))))


def make_batch(views: list[View], ids: np.ndarray, config: RotNetTrainConfig,
               rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(clouds (B, n, 3) centred, headings (B,))."""
    pairs = [augmented(views[i], config.model.encoder.points, config.augment, rng) for i in ids]
    clouds = torch.from_numpy(np.stack([c for c, _ in pairs]))
    return centre_cloud(clouds), torch.tensor([y for _, y in pairs], dtype=torch.float32)


def train_rotnet(data: Path, out: Path, config: RotNetTrainConfig, device: str = "cpu", resume: bool = True,
                 limit: int | None = None, progress: bool = True, max_minutes: float | None = None,
                 export_only: bool = False, init: Path | None = None) -> dict:
    """Train (or resume) into `out`: checkpoint.pt, loss.csv, loss.png, rotnet.pt/rotnet.json.
    `export_only`: export the checkpoint as it is, without training (a run cut short). `init`: a folder
    whose rotnet.pt (same model config) is the start, e.g. the shipped one (a resumed run's checkpoint wins)."""
    t_start = time.perf_counter()
    out = Path(out)
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    model = RotNet(config.model).to(dev)
    if init is not None:
        load_init_weights(model, "rotnet", init, config.model.to_dict())
    # A rerun may extend the epochs, nothing else.
    run = open_network_run(out, model, config.lr, config.lr_step_epochs, config.to_dict() | {"epochs": None},
                           dev, resume)
    training = not export_only and run.start < config.epochs
    views = make_views(data, config, limit, progress) if training else []
    errors: list[torch.Tensor] = []     # the epoch's heading errors (deg)

    def batches(epoch: int) -> Iterator[tuple]:
        """(centred clouds (B, n, 3), headings (B,)) per batch, freshly augmented."""
        # Data seeded per epoch, so a resumed run draws what an uninterrupted one would.
        rng = np.random.default_rng([config.seed, epoch])
        errors.clear()
        for ids in np.array_split(rng.permutation(len(views)), max(1, len(views) // config.batch)):
            yield make_batch(views, ids, config, rng)

    def step(batch) -> Step:
        x, yaw = batch
        logits, residual = model(x.to(dev))
        cls, reg = heading_loss(logits, residual, yaw.to(dev), config.sigma_bins)
        pred, _ = decode_heading(logits.detach(), residual.detach())
        errors.append(torch.rad2deg((pred.cpu() - yaw + math.pi).remainder(2 * math.pi) - math.pi).abs())
        return Step({"loss": cls + config.residual_weight * reg, "class_loss": cls, "residual_loss": reg}, len(yaw))

    def epoch_logs(epoch: int) -> dict:
        errs = torch.cat(errors)
        return {"median_error_deg": float(errs.median()), "over_30_pct": float((errs > 30).float().mean() * 100),
                "lr": run.optimizer.param_groups[0]["lr"]}

    stopped_early = training and fit(
        run, config.epochs, batches, step, checkpoint_every=config.checkpoint_every, max_minutes=max_minutes,
        started=t_start, epoch_logs=epoch_logs, plot=("loss", "class_loss", "residual_loss"),
        desc=f"rotnet[{config.name}]", progress=progress,
        postfix=lambda h: {"loss": f"{h['loss']:.3f}", "med": f"{h['median_error_deg']:.1f}"})
    history, done = run.history, run.epochs_done
    train_seconds = sum(h["seconds"] for h in history)
    manifest = load_manifest(data)
    distances, heights = camera_ranges(manifest)
    meta = {"model": "rotnet", "config": config.model.to_dict(), "train_config": config.to_dict(),
            "epochs_done": done, "epochs_planned": config.epochs, "complete": done >= config.epochs,
            "data": str(data), "data_seed": manifest.get("seed"), "data_profile": manifest.get("profile", "paper"),
            "camera_distance_m": list(distances), "camera_height_m": list(heights),
            "shapes": len(manifest["samples"][:limit]), "views_per_shape": config.views_per_shape,
            "device": str(dev), "torch_threads": torch.get_num_threads(),
            "train_minutes": round(train_seconds / 60, 1), "git_commit": git_commit(),
            "init": None if init is None else str(init),
            "final": history[-1] if history else None,
            "command": f"posesdf train rotnet --config {config.name} --data {data} --out {out} --device {device}"
                       + ("" if init is None else f" --init {init}") + f" --lr {config.lr:g}"}
    export_weights(out, "rotnet", model, meta)
    return {"out": str(out), "epochs_done": done, "epochs_planned": config.epochs, "stopped_early": stopped_early,
            "final": history[-1] if history else None}
