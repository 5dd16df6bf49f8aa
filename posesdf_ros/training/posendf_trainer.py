"""Pose-NDF training on the gait manifold of the data engine.

- **Manifold poses** (distance 0): training bodies (`sample_phenotype("train", i)`)
  walking every gait condition, posed by anny at uniform gait phases, turned
  into the kinematic pose of `gait.kinematics` (seven local quaternions).
  The per-subject variation is drawn wider than the benchmark's (amplitudes
  +-25 % instead of +-15 %, asymmetry up to 15 %), so that gaits from other
  generators or real people are not far from the manifold just for being
  a little different.
- **Off-manifold poses**: manifold poses with random rotations of a random
  subset of joints, at log-uniform noise levels from 0.005 to 0.6 rad; their
  distance is the weighted geodesic distance of the seed to the nearest
  manifold pose (candidates by Euclidean k-nearest-neighbour search on the
  quaternions, then exact geodesic distance).
- **Loss**: L1 on the distance (manifold and off-manifold poses) plus the
  Eikonal term on off-manifold poses. The seed's joint weights w_k are all
  2, so that d = sqrt(sum_k arccos(|<q_k, q'_k>|)^2), which for small
  distances is the Euclidean distance between the quaternion vectors: the
  Eikonal target |grad f| = 1 is then consistent with d.
"""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import roma
import torch

from ..gait.kinematics import ROTATIONS, geodesic_distance, inverse
from ..models.posendf import PoseNDF, PoseNDFConfig, canonical_hemisphere, distance_loss, eikonal_loss
from ..provenance import git_commit
from .checkpoint import export_weights, open_network_run
from .loop import Step, fit

#: The seed's geodesic-distance weight of every rotation (see the module docstring).
JOINT_WEIGHT = 2.0


@dataclass
class PoseNDFTrainConfig:
    name: str = "small"
    model: PoseNDFConfig = field(default_factory=PoseNDFConfig)
    bodies: int = 60                     # training bodies
    gaits_per_condition: int = 2         # gait draws per body and condition
    phases: int = 64                     # poses per gait cycle
    amplitude_range: tuple[float, float] = (0.75, 1.25)
    max_asymmetry: float = 0.15
    off_per_pose: int = 6                # off-manifold samples per manifold pose
    noise_rad: tuple[float, float] = (0.005, 0.6)
    neighbours: int = 16                 # Euclidean candidates for the exact nearest-pose search
    epochs: int = 60
    batch: int = 2048
    manifold_share: float = 0.25         # of each batch
    eikonal_weight: float = 0.1
    lr: float = 1e-3
    lr_step_epochs: int = 20
    checkpoint_every: int = 5
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def preset(name: str) -> PoseNDFTrainConfig:
    if name == "small":
        return PoseNDFTrainConfig()
    if name == "tiny":   # tests only
        return PoseNDFTrainConfig(name="tiny",
                                  model=PoseNDFConfig(feature_size=8, encoder_width=16, width=32, layers=2),
                                  bodies=2, gaits_per_condition=1, phases=16, off_per_pose=2, epochs=3, batch=128)
    raise ValueError(f"unknown config {name!r}; expected small or tiny")


def gait_manifold(config: PoseNDFTrainConfig, progress: bool = True) -> np.ndarray:
    """Plausible gait poses of training bodies, (M, 7, 4) float32 quaternions with w >= 0."""
    from tqdm import tqdm

    from ..data.body import BodyModel, sample_phenotype
    from ..data.gait import CONDITIONS, GaitModel, GaitParams, sample_gait_params

    body_model = BodyModel()
    rng = np.random.default_rng([config.seed, 3301])
    poses = []
    jobs = [(b, c) for b in range(config.bodies) for c in CONDITIONS for _ in range(config.gaits_per_condition)]
    for body, condition in tqdm(jobs, desc="gait manifold", unit="gait", disable=not progress):
        p = sample_gait_params(rng, condition)
        amplitude = {k: float(rng.uniform(*config.amplitude_range)) for k in p.amplitude}
        p = GaitParams(**(p.to_dict() | {"amplitude": amplitude,
                                         "asymmetry": float(rng.uniform(0, config.max_asymmetry))}))
        phase = (rng.random() + np.arange(config.phases)) / config.phases
        joints = body_model.pose(sample_phenotype("train", body), GaitModel(p).angles(phase)).joints
        poses.append(inverse(torch.as_tensor(joints, dtype=torch.float64)).rotations.float())
    return canonical_hemisphere(torch.cat(poses)).numpy()


def population_length_ratios(config: PoseNDFTrainConfig) -> tuple[list[float], list[float]]:
    """Mean and standard deviation over the training bodies of each bone length over the body's leg
    length (thigh + shank), `LENGTHS` order.

    The filter's prior on a new subject's proportions before its own bone lengths are known, and how
    far a body may stray from it."""
    from ..data.body import BodyModel, sample_phenotype
    from ..data.gait import GaitModel, sample_gait_params

    body_model = BodyModel()
    rng = np.random.default_rng([config.seed, 3301])
    ratios = []
    for body in range(config.bodies):
        joints = body_model.pose(sample_phenotype("train", body), GaitModel(sample_gait_params(rng)).angles(
            np.array([0.0]))).joints
        lengths = inverse(torch.as_tensor(joints, dtype=torch.float64)).lengths[0].numpy()
        ratios.append(lengths / np.mean([lengths[1] + lengths[2], lengths[4] + lengths[5]]))
    return [float(r) for r in np.mean(ratios, axis=0)], [float(r) for r in np.std(ratios, axis=0)]


def random_rotations(n: int, k: int, sigma: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
    """Quaternions of rotation vectors with N(0, sigma^2) components, (n, k, 4); sigma: (n, 1)."""
    rotvec = rng.normal(size=(n, k, 3)) * sigma[:, :, None]
    return roma.rotvec_to_unitquat(torch.as_tensor(rotvec, dtype=torch.float32))


def nearest_manifold_distance(queries: torch.Tensor, manifold: torch.Tensor, neighbours: int = 16,
                              chunk: int = 4096) -> torch.Tensor:
    """Distance of each query pose to its nearest manifold pose. (Q, K, 4), (M, K, 4) -> (Q,)."""
    flat = manifold.flatten(1)
    weights = torch.full((manifold.shape[1],), JOINT_WEIGHT)
    out = []
    for q in queries.split(chunk):
        idx = torch.cdist(q.flatten(1), flat).topk(min(neighbours, len(flat)), largest=False).indices
        d = geodesic_distance(q[:, None], manifold[idx], weights)
        out.append(d.min(1).values)
    return torch.cat(out)


def off_manifold(manifold: np.ndarray, config: PoseNDFTrainConfig, rng: np.random.Generator
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Noisy poses and their distances to the manifold: ((N, K, 4), (N,))."""
    m = torch.as_tensor(manifold)
    base = m.repeat(config.off_per_pose, 1, 1)
    n, k = base.shape[:2]
    lo, hi = np.log(config.noise_rad)
    sigma = np.exp(rng.uniform(lo, hi, (n, 1)))
    noise = random_rotations(n, k, sigma, rng)
    keep = torch.as_tensor(rng.random((n, k)) < rng.uniform(0.2, 1.0, (n, 1)))
    keep[torch.arange(n), torch.as_tensor(rng.integers(0, k, n))] = True     # at least one joint moves
    noise[~keep] = torch.tensor([0.0, 0.0, 0.0, 1.0])
    noisy = canonical_hemisphere(roma.quat_product(base, noise))
    return noisy, nearest_manifold_distance(noisy, m, config.neighbours)


def _batch_distances(model: PoseNDF, poses: torch.Tensor, eikonal: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    if not eikonal:
        return model(poses), None
    poses = poses.clone().requires_grad_(True)
    f = model(poses)
    (grad,) = torch.autograd.grad(f.sum(), poses, create_graph=True)
    return f, grad


def train_posendf(out: Path, config: PoseNDFTrainConfig, device: str = "cpu", resume: bool = True,
                  progress: bool = True, max_minutes: float | None = None) -> dict:
    """Train (or resume) into `out`: manifold.npz (cached poses), checkpoint.pt, loss.csv, loss.png,
    posendf.pt/posendf.json."""
    t_start = time.perf_counter()
    out = Path(out)
    dev = torch.device(device)
    torch.manual_seed(config.seed)
    model = PoseNDF(config.model).to(dev)
    # A rerun may extend the epochs, nothing else.
    run = open_network_run(out, model, config.lr, config.lr_step_epochs, config.to_dict() | {"epochs": None},
                           dev, resume)

    cache = out / "manifold.npz"
    data_key = json.dumps({k: v for k, v in config.to_dict().items()
                           if k in ("bodies", "gaits_per_condition", "phases", "amplitude_range", "max_asymmetry",
                                    "off_per_pose", "noise_rad", "neighbours", "seed")}, sort_keys=True)
    if cache.exists() and str(np.load(cache)["key"]) == data_key:
        with np.load(cache) as z:
            manifold, noisy, dist = z["manifold"], torch.as_tensor(z["noisy"]), torch.as_tensor(z["distance"])
    else:
        manifold = gait_manifold(config, progress)
        noisy, dist = off_manifold(manifold, config, np.random.default_rng([config.seed, 17]))
        np.savez_compressed(cache, key=data_key, manifold=manifold, noisy=noisy.numpy(), distance=dist.numpy())
    manifold_t = torch.as_tensor(manifold)

    n_manifold = max(1, int(config.batch * config.manifold_share))
    n_off = config.batch - n_manifold

    def batches(epoch: int) -> Iterator[tuple]:
        """(manifold poses (n_manifold, K, 4), indices of n_off off-manifold poses) per batch."""
        gen = torch.Generator().manual_seed(config.seed * 1000 + epoch)
        for ids in torch.randperm(len(noisy), generator=gen).split(n_off):
            yield manifold_t[torch.randint(len(manifold_t), (n_manifold,), generator=gen)].to(dev), ids

    def step(batch) -> Step:
        on, ids = batch
        f_on, _ = _batch_distances(model, on, eikonal=False)
        f_off, grad = _batch_distances(model, noisy[ids].to(dev), eikonal=True)
        target = torch.cat([torch.zeros(len(on), device=dev), dist[ids].to(dev)])
        d_loss = distance_loss(torch.cat([f_on, f_off]), target)
        e_loss = eikonal_loss(grad)
        return Step({"loss": d_loss + config.eikonal_weight * e_loss, "distance_loss": d_loss,
                     "eikonal_loss": e_loss}, len(ids))

    stopped_early = fit(run, config.epochs, batches, step, checkpoint_every=config.checkpoint_every,
                        max_minutes=max_minutes, started=t_start,
                        epoch_logs=lambda epoch: {"lr": run.optimizer.param_groups[0]["lr"]},
                        plot=("loss", "distance_loss", "eikonal_loss"), desc=f"posendf[{config.name}]",
                        progress=progress,
                        postfix=lambda h: {"dist": f"{h['distance_loss']:.4f}", "eik": f"{h['eikonal_loss']:.3f}"})
    history, done = run.history, run.epochs_done
    ratio_means, ratio_sds = population_length_ratios(config)
    meta = {"model": "posendf", "config": config.model.to_dict(), "train_config": config.to_dict(),
            "rotations": list(ROTATIONS),
            "joint_weight": JOINT_WEIGHT, "manifold_poses": len(manifold), "off_manifold_poses": len(noisy),
            "length_ratios": ratio_means, "length_ratio_sds": ratio_sds,
            "epochs_done": done, "epochs_planned": config.epochs, "complete": done >= config.epochs,
            "device": str(dev), "torch_threads": torch.get_num_threads(),
            "train_minutes": round(sum(h["seconds"] for h in history) / 60, 1), "git_commit": git_commit(),
            "final": history[-1] if history else None,
            "command": f"posesdf train posendf --config {config.name} --out {out} --device {device}"}
    export_weights(out, "posendf", model, meta)
    return {"out": str(out), "epochs_done": done, "epochs_planned": config.epochs, "stopped_early": stopped_early,
            "final": history[-1] if history else None}
