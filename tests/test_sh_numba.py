"""The compiled SH colour against the PyTorch reference: values, gradients, the clamp, degrees, choice."""

from __future__ import annotations

import pytest
import torch

from endogs.render import render
from endogs.render import sh_numba as shn
from endogs.render.reference import pinhole_camera, synthetic_scene
from endogs.render.sh import sh_to_rgb

F64 = torch.float64


def _inputs(n_cam, n, k=16, dtype=F64, seed=0):
    g = torch.Generator().manual_seed(seed)
    dirs = torch.randn(n_cam, n, 3, generator=g, dtype=dtype) * 3.0
    dirs[0, 0] = torch.tensor([0.0, 0.0, 1e-14], dtype=dtype)  # below the 1e-12 norm clamp
    dirs[0, 1] = torch.tensor([0.0, 0.0, -2.0], dtype=dtype)  # on an axis
    coeffs = torch.randn(n, k, 3, generator=g, dtype=dtype) * 1.5  # many raw colours below -0.5: the clamp
    return dirs.requires_grad_(True), coeffs.requires_grad_(True)


@pytest.mark.parametrize("degree", [1, 2, 3])
@pytest.mark.parametrize("n_cam", [1, 2])
def test_values_and_gradients_equal_the_reference_in_float64(degree, n_cam):
    dirs, coeffs = _inputs(n_cam, 400)
    assert shn.use_numba_sh(degree, dirs, coeffs)
    ref = sh_to_rgb(degree, dirs, coeffs[None])
    fast = shn.sh_to_rgb_numba(degree, dirs, coeffs)
    assert fast.shape == ref.shape == (n_cam, 400, 3)
    assert (ref == 0).float().mean() > 0.05 and (ref > 0).float().mean() > 0.3  # both sides of the clamp
    assert torch.allclose(fast, ref, rtol=0, atol=1e-12)
    w = torch.randn_like(ref)
    gd_ref, gc_ref = torch.autograd.grad(ref, (dirs, coeffs), w)
    gd, gc = torch.autograd.grad(fast, (dirs, coeffs), w)
    assert torch.allclose(gc, gc_ref, rtol=0, atol=1e-12)
    if degree < 3:  # coefficients above the degree get no gradient
        assert gc[:, (degree + 1) ** 2:].abs().max() == 0
    assert torch.allclose(gd, gd_ref, rtol=1e-10, atol=1e-12 * gd_ref.abs().max())
    assert gd_ref.abs().max() > 1e6  # the clamped tiny direction's gradient (1 / 1e-12) is compared too


def test_float32_is_float32_and_close():
    dirs, coeffs = _inputs(1, 2000, dtype=torch.float32)
    fast = shn.sh_to_rgb_numba(3, dirs, coeffs)
    ref = sh_to_rgb(3, dirs.double(), coeffs.double()[None])
    assert fast.dtype == torch.float32
    assert (fast.double() - ref).abs().max() < 1e-5


def test_render_uses_it_and_matches_the_torch_backend(monkeypatch):
    snap = synthetic_scene(300, seed=2, dtype=F64, sh_degree=3)
    cam = pinhole_camera(64, 48)
    calls = []
    real = shn.sh_to_rgb_numba
    monkeypatch.setattr(shn, "sh_to_rgb_numba", lambda *a: calls.append(1) or real(*a))
    fast = render(snap, cam).rgb
    assert calls, "the numba CPU backend did not use the compiled SH colour"
    monkeypatch.setenv("ENDOGS_CPU_BACKEND", "torch")
    ref = render(snap, cam).rgb
    assert len(calls) == 1  # the torch backend keeps the reference path
    assert torch.allclose(fast, ref, rtol=0, atol=1e-10)


def test_applies_only_where_it_computes_the_same():
    dirs, coeffs = _inputs(1, 10)
    assert not shn.use_numba_sh(0, dirs, coeffs)  # degree 0 has no view dependence
    assert not shn.use_numba_sh(3, dirs, coeffs[:, :9])  # too few coefficients
    assert not shn.use_numba_sh(2, dirs, coeffs.float())  # mixed dtypes
    assert not shn.use_numba_sh(2, dirs, coeffs[None])  # coefficients per camera
    assert not shn.use_numba_sh(2, dirs.half(), coeffs.half())
