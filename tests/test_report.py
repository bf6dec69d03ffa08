"""The evaluation is a function that writes nothing; the report is written from data and report.md
can be rebuilt from metrics.json alone."""

from __future__ import annotations

import json

import pytest

from endogs.eval import EvalOptions, evaluate_run
from endogs.eval.evaluate import evaluate
from endogs.eval import report as R
from endogs.run import RunFolder
from test_eval import make_scene, train_tiny

FAST = dict(fps_min_time=0.0, fps_warmup=0, video=False, plots=False)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    scene = make_scene(root / "scene", n_frames=10)
    return scene, train_tiny(scene, root / "run")


def test_evaluate_is_pure(trained):
    _, run = trained
    before = sorted(p.name for p in run.iterdir())
    opened = RunFolder(run).open("cpu", need_data=True)
    res = evaluate(opened, opened.dataset, EvalOptions(**FAST))
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written
    assert res.out_dir is None and set(res.renders) == set(res.report["protocol"]["frames"]) == {1, 9}
    assert res.report["metrics"]["model"]["frames"] == 2 and res.per_frame[0]["method"] == "model"


def test_report_md_is_rebuilt_from_metrics_json(trained, tmp_path):
    _, run = trained
    res = evaluate_run(run, EvalOptions(output=tmp_path / "ev", device="cpu", **FAST))
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "## Metrics (mean over frames)" in md and res.out_dir == tmp_path / "ev"
    assert R.markdown_from_metrics(tmp_path / "ev" / "metrics.json") == md
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["files"]["metrics"] == "metrics.json" and "renders" in saved["files"]  # images on by default
    assert R.stdout_summary(saved, tmp_path / "r.md") == R.stdout_summary(res.report, tmp_path / "r.md")
