"""scripts/bench_train.py: snapshots at wall-clock marks, evaluated after training on the held-out frames."""

from __future__ import annotations

import json

from scripts import bench_train


def test_marks_are_snapshots_evaluated_after_training(tmp_path, capsys):
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene

    scene = write_synthetic_scene(tmp_path / "scene", config=SyntheticConfig(width=40, height=32, n_frames=6), overwrite=True)
    out = tmp_path / "out"
    rc = bench_train.main([str(scene), "--out", str(out), "--marks", "0.01,100000", "--label", "small",
                           "--", "--preset", "demo", "--iterations", "60", "--coarse-iterations", "10", "--init.max-points", "600"])
    assert rc == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    head, rows = lines[0], lines[1:-1]
    assert head["iterations"] == 60 and head["train_frames"] == 5
    # the first mark has passed during initialisation (the clock starts before the scene is loaded), so its
    # snapshot is taken after the first step; the second is never reached: training ends first
    assert [r["mark_s"] for r in rows] == ["0.01s", "end"]
    first, end = rows
    assert first["seconds"] >= 0.01 and end["seconds"] > first["seconds"]
    assert first["step"] == 1 and end["step"] == 60
    assert end["psnr_masked"] > first["psnr_masked"] + 2.0
    assert [json.loads(x) for x in (out / "curve.jsonl").read_text().splitlines()] == rows
    assert (out / "curve.png").read_bytes()[:4] == b"\x89PNG"
    for mark in ("0.01s", "end"):  # each snapshot is a run folder with its own evaluation
        assert json.loads((out / "marks" / mark / "eval_test" / "metrics.json").read_text())["metrics"]["model"]["psnr"] == next(
            r["psnr_masked"] for r in rows if r["mark_s"] == mark)
    # the test frames never reached training: the run's log lists them apart from the train frames
    init = json.loads((out / "run" / "log.jsonl").read_text().splitlines()[0])
    assert set(init["test_indices"]).isdisjoint(init["train_indices"])


def test_bad_marks_and_missing_scene_are_one_line(tmp_path, capsys):
    assert bench_train.main([str(tmp_path), "--out", str(tmp_path / "o"), "--marks", "60,30"]) == 2
    assert bench_train.main([str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "increasing positive seconds" in err[0] and "no such scene folder" in err[1]
