"""endogs benchmark: trains through Trainer, evaluates, one table with measured / baseline / reported rows, --reuse."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import yaml

from endogs.cli import main
from endogs.eval.benchmark import _diff_keys, load_benchmark_config, load_peers, run_config
from test_eval import COMMANDS, TINY

REPO = Path(__file__).resolve().parents[1]


def test_shipped_benchmark_configs_parse():
    bench = load_benchmark_config(REPO / "configs" / "benchmark" / "example.yaml")
    assert len(bench.scenes) >= 1 and {v.name for v in bench.variants} >= {"hexplane", "mlp"}
    kinds = {run_config(bench, s, v, "cpu").deform.kind for s in bench.scenes for v in bench.variants}
    assert kinds == {"hexplane", "mlp"}
    peers = load_peers(REPO / "configs" / "benchmark" / "peers_endonerf.yaml")
    d3 = [e for e in peers.entries if e.method == "Deform3DGS"][0]
    assert d3.psnr_legacy == 37.90 and d3.psnr is None and d3.fps == 338.80 and d3.train_time_s == 64
    assert all(e.source and e.protocol for e in peers.entries)
    # a requested None ("pick by device") or device auto matches whatever the trainer resolved
    stored = {"iterations": 3000, "device": "cpu", "deform": {"kind": "hexplane"}, "background": [0, 0, 0]}
    assert _diff_keys({"iterations": None, "device": "auto", "deform": {"kind": "hexplane"}, "background": (0, 0, 0)}, stored) == []
    assert _diff_keys({"iterations": 600, "device": "auto", "deform": {"kind": "mlp"}}, stored) == ["deform.kind", "iterations"]
    endogs_gs = [e for e in peers.entries if e.method == "EndoGS"][0]
    assert endogs_gs.psnr == 37.935 and endogs_gs.psnr_legacy is None  # EndoGS computes the true masked PSNR


def write_config(tmp_path: Path, overrides: dict) -> Path:
    (tmp_path / "peers.yaml").write_text(yaml.safe_dump({"dataset": "EndoNeRF", "entries": [
        {"method": "Deform3DGS", "scene": "EndoNeRF (6 clips, avg)", "psnr_legacy": 37.9, "ssim": 0.9584, "lpips": 0.06,
         "train_time_s": 64, "fps": 338.8, "source": "Deform3DGS README", "protocol": "legacy PSNR"}]}))
    cfg = {
        "name": "tiny", "output": str(tmp_path / "bench"), "overrides": overrides,
        "eval": {"images": False, "video": False, "fps_min_time": 0, "fps_warmup": 0},
        "scenes": [{"name": "syn", "data": str(tmp_path / "scene"), "synthetic": {"width": 48, "height": 40, "n_frames": 10}}],
        "variants": [{"name": "hexplane"}, {"name": "static", "overrides": {"deform": {"kind": "none"}}}],
        "peers": ["peers.yaml"],
    }
    path = tmp_path / "bench.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_benchmark_trains_evaluates_tabulates_and_reuses(tmp_path, capsys):
    cfg = write_config(tmp_path, TINY)
    assert main(["benchmark", str(cfg), "--device", "cpu"], commands=COMMANDS) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1] == f"report: {tmp_path / 'bench' / 'table.md'}"
    bench = tmp_path / "bench"
    rows = list(csv.DictReader((bench / "table.csv").open()))
    sources = [r["source"] for r in rows]
    assert sources.count("measured here") == 2 and sources.count("baseline, measured here") == 3
    assert sources.count("reported (peers.yaml)") == 1
    measured = {r["method"]: r for r in rows if r["source"] == "measured here"}
    assert set(measured) == {"endogs (hexplane)", "endogs (static)"}
    rep = json.loads((bench / "runs" / "syn__hexplane" / "eval_test" / "metrics.json").read_text())
    m = measured["endogs (hexplane)"]
    assert float(m["psnr"]) == pytest.approx(rep["metrics"]["model"]["psnr"], abs=1e-5)
    assert float(m["train_time_s"]) > 0 and float(m["fps"]) > 0 and int(m["num_gaussians"]) == 400
    assert m["lpips"] == ""  # no AlexNet weights on this machine: not estimated
    peer = [r for r in rows if r["source"].startswith("reported")][0]
    assert peer["psnr"] == "" and float(peer["psnr_legacy"]) == 37.9  # in the column of the variant it computes
    md = (bench / "table.md").read_text()
    assert "measured here" in md and "reported" in md and "Deform3DGS README" in md and "Verdicts" in md
    # the run was trained through Trainer with the variant's config
    static = yaml.safe_load((bench / "runs" / "syn__static" / "run.yaml").read_text())
    assert static["config"]["deform"]["kind"] == "none" and static["config"]["iterations"] == 4

    assert main(["benchmark", str(cfg), "--device", "cpu"], commands=COMMANDS) == 2  # refuses to overwrite
    assert "--reuse" in capsys.readouterr().err
    assert main(["benchmark", str(cfg), "--device", "cpu", "--reuse", "--quiet"], commands=COMMANDS) == 0
    capsys.readouterr()
    runs = json.loads((bench / "benchmark.json").read_text())["runs"]
    assert [(r["train"], r["eval"]) for r in runs] == [("reused", "reused")] * 2

    changed = write_config(tmp_path, {**TINY, "iterations": 5})
    assert main(["benchmark", str(changed), "--device", "cpu", "--reuse"], commands=COMMANDS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "iterations" in err[0] and "syn__hexplane" in err[0]


def test_benchmark_config_errors(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"scenes": [{"name": "a", "data": "x", "colour": 1}]}))
    assert main(["benchmark", str(bad)], commands=COMMANDS) == 2
    assert "colour" in capsys.readouterr().err
    bad.write_text(yaml.safe_dump({"scenes": [{"name": "a", "data": str(tmp_path / "missing")}],
                                   "overrides": {"iterations": 1}}))
    assert main(["benchmark", str(bad)], commands=COMMANDS) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "missing") in err and "synthetic" in err
    bad.write_text(yaml.safe_dump({"scenes": [{"name": "a", "data": "x"}], "overrides": {"deform": {"knd": "mlp"}}}))
    assert main(["benchmark", str(bad)], commands=COMMANDS) == 2
    assert "knd" in capsys.readouterr().err
