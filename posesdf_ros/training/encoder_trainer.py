"""Training the amortised fit (`models.latent_encoder`): partial leg views to PoseSDF codes.

The targets come from the frozen PoseSDF run: each training shape's own
code (the auto-decoder's `posesdf_codes.npy`, same manifest order), the
similarity that maps the view's first-guess normalisation onto the
shape's own (least squares over the view's points, so it holds whatever
the augmentation did to them) and the shape's nine joints. Views are
RotNet's (hidden point removal from every azimuth, `rotnet_trainer.make_views`),
freshly augmented each batch by RotNet's `augmented` without the changes
that would make another body of the view (mirror, scaling): crop plane,
occluding slab, floor points, flying pixels, both noise profiles, a small
floor tilt; the heading the first guess is given is off by RotNet's
typical error (`yaw_error_deg`, Gaussian).

Loss, each term in normalised units (1 unit is about 0.64 m):
- `code`: mean squared code error over the codes' spread;
- `similarity`: shift and log-scale errors (L1);
- `joints`: the joints of the predicted code and similarity against the
  true ones, in the first-guess frame (the encoder alone, no refinement);
- `head`: the joint head on the true code against the true joints, so that
  it reads any code near the training ones, as refinement steps leave it.
"""
from __future__ import annotations

import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import data_provenance, load_manifest
from ..geometry import yaw_matrix
from ..inference.canonical import first_guess
from ..inference.pretrained import file_sha256, load_posesdf
from ..models.latent_encoder import AmortisedFit, LatentEncoderConfig
from ..provenance import git_commit
from .checkpoint import export_weights, open_network_run
from .loop import Step, fit
from .rotnet_trainer import Augment, augmented, make_views


@dataclass
class EncoderTrainConfig:
    name: str = "small"
    model: LatentEncoderConfig = field(default_factory=LatentEncoderConfig)
    augment: Augment = field(default_factory=lambda: Augment(mirror_prob=0.0, scale=0.0, tilt_deg=1.0))
    epochs: int = 50
    views_per_shape: int = 16
    hpr_surface_points: int = 12000
    yaw_error_deg: float = 5.0
    batch: int = 32
    lr: float = 1e-3
    lr_step_epochs: int = 20
    similarity_weight: float = 10.0
    joint_weight: float = 10.0
    head_weight: float = 10.0
    checkpoint_every: int = 1
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def preset(name: str) -> EncoderTrainConfig:
    if name == "small":
        return EncoderTrainConfig()
    if name == "tiny":   # tests only
        from ..models.pointnet2 import PointNet2Config
        enc = PointNet2Config(points=128, sa1=(32, 0.1, 8, (16,)), sa2=(8, 0.25, 8, (32,)), sa3=(None, 0.0, 0, (32,)))
        return EncoderTrainConfig(name="tiny", model=LatentEncoderConfig(encoder=enc, hidden=32, joint_hidden=32),
                                  epochs=2, views_per_shape=2, hpr_surface_points=3000, batch=4)
    raise ValueError(f"unknown config {name!r}; expected small or tiny")


def _command(config: EncoderTrainConfig, data: Path, out: Path, device: str, posesdf_weights: Path | None) -> str:
    """The `posesdf train encoder` command line that reproduces this run."""
    flags = [f"--posesdf-weights {posesdf_weights}"] if posesdf_weights else []
    base = preset(config.name)
    flags += [f"--{name.replace('_', '-')} {getattr(config, name)}" for name in ("epochs", "lr_step_epochs")
              if getattr(config, name) != getattr(base, name)]
    return " ".join([f"posesdf train encoder --config {config.name} --data {data} --out {out} --device {device}",
                     *flags])


@dataclass
class ShapeTargets:
    """What each training shape's views are scored against."""
    codes: torch.Tensor         # (S, L) the auto-decoder's codes
    centres: np.ndarray         # (S, 3) each shape's normalisation: p_code = (p - centre) * scale
    scales: np.ndarray          # (S,)
    joints_m: np.ndarray        # (S, 9, 3) shape frame, metres


def shape_targets(data: Path, posesdf_meta: dict, limit: int | None) -> ShapeTargets:
    """The targets of the first `limit` shapes of the training build `data`, with the codes of
    the PoseSDF run `posesdf_meta` describes (its `weights_dir`)."""
    entries = load_manifest(data)["samples"][:limit]
    codes = np.load(Path(posesdf_meta["weights_dir"]) / "posesdf_codes.npy")
    if len(codes) < len(entries):
        raise ValueError(f"{len(codes)} PoseSDF codes for {len(entries)} training shapes: train the encoder on "
                         f"the build the PoseSDF weights were trained on")
    centres, scales, joints = [], [], []
    for e in entries:
        with np.load(Path(data) / e["file"]) as z:
            centres.append(z["norm_centre"])
            scales.append(float(z["norm_scale"]))
            joints.append(z["joints_m"])
    return ShapeTargets(torch.as_tensor(codes[:len(entries)], dtype=torch.float32), np.stack(centres),
                        np.array(scales), np.stack(joints).astype(np.float64))


def similarity_between(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """The (shift (3,), log_scale) of b ≈ (a - shift) * exp(log_scale), least squares over (N, 3) pairs."""
    da, db = a - a.mean(0), b - b.mean(0)
    k = float((da * db).sum() / max((da * da).sum(), 1e-12))
    return a.mean(0) - b.mean(0) / k, math.log(k)


def make_batch(views, targets: ShapeTargets, ids: np.ndarray, config: EncoderTrainConfig, prior: dict,
               rng: np.random.Generator) -> dict:
    """One batch of augmented views with their targets (tensors; joints in both frames)."""
    clouds, shapes, shifts, log_scales, joints_fg, joints_code = [], [], [], [], [], []
    for i in ids:
        view, s = views[i], int(i) // config.views_per_shape
        p, yaw = augmented(view, config.model.encoder.points, config.augment, rng)
        R = yaw_matrix(yaw - view.yaw)      # the turn augmented() gave the view
        p = p.astype(np.float64)
        # The view's points in the shape frame: augmented() turned them last, after its tilt.
        code_frame = lambda q: (q @ R - targets.centres[s]) * targets.scales[s]  # noqa: E731
        canon = first_guess(p, yaw + math.radians(rng.normal(0, config.yaw_error_deg)), prior, view.camera @ R.T)
        a = canon.to_normalised(p)
        shift, log_scale = similarity_between(a, code_frame(p))
        clouds.append(a)
        shapes.append(s)
        shifts.append(shift)
        log_scales.append(log_scale)
        j_m = targets.joints_m[s] @ R.T
        joints_fg.append(canon.to_normalised(j_m))
        joints_code.append(code_frame(j_m))
    f32 = lambda x: torch.as_tensor(np.asarray(x), dtype=torch.float32)  # noqa: E731
    return {"clouds": f32(clouds), "codes": targets.codes[shapes], "shift": f32(shifts),
            "log_scale": f32(log_scales), "joints_first_guess": f32(joints_fg), "joints_code": f32(joints_code)}


def encoder_losses(model: AmortisedFit, batch: dict, config: EncoderTrainConfig) -> dict:
    """The loss terms of one batch (module docstring), and the encoder-only joint error in normalised units."""
    z, shift, log_scale = model.encoder(batch["clouds"])
    std = model.encoder.latent_std
    code = ((z - batch["codes"]) / std).pow(2).mean()
    similarity = (shift - batch["shift"]).abs().mean() + (log_scale - batch["log_scale"]).abs().mean()
    pred_fg = model.joints(z) * torch.exp(-log_scale)[:, None, None] + shift[:, None]
    joints = (pred_fg - batch["joints_first_guess"]).norm(dim=-1).mean()
    head = (model.joints(batch["codes"]) - batch["joints_code"]).norm(dim=-1).mean()
    loss = code + config.similarity_weight * similarity + config.joint_weight * joints + config.head_weight * head
    return {"loss": loss, "code_loss": code, "similarity_loss": similarity, "joint_error": joints,
            "head_error": head}


def train_encoder(data: Path, out: Path, config: EncoderTrainConfig, device: str = "cpu", resume: bool = True,
                  limit: int | None = None, posesdf_weights: Path | None = None, progress: bool = True,
                  max_minutes: float | None = None, export_only: bool = False) -> dict:
    """Train (or resume) into `out`: checkpoint.pt, loss.csv, loss.png, encoder.pt/encoder.json."""
    t_start = time.perf_counter()
    out = Path(out)
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    _, posesdf_meta = load_posesdf(posesdf_weights)
    model = AmortisedFit(config.model)
    model.set_code_statistics(torch.tensor(posesdf_meta["latent_mean"]), float(posesdf_meta["latent_std"]))
    model = model.to(dev)
    run = open_network_run(out, model, config.lr, config.lr_step_epochs, config.to_dict() | {"epochs": None},
                           dev, resume)
    training = not export_only and run.start < config.epochs
    prior = posesdf_meta["normalisation_prior"]
    targets = shape_targets(data, posesdf_meta, limit)
    views = make_views(data, config, limit, progress) if training else []

    def batches(epoch: int) -> Iterator[dict]:
        rng = np.random.default_rng([config.seed, epoch])   # per epoch: a resumed run draws the same
        for ids in np.array_split(rng.permutation(len(views)), max(1, len(views) // config.batch)):
            yield {k: v.to(dev) for k, v in make_batch(views, targets, ids, config, prior, rng).items()}

    def step(batch) -> Step:
        return Step(encoder_losses(model, batch, config), len(batch["clouds"]))

    # Joint errors in millimetres for the log: normalised units over the shapes' mean scale.
    mm = 1000.0 / float(targets.scales.mean())
    stopped_early = training and fit(
        run, config.epochs, batches, step, checkpoint_every=config.checkpoint_every, max_minutes=max_minutes,
        started=t_start, epoch_logs=lambda epoch: {"lr": run.optimizer.param_groups[0]["lr"]},
        plot=("loss", "code_loss", "similarity_loss", "joint_error", "head_error"),
        desc=f"encoder[{config.name}]", progress=progress,
        postfix=lambda h: {"loss": f"{h['loss']:.3f}", "joints_mm": f"{h['joint_error'] * mm:.0f}",
                           "head_mm": f"{h['head_error'] * mm:.0f}"})
    history, done = run.history, run.epochs_done
    meta = {"model": "encoder", "config": config.model.to_dict(), "train_config": config.to_dict(),
            "epochs_done": done, "epochs_planned": config.epochs, "complete": done >= config.epochs,
            "data": str(data), **data_provenance(load_manifest(data)), "shapes": len(targets.codes),
            "posesdf_sha256": file_sha256(Path(posesdf_meta["weights_dir"]) / "posesdf.pt"), "device": str(dev),
            "torch_threads": torch.get_num_threads(),
            "train_minutes": round(sum(h["seconds"] for h in history) / 60, 1), "git_commit": git_commit(),
            "final": history[-1] if history else None, "mm_per_unit": mm,
            "command": _command(config, data, out, device, posesdf_weights)}
    export_weights(out, "encoder", model, meta)
    return {"out": str(out), "epochs_done": done, "epochs_planned": config.epochs, "stopped_early": stopped_early,
            "final": history[-1] if history else None}
