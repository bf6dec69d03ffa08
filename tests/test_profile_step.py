"""scripts/profile_step.py: the stage shares of a training step add up and name every stage."""

from __future__ import annotations

import json

from scripts import profile_step


def test_stage_shares_cover_the_step(tmp_path, capsys):
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene

    scene = write_synthetic_scene(tmp_path / "scene", config=SyntheticConfig(width=40, height=32, n_frames=6), overwrite=True)
    assert profile_step.main([str(scene), "--steps", "4", "--warmup", "1", "--json", "--", "--preset", "demo", "--init.max-points", "500"]) == 0
    res = json.loads([x for x in capsys.readouterr().out.splitlines() if x.startswith("{")][-1])
    assert set(res["stages_share"]) == set(profile_step.STAGES) and res["gaussians"] == 500 and res["size"] == [40, 32]
    assert abs(sum(res["stages_share"].values()) - 1.0) < 0.01
    for stage in ("deformation", "projection", "binning", "composite", "losses", "backward", "optimizer"):
        assert res["stages_ms"][stage] > 0, stage
    assert res["stages_ms"]["other"] >= 0  # the timed stages never exceed the step
    assert abs(sum(res["backward_split_share"].values()) - 1.0) < 0.01
    assert res["backward_split_share"]["rasterizer (composite backward)"] > 0
    assert abs(sum(res["stages_ms"].values()) - res["ms_per_step"]) < 0.5


def test_missing_scene_is_one_line(tmp_path, capsys):
    assert profile_step.main([str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no such scene folder" in err
