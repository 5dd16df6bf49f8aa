"""Depth noise taken off the leg points before a fit.

Depth cameras scatter each point along its ray by millimetres at 1 m and
centimetres at 3 to 5 m (the error grows with z^2). A fit to 256 raw points
follows that scatter; the mean of each point's nearest neighbours in the
whole leg cloud keeps the surface and averages the scatter away (`fast` on
val scenes: 19.2 -> 16.5 mm with 16 neighbours, docs/posesdf.md).
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def neighbourhood_mean(cloud: np.ndarray, queries: np.ndarray, neighbours: int) -> np.ndarray:
    """Each of the queries (M, 3) replaced by the mean of its `neighbours` nearest points of
    `cloud` (N, 3), itself included when it is one of them; (M, 3). Fewer than 2 neighbours,
    or a cloud smaller than that, returns the queries unchanged."""
    queries = np.asarray(queries, float)
    k = min(int(neighbours), len(cloud))
    if k < 2:
        return queries.copy()
    _, idx = cKDTree(cloud).query(queries, k=k)
    return np.asarray(cloud, float)[idx].mean(axis=1)
