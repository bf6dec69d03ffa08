"""The compiled projection against the PyTorch reference: values, radii, culling, gradients, the choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from endogs.render import projection_numba as pjn
from endogs.render import render
from endogs.render.projection import project_gaussians
from endogs.render.reference import look_at, pinhole_camera, synthetic_scene

F64 = torch.float64
W, H = 48, 40


def _scene(dtype=F64, n=500):
    """Gaussians in and around two cameras' views: some behind the near plane, some off-screen (culled),
    some far outside the field of view (the Jacobian's clamp), quaternions of any norm (one below the
    1e-12 clamp) and opacities on both sides of 1/255."""
    snap = synthetic_scene(n, seed=5, dtype=dtype, xy=(4.0, 3.2), z=(2.0, 4.0), opacity=(0.001, 1.0))
    with torch.no_grad():
        snap.quats.mul_(torch.linspace(0.3, 3.0, n, dtype=dtype)[:, None])
        snap.quats[0] = torch.tensor([1e-14, 0.0, 0.0, 0.0], dtype=dtype)
    cams = [pinhole_camera(W, H), pinhole_camera(W, H, look_at((0.5, -0.3, 0.2)))]
    vm = torch.as_tensor(np.stack([c.viewmat for c in cams]), dtype=dtype)
    Ks = torch.as_tensor(np.stack([c.K for c in cams]), dtype=dtype)
    return snap, vm, Ks


def _project(fn, snap, vm, Ks, **kw):
    leaves = [t.detach().clone().requires_grad_() for t in (snap.means, snap.quats, snap.scales)]
    p = fn(*leaves, snap.opacities, vm, Ks, W, H, **kw)
    g = torch.Generator().manual_seed(0)
    ws = [torch.randn(t.shape, generator=g, dtype=t.dtype) for t in (p.means2d, p.conics, p.depths)]
    loss = sum((t * w).sum() for t, w in zip((p.means2d, p.conics, p.depths), ws))
    grads = torch.autograd.grad(loss, leaves)
    return p, grads


@pytest.mark.parametrize("kw", [{}, {"near": 2.7, "far": 3.6, "eps2d": 0.0}])
def test_values_and_gradients_equal_the_reference_in_float64(kw):
    snap, vm, Ks = _scene()
    assert pjn.use_numba_projection(snap.means, snap.quats, snap.scales, snap.opacities, vm, Ks)
    ref, gref = _project(project_gaussians, snap, vm, Ks, **kw)
    got, ggot = _project(pjn.project_gaussians_numba, snap, vm, Ks, **kw)
    visible = (ref.radii > 0).all(-1)
    assert 0.1 < float(visible.double().mean()) < 0.8  # both drawn and culled entries are compared
    assert torch.equal(got.radii, ref.radii) and got.radii.dtype == torch.int32
    for a, b in ((got.means2d, ref.means2d), (got.conics, ref.conics), (got.depths, ref.depths)):
        a, b = a.detach(), b.detach()
        assert a.shape == b.shape and a.dtype == F64
        assert torch.allclose(a, b, rtol=0, atol=1e-12 * max(1.0, float(b.abs().max())))
        assert (a[~visible] == 0).all()  # culled entries are zero, as gsplat leaves them
    for a, b in zip(ggot, gref):
        assert b.abs().max() > 0
        assert torch.allclose(a, b, rtol=0, atol=1e-12 * float(b.abs().max()))
    assert gref[1][0].abs().max() > 1e6  # the clamped tiny quaternion's gradient (1 / 1e-12) is compared too


def test_the_field_of_view_clamp_is_differentiated():
    """A Gaussian far to the side of the view (its 2D mean on screen through its large footprint, its
    Jacobian clamped at 1.3x the half-extent): gradients still equal the reference."""
    snap = synthetic_scene(3, seed=1, dtype=F64)
    with torch.no_grad():
        snap.means.copy_(torch.tensor([[5.0, 0.1, 2.0], [-4.0, -3.5, 2.5], [0.1, 0.2, 3.0]], dtype=F64))
        snap.scales.copy_(torch.tensor([1.5, 0.4, 0.9], dtype=F64).expand(3, 3))  # anisotropic: rotations matter
        snap.opacities.fill_(0.9)
    cam = pinhole_camera(W, H)
    vm = torch.as_tensor(cam.viewmat[None], dtype=F64)
    Ks = torch.as_tensor(cam.K[None], dtype=F64)
    ref, gref = _project(project_gaussians, snap, vm, Ks)
    got, ggot = _project(pjn.project_gaussians_numba, snap, vm, Ks)
    assert (ref.radii > 0).all()
    u = snap.means[:2, 0] / snap.means[:2, 2]
    assert (u.abs() > 0.5 * W / float(Ks[0, 0, 0]) * 1.3).all()  # outside the clamp
    assert torch.allclose(got.conics.detach(), ref.conics.detach(), rtol=0, atol=1e-12)
    for a, b in zip(ggot, gref):
        assert torch.allclose(a, b, rtol=0, atol=1e-12 * float(b.abs().max()))


def test_float32_is_float32_and_close():
    snap, vm, Ks = _scene(torch.float32, n=2000)
    ref, gref = _project(project_gaussians, snap, vm, Ks)
    got, ggot = _project(pjn.project_gaussians_numba, snap, vm, Ks)
    assert got.means2d.dtype == got.conics.dtype == ggot[0].dtype == torch.float32
    assert (got.radii != ref.radii).any(-1).float().mean() < 1e-3  # a ceil at a rounding boundary at most
    same = (got.radii == ref.radii).all(-1)
    assert torch.allclose(got.means2d.detach()[same], ref.means2d.detach()[same], rtol=1e-5, atol=1e-4)
    for a, b in zip(ggot, gref):
        assert (a - b).abs().max() < 1e-5 * b.abs().max()


def test_render_uses_it_and_matches_the_torch_backend(monkeypatch):
    snap = synthetic_scene(300, seed=2, dtype=F64, sh_degree=1)
    for t in (snap.means, snap.quats, snap.scales):
        t.requires_grad_()
    cam = pinhole_camera(64, 48)
    calls = []
    real = pjn.project_gaussians_numba
    monkeypatch.setattr(pjn, "project_gaussians_numba", lambda *a, **k: calls.append(1) or real(*a, **k))

    def run():
        out = render(snap, cam)
        loss = out.rgb.sum() + out.depth.sum()
        return [out.rgb.detach(), *torch.autograd.grad(loss, (snap.means, snap.quats, snap.scales, out.info["means2d"]))]

    fast = run()
    assert calls, "the numba CPU backend did not use the compiled projection"
    monkeypatch.setenv("ENDOGS_CPU_BACKEND", "torch")
    ref = run()
    assert len(calls) == 1  # the torch backend keeps the reference path
    for a, b in zip(fast, ref):
        assert torch.allclose(a, b, rtol=0, atol=1e-9 * max(1.0, float(b.abs().max())))


def test_applies_only_where_it_computes_the_same():
    snap, vm, Ks = _scene(n=10)
    args = (snap.means, snap.quats, snap.scales, snap.opacities)
    assert pjn.use_numba_projection(*args, vm, Ks)
    assert not pjn.use_numba_projection(*args, vm.float(), Ks)  # mixed dtypes
    assert not pjn.use_numba_projection(*args, vm.clone().requires_grad_(), Ks)  # a camera with a gradient
    assert not pjn.use_numba_projection(*(t.half() for t in args), vm.half(), Ks.half())
