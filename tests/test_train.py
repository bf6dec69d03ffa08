"""The per-scene optimizer on tiny synthetic scenes: it learns, deformation and depth loss matter,
resume is exact, densification and the opacity reset work, the CLI validates its input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from endogs.config_io import merge
from endogs.errors import ConfigError
from endogs.data import load_scene
from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene
from endogs.render import render
from endogs.train import TrainConfig, Trainer, load_run

FAST = {
    "log_every": 10,
    "checkpoint_every": 1000,
    "sh_degree": 0,
    "device": "cpu",
    "init": {"max_points": 600},
    "strategy": {"refine_start_iter": 20, "refine_every": 20, "refine_stop_iter": 200, "max_gaussians": 1500},
}


def deep(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = deep(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def cfg(**over) -> TrainConfig:
    return merge(TrainConfig(), deep(FAST, over))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene") / "tiny"
    write_synthetic_scene(root, config=SyntheticConfig(width=48, height=40, n_frames=10, deformation=2.0))
    return root


def held_out_metrics(scene_model, data, split="test"):
    """Masked test PSNR and rendered-depth MAE (mm) against the exact tissue depth."""
    psnrs, derr = [], []
    with torch.no_grad():
        for i in getattr(data, f"{split}_indices"):
            f = data.frames[i]
            out = render(scene_model.at(f.time), f.camera)
            img = out.rgb[0].clamp(0, 1).numpy()
            m = f.eval_mask
            psnrs.append(-10 * np.log10(((img - f.image) ** 2).mean(-1)[m].mean()))
            d = out.depth[0, ..., 0].numpy()
            derr.append(np.abs(d - f.gt_depth)[m].mean())
    return float(np.mean(psnrs)), float(np.mean(derr))


def train(tiny, tmp_path, name, **over):
    tr = Trainer.create(cfg(**over), tiny, tmp_path / name)
    tr.train(progress=False)
    return tr


def test_training_learns_the_scene(tiny, tmp_path):
    tr = train(tiny, tmp_path, "basis", iterations=150, deform={"kind": "basis"})
    log = [json.loads(x) for x in (tmp_path / "basis" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if "loss" in r]
    assert steps[-1]["loss"] < 0.6 * steps[0]["loss"]
    assert log[0]["event"] == "init" and set(log[0]["test_indices"]).isdisjoint(log[0]["train_indices"])
    assert log[-1]["event"] == "done" and log[-1]["train_time_s"] > 0
    psnr, _ = held_out_metrics(tr.scene, tr.data)
    assert psnr > 24.0, psnr
    # the run folder reloads for rendering
    run = load_run(tmp_path / "basis", device="cpu")
    assert run.done and run.step == 150 and run.scene.num_gaussians == tr.scene.num_gaussians


def test_deformation_matters_and_depth_loss_helps_depth(tiny, tmp_path):
    common = dict(iterations=200, deform={"kind": "basis"})
    full = train(tiny, tmp_path, "full", **common)
    static = train(tiny, tmp_path, "static", iterations=200, deform={"kind": "none"})
    nodepth = train(tiny, tmp_path, "nodepth", loss={"depth": 0.0}, **common)
    p_full, d_full = held_out_metrics(full.scene, full.data)
    p_static, _ = held_out_metrics(static.scene, static.data)
    _, d_nodepth = held_out_metrics(nodepth.scene, nodepth.data)
    assert p_full > p_static + 1.0, (p_full, p_static)
    # measured 1.94 vs 2.33 mm, and 1.97 vs 2.17 mm once the D-SSIM backward became hand-written (rounding
    # alone moves this 200-step comparison by several per cent, hence the margin)
    assert d_full < 0.95 * d_nodepth, (d_full, d_nodepth)


def test_every_field_learns_the_motion_at_the_default_rates(tiny, tmp_path):
    """The network fields at the shipped learning rates (not test-tuned ones) beat the static model
    on a deforming scene (a field whose rate is far off stays at the static model's level)."""
    static = train(tiny, tmp_path, "static", iterations=200, deform={"kind": "none"})
    p_static, _ = held_out_metrics(static.scene, static.data)
    # Margins over static at 200 steps, measured: HexPlane ~3 dB; MLP 0.93-1.25 dB over seeds and kernel
    # rounding, against 0.18 dB at a 10x lower network rate and 0.005 dB at 100x lower (a dead field).
    for kind, margin in (("hexplane", 1.0), ("mlp", 0.5)):
        tr = train(tiny, tmp_path, kind, iterations=200, deform={"kind": kind})
        shipped = TrainConfig(deform=type(tr.cfg.deform)()).resolved(tr.cfg.device, tr.data.width, tr.data.height).deform
        assert tr.cfg.lr == TrainConfig().lr and tr.cfg.deform == shipped  # the field's own rates too (and the CPU's decoder width)
        p, _ = held_out_metrics(tr.scene, tr.data)
        assert p > p_static + margin, (kind, p, p_static)


def test_resume_reaches_the_same_parameters(tiny, tmp_path):
    over = dict(iterations=60, deform={"kind": "hexplane"}, strategy={"refine_start_iter": 10, "refine_every": 10, "refine_stop_iter": 60, "reset_every": 30, "max_gaussians": 1500})
    straight = Trainer.create(cfg(**over), tiny, tmp_path / "a")
    straight.train(progress=False)
    first = Trainer.create(cfg(**over), tiny, tmp_path / "b")
    first.train(progress=False, stop_at=25)
    del first
    resumed = Trainer.resume(tmp_path / "b")
    assert resumed.step == 25
    resumed.train(progress=False)
    a, b = straight.scene.state_dict(), resumed.scene.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].shape == b[k].shape, k
        assert torch.equal(a[k], b[k]), k


def test_opacity_reset_fires_and_densification_changes_counts():
    from endogs.train.strategy import EndoStrategy

    n = 50
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.randn(n, 3)), "scales": torch.nn.Parameter(torch.full((n, 3), -2.0)),
        "quats": torch.nn.Parameter(torch.randn(n, 4)), "opacities": torch.nn.Parameter(torch.full((n,), 2.0)),
    })
    opts = {k: torch.optim.Adam([{"params": p, "lr": 1e-3, "name": k}]) for k, p in params.items()}
    s = EndoStrategy(refine_start_iter=0, refine_every=1000, reset_every=5, refine_stop_iter=100)
    state = s.initialize_state(scene_scale=1.0)
    means2d = torch.zeros(1, n, 2, requires_grad=True)
    info = {"means2d": means2d, "radii": torch.ones(1, n, 2, dtype=torch.int32), "width": 10, "height": 10, "n_cameras": 1, "gaussian_ids": None}
    (means2d.sum() * 0).backward()
    s.step_post_backward(params, opts, state, 4, info)
    assert torch.sigmoid(params["opacities"]).min() > 0.8
    s.step_post_backward(params, opts, state, 5, info)
    assert torch.sigmoid(params["opacities"]).max() <= 2 * s.prune_opa + 1e-6
    assert state["last_reset"] == 5


def test_capped_strategy_grows_exactly_to_the_cap_keeping_the_strongest():
    from endogs.train.strategy import CappedStrategy

    n, cap = 40, 52
    torch.manual_seed(0)
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.randn(n, 3)),
        # half small (duplicated), half large (split) relative to grow_scale3d * scene_scale
        "scales": torch.nn.Parameter(torch.cat([torch.full((n // 2, 3), -5.0), torch.full((n // 2, 3), -1.0)])),
        "quats": torch.nn.Parameter(torch.randn(n, 4)), "opacities": torch.nn.Parameter(torch.full((n,), 2.0)),
    })
    opts = {k: torch.optim.Adam([{"params": p, "lr": 1e-3, "name": k}]) for k, p in params.items()}
    s = CappedStrategy(refine_start_iter=0, refine_every=1, reset_every=10_000, refine_stop_iter=100, grow_grad2d=0.1,
                       grow_scale3d=0.05, max_gaussians=cap)
    state = s.initialize_state(scene_scale=1.0)
    state["grad2d"] = torch.linspace(0.0, 1.0, n)  # every Gaussian above 0.1 qualifies (36 of 40)
    state["count"] = torch.ones(n)
    state["radii"] = torch.zeros(n)
    n_dupli, n_split = s._grow_gs(params, opts, state, step=1)
    assert len(params["means"]) == cap and n_dupli + n_split == cap - n
    # the grown ones are the strongest 12: indices 28..39, all in the large half -> splits
    assert (n_dupli, n_split) == (0, 12)
    assert s._grow_gs(params, opts, state, step=2) == (0, 0) and len(params["means"]) == cap  # full: no more growth


def test_relocation_at_the_cap_moves_the_least_opaque_to_the_strongest_gradients():
    from endogs.train.strategy import CappedStrategy

    n = 40
    torch.manual_seed(0)
    opac = torch.linspace(-6.0, 3.0, n)  # opacity rises with the index; below 0.1 for the first few
    params = torch.nn.ParameterDict({
        "means": torch.nn.Parameter(torch.arange(n, dtype=torch.float32)[:, None].repeat(1, 3)),
        "scales": torch.nn.Parameter(torch.full((n, 3), -5.0)),  # all small: duplicates
        "quats": torch.nn.Parameter(torch.randn(n, 4)), "opacities": torch.nn.Parameter(opac.clone()),
    })
    opts = {k: torch.optim.Adam([{"params": p, "lr": 0.0, "name": k}]) for k, p in params.items()}
    sum(p.sum() for p in params.values()).backward()
    for o in opts.values():  # an optimizer state to carry along (lr 0: the values stay put)
        o.step()
    s = CappedStrategy(refine_start_iter=0, refine_every=1, reset_every=10_000, refine_stop_iter=100, grow_grad2d=0.5,
                       grow_scale3d=0.05, max_gaussians=n, relocate_fraction=0.1, relocate_max_opacity=0.1)
    state = s.initialize_state(scene_scale=1.0)
    grad = torch.zeros(n)
    grad[[0, 30, 33, 36, 39]] = torch.tensor([0.9, 0.6, 0.7, 0.8, 0.95])  # Gaussian 0: least opaque but a candidate
    state["grad2d"], state["count"], state["radii"] = grad, torch.ones(n), torch.zeros(n)
    n_dupli, n_split = s._grow_gs(params, opts, state, step=1)
    # 5 candidates, no room: 10 % of 40 = 4 relocated; removed: the 4 least opaque non-candidates (1..4)
    assert state["last_relocate"] == 4 and (n_dupli, n_split) == (4, 0) and len(params["means"]) == n
    xs = params["means"][:, 0].detach()
    assert not any((xs == float(i)).any() for i in (1, 2, 3, 4))
    # the 4 strongest candidates were duplicated (0, 39, 36, 33), the weakest (30) was not
    counts = {i: int((xs == float(i)).sum()) for i in (0, 30, 33, 36, 39)}
    assert counts == {0: 2, 30: 1, 33: 2, 36: 2, 39: 2}
    assert len(state["grad2d"]) == n and all(len(v) == n for v in (state["count"], state["radii"]))
    assert all(len(opts[k].state[opts[k].param_groups[0]["params"][0]]["exp_avg"]) == n for k in params)
    # only Gaussians below relocate_max_opacity move: with a threshold below every opacity nothing does
    s2 = CappedStrategy(refine_start_iter=0, refine_every=1, reset_every=10_000, refine_stop_iter=100, grow_grad2d=0.5,
                        grow_scale3d=0.05, max_gaussians=n, relocate_fraction=0.1, relocate_max_opacity=1e-4)
    state2 = s2.initialize_state(scene_scale=1.0)
    state2["grad2d"], state2["count"], state2["radii"] = grad.clone(), torch.ones(n), torch.zeros(n)
    assert s2._grow_gs(params, opts, state2, step=1) == (0, 0) and state2["last_relocate"] == 0
    with pytest.raises(ConfigError, match="relocate_fraction"):
        CappedStrategy(relocate_fraction=1.5)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "endogs", *map(str, args)], capture_output=True, text=True, timeout=300)


def test_cli_train_and_errors(tiny, tmp_path):
    out = tmp_path / "run"
    r = run_cli("train", tiny, "--output", out, "--iterations", "5", "--quiet", "--deform.kind", "basis")
    assert r.returncode == 0, r.stderr
    assert (out / "checkpoint.pt").is_file() and (out / "run.yaml").is_file()
    r = run_cli("train", tiny, "--output", out, "--iterations", "5", "--quiet")
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("train", tiny, "--preset", "nope")
    assert r.returncode == 2 and "unknown preset" in r.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("iterations: 5\nloss:\n  l2: 1.0\n")
    r = run_cli("train", tiny, "--preset", bad, "--output", tmp_path / "x")
    assert r.returncode == 2 and "unknown key" in r.stderr and "l2" in r.stderr, r.stderr
    r = run_cli("train", "--resume", tmp_path / "nothing")
    assert r.returncode == 2 and "no such run folder" in r.stderr
