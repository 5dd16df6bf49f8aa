"""Loading exported weights: `<name>.pt` (state dict) beside `<name>.json` (config, provenance)."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from ..models.posesdf import PoseSDF, PoseSDFConfig

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"


def weights_path(name: str, folder: Path | None = None) -> Path:
    path = Path(folder or WEIGHTS_DIR) / f"{name}.pt"
    if not path.exists() or not path.with_suffix(".json").exists():
        raise FileNotFoundError(
            f"no weights {path} (+ .json): the package ships them in posesdf_ros/weights; "
            f"to make your own, run `posesdf train {name} --data DIR --out RUN` and pass weights=RUN")
    return path


def load_posesdf(folder: Path | None = None, device: str | torch.device = "cpu") -> tuple[PoseSDF, dict]:
    """PoseSDF in eval mode and its metadata (config, normalisation prior, provenance;
    `meta["weights_dir"]` is the folder it came from)."""
    path = weights_path("posesdf", folder)
    meta = json.loads(path.with_suffix(".json").read_text()) | {"weights_dir": str(path.parent)}
    model = PoseSDF(PoseSDFConfig.from_dict(meta["config"]))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval(), meta
