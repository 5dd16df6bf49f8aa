"""Lower-limb points of a person's window by LegSegNet (see `models.legseg`).

`LegClassifier` plugs into `perception.segment_legs(..., leg_classifier=)`:
the segmentation finds the person and its pelvis guess, hands over the
person's points below `pelvis guess + window_above_pelvis` with their
heights above the floor, and keeps those `leg_mask` marks. The network
labels a fixed-seed subsample of the window (so the same window always
gives the same answer); every other point takes the inverse-distance
mean of its three nearest labelled neighbours' probabilities, which on
windows of 6k to 19k points matched labelling each point by the network
at two thirds of the cost. That mean is taken once per 1.5 cm voxel of
the window (`INTERPOLATION_VOXEL_M`), at the voxel's first point: on a
test and a val build the 512-point model's pooled precision / recall
went from 0.970 / 0.973 to 0.973 / 0.971 and from 0.974 / 0.974 to
0.977 / 0.972, at three quarters of the classifier's time.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree

from ..models.legseg import LegSegConfig, LegSegNet, to_network_frame
from ..perception.segment import voxel_index
from .pretrained import weights_path

#: The shipped LegSegNets by name -> their weights' file stem in posesdf_ros/weights: "small" (1,024
#: points, the evaluation commands' default) and "fast" (512 points with half the neighbours per centre, a
#: quarter of the work: the canonicaliser's default). docs/segmentation.md compares them.
LEGSEG_MODELS = {"small": "legseg", "fast": "legseg_fast"}
#: The window's points are labelled per voxel of this size (m): every point of a voxel takes its first point's
#: interpolated probability.
INTERPOLATION_VOXEL_M = 0.015


class LegClassifier:
    def __init__(self, model: LegSegNet, meta: dict | None = None, device: str = "cpu",
                 threshold: float | None = None, seed: int = 0):
        """threshold: on the leg probability; None takes the weights' tuned one (`threshold` in
        legseg.json, chosen on the val split by `posesdf train legseg --tune-on`), else 0.5."""
        threshold = float((meta or {}).get("threshold", 0.5)) if threshold is None else threshold
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
        self.model, self.meta, self.device = model.eval().to(device), meta or {}, torch.device(device)
        self.window_above_pelvis = float(self.meta.get("window_above_pelvis", 0.30))
        self.threshold, self.seed = threshold, seed

    @classmethod
    def from_pretrained(cls, device: str = "cpu", weights: str | Path | None = None,
                        threshold: float | None = None, model: str = "small") -> "LegClassifier":
        """The shipped weights of `model` (a name of `LEGSEG_MODELS`) or legseg.pt/json in the folder
        `weights`."""
        if model not in LEGSEG_MODELS:
            raise ValueError(f"unknown LegSegNet {model!r}; expected one of {tuple(LEGSEG_MODELS)}")
        path = (weights_path("legseg", Path(weights)) if weights else weights_path(LEGSEG_MODELS[model]))
        meta = json.loads(path.with_suffix(".json").read_text())
        model = LegSegNet(LegSegConfig.from_dict(meta["config"]))
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        return cls(model, meta, device, threshold)

    @property
    def description(self) -> str:
        """What picks the leg points, for reports: "LegSegNet (N points)"."""
        return f"LegSegNet ({self.model.config.points} points)"

    def leg_probability(self, points: np.ndarray, height: np.ndarray) -> np.ndarray:
        """points (M, 3) of one person's window (gravity frame), height (M,) above the floor ->
        (M,) probability that each lies on the lower limbs."""
        pts = torch.as_tensor(np.asarray(points, np.float32))
        h = torch.as_tensor(np.asarray(height, np.float32))
        if pts.ndim != 2 or pts.shape[1] != 3 or h.shape != pts.shape[:1]:
            raise ValueError(f"points must be (M, 3) with heights (M,), got {tuple(pts.shape)}, {tuple(h.shape)}")
        if len(pts) == 0:
            return np.zeros(0)
        n = self.model.config.points
        pick = np.random.default_rng(self.seed).choice(len(pts), n, replace=len(pts) < n)
        x = to_network_frame(pts, h, pts[:, :2].mean(0))
        with torch.no_grad():
            sampled = torch.sigmoid(self.model(x[pick][None].to(self.device))[0]).cpu().numpy()
        # One query per occupied voxel (its first point stands for it): a window's 6k to 19k points
        # fill 2k to 3k voxels of 1.5 cm, far finer than the labelled points' spacing (about 5 cm).
        xyz = x.numpy()
        _, first, members = np.unique(voxel_index(xyz, INTERPOLATION_VOXEL_M)[0], return_index=True,
                                      return_inverse=True)
        # As many query threads as torch may use (the node's `torch_threads`).
        distance, nearest = cKDTree(xyz[pick]).query(xyz[first], k=3, workers=torch.get_num_threads())
        weight = 1.0 / (distance ** 2 + 1e-8)
        return ((sampled[nearest] * weight).sum(1) / weight.sum(1))[members]

    def leg_mask(self, points: np.ndarray, height: np.ndarray) -> np.ndarray:
        """(M,) bool: the window's points on the lower limbs."""
        return self.leg_probability(points, height) > self.threshold


def load_for_cli(choice: str, weights: str | Path | None = None, device: str = "cpu") -> "LegClassifier | None":
    """The `--classifier legseg|legseg-fast|none` option of the evaluation commands: the classifier, or
    None for the rule-based pelvis crop. Missing weights stop the command with what to do."""
    if choice == "none":
        return None
    try:
        return LegClassifier.from_pretrained(device, weights, model="fast" if choice == "legseg-fast" else "small")
    except FileNotFoundError as err:
        raise SystemExit(f"{err}\n(or pass --classifier none for the rule-based pelvis crop)") from None
