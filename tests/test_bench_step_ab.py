"""scripts/bench_step_ab.py: interleaved modes on one resumed run, switches restored, one-line errors."""

from __future__ import annotations

import json

from scripts import bench_step_ab
from test_eval import make_scene, train_tiny


def test_modes_take_turns_and_the_switches_are_restored(tmp_path, capsys):
    import endogs.render.sh_numba as shn
    from endogs.train.trainer import Trainer

    run = train_tiny(make_scene(tmp_path / "scene"), tmp_path / "run", sh_degree=1)
    from endogs.run import RunFolder

    before = RunFolder(run).checkpoint_file.read_bytes()
    use_sh, finite = shn.use_numba_sh, Trainer._finite
    assert bench_step_ab.main([str(run), "--blocks", "2", "--steps-per-block", "2", "--modes", "none,all,-sh,adam,+adam", "--json"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert list(res["modes"]) == ["none", "all", "-sh", "adam", "+adam"] and res["steps_per_mode"] == 4
    assert res["modes"]["none"]["on"] == [] and res["modes"]["adam"]["on"] == ["adam"]
    assert res["modes"]["all"]["on"] == ["finite", "relu", "sh"] and res["modes"]["-sh"]["on"] == ["finite", "relu"]
    assert res["modes"]["+adam"]["on"] == ["adam", "finite", "relu", "sh"]
    for r in res["modes"].values():
        assert 0 < r["min_ms"] <= r["p25_ms"] <= r["median_ms"]
    assert shn.use_numba_sh is use_sh and Trainer._finite is finite
    assert RunFolder(run).checkpoint_file.read_bytes() == before  # the run itself is never trained


def test_bad_input_is_one_line(tmp_path, capsys):
    assert bench_step_ab.main([str(tmp_path)]) == 2
    assert "no checkpoint.pt" in capsys.readouterr().err
    from endogs.run import RunFolder

    RunFolder(tmp_path).checkpoint_file.write_bytes(b"")
    assert bench_step_ab.main([str(tmp_path), "--modes", "all,fast"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown mode fast;" in err
    assert bench_step_ab.main([str(tmp_path), "--modes=-adam"]) == 2  # not in today's code
