"""The benchmark's metrics as pure functions."""
from __future__ import annotations

import numpy as np


def joint_errors_mm(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Euclidean error per joint in mm: (..., 9, 3) x2 -> (..., 9)."""
    return 1000.0 * np.linalg.norm(np.asarray(pred, float) - np.asarray(gt, float), axis=-1)


def mpjpe_mm(pred: np.ndarray, gt: np.ndarray) -> float:
    """Mean per-joint position error (mm), no alignment."""
    return float(joint_errors_mm(pred, gt).mean())


def chamfer_1e3(a: np.ndarray, b: np.ndarray, scale: float) -> float:
    """Chamfer distance of the spec: both point sets scaled by `scale` (the
    ground truth's unit-sphere factor), mean squared nearest distance both
    ways, in units of 1e-3."""
    from scipy.spatial import cKDTree

    a, b = np.asarray(a, float) * scale, np.asarray(b, float) * scale
    d_ab = cKDTree(b).query(a)[0]
    d_ba = cKDTree(a).query(b)[0]
    return float((np.mean(d_ab ** 2) + np.mean(d_ba ** 2)) * 1e3)


def angle_error_deg(pred: np.ndarray | float, gt: np.ndarray | float) -> np.ndarray:
    """Absolute wrapped angle difference in degrees."""
    d = np.asarray(pred, float) - np.asarray(gt, float)
    return np.abs(np.rad2deg(np.arctan2(np.sin(d), np.cos(d))))


def heading_of(subject_to_gravity: np.ndarray) -> float:
    """The yaw (rad) of a subject frame's x axis in the gravity frame."""
    return float(np.arctan2(subject_to_gravity[1, 0], subject_to_gravity[0, 0]))
