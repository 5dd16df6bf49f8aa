"""Marching cubes (scikit-image) on the shape SDF."""
from __future__ import annotations

from typing import Callable

import numpy as np
import torch


def extract_mesh(sdf: Callable[[torch.Tensor], torch.Tensor], resolution: int = 64, top: float = 1.0,
                 chunk: int = 65_536, device: str | torch.device = "cpu") -> tuple[np.ndarray, np.ndarray]:
    """Zero level set of `sdf` ((N, 3) -> (N,), normalised units) inside the unit cube,
    cut at height `top` (faces entirely above it are dropped, the shape is
    only defined below the lower-limb crop). Returns vertices (V, 3), faces (F, 3).
    """
    from skimage.measure import marching_cubes

    axis = torch.linspace(-1, 1, resolution)
    grid = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)
    values = torch.empty(len(grid))
    with torch.no_grad():
        for i in range(0, len(grid), chunk):
            values[i:i + chunk] = sdf(grid[i:i + chunk].to(device)).cpu()
    volume = values.reshape(resolution, resolution, resolution).numpy()
    if not (volume.min() < 0 < volume.max()):
        return np.zeros((0, 3)), np.zeros((0, 3), dtype=np.int64)
    step = 2.0 / (resolution - 1)
    verts, faces, _, _ = marching_cubes(volume, level=0.0, spacing=(step, step, step))
    verts = verts - 1.0
    keep = (verts[faces][:, :, 2] < top).any(axis=1)
    faces = faces[keep]
    used = np.unique(faces)
    remap = np.full(len(verts), -1)
    remap[used] = np.arange(len(used))
    return verts[used], remap[faces]
