"""PointNet++ sampling and grouping against brute-force references."""
import numpy as np
import torch

from posesdf_ros.models.pointnet2 import PointNet2Encoder, ball_query, farthest_point_sample, gather


def _fps_reference(x: np.ndarray, k: int) -> list[int]:
    chosen = [0]
    for _ in range(k - 1):
        d = np.min([((x - x[c]) ** 2).sum(1) for c in chosen], axis=0)
        chosen.append(int(d.argmax()))
    return chosen


def _ball_reference(x: np.ndarray, c: np.ndarray, radius: float, k: int) -> list[int]:
    inside = [i for i in range(len(x)) if ((x[i] - c) ** 2).sum() <= radius ** 2][:k]
    if not inside:
        inside = [int(((x - c) ** 2).sum(1).argmin())]
    return inside + [inside[0]] * (k - len(inside))


def test_farthest_point_sampling_matches_brute_force():
    x = torch.rand(3, 200, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    idx = farthest_point_sample(x, 20)
    for b in range(3):
        assert idx[b].tolist() == _fps_reference(x[b].numpy(), 20)
        # A single cloud takes the numpy path: the same indices.
        assert farthest_point_sample(x[b:b + 1], 20)[0].tolist() == idx[b].tolist()


def test_ball_query_matches_brute_force():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 150, 3, generator=g, dtype=torch.float64)
    centres = torch.cat([x[:, :10], torch.full((2, 1, 3), 5.0, dtype=torch.float64)], 1)   # one far centre
    idx = ball_query(0.2, 8, x, centres)
    assert idx.shape == (2, 11, 8)
    for b in range(2):
        for s in range(11):
            assert idx[b, s].tolist() == _ball_reference(x[b].numpy(), centres[b, s].numpy(), 0.2, 8)


def test_gather_and_encoder_shapes_and_permutation_invariance():
    x = torch.rand(2, 300, 3, generator=torch.Generator().manual_seed(2))
    assert torch.equal(gather(x, torch.tensor([[0, 5], [7, 1]])), torch.stack([x[0, [0, 5]], x[1, [7, 1]]]))
    enc = PointNet2Encoder().eval()
    out = enc(x)
    assert out.shape == (2, enc.out_dim)
    # The global layer max-pools: shuffling points other than the first (the FPS seed) changes nothing.
    perm = torch.cat([torch.zeros(1, dtype=torch.long), 1 + torch.randperm(299)])
    assert torch.allclose(enc(x[:, perm]), out, atol=1e-5)


def test_turned_copies_can_share_sampling_and_grouping():
    """A batch of vertical turns of one cloud: grouping the first and sharing it gives the
    features of grouping each (the distances are the same)."""
    x = torch.rand(300, 3, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    turns = []
    for angle in (0.0, 0.7, 2.0):
        c, s = np.cos(angle), np.sin(angle)
        turns.append(x @ torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64).T)
    batch = torch.stack(turns)
    enc = PointNet2Encoder().double().eval()
    with torch.no_grad():
        assert torch.allclose(enc(batch, same_distances=True), enc(batch), atol=1e-9)
        assert not torch.allclose(enc(batch[[0, 0, 0]]), enc(batch), atol=1e-3)
