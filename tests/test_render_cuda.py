"""CUDA parity tests: endogs' PyTorch rasterizer against gsplat's CUDA rasterizer.

All tests are marked ``cuda`` (tests/conftest.py skips them without a GPU); scripts/gpu_check.sh
runs them on a GPU machine. Both backends work in float32, gsplat with fast-math exp, so pixels
whose alpha sits on the 1/255 cut or whose transmittance sits on the 1e-4 stop may differ; the
comparisons below bound the typical error tightly and the rare outliers loosely.
"""

from __future__ import annotations

import re

import pytest
import torch

from endogs.render import render
from endogs.render.reference import look_at, pinhole_camera, synthetic_scene
from endogs.snapshot import Snapshot

pytestmark = pytest.mark.cuda

# Device and backend under test (module constants so the file can be dry-run on a CPU machine by
# setting them to "cpu": every comparison then runs CPU against CPU).
DEV = "cuda"
GS = "gsplat"
PARAMS = ("means", "quats", "scales", "opacities", "colors")


def _leaf(s: Snapshot, device: str) -> Snapshot:
    return s.to(device=device)._map(lambda t: t.detach().clone().requires_grad_())


def _close_images(a: torch.Tensor, b: torch.Tensor, typical: float, worst: float, frac: float = 0.999) -> None:
    """Most pixels within ``typical``, all within ``worst``."""
    d = (a.detach().float().cpu() - b.detach().float().cpu()).abs()
    assert float((d <= typical).float().mean()) >= frac, f"only {float((d <= typical).float().mean()):.5f} within {typical}"
    assert float(d.max()) <= worst, f"max diff {float(d.max())}"


def _rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm().clamp_min(1e-12))


@pytest.mark.parametrize("sh_degree", [None, 0, 1, 3])
def test_cpu_backend_matches_gsplat_forward_and_backward(sh_degree):
    base = synthetic_scene(3000, seed=1, sh_degree=sh_degree)
    cams = [pinhole_camera(160, 128), pinhole_camera(160, 128, look_at((0.3, -0.2, 0.1)))]
    bg = torch.tensor([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    g = torch.Generator().manual_seed(0)
    wr, wd, wa = (torch.randn(2, 128, 160, k, generator=g) for k in (3, 1, 1))

    results = {}
    for name, device, backend in (("cpu", "cpu", "cpu"), ("gsplat", DEV, GS)):
        snap = _leaf(base, device)
        out = render(snap, cams, background=bg.to(device), backend=backend)
        assert out.backend == backend
        out.info["means2d"].retain_grad()
        mask = (out.alpha.detach() > 0.2).to(out.depth.dtype)  # expected depth is ill-posed where alpha ~ 0
        loss = (out.rgb * wr.to(device)).sum() + (out.depth * mask * wd.to(device)).sum() * 0.1
        loss = loss + (out.alpha * wa.to(device)).sum()
        loss.backward()
        results[name] = (out, {k: getattr(snap, k).grad for k in PARAMS})

    (oc, gc), (og, gg) = results["cpu"], results["gsplat"]
    _close_images(oc.rgb, og.rgb, typical=2e-4, worst=2e-2)
    _close_images(oc.alpha, og.alpha, typical=2e-4, worst=2e-2)
    solid = (og.alpha.detach().cpu() > 0.2) & (oc.alpha.detach().cpu() > 0.2)
    _close_images(oc.depth.cpu()[solid], og.depth[solid.to(og.depth.device)], typical=1e-3, worst=5e-2)

    rc, rg = oc.info["radii"], og.info["radii"].cpu()
    assert rc.shape == rg.shape == (2, 3000, 2) and rc.dtype == rg.dtype == torch.int32
    vc, vg = (rc > 0).all(-1), (rg > 0).all(-1)
    assert float((vc == vg).float().mean()) > 0.995
    both = vc & vg
    assert float((rc[both] == rg[both]).float().mean()) > 0.99 and int((rc[both] - rg[both]).abs().max()) <= 1
    torch.testing.assert_close(oc.info["means2d"][both], og.info["means2d"].detach().cpu()[both], atol=1e-3, rtol=1e-5)
    torch.testing.assert_close(oc.info["depths"][both], og.info["depths"].detach().cpu()[both], atol=1e-5, rtol=1e-5)

    for k in PARAMS:
        assert _rel_err(gc[k], gg[k]) < 2e-2, (k, _rel_err(gc[k], gg[k]))
    m2c, m2g = oc.info["means2d"].grad, og.info["means2d"].grad.cpu()
    assert _rel_err(m2c[both], m2g[both]) < 2e-2


def test_auto_backend_and_cpu_backend_on_cuda_tensors():
    base = synthetic_scene(2000, seed=2)
    cam = pinhole_camera(128, 96)
    auto = render(base.to(device=DEV), cam)
    assert auto.backend == GS and auto.rgb.device.type == DEV
    torch_on_gpu = render(base.to(device=DEV), cam, backend="cpu")  # pure PyTorch runs on CUDA too
    assert torch_on_gpu.backend == "cpu" and torch_on_gpu.rgb.device.type == DEV
    on_cpu = render(base, cam)
    torch.testing.assert_close(torch_on_gpu.rgb.cpu(), on_cpu.rgb, atol=1e-4, rtol=1e-4)
    _close_images(auto.rgb, on_cpu.rgb, typical=2e-4, worst=2e-2)
    f64 = render(base.to(device=DEV, dtype=torch.float64), cam)  # gsplat is float32-only
    assert f64.backend == "cpu" and f64.rgb.dtype == torch.float64


def test_absgrad_matches_gsplat():
    base = synthetic_scene(2000, seed=3)
    cam = pinhole_camera(128, 96)
    w = torch.randn(1, 96, 128, 3, generator=torch.Generator().manual_seed(0))
    absg = {}
    for name, device, backend in (("cpu", "cpu", "cpu"), ("gsplat", DEV, GS)):
        out = render(_leaf(base, device), cam, backend=backend, absgrad=True)
        (out.rgb * w.to(device)).sum().backward()
        absg[name] = out.info["means2d"].absgrad.detach().cpu()
    # Both sum |dL/dmeans2d| per pixel over the pixels a Gaussian touches.
    assert _rel_err(absg["cpu"], absg["gsplat"]) < 2e-2


def test_default_strategy_with_gsplat_backend(capsys):
    from gsplat.strategy import DefaultStrategy

    n = 400
    base = synthetic_scene(n, seed=1, scale=0.05).to(device=DEV)
    scales = torch.full((n, 3), 0.004, device=DEV)
    scales[n // 2 :] = 0.05
    params = torch.nn.ParameterDict(
        {
            "means": torch.nn.Parameter(base.means.clone()),
            "scales": torch.nn.Parameter(torch.log(scales)),
            "quats": torch.nn.Parameter(base.quats.clone()),
            "opacities": torch.nn.Parameter(torch.logit(base.opacities.clone())),
            "colors": torch.nn.Parameter(base.colors.clone()),
        }
    )
    optimizers = {k: torch.optim.Adam([{"params": p, "lr": 1e-3, "name": k}]) for k, p in params.items()}
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=2, refine_stop_iter=100, grow_grad2d=1e-12, verbose=True)
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    cam = pinhole_camera(64, 48)
    target = torch.rand(1, 48, 64, 3, device=DEV)
    for step in range(5):
        snap = Snapshot(params["means"], params["quats"], torch.exp(params["scales"]),
                        torch.sigmoid(params["opacities"]), params["colors"])  # fmt: skip
        out = render(snap, cam)
        assert out.backend == GS
        strategy.step_pre_backward(params, optimizers, state, step, out.info)
        (out.rgb - target).abs().mean().backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, optimizers, state, step, out.info, packed=False)
    log = capsys.readouterr().out
    assert sum(int(x) for x in re.findall(r"(\d+) GSs split", log)) > 0, log
    assert len(params["means"]) != n
