"""The subject's heading from a segmented leg cloud, by RotNet.

`YawEstimator.predict(leg_points)` -> (yaw, confidence): yaw is the
direction the subject faces in the gravity frame (rad, in (-pi, pi]), the
`yaw` that `inference.canonical` expects. The cloud is subsampled with a
fixed seed, so the same input always gives the same answer. With
`turns > 1` the cloud is also fed turned about the vertical by multiples
of a bin width and the class probabilities are turned back and averaged:
a cheap test-time augmentation that makes the answer closer to rotation
equivariant.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from ..models.rotnet import RotNet, RotNetConfig, centre_cloud, decode_heading
from .pretrained import weights_path

MIN_POINTS = 50


class YawEstimator:
    def __init__(self, model: RotNet, meta: dict | None = None, device: str = "cpu", turns: int = 4,
                 seed: int = 0):
        bins = model.config.bins
        if turns < 1 or bins % turns:
            raise ValueError(f"turns must divide the {bins} bins, got {turns}")
        self.model, self.meta, self.device = model.eval().to(device), meta or {}, torch.device(device)
        self.turns, self.seed = turns, seed

    @classmethod
    def from_pretrained(cls, device: str = "cpu", weights: str | Path | None = None, turns: int = 4) -> "YawEstimator":
        """The shipped weights (posesdf_ros/weights/rotnet.*) or those in the folder `weights`."""
        path = weights_path("rotnet", Path(weights) if weights else None)
        meta = json.loads(path.with_suffix(".json").read_text())
        model = RotNet(RotNetConfig.from_dict(meta["config"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(model, meta, device, turns)

    def predict(self, leg_points: np.ndarray) -> tuple[float, float]:
        """leg_points (N, 3), gravity frame (z up, floor z = 0) -> (heading yaw rad, confidence 0..1)."""
        pts = np.asarray(leg_points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3:
            raise ValueError(f"leg_points must be (N, 3), got shape {pts.shape}")
        pts = pts[np.isfinite(pts).all(axis=1)]
        if len(pts) < MIN_POINTS:
            raise ValueError(f"only {len(pts)} finite leg points; RotNet needs at least {MIN_POINTS}")
        n = self.model.config.encoder.points
        sample = pts[np.random.default_rng(self.seed).choice(len(pts), n, replace=len(pts) < n)]
        x = centre_cloud(torch.as_tensor(sample, dtype=torch.float32))
        bins, width = self.model.config.bins, self.model.config.bin_width
        shifts = [t * bins // self.turns for t in range(self.turns)]
        turned = []
        for s in shifts:
            c, si = np.cos(s * width), np.sin(s * width)
            R = torch.tensor([[c, -si, 0.0], [si, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float32)
            turned.append(x @ R.T)
        with torch.no_grad():
            logits, residual = self.model(torch.stack(turned).to(self.device), same_distances=True)
        # Turning the input by s bins moves the answer s bins on: roll each back, then average.
        prob = torch.stack([torch.softmax(logits[i], -1).roll(-s) for i, s in enumerate(shifts)]).mean(0)
        res = torch.stack([residual[i].roll(-s) for i, s in enumerate(shifts)]).mean(0)
        yaw, conf = decode_heading(prob.log()[None].cpu(), res[None].cpu())
        return float(yaw[0]), float(conf[0].clamp(0, 1))
