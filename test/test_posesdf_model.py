"""PoseSDF network, losses and schedules."""
import math

import pytest
import torch

from posesdf_ros.models.losses import free_space_loss, inside_loss, latent_regulariser, tolerance_loss
from posesdf_ros.models.posesdf import FourierEncoding, PoseSDF, PoseSDFConfig
from posesdf_ros.training.schedules import linear_ramp, step_lr


@pytest.mark.parametrize("changes", [{}, {"exchange_layers": 0}, {"encoder_layers": 0}, {"pose_decoder": False}])
def test_shapes_and_gradients(changes):
    torch.manual_seed(0)
    model = PoseSDF(PoseSDFConfig(width=32, **changes))
    z = torch.randn(2, 64, requires_grad=True)
    p = torch.rand(2, 50, 3, requires_grad=True)
    shape, pose = model(z, p)
    assert shape.shape == (2, 50)
    if changes.get("pose_decoder") is False:
        assert pose is None
        total = shape.sum()
    else:
        assert pose.shape == (2, 50, 9)
        total = shape.sum() + pose.sum()
    total.backward()
    for t in (z.grad, p.grad, *[q.grad for q in model.parameters()]):
        assert t is not None and torch.isfinite(t).all()
    assert z.grad.abs().sum() > 0 and p.grad.abs().sum() > 0


def test_per_point_codes_match_per_shape_codes():
    model = PoseSDF(PoseSDFConfig(width=32))
    z, p = torch.randn(3, 64), torch.rand(3, 20, 3)
    a, b = model(z, p), model(z[:, None].expand(-1, 20, -1), p)
    assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1])


@pytest.mark.parametrize("changes", [{}, {"exchange_layers": 0}, {"exchange_layers": 4}, {"encoder_layers": 0}])
def test_shape_only_pass_gives_the_same_shape_field(changes):
    model = PoseSDF(PoseSDFConfig(width=32, **changes))
    z, p = torch.randn(2, 64), torch.rand(2, 20, 3)
    shape, pose = model(z, p, with_pose=False)
    assert pose is None and torch.allclose(shape, model(z, p)[0])


def _pose_change_when_shape_branch_changes(exchange_layers: int) -> float:
    torch.manual_seed(1)
    model = PoseSDF(PoseSDFConfig(width=32, exchange_layers=exchange_layers))
    z, p = torch.randn(1, 64), torch.rand(1, 30, 3)
    before = model(z, p)[1].clone()
    with torch.no_grad():
        model.shape_layers[0].weight.add_(0.5)
    return (model(z, p)[1] - before).abs().max().item()


def test_feature_exchange_couples_the_decoders():
    assert _pose_change_when_shape_branch_changes(2) > 1e-4
    assert _pose_change_when_shape_branch_changes(0) == 0.0


def test_fourier_encoding_has_18_dims_and_unit_period():
    enc = FourierEncoding(3)
    p = torch.rand(10, 3)
    assert enc(p).shape == (10, 18) and enc.out_dim == 18
    assert torch.allclose(enc(p), enc(p + torch.tensor([1.0, -1.0, 2.0])), atol=1e-4)
    assert not torch.allclose(enc(p), enc(p + 0.25), atol=1e-3)


def test_tolerance_loss_signs_and_tolerance():
    target = torch.tensor([0.1, 0.1, -0.1, -0.1])
    # The same 0.05 error towards the surface (and the other sign) vs away from it.
    towards = tolerance_loss(target - 0.05 * target.sign(), target, lam=0.5, eps=0.0)
    away = tolerance_loss(target + 0.05 * target.sign(), target, lam=0.5, eps=0.0)
    assert torch.allclose(towards, torch.full((4,), 0.075)) and torch.allclose(away, torch.full((4,), 0.025))
    assert torch.all(tolerance_loss(target + 0.002, target, lam=0.5, eps=0.0025) == 0)
    assert torch.allclose(tolerance_loss(target + 0.01, target, 0.0, 0.0), torch.full((4,), 0.01))


def test_latent_regulariser_free_space_and_inside():
    z = torch.ones(2, 4)
    assert latent_regulariser(z, 1e-2).item() == pytest.approx(0.04)
    assert free_space_loss(torch.tensor([0.1, -0.2]), torch.tensor(0.0)).tolist() == pytest.approx([0.0, 0.2])
    assert inside_loss(torch.tensor([0.1, -0.2])).tolist() == pytest.approx([0.1, 0.0])


def test_schedules():
    assert linear_ramp(0, 0.5, 0) == 0 and linear_ramp(0, 0.5, 1) == 0.5 and linear_ramp(0.0025, 0, 2) == 0
    assert [step_lr(1e-3, e, 600) for e in (0, 599, 600, 1200)] == pytest.approx([1e-3, 1e-3, 5e-4, 2.5e-4])
    assert math.isfinite(linear_ramp(0, 1, -1))
