"""Rigid-body geometry used at run time and by the data engine: yaw rotations and camera poses.

Frames follow REP 103: the gravity frame is z up; a camera's optical frame is x right, y down, z forward.
"""
from __future__ import annotations

import numpy as np


def yaw_matrix(yaw: float) -> np.ndarray:
    """(3, 3) rotation about z by `yaw` (rad)."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def look_at_pitched(height_m: float, pitch_rad: float, yaw_rad: float = 0.0,
                    position_xy: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """camera_to_gravity (4, 4) of a camera at `height_m`, looking along the
    gravity frame's x axis turned by `yaw_rad` and pitched down by `pitch_rad`."""
    c, s = np.cos(pitch_rad), np.sin(pitch_rad)
    forward = np.array([c, 0.0, -s])
    right = np.array([0.0, -1.0, 0.0])
    down = np.cross(forward, right)
    R = np.stack([right, down, forward], axis=1)
    T = np.eye(4)
    T[:3, :3] = yaw_matrix(yaw_rad) @ R
    T[:3, 3] = [position_xy[0], position_xy[1], height_m]
    return T


def standing_legs(points: int = 2000, seed: int = 0) -> np.ndarray:
    """(points, 3) on two upright cylinders (radius 6 cm, 0.85 m tall, 20 cm apart, along y) on the
    floor z = 0 at the origin: a crude pair of legs facing +x, for warming models up before live data."""
    rng = np.random.default_rng(seed)
    angle, height = rng.uniform(0, 2 * np.pi, points), rng.uniform(0.0, 0.85, points)
    side = np.where(np.arange(points) % 2 == 0, 0.1, -0.1)
    return np.column_stack([0.06 * np.cos(angle), side + 0.06 * np.sin(angle), height])
