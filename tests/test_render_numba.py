"""The compiled (numba) CPU rasterizer: binning, threads, backend choice and its errors.

Its numerical agreement with the float64 brute-force reference is tested in test_render_cpu.py,
which runs every test over both CPU rasterizers.
"""

from __future__ import annotations

import numba
import pytest
import torch

from endogs.render import render
from endogs.render import cpu_select
from endogs.render.cpu import build_tile_layout
from endogs.render.cpu_numba import build_layout
from endogs.render.cpu_select import CpuBackendError, choose_cpu_backend
from endogs.render.projection import project_gaussians
from endogs.render.reference import look_at, pinhole_camera, synthetic_scene

F64 = torch.float64


def _projected(n=300, W=40, H=32, C=1):
    snap = synthetic_scene(n, seed=6, dtype=F64, scale=0.1, xy=(2.2, 1.8))
    cams = [pinhole_camera(W, H), pinhole_camera(W, H, look_at((0.4, -0.2, 0.1)))][:C]
    vm = torch.stack([torch.as_tensor(c.viewmat) for c in cams])
    K = torch.stack([torch.as_tensor(c.K) for c in cams])
    p = project_gaussians(snap.means, snap.quats, snap.scales, snap.opacities, vm, K, W, H)
    return p, snap.opacities[None].expand(C, n).contiguous()


@pytest.mark.parametrize("ts", [1, 4, 8, 16])
def test_layout_has_the_torch_pairs_front_to_back(ts):
    p, opa = _projected(C=2)
    mine = build_layout(p.means2d, p.conics, opa, p.radii, p.depths, 40, 32, ts)
    ref = build_tile_layout(p.means2d, p.conics, opa, p.radii, p.depths, 40, 32, ts)
    assert mine.n_pairs == ref.n_pairs > 0
    d = p.depths.reshape(-1)
    want = {}
    for t, s, c in zip(ref.tile_ids.tolist(), ref.tile_start.tolist(), ref.tile_count.tolist()):
        want[t] = ref.pair_gid[s : s + c].tolist()
    got = {}
    for t in range(len(mine.tile_start) - 1):
        s, e = int(mine.tile_start[t]), int(mine.tile_start[t + 1])
        if e > s:
            got[t] = mine.pair_gid[s:e].tolist()
            run = d[torch.as_tensor(got[t])]
            assert torch.all(run[1:] >= run[:-1])
    assert got == want  # same tiles, same Gaussians, same (stable depth) order


def test_absgrad_matches_torch_rasterizer():
    base = synthetic_scene(200, seed=4, dtype=F64, scale=0.15)
    w = torch.randn(1, 24, 32, 3, generator=torch.Generator().manual_seed(2), dtype=F64)
    res = {}
    for be in ("torch", "numba"):
        s = base.detach()._map(lambda t: t.clone().requires_grad_())
        out = render(s, pinhole_camera(32, 24), absgrad=True, cpu_backend=be)
        (out.rgb * w).sum().backward()
        res[be] = (out.info["means2d"].grad, out.info["means2d"].absgrad, s.scales.grad)
    for a, b in zip(res["numba"], res["torch"]):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=1e-9)
    assert float(res["numba"][1].sum()) > 0


@pytest.mark.parametrize("threads", [1, 2])
def test_torch_thread_count_is_respected(threads):
    before = torch.get_num_threads()
    snap = synthetic_scene(50, seed=0, scale=0.1)
    try:
        torch.set_num_threads(threads)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        out = render(snap, pinhole_camera(16, 12), cpu_backend="numba")
        assert out.info["cpu_backend"] == "numba"
        assert numba.get_num_threads() == min(threads, numba.config.NUMBA_NUM_THREADS)
    finally:
        torch.set_num_threads(before)


def test_keyword_beats_environment_and_default_is_numba_on_cpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.delenv(cpu_select.ENV_VAR, raising=False)
    assert choose_cpu_backend(None, cpu) == "numba"
    monkeypatch.setenv(cpu_select.ENV_VAR, "torch")
    assert choose_cpu_backend(None, cpu) == "torch"
    assert choose_cpu_backend("numba", cpu) == "numba"
    out = render(synthetic_scene(20, seed=0), pinhole_camera(16, 12))
    assert out.info["cpu_backend"] == "torch"
    # Other devices always use the PyTorch rasterizer unless numba is forced (an error).
    assert choose_cpu_backend("auto", torch.device("meta")) == "torch"
    with pytest.raises(CpuBackendError, match=r"^render: cpu_backend='numba' needs CPU tensors but the snapshot is on meta"):
        choose_cpu_backend("numba", torch.device("meta"))


def test_bad_choice_is_a_one_line_value_error(monkeypatch):
    snap = synthetic_scene(10, seed=0)
    with pytest.raises(ValueError, match=r"^render: cpu_backend must be 'auto', 'numba' or 'torch', got 'cuda'$"):
        render(snap, pinhole_camera(16, 12), cpu_backend="cuda")
    monkeypatch.setenv(cpu_select.ENV_VAR, "fast")
    with pytest.raises(CpuBackendError, match=r"^render: ENDOGS_CPU_BACKEND must be 'auto', 'numba' or 'torch', got 'fast'$"):
        render(snap, pinhole_camera(16, 12))


def test_missing_numba_errors_when_forced_and_warns_otherwise(monkeypatch):
    monkeypatch.delenv(cpu_select.ENV_VAR, raising=False)
    monkeypatch.setattr(cpu_select, "_numba_import_error", lambda: "ModuleNotFoundError: No module named 'numba'")
    snap = synthetic_scene(10, seed=0)
    cam = pinhole_camera(16, 12)
    with pytest.raises(CpuBackendError) as ei:
        render(snap, cam, cpu_backend="numba")
    msg = str(ei.value)
    assert "\n" not in msg and msg.startswith("render: cpu_backend='numba' but numba cannot be used")
    assert "No module named 'numba'" in msg and "pip install numba==0.68.1" in msg
    with pytest.warns(RuntimeWarning, match="numba unavailable .*using the slower PyTorch CPU rasterizer"):
        out = render(snap, cam)
    assert out.info["cpu_backend"] == "torch"


@pytest.mark.parametrize("env, layer", [({}, "omp"), ({"NUMBA_THREADING_LAYER": "workqueue"}, "workqueue")])
def test_threads_run_on_openmp_even_after_open3d_unless_the_environment_chose(env, layer):
    """open3d loads a libtbb, and numba's own order would then pick TBB (20-40 % slower steps)."""
    import os
    import subprocess
    import sys

    code = ("import open3d, numba\nfrom endogs.render.cpu_numba import set_numba_threads\n"
            "set_numba_threads()\nprint(numba.threading_layer())\n")
    base = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_THREADING_LAYER")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env}, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-1] == layer
