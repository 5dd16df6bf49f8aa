"""Training of the NVF vote head on top of the frozen, shipped PoseSDF.

The PoseSDF network and its per-shape training codes stay fixed; only the
head learns. Each epoch visits every training shape once, in batches of
`shapes_per_batch`, and draws `points_per_shape` of the shape's
near-surface SDF samples (|s| < `surface_band`): what the observed points
of a depth view are at inference. Their vote targets come from the shape's
ground-truth joints in the same normalised frame (`models.nvf.vote_targets`).
With `fits` (`training.nvf_fits`), every epoch also visits each fitted
depth view once, in batches of the same size: its fitted code and points
drawn from its voters (observed points and near-surface probes), which is
what the head reads at inference.

The run folder gets checkpoint.pt (resumable), loss.csv, loss.png,
config.json, nvf.pt/nvf.json and a copy of the PoseSDF weights the head was
trained on, so `--weights RUN` loads a matching pair.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import data_provenance, load_manifest
from ..data.pack import is_pack, load_pack
from ..inference.nvf import VoteDecoding, vote_joints
from ..inference.pretrained import file_sha256, load_posesdf, weights_folder, weights_path
from ..models.nvf import NVFConfig, NVFHead, posesdf_features, vote_losses, vote_targets
from ..provenance import git_commit
from .checkpoint import export_weights, load_init_weights, open_run
from .loop import Step, fit
from .nvf_fits import FittedSet
from .schedules import step_lr

NEAR_SAMPLES = 45_000       # the first 45,000 SDF samples of a shape are the near-surface ones (data.sdf)


@dataclass
class NVFTrainConfig:
    name: str = "small"
    model: NVFConfig = field(default_factory=NVFConfig)
    epochs: int = 200
    shapes_per_batch: int = 12
    points_per_shape: int = 512
    surface_band: float = 0.03       # |SDF| of the training queries, normalised units
    pool_per_shape: int = 8000       # near-surface samples kept in memory per shape
    lr: float = 1e-3
    lr_step_epochs: int = 50
    val_shapes: int = 24             # training shapes whose decoded joints are logged
    checkpoint_every: int = 5
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "NVFTrainConfig":
        d = dict(d)
        d["model"] = NVFConfig.from_dict(d.get("model", {}))
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


def preset(name: str) -> NVFTrainConfig:
    """`small`: 200 epochs, about 15 minutes with one CPU thread. `tiny`: tests only."""
    if name == "small":
        return NVFTrainConfig()
    if name == "tiny":
        return NVFTrainConfig(name="tiny", model=NVFConfig(width=32, layers=2), epochs=40, shapes_per_batch=2,
                              points_per_shape=256, pool_per_shape=2000, lr=3e-3, val_shapes=2,
                              checkpoint_every=10)
    raise ValueError(f"unknown config {name!r}; expected small or tiny")


PRESETS = ("small", "tiny")


class SurfaceSet:
    """Near-surface samples and ground-truth joints of the training shapes, normalised frame."""

    def __init__(self, folder: Path, band: float, per_shape: int, limit: int | None = None, seed: int = 0,
                 progress: bool = True):
        from tqdm import tqdm

        rng = np.random.default_rng(seed)
        points, joints, scales = [], [], []

        def keep(p: np.ndarray, s: np.ndarray, shape_joints: np.ndarray, scale: float) -> None:
            near = p[np.abs(s) < band]
            points.append(near[rng.choice(len(near), per_shape, replace=len(near) < per_shape)])
            joints.append(shape_joints)
            scales.append(float(scale))

        if is_pack(folder):
            manifest, arrays = load_pack(folder, limit)
            n_near = manifest["pack"]["near_samples"]
            for k in range(len(manifest["samples"])):
                keep(arrays["points"][k, :n_near], arrays["sdf"][k, :n_near], arrays["joints"][k],
                     arrays["norm_scale"][k])
        else:
            manifest = load_manifest(folder)
            manifest["samples"] = manifest["samples"][:limit]
            for e in tqdm(manifest["samples"], desc="loading shapes", unit="shape", disable=not progress):
                with np.load(Path(folder) / e["file"]) as z:
                    keep(z["points"][:NEAR_SAMPLES], z["sdf"][:NEAR_SAMPLES], z["joints"], z["norm_scale"])
        if manifest.get("split") != "train":
            raise ValueError(f"{folder} is a {manifest.get('split')} build; NVF trains on --split train")
        if not manifest["samples"]:
            raise ValueError(f"{folder} holds no samples")
        self.manifest = manifest
        self.points = torch.from_numpy(np.stack(points)).float()    # (S, P, 3)
        self.joints = torch.from_numpy(np.stack(joints)).float()    # (S, 9, 3)
        self.scale = np.array(scales)                               # per metre

    def __len__(self) -> int:
        return len(self.points)

    def draw(self, shape_ids: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """(B, n, 3) random near-surface points of the shapes."""
        idx = torch.randint(0, self.points.shape[1], (len(shape_ids), n), generator=gen)
        return self.points[shape_ids[:, None], idx]


def decoded_joint_error_mm(model, head: NVFHead, codes: torch.Tensor, shapes: SurfaceSet, ids: list[int],
                           points: int = 1024) -> float:
    """Mean joint error (mm) of the decoded votes on training shapes with their training codes."""
    gen, dev = torch.Generator().manual_seed(1), codes.device
    errs = [((vote_joints(model, head, codes[i], shapes.draw(torch.tensor([i]), points, gen)[0].to(dev)).cpu()
              - shapes.joints[i]).norm(dim=-1) / shapes.scale[i] * 1000).mean().item() for i in ids]
    return float(np.mean(errs))


def fitted_joint_error_mm(model, head: NVFHead, fits: FittedSet,
                          decoding: VoteDecoding = VoteDecoding()) -> np.ndarray:
    """(S, 9) joint errors (mm) of the votes decoded from each fitted view's own voters."""
    dev = next(head.parameters()).device
    return np.stack([((vote_joints(model, head, fits.code[i].to(dev), fits.voters[i, :int(fits.counts[i])].to(dev),
                                   decoding).cpu()
                       - fits.joints[i]).norm(dim=-1) / fits.scale[i] * 1000).numpy() for i in range(len(fits))])


#: The vote selections `decoding_sweep` compares: K nearest by weight, and top shares by weight.
SWEPT_DECODINGS = tuple(VoteDecoding("knn", k=k) for k in (4, 8, 16, 32, 64)) + tuple(
    VoteDecoding("fraction", keep=keep) for keep in (0.1, 0.25, 0.5))


def decoding_sweep(fits: Path, weights: Path | None = None) -> dict:
    """Joint error (mm) on `fits` of a head (and its trunk) under each of `SWEPT_DECODINGS`,
    next to the sphere centres' error on the same fits: how the vote selection is chosen
    without the test split."""
    from ..inference.pretrained import load_nvf, load_posesdf

    model, _ = load_posesdf(Path(weights) if weights else None, "cpu")
    head, meta = load_nvf(Path(weights) if weights else None, "cpu")
    fitted = FittedSet.load(fits)
    rows = []
    for decoding in SWEPT_DECODINGS:
        errs = fitted_joint_error_mm(model, head, fitted, decoding)
        rows.append({"rule": decoding.rule, "k": decoding.k if decoding.rule == "knn" else None,
                     "keep": decoding.keep if decoding.rule == "fraction" else None,
                     "mpjpe_mm": float(errs.mean()), "per_joint_mm": errs.mean(0).tolist()})
    return {"fits": str(fits), "views": len(fitted), "weights": str(weights) if weights else "shipped",
            "head_command": meta.get("command"), "sphere_mpjpe_mm": float(fitted.sphere_mm.mean()),
            "rows": rows, "git_commit": git_commit()}


def train_nvf(data: Path, out: Path, config: NVFTrainConfig, posesdf_weights: Path | None = None,
              device: str = "cpu", resume: bool = True, limit: int | None = None, progress: bool = True,
              max_minutes: float | None = None, fits: Path | None = None, val_fits: Path | None = None,
              init: Path | None = None) -> dict:
    """Train (or resume) the vote head into `out`; returns a summary dict.

    `posesdf_weights`: a folder with posesdf.pt/json and posesdf_codes.npy
    (default: the shipped ones) whose codes are in the training build's order.
    `fits`: a `posesdf train nvf-fits` folder to learn from as well; `val_fits`:
    one whose decoded joint error is logged each epoch (`val_fit_error_mm`, next
    to its sphere centres' `val_fit_sphere_mm`). `init`: a folder whose nvf.pt
    (same head config) the head starts from. `max_minutes` stops cleanly
    (checkpoint written) after that wall time.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    trunk_dir = weights_folder(posesdf_weights)
    model, trunk_meta = load_posesdf(trunk_dir, dev)
    for p in model.parameters():
        p.requires_grad_(False)
    codes_path = trunk_dir / "posesdf_codes.npy"
    if not codes_path.exists():
        raise FileNotFoundError(f"no {codes_path}: NVF trains on the PoseSDF run's per-shape training codes")
    codes = torch.from_numpy(np.load(codes_path)).float().to(dev)
    shapes = SurfaceSet(data, config.surface_band, config.pool_per_shape, limit, config.seed, progress)
    if len(shapes) > len(codes):
        raise ValueError(f"{data} has {len(shapes)} shapes but {codes_path} only {len(codes)} codes")
    codes = codes[:len(shapes)]
    head = NVFHead(config.model, model.config).to(dev)
    if init is not None:
        load_init_weights(head, "nvf", init, config.model.to_dict())
    fitted = FittedSet.load(fits) if fits else None
    val_fitted = FittedSet.load(val_fits) if val_fits else None
    opt = torch.optim.Adam(head.parameters(), lr=config.lr)
    run = open_run(out, config.to_dict(), {"head": head}, opt, device=dev, resume=resume)
    (out / "config.json").write_text(json.dumps(config.to_dict(), indent=1))
    gen = torch.Generator().manual_seed(config.seed * 1_000_003 + run.start)
    val_ids = list(range(min(config.val_shapes, len(shapes))))

    def batches(epoch: int) -> Iterator[tuple]:
        """(source set, its row ids (B,), query points (B, P, 3), codes (B, L)) per batch: every
        training shape (and fitted view) once, in a random order of their batches."""
        opt.param_groups[0]["lr"] = step_lr(config.lr, epoch, config.lr_step_epochs)
        split = [(shapes, b) for b in torch.randperm(len(shapes), generator=gen).split(config.shapes_per_batch)]
        if fitted is not None:
            split += [(fitted, b) for b in torch.randperm(len(fitted), generator=gen).split(config.shapes_per_batch)]
        for k in torch.randperm(len(split), generator=gen).tolist():
            source, ids = split[k]
            pts = source.draw(ids, config.points_per_shape, gen).to(dev)
            z = codes[ids.to(dev)] if source is shapes else source.code[ids].to(dev)
            yield source, ids, pts, z

    def step(batch) -> Step:
        source, ids, pts, z = batch
        with torch.no_grad():
            feats = posesdf_features(model, z, pts)
        w_t, u_t = vote_targets(pts, source.joints[ids].to(dev), config.model.radius)
        w, u = head(feats.query, feats.hidden)
        w_loss, u_loss = vote_losses(w, u, w_t, u_t)
        return Step({"loss": w_loss + u_loss, "w_loss": w_loss, "u_loss": u_loss}, len(ids))

    def validate(epoch: int) -> dict:
        """Decoded joint errors: training shapes with their codes, and the `val_fits` views."""
        logs = {"train_joint_error_mm": decoded_joint_error_mm(model, head, codes, shapes, val_ids)}
        if val_fitted is not None:
            logs |= {"val_fit_error_mm": float(fitted_joint_error_mm(model, head, val_fitted).mean()),
                     "val_fit_sphere_mm": float(val_fitted.sphere_mm.mean())}
        return logs

    def postfix(h: dict) -> dict[str, str]:
        return {"loss": f"{h['loss']:.4f}", "joints_mm": f"{h['train_joint_error_mm']:.1f}",
                **({"val_fits_mm": f"{h['val_fit_error_mm']:.1f}"} if val_fitted else {})}

    stopped_early = fit(run, config.epochs, batches, step, checkpoint_every=config.checkpoint_every,
                        max_minutes=max_minutes, epoch_logs=lambda epoch: {"lr": opt.param_groups[0]["lr"]},
                        validate=validate, plot=("loss", "w_loss", "u_loss"), desc=f"nvf[{config.name}]",
                        progress=progress, postfix=postfix)
    history, done = run.history, run.epochs_done
    trunk_pt = weights_path("posesdf", trunk_dir)
    meta = {"model": "nvf", "config": config.model.to_dict(), "train_config": config.to_dict(),
            "epochs_done": done, "epochs_planned": config.epochs, "complete": done >= config.epochs,
            "data": str(data), **data_provenance(shapes.manifest), "shapes": len(shapes), "device": str(dev),
            "git_commit": git_commit(), "final_loss": history[-1] if history else None,
            "radius_m_at_mean_scale": config.model.radius / float(shapes.scale.mean()),
            "posesdf_sha256": file_sha256(trunk_pt), "posesdf_weights": str(trunk_dir),
            "fits": str(fits) if fits else None, "fitted_views": len(fitted) if fitted else 0,
            "init": str(init) if init else None,
            "command": _command(config, data, out, device, posesdf_weights, fits, val_fits, init)}
    export_weights(out, "nvf", head, meta)
    if trunk_pt.parent.resolve() != out.resolve():
        for suffix in (".pt", ".json"):
            shutil.copyfile(trunk_pt.with_suffix(suffix), out / f"posesdf{suffix}")
    return {"out": str(out), "epochs_done": done, "epochs_planned": config.epochs, "stopped_early": stopped_early,
            "final": history[-1] if history else None}


def _command(config: NVFTrainConfig, data: Path, out: Path, device: str, posesdf_weights: Path | None,
             fits: Path | None, val_fits: Path | None, init: Path | None) -> str:
    """The `posesdf train nvf` command line that reproduces this run."""
    base = preset(config.name)
    flags = []
    if config.epochs != base.epochs:
        flags.append(f"--epochs {config.epochs}")
    if config.model.radius != base.model.radius:
        flags.append(f"--radius {config.model.radius}")
    if posesdf_weights:
        flags.append(f"--posesdf-weights {posesdf_weights}")
    flags += [f"--{name} {value}" for name, value in (("fits", fits), ("val-fits", val_fits), ("init", init))
              if value]
    return " ".join([f"posesdf train nvf --config {config.name} --data {data} --out {out} --device {device}", *flags])
