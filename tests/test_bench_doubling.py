"""scripts/bench_doubling.py: N and 2N iterations on a small synthetic scene; the longer run is not worse."""

from __future__ import annotations

import json

from scripts import bench_doubling


def test_doubling_iterations_does_not_lower_held_out_psnr(tmp_path, capsys):
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene

    scene = write_synthetic_scene(tmp_path / "scene", config=SyntheticConfig(width=48, height=40, n_frames=8), overwrite=True)
    rc = bench_doubling.main([str(scene), "--out", str(tmp_path / "out"), "--iterations", "40", "--refine-stop", "0.8",
                              "--", "--preset", "demo", "--coarse-iterations", "10", "--init.max-points", "800"])
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    short, long, verdict = lines
    assert (short["iterations"], long["iterations"]) == (40, 80)
    assert long["psnr_masked"] > short["psnr_masked"] > short["best_baseline_psnr"] - 10
    assert verdict["longer_is_not_worse"] and rc == 0
    assert abs(verdict["psnr_masked_gain_db"] - (long["psnr_masked"] - short["psnr_masked"])) < 1e-3


def test_missing_scene_is_one_line(tmp_path, capsys):
    assert bench_doubling.main([str(tmp_path / "nope"), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such scene folder" in err
