"""Seeded fuzzing of every reader (scripts/fuzz_inputs.py): each mutated input loads or ends in one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest

from scripts import fuzz_inputs as fz

# 640 cases in ~20-40 s on 2 cores; scripts/fuzz_inputs.py --count N runs more.
COUNT, SEED = 640, 17


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return fz.fuzz(tmp_path_factory.mktemp("fuzz"), COUNT, SEED)


def test_every_mutated_input_loads_or_fails_in_one_line(outcomes):
    assert len(outcomes) == COUNT >= 500
    bad = [f"{o.case.family}/{o.case.mutation} {o.case.argv}: {o.problem()}" for o in outcomes if o.problem()]
    assert not bad, f"{len(bad)} of {COUNT} cases misbehaved:\n" + "\n".join(bad[:20])


def test_the_fuzz_covers_every_family_with_both_outcomes(outcomes):
    s = fz.summarize(outcomes)["families"]
    assert set(s) == set(fz.FAMILIES) | {"endonerf-jpeg"}
    for fam, v in s.items():
        assert v["cases"] >= 20, (fam, v)
        assert v["refused"] > 0, (fam, v)  # the mutations do break things
    # most families also keep some mutations loadable (a bit flip in pixel data, an absent optional key)
    assert all(v["loaded"] > 0 for v in s.values()), s
    refused = [o for o in outcomes if o.rc == 2]
    assert all(o.stderr.strip().startswith("endogs: error: ") and "\n" not in o.stderr.strip() for o in refused)


def test_same_seed_same_cases(tmp_path):
    a = [(d.name, c.family, c.mutation) for d, c in fz.generate(tmp_path / "a", 25, 3)]
    b = [(d.name, c.family, c.mutation) for d, c in fz.generate(tmp_path / "b", 25, 3)]
    c = [(d.name, c.family, c.mutation) for d, c in fz.generate(tmp_path / "c", 25, 4)]
    assert a == b and a != c


def test_harness_catches_tracebacks_hangs_and_noise(tmp_path):
    """The judge itself: a raising command, a hanging one and a noisy error are reported, a clean one is not."""
    from endogs.errors import DataError

    def boom(x: int = 0) -> None:
        raise KeyError("x")

    def hang(x: int = 0) -> None:
        import time

        time.sleep(30)

    def noisy(x: int = 0) -> None:
        import os

        os.write(2, b"libfoo warning: something\n")
        raise DataError("bad file", tmp_path / "f")

    def clean(x: int = 0) -> None:
        raise DataError("bad file", tmp_path / "f")

    cmds = {"boom": boom, "hang": hang, "noisy": noisy, "clean": clean}
    assert "raised KeyError" in fz.run_in_process(fz.Case("t", "t", ["boom"], cmds)).problem()
    assert "hang" in fz.run_in_process(fz.Case("t", "t", ["hang"], cmds), timeout=0.5).problem()
    assert "not one" in fz.run_in_process(fz.Case("t", "t", ["noisy"], cmds)).problem()
    o = fz.run_in_process(fz.Case("t", "t", ["clean"], cmds))
    assert o.problem() is None and o.rc == 2 and o.stderr.strip() == f"endogs: error: {tmp_path / 'f'}: bad file"


def test_subprocess_matches_in_process(tmp_path):
    """A handful of cases as real `python -m endogs info` processes give the same status and stderr."""
    cases = [(d, c) for d, c in fz.generate(tmp_path, 40, 5, ["endonerf", "scared", "scared-keyframe"])]
    picked, seen = [], set()
    for d, c in cases:  # both outcomes, several mutations
        o = fz.run_in_process(c)
        key = (o.rc, c.family)
        if key not in seen:
            seen.add(key)
            picked.append(o)
    assert {o.rc for o in picked} == {0, 2} and len(picked) >= 4
    loaded = [o for o in picked if o.rc == 0][:1]
    refused = [o for o in picked if o.rc == 2][:2]
    for o in loaded + refused:  # 3 processes: each pays the full import of endogs (~5 s)
        p = fz.run_subprocess(o.case)
        assert p.rc == o.rc, (o.case.mutation, p.stderr[-500:])
        assert p.problem() is None, (o.case.mutation, p.stderr[-500:])
        if o.rc == 2:
            assert p.stderr.strip() == o.stderr.strip()
        else:
            assert p.stdout == o.stdout


def test_named_bad_inputs(tmp_path):
    """Specific catalogue rows: the exact message for a few classic mutations."""
    import data_fixtures as fx
    from endogs.cli import main

    def info(root):
        o = fz.run_in_process(fz.Case("t", "t", ["info", str(root)]))
        assert o.problem() is None, o.problem()
        return o

    root = tmp_path / "nan_pose"
    fx.endonerf(root)
    pb = np.load(root / "poses_bounds.npy")
    pb[3, 3] = np.nan
    np.save(root / "poses_bounds.npy", pb)
    assert "poses_bounds.npy row 3 contains NaN or infinite values" in info(root).stderr

    root = tmp_path / "shear"
    fx.endonerf(root)
    pb = np.load(root / "poses_bounds.npy")
    pb[2, 1] = 0.4
    np.save(root / "poses_bounds.npy", pb)
    assert "pose of row 2 is not a rigid transform" in info(root).stderr

    root = tmp_path / "meta"
    fx.endonerf(root)
    (root / "endogs_scene.json").write_text(json.dumps({"fx": "25"}))
    assert "endogs_scene.json: fx must be a positive number (pixels), got '25'" in info(root).stderr

    root = tmp_path / "zero_depth"
    fx.endonerf(root)
    fx.write_gray(root / "depth" / "frame-000004.depth.png", np.zeros((fx.H, fx.W), np.uint8))
    assert "frame-000004.depth.png: depth map has no valid (non-zero) pixel" in info(root).stderr

    root = tmp_path / "inverted"
    fx.endonerf(root)
    for p in (root / "masks").iterdir():
        fx.write_gray(p, 255 - __import__("cv2").imread(str(p), 0))
    assert "the polarity looks inverted" in info(root).stderr

    p = tmp_path / "calib.yaml"
    mats = dict(fz.CALIB_BASE, M1=[[0.0, 0, 10], [0, 30, 8], [0, 0, 1]])
    fz.write_opencv_calib(p, mats)
    o = fz.run_in_process(fz.Case("t", "t", ["calib", str(p)], fz.PROBES))
    assert o.rc == 2 and "non-positive focal length" in o.stderr, o.stderr
    fz.write_opencv_calib(p, dict(fz.CALIB_BASE, D1=[[0.1, 0.2, 0.3]]))
    o = fz.run_in_process(fz.Case("t", "t", ["calib", str(p)], fz.PROBES))
    assert o.stderr.strip().endswith("key D1 has 3 values; OpenCV distortion has 4, 5, 8, 12 or 14"), o.stderr

    p = tmp_path / "preset.yaml"
    p.write_bytes(b"iterations: \xff\xfe\n")
    o = fz.run_in_process(fz.Case("t", "t", ["preset", str(p)], fz.PROBES))
    assert o.stderr.strip() == f"endogs: error: {p}: not a text file (invalid UTF-8); expected a YAML mapping"
    assert main(["info", str(tmp_path / "nope")]) == 2
