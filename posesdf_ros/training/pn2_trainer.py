"""The PN++ baseline: PointNet++ regressing the nine joints from a canonical leg cloud.

Trained on the same 300 training shapes as PoseSDF. Its inputs are partial
views of each shape made by hidden point removal (Katz et al. 2007, as the
PoseSDF paper made its test inputs) from random cameras around the
canonical view V1, canonicalised with the same first-guess normalisation as
PoseSDF's inference (no ground truth), so both methods see the same thing.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import load_manifest
from ..data.scene import VIEWS
from ..inference.canonical import first_guess
from ..models.pointnet2 import PointNet2Config, PointNet2Regressor
from ..provenance import git_commit
from .checkpoint import export_weights, open_network_run
from .loop import Step, fit
from .posesdf_trainer import normalisation_prior


@dataclass
class PN2TrainConfig:
    name: str = "small"
    model: PointNet2Config = field(default_factory=PointNet2Config)
    epochs: int = 40
    views_per_shape: int = 8
    batch: int = 16
    lr: float = 1e-3
    lr_step_epochs: int = 15
    azimuth_jitter_deg: float = 20.0
    noise_m: float = 0.003
    checkpoint_every: int = 2
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def preset(name: str) -> PN2TrainConfig:
    if name == "small":
        return PN2TrainConfig()
    if name == "tiny":  # tests only
        return PN2TrainConfig(name="tiny", model=PointNet2Config(points=256, sa1=(64, 0.1, 16, (16, 16)),
                                                                 sa2=(16, 0.25, 16, (32,)), sa3=(None, 0.0, 0, (64,))),
                              epochs=3, views_per_shape=2, batch=2, checkpoint_every=10)
    raise ValueError(f"unknown config {name!r}; expected small or tiny")


def hidden_point_removal(points: np.ndarray, camera: np.ndarray) -> np.ndarray:
    """Indices of the points visible from `camera` (Katz et al., via Open3D)."""
    import open3d as o3d

    pcd = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    radius = 100.0 * np.linalg.norm(points - camera, axis=1).max()
    _, idx = pcd.hidden_point_removal(camera, radius)
    return np.asarray(idx)


class LegViewSet:
    """Partial V1-like views of the training shapes with their joints, canonicalised."""

    def __init__(self, folder: Path, config: PN2TrainConfig, limit: int | None = None, progress: bool = True):
        from tqdm import tqdm

        manifest = load_manifest(folder)
        entries = manifest["samples"][:limit]
        surfaces, joints, tops, centres, scales = [], [], [], [], []
        for e in entries:
            with np.load(Path(folder) / e["file"]) as z:
                surfaces.append(z["gt_surface"].astype(np.float64))
                joints.append(z["joints_m"].astype(np.float64))
                centres.append(z["norm_centre"])
                scales.append(float(z["norm_scale"]))
                tops.append(float(z["gt_surface"][:, 2].max()))
        self.prior = normalisation_prior(np.array(tops), np.stack(centres), np.array(scales))
        rng = np.random.default_rng(config.seed)
        n = config.model.points
        self.clouds, self.targets = [], []
        for surf, jnt in tqdm(list(zip(surfaces, joints)), desc="partial views", unit="shape", disable=not progress):
            for _ in range(config.views_per_shape):
                az = np.deg2rad(VIEWS["V1"] + rng.uniform(-1, 1) * config.azimuth_jitter_deg)
                dist, height = rng.uniform(1.5, 3.5), rng.uniform(0.6, 1.3)
                camera = np.array([dist * np.cos(az), dist * np.sin(az), height])
                visible = surf[hidden_point_removal(surf, camera)]
                visible = visible[rng.choice(len(visible), n, replace=len(visible) < n)]
                visible = visible + rng.normal(0, config.noise_m, visible.shape)
                canon = first_guess(visible, 0.0, self.prior, camera)
                self.clouds.append(canon.to_normalised(visible).astype(np.float32))
                self.targets.append(canon.to_normalised(jnt).astype(np.float32))
        self.clouds, self.targets = torch.from_numpy(np.stack(self.clouds)), torch.from_numpy(np.stack(self.targets))


def train_pn2(data: Path, out: Path, config: PN2TrainConfig, device: str = "cpu", resume: bool = True,
              limit: int | None = None, progress: bool = True) -> dict:
    """Train (or resume) into `out`: checkpoint.pt, loss.csv, loss.png, pn2.pt/pn2.json."""
    out = Path(out)
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    views = LegViewSet(data, config, limit, progress)
    model = PointNet2Regressor(config.model).to(dev)
    run = open_network_run(out, model, config.lr, config.lr_step_epochs, config.to_dict(), dev, resume)
    gen = torch.Generator().manual_seed(config.seed + run.start)

    def batches(epoch: int) -> Iterator[tuple]:
        """(canonical clouds (B, P, 3), their joints (B, 9, 3)) per batch."""
        for ids in torch.randperm(len(views.clouds), generator=gen).split(config.batch):
            yield views.clouds[ids].to(dev), views.targets[ids].to(dev)

    def step(batch) -> Step:
        clouds, joints = batch
        return Step({"loss": (model(clouds) - joints).norm(dim=-1).mean()}, len(clouds))

    fit(run, config.epochs, batches, step, checkpoint_every=config.checkpoint_every,
        epoch_logs=lambda epoch: {"lr": run.optimizer.param_groups[0]["lr"]}, desc=f"pn2[{config.name}]",
        progress=progress)
    history = run.history
    meta = {"model": "pn2", "config": config.model.to_dict(), "train_config": config.to_dict(),
            "epochs_done": len(history), "epochs_planned": config.epochs, "complete": len(history) >= config.epochs,
            "data": str(data), "data_seed": load_manifest(data).get("seed"),
            "shapes": len(views.clouds) // config.views_per_shape,
            "device": str(dev), "git_commit": git_commit(), "normalisation_prior": views.prior,
            "command": f"posesdf train pn2 --config {config.name} --data {data} --out {out} --device {device}"}
    export_weights(out, "pn2", model, meta)
    return {"out": str(out), "epochs_done": len(history), "final": history[-1] if history else None}
