"""endogs eval on a tiny trained run: files, protocol, independent recomputation, split hygiene, errors."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from endogs.cli import main
from endogs.eval import EvalOptions, evaluate_run
from endogs.eval import evaluate as E
from endogs.eval.cli import benchmark, eval_run

COMMANDS = {"eval": eval_run, "benchmark": benchmark}
# A run that trains in a few seconds: 400 Gaussians, 4 steps, a tiny HexPlane, no densification.
TINY = {
    "iterations": 4, "coarse_iterations": 2, "device": "cpu", "log_every": 1, "strategy": {"enabled": False},
    "init": {"max_points": 400, "num_frames": 4, "remove_outliers": False},
    "deform": {"spatial_resolutions": [8], "feature_dim": 8, "hidden_dim": 16},
}
FAST = ["--fps-min-time", "0.05"]


def make_scene(root: Path, n_frames: int = 10) -> Path:
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene

    return write_synthetic_scene(root, config=SyntheticConfig(width=48, height=40, n_frames=n_frames))


def train_tiny(scene: Path, run_dir: Path, **overrides) -> Path:
    from endogs.config_io import merge
    from endogs.train import Trainer, TrainConfig

    cfg = merge(merge(TrainConfig(), TINY), overrides) if overrides else merge(TrainConfig(), TINY)
    Trainer.create(cfg, scene, run_dir).train(progress=False)
    return run_dir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    scene = make_scene(root / "scene")
    run = train_tiny(scene, root / "run")
    return scene, run


def log_split(run: Path) -> tuple[list[int], list[int]]:
    init = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert init["event"] == "init"
    return init["train_indices"], init["test_indices"]


def test_eval_cli_writes_the_report(trained, tmp_path, capsys):
    from test_eval_metrics import fake_alexnet

    scene, run = trained
    weights = fake_alexnet(tmp_path / "alexnet-owt-7be5be79.pth")
    assert main(["eval", str(run), *FAST, "--lpips-weights", str(weights)], commands=COMMANDS) == 0
    out = capsys.readouterr().out
    lines = out.strip().splitlines()
    assert lines[-1] == f"report: {run / 'eval_test' / 'report.md'}"
    assert "PSNR legacy" in out and "neighbour mean" in out and "verdict:" in out
    ev = run / "eval_test"
    for name in ("metrics.json", "per_frame.csv", "report.md", "sequence.mp4", "training_curves.png", "per_frame_psnr.png",
                 "renders/000001.png", "renders/000009.png", "compare/000009.png", "depth/000001.png"):
        assert (ev / name).is_file() and (ev / name).stat().st_size > 0, name
    assert not list(ev.rglob(".*tmp*"))  # atomic writes leave no temporaries
    rep = json.loads((ev / "metrics.json").read_text())
    train, test = log_split(run)
    p = rep["protocol"]
    assert p["name"] == "endonerf" and p["frames"] == test == [1, 9] and p["train_frames"] == train
    assert not set(test) & set(train) and p["eval_frames_trained_on"] == []
    assert p["mask_source"].startswith("gt_masks/") and "(i - 1) % 8 == 0" in p["split_rule"]
    assert set(p["psnr_variants"]) >= {"psnr", "psnr_legacy", "psnr_full", "psnr_pooled", "psnr_legacy_pooled"}
    assert p["lpips"]["status"] == "computed" and p["lpips"]["input_range"] == "[-1, 1]"
    assert p["lpips"]["backbone_verified"] is False  # random test weights, and the report says so
    assert "not comparable" in (ev / "report.md").read_text()
    model = rep["metrics"]["model"]
    for k in ("psnr", "psnr_legacy", "psnr_full", "ssim", "ssim_masked", "lpips", "depth_rmse"):
        assert math.isfinite(model[k]), k
    assert model["psnr_legacy"] > model["psnr"]  # the tool region counts as perfect in the legacy variant
    assert set(rep["metrics"]) == {"model", "nearest_train", "neighbour_mean", "train_mean"}
    assert rep["depth"]["available"] and rep["depth"]["unit"] == "mm"
    t = rep["timing"]
    assert t["render"]["fps"] > 0 and t["render"]["warmup_renders"] == 3
    assert t["training"]["train_time_s"] > 0 and t["training"]["peak_memory_mb"] > 0 and t["training"]["finished"]
    assert rep["environment"]["versions"]["torch"] and rep["environment"]["device"]["type"] == "cpu"
    assert rep["verdict"]["beats_baselines"] is False and "NOT" in rep["verdict"]["text"]  # 4 steps learn nothing
    csv = (ev / "per_frame.csv").read_text().splitlines()
    assert csv[0].startswith("method,frame,") and len(csv) == 1 + 2 * 4


def test_metrics_recomputed_independently_and_only_test_frames_rendered(trained, tmp_path, monkeypatch):
    from endogs.data import load_scene

    scene, run = trained
    rendered = []
    real = E.render_numpy

    def spy(model, t, camera, frame_index=None, background=None):
        rendered.append(t)
        return real(model, t, camera, frame_index, background)

    monkeypatch.setattr(E, "render_numpy", spy)
    res = evaluate_run(run, EvalOptions(output=tmp_path / "ev", images=False, video=False, plots=False, fps_min_time=0,
                                        fps_warmup=0))
    train, test = log_split(run)
    data = load_scene(scene)
    assert sorted(rendered) == sorted(data.frames[i].time for i in test)  # eval renders exactly the test frames
    assert sorted(res.renders) == test
    rows = {(r["method"], r["frame"]): r for r in res.per_frame}
    for i in test:
        f = data.frames[i]
        gt = f.image.astype(np.float64)
        m = f.eval_mask
        r = res.renders[i].astype(np.float64)
        mm = m[..., None]
        row = rows[("model", i)]
        assert row["psnr"] == pytest.approx(10 * np.log10(1 / (((r - gt) ** 2)[m].mean())), abs=1e-6)
        assert row["psnr_legacy"] == pytest.approx(10 * np.log10(1 / ((r * mm - gt * mm) ** 2).mean()), abs=1e-6)
        assert row["psnr_full"] == pytest.approx(10 * np.log10(1 / ((r - gt) ** 2).mean()), abs=1e-6)
        gd = f.gt_depth
        sel = m & (gd > 0)
        assert row["depth_rmse"] == pytest.approx(np.sqrt(((res.depths[i] - gd)[sel] ** 2).mean()), rel=1e-5)
        # neighbour-mean baseline from the raw training frames
        prev = max(j for j in train if j < i)
        nxt = [j for j in train if j > i]
        pred = np.mean([data.frames[j].image.astype(np.float64) for j in [prev] + nxt[:1]], axis=0)
        assert rows[("neighbour_mean", i)]["psnr"] == pytest.approx(10 * np.log10(1 / (((pred - gt) ** 2)[m].mean())), abs=1e-6)
        assert not {prev, *nxt[:1]} & set(test)
    model = res.summary["model"]
    assert model["psnr"] == pytest.approx(np.mean([rows[("model", i)]["psnr"] for i in test]))
    assert res.report["protocol"]["frames"] == test


def test_protocol_mismatch_is_a_one_line_error(trained, capsys):
    scene, run = trained
    assert main(["eval", str(run), "--protocol", "endonerf-all"], commands=COMMANDS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "split 'all'" in err[0] and "--protocol endonerf" in err[0]


def _copy_run(run: Path, dst: Path, checkpoint: bool = True) -> Path:
    dst.mkdir(parents=True)
    for name in ("run.yaml", "log.jsonl") + (("checkpoint.pt",) if checkpoint else ()):
        shutil.copy(run / name, dst / name)
    return dst


def test_bad_inputs_give_one_line_errors(trained, tmp_path, capsys):
    import torch

    scene, run = trained

    def fails(args, *needles):
        assert main(["eval", *map(str, args), *FAST, "--no-video"], commands=COMMANDS) == 2
        err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip() and not ln.startswith("evaluating")]
        assert len(err) == 1 and err[0].startswith("endogs: error: "), err
        for n in needles:
            assert str(n) in err[0], (n, err[0])

    fails([tmp_path / "nope"], tmp_path / "nope", "endogs train")
    no_ckpt = _copy_run(run, tmp_path / "no_ckpt", checkpoint=False)
    fails([no_ckpt], no_ckpt, "no checkpoint.pt", "--resume")
    old = _copy_run(run, tmp_path / "old", checkpoint=False)
    torch.save({"version": 99, "scene": {}}, old / "checkpoint.pt")
    fails([old], old / "checkpoint.pt", "version 99", "retrain")
    (old / "checkpoint.pt").write_bytes(b"not a checkpoint")
    fails([old], old / "checkpoint.pt", "corrupt")
    nolog = _copy_run(run, tmp_path / "nolog")
    (nolog / "log.jsonl").write_text("")
    fails([nolog], nolog / "log.jsonl", "cannot verify")


def test_moved_scene_subprocess_then_data_flag(trained, tmp_path, capsys):
    scene, run = trained
    moved = _copy_run(run, tmp_path / "moved_run")
    raw = yaml.safe_load((moved / "run.yaml").read_text())
    gone = tmp_path / "old_place" / "scene"
    raw["data"] = str(gone)
    (moved / "run.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    code = ("import sys; from endogs.cli import main; from endogs.eval.cli import eval_run, benchmark; "
            "sys.exit(main(sys.argv[1:], commands={'eval': eval_run, 'benchmark': benchmark}))")
    r = subprocess.run([sys.executable, "-c", code, "eval", str(moved)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert lines[0].startswith(f"endogs: error: {gone}: ") and "--data" in lines[0]
    args = ["eval", str(moved), "--data", str(scene), "--no-video", "--no-images", "--fps-min-time", "0", "--quiet"]
    assert main(args, commands=COMMANDS) == 0
    assert capsys.readouterr().out.strip() == f"report: {moved / 'eval_test' / 'report.md'}"
    assert json.loads((moved / "eval_test" / "metrics.json").read_text())["data"] == str(scene.resolve())


def test_scared_and_endonerf_all_protocols_and_train_split(tmp_path):
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene

    fast = dict(images=False, video=False, plots=False, fps_min_time=0, fps_warmup=0)
    small = dict(width=32, height=32)
    sc = write_synthetic_scene(tmp_path / "scared", layout="scared", config=SyntheticConfig(n_frames=3, **small))
    run_sc = train_tiny(sc, tmp_path / "run_sc")
    res = evaluate_run(run_sc, EvalOptions(**fast))
    p = res.report["protocol"]
    assert p["name"] == "scared" and p["format"] == "scared" and "valid depth" in p["mask_source"]
    assert res.report["depth"]["unit"] == "mm" and math.isfinite(res.report["depth"]["rmse"])
    assert p["frames"] == [1] and not set(p["frames"]) & set(p["train_frames"])
    # --split train: the training frames, flagged as trained on
    res = evaluate_run(run_sc, EvalOptions(split="train", output=tmp_path / "tr", **fast))
    train, _ = log_split(run_sc)
    assert res.report["protocol"]["frames"] == train == res.report["protocol"]["eval_frames_trained_on"] == [0, 2]
    assert "trained on" in res.report["verdict"]["text"]

    en = write_synthetic_scene(tmp_path / "endo", config=SyntheticConfig(n_frames=4, **small))
    res = evaluate_run(train_tiny(en, tmp_path / "run_all", data={"split": "all"}), EvalOptions(**fast))
    p = res.report["protocol"]
    assert p["name"] == "endonerf-all" and p["frames"] == [1, 2, 3]  # EndoNeRF's start_index = 1
    assert p["eval_frames_trained_on"] == [1, 2, 3] and "fitting" in res.report["verdict"]["text"]
    # with every frame trained on, a baseline never predicts a frame from itself
    rows = [r for r in res.per_frame if r["method"] == "nearest_train"]
    assert all(r["source_frames"] != str(r["frame"]) for r in rows) and all(r["psnr"] < 60 for r in rows)
