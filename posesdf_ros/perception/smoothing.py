"""Depth noise taken off the leg points before a fit.

Depth cameras scatter each point along its ray by millimetres at 1 m and
centimetres at 3 to 5 m (the error grows with z^2). A fit to 256 raw points
follows that scatter, and not evenly: a point pushed into a leg costs the
fit less than one pushed out (inside, another part of the skin is often
nearer), so the fitted legs drift toward the camera as the noise grows
(on the far half of the shifted split, 15 mm on average).

`range_fit` (with the camera's position) fits each point's range along its
ray to its neighbours in direction: a plane in range over the nearest
directions, refitted without the residuals over three robust deviations (the
other leg behind, a flying pixel). It averages the scatter along the ray,
where it is, and leaves the point's direction, which the camera measures
well. `neighbourhood_mean` (without it) takes the mean of the nearest points
in space, which a slab of noise centimetres thick biases toward the
point's own depth.
"""
from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree


def smoothed(cloud: np.ndarray, queries: np.ndarray, neighbours: int,
             camera_origin: np.ndarray | None = None) -> np.ndarray:
    """The queries (M, 3) with the depth noise averaged over `neighbours` points of `cloud` (N, 3):
    `range_fit` when the camera's position (3,) is known, else `neighbourhood_mean`; (M, 3)."""
    if camera_origin is None:
        return neighbourhood_mean(cloud, queries, neighbours)
    return range_fit(cloud, queries, camera_origin, neighbours)


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


def range_fit(cloud: np.ndarray, queries: np.ndarray, camera_origin: np.ndarray, neighbours: int,
              outlier_deviations: float = 3.0) -> np.ndarray:
    """Each of the queries (M, 3) moved along its ray from `camera_origin` (3,) to the range that a
    plane fitted to its `neighbours` nearest points of `cloud` (N, 3) in direction gives there; (M, 3).

    The plane is range = a + b u + c v over the neighbours' directions (u, v: tangent coordinates
    at the query's direction), fitted by least squares, then again without the neighbours whose
    residual exceeds `outlier_deviations` robust standard deviations (1.4826 x the median absolute
    residual, at least 1 mm). Fewer than 3 neighbours, or a cloud smaller than that, returns the
    queries unchanged; so does a query at the camera's position (an invalid depth read as zero), whose
    ray is undefined; cloud points there are no one's neighbours.
    """
    queries = np.asarray(queries, float)
    origin = np.asarray(camera_origin, float)
    fitted = queries.copy()
    movable = np.linalg.norm(queries - origin, axis=1) > 1e-6
    neighbourhoods = _range_neighbourhoods(cloud, queries[movable], origin, neighbours)
    if neighbourhoods is None:
        return fitted
    query_dirs, offsets, target = neighbourhoods
    design = np.concatenate([np.ones_like(offsets[..., :1]), offsets], axis=-1)      # (M, k, 3)
    coef, _, _ = _robust_least_squares(design, target, outlier_deviations, min_spread=1e-3)
    fitted[movable] = origin + query_dirs * coef[:, :1]
    return fitted


def depth_noise(cloud: np.ndarray, camera_origin: np.ndarray, neighbours: int = 128, queries: int = 64,
                smoothing_neighbours: int = 16, sample: int = 3000, outlier_deviations: float = 3.0) -> float:
    """The depth noise a fit would still see in a leg cloud (N, 3) seen from `camera_origin` (3,), metres:
    up to `sample` of its points smoothed as the fit's are (`range_fit` over `smoothing_neighbours`),
    then at `queries` of those the robust standard deviation (1.4826 x the median absolute residual,
    without the residuals over `outlier_deviations` of it) of their ranges about a quadratic over the
    `neighbours` nearest directions; the median over the queries. Noise correlated over patches
    (structured light's blocks) survives the smoothing and is what this measures. 0.0 for a cloud of
    fewer than 6 points; deterministic (fixed draws)."""
    cloud = np.asarray(cloud, float)
    origin = np.asarray(camera_origin, float)
    if len(cloud) < 6:
        return 0.0
    rng = np.random.default_rng(0)
    subset = cloud[rng.choice(len(cloud), min(sample, len(cloud)), replace=False)]
    subset = range_fit(cloud, subset, origin, smoothing_neighbours)
    at = subset[rng.choice(len(subset), min(queries, len(subset)), replace=False)]
    neighbourhoods = _range_neighbourhoods(subset, at, origin, neighbours)
    if neighbourhoods is None:
        return 0.0
    _, offsets, target = neighbourhoods
    reach = np.maximum(np.abs(offsets[..., 0]).max(axis=1), 1e-9)[:, None]
    u, v = offsets[..., 0] / reach, offsets[..., 1] / reach
    design = np.stack([np.ones_like(u), u, v, u * u, u * v, v * v], axis=-1)         # (M, k, 6)
    _, residual, inlier = _robust_least_squares(design, target, outlier_deviations, min_spread=1e-4)
    deviations = [1.4826 * np.median(r[keep > 0]) for r, keep in zip(residual, inlier)]
    return float(np.median(deviations))


def _robust_least_squares(design: np.ndarray, target: np.ndarray, outlier_deviations: float, min_spread: float
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Batched least squares of `target` (M, k) on `design` (M, k, d), fitted once more without the
    residuals over `outlier_deviations` robust standard deviations (1.4826 x the median absolute
    residual, at least `min_spread`): the refit's coefficients (M, d), its absolute residuals (M, k)
    and, by the same rule, its inliers (M, k; 1.0 or 0.0)."""
    inlier = np.ones_like(target)
    for _ in range(2):
        weighted = design * inlier[..., None]
        normal = np.einsum("mki,mkj->mij", weighted, design) + 1e-12 * np.eye(design.shape[-1])
        coef = np.linalg.solve(normal, np.einsum("mki,mk->mi", weighted, target)[..., None])[..., 0]
        residual = np.abs(target - np.einsum("mki,mi->mk", design, coef))
        spread = np.maximum(1.4826 * np.median(residual, axis=1, keepdims=True), min_spread)
        inlier = (residual <= outlier_deviations * spread).astype(float)
    return coef, residual, inlier


def _range_neighbourhoods(cloud: np.ndarray, queries: np.ndarray, origin: np.ndarray, neighbours: int
                          ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """For each query (M, 3), none at `origin`: its direction from `origin` (M, 3), the tangent
    coordinates (M, k, 2) of the directions of its `neighbours` nearest points of `cloud` (N, 3) in
    direction, and those points' ranges (M, k); None with fewer than 3 such points or no query.
    Cloud points at the origin (an invalid depth read as zero) are on no ray and no one's neighbours."""
    to_cloud = np.asarray(cloud, float) - origin
    ranges = np.linalg.norm(to_cloud, axis=1)
    on_a_ray = ranges > 1e-6
    to_cloud, ranges = to_cloud[on_a_ray], ranges[on_a_ray]
    k = min(int(neighbours), len(ranges))
    if k < 3 or not len(queries):
        return None
    directions = to_cloud / ranges[:, None]
    query_dirs = (queries - origin) / np.linalg.norm(queries - origin, axis=1, keepdims=True)
    _, idx = cKDTree(directions).query(query_dirs, k=k)
    # Tangent axes at each query's direction (any axis not along it starts the cross products).
    helper = np.where(np.abs(query_dirs[:, 2:]) < 0.9, [[0.0, 0.0, 1.0]], [[1.0, 0.0, 0.0]])
    e1 = np.cross(query_dirs, helper)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(query_dirs, e1)
    offsets = directions[idx] - query_dirs[:, None]                                   # (M, k, 3)
    tangent = np.stack([np.einsum("mkc,mc->mk", offsets, e1), np.einsum("mkc,mc->mk", offsets, e2)], axis=-1)
    return query_dirs, tangent, ranges[idx]
