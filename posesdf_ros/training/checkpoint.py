"""Checkpoints (resumable training state) and exported weights (model + config JSON)."""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch


def save_checkpoint(path: Path, state: dict) -> None:
    """Write atomically, so that a run killed mid-save leaves the previous checkpoint."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path, device: str | torch.device = "cpu") -> dict:
    return torch.load(Path(path), map_location=device, weights_only=False)


def resume_from(path: Path, config: dict, device: str | torch.device, **stateful) -> tuple[int, list[dict]]:
    """Load `stateful` objects (name -> module/optimiser/scheduler) from the checkpoint at
    `path`, if any. Returns (epochs done, loss history); (0, []) without a checkpoint.
    Refuses a checkpoint trained with another config; only the epoch count may differ, so a
    finished run can be extended (the learning-rate schedule goes by the epoch index)."""
    path = Path(path)
    if not path.exists():
        return 0, []
    ckpt = load_checkpoint(path, device)
    if _without_epochs(ckpt["config"]) != _without_epochs(config):
        raise SystemExit(f"{path} was trained with another config; use another --out or --no-resume")
    for name, obj in stateful.items():
        obj.load_state_dict(ckpt[name])
    return ckpt["epoch"], ckpt["history"]


def _without_epochs(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "epochs"}


def load_init_weights(model: torch.nn.Module, name: str, folder: Path, config: dict) -> None:
    """Start `model` from the exported `name`.pt in `folder` (fine-tuning), whose saved config must be
    `config` (the model's `to_dict()`); another config is a ValueError."""
    from ..inference.pretrained import weights_path

    path = weights_path(name, Path(folder))
    saved = json.loads(path.with_suffix(".json").read_text())["config"]
    if saved != json.loads(json.dumps(config)):     # compared as saved: tuples become lists
        raise ValueError(f"{folder} holds a {name} of another config ({saved}); expected {config}")
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))


def export_weights(folder: Path, name: str, model: torch.nn.Module, meta: dict) -> Path:
    """`name.pt` (state dict, float32) and `name.json` (config, provenance) side by side."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(state, folder / f"{name}.pt")
    (folder / f"{name}.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return folder / f"{name}.pt"


class Stateful(Protocol):
    """What a checkpoint holds: a module, an optimiser, a learning-rate scheduler."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state_dict: dict, /) -> Any: ...


@dataclass
class TrainingRun:
    """The training state of one run folder, as its checkpoint.pt holds it.

    The checkpoint holds the state of each of `modules` under its name (e.g. "model",
    or "model" and "codes", or "head"), then "optimizer" and, when there is one,
    "scheduler", then "epoch" (epochs done), "history" (one loss dict per epoch done)
    and "config" (which a rerun's config must match to resume, see `resume_from`).
    `start` and `history` are where training (re)starts.
    """

    folder: Path
    config: dict
    modules: dict[str, torch.nn.Module]
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None
    start: int = 0
    history: list[dict] = field(default_factory=list)

    @property
    def checkpoint_path(self) -> Path:
        return self.folder / "checkpoint.pt"

    @property
    def epochs_done(self) -> int:
        return self.history[-1]["epoch"] if self.history else 0

    def stateful(self) -> dict[str, Stateful]:
        """The checkpointed objects by name, in checkpoint order."""
        objects: dict[str, Stateful] = {**self.modules, "optimizer": self.optimizer}
        if self.scheduler is not None:
            objects["scheduler"] = self.scheduler
        return objects

    def save(self, epoch: int) -> None:
        save_checkpoint(self.checkpoint_path, {name: obj.state_dict() for name, obj in self.stateful().items()}
                        | {"epoch": epoch, "history": self.history, "config": self.config})


def open_run(folder: Path, config: dict, modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer,
             scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, device: str | torch.device = "cpu",
             resume: bool = True) -> TrainingRun:
    """The `TrainingRun` in `folder` (created if need be), resumed from its checkpoint.pt
    unless `resume` is False; a checkpoint of another config is refused (`resume_from`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    run = TrainingRun(folder, config, dict(modules), optimizer, scheduler)
    if resume:
        run.start, run.history = resume_from(run.checkpoint_path, config, device, **run.stateful())
    return run


def open_network_run(out: Path, model: torch.nn.Module, lr: float, lr_step_epochs: int, config: dict,
                     device: str | torch.device, resume: bool = True) -> TrainingRun:
    """The `TrainingRun` of one network `model` in `out` with Adam at `lr` and its step
    schedule (halving every `lr_step_epochs`, stepped once an epoch), resumed as by `open_run`."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.StepLR(opt, lr_step_epochs, 0.5)
    return open_run(out, config, {"model": model}, opt, sched, device, resume)


def write_loss_log(out: Path, history: list[dict], keys: tuple = ("loss", "shape_loss", "pose_loss")) -> None:
    """A run's per-epoch history as out/loss.csv and its `keys` curves as out/loss.png."""
    if not history:
        return
    with open(out / "loss.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(history[0]))
        w.writeheader()
        w.writerows(history)
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ep = [h["epoch"] for h in history]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in keys:
        ax.plot(ep, [h[key] for h in history], label=key)
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (normalised units)")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "loss.png", dpi=100)
    plt.close(fig)
