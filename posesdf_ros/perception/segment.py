"""Segment the target person's lower limbs from a whole scene cloud.

Input: a depth camera's scene cloud in the gravity-aligned frame (x
forward, y left, z up, floor near z = 0). Output: the indices of the input
points on the target's legs below the crop plane, pelvis + `crop_margin`
(benchmark spec, "Lower-limb shape"). Steps, each in its own function:

1. finite points inside the region of interest;
2. the floor plane (RANSAC), heights above it;
3. clusters: connected cells of a bird's-eye occupancy grid of the points
   above the floor; oversize clusters lose their vertical planes (a wall
   the person stands at) and are clustered again, and if still oversize,
   again with denser cells (flying pixels bridging a walker to a chair);
4. the target: the person-sized, person-like cluster nearest to the
   previous centre, or else to the sensor, with its pieces (its other leg
   up close, a far leg that the near one cuts off) and the sparse cells at
   its edge;
5. flying pixels dropped by point density;
6. the pelvis height (body proportions when the head is in view, else a
   prior) and the crop;
7. parts that end above the reach of the hands (a hand cut free by the
   crop) dropped;
8. pieces apart from the legs and wider than a limb (a box by the legs)
   dropped.

Given a `leg_classifier` (`inference.legseg.LegClassifier`, a learned
model, so it lives outside this module), steps 6 and 7 keep only the
pelvis guess: the classifier labels the person's points below the guess
+ its `window_above_pelvis`, and its leg points replace the crop. Step 8
follows either.

Steps 1 to 4 need only the scene's layout and run on every
(`coarse_decimation`²)-th point; the target's points are then every
input point in its bird's-eye cells, so the legs keep full density.
Heavy steps work on grids (cells, voxels) and map back to the original
points through each point's cell, so the indices are those of the input.
Core module: numpy, scipy and threadpoolctl only (no ROS, no torch; planes by its own
seeded RANSAC, so the same cloud always gives the same result).
"""
from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree
from threadpoolctl import ThreadpoolController


@dataclass(frozen=True)
class SegmentationConfig:
    """Every knob of `segment_legs`; metres, degrees, point counts. See docs/segmentation.md."""

    # Region of interest, around the sensor's vertical axis.
    roi_min_range: float = 0.3          # horizontal distance from the sensor
    roi_max_range: float = 6.0
    roi_min_z: float = -0.5
    roi_max_z: float = 2.5
    # Floor plane: RANSAC on a subsample of the low points.
    floor_search_height: float = 0.3    # only points with |z| below this may be floor
    floor_sample_points: int = 2000     # about; every k-th ROI point, then the low ones
    floor_ransac_distance: float = 0.02
    floor_ransac_iterations: int = 60
    floor_max_tilt_deg: float = 10.0    # between the plane's normal and +z
    floor_max_offset: float = 0.15      # largest |z| of the plane below the sensor
    floor_min_inliers: int = 100        # of the subsample
    floor_max_planes: int = 3           # planes tried before falling back to z = 0
    floor_clearance: float = 0.02       # points this close to the floor are floor
    # ... and, for the clustering, points within this many times the floor's depth noise at their range
    # (read off the points below the floor), up to floor_max_clearance: a noisy floor must not join things.
    floor_noise_sigmas: float = 2.5
    floor_max_clearance: float = 0.10
    # Clustering: connected cells of a bird's-eye occupancy grid.
    cluster_cell: float = 0.05
    cluster_min_cell_points: int = 10   # sparser cells (floor noise, flying pixels, thin bridges) are empty
    # A cluster still too long for a person once its walls are out is clustered again with cells needing this many
    # times as many points: a walker joined to a chair or a wall's remains through flying pixels comes apart. Only
    # where the denser cells keep `bridge_min_kept` of its points: a cluster thin all over (noise) is no bridge.
    bridge_cell_factor: int = 2
    bridge_min_kept: float = 0.75
    cluster_min_points: int = 30        # smaller clusters are dropped (larger ones may join the target)
    # What a person looks like.
    person_min_height: float = 0.8      # visible top above the floor
    person_max_height: float = 2.3
    person_max_footprint: float = 1.4   # longest horizontal extent (stride, arm swing)
    person_min_points: int = 300
    person_foot_height: float = 0.2     # a person has points this close to the floor ...
    person_hidden_foot_height: float = 0.8  # ... or, standing tall, this close (feet the sensor misses)
    person_max_planar_fraction: float = 0.94  # share on the two best planes (boxes, walls: ~1)
    horizontal_face_fraction: float = 0.03  # share on a horizontal plane (a box top)
    horizontal_face_tilt_deg: float = 15.0
    planarity_sample_points: int = 600
    planarity_iterations: int = 60
    planarity_slab: float = 0.01        # plus twice the depth noise at the cluster's range
    planarity_wide_slab: float = 0.05   # wider (over about 3.55 m): only the first plane counts (`is_flat`)
    depth_noise: tuple[float, float, float] = (0.0012, 0.0019, 0.4)  # sigma(r) = a + b (r - c)^2
    # Walls or boxes merged with the person: vertical planes taken out of oversize clusters.
    wall_ransac_distance: float = 0.04
    wall_max_tilt_deg: float = 10.0     # between the plane's normal and the horizontal
    wall_max_planes: int = 2
    # A piece left by the walls whose points (90th percentile) all lie this near them is the walls' halo (noisy
    # points just outside the planes' slab, a thin post against the wall), not a person: a body is 0.2 m thick.
    wall_halo: float = 0.1
    # Pieces of the target (its legs up close, a far leg the near one cuts off).
    fragment_radius: float = 0.5        # a piece's centre is this close to the target's
    fragment_gap: float = 0.1           # a person-like piece comes this close (gap between cells)
    # Flying pixels: point density in a 3 x 3 x 3 voxel neighbourhood.
    outlier_voxel: float = 0.02
    outlier_density_fraction: float = 0.06  # of the count a face-on surface gives at that range
    sensor_focal_px: float = 464.0      # depth camera focal length (spec: D435-like)
    # ... or most of its nearest rays (directions from the sensor) end within a tolerance of its range: a camera
    # coarser than `sensor_focal_px` gives its surfaces too few points for the density test, while a mixed
    # pixel's neighbouring rays end on the two surfaces, in front of it and behind it. 0 rays: off.
    ray_neighbours: int = 8
    ray_neighbours_close: int = 5
    ray_range_tolerance: float = 0.02   # m, plus `ray_noise_sigmas` x sqrt(2) x the spec's depth noise there
    ray_noise_sigmas: float = 2.0
    # The frame's top edge (`frame_top`): fitted per azimuth bin; a body within `frame_cut_px` of it is cut.
    frame_edge_bin_deg: float = 2.0
    frame_edge_span_deg: float = 20.0   # the edge's highest and lowest points differ by less (roll, pitch)
    frame_edge_slack_px: float = 3.0
    frame_cut_px: float = 2.0
    # Pelvis height and crop.
    pelvis_prior: float = 0.89          # when the head is out of view (mean of training bodies)
    pelvis_to_stature: float = 0.526    # pelvis height / top of the head (training bodies)
    head_band: float = 0.05             # this far below the top lies the crown (or the cut edge)
    head_max_edge_ratio: float = 0.65   # crown: its topmost pixel row is narrower than this share of the band
    head_width_depth: tuple[float, float] = (0.08, 0.12)  # below the top: where the head's width is read
    head_max_width: float = 0.25        # a head is narrower; a torso cut by the frame is wider
    head_min_stature: float = 1.4       # a lower top is a body cut by the frame, not a head
    crop_margin: float = 0.10           # crop plane above the pelvis (benchmark spec)
    heading_below_pelvis: float = 0.10  # RotNet reads only the legs this far below the pelvis estimate,
    heading_min_points: int = 200       # ... unless fewer are left there
    # Hands cut free by the crop.
    limb_voxel: float = 0.015           # connectivity resolution
    hand_reach: float = 0.3             # fingertips hang at most this far below the pelvis
    # Clutter by the legs that the leg points took in: pieces (at `detach_voxel`) apart from the legs' piece
    # (the largest reaching within `legs_top_tolerance` of the highest leg point) wider than a limb.
    detach_voxel: float = 0.04
    legs_top_tolerance: float = 0.10
    limb_max_spread: float = 0.09       # a piece's second principal standard deviation (m)
    random_seed: int = 0                # of the RANSAC hypotheses
    # ROI, floor, clusters and the target's choice see every (n x n)-th point (`decimated(n)`'s thresholds);
    # the target's points are then taken at full density through its bird's-eye cells. 1: all points.
    coarse_decimation: int = 2
    decimation: int = 1                 # the cloud keeps every n-th pixel row and column (`decimate`)

    def decimated(self, factor: int) -> "SegmentationConfig":
        """The settings for a cloud thinned by `decimate(cloud, factor)`: point-count thresholds
        divided by factor², rounded up (each surface keeps that share of its points; the flying-pixel test's
        expected density follows `decimation`). Fixed-size samples (floor, planarity), lengths and
        the angles of the sensor's pixels stay."""
        if factor < 1:
            raise ValueError(f"decimation factor must be at least 1, got {factor}")
        if factor == 1:
            return self
        area = factor * factor
        return replace(self, cluster_min_cell_points=max(1, math.ceil(self.cluster_min_cell_points / area)),
                       cluster_min_points=max(1, math.ceil(self.cluster_min_points / area)),
                       person_min_points=max(1, math.ceil(self.person_min_points / area)),
                       heading_min_points=max(1, math.ceil(self.heading_min_points / area)),
                       decimation=self.decimation * factor)


@dataclass
class SegmentationResult:
    """`indices` index the input cloud; heights are above the fitted floor plane."""

    valid: bool
    reason: str = ""                    # "" when valid
    indices: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    centre: np.ndarray = field(default_factory=lambda: np.full(2, np.nan))  # xy of the target cluster
    pelvis_height: float = float("nan")
    crop_height: float = float("nan")
    pelvis_cue: str = ""                # "head" (proportions of the visible body) or "prior"
    heading_indices: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))  # RotNet's input
    timings: dict[str, float] = field(default_factory=dict)  # stage -> seconds, and "total"


class _StageTimer:
    def __init__(self):
        self.timings: dict[str, float] = {}
        self._start = self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.timings[stage] = now - self._last
        self._last = now

    def finish(self) -> dict[str, float]:
        self.timings["total"] = time.perf_counter() - self._start
        return self.timings


# ---------------------------------------------------------------- decimation

def decimate(cloud: np.ndarray, factor: int) -> np.ndarray:
    """The finite points of `cloud` thinned by `factor`: (M, 3) float32.

    An organised cloud (H, W, 3) keeps every `factor`-th row and column,
    as a depth camera's decimation filter does; a flat one (N, 3), or an
    unorganised one (1, N, 3), keeps every factor²-th point. Either way about 1/factor² of the points are
    left; segment them with `SegmentationConfig.decimated(factor)`.
    """
    if factor < 1:
        raise ValueError(f"decimation factor must be at least 1, got {factor}")
    cloud = np.asarray(cloud, np.float32)
    if cloud.ndim == 3 and cloud.shape[0] == 1:
        cloud = cloud[0]
    if cloud.ndim == 3 and cloud.shape[2] == 3:
        flat = cloud[::factor, ::factor].reshape(-1, 3)
    elif cloud.ndim == 2 and cloud.shape[1] == 3:
        flat = cloud[::factor * factor]
    else:
        raise ValueError(f"cloud must be (H, W, 3) or (N, 3), got {cloud.shape}")
    # Per-column tests and compress: several times faster than isfinite(flat).all(axis=1) and a mask.
    finite = np.isfinite(flat[:, 0]) & np.isfinite(flat[:, 1]) & np.isfinite(flat[:, 2])
    return np.compress(finite, flat, axis=0)


# ---------------------------------------------------------------- region of interest

def region_of_interest(points: np.ndarray, sensor: np.ndarray, config: SegmentationConfig) -> np.ndarray:
    """Indices of the finite points within the ROI (NaN and inf fail every comparison)."""
    dx, dy, z = points[:, 0] - sensor[0], points[:, 1] - sensor[1], points[:, 2]
    horizontal = dx * dx + dy * dy
    with np.errstate(invalid="ignore"):
        inside = ((horizontal >= config.roi_min_range ** 2) & (horizontal <= config.roi_max_range ** 2)
                  & (z >= config.roi_min_z) & (z <= config.roi_max_z))
    return np.flatnonzero(inside)


# ---------------------------------------------------------------- planes

@dataclass(frozen=True)
class Plane:
    """normal . p + offset = signed distance of p; `normal` is a unit vector."""

    normal: np.ndarray
    offset: float

    def distance(self, points: np.ndarray) -> np.ndarray:
        return points @ self.normal.astype(points.dtype) + points.dtype.type(self.offset)


def fit_plane(points: np.ndarray, distance: float, iterations: int, seed: int) -> tuple[Plane, np.ndarray]:
    """The plane with the most points within `distance` (RANSAC, refined by least squares), and its inlier mask.

    Numpy, all hypotheses at once, with its own seeded generator: Open3D's
    `segment_plane` (0.20) did not repeat its first call in a process
    despite `open3d.utility.random.seed`. Needs at least three points.
    """
    points = np.asarray(points, np.float64)
    a, b, c = points[np.random.default_rng(seed).integers(0, len(points), (3, iterations))]
    normals = np.cross(b - a, c - a)
    lengths = np.linalg.norm(normals, axis=1)
    good = lengths > 1e-12
    normals = normals[good] / lengths[good, None]
    offsets = -np.einsum("ij,ij->i", normals, a[good])
    if good.any():
        near = np.abs(points @ normals.T + offsets) < distance
        inliers = near[:, np.argmax(near.sum(axis=0))]
    else:  # every sampled triple was degenerate
        inliers = np.ones(len(points), bool)
    centroid = points[inliers].mean(axis=0)
    normal = np.linalg.svd(points[inliers] - centroid, full_matrices=False)[2][-1]
    plane = Plane(normal, float(-normal @ centroid))
    return plane, np.abs(plane.distance(points)) < distance


# ---------------------------------------------------------------- floor

GRAVITY_FLOOR = Plane(np.array([0.0, 0.0, 1.0]), 0.0)


def fit_floor(points: np.ndarray, sensor_xy: np.ndarray, config: SegmentationConfig) -> Plane:
    """The floor by RANSAC on a subsample of the low points; its normal points up.

    A plane too tilted or too far from z = 0 (a box top, the foot of a
    wall) is set aside with its inliers and the search goes on, so a floor
    that clutter partly hides is still found; with none, the floor is z = 0.
    """
    thinned = points[::max(1, len(points) // (2 * config.floor_sample_points))]
    sample = thinned[np.abs(thinned[:, 2]) < config.floor_search_height]
    max_tilt = np.deg2rad(config.floor_max_tilt_deg)
    for _ in range(config.floor_max_planes):
        if len(sample) < config.floor_min_inliers:
            break
        plane, inliers = fit_plane(sample, config.floor_ransac_distance, config.floor_ransac_iterations,
                                   config.random_seed)
        up = 1.0 if plane.normal[2] >= 0 else -1.0
        normal, offset = up * plane.normal, up * plane.offset
        if inliers.sum() >= config.floor_min_inliers and np.arccos(min(normal[2], 1.0)) <= max_tilt:
            floor_z_at_sensor = -(normal[:2] @ sensor_xy + offset) / normal[2]
            if abs(floor_z_at_sensor) <= config.floor_max_offset:
                return Plane(normal, float(offset))
        sample = sample[~inliers]
    return GRAVITY_FLOOR


def floor_noise(points: np.ndarray, height: np.ndarray, sensor: np.ndarray, config: SegmentationConfig) -> float | None:
    """c of the floor's height noise sigma = c r^2 at horizontal range r (depth noise grows with the square of
    the range), read off the points below the floor plane, where nothing stands (the sigma of a half-normal);
    None with fewer than `floor_min_inliers` of them."""
    range2 = (points[:, 0] - sensor[0]) ** 2 + (points[:, 1] - sensor[1]) ** 2
    below = (height < 0) & (height > -config.floor_max_clearance)
    if below.sum() < config.floor_min_inliers:
        return None
    return 1.4826 * float(np.median(-height[below] / np.maximum(range2[below], 1e-6)))


def clearance(points: np.ndarray, height: np.ndarray, sensor: np.ndarray, config: SegmentationConfig,
              noise_c: float | None) -> np.ndarray:
    """(N,) the height above the floor under which each of the points (N, 3) counts as floor for the
    clustering: `floor_clearance`, or `floor_noise_sigmas` x the floor's noise at the point's horizontal
    range r (`floor_noise`'s c r^2), up to `floor_max_clearance`: a stereo camera scatters the floor by
    2 cm at 1.5 m and 5 cm at 4.5 m, and a fixed 2 cm left a fifth to half of it above the floor, where its
    cells joined the person to everything around."""
    if noise_c is None:
        return np.full(len(points), config.floor_clearance, np.float32)
    range2 = (points[:, 0] - sensor[0]) ** 2 + (points[:, 1] - sensor[1]) ** 2
    return np.clip(config.floor_noise_sigmas * noise_c * range2, config.floor_clearance,
                   config.floor_max_clearance).astype(np.float32)


@dataclass(frozen=True)
class DepthNoise:
    """The depth noise (m, along the ray) that the flatness test allows for at a horizontal range: the spec's
    model (`depth_noise`), or less where the floor shows less. The floor's height noise c r^2 (`floor_noise`),
    seen from a sensor `sensor_height` above it, is a range noise of c r^2 sqrt(h^2 + r^2) / h. A clean
    sensor's walker, 2.5 to 3.5 m away and facing it, fits two planes of the spec's slab (9 cm wide there) to
    0.95 to 1.0 of its points and read as flat."""

    spec: tuple[float, float, float]
    floor_c: float | None = None
    sensor_height: float = 1.0

    def sigma(self, distance: float) -> float:
        a, b, c = self.spec
        spec = a + b * (distance - c) ** 2
        if self.floor_c is None:
            return spec
        h = max(self.sensor_height, 0.1)
        return min(spec, self.floor_c * distance ** 2 * math.hypot(h, distance) / h)


# ---------------------------------------------------------------- clusters

@dataclass
class Cluster:
    """Connected above-floor points; `members` index the ROI points."""

    members: np.ndarray
    centre: np.ndarray                  # xy, mean of the members
    top: float                          # highest member above the floor
    length: float                       # longest extent of its footprint
    wall_halo: bool = False             # a piece that split_off_walls left hugging the walls it took out


class BirdEyeGrid:
    """A square grid of `cluster_cell` cells over the ROI, centred on the sensor, and each point's cell.

    The grid is the downsample of the clustering: labelling connected
    occupied cells is single-linkage clustering at cell resolution, in a
    few milliseconds where Open3D's DBSCAN takes tens on a
    voxel-downsampled scene. Points map back through their cells.
    """

    def __init__(self, xy: np.ndarray, sensor_xy: np.ndarray, config: SegmentationConfig):
        self.config = config
        self.side = int(np.ceil(2 * config.roi_max_range / config.cluster_cell)) + 1
        self.origin = sensor_xy - config.roi_max_range
        self.cell_of = self.cells(xy)

    def cells(self, xy: np.ndarray) -> np.ndarray:
        """The flat cell index of each of (N, 2) positions inside the ROI."""
        ij = ((xy - self.origin) / self.config.cluster_cell).astype(np.int64)
        return ij[:, 0] * self.side + ij[:, 1]

    def points_in(self, cells: np.ndarray, xy: np.ndarray) -> np.ndarray:
        """Indices of the (N, 2) positions that fall in the masked `cells` (a mask over the grid's cells):
        positions outside the mask's bounding box are dropped by comparisons before any is binned."""
        i, j = np.unravel_index(np.flatnonzero(cells), (self.side, self.side))
        lo = self.origin + np.array([i.min(), j.min()]) * self.config.cluster_cell
        hi = self.origin + np.array([i.max() + 1, j.max() + 1]) * self.config.cluster_cell
        inside = np.flatnonzero((xy[:, 0] >= lo[0]) & (xy[:, 0] < hi[0]) & (xy[:, 1] >= lo[1]) & (xy[:, 1] < hi[1]))
        return inside[cells[self.cells(xy[inside])]]

    def clusters(self, members: np.ndarray, xy: np.ndarray, height: np.ndarray,
                 min_cell_points: int | None = None) -> list[Cluster]:
        """Clusters of `members` (point indices) with at least `cluster_min_points` points.

        Cells with fewer than `min_cell_points` (default `cluster_min_cell_points`) points (floor noise,
        flying pixels, a thin bridge to a box beside the person) count as
        empty.
        """
        config = self.config
        cells = self.cell_of[members]
        occupied = np.bincount(cells, minlength=self.side ** 2) >= (min_cell_points or config.cluster_min_cell_points)
        grid_labels, count = ndimage.label(occupied.reshape(self.side, self.side), structure=np.ones((3, 3)))
        point_labels = grid_labels.ravel()[cells]
        sizes = np.bincount(point_labels, minlength=count + 1)
        clusters = []
        for label, box in enumerate(ndimage.find_objects(grid_labels), start=1):
            if sizes[label] < config.cluster_min_points:
                continue
            own = members[point_labels == label]
            footprint = np.argwhere(grid_labels[box] == label) * config.cluster_cell
            clusters.append(Cluster(own, xy[own].mean(axis=0), float(height[own].max()),
                                    footprint_length(footprint) + config.cluster_cell))
        return clusters

    def near(self, members: np.ndarray, cells: int) -> np.ndarray:
        """Mask over the grid's cells: within `cells` cells (8-connected steps) of a cell of `members`."""
        # Dilated within the members' bounding box grown by `cells`: the same cells as on the whole
        # grid, at a fraction of the cost (the grid is 241 x 241 at the defaults).
        i, j = np.unravel_index(np.unique(self.cell_of[members]), (self.side, self.side))
        lo = np.maximum([i.min() - cells, j.min() - cells], 0)
        hi = np.minimum([i.max() + cells + 1, j.max() + cells + 1], self.side)
        box = np.zeros(hi - lo, bool)
        box[i - lo[0], j - lo[1]] = True
        mask = np.zeros((self.side, self.side), bool)
        mask[lo[0]:hi[0], lo[1]:hi[1]] = ndimage.binary_dilation(box, structure=np.ones((3, 3)), iterations=cells)
        return mask.ravel()


def footprint_length(cells: np.ndarray) -> float:
    """Extent of cell positions along their principal axis."""
    centred = cells - cells.mean(axis=0)
    _, axes = np.linalg.eigh(centred.T @ centred)
    along = centred @ axes[:, -1]
    return float(along.max() - along.min())


def split_off_walls(points: np.ndarray, height: np.ndarray, cluster: Cluster, grid: BirdEyeGrid,
                    config: SegmentationConfig) -> list[Cluster]:
    """Take up to `wall_max_planes` vertical planes out of an oversize cluster and cluster the rest; the pieces
    within `wall_halo` of the planes are marked `wall_halo`."""
    members = cluster.members
    max_tilt = np.sin(np.deg2rad(config.wall_max_tilt_deg))
    walls = []
    for _ in range(config.wall_max_planes):
        sample = points[members[::max(1, len(members) // config.planarity_sample_points)]]
        if len(sample) < 3:
            break
        plane, _ = fit_plane(sample, config.wall_ransac_distance, config.planarity_iterations, config.random_seed)
        if abs(plane.normal[2]) > max_tilt:
            break
        walls.append(plane)
        members = members[np.abs(plane.distance(points[members])) > config.wall_ransac_distance]
    pieces = grid.clusters(members, points[:, :2], height)
    if walls:
        for piece in pieces:
            off_wall = np.min([np.abs(wall.distance(points[piece.members])) for wall in walls], axis=0)
            piece.wall_halo = bool(np.percentile(off_wall, 90) < config.wall_halo)
    return pieces


def split_off_box(points: np.ndarray, height: np.ndarray, cluster: Cluster, grid: BirdEyeGrid,
                  config: SegmentationConfig) -> list[Cluster]:
    """A box that a person stands at, joined to them on the grid, gives the cluster a horizontal face (its
    top), and the cluster reads flat. Take out the box: every member in the cells of that face (grown by
    one cell, for its sides) up to the face's height, then cluster the rest. [cluster] when it has no
    horizontal face among its first three planes."""
    members = cluster.members
    sample = members[::max(1, len(members) // config.planarity_sample_points)]
    for plane, inliers, fitted_to in peel_planes(points[sample], config.planarity_slab, config):
        if is_horizontal_face(plane, len(inliers), fitted_to, config):
            top = sample[inliers]
            box_cells = grid.near(top, 1)[grid.cell_of[members]]
            below_top = height[members] <= float(height[top].max()) + config.planarity_slab
            return grid.clusters(members[~(box_cells & below_top)], points[:, :2], height)
    return [cluster]


def split_off_bridges(points: np.ndarray, height: np.ndarray, cluster: Cluster, grid: BirdEyeGrid,
                      config: SegmentationConfig) -> list[Cluster]:
    """The cluster again with cells needing `bridge_cell_factor` times `cluster_min_cell_points` points: the
    sparse cells that join a walker to a chair or trail behind them (flying pixels) fall away. [cluster] when
    those cells keep under `bridge_min_kept` of its points (a uniform noise cloud 6 m across kept 0.47 in 271
    pieces; walkers' clusters kept 0.84 to 0.99 in 2 to 6)."""
    pieces = grid.clusters(cluster.members, points[:, :2], height,
                           config.cluster_min_cell_points * config.bridge_cell_factor)
    kept = sum(len(piece.members) for piece in pieces)
    return pieces if kept >= config.bridge_min_kept * len(cluster.members) else [cluster]


def is_person_sized(cluster: Cluster, config: SegmentationConfig) -> bool:
    """Enough points, a person's height, a person's footprint, and not a wall's halo."""
    return (not cluster.wall_halo and len(cluster.members) >= config.person_min_points
            and config.person_min_height <= cluster.top <= config.person_max_height
            and cluster.length <= config.person_max_footprint)


def is_flat(points: np.ndarray, sensor: np.ndarray, config: SegmentationConfig,
            noise: DepthNoise | None = None) -> bool:
    """Whether a cluster is made of flat faces (boxes, walls) rather than round limbs.

    Three planes are fitted in turn (RANSAC in a slab that widens with the
    depth `noise` at the cluster's range; default the spec's). Flat: the first two hold
    `person_max_planar_fraction` of the points, or one of the three is a
    horizontal face (a box top; a person shows none) holding
    `horizontal_face_fraction` of them. Where the slab is wider than
    `planarity_wide_slab` (a person over about 3.55 m away with the spec's
    noise: two slabs of 5.5 cm and more hold 0.94 to 0.99 of a person, as of
    a box) only the first plane counts: a wall's holds over 0.97, a
    person's under 0.9 in the product and shifted builds; a box there
    passes, but a box does not stand tall, and the target must.
    """
    sample = points[::max(1, len(points) // config.planarity_sample_points)]
    noise = noise or DepthNoise(config.depth_noise)
    distance = float(np.linalg.norm(sample[:, :2].mean(axis=0) - sensor[:2]))
    slab = config.planarity_slab + 2.0 * noise.sigma(distance)
    planes_counted = 1 if slab > config.planarity_wide_slab else 2
    held = 0
    for plane_index, (plane, inliers, _) in enumerate(peel_planes(sample, slab, config)):
        if is_horizontal_face(plane, len(inliers), len(sample), config):
            return True
        held += len(inliers)
        if plane_index < planes_counted and held / len(sample) >= config.person_max_planar_fraction:
            return True
    return False


def peel_planes(points: np.ndarray, slab: float, config: SegmentationConfig, count: int = 3):
    """Up to `count` RANSAC planes (`fit_plane`, inliers within `slab`) fitted in turn to the points (N, 3)
    the earlier ones left: yields (plane, indices of its inliers into `points`, how many it was fitted to)."""
    left = np.arange(len(points))
    for _ in range(count):
        if len(left) < 3:
            return
        plane, inliers = fit_plane(points[left], slab, config.planarity_iterations, config.random_seed)
        yield plane, left[inliers], len(left)
        left = left[~inliers]


def is_horizontal_face(plane: Plane, inliers: int, total: int, config: SegmentationConfig) -> bool:
    """A plane within `horizontal_face_tilt_deg` of the horizontal holding `inliers`, at least
    `horizontal_face_fraction` of `total` points: a box top (a person shows none)."""
    return (abs(plane.normal[2]) > np.cos(np.deg2rad(config.horizontal_face_tilt_deg))
            and inliers >= config.horizontal_face_fraction * total)


def looks_like_person(cluster: Cluster, points: np.ndarray, height: np.ndarray, sensor: np.ndarray,
                      config: SegmentationConfig, noise: DepthNoise | None = None) -> bool:
    """Stands on the floor and is not made of flat faces."""
    return (height[cluster.members].min() <= config.person_foot_height
            and not is_flat(points[cluster.members], sensor, config, noise))


def elevation(points: np.ndarray, sensor: np.ndarray) -> np.ndarray:
    """Each point's elevation seen from the sensor (rad)."""
    offset = points.astype(np.float64) - sensor
    return np.arctan2(offset[:, 2], np.hypot(offset[:, 0], offset[:, 1]))


@dataclass(frozen=True)
class FrameTop:
    """The frame's top edge as the sensor sees it: the plane through the sensor that holds the top pixel
    row's rays (a row of a pinhole image is a line, and a line's rays span a plane).

    A level camera's top row lies near one elevation, but a rolled camera's tilts across the image and
    a pitched one's bends in elevation (its corners higher than its centre column when pitched down):
    by several degrees, so a body the frame cuts tops out well below the scene's highest point."""

    normal: np.ndarray                  # (3,) unit, upward: in-frame directions d have normal . d <= 0
    highest: float = 0.0                # elevation (rad) of the scene's highest point

    def below(self, points: np.ndarray, sensor: np.ndarray) -> np.ndarray:
        """The angle (rad) by which each of the points (N, 3) lies below the edge's plane, seen from the
        sensor: a pixel is 1 / focal length."""
        offset = points.astype(np.float64) - sensor
        directions = offset / np.maximum(np.linalg.norm(offset, axis=1, keepdims=True), 1e-9)
        return -np.arcsin(np.clip(directions @ self.normal, -1.0, 1.0))


def frame_top(points: np.ndarray, sensor: np.ndarray, config: SegmentationConfig) -> FrameTop:
    """The frame's top edge: the plane through the sensor fitted to the highest point of each
    `frame_edge_bin_deg` azimuth bin of `points` (N, 3), first those above the bins' median, then again
    to the bins at most `frame_edge_slack_px` below it until they stop changing. Bins whose highest point
    is not on the edge (nothing in the ROI above it, the image's side edges) fall away; the plane
    carries the edge on where the ROI holds nothing of it."""
    offset = points.astype(np.float64) - sensor
    horizontal = np.maximum(np.hypot(offset[:, 0], offset[:, 1]), 1e-9)
    slope = offset[:, 2] / horizontal            # orders elevations without an arctangent per point
    # The edge lies within `frame_edge_span_deg` of the highest point: the points lower down (the floor,
    # most of the scene) cannot be a bin's highest on it.
    upper = np.arctan(slope) >= np.arctan(slope.max()) - np.deg2rad(config.frame_edge_span_deg)
    offset, horizontal, slope = offset[upper], horizontal[upper], slope[upper]
    # Azimuths from the points' mean bearing, so that the bins do not straddle +-pi whichever way the frame faces.
    bearing = np.array([(offset[:, 0] / horizontal).mean(), (offset[:, 1] / horizontal).mean()])
    bearing /= max(float(np.linalg.norm(bearing)), 1e-9)
    azimuth = np.arctan2(bearing[0] * offset[:, 1] - bearing[1] * offset[:, 0], offset[:, :2] @ bearing)
    bins = np.floor(azimuth / np.deg2rad(config.frame_edge_bin_deg)).astype(np.int64)
    tops = np.asarray(ndimage.maximum_position(slope, bins, np.unique(bins)), np.int64).reshape(-1)
    top_up = np.arctan(slope[tops])
    directions = offset[tops] / np.linalg.norm(offset[tops], axis=1, keepdims=True)
    highest = float(top_up.max()) if len(tops) else 0.0
    if len(tops) < 3:           # too few bins for a plane: the edge is level at the highest point
        return FrameTop(np.array([-np.sin(highest) * bearing[0], -np.sin(highest) * bearing[1], np.cos(highest)]),
                        highest)
    slack = config.frame_edge_slack_px / config.sensor_focal_px
    on_edge = top_up >= np.median(top_up)
    for _ in range(5):
        normal = np.linalg.eigh(directions[on_edge].T @ directions[on_edge])[1][:, 0]
        normal = normal if normal[2] >= 0 else -normal
        near = -np.arcsin(np.clip(directions @ normal, -1.0, 1.0)) <= slack
        if near.sum() < 3 or np.array_equal(near, on_edge):
            break
        on_edge = near
    return FrameTop(normal, highest)


def stands_tall(cluster: Cluster, points: np.ndarray, sensor: np.ndarray, edge: FrameTop,
                config: SegmentationConfig) -> int:
    """How surely the cluster stands as tall as an adult: 2 when its top is an adult's (at least
    `head_min_stature`) or the frame's top edge cuts it where the edge is highest (its topmost point
    within `frame_cut_px` of the scene's); 1 when the edge cuts it elsewhere (a point within
    `frame_cut_px` of the `edge` at its azimuth); else 0. A box or a bin shows its whole top below the
    edge; a person in view shows a head or is cut, but a cut post or box is cut as well."""
    if cluster.top >= config.head_min_stature:
        return 2
    members = points[cluster.members]
    pixel = 1.0 / config.sensor_focal_px
    if float(elevation(members, sensor).max()) >= edge.highest - config.frame_cut_px * pixel:
        return 2
    return int(float(edge.below(members, sensor).min()) <= config.frame_cut_px * pixel)


def choose_target(clusters: list[Cluster], reference_xy: np.ndarray, points: np.ndarray, height: np.ndarray,
                  sensor: np.ndarray, config: SegmentationConfig, noise: DepthNoise | None = None,
                  fragments: list[Cluster] | None = None) -> Cluster | None:
    """The first person-like cluster by how surely it `stands_tall`, then by its distance to
    `reference_xy` (so that a child or a seated person alone in view is still found); the
    flatness test, the costly one, runs in that order until one passes.

    A cluster that stands tall may end up to `person_hidden_foot_height` above the floor: its
    feet and shins out of the sensor's sight (dark shoes and trousers leave holes in structured
    light and stereo; the frame's bottom edge cuts a near walker's shins).

    Where none passes, `fragments` (every cluster of the scene) are tried: a person that a nearer
    object hides in part (a box or a post between the sensor and the walker) falls apart into
    pieces, the upper body over the object and the legs beside it, and each piece alone is a
    slab that reads flat. The first candidate that stands tall and whose union with the smaller
    fragments within `fragment_radius` of it is not flat is the target (its feet may be hidden, as
    above)."""
    edge = frame_top(points, sensor, config)
    candidates = []
    for cluster in sorted(clusters, key=lambda c: float(np.linalg.norm(c.centre - reference_xy))):
        lowest = float(height[cluster.members].min())
        if lowest > config.person_hidden_foot_height:
            continue
        tall = stands_tall(cluster, points, sensor, edge, config)
        if lowest <= config.person_foot_height or tall:
            candidates.append((tall, cluster))
    candidates.sort(key=lambda c: -c[0])        # stable: by distance within a grade
    target = next((cluster for _, cluster in candidates
                   if not is_flat(points[cluster.members], sensor, config, noise)), None)
    if target is not None or not fragments:
        return target
    for tall, cluster in candidates:
        if not tall:            # a hidden person still shows an upper body that stands tall; a low box does not
            continue
        # Pieces are smaller than the candidate: a post beside a box is not the box's upper body.
        pieces = [c.members for c in fragments if len(c.members) <= len(cluster.members)
                  and np.linalg.norm(c.centre - cluster.centre) < config.fragment_radius]
        if len(pieces) < 2:     # the candidate alone: already found flat
            continue
        union = np.concatenate(pieces)
        if (float(height[union].min()) <= config.person_hidden_foot_height
                and not is_flat(points[union], sensor, config, noise)):
            return cluster
    return None


def target_cells(target: Cluster, clusters: list[Cluster], grid: BirdEyeGrid, points: np.ndarray,
                 height: np.ndarray, sensor: np.ndarray, config: SegmentationConfig,
                 noise: DepthNoise | None = None) -> np.ndarray:
    """Mask over the grid's cells: the target's, its pieces' among the other clusters, and the edge cells
    around them.

    A piece's centre lies within `fragment_radius` of the target's, and
    the piece either does not look like a person itself (the part of the
    far leg that the near one does not hide) or comes within
    `fragment_gap` of the target (up close, where the frame shows no torso
    to join them, the two legs are clusters of their own). The sparse
    cells at the edge, which the clustering leaves out, are the target's
    too.
    """
    reach = grid.near(target.members, int(round(config.fragment_gap / config.cluster_cell)) + 1)
    pieces = [target.members]
    for cluster in clusters:
        if cluster is target or np.linalg.norm(cluster.centre - target.centre) >= config.fragment_radius:
            continue
        touches = reach[grid.cell_of[cluster.members]].any()
        if touches or not looks_like_person(cluster, points, height, sensor, config, noise):
            pieces.append(cluster.members)
    return grid.near(np.concatenate(pieces), 1)


# ---------------------------------------------------------------- flying pixels

def voxel_index(points: np.ndarray, voxel: float) -> tuple[np.ndarray, tuple[int, ...]]:
    """Flat voxel index of each point in the points' bounding grid, and the grid's shape."""
    ijk = np.floor(points / voxel).astype(np.int64)
    ijk -= ijk.min(axis=0)
    shape = tuple(int(s) for s in ijk.max(axis=0) + 1)
    return np.ravel_multi_index(ijk.T, shape), shape


def on_surface(points: np.ndarray, sensor: np.ndarray, config: SegmentationConfig) -> np.ndarray:
    """Mask of the points on a surface rather than flying pixels.

    A mixed pixel at a silhouette edge lands somewhere along its ray between
    the two surfaces, so its 3 x 3 x 3 voxel neighbourhood holds far fewer
    points than a surface there would give: (3 voxel * focal / range)^2.
    A camera coarser than that focal gives its surfaces fewer points too; a
    point the density test drops is kept where its neighbouring rays see a
    surface at its range (`rays_agree`).
    """
    flat, shape = voxel_index(points, config.outlier_voxel)
    counts = np.bincount(flat, minlength=int(np.prod(shape))).reshape(shape).astype(np.float32)
    neighbours = ndimage.uniform_filter(counts, size=3, mode="constant") * 27.0
    distance = np.linalg.norm(points - sensor.astype(np.float32), axis=1)
    expected = (3 * config.outlier_voxel * config.sensor_focal_px / np.maximum(distance, 0.1)) ** 2 \
        / config.decimation ** 2
    kept = neighbours.ravel()[flat] >= config.outlier_density_fraction * expected
    dropped = np.flatnonzero(~kept)
    if config.ray_neighbours and len(dropped) and len(points) > config.ray_neighbours:
        kept[dropped] = rays_agree(points, sensor, dropped, config)
    return kept


def rays_agree(points: np.ndarray, sensor: np.ndarray, which: np.ndarray, config: SegmentationConfig) -> np.ndarray:
    """For the points `which` (indices into points (N, 3)): whether at least `ray_neighbours_close` of their
    `ray_neighbours` nearest rays from the sensor end within `ray_range_tolerance` plus `ray_noise_sigmas`
    sqrt(2) sigma(range) of their range (sigma: the spec's `depth_noise`, the difference of two noisy ranges).
    Nearest rays are neighbouring pixels whatever the camera's resolution: on a surface they end near the
    point's range, beside a mixed pixel on the surfaces in front of and behind it."""
    rays = points.astype(np.float64) - sensor
    ranges = np.linalg.norm(rays, axis=1)
    directions = rays / np.maximum(ranges, 1e-9)[:, None]
    # An unbalanced tree builds faster (the frame's whole target, 10,000 to 30,000 rays) and finds the same rays.
    tree = cKDTree(directions, balanced_tree=False, compact_nodes=False)
    _, nearest = tree.query(directions[which], k=config.ray_neighbours + 1)
    a, b, c = config.depth_noise
    r = ranges[which]
    tolerance = config.ray_range_tolerance + config.ray_noise_sigmas * np.sqrt(2.0) * (a + b * (r - c) ** 2)
    close = np.abs(ranges[nearest[:, 1:]] - r[:, None]) < tolerance[:, None]
    return close.sum(1) >= config.ray_neighbours_close


# ---------------------------------------------------------------- pelvis

def head_in_view(points: np.ndarray, height: np.ndarray, sensor: np.ndarray, config: SegmentationConfig) -> bool:
    """Whether the person's top is the crown of the head, not the frame's top edge.

    Where the frame cuts the body, the topmost points share one pixel row
    and so span the body's full width; a crown is a dome whose topmost row
    is much narrower than the head a few cm lower. Depth noise moves points
    along their rays and leaves these angles alone. A head is also narrow
    and at least `head_min_stature` high. Assumes a camera without roll and
    the person near the central image columns.
    """
    top = float(height.max())
    if top < config.head_min_stature:
        return False
    offset = points.astype(np.float64) - sensor
    distance = np.hypot(offset[:, 0], offset[:, 1])
    up = elevation(points, sensor)
    azimuth = np.arctan2(offset[:, 1], offset[:, 0])
    pixel = 1.0 / config.sensor_focal_px
    edge = azimuth[up >= up.max() - pixel]
    band = azimuth[height >= top - config.head_band]
    if np.ptp(edge) + pixel >= config.head_max_edge_ratio * (np.ptp(band) + pixel):
        return False
    lower, upper = config.head_width_depth
    head = (height >= top - upper) & (height < top - lower)
    if not head.any():
        return False
    width = np.subtract(*np.percentile(azimuth[head], [98, 2])) * float(np.median(distance[head]))
    return width <= config.head_max_width


def estimate_pelvis_height(points: np.ndarray, height: np.ndarray, sensor: np.ndarray | None,
                           config: SegmentationConfig) -> tuple[float, str]:
    """Pelvis height above the floor and its cue: "head" (body proportions) or "prior".

    Without `sensor` (the sensor's position) the head cannot be told from a
    cut edge and the prior is used.
    """
    if sensor is not None and head_in_view(points, height, sensor, config):
        return config.pelvis_to_stature * float(height.max()), "head"
    return config.pelvis_prior, "prior"


# ---------------------------------------------------------------- detached hands

def reaches_below_hands(points: np.ndarray, height: np.ndarray, pelvis: float,
                        config: SegmentationConfig) -> np.ndarray:
    """Mask of the points whose voxel-connected part reaches below the hands.

    Below the crop plane a hand or forearm cut from its shoulder often
    floats free, its lowest point (the fingertips) no more than
    `hand_reach` below the pelvis. Legs hang together down to the feet,
    and a piece of the far leg that the near one hides in part still
    comes down lower than any hand.
    """
    point_labels, count = voxel_pieces(points, config.limb_voxel)
    lowest = ndimage.minimum(height, point_labels, np.arange(1, count + 1))
    return np.concatenate([[False], lowest < pelvis - config.hand_reach])[point_labels]


def voxel_pieces(points: np.ndarray, voxel: float) -> tuple[np.ndarray, int]:
    """Each point's piece (1..count): the 26-connected sets of the `voxel` cells the points occupy."""
    flat, shape = voxel_index(points, voxel)
    occupied = np.zeros(int(np.prod(shape)), bool)
    occupied[flat] = True
    labels, count = ndimage.label(occupied.reshape(shape), structure=np.ones((3, 3, 3)))
    return labels.ravel()[flat], count


#: Pieces with fewer points are never dropped as clutter (too few to measure a spread).
_MIN_PIECE_POINTS = 10


def without_detached_clutter(points: np.ndarray, height: np.ndarray, config: SegmentationConfig) -> np.ndarray:
    """Mask of the leg points (N, 3), heights (N,) to keep: all but detached pieces wider than a limb.

    The leg points at times take in a box standing by the legs (the product engine's clutter, 5 to 60 cm from
    the feet: LegSegNet calls it legs with confidence). Cut into pieces at `detach_voxel`, the legs are the
    largest piece reaching within `legs_top_tolerance` of the highest point (they rise to the hips, the
    boxes stay lower); any other piece whose second principal standard deviation exceeds `limb_max_spread`
    is wider than a limb and goes. A far leg that the near one cuts off is a thin piece and stays; clutter
    that touches the legs is one piece with them and stays too.
    """
    labels, count = voxel_pieces(points, config.detach_voxel)
    if count < 2:
        return np.ones(len(points), bool)
    pieces = np.arange(1, count + 1)
    tops = ndimage.maximum(height, labels, pieces)
    sizes = np.bincount(labels, minlength=count + 1)[1:]
    tall = np.flatnonzero(tops >= height.max() - config.legs_top_tolerance)
    legs = pieces[tall[np.argmax(sizes[tall])]]
    drop = np.zeros(count + 1, bool)
    for piece in pieces[sizes >= _MIN_PIECE_POINTS]:
        if piece != legs:
            spread = np.sqrt(np.linalg.eigvalsh(np.cov(points[labels == piece].T)))   # ascending
            drop[piece] = spread[1] > config.limb_max_spread
    return ~drop[labels]


# ---------------------------------------------------------------- pipeline


def heading_subset(heights: np.ndarray, pelvis: float, config: SegmentationConfig) -> np.ndarray:
    """Which of the leg points at `heights` (N,) RotNet reads (indices): those more than
    `config.heading_below_pelvis` below `pelvis`, or all of them when fewer than `config.heading_min_points`
    are there. Without the head in view the pelvis height is a population prior, often 10 cm off; a crop
    that high takes in the lower torso and the hands, which flips RotNet's front/back call, while the legs
    below the hips alone give it the heading as well."""
    below = np.flatnonzero(heights < pelvis - config.heading_below_pelvis)
    return below if len(below) >= config.heading_min_points else np.arange(len(heights))


def segment_legs(points: np.ndarray, config: SegmentationConfig | None = None,
                 previous_centre: np.ndarray | None = None,
                 sensor_origin: np.ndarray | None = None, leg_classifier=None) -> SegmentationResult:
    """The target person's lower-limb points in a scene cloud (gravity frame).

    points: (N, 3); NaN or inf rows are ignored. previous_centre: xy of the
    target in the last frame; the person-like cluster nearest to it is the
    target, else the one nearest the sensor. sensor_origin: the sensor's
    position; without it the sensor is taken above the frame's origin and
    the pelvis height falls back to the prior. leg_classifier: an object
    with `window_above_pelvis` (m) and `leg_mask(points (M, 3), heights
    (M,)) -> (M,) bool` that picks the legs from the person's points below
    the pelvis guess + that window; None crops at the pelvis guess. Never
    raises on the data (empty, NaN-only, person-free clouds give
    valid=False and a reason); a cloud that is not (N, 3) is a ValueError.
    """
    # numpy's OpenBLAS would spread the small matrix products here over every core, and its
    # threads keep spinning after each call, starving the torch threads that run next (RotNet,
    # PoseSDF): on 2 cores RotNet took about three times as long right after segmentation.
    with _blas_controller().limit(limits=1, user_api="blas"):
        return _segment_legs(points, config, previous_centre, sensor_origin, leg_classifier)


@functools.cache
def _blas_controller() -> ThreadpoolController:
    """The process's thread pools, found once: `threadpool_limits` scans every loaded library on each
    call (4 ms a frame); numpy's BLAS, the one limited here, is loaded with numpy."""
    return ThreadpoolController()


@dataclass
class Person:
    """The target person found in a scene: everything `segment_legs` knows before the crop."""

    roi: np.ndarray                     # (R,) indices of the input cloud's points in the target's cells
    roi_points: np.ndarray              # (R, 3) float32, those points
    height: np.ndarray                  # (R,) above the fitted floor plane
    members: np.ndarray                 # (P,) indices into roi: the person's points, flying pixels dropped
    centre: np.ndarray                  # (2,) xy of the target cluster
    pelvis_height: float
    pelvis_cue: str

    def members_below(self, top: float) -> np.ndarray:
        """Indices into `roi` of the person's points lower than `top` above the floor."""
        return self.members[self.height[self.members] < top]


def find_person(points: np.ndarray, config: SegmentationConfig, previous_centre: np.ndarray | None,
                sensor_origin: np.ndarray | None, timer: _StageTimer | None = None) -> Person | str:
    """Steps 1 to 6 of the module docstring: the target person (`choose_target`) and its pelvis
    height, or why there is none. points: (N, 3) float32; `timer` records the stages' times.

    Steps 1 to 4 see every (`coarse_decimation`²)-th point, with `decimated`'s thresholds: they only
    need the scene's layout. The target's points are then every input point in its bird's-eye
    cells, at full density, so the legs lose nothing (a far leg seen past the near one is a sliver).
    """
    timer = timer or _StageTimer()
    sensor = np.array([0.0, 0.0, 1.0]) if sensor_origin is None else np.asarray(sensor_origin, float)
    if len(points) == 0:
        return "empty cloud"
    coarse = config.decimated(config.coarse_decimation)
    scene = points[::config.coarse_decimation ** 2]
    roi = region_of_interest(scene, sensor, coarse)
    timer.lap("roi")
    if len(roi) < coarse.person_min_points:
        count = len(region_of_interest(points, sensor, config))   # the input's, for the message
        return ("no finite points in the region of interest" if count == 0
                else f"only {count} points in the region of interest")
    scene = scene[roi]

    floor = fit_floor(scene, sensor[:2], coarse)
    height = floor.distance(scene)
    noise_c = floor_noise(scene, height, sensor, config)
    above = np.flatnonzero((height > clearance(scene, height, sensor, config, noise_c))
                           & (height < config.person_max_height))
    noise = DepthNoise(config.depth_noise, noise_c, float(floor.distance(sensor[None])[0]))
    timer.lap("floor")
    if len(above) < coarse.person_min_points:
        return "nothing above the floor"

    grid = BirdEyeGrid(scene[:, :2], sensor[:2], coarse)
    clusters = []
    for cluster in grid.clusters(above, scene[:, :2], height):
        if cluster.length <= coarse.person_max_footprint:
            clusters.append(cluster)
            continue
        for piece in split_off_walls(scene, height, cluster, grid, coarse):
            oversize = piece.length > coarse.person_max_footprint and not piece.wall_halo
            clusters += split_off_bridges(scene, height, piece, grid, coarse) if oversize else [piece]
    people = [c for c in clusters if is_person_sized(c, coarse)]
    timer.lap("clusters")
    if not people:
        return "no person-sized cluster"
    reference = sensor[:2] if previous_centre is None else np.asarray(previous_centre, float)[:2]
    target = choose_target(people, reference, scene, height, sensor, coarse, noise, fragments=clusters)
    for split_off in (split_off_box, split_off_walls):
        if target is not None:
            break
        # A person joined to a box they stand at reads flat for the box's top (or, its top out of sight, for its
        # side): without the box, again.
        sized = {id(c) for c in people}
        split = [part for c in clusters for part in
                 (split_off(scene, height, c, grid, coarse) if id(c) in sized else [c])]
        if len(split) != len(clusters) or any(a is not b for a, b in zip(split, clusters)):
            clusters = split
            people = [c for c in clusters if is_person_sized(c, coarse)]
            target = choose_target(people, reference, scene, height, sensor, coarse, noise, fragments=clusters)
    timer.lap("target")
    if target is None:
        return "no person-like cluster (the person-sized ones are flat, or neither reach the floor nor stand tall)"

    # Every input point in the target's cells (NaN rows fail the cells' bounds), in the ROI and above the floor.
    cells = target_cells(target, clusters, grid, scene, height, sensor, coarse, noise)
    near = grid.points_in(cells, points[:, :2])
    near = near[region_of_interest(points[near], sensor, config)]
    near_points = points[near]
    near_height = floor.distance(near_points)
    keep = (near_height > config.floor_clearance) & (near_height < config.person_max_height)
    near, near_points, near_height = near[keep], near_points[keep], near_height[keep]
    timer.lap("target_points")
    members = np.flatnonzero(on_surface(near_points, sensor, config))
    timer.lap("flying_pixels")
    pelvis, cue = estimate_pelvis_height(near_points[members], near_height[members],
                                         None if sensor_origin is None else sensor, config)
    timer.lap("pelvis")
    return Person(near, near_points, near_height, members, target.centre, float(pelvis), cue)


def _segment_legs(points: np.ndarray, config: SegmentationConfig | None,
                  previous_centre: np.ndarray | None, sensor_origin: np.ndarray | None,
                  leg_classifier=None) -> SegmentationResult:
    config = config or SegmentationConfig()
    timer = _StageTimer()
    points = np.asarray(points, dtype=np.float32)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    person = find_person(points, config, previous_centre, sensor_origin, timer)
    if isinstance(person, str):
        return SegmentationResult(False, person, timings=timer.finish())
    pelvis, height = person.pelvis_height, person.height
    crop = pelvis + config.crop_margin
    if leg_classifier is not None:
        window = person.members_below(pelvis + leg_classifier.window_above_pelvis)
        legs = window[leg_classifier.leg_mask(person.roi_points[window], height[window])] \
            if len(window) else window
        timer.lap("leg_classifier")
    else:
        legs = person.members_below(crop)
        legs = legs[reaches_below_hands(person.roi_points[legs], height[legs], pelvis, config)] \
            if len(legs) else legs
        timer.lap("detached_hands")
    if len(legs):
        legs = legs[without_detached_clutter(person.roi_points[legs], height[legs], config)]
        timer.lap("detached_clutter")
    if len(legs) == 0:
        return SegmentationResult(False, "no points below the crop plane", timings=timer.finish())
    heading = legs[heading_subset(height[legs], pelvis, config)]
    roi = person.roi
    return SegmentationResult(True, "", np.sort(roi[legs]), person.centre, float(pelvis), float(crop),
                              person.pelvis_cue, np.sort(roi[heading]), timer.finish())
