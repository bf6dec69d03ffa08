"""Model layer: GaussianModel, deformation fields, DynamicScene, strategy-op resizing."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy import ops

from endogs.errors import ConfigError
from endogs.init import PointCloud
from endogs.model import (
    DeformConfig,
    DynamicScene,
    field_type,
    GaussianModel,
    HexPlaneConfig,
    LearningRates,
    MLPConfig,
    TemporalBasisField,
)

KINDS = ["hexplane", "mlp", "basis", "none"]
DEFORMING = ["hexplane", "mlp", "basis"]
ATTRS = ("means", "quats", "scales", "opacities", "colors")
FAST_LR = LearningRates()  # the Gaussians' rates; the fields' fast test rates are in small_cfg


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """These tensors are tiny: with 2 threads on a loaded 2-core machine, OpenMP oversubscription
    makes each small matmul ~100x slower."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


SMALL = {
    "hexplane": dict(spatial_resolutions=(8, 16), feature_dim=16, hidden_dim=32, grid_lr=1e-2, network_lr=1e-3),
    "mlp": dict(width=64, depth=3, skips=(1,), pos_freqs=4, time_freqs=4, network_lr=1e-3),
    "basis": dict(coef_lr=1e-2),
    "none": {},
}


def small_cfg(kind: str, **kw) -> DeformConfig:
    """CPU-sized fields (the defaults are sized for a GPU)."""
    return field_type(kind)(**{**SMALL[kind], **kw})


def make_scene(kind: str, n: int = 200, sh_degree: int = 3, seed: int = 0, **kw) -> DynamicScene:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    pc = PointCloud(rng.random((n, 3)), rng.random((n, 3)))
    return DynamicScene.from_point_cloud(pc, small_cfg(kind, **kw), n_frames=8, sh_degree=sh_degree)


def weighted_loss(snap, seed: int = 1) -> torch.Tensor:
    """A loss that touches every attribute of a snapshot with random weights."""
    g = torch.Generator().manual_seed(seed)
    return sum((getattr(snap, a) * torch.randn(getattr(snap, a).shape, generator=g)).sum() for a in ATTRS)


def assert_snapshots_equal(a, b) -> None:
    for name in ATTRS:
        assert torch.equal(getattr(a, name), getattr(b, name)), name


def output_layers(scene: DynamicScene) -> list[torch.Tensor]:
    """The zero-initialised output parameters of a field (the coefficients for "basis")."""
    field = scene.deform
    if isinstance(field, TemporalBasisField):
        return [scene.params[field.param_name(a)] for a in field.attributes]
    heads = field.heads.heads if hasattr(field.heads, "heads") else field.heads
    return [p for head in heads.values() for p in (head[-1] if isinstance(head, torch.nn.Sequential) else head).parameters()]


def field_parameters(scene: DynamicScene) -> dict[str, torch.Tensor]:
    out = dict(scene.deform.named_parameters())
    out.update({k: v for k, v in scene.params.items() if k.startswith("deform_")})
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_identity_at_init(kind):
    scene = make_scene(kind)
    canon = scene.canonical()
    for t in (0.0, 0.37, 1.0, torch.tensor(0.5)):
        assert_snapshots_equal(scene.at(t), canon)
    assert_snapshots_equal(scene.at(0.4, deform=False), canon)
    assert scene.at(0.25).time == 0.25


@pytest.mark.parametrize("kind", DEFORMING)
def test_gradients_reach_field_and_deformation_changes_output(kind):
    scene = make_scene(kind, opacity=True)
    opts = scene.make_optimizers(FAST_LR)
    loss = weighted_loss(scene.at(0.7))
    loss.backward()
    for p in output_layers(scene):
        assert p.grad is not None and p.grad.abs().sum() > 0
    opts.step()
    opts.zero_grad()
    weighted_loss(scene.at(0.7)).backward()
    for name, p in field_parameters(scene).items():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    canon = scene.canonical()
    snap = scene.at(0.7)
    for name in ATTRS:
        assert not torch.equal(getattr(snap, name), getattr(canon, name)), name
    # Pure in t: same tensors twice.
    assert_snapshots_equal(scene.at(0.3), scene.at(0.3))


def test_deformation_flags_choose_attributes():
    scene = make_scene("basis", rotation=False, scale=False, color=False, opacity=True)
    d = scene.deltas(0.5)
    assert d.d_means.shape == (200, 3) and d.d_opacity.shape == (200,)
    assert d.d_quats is None and d.d_scales is None and d.d_color is None
    assert sorted(k for k in scene.params.keys() if k.startswith("deform_")) == ["deform_means", "deform_opacities"]
    with pytest.raises(ConfigError):
        HexPlaneConfig(position=False, rotation=False, scale=False, color=False)


@pytest.mark.parametrize("max_degree", [0, 1, 2, 3])
def test_sh_shapes(max_degree):
    scene = make_scene("hexplane", n=20, sh_degree=max_degree)
    assert scene.params["shN"].shape == (20, (max_degree + 1) ** 2 - 1, 3)
    assert scene.max_sh_degree == max_degree
    for d in range(max_degree + 1):
        snap = scene.at(0.5, sh_degree=d)
        assert snap.colors.shape == (20, (d + 1) ** 2, 3) and snap.sh_degree == d
    assert scene.at(0.5).colors.shape == (20, (max_degree + 1) ** 2, 3)
    with pytest.raises(ValueError):
        scene.at(0.5, sh_degree=max_degree + 1)


@pytest.mark.parametrize("kind", KINDS)
def test_checkpoint_round_trip(kind):
    scene = make_scene(kind, n=50)
    opts = scene.make_optimizers(FAST_LR)
    for _ in range(2):
        opts.zero_grad()
        weighted_loss(scene.at(0.6)).backward()
        opts.step()
    buf = io.BytesIO()
    torch.save(scene.to_checkpoint(), buf)
    buf.seek(0)
    loaded = DynamicScene.from_checkpoint(torch.load(buf, weights_only=True))
    assert len(loaded) == 50 and type(loaded.deform) is type(scene.deform)
    with torch.no_grad():
        for t in (0.1, 0.6):
            assert_snapshots_equal(loaded.at(t), scene.at(t))
    # from_state_dict sizes the Gaussians from the checkpoint.
    fresh = DynamicScene.from_state_dict(scene.state_dict(), scene.deform_cfg, n_frames=8)
    assert len(fresh) == 50


@pytest.mark.parametrize("kind", ["basis", "hexplane"])
def test_strategy_ops_resize_every_per_gaussian_tensor(kind):
    scene = make_scene(kind, n=60)
    params = scene.params
    opts = scene.make_optimizers(FAST_LR)
    DefaultStrategy().check_sanity(params, opts.gaussians)
    opts.zero_grad()
    weighted_loss(scene.at(0.4)).backward()
    opts.step()  # Adam state exists and must be resized too
    state = {"grad2d": torch.rand(60), "count": torch.ones(60), "scene_scale": 1.0}
    n = 60
    g = torch.Generator().manual_seed(0)

    def check(expected: int) -> None:
        for name, p in params.items():
            assert p.shape[0] == expected and p.requires_grad, name
            opt = opts.gaussians[name]
            assert opt.param_groups[0]["params"][0] is p
            for v in opt.state[p].values():
                if v.ndim:
                    assert v.shape == p.shape, name
        assert state["grad2d"].shape[0] == expected
        snap = scene.at(0.4)
        assert len(snap) == expected
        opts.zero_grad()
        weighted_loss(snap).backward()
        opts.step()

    mask = torch.rand(n, generator=g) < 0.3
    coef_before = {k: v.detach()[mask].clone() for k, v in params.items() if k.startswith("deform_")}
    ops.duplicate(params, opts.gaussians, state, mask)
    n += int(mask.sum())
    for k, v in coef_before.items():  # the copies carry their source's coefficients
        torch.testing.assert_close(params[k].detach()[-len(v):], v, rtol=0, atol=1e-2)
    check(n)
    mask = torch.rand(n, generator=g) < 0.3
    ops.split(params, opts.gaussians, state, mask)
    n += int(mask.sum())
    check(n)
    mask = torch.rand(n, generator=g) < 0.4
    ops.remove(params, opts.gaussians, state, mask)
    n -= int(mask.sum())
    check(n)
    if kind == "basis":
        assert {k for k in params.keys() if k.startswith("deform_")} == {"deform_means", "deform_quats", "deform_scales", "deform_colors"}


def test_default_strategy_step_keeps_sizes_consistent():
    """A full DefaultStrategy refinement step on a hand-built rasterizer ``info``."""
    scene = make_scene("basis", n=80)
    opts = scene.make_optimizers(FAST_LR)
    strategy = DefaultStrategy(refine_start_iter=0, refine_every=1, grow_grad2d=1e-4, prune_opa=0.2)
    state = strategy.initialize_state(scene_scale=1.0)
    with torch.no_grad():
        scene.params["opacities"][:10] = -5.0  # pruned
    means2d = torch.zeros(1, 80, 2, requires_grad=True)
    info = {"width": 32, "height": 32, "n_cameras": 1, "radii": torch.ones(1, 80, 2, dtype=torch.int32),
            "gaussian_ids": None, "means2d": means2d}
    strategy.step_pre_backward(scene.params, opts.gaussians, state, 1, info)
    (means2d * torch.linspace(0, 1, 80)[None, :, None]).sum().backward()
    strategy.step_post_backward(scene.params, opts.gaussians, state, 1, info, packed=False)
    n = len(scene)
    assert n != 80
    assert all(p.shape[0] == n for p in scene.params.values())
    assert len(scene.at(0.5)) == n


def fit_translation(kind: str, steps: int = 150) -> tuple[float, float]:
    """Fit the field so that the means follow a known time-varying translation."""
    scene = make_scene(kind)
    m0 = scene.params["means"].detach().clone()
    times = [i / 7 for i in range(8)]

    def target(t: float) -> torch.Tensor:
        return m0 + torch.tensor([0.2 * math.sin(2 * math.pi * t), 0.1 * math.cos(2 * math.pi * t) - 0.1, 0.15 * t * t])

    def loss_at(ts) -> torch.Tensor:
        return sum(((scene.at(t).means - target(t)) ** 2).mean() for t in ts) / len(ts)

    opts = scene.make_optimizers(FAST_LR)
    with torch.no_grad():
        before = loss_at(times).item()
    for step in range(steps):
        opts.zero_grad()
        loss_at(times[step % 2 :: 2]).backward()
        opts.step()
    with torch.no_grad():
        after = loss_at(times).item()
    return before, after


@pytest.mark.parametrize("kind", DEFORMING)
def test_each_field_can_fit_motion(kind):
    before, after = fit_translation(kind)
    assert after < before / 10, (before, after)


def test_optimizers_follow_gsplat_contract():
    scene = make_scene("basis", n=10)
    opts = scene.make_optimizers(LearningRates(), scene_scale=2.0)  # coef_lr=1e-2 (small_cfg)
    assert set(opts.gaussians) == set(scene.params.keys())
    for name, opt in opts.gaussians.items():
        assert len(opt.param_groups) == 1 and opt.param_groups[0]["name"] == name
    assert opts.gaussians["means"].param_groups[0]["lr"] == pytest.approx(1.6e-4 * 2.0)
    assert opts.gaussians["deform_means"].param_groups[0]["lr"] == pytest.approx(1e-2)
    assert opts.deform is None
    hex_opts = make_scene("hexplane", n=10).make_optimizers()
    assert [g["name"] for g in hex_opts.deform.param_groups] == ["deform_grid", "deform_network"]
    assert [g["lr"] for g in hex_opts.deform.param_groups] == [pytest.approx(1e-2), pytest.approx(1e-3)]
    # each field's rates are options of its own config
    mlp_scene = make_scene("mlp", n=10, network_lr=7e-4)
    mlp_opts = mlp_scene.make_optimizers(LearningRates())
    assert [(g["name"], g["lr"]) for g in mlp_opts.deform.param_groups] == [("deform_network", pytest.approx(7e-4))]
    assert sum(p.numel() for g in mlp_opts.deform.param_groups for p in g["params"]) == sum(
        p.numel() for p in mlp_scene.deform.parameters())


def test_hexplane_regularisers():
    scene = make_scene("hexplane", n=10)
    field = scene.deform
    assert field.tv_loss() > 0
    assert field.time_smoothness_loss() >= 0 and field.time_l1_loss() >= 0
    with torch.no_grad():
        for p in field.temporal:
            p.fill_(1.0)
    assert field.time_smoothness_loss() == 0 and field.time_l1_loss() == 0
    (field.tv_loss() + field.time_smoothness_loss()).backward()
    assert field.spatial[0].grad is not None
    assert make_scene("basis", n=10).deform.tv_loss() == 0


def test_hexplane_decoder_width_follows_the_device_unless_given():
    def widths(field):
        return [m.out_features for m in field.modules() if isinstance(m, torch.nn.Linear)]

    auto = make_scene("hexplane", n=10, hidden_dim=None).deform
    assert widths(auto.trunk) == [32]  # CPU: the measured 32-wide decoder
    assert set(widths(auto.heads)) == {32, 3, 4}  # hidden 32; outputs 3 (position, scale, colour) and 4 (rotation)
    assert widths(make_scene("hexplane", n=10, hidden_dim=48).deform.trunk) == [48]
    assert HexPlaneConfig().decoder_width("cuda") == 64 and HexPlaneConfig(hidden_dim=16).decoder_width("cuda") == 16
    with pytest.raises(ConfigError, match="hidden_dim >= 1"):
        HexPlaneConfig(hidden_dim=0)


@pytest.mark.cuda
@pytest.mark.parametrize("kind", KINDS)
def test_scene_on_cuda(kind):
    """Everything follows the parameters' device (run by the GPU check)."""
    scene = make_scene(kind, n=100).to("cuda")
    opts = scene.make_optimizers(FAST_LR)
    snap = scene.at(torch.tensor(0.3))
    assert snap.means.is_cuda and snap.colors.is_cuda
    weighted_loss(snap.to("cpu")).backward()
    opts.step()
    state = {"grad2d": torch.rand(100, device="cuda")}
    ops.duplicate(scene.params, opts.gaussians, state, torch.arange(100, device="cuda") < 10)
    assert len(scene.at(0.5)) == 110 and scene.at(0.5).means.is_cuda


@pytest.mark.parametrize("hidden_layers", [0, 1, 2])
def test_heads_share_the_first_relu_with_the_same_values_and_gradients(hidden_layers):
    from endogs.model.deformation import Heads

    torch.manual_seed(0)
    heads = Heads(("means", "quats", "scales", "colors"), 6, 5, hidden_layers)
    for p in heads.parameters():  # the last layers start at zero: make every path carry a gradient
        torch.nn.init.normal_(p)
    assert heads.shared_relu == (hidden_layers > 0)
    linear_at = {k.split(".")[2] for k in heads.state_dict()}  # checkpoint names as before the sharing
    assert linear_at == {0: {"0"}, 1: {"1", "3"}, 2: {"1", "3", "5"}}[hidden_layers]
    h = torch.randn(40, 6, dtype=torch.float64, requires_grad=True)
    heads = heads.double()
    out = heads(h)
    ref = {name: head(h) for name, head in heads.heads.items()}  # each Sequential as a whole
    w = {k: torch.randn_like(v) for k, v in ref.items()}
    g = torch.autograd.grad(sum((out[k] * w[k]).sum() for k in out), [h, *heads.parameters()])
    g_ref = torch.autograd.grad(sum((ref[k] * w[k]).sum() for k in ref), [h, *heads.parameters()])
    assert out.keys() == ref.keys() and all(torch.equal(out[k], ref[k]) for k in ref)
    assert all(torch.allclose(a, b, rtol=1e-12, atol=1e-12) for a, b in zip(g, g_ref))
