"""Baseline estimators for the benchmark tables, with GaitPoseEstimator's `estimate` interface."""
from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..models.pointnet2 import PointNet2Config, PointNet2Regressor
from .canonical import first_guess, heading_assuming_canonical_view
from .estimator import EstimateResult, finite_points
from .pretrained import weights_path


@dataclass(frozen=True)
class RegressorProfile:
    name: str = "pn2"
    points: int = 1024
    seed: int = 0


class JointRegressorEstimator:
    """PN++: canonicalise (same first guess as PoseSDF), regress the nine joints, map back."""

    backend = "pn2"

    def __init__(self, model: PointNet2Regressor, meta: dict, device: str = "cpu"):
        self.model, self.meta, self.device = model.eval(), meta, torch.device(device)
        self.profile = RegressorProfile(points=model.config.points)

    @classmethod
    def from_pretrained(cls, device: str = "cpu", weights: str | Path | None = None) -> "JointRegressorEstimator":
        path = weights_path("pn2", Path(weights) if weights else None)
        meta = json.loads(path.with_suffix(".json").read_text())
        model = PointNet2Regressor(PointNet2Config.from_dict(meta["config"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(model.to(device), meta, device)

    def reset(self) -> None:
        """Stateless: nothing to forget."""

    def estimate(self, points: np.ndarray, yaw: float | None = None, camera_origin: np.ndarray | None = None,
                 track: bool = False, mesh: bool = False) -> EstimateResult:
        t0 = time.perf_counter()
        pts, reason = finite_points(points)
        if reason:
            return EstimateResult(False, reason)
        yaw_source = "given" if yaw is not None else "assumed_v1"
        if yaw is None:
            yaw = heading_assuming_canonical_view(pts, None if camera_origin is None else camera_origin[:2])
        canon = first_guess(pts, float(yaw), self.meta["normalisation_prior"], camera_origin)
        rng = np.random.default_rng(self.profile.seed)
        n = self.profile.points
        sample = pts[rng.choice(len(pts), n, replace=len(pts) < n)]
        x = torch.as_tensor(canon.to_normalised(sample), dtype=torch.float32, device=self.device)[None]
        with torch.no_grad():
            joints_n = self.model(x)[0].cpu().numpy().astype(np.float64)
        total = time.perf_counter() - t0
        return EstimateResult(True, "", canon.to_input(joints_n), None, float(yaw), yaw_source,
                              {"regression": total, "total": total})
