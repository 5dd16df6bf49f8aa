"""Auto-decoder training of PoseSDF (seed 000, eq. 4-7) on the training split.

Each epoch visits every training shape once, in batches of
`shapes_per_batch`; each visit draws a fresh random subset of the shape's
SDF samples and joint-sphere samples (DeepSDF's per-epoch subsampling).
Every sampled point gets both targets: the shape SDF (clamped to ±δ, as
DeepSDF) and the nine analytic sphere SDFs (unclamped, so the pose field is
informative everywhere and joint centres can be read off anywhere).
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import data_provenance, load_manifest
from ..data.pack import is_pack, load_pack
from ..models.losses import latent_regulariser, tolerance_loss
from ..models.posesdf import PoseSDF, PoseSDFConfig
from ..provenance import git_commit
from .checkpoint import export_weights, load_checkpoint, open_run
from .loop import Step, fit
from .schedules import linear_ramp, step_lr


@dataclass
class PoseSDFTrainConfig:
    name: str = "small"
    model: PoseSDFConfig = field(default_factory=PoseSDFConfig)
    epochs: int = 3000
    shapes_per_batch: int = 16
    shape_samples: int = 8192            # per shape per visit, of the 50,000 near/uniform samples
    joint_samples: int = 512             # per joint per shape per visit, of the 8,000
    lr: float = 1e-3
    lr_step_epochs: int = 600
    latent_lr: float = 1e-3
    latent_init_std: float = 0.01
    latent_reg: float = 1e-4
    lambda_range: tuple[float, float] = (0.0, 0.5)
    eps_range: tuple[float, float] = (0.0025, 0.0)
    clamp: float = 0.1
    checkpoint_every: int = 5
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PoseSDFTrainConfig":
        d = dict(d)
        d["model"] = PoseSDFConfig.from_dict(d.get("model", {}))
        for k in ("lambda_range", "eps_range"):
            if k in d:
                d[k] = tuple(d[k])
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def preset(name: str) -> PoseSDFTrainConfig:
    """`paper`: the paper's settings (width 256, 3,000 epochs, lr 1e-3 halved every
    600), for a GPU. `small`: width 128 and 200 epochs with smaller per-visit
    samples, the same schedules compressed (lr halved every 40 epochs),
    about an hour on 2 CPU cores."""
    if name == "paper":
        return PoseSDFTrainConfig(name="paper", checkpoint_every=50)
    if name == "small":
        return PoseSDFTrainConfig(name="small", model=PoseSDFConfig(width=128), epochs=200,
                                  shapes_per_batch=12, shape_samples=1536, joint_samples=128,
                                  lr_step_epochs=40, checkpoint_every=5)
    if name == "tiny":   # tests only
        return PoseSDFTrainConfig(name="tiny", model=PoseSDFConfig(width=32, decoder_layers=3, exchange_layers=1),
                                  epochs=30, shapes_per_batch=2, shape_samples=256, joint_samples=16,
                                  lr=5e-3, latent_lr=5e-3, lr_step_epochs=1000, checkpoint_every=10)
    raise ValueError(f"unknown config {name!r}; expected small, paper or tiny")


PRESETS = ("small", "paper", "tiny")


class SDFShapeSet:
    """All training shapes as tensors (about 2 MB a shape from a build, 40 kB from a pack)."""

    def __init__(self, data: Path, limit: int | None = None, progress: bool = True):
        manifest, arrays = (load_pack(data, limit) if is_pack(data) else _load_build(data, limit, progress))
        if manifest.get("split") != "train":
            raise ValueError(f"{data} is a {manifest.get('split')} build; PoseSDF trains on --split train")
        if not manifest["samples"]:
            raise ValueError(f"{data} holds no samples")
        self.manifest = manifest
        self.subjects = [e["subject"] for e in manifest["samples"]]
        self.points = torch.from_numpy(arrays["points"])                  # (S, Ns, 3)
        self.sdf = torch.from_numpy(arrays["sdf"])                        # (S, Ns)
        self.joint_points = torch.from_numpy(arrays["joint_points"])      # (S, 9*Nj, 3)
        self.joint_sdf = torch.from_numpy(arrays["joint_points_sdf"])
        self.joints = torch.from_numpy(arrays["joints"])                  # (S, 9, 3) normalised
        self.norm_centre = np.asarray(arrays["norm_centre"], dtype=np.float64)
        self.norm_scale = np.asarray(arrays["norm_scale"], dtype=np.float64)
        self.surface_top = np.asarray(arrays["surface_top"], dtype=np.float64)

    def __len__(self) -> int:
        return self.points.shape[0]

    def to(self, device: torch.device) -> "SDFShapeSet":
        for k in ("points", "sdf", "joint_points", "joint_sdf", "joints"):
            setattr(self, k, getattr(self, k).to(device))
        return self

    def draw(self, shape_ids: torch.Tensor, n_shape: int, n_joint: int,
             gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Points (B, n_shape + 9 n_joint, 3) and their shape SDF (B, ...)."""
        b, dev = len(shape_ids), self.points.device
        per_joint = self.joint_points.shape[1] // 9
        si = torch.randint(0, self.points.shape[1], (b, n_shape), generator=gen).to(dev)
        ji = (torch.randint(0, per_joint, (b, 9, n_joint), generator=gen)
              + per_joint * torch.arange(9)[None, :, None]).reshape(b, -1).to(dev)
        rows = shape_ids.to(dev)[:, None]
        pts = torch.cat([self.points[rows, si], self.joint_points[rows, ji]], 1)
        sdf = torch.cat([self.sdf[rows, si], self.joint_sdf[rows, ji]], 1)
        return pts, sdf

    def normalisation_prior(self) -> dict:
        return normalisation_prior(self.surface_top, self.norm_centre, self.norm_scale)


def _load_build(folder: Path, limit: int | None, progress: bool) -> tuple[dict, dict[str, np.ndarray]]:
    """(manifest, stacked arrays) of the first `limit` shapes of a train build folder."""
    from tqdm import tqdm

    manifest = load_manifest(folder)
    manifest["samples"] = manifest["samples"][:limit]
    if not manifest["samples"]:
        return manifest, {}
    keys = ("points", "sdf", "joint_points", "joint_points_sdf", "joints", "norm_centre", "norm_scale")
    arrays = {k: [] for k in (*keys, "surface_top")}
    for e in tqdm(manifest["samples"], desc="loading shapes", unit="shape", disable=not progress):
        with np.load(Path(folder) / e["file"]) as z:
            for k in keys:
                arrays[k].append(z[k])
            arrays["surface_top"].append(z["gt_surface"][:, 2].max())
    return manifest, {k: np.stack(v) for k, v in arrays.items()}


def normalisation_prior(surface_top: np.ndarray, norm_centre: np.ndarray, norm_scale: np.ndarray) -> dict:
    """How the unit-sphere normalisation relates to what a partial view shows.

    The top of the lower-limb shape (the crop plane) is visible from any
    side and the floor is at z = 0, so the scale is regressed on the
    shape's height: 1 / scale = a * top + b, and the centre height likewise
    (`inference.canonical.first_guess` uses it).
    """
    inv_scale = 1.0 / np.asarray(norm_scale)
    radius_fit = np.polyfit(surface_top, inv_scale, 1)
    centre_fit = np.polyfit(surface_top, np.asarray(norm_centre)[:, 2], 1)
    resid = inv_scale - np.polyval(radius_fit, surface_top)
    return {"inv_scale_vs_top": [float(v) for v in radius_fit],
            "centre_z_vs_top": [float(v) for v in centre_fit],
            "inv_scale_residual_std": float(resid.std()), "shapes": int(len(inv_scale))}


def sphere_targets(points: torch.Tensor, joints: torch.Tensor, radius: float) -> torch.Tensor:
    """Analytic sphere SDFs: (B, N, 3), (B, 9, 3) -> (B, N, 9)."""
    return torch.cdist(points, joints) - radius


def _command(config: PoseSDFTrainConfig, data: Path, out: Path, device: str, init_from: Path | None) -> str:
    """The `posesdf train posesdf` command line that reproduces this run."""
    base, m = preset(config.name), config.model
    flags = []
    if m.exchange_layers == 0 and base.model.exchange_layers > 0:
        flags.append("--no-exchange")
    if m.encoder_layers == 0 and base.model.encoder_layers > 0:
        flags.append("--no-encoder")
    if not m.pose_decoder:
        flags.append("--shape-only")
    if config.epochs != base.epochs:
        flags.append(f"--epochs {config.epochs}")
    if config.lr != base.lr:
        flags.append(f"--lr {config.lr:g}")
    if config.lr_step_epochs != base.lr_step_epochs:
        flags.append(f"--lr-step-epochs {config.lr_step_epochs}")
    if init_from:
        flags.append(f"--init-from {init_from}")
    return " ".join([f"posesdf train posesdf --config {config.name} --data {data} --out {out} --device {device}",
                     *flags])


def train_posesdf(data: Path, out: Path, config: PoseSDFTrainConfig, device: str = "cpu",
                  resume: bool = True, limit: int | None = None, progress: bool = True,
                  max_minutes: float | None = None, init_from: Path | None = None) -> dict:
    """Train (or resume) into `out`: checkpoint.pt, loss.csv, loss.png, posesdf.pt/json.

    Returns a summary dict. `max_minutes` stops cleanly (checkpoint written)
    after that wall time, so a run can continue in a later session.
    `init_from` (another run's checkpoint.pt, same model config and shapes)
    starts a fresh schedule from its network and codes: fine-tuning on a
    revised build of the same bodies.
    """
    out = Path(out)
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    shapes = SDFShapeSet(data, limit, progress).to(dev)
    model = PoseSDF(config.model).to(dev)
    codes = torch.nn.Embedding(len(shapes), config.model.latent_size).to(dev)
    torch.nn.init.normal_(codes.weight, 0.0, config.latent_init_std)
    opt = torch.optim.Adam([{"params": model.parameters(), "lr": config.lr},
                            {"params": codes.parameters(), "lr": config.latent_lr}])
    run = open_run(out, config.to_dict(), {"model": model, "codes": codes}, opt, device=dev, resume=resume)
    if init_from is not None and run.start == 0:
        init = load_checkpoint(Path(init_from), dev)
        if init["config"]["model"] != config.to_dict()["model"]:
            raise ValueError(f"{init_from} has another model config; it cannot initialise this one")
        model.load_state_dict(init["model"])
        codes.load_state_dict(init["codes"])
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + run.start)

    def schedule(epoch: int) -> tuple[float, float, float]:
        """The epoch's (lambda, eps, learning-rate factor)."""
        t = epoch / max(config.epochs - 1, 1)
        return (linear_ramp(*config.lambda_range, t), linear_ramp(*config.eps_range, t),
                step_lr(1.0, epoch, config.lr_step_epochs))

    def batches(epoch: int) -> Iterator[tuple]:
        """(shape ids (B,), points (B, N, 3), their shape SDF (B, N), lambda, eps) per batch."""
        lam, eps, lr_factor = schedule(epoch)
        opt.param_groups[0]["lr"] = config.lr * lr_factor
        opt.param_groups[1]["lr"] = config.latent_lr * lr_factor
        for ids in torch.randperm(len(shapes), generator=gen).split(config.shapes_per_batch):
            pts, sdf = shapes.draw(ids, config.shape_samples, config.joint_samples, gen)
            yield ids.to(dev), pts, sdf, lam, eps

    def step(batch) -> Step:
        ids, pts, sdf, lam, eps = batch
        z = codes(ids)
        pred_shape, pred_pose = model(z, pts)
        shape_loss = tolerance_loss(pred_shape.clamp(-config.clamp, config.clamp),
                                    sdf.clamp(-config.clamp, config.clamp), lam, eps).mean()
        loss = shape_loss + latent_regulariser(z, config.latent_reg)
        pose_loss = torch.zeros((), device=dev)
        if pred_pose is not None:
            target = sphere_targets(pts, shapes.joints[ids], config.model.sphere_radius)
            pose_loss = tolerance_loss(pred_pose, target, lam, eps).mean()
            loss = loss + pose_loss
        return Step({"loss": loss, "shape_loss": shape_loss, "pose_loss": pose_loss}, len(ids))

    def epoch_logs(epoch: int) -> dict:
        lam, eps, lr_factor = schedule(epoch)
        return {"lambda": lam, "eps": eps, "lr": config.lr * lr_factor}

    stopped_early = fit(run, config.epochs, batches, step, checkpoint_every=config.checkpoint_every,
                        max_minutes=max_minutes, epoch_logs=epoch_logs, plot=("loss", "shape_loss", "pose_loss"),
                        desc=f"posesdf[{config.name}]", progress=progress,
                        postfix=lambda h: {"loss": f"{h['loss']:.4f}", "shape": f"{h['shape_loss']:.4f}",
                                           "pose": f"{h['pose_loss']:.4f}"})
    history, done = run.history, run.epochs_done
    meta = {"model": "posesdf", "config": config.model.to_dict(), "train_config": config.to_dict(),
            "epochs_done": done, "epochs_planned": config.epochs, "complete": done >= config.epochs,
            "data": str(data), **data_provenance(shapes.manifest), "shapes": len(shapes),
            "device": str(dev), "git_commit": git_commit(),
            "final_loss": history[-1] if history else None,
            "normalisation_prior": shapes.normalisation_prior(),
            "latent_mean": codes.weight.detach().mean(0).cpu().tolist(),
            "latent_std": float(codes.weight.detach().std()),
            "init_from": str(init_from) if init_from else None,
            "command": _command(config, data, out, device, init_from)}
    export_weights(out, "posesdf", model, meta)
    codes_np = codes.weight.detach().cpu().numpy()
    np.save(out / "posesdf_codes.npy", codes_np)
    return {"out": str(out), "epochs_done": done, "epochs_planned": config.epochs, "stopped_early": stopped_early,
            "final": history[-1] if history else None}


