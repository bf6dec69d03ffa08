"""Position offsets of the deformation fields are bounded: max_offset * tanh(raw / max_offset),
in units of the AABB half-extent (a long run once flung Gaussians metres away without it)."""

import numpy as np
import pytest
import torch

from endogs.init.pointcloud import PointCloud
from endogs.model.config import HexPlaneConfig, field_type
from endogs.model.scene import DynamicScene


def _scene(kind, max_offset):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    pc = PointCloud(rng.random((100, 3)), rng.random((100, 3)))
    return DynamicScene.from_point_cloud(pc, field_type(kind)(max_offset=max_offset), n_frames=8, sh_degree=0)


@pytest.mark.parametrize("kind", ["hexplane", "mlp", "basis"])
def test_position_offsets_are_bounded(kind):
    scene = _scene(kind, 0.5)
    field = scene.deform
    with torch.no_grad():  # make the raw position output enormous
        for name, p in list(field.named_parameters()) + [(k, v) for k, v in scene.params.items() if k.startswith("deform_")]:
            if "means" in name or kind == "hexplane":
                p.add_(torch.randn_like(p) * 50.0)
        d = (scene.at(0.4).means - scene.at(0.4, deform=False).means).abs()
    limit = 0.5 * float(field.motion_scale)
    assert float(d.max()) <= limit * (1 + 1e-5)
    assert float(d.max()) > 0.5 * limit  # the raw output really was large


def test_bound_is_the_identity_for_small_motion_and_can_be_switched_off():
    out = torch.tensor([[0.01, -0.02, 0.0]])
    bounded = _scene("hexplane", 0.5).deform.to_deltas({"means": out}).d_means
    free = _scene("hexplane", 0.0).deform.to_deltas({"means": out}).d_means
    assert torch.allclose(bounded, free, rtol=2e-3)
    big = torch.tensor([[100.0, 0.0, 0.0]])
    free_field = _scene("hexplane", 0.0).deform
    assert float(free_field.to_deltas({"means": big}).d_means[0, 0]) == pytest.approx(100.0 * float(free_field.motion_scale))
    with pytest.raises(Exception, match="max_offset"):
        HexPlaneConfig(max_offset=-1.0)


@pytest.mark.parametrize("kind", ["hexplane", "mlp", "basis"])
def test_offset_bound_loss_pulls_saturated_gaussians_back(kind):
    """Past the bound the tanh has no gradient: a Gaussian pushed there would stay for good (a real
    run lost half its Gaussians so). The offset_bound term is zero inside half the bound and pulls
    the raw output back from outside it, where the image loss no longer can."""
    scene = _scene(kind, 0.5)
    field = scene.deform
    scene.at(0.4)
    assert float(field.offset_bound_loss().detach()) == 0.0  # zero-initialised field: no motion, no pull
    with torch.no_grad():
        for name, p in list(field.named_parameters()) + [(k, v) for k, v in scene.params.items() if k.startswith("deform_")]:
            if "means" in name or kind == "hexplane":
                p.add_(torch.randn_like(p) * 3.0)
    params = [p for p in field.parameters()] + [v for k, v in scene.params.items() if k.startswith("deform_")]
    moved = scene.at(0.4).means
    raw = field._raw_means
    far = raw.abs() > 4 * 0.5  # [N, 3] entries far past the bound
    assert int(far.sum()) > 10
    # there, a position loss no longer reaches the raw output; the bound term does, in full
    (through_tanh,) = torch.autograd.grad(moved.sum(), raw, retain_graph=True)
    bound = field.offset_bound_loss()
    assert float(bound.detach()) > 0
    (pull,) = torch.autograd.grad(bound, raw, retain_graph=True)
    n = raw.shape[0]
    assert float(through_tanh[far].abs().max()) < 1.5e-3 * float(field.motion_scale)  # tanh'(4) = 1.3e-3; 1 at rest
    assert torch.allclose(pull[far] * n, 2 * (raw[far].abs() - 0.25) * raw[far].sign(), rtol=1e-4)
    opt = torch.optim.Adam(params, lr=0.05)
    before = float(bound.detach())
    for _ in range(60):
        opt.zero_grad()
        scene.at(0.4)
        field.offset_bound_loss().backward()
        opt.step()
    scene.at(0.4)
    assert float(field.offset_bound_loss().detach()) < 0.5 * before


def test_offset_bound_loss_is_zero_for_small_motion_and_when_unbounded():
    field = _scene("hexplane", 0.5).deform
    field.to_deltas({"means": torch.full((5, 3), 0.2, requires_grad=True)})  # inside max_offset / 2
    assert float(field.offset_bound_loss().detach()) == 0.0
    field.to_deltas({"means": torch.tensor([[0.45, 0.0, -0.35]], requires_grad=True)})
    assert float(field.offset_bound_loss().detach()) == pytest.approx(0.2**2 + 0.1**2)
    free = _scene("hexplane", 0.0).deform
    free.to_deltas({"means": torch.full((5, 3), 9.0, requires_grad=True)})
    assert float(free.offset_bound_loss().detach()) == 0.0


def test_mean_offset_loss_is_the_squared_mean_raw_output_and_ignores_zero_mean_motion():
    field = _scene("hexplane", 0.5).deform
    assert float(field.mean_offset_loss()) == 0.0 and not field.mean_offset_loss().requires_grad  # before any forward
    shift = torch.tensor([[0.02, -0.01, 0.03]])
    raw = (shift + torch.tensor([[0.1, 0.0, 0.0], [-0.1, 0.0, 0.0]])).requires_grad_(True)  # [2, 3], mean = shift
    field.to_deltas({"means": raw})
    loss = field.mean_offset_loss()
    assert float(loss.detach()) == pytest.approx(float(shift.square().sum()), rel=1e-6)
    loss.backward()
    torch.testing.assert_close(raw.grad, shift.expand(2, 3))  # d/d raw_i of |mean|^2 = 2 mean / n
    field.to_deltas({"means": torch.tensor([[0.2, 0.0, 0.0], [-0.2, 0.0, 0.0]], requires_grad=True)})
    assert float(field.mean_offset_loss().detach()) == 0.0  # motion with zero mean costs nothing
