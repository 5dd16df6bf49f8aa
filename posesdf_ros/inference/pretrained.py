"""Loading exported weights: `<name>.pt` (state dict) beside `<name>.json` (config, provenance)."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch

from ..models.latent_encoder import AmortisedFit, LatentEncoderConfig
from ..models.nvf import NVFConfig, NVFHead
from ..models.posesdf import PoseSDF, PoseSDFConfig

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
#: The shipped PoseSDF sets by name: "product" (the default: trained on the domain-randomised engine's
#: 1,000 shapes) and "paper" (the benchmark spec's 300 bodies in normal gait, for the paper-protocol
#: table). Each holds the trunk (posesdf.*, posesdf_codes.npy) and the heads tied to it (nvf.*, encoder.*).
WEIGHT_SETS = {"paper": WEIGHTS_DIR, "product": WEIGHTS_DIR / "product"}
#: The set that `weights=None` (and an empty `weights` parameter) loads.
DEFAULT_WEIGHT_SET = "product"
#: How the commands' weights options name the shipped sets.
WEIGHT_SET_HELP = "or a shipped set: " + " or ".join(
    f"{name} (the default)" if name == DEFAULT_WEIGHT_SET else name
    for name in sorted(WEIGHT_SETS, key=lambda name: name != DEFAULT_WEIGHT_SET))
#: The models a set holds; the others (RotNet, LegSegNet, Pose-NDF, the PN++ baseline) are shared and sit
#: in WEIGHTS_DIR itself.
SET_MODELS = ("posesdf", "nvf", "encoder")


def weights_folder(folder: str | Path | None = None) -> Path:
    """A weights folder from a path, a set's name (`WEIGHT_SETS`) or None (the default set)."""
    if folder is None or str(folder) in ("", *WEIGHT_SETS):
        return WEIGHT_SETS[str(folder or DEFAULT_WEIGHT_SET)]
    return Path(folder)


def weights_path(name: str, folder: str | Path | None = None) -> Path:
    """`name`.pt in `folder` (see `weights_folder`); without one, a set model's file in the default set
    and a shared model's in WEIGHTS_DIR. Missing .pt or .json: FileNotFoundError with what to do."""
    base = weights_folder(folder) if folder is not None or name in SET_MODELS else WEIGHTS_DIR
    path = base / f"{name}.pt"
    if not path.exists() or not path.with_suffix(".json").exists():
        raise FileNotFoundError(
            f"no weights {path} (+ .json): the package ships them in posesdf_ros/weights (sets: "
            f"{', '.join(WEIGHT_SETS)}); to make your own, run `posesdf train {name} --data DIR --out RUN` and pass "
            f"weights=RUN")
    return path


def file_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def load_posesdf(folder: Path | None = None, device: str | torch.device = "cpu") -> tuple[PoseSDF, dict]:
    """PoseSDF in eval mode and its metadata (config, normalisation prior, provenance;
    `meta["weights_dir"]` is the folder it came from)."""
    path = weights_path("posesdf", folder)
    meta = json.loads(path.with_suffix(".json").read_text()) | {"weights_dir": str(path.parent)}
    model = PoseSDF(PoseSDFConfig.from_dict(meta["config"]))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval(), meta


def _trunk_bound_weights(name: str, folder: Path | None) -> tuple[Path, dict, Path]:
    """(`name`.pt, its metadata, the posesdf.pt beside it) for weights trained on a frozen PoseSDF,
    which must be that posesdf.pt (the SHA-256 recorded at training)."""
    path = weights_path(name, folder)
    meta = json.loads(path.with_suffix(".json").read_text()) | {"weights_dir": str(path.parent)}
    trunk = weights_path("posesdf", folder)
    if file_sha256(trunk) != meta["posesdf_sha256"]:
        raise ValueError(f"{path} was trained on other PoseSDF weights than {trunk}; retrain it with "
                         f"`posesdf train {name} --posesdf-weights {trunk.parent}`")
    return path, meta, trunk


def load_nvf(folder: Path | None = None, device: str | torch.device = "cpu") -> tuple[NVFHead, dict]:
    """The NVF vote head in eval mode and its metadata. It must have been trained on the
    posesdf.pt beside it (checked by the SHA-256 recorded at training)."""
    path, meta, trunk = _trunk_bound_weights("nvf", folder)
    posesdf_config = PoseSDFConfig.from_dict(json.loads(trunk.with_suffix(".json").read_text())["config"])
    head = NVFHead(NVFConfig.from_dict(meta["config"]), posesdf_config)
    head.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return head.to(device).eval(), meta


def load_encoder(folder: Path | None = None, device: str | torch.device = "cpu") -> tuple[AmortisedFit, dict]:
    """The amortised fit (encoder and joint head, `models.latent_encoder`) in eval mode and its
    metadata. Like NVF's head it belongs to the posesdf.pt beside it (SHA-256 checked)."""
    path, meta, _ = _trunk_bound_weights("encoder", folder)
    model = AmortisedFit(LatentEncoderConfig.from_dict(meta["config"]))
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.to(device).eval(), meta
