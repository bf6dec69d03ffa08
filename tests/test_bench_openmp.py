"""scripts/bench_openmp.py: the modes per round in their own processes, on the threading layer each
stands for; the run untouched; one-line errors."""

from __future__ import annotations

import json

from scripts import bench_openmp
from test_eval import make_scene, train_tiny


def test_rounds_alternate_the_modes_in_fresh_processes(tmp_path, capsys):
    from endogs.run import RunFolder

    run = train_tiny(make_scene(tmp_path / "scene"), tmp_path / "run", sh_degree=1)
    before = RunFolder(run).checkpoint_file.read_bytes()
    assert bench_openmp.main([str(run), "--rounds", "1", "--steps", "2", "--modes", "open3d,tbb", "--json"]) == 0
    lines = [json.loads(s) for s in capsys.readouterr().out.strip().splitlines()]
    assert [x["mode"] for x in lines[:-1]] == ["open3d", "tbb"]
    # with open3d loaded, endogs still runs numba on OpenMP; the tbb mode is numba's own choice then
    assert [x["layer"] for x in lines[:-1]] == ["omp", "tbb"]
    for x in lines[:-1]:
        assert x["gaussians"] > 0 and x["mean_ms"] > 0 and x["median_ms"] > 0 and x["cpu_ms_per_step"] > 0
    assert set(lines[-1]["median_of_means_ms"]) == {"open3d", "tbb"} and lines[-1]["steps"] == 2
    assert RunFolder(run).checkpoint_file.read_bytes() == before


def test_bad_input_is_one_line(tmp_path, capsys):
    assert bench_openmp.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint.pt" in err
    from endogs.run import RunFolder

    RunFolder(tmp_path).checkpoint_file.write_bytes(b"")
    assert bench_openmp.main([str(tmp_path), "--steps", "0"]) == 2
    assert "--steps must be >= 1" in capsys.readouterr().err
    assert bench_openmp.main([str(tmp_path), "--modes", "plain,fast"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown mode" in err
