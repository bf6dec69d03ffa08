"""CPU tests of endogs.render: both CPU rasterizers against analytic and brute-force references.

Every test runs once with the pure-PyTorch rasterizer and once with the compiled numba kernels
(the ``cpu_backend`` fixture sets ``ENDOGS_CPU_BACKEND``); tests of PyTorch-only internals pin
``torch``.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

from endogs.camera import Camera
from endogs.render import RenderInputError, RenderOutput, render
from endogs.render.cpu import build_tile_layout, rasterize_tiles
from endogs.render.projection import project_gaussians
from endogs.render.reference import look_at, pinhole_camera, render_dense_reference, synthetic_scene
from endogs.render.sh import SH_C0, eval_sh, rgb_to_sh0
from endogs.snapshot import Snapshot

F64 = torch.float64


@pytest.fixture(params=["torch", "numba"], autouse=True)
def cpu_backend(request, monkeypatch):
    """Run the test with one CPU rasterizer (chosen through the environment variable)."""
    monkeypatch.setenv("ENDOGS_CPU_BACKEND", request.param)
    return request.param


torch_only = pytest.mark.parametrize("cpu_backend", ["torch"], indirect=True)


def _snap(means, quats, scales, opacities, colors, sh_degree=None) -> Snapshot:
    return Snapshot(means, quats, scales, opacities, colors, sh_degree=sh_degree)


def _leaf(s: Snapshot) -> Snapshot:
    """A copy of ``s`` whose tensors are fresh leaves requiring grad."""
    return s.detach()._map(lambda t: t.clone().requires_grad_())


# --------------------------------------------------------------------------------------------
# Forward: analytic and brute-force references


def test_single_gaussian_peak_and_footprint(cpu_backend):
    W, H, f, z, s, o = 32, 24, 28.8, 3.0, 0.2, 0.8
    K = np.array([[f, 0, 15.5], [0, f, 11.5], [0, 0, 1.0]])  # centre projects onto pixel (15, 11)
    cam = Camera(K, np.eye(4), W, H)
    color = torch.tensor([[1.0, 0.5, 0.25]], dtype=F64)
    snap = _snap(
        torch.tensor([[0.0, 0.0, z]], dtype=F64),
        torch.tensor([[1.0, 0, 0, 0]], dtype=F64),
        torch.full((1, 3), s, dtype=F64),
        torch.tensor([o], dtype=F64),
        color,
    )
    out = render(snap, cam)
    assert isinstance(out, RenderOutput) and out.backend == "cpu" and out.info["cpu_backend"] == cpu_backend
    assert out.rgb.shape == (1, H, W, 3) and out.depth.shape == (1, H, W, 1) and out.alpha.shape == (1, H, W, 1)
    alpha = out.alpha[0, ..., 0]
    assert tuple(int(i) for i in (alpha == alpha.max()).nonzero()[0]) == (11, 15)
    assert float(alpha.max()) == pytest.approx(o, abs=1e-12)

    var = (f * s / z) ** 2 + 0.3  # EWA footprint plus gsplat's eps2d
    ys, xs = torch.meshgrid(torch.arange(H, dtype=F64), torch.arange(W, dtype=F64), indexing="ij")
    d2 = (xs + 0.5 - 15.5) ** 2 + (ys + 0.5 - 11.5) ** 2
    expect = o * torch.exp(-0.5 * d2 / var)
    expect = torch.where(expect >= 1 / 255, expect, torch.zeros_like(expect))
    torch.testing.assert_close(alpha, expect, atol=1e-12, rtol=0)
    torch.testing.assert_close(out.rgb[0], alpha[..., None] * color[0], atol=1e-12, rtol=0)
    torch.testing.assert_close(out.depth[0][alpha > 0], torch.full_like(out.depth[0][alpha > 0], z))
    # gsplat's opacity-aware radius: ceil(min(3.33, sqrt(2 ln(255 o))) * sigma).
    r = math.ceil(min(3.33, math.sqrt(2 * math.log(255 * o))) * math.sqrt(var))
    assert out.info["radii"][0, 0].tolist() == [r, r]
    assert out.info["means2d"][0, 0].tolist() == pytest.approx([15.5, 11.5])


SCENES = {
    # name: (n, W, H, scale, opacity range, xy half extents)
    "overlapping": (60, 24, 20, 0.25, (0.3, 0.9), (1.0, 0.8)),
    "benchmark-like": (400, 48, 40, None, (0.3, 0.9), (2.0, 1.6)),
    "opaque-saturated": (120, 20, 16, 0.35, (0.95, 1.0), (0.8, 0.6)),  # T stop rule and 0.999 clamp
    "faint": (80, 20, 16, 0.3, (0.004, 0.05), (0.8, 0.6)),  # opacities near the 1/255 cut
    "off-screen-parts": (60, 20, 16, 0.4, (0.3, 0.9), (2.5, 2.0)),
}


@pytest.mark.parametrize("name", list(SCENES))
def test_matches_dense_reference_float64(name):
    n, W, H, scale, opacity, xy = SCENES[name]
    snap = synthetic_scene(n, seed=7, dtype=F64, scale=scale, opacity=opacity, xy=xy)
    if name == "overlapping":  # long thin rotated ellipses stress the tile/ellipse test
        snap.scales[:, 0] *= 4.0
        snap.scales[:, 1] *= 0.2
    cam = pinhole_camera(W, H)
    bg = torch.tensor([0.1, 0.2, 0.3], dtype=F64)
    ref_rgb, ref_depth, ref_alpha = render_dense_reference(snap, cam, background=bg)
    for ts in (1, 3, 4, 16):
        out = render(snap, cam, background=bg, tile_size=ts)
        torch.testing.assert_close(out.rgb[0], ref_rgb, atol=1e-12, rtol=0)
        torch.testing.assert_close(out.alpha[0], ref_alpha, atol=1e-12, rtol=0)
        torch.testing.assert_close(out.depth[0], ref_depth, atol=1e-9, rtol=0)
    if name == "opaque-saturated":
        assert float(ref_alpha.max()) > 0.9998  # the stop rule was exercised


def test_float32_close_to_float64_reference():
    snap = synthetic_scene(500, seed=3, scale=0.08)
    cam = pinhole_camera(40, 32)
    out = render(snap, cam)
    assert out.rgb.dtype == torch.float32 and out.info["means2d"].dtype == torch.float32
    ref = render_dense_reference(snap, cam)
    for got, want in zip((out.rgb, out.depth, out.alpha), ref):
        torch.testing.assert_close(got[0].double(), want, atol=2e-4, rtol=1e-4)


def test_projection_matches_gsplat_torch_reference():
    impl = pytest.importorskip("gsplat.cuda._torch_impl")  # pure-PyTorch oracle, runs on CPU
    snap = synthetic_scene(300, seed=5, dtype=F64, opacity=(1.0, 1.0), xy=(2.6, 2.2))
    cams = [pinhole_camera(48, 40), pinhole_camera(48, 40, look_at((0.5, -0.3, 0.2)))]
    vm = torch.as_tensor(np.stack([c.viewmat for c in cams]))
    Ks = torch.as_tensor(np.stack([c.K for c in cams]))
    mine = project_gaussians(snap.means, snap.quats, snap.scales, snap.opacities, vm, Ks, 48, 40)
    covars, _ = impl._quat_scale_to_covar_preci(snap.quats, snap.scales, True, False, triu=False)
    radii, means2d, depths, conics, _ = impl._fully_fused_projection(snap.means, covars, vm, Ks, 48, 40)
    valid = (mine.radii > 0).all(-1)
    assert valid.sum() > 200
    assert torch.equal(valid, (radii > 0).all(-1))
    torch.testing.assert_close(mine.means2d[valid], means2d[valid])
    torch.testing.assert_close(mine.conics[valid], conics[valid])
    torch.testing.assert_close(mine.depths[valid], depths[valid])
    # gsplat's reference uses a fixed 3.33 sigma; with o = 1 the opacity-aware bound is 3.329.
    assert (mine.radii[valid] - radii[valid]).abs().max() <= 1


# --------------------------------------------------------------------------------------------
# Gradients


def test_gradcheck_float64_tiny():
    base = synthetic_scene(6, seed=3, dtype=F64, scale=0.35, xy=(0.8, 0.6))
    cam = pinhole_camera(12, 10)
    bg = torch.tensor([0.2, 0.3, 0.4], dtype=F64)
    leaves = [t.clone().requires_grad_() for t in (base.means, base.quats, base.scales, base.opacities, base.colors)]

    def fn(m, q, s, o, c):
        out = render(_snap(m, q, s, o, c), cam, background=bg)
        return out.rgb, out.depth, out.alpha

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


@pytest.mark.parametrize("name", ["overlapping", "opaque-saturated", "faint"])
def test_gradients_match_autograd_through_dense_reference(name):
    n, W, H, scale, opacity, xy = SCENES[name]
    base = synthetic_scene(min(n, 40), seed=11, dtype=F64, scale=scale, opacity=opacity, xy=xy, sh_degree=2)
    cam = pinhole_camera(W, H, look_at((0.2, -0.1, 0.0)))
    bg = torch.tensor([0.3, 0.1, 0.2], dtype=F64)
    g = torch.Generator().manual_seed(0)
    wr, wd, wa = (torch.randn(H, W, k, generator=g, dtype=F64) for k in (3, 1, 1))

    def grads(fn):
        s = _leaf(base)
        rgb, depth, alpha = fn(s)
        ((rgb * wr).sum() + (depth * wd).sum() + (alpha * wa).sum()).backward()
        return [t.grad for t in (s.means, s.quats, s.scales, s.opacities, s.colors)]

    mine = grads(lambda s: (lambda o: (o.rgb[0], o.depth[0], o.alpha[0]))(render(s, cam, background=bg)))
    ref = grads(lambda s: render_dense_reference(s, cam, background=bg))
    for got, want in zip(mine, ref):
        torch.testing.assert_close(got, want, atol=1e-9, rtol=1e-7)


@torch_only
def test_recompute_path_and_small_chunks_match_default():
    snap = synthetic_scene(300, seed=2, scale=0.12)
    cam = pinhole_camera(40, 32)
    vm = torch.as_tensor(cam.viewmat, dtype=torch.float32)[None]
    K = torch.as_tensor(cam.K, dtype=torch.float32)[None]

    def run(**kw):
        s = _leaf(snap)
        p = project_gaussians(s.means, s.quats, s.scales, s.opacities, vm, K, 40, 32)
        feats = torch.cat([s.colors[None], p.depths[..., None]], -1)
        img, alpha, layout = rasterize_tiles(
            p.means2d, p.conics, feats, s.opacities[None], p.radii, p.depths, 40, 32, **kw
        )
        (img.square().sum() + alpha.sum()).backward()
        return img, [t.grad for t in (s.means, s.quats, s.scales, s.opacities, s.colors)], layout

    img0, g0, lay0 = run()
    img1, g1, lay1 = run(save_limit_bytes=0, max_chunk_elems=500)
    assert len(lay1.chunks) > len(lay0.chunks)
    torch.testing.assert_close(img1, img0, atol=1e-6, rtol=0)
    for a, b in zip(g1, g0):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_absgrad_bounds_grad():
    s = _leaf(synthetic_scene(200, seed=4, scale=0.15))
    out = render(s, pinhole_camera(32, 24), absgrad=True)  # means2d's grad is retained by render()
    (out.rgb * torch.randn_like(out.rgb)).sum().backward()
    m2 = out.info["means2d"]
    assert m2.absgrad.shape == m2.grad.shape == (1, 200, 2)
    assert torch.all(m2.absgrad >= m2.grad.abs() - 1e-6)
    assert float(m2.absgrad.sum()) > 0


# --------------------------------------------------------------------------------------------
# Depth, background, cameras, SH


def test_expected_depth_of_fronto_parallel_plane():
    z = 2.0
    g = torch.linspace(-1.2, 1.2, 41)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    n = xx.numel()
    means = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.full((n,), z)], -1)
    quats = torch.nn.functional.normalize(torch.randn(n, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
    snap = _snap(means, quats, torch.full((n, 3), 0.04), torch.full((n,), 0.7), torch.rand(n, 3))
    out = render(snap, pinhole_camera(40, 30))
    assert float(out.alpha.min()) > 0.9
    torch.testing.assert_close(out.depth, torch.full_like(out.depth, z), atol=1e-5, rtol=0)


def test_background_colour():
    snap = synthetic_scene(50, seed=1, scale=0.05, xy=(0.5, 0.4))
    cam = pinhole_camera(32, 24)
    plain = render(snap, cam)
    bg = torch.tensor([0.25, 0.5, 0.75])
    out = render(snap, cam, background=bg)
    empty = plain.alpha[0, ..., 0] == 0
    assert empty.any() and (~empty).any()
    torch.testing.assert_close(out.rgb[0][empty], bg.expand(int(empty.sum()), 3))
    torch.testing.assert_close(out.rgb, plain.rgb + (1 - plain.alpha) * bg)
    torch.testing.assert_close(out.depth, plain.depth)  # depth ignores the background
    scalar = render(snap, cam, background=1.0)
    torch.testing.assert_close(scalar.rgb, plain.rgb + (1 - plain.alpha))


def test_multiple_cameras_match_single_renders():
    snap = _leaf(synthetic_scene(300, seed=9, scale=0.1, sh_degree=1))
    cams = [pinhole_camera(36, 28), pinhole_camera(36, 28, look_at((0.6, 0.2, 0.3)))]
    bgs = torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])
    out = render(snap, cams, background=bgs)
    assert out.rgb.shape == (2, 28, 36, 3) and out.alpha.shape == (2, 28, 36, 1)
    info = out.info
    assert info["n_cameras"] == 2 and info["means2d"].shape == (2, 300, 2) and info["radii"].shape == (2, 300, 2)
    assert info["radii"].dtype == torch.int32 and info["gaussian_ids"] is None
    assert (info["width"], info["height"]) == (36, 28)
    for i, cam in enumerate(cams):
        one = render(snap, cam, background=bgs[i])
        torch.testing.assert_close(out.rgb[i], one.rgb[0], atol=1e-6, rtol=0)
        torch.testing.assert_close(out.depth[i], one.depth[0], atol=1e-5, rtol=0)
    out.rgb.sum().backward()
    assert snap.means.grad is not None and torch.isfinite(snap.means.grad).all()


def test_sh_matches_gsplat_reference_and_degree0_is_rgb():
    impl = pytest.importorskip("gsplat.cuda._torch_impl")
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(64, 3, generator=g, dtype=F64)
    coeffs = torch.randn(64, 16, 3, generator=g, dtype=F64)
    for deg in range(4):
        torch.testing.assert_close(eval_sh(deg, dirs, coeffs), impl._spherical_harmonics(deg, dirs, coeffs))
    assert SH_C0 == pytest.approx(0.28209479177387814)

    rgb = synthetic_scene(80, seed=2, scale=0.1)
    sh = torch.zeros(80, 16, 3)
    sh[:, 0] = rgb_to_sh0(rgb.colors)
    sh[:, 1:] = torch.randn(80, 15, 3, generator=g)  # ignored at degree 0
    cam = pinhole_camera(32, 24)
    a = render(rgb, cam)
    b = render(rgb.with_(colors=sh, sh_degree=0), cam)
    torch.testing.assert_close(a.rgb, b.rgb, atol=1e-6, rtol=0)


@pytest.mark.parametrize("degree", [1, 2, 3])
def test_sh_colour_depends_on_view_direction(degree):
    sh = torch.zeros(1, (degree + 1) ** 2, 3, dtype=F64)
    sh[0, 0] = rgb_to_sh0(torch.tensor([0.5, 0.5, 0.5], dtype=F64))
    sh[0, degree**2 :] = 0.4  # only the highest band: colour varies with direction
    one = _snap(
        torch.tensor([[0.0, 0.0, 3.0]], dtype=F64),
        torch.tensor([[1.0, 0, 0, 0]], dtype=F64),
        torch.full((1, 3), 0.3, dtype=F64),
        torch.tensor([0.9], dtype=F64),
        sh,
        sh_degree=degree,
    )
    cams = [pinhole_camera(16, 16, look_at(eye)) for eye in ((0, 0, 0), (2.0, 0.0, 1.0), (0.0, -1.5, 1.5))]
    outs = [render(one, c) for c in cams]
    colour = [o.rgb[0, 8, 8] / o.alpha[0, 8, 8] for o in outs]  # un-premultiplied centre colour
    assert not torch.allclose(colour[0], colour[1], atol=1e-3) and not torch.allclose(colour[0], colour[2], atol=1e-3)
    # Each is the SH colour along that camera's view direction (mean minus camera centre).
    for c, got in zip(cams, colour):
        d = one.means[0] - torch.as_tensor(c.position)
        want = torch.clamp_min(eval_sh(degree, d, sh[0]) + 0.5, 0)
        torch.testing.assert_close(got, want, atol=1e-9, rtol=0)


def test_sh_gradcheck_degree3():
    base = synthetic_scene(4, seed=1, dtype=F64, scale=0.4, xy=(0.6, 0.5), sh_degree=3)
    cam = pinhole_camera(10, 8, look_at((0.3, 0.2, 0.0)))
    leaves = [t.clone().requires_grad_() for t in (base.means, base.colors)]

    def fn(m, c):
        return render(base.with_(means=m, colors=c), cam).rgb

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-6, rtol=1e-4, fast_mode=True)


# --------------------------------------------------------------------------------------------
# gsplat's DefaultStrategy on the CPU backend


def test_default_strategy_densifies_and_prunes_with_cpu_info(capsys):
    from gsplat.strategy import DefaultStrategy

    torch.manual_seed(0)
    n = 120
    base = synthetic_scene(n, seed=1, scale=0.05)
    scales = torch.full((n, 3), 0.004)  # small (< grow_scale3d): duplicated
    scales[n // 2 :] = 0.05  # large: split
    opac = base.opacities.clone()
    opac[:10] = 0.002  # pruned (below prune_opa)
    params = torch.nn.ParameterDict(
        {
            "means": torch.nn.Parameter(base.means.clone()),
            "scales": torch.nn.Parameter(torch.log(scales)),
            "quats": torch.nn.Parameter(base.quats.clone()),
            "opacities": torch.nn.Parameter(torch.logit(opac)),
            "colors": torch.nn.Parameter(base.colors.clone()),
        }
    )
    optimizers = {k: torch.optim.Adam([{"params": p, "lr": 1e-3, "name": k}]) for k, p in params.items()}
    strategy = DefaultStrategy(
        refine_start_iter=0, refine_every=2, reset_every=1000, refine_stop_iter=100,
        grow_grad2d=1e-12, grow_scale3d=0.01, prune_opa=0.005, verbose=True,
    )  # fmt: skip
    strategy.check_sanity(params, optimizers)
    state = strategy.initialize_state(scene_scale=1.0)
    cam = pinhole_camera(32, 24)
    target = torch.rand(1, 24, 32, 3, generator=torch.Generator().manual_seed(1))
    sizes = []
    for step in range(5):
        snap = Snapshot(
            params["means"], params["quats"], torch.exp(params["scales"]),
            torch.sigmoid(params["opacities"]), params["colors"],
        )  # fmt: skip
        out = render(snap, cam)
        strategy.step_pre_backward(params, optimizers, state, step, out.info)
        (out.rgb - target).abs().mean().backward()
        for opt in optimizers.values():
            opt.step()
            opt.zero_grad(set_to_none=True)
        strategy.step_post_backward(params, optimizers, state, step, out.info, packed=False)
        sizes.append(len(params["means"]))
    log = capsys.readouterr().out
    assert sizes[0] == n and sizes[-1] != n
    dup = sum(int(x) for x in re.findall(r"(\d+) GSs duplicated", log))
    split = sum(int(x) for x in re.findall(r"(\d+) GSs split", log))
    pruned = sum(int(x) for x in re.findall(r"(\d+) GSs pruned", log))
    assert dup > 0 and split > 0 and pruned >= 10, log
    assert all(len(p) == sizes[-1] for p in params.values())


# --------------------------------------------------------------------------------------------
# Bad input and edge cases


def _one_line(exc: BaseException) -> bool:
    return "\n" not in str(exc) and len(str(exc)) > 10


@pytest.mark.parametrize("field", ["means", "quats", "scales", "opacities", "colors"])
def test_non_finite_parameters_raise(field):
    snap = synthetic_scene(10, seed=0)
    bad = getattr(snap, field).clone()
    bad.view(-1)[3] = float("nan") if field != "scales" else float("inf")
    with pytest.raises(ValueError) as ei:
        render(snap.with_(**{field: bad}), pinhole_camera(16, 12))
    assert isinstance(ei.value, RenderInputError) and _one_line(ei.value) and field in str(ei.value)


def test_empty_snapshot_renders_background():
    z = torch.zeros(0, 3, requires_grad=True)
    snap = _snap(z, torch.zeros(0, 4), torch.zeros(0, 3), torch.zeros(0), torch.zeros(0, 3))
    out = render(snap, [pinhole_camera(16, 12)] * 2, background=(0.1, 0.2, 0.3))
    assert out.rgb.shape == (2, 12, 16, 3)
    torch.testing.assert_close(out.rgb, torch.tensor([0.1, 0.2, 0.3]).expand(2, 12, 16, 3))
    assert torch.all(out.alpha == 0) and torch.all(out.depth == 0)
    assert out.info["means2d"].shape == (2, 0, 2) and out.info["radii"].shape == (2, 0, 2)
    out.rgb.sum().backward()  # nothing to differentiate, but no crash


def test_camera_behind_everything_gives_background_and_zero_grads():
    snap = _leaf(synthetic_scene(100, seed=0))
    away = look_at((0, 0, 0), target=(0, 0, -1))
    out = render(snap, pinhole_camera(16, 12, away), background=0.5)
    assert torch.all(out.alpha == 0) and torch.all(out.depth == 0) and torch.all(out.rgb == 0.5)
    assert torch.all(out.info["radii"] == 0)
    (out.rgb.sum() + out.depth.sum()).backward()
    for t in (snap.means, snap.quats, snap.scales, snap.opacities, snap.colors):
        assert t.grad is not None and torch.all(t.grad == 0)


def test_gaussians_at_and_behind_camera_plane_are_culled_finitely():
    means = torch.tensor([[0.0, 0.0, 0.0], [0.0, 0.0, 0.005], [0.1, 0.0, -1.0], [0.0, 0.0, 2.0]], requires_grad=True)
    snap = _snap(means, torch.tensor([[1.0, 0, 0, 0]] * 4), torch.full((4, 3), 0.1), torch.full((4,), 0.9), torch.rand(4, 3))
    out = render(snap, pinhole_camera(16, 12))
    assert out.info["radii"][0, :3].eq(0).all() and out.info["radii"][0, 3].gt(0).all()
    (out.rgb.sum() + out.depth.sum()).backward()
    assert torch.isfinite(means.grad).all()


def test_zero_size_image_is_rejected_by_camera():
    with pytest.raises(ValueError):
        Camera(np.eye(3), np.eye(4), 0, 10)


def test_bad_arguments_raise_value_errors(monkeypatch):
    import endogs.render.gsplat_backend as gb

    def boom(*a, **k):  # gsplat must never be reached with CPU tensors
        raise AssertionError("gsplat called")

    monkeypatch.setattr(gb, "rasterize_gsplat", boom)
    snap = synthetic_scene(10)
    cam = pinhole_camera(16, 12)
    cases = [
        dict(backend="gsplat"),
        dict(backend="opengl"),
        dict(background=(1.0, 2.0)),
        dict(background=[[0.0, 0.0, 0.0]] * 3),
        dict(near=1.0, far=0.5),
        dict(near=0.0),
    ]
    for kw in cases:
        with pytest.raises(ValueError) as ei:
            render(snap, cam, **kw)
        assert _one_line(ei.value), kw
    with pytest.raises(ValueError):
        render(snap, [cam, pinhole_camera(20, 12)])
    with pytest.raises(ValueError):
        render(snap, [])
    with pytest.raises(ValueError):
        render(snap.with_(colors=snap.colors.double()), cam)
    with pytest.raises(ValueError):
        render(snap.to(dtype=torch.float16), cam)


def test_outputs_follow_snapshot_dtype():
    snap = synthetic_scene(30, seed=0, dtype=F64, scale=0.1)
    out = render(snap, pinhole_camera(16, 12), background=0.2)
    assert out.rgb.dtype == out.depth.dtype == out.alpha.dtype == F64


@torch_only
def test_tile_layout_is_front_to_back_per_tile():
    snap = synthetic_scene(200, seed=6, scale=0.1)
    cam = pinhole_camera(32, 24)
    vm = torch.as_tensor(cam.viewmat, dtype=torch.float32)[None]
    K = torch.as_tensor(cam.K, dtype=torch.float32)[None]
    p = project_gaussians(snap.means, snap.quats, snap.scales, snap.opacities, vm, K, 32, 24)
    lay = build_tile_layout(p.means2d, p.conics, snap.opacities[None], p.radii, p.depths, 32, 24, tile_size=8)
    d = p.depths.reshape(-1)
    for t in range(len(lay.tile_ids)):
        s, c = int(lay.tile_start[t]), int(lay.tile_count[t])
        run = d[lay.pair_gid[s : s + c]]
        assert torch.all(run[1:] >= run[:-1])
    assert sum(int(c) for c in lay.tile_count) == lay.n_pairs
