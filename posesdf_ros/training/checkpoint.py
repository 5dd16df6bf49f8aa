"""Checkpoints (resumable training state) and exported weights (model + config JSON)."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

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
    Refuses a checkpoint trained with another config."""
    path = Path(path)
    if not path.exists():
        return 0, []
    ckpt = load_checkpoint(path, device)
    if ckpt["config"] != config:
        raise SystemExit(f"{path} was trained with another config; use another --out or --no-resume")
    for name, obj in stateful.items():
        obj.load_state_dict(ckpt[name])
    return ckpt["epoch"], ckpt["history"]


def export_weights(folder: Path, name: str, model: torch.nn.Module, meta: dict) -> Path:
    """`name.pt` (state dict, float32) and `name.json` (config, provenance) side by side."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
    torch.save(state, folder / f"{name}.pt")
    (folder / f"{name}.json").write_text(json.dumps(meta, indent=1, sort_keys=True))
    return folder / f"{name}.pt"


def end_of_epoch(done: int, epochs: int, every: int, started: float, max_minutes: float | None,
                 checkpoint: Callable[[int], None]) -> bool:
    """Checkpoint when due; True when the wall-time budget (`max_minutes` since `started`,
    a `time.perf_counter()`) is spent before the last epoch, with a checkpoint written."""
    if done % every == 0 or done == epochs:
        checkpoint(done)
    if max_minutes is not None and time.perf_counter() - started > 60 * max_minutes and done < epochs:
        checkpoint(done)
        return True
    return False
