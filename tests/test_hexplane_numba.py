"""The compiled HexPlane sampler against the grid_sample reference: values, plane gradients, edges, choice."""

from __future__ import annotations

import pytest
import torch

from endogs.model import hexplane_numba as hn
from endogs.model.config import HexPlaneConfig
from endogs.model.hexplane import HexPlaneField

F64 = torch.float64


def _field(dtype=torch.float32, seed=0, resolutions=(6, 11), t_res=5, c=5):
    torch.manual_seed(seed)
    cfg = HexPlaneConfig(spatial_resolutions=resolutions, time_resolution=t_res, feature_dim=c, hidden_dim=8)
    f = HexPlaneField(cfg, torch.tensor([[-1.0, -2.0, 0.5], [1.0, 2.0, 3.0]]), 10).to(dtype)
    with torch.no_grad():  # planes far from their init, so every factor matters
        for p in [*f.spatial, *f.temporal]:
            p.uniform_(-1.5, 2.0)
    return f


def _points(n, dtype, seed=1):
    g = torch.Generator().manual_seed(seed)
    xyz = torch.rand(n, 3, generator=g, dtype=dtype) * 2.6 - 1.3  # some outside [-1, 1]: border padding
    edges = torch.tensor([[-1, -1, -1], [1, 1, 1], [1, -1, 0.25], [0, 0, 0], [3, -4, 1], [-1, 1, 1]], dtype=dtype)
    return torch.cat([edges, xyz])


@pytest.mark.parametrize("t", [0.0, 0.37, 0.5, 1.0])
def test_values_and_plane_gradients_equal_grid_sample_in_float64(t):
    f = _field(F64)
    xyz, tt = _points(300, F64), torch.tensor(t, dtype=F64)
    assert hn.use_numba_sampling(xyz, list(f.spatial))
    fast, ref = f.features(xyz, tt), f.features_reference(xyz, tt)
    assert fast.shape == ref.shape == (306, 10)
    assert torch.allclose(fast, ref, rtol=0, atol=1e-12)
    w = torch.randn_like(ref)
    planes = [*f.spatial, *f.temporal]
    g_fast = torch.autograd.grad((fast * w).sum(), planes)
    g_ref = torch.autograd.grad((ref * w).sum(), planes)
    for a, b in zip(g_fast, g_ref):
        assert a.shape == b.shape
        assert torch.allclose(a, b, rtol=0, atol=1e-11), (a - b).abs().max()
    assert all(g.abs().sum() > 0 for g in g_fast)  # every plane receives a gradient


def test_float32_agrees_and_result_does_not_depend_on_threads():
    f = _field(torch.float32, resolutions=(8, 16), c=32)
    xyz, t = _points(4000, torch.float32), torch.tensor(0.61)
    ref = f.features_reference(xyz, t)
    w = torch.randn_like(ref)
    planes = [*f.spatial, *f.temporal]
    g_ref = torch.autograd.grad((ref * w).sum(), planes)
    threads = torch.get_num_threads()
    results = []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            fast = f.features(xyz, t)
            results.append((fast, torch.autograd.grad((fast * w).sum(), planes)))
    finally:
        torch.set_num_threads(threads)
    for fast, grads in results:
        assert torch.allclose(fast, ref, rtol=1e-5, atol=1e-5)
        for a, b in zip(grads, g_ref):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * b.abs().max())
    # per-thread partial sums differ only by rounding between thread counts
    assert torch.equal(results[0][0], results[1][0])
    for a, b in zip(results[0][1], results[1][1]):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-5 * b.abs().max())


def test_gradcheck_against_finite_differences():
    f = _field(F64, resolutions=(3, 4), t_res=3, c=2)
    xyz = _points(12, F64)
    planes = [p.detach().clone().requires_grad_() for pair in zip(f.spatial, f.temporal) for p in pair]
    assert torch.autograd.gradcheck(lambda *ps: hn.hexplane_features(xyz, 0.2, ps), planes)


def test_field_output_and_training_gradients_match_the_reference():
    f = _field(torch.float32)
    xyz, t = _points(500, torch.float32), torch.tensor(0.3)
    out = f.trunk(f.features(xyz, t))
    ref = f.trunk(f.features_reference(xyz, t))
    assert torch.allclose(out, ref, atol=1e-5)
    params = [*f.spatial, *f.temporal, *f.trunk.parameters()]
    g_fast = torch.autograd.grad(out.square().sum(), params)
    g_ref = torch.autograd.grad(ref.square().sum(), params)
    for a, b in zip(g_fast, g_ref):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-4 * (b.abs().max() + 1e-12))


def test_reference_path_where_coordinates_need_a_gradient_or_asked(monkeypatch):
    f = _field(F64)
    xyz = _points(50, F64).requires_grad_()
    planes = list(f.spatial)
    assert not hn.use_numba_sampling(xyz, planes)  # the compiled sampler gives no coordinate gradient
    out = f.features(xyz, torch.tensor(0.4, dtype=F64))
    (g,) = torch.autograd.grad(out.sum(), xyz)
    assert g.abs().sum() > 0
    xyz = xyz.detach()
    assert hn.use_numba_sampling(xyz, planes)
    monkeypatch.setenv("ENDOGS_CPU_BACKEND", "torch")
    assert not hn.use_numba_sampling(xyz, planes)
    monkeypatch.delenv("ENDOGS_CPU_BACKEND")
    assert not hn.use_numba_sampling(xyz.float(), planes)  # mixed dtypes


def test_empty_and_nan_coordinates_stay_in_bounds():
    f = _field(torch.float32)
    empty = f.features(torch.zeros(0, 3), torch.tensor(0.5))
    assert empty.shape == (0, 10)
    planes = [*f.spatial, *f.temporal]
    (g,) = torch.autograd.grad(f.features(torch.zeros(0, 3), torch.tensor(0.5)).sum(), planes[:1])
    assert torch.count_nonzero(g) == 0
    xyz = torch.tensor([[float("nan"), 0.0, 0.0], [float("inf"), -float("inf"), 0.0]])
    out = f.features(xyz, torch.tensor(0.5))  # no out-of-bounds read: NaN and inf go to a border cell
    assert out.shape == (2, 10)
    assert torch.isfinite(out[1]).all()
