"""The endogs command line: info output, JSON, and one-line errors with exit code 2."""

from __future__ import annotations

import json
import subprocess
import sys

import data_fixtures as fx


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "endogs", *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_info_text_and_json(tmp_path):
    fx.endonerf(tmp_path, n=10)
    r = run("info", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "endonerf" in r.stdout and "20x16" in r.stdout and "8 train / 2 test" in r.stdout
    r = run("info", tmp_path, "--json")
    assert r.returncode == 0, r.stderr
    s = json.loads(r.stdout)
    assert s["format"] == "endonerf" and s["frames"] == 10
    assert s["intrinsics"]["fx"] == 25.0 and s["intrinsics"]["cx"] == 10.0
    assert s["split"]["test_indices"] == [1, 9]
    assert s["depth"]["available"] and 0.9 < s["depth"]["valid_fraction_mean"] < 1.0
    assert abs(s["masks"]["tool_fraction_mean"] - 0.15) < 1e-6
    assert s["poses"]["moving"] is False


def test_info_on_moving_scared(tmp_path):
    fx.scared(tmp_path, n=9)
    s = json.loads(run("info", tmp_path, "--json", "--split", "all").stdout)
    assert s["format"] == "scared" and s["poses"]["moving"] and s["split"]["test"] == 9
    assert s["depth_unit"] == "mm" and s["depth"]["median"] == 8.0


def test_errors_are_one_line_exit_2(tmp_path):
    fx.endonerf(tmp_path, n=4)
    (tmp_path / "masks" / "frame-000001.mask.png").unlink()
    for args in (("info", tmp_path), ("info", tmp_path / "missing"), ("info", tmp_path, "--format", "scared")):
        r = run(*args)
        assert r.returncode == 2, (args, r.stdout, r.stderr)
        assert "Traceback" not in r.stderr
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("endogs: error: "), r.stderr
        assert str(tmp_path) in lines[0]
