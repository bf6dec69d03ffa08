"""The scene preparation in a child process (endogs.video.isolate): the same scene, log lines and user
errors as in-process, and the calling process never loads open3d (whose OpenMP settings would slow its
training step)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from endogs.data.synthetic import SyntheticConfig, generate
from endogs.errors import ConfigError, DataError
from endogs.video import PrepareOptions, prepare_scene
from endogs.video.isolate import prepare_scene_isolated
from endogs.video.synthetic_stereo import write_stereo_video


@pytest.fixture(scope="module")
def video(tmp_path_factory):
    scene = generate(SyntheticConfig(width=160, height=128, n_frames=4, camera="moving", seed=11))
    return write_stereo_video(scene, tmp_path_factory.mktemp("iso") / "rec", layout="side-by-side").inputs[0]


def test_child_prepares_the_same_scene_and_sends_its_log(video, tmp_path):
    logs: list[str] = []
    res = prepare_scene_isolated(video, tmp_path / "child", PrepareOptions(), log=logs.append)
    ref = prepare_scene(video, tmp_path / "here", PrepareOptions())
    assert res.root == tmp_path / "child" and res.n_frames == ref.n_frames == 4
    assert res.pose_report.method == ref.pose_report.method == "odometry"
    assert any(s.startswith("prepare: depth") for s in logs) and any("odometry" in s for s in logs)
    for name in ("poses_bounds.npy",):
        np.testing.assert_array_equal(np.load(res.root / name), np.load(ref.root / name))
    for png in sorted((ref.root / "depth").iterdir()):
        assert (res.root / "depth" / png.name).read_bytes() == png.read_bytes()
    a, b = (json.loads((r.root / "endogs_scene.json").read_text()) for r in (res, ref))
    for key in ("fx", "fy", "principal_point", "source_frames", "rectification", "poses", "options"):
        assert a[key] == b[key], key


def test_user_errors_come_back_as_the_same_one_line_error(video, tmp_path):
    with pytest.raises(DataError) as child:
        prepare_scene_isolated(tmp_path / "missing.mp4", tmp_path / "out")
    with pytest.raises(DataError) as here:
        prepare_scene(tmp_path / "missing.mp4", tmp_path / "out")
    assert str(child.value) == str(here.value) and "\n" not in str(child.value)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        prepare_scene_isolated(video, tmp_path / "full")


def test_the_caller_never_loads_open3d(video, tmp_path):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from endogs.video.isolate import prepare_scene_isolated\n"
        f"r = prepare_scene_isolated(Path({str(video)!r}), Path({str(tmp_path / 'scene')!r}))\n"
        "maps = open('/proc/self/maps').read() if Path('/proc/self/maps').exists() else ''\n"
        "print(r.pose_report.method, 'open3d' in sys.modules, 'open3d' in maps)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["odometry", "False", "False"]
    assert (tmp_path / "scene" / "poses_bounds.npy").is_file()
