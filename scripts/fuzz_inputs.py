"""Fuzz endogs' readers with mutated inputs; every one must load or end in a one-line error with exit 2.

    python scripts/fuzz_inputs.py --count 5000 --seed 1          # a larger run than the test's
    python scripts/fuzz_inputs.py --count 200 --family calib     # one family

Each case copies a small valid input (tests/data_fixtures.py scenes, a tiny mp4, a calibration, a train
preset, a batch SPEC), applies one seeded mutation (truncation, bit flips, wrong types or keys, NaN/inf
poses, non-rigid rotations, depth of the wrong dtype or all invalid, masks of the wrong size or polarity,
absurd calibration values) and runs the CLI's real entry, ``endogs.cli.main(argv)``, in this process with
stderr captured and a per-case time limit. Scene cases run ``endogs info``; the other families run the
same ``main`` with a command (``commands=``) that calls the stage reading that file (video frames,
calibration + rectification, preset, SPEC plan) so that a valid mutation does not start a training.
A case passes when the exit status is 0, or 2 with exactly one stderr line ``endogs: error: ...``.
The mutations themselves are in scripts/fuzz_mutations.py; this file builds the cases, runs and judges them.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import tempfile
import signal
import subprocess
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))
import data_fixtures as fx  # noqa: E402  (the tests' tiny scenes)
from fuzz_mutations import (  # noqa: E402
    CALIB_BASE,
    SCENE_META_BASE,
    bad_rotation,
    mutate_calib_values,
    mutate_depth_png,
    mutate_file,
    mutate_json_file,
    mutate_masks,
    mutate_poses_bounds,
    mutate_yaml_file,
    pick,
    write_opencv_calib,
)

import tyro  # noqa: E402

Positional = tyro.conf.Positional


# ---------------------------------------------------------------- probe commands (stage readers)
def video(path: Positional[Path]) -> None:
    """Open a video and decode every frame (the reading stage of `endogs prepare`)."""
    from endogs.video.sources import open_input, select_frames

    inp = open_input(path, None, "mono", False)
    indices, _ = select_frames(inp, 0, None, 1, None)
    n = sum(1 for _ in inp.pairs(indices))
    print(f"{n} frames")


def calib(path: Positional[Path], width: int = 20, height: int = 16) -> None:
    """Read and validate a stereo calibration, then build the rectifier (as `endogs prepare --calib`)."""
    from endogs.video.rectify import load_calibration, stereo_rectifier

    c = load_calibration(path, (width, height))
    stereo_rectifier(c, (width, height))
    print(f"baseline {c.baseline:.3f}")


def preset(path: Positional[Path]) -> None:
    """Load a train preset YAML (as `endogs train --preset PATH`)."""
    from endogs.train.config import load_preset

    load_preset(str(path))


def spec(path: Positional[Path], out: Path) -> None:
    """Plan a batch SPEC (the validation `endogs batch` does before any task)."""
    from endogs.batch.spec import plan_batch

    plan_batch(path, out)


def scene(path: Positional[Path], crop_left: int = 4) -> None:
    """`endogs info` of a Hamlyn scene with its crop option (the tiny fixture is narrower than the default crop)."""
    from endogs.data import load_scene
    from endogs.data.summary import format_summary, summarize_scene

    print(format_summary(summarize_scene(load_scene(path, format="hamlyn", crop_left=crop_left), max_frames=50)))


PROBES = {"scene": scene, "video": video, "calib": calib, "preset": preset, "spec": spec}



# ---------------------------------------------------------------- case families
@dataclass
class Case:
    family: str
    mutation: str
    argv: list[str]
    commands: Optional[dict] = None  # None: the real registry


def _scene(kind: str, root: Path) -> None:
    if kind == "endonerf-jpeg":
        fx.endonerf(root)
        for p in sorted((root / "images").iterdir()):
            cv2.imwrite(str(p.with_suffix(".jpg")), cv2.imread(str(p)), [cv2.IMWRITE_JPEG_QUALITY, 90])
            p.unlink()
        return
    {"endonerf": fx.endonerf, "hamlyn": fx.hamlyn, "scared": fx.scared, "scared-keyframe": fx.scared_keyframe}[kind](root)


def _info(root: Path) -> list[str]:
    return ["info", str(root), "--max-frames", "50"]


def case_endonerf(rng, d: Path) -> Case:
    jpeg = rng.random() < 0.25
    root = d / "scene"
    _scene("endonerf-jpeg" if jpeg else "endonerf", root)
    r = int(rng.integers(0, 8))
    if r == 0:
        m = "image-" + mutate_file(rng, pick(rng, root / "images"))
    elif r == 1:
        m = "depth-bytes-" + mutate_file(rng, pick(rng, root / "depth"))
    elif r == 2:
        m = mutate_depth_png(rng, root / "depth")
    elif r == 3:
        m = mutate_masks(rng, root / "masks" if rng.random() < 0.7 else root / "gt_masks")
    elif r == 4:
        m = mutate_poses_bounds(rng, root / "poses_bounds.npy")
    elif r == 5:
        m = "npy-" + mutate_file(rng, root / "poses_bounds.npy")
    else:
        meta = root / "endogs_scene.json"
        meta.write_text(json.dumps(SCENE_META_BASE))
        m = "meta-" + mutate_json_file(rng, meta)
    return Case("endonerf-jpeg" if jpeg else "endonerf", m, _info(root))


def case_scared(rng, d: Path) -> Case:
    root = d / "scene"
    fx.scared(root)
    data = root / "data"
    r = int(rng.integers(0, 5))
    if r == 0:
        m = "tiff-" + mutate_file(rng, pick(rng, data / "disparity"))
    elif r == 1:
        m = "frame-" + mutate_json_file(rng, pick(rng, data / "frame_data"))
    elif r == 2:
        m = "reproj-" + mutate_json_file(rng, pick(rng, data / "reprojection_data"))
    elif r == 3:
        p = pick(rng, data / "frame_data")
        obj = json.loads(p.read_text())
        pose = np.array(obj["camera-pose"])
        pose[:3, :3] = bad_rotation(rng)
        obj["camera-pose"] = np.where(np.isfinite(pose), pose, 1e308 * 10).tolist()
        p.write_text(json.dumps(obj).replace("Infinity", "NaN" if rng.random() < 0.5 else "Infinity"))
        m = "pose-nonrigid"
    else:
        m = "image-" + mutate_file(rng, pick(rng, data / "left_finalpass"))
    return Case("scared", m, _info(root))


def case_keyframe(rng, d: Path) -> Case:
    root = d / "scene"
    fx.scared_keyframe(root)
    r = int(rng.integers(0, 4))
    if r == 0:
        m = "calib-bytes-" + mutate_file(rng, root / "endoscope_calibration.yaml")
    elif r == 1:
        write_opencv_calib(root / "endoscope_calibration.yaml", mutate_calib_values(rng))
        m = "calib-values"
    elif r == 2:
        m = "xyz-tiff-" + mutate_file(rng, root / "left_depth_map.tiff")
    else:
        m = "left-" + mutate_file(rng, root / "Left_Image.png")
    return Case("scared-keyframe", m, _info(root))


def case_hamlyn(rng, d: Path) -> Case:
    root = d / "scene"
    fx.hamlyn(root)
    r = int(rng.integers(0, 4))
    if r == 0:
        K = np.array([[30.0, 0, 9.5], [0, 31.0, 7.5], [0, 0, 1]])
        K.flat[int(rng.integers(0, 9))] = float(rng.choice([0.0, -30.0, np.nan, np.inf, 1e30]))
        np.savetxt(root / "intrinsics.txt", K if rng.random() < 0.8 else K[:2])
        m = "intrinsics-values"
    elif r == 1:
        m = "intrinsics-bytes-" + mutate_file(rng, root / "intrinsics.txt")
    elif r == 2:
        m = "gt-depth-" + mutate_file(rng, pick(rng, root / "gt_depth"))
    else:
        m = mutate_masks(rng, root / "gt_masks")
    return Case("hamlyn", m, ["scene", str(root), "--crop-left", "4"], PROBES)


def _write_video(path: Path, n: int = 6) -> None:
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (32, 24))
    for img in fx.images(n, 4):
        w.write(cv2.resize(img, (32, 24)))
    w.release()


_VIDEO_CACHE: dict[str, bytes] = {}


def case_video(rng, d: Path) -> Case:
    p = d / "clip.mp4"
    if "mp4" not in _VIDEO_CACHE:
        _write_video(p)
        _VIDEO_CACHE["mp4"] = p.read_bytes()
    p.write_bytes(_VIDEO_CACHE["mp4"])
    m = mutate_file(rng, p)
    return Case("video", m, ["video", str(p)], PROBES)


def case_calib(rng, d: Path) -> Case:
    if rng.random() < 0.5:
        p = d / "calib.yaml"
        write_opencv_calib(p, mutate_calib_values(rng) if rng.random() < 0.6 else CALIB_BASE)
        m = "yaml-values"
        if rng.random() < 0.4:
            m = "yaml-bytes-" + mutate_file(rng, p)
    else:
        p = d / "calib.json"
        base = {"left": {"K": CALIB_BASE["M1"], "distortion": CALIB_BASE["D1"][0]},
                "right": {"K": CALIB_BASE["M2"], "distortion": CALIB_BASE["D2"][0]},
                "stereo": {"R": CALIB_BASE["R"], "T": [-4.2, 0, 0]}, "unit": "mm"}
        p.write_text(json.dumps(base))
        m = "json-" + mutate_json_file(rng, p)
    return Case("calib", m, ["calib", str(p)], PROBES)


def case_preset(rng, d: Path) -> Case:
    names = ["fast", "demo", "default", "scared", "endonerf", "stereomis"]
    src = REPO / "endogs" / "configs" / f"{names[int(rng.integers(0, len(names)))]}.yaml"
    p = d / "preset.yaml"
    shutil.copy(src, p)
    m = mutate_yaml_file(rng, p)
    return Case("preset", m, ["preset", str(p)], PROBES)


def case_spec(rng, d: Path) -> Case:
    scene = d / "scene"
    fx.endonerf(scene, n=3)
    base = {"name": "fuzz", "max_retries": 1, "cpus_per_task": 1, "overrides": {"iterations": 10},
            "eval": {"split": "test", "images": False},
            "inputs": [{"scene": str(scene), "name": "s", "overrides": {"data": {"split": "all"}}}],
            "configs": [{"name": "fast", "preset": "fast"}, {"name": "mlp", "overrides": {"deform": {"kind": "mlp"}}}]}
    p = d / "spec.yaml"
    p.write_text(yaml.safe_dump(base))
    m = mutate_yaml_file(rng, p)
    return Case("spec", m, ["spec", str(p), "--out", str(d / "out")], PROBES)


FAMILIES: dict[str, Callable] = {
    "endonerf": case_endonerf, "scared": case_scared, "scared-keyframe": case_keyframe, "hamlyn": case_hamlyn,
    "video": case_video, "calib": case_calib, "preset": case_preset, "spec": case_spec,
}
WEIGHTS = {"endonerf": 6, "scared": 3, "scared-keyframe": 2, "hamlyn": 2, "video": 2, "calib": 3, "preset": 2, "spec": 2}


# ---------------------------------------------------------------- running and judging
@dataclass
class Outcome:
    case: Case
    rc: Optional[int]
    stdout: str
    stderr: str
    crash: Optional[str]  # a traceback when main raised
    seconds: float

    def problem(self) -> Optional[str]:
        """None when the case behaved (loaded, or one-line error with exit 2)."""
        if self.crash is not None:
            return "raised " + self.crash.strip().splitlines()[-1]
        lines = [ln for ln in self.stderr.splitlines() if ln.strip()]
        if self.rc == 0:
            return f"exit 0 but stderr has {lines[:2]}" if any("Traceback" in ln for ln in lines) else None
        if self.rc != 2:
            return f"exit {self.rc}: {lines[-1:] }"
        if len(lines) != 1 or not lines[0].startswith("endogs: error: "):
            return f"exit 2 but stderr is not one 'endogs: error:' line: {lines[:3]}"
        return None


class _NativeStderr:
    """Redirects file descriptor 2 to a temporary file for the duration of a case."""

    def __init__(self):
        self.text = ""

    def __enter__(self):
        sys.stderr.flush()
        self._saved = os.dup(2)
        self._tmp = tempfile.TemporaryFile()
        os.dup2(self._tmp.fileno(), 2)
        return self

    def __exit__(self, *exc):
        os.dup2(self._saved, 2)
        os.close(self._saved)
        self._tmp.seek(0)
        self.text = self._tmp.read().decode("utf-8", "replace")
        self._tmp.close()
        return False


class _Timeout(BaseException):
    pass


def _alarm(signum, frame):
    raise _Timeout()


def run_in_process(case: Case, timeout: float = 20.0) -> Outcome:
    from endogs.cli import main

    out, err = io.StringIO(), io.StringIO()
    t0 = time.perf_counter()
    rc, crash = None, None
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    native = _NativeStderr()  # what C libraries (libpng, ffmpeg) write to fd 2 belongs to stderr too
    try:
        with native, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")  # a warning would reach the user's stderr: it counts as output
            try:
                rc = main(list(case.argv), commands=case.commands)
            except SystemExit as exc:  # tyro's usage errors exit 2 themselves
                rc = exc.code if isinstance(exc.code, int) else 1
            for w in caught:
                err.write(f"{w.category.__name__}: {w.message}\n")
    except _Timeout:
        crash = f"hang: no result after {timeout:.0f} s"
    except Exception:
        crash = traceback.format_exc()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    return Outcome(case, rc, out.getvalue(), native.text + err.getvalue(), crash, time.perf_counter() - t0)


def run_subprocess(case: Case, timeout: float = 120.0) -> Outcome:
    """The same case as a real `python -m endogs ...` (only for cases of the real registry)."""
    assert case.commands is None
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "endogs", *case.argv], capture_output=True, text=True, timeout=timeout, env=env)
    return Outcome(case, p.returncode, p.stdout, p.stderr, None, time.perf_counter() - t0)


def generate(work: Path, count: int, seed: int, families: Optional[list[str]] = None):
    """Yield (case folder, Case) for ``count`` cases; the folder is emptied before the next case."""
    names = families or list(FAMILIES)
    w = np.array([WEIGHTS[n] for n in names], dtype=float)
    order = np.random.default_rng(seed).choice(len(names), size=count, p=w / w.sum())
    for i, k in enumerate(order):
        d = work / f"case{i:05d}"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        rng = np.random.default_rng([seed, i])
        yield d, FAMILIES[names[k]](rng, d)


def fuzz(work: Path, count: int, seed: int, families: Optional[list[str]] = None, keep: bool = False,
         on_case: Optional[Callable[[Outcome], None]] = None) -> list[Outcome]:
    outcomes = []
    for d, case in generate(work, count, seed, families):
        o = run_in_process(case)
        outcomes.append(o)
        if on_case:
            on_case(o)
        if not keep:
            shutil.rmtree(d, ignore_errors=True)
    return outcomes


def summarize(outcomes: list[Outcome]) -> dict:
    by: dict[str, dict[str, int]] = {}
    for o in outcomes:
        s = by.setdefault(o.case.family, {"cases": 0, "loaded": 0, "refused": 0, "bad": 0})
        s["cases"] += 1
        if o.problem():
            s["bad"] += 1
        elif o.rc == 0:
            s["loaded"] += 1
        else:
            s["refused"] += 1
    secs = sorted(o.seconds for o in outcomes)
    return {"families": by, "cases": len(outcomes), "bad": sum(v["bad"] for v in by.values()),
            "max_case_s": round(secs[-1], 3) if secs else 0.0}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", action="append", choices=sorted(FAMILIES), help="only these families (repeatable)")
    ap.add_argument("--work", type=Path, default=Path("outputs/fuzz"))
    ap.add_argument("--keep", action="store_true", help="keep every case folder (default: only failing ones)")
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(2)
    bad = []

    def report(o: Outcome) -> None:
        p = o.problem()
        if p:
            bad.append(o)
            print(f"BAD {o.case.family}/{o.case.mutation} {' '.join(o.case.argv)}: {p}", flush=True)

    t0 = time.perf_counter()
    outcomes = []
    for d, case in generate(args.work, args.count, args.seed, args.family):
        o = run_in_process(case)
        outcomes.append(o)
        report(o)
        if not (args.keep or o.problem()):
            shutil.rmtree(d, ignore_errors=True)
    s = summarize(outcomes)
    s["seconds"] = round(time.perf_counter() - t0, 1)
    s["seed"] = args.seed
    print(json.dumps(s, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
