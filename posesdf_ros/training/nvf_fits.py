"""Fitted codes of depth views for the NVF head: what the head reads at inference.

The head first learnt from each training shape's own training code and
points all round its surface. At inference it reads a code *fitted* to one
partial view, which is least right where the view is blind, and it votes
from that view's points and from probes near the fitted shape. So the head
is also trained on such fits: `collect_fits` runs the estimator (PoseSDF,
a given profile, ground-truth heading and leg points, as `posesdf eval`'s
default) over a val build (training bodies, scenes like the test split's)
and keeps, per scene, the fitted code, the voters the nvf backend would use
(the observed points and the near-surface probes, refined normalised frame)
and the ground-truth joints in that frame. The sphere-centre joints of the
same fit are kept too (their error in mm), the reference the head must beat.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.dataset import load_manifest
from ..evaluation.benchmark import leg_input, select_samples, shard_of
from ..evaluation.metrics import heading_of, joint_errors_mm
from ..inference.nvf import near_surface_probes

FITS_FILE = "fits_{index}of{count}.npz"


def collect_fits(data: Path, out: Path, profile: str = "accurate", weights: Path | None = None, probes: int = 2048,
                 band: float = 0.04, limit: int | None = None, shard: tuple[int, int] = (0, 1),
                 device: str = "cpu", progress: bool = True) -> Path:
    """Fit every scene of the val build `data` (or every n-th of `shard` (i, n)) and write
    `out/fits_IofN.npz`; returns its path."""
    from tqdm import tqdm

    from ..inference.estimator import GaitPoseEstimator

    manifest = load_manifest(data)
    if manifest.get("split") != "val":
        raise ValueError(f"{data} is a {manifest.get('split')} build; fits are made on training bodies "
                         "(`posesdf data build --split val`), never on the test split")
    estimator = GaitPoseEstimator.from_pretrained("posesdf", profile, device, weights, rotnet=False,
                                                  leg_classifier=False)
    index, count = shard
    entries = shard_of(select_samples(data, "all", limit), shard)
    rows: dict[str, list] = {k: [] for k in ("file", "code", "voters", "observed", "joints", "scale", "sphere_mm")}
    for i, e in enumerate(tqdm(entries, desc="fits", unit="scene", disable=not progress)):
        with np.load(Path(data) / e["file"]) as z:
            a = {k: z[k] for k in z.files}
        res = estimator.estimate(leg_input(a), yaw=heading_of(a["subject_to_gravity"]),
                                 camera_origin=a["camera_to_gravity"][:3, 3])
        if not res.valid:
            continue
        near = near_surface_probes(estimator.model, res.fit.z, probes, band,
                                   torch.Generator().manual_seed(index + count * i))
        observed = res.canonical_points
        rows["file"].append(e["file"])
        rows["code"].append(res.latent)
        rows["voters"].append(np.concatenate([observed, near.cpu().numpy()]).astype(np.float32))
        rows["observed"].append(len(observed))
        rows["joints"].append(res.to_fit_frame(a["joints"]))
        rows["scale"].append(float(res.canonical.scale * torch.exp(res.fit.log_scale)))
        rows["sphere_mm"].append(joint_errors_mm(res.joints, a["joints"]))
    if not rows["code"]:
        raise ValueError(f"no scene of {data} (shard {index}/{count}) could be fitted")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / FITS_FILE.format(index=index, count=count)
    lengths = np.array([len(v) for v in rows["voters"]])
    np.savez_compressed(path, files=np.array(rows["file"]), code=np.stack(rows["code"]).astype(np.float32),
                        voters=np.concatenate(rows["voters"]), voter_counts=lengths,
                        observed_counts=np.array(rows["observed"]), joints=np.stack(rows["joints"]).astype(np.float32),
                        scale=np.array(rows["scale"]), sphere_mm=np.stack(rows["sphere_mm"]))
    (out / "fits.json").write_text(json.dumps({"data": str(data), "data_seed": manifest.get("seed"),
                                               "profile": profile, "probes": probes, "band": band,
                                               "weights": str(weights) if weights else "shipped"}, indent=1))
    return path


@dataclass
class FittedSet:
    """Fitted scenes for the head: codes (S, L), voters (S, P, 3) padded by repetition, ground-truth
    joints (S, 9, 3), refined normalised frame; scale (S,) per metre; sphere_mm (S, 9) the
    sphere-centre joint errors of the same fits."""
    code: torch.Tensor
    voters: torch.Tensor
    counts: torch.Tensor
    observed: torch.Tensor
    joints: torch.Tensor
    scale: np.ndarray
    sphere_mm: np.ndarray

    @classmethod
    def load(cls, folder: Path) -> "FittedSet":
        files = sorted(Path(folder).glob("fits_*of*.npz"))
        if not files:
            raise FileNotFoundError(f"no fits_*.npz in {folder}; make them with `posesdf train nvf-fits`")
        parts = []
        for f in files:
            with np.load(f) as z:
                parts.append({k: z[k] for k in z.files})
        voters, counts, observed = [], [], []
        for p in parts:
            voters += np.split(p["voters"], np.cumsum(p["voter_counts"])[:-1])
            counts += list(p["voter_counts"])
            observed += list(p["observed_counts"])
        width = max(counts)
        # Pad by repeating each scene's own voters, so a uniform draw over the padded rows stays
        # (nearly) uniform over its voters and decoding all rows counts each voter once or twice.
        padded = np.stack([np.resize(v, (width, 3)) for v in voters])
        cat = lambda k: np.concatenate([p[k] for p in parts])  # noqa: E731
        return cls(torch.from_numpy(cat("code")).float(), torch.from_numpy(padded).float(),
                   torch.tensor(counts), torch.tensor(observed), torch.from_numpy(cat("joints")).float(),
                   cat("scale"), cat("sphere_mm"))

    def __len__(self) -> int:
        return len(self.code)

    def draw(self, ids: torch.Tensor, n: int, gen: torch.Generator) -> torch.Tensor:
        """(B, n, 3) random voters of the scenes."""
        idx = (torch.rand(len(ids), n, generator=gen) * self.counts[ids, None]).long()
        return self.voters[ids[:, None], idx]
