"""kill -9 at random moments of ``endogs train``, ``eval``, ``export``, ``prepare`` and ``batch`` on tiny inputs.

Each trial starts the command as a real process (``python -m endogs ...``), SIGKILLs it after a seeded
random delay, checks that no file under its final name is half-written (checkpoint.pt loads, run.yaml /
metrics.json / index.json parse, log.jsonl reads with at most a cut last line, PNG / PLY / npy files are
whole), then reruns it (train: ``--resume`` when a checkpoint exists, else the same command) and
checks that the result equals an uninterrupted run: the final checkpoint's parameters bit for bit,
the evaluation's metrics, the exported files byte for byte, the prepared scene's files (a 6-frame
synthetic stereo video, odometry poses) byte for byte, the batch's pair (one scene, one config, on a
private local Ray instance) with the same final parameters and metrics.

    python scripts/kill_trials.py --trials 60 --seed 1 --work /tmp/kill
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from endogs.run import CHECKPOINT_FILE, LOG_FILE, RUN_FILE, RunFolder

ROOT = Path(__file__).resolve().parents[1]
# A run of a few seconds: 400 Gaussians, a tiny HexPlane, no densification, a checkpoint every 2 steps.
TINY = {
    "iterations": 12, "coarse_iterations": 4, "device": "cpu", "log_every": 1, "checkpoint_every": 2,
    "strategy": {"enabled": False}, "init": {"max_points": 400, "num_frames": 4, "remove_outliers": False},
    "deform": {"spatial_resolutions": [8], "feature_dim": 8, "hidden_dim": 16},
}
EVAL_FLAGS = ["--no-video", "--no-plots", "--fps-min-time", "0", "--quiet"]
EXPORT_FLAGS = ["--what", "ply", "depth", "--stride", "3", "--quiet"]
# When a trial is killed. Time from the start alone depends on the machine (the import of endogs and the
# first render take from 3 to 40 s), so moments are drawn relative to what the process does: eval, export,
# prepare and batch are killed at a random fraction of the time an uninterrupted run of the same command
# took on this machine (measured once); a training either a random delay after its start (before or
# during initialisation) or a random delay after its log has reached a random step (during the
# optimisation, with or without a checkpoint on disk).
TRAIN_WINDOW = (1.0, 6.0)  # seconds after the start
FRACTION = (0.15, 0.9)  # of the uninterrupted run's duration
AFTER_STEP = (0.0, 0.4)  # seconds after the log reached the drawn step
START_TIMEOUT = 300.0  # a run that writes no log line within this is a failure of its own
ORPHANS_GRACE = 180.0  # seconds the processes a killed batch driver started may outlive it


@dataclass
class Setup:
    work: Path
    scene: Path
    preset: Path
    reference: Path  # an uninterrupted run, evaluated and exported
    ref_metrics: dict
    ref_export: dict[str, bytes]
    video: Optional[tuple[list[str], dict[str, bytes]]] = None  # prepare: (args after the output, reference files)
    batch: Optional[tuple[Path, dict]] = None  # batch: (SPEC, reference metrics)
    durations: dict = field(default_factory=dict)  # kind -> seconds of an uninterrupted run as a process


def cli(args: list[str]) -> int:
    from endogs.cli import main
    from endogs.eval.cli import eval_run

    return main(args, commands={"eval": eval_run} if args[0] == "eval" else None)


def train_args(s: Setup, run: Path) -> list[str]:
    return ["train", str(s.scene), "--preset", str(s.preset), "--output", str(run), "--quiet"]


def export_files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file() and p.name != "index.json"
            and not p.name.startswith(".")}


def setup(work: Path) -> Setup:
    import yaml

    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene

    work.mkdir(parents=True, exist_ok=True)
    scene = write_synthetic_scene(work / "scene", config=SyntheticConfig(width=48, height=40, n_frames=10), overwrite=True)
    preset = work / "tiny.yaml"
    preset.write_text(yaml.safe_dump(TINY))
    ref = work / "reference"
    shutil.rmtree(ref, ignore_errors=True)
    s = Setup(work, scene, preset, ref, {}, {})
    assert cli(train_args(s, ref)) == 0
    assert cli(["eval", str(ref), *EVAL_FLAGS]) == 0
    s.ref_metrics = json.loads(RunFolder(ref).metrics_file("test").read_text())
    assert cli(["export", str(ref), *EXPORT_FLAGS]) == 0
    s.ref_export = export_files(RunFolder(ref).export_dir)
    return s


def tree_files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path (hidden temporary names excluded)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)}


def timed(args: list[str], cwd: Optional[Path] = None) -> float:
    """Seconds an uninterrupted ``python -m endogs ARGS`` takes (it must succeed)."""
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "endogs", *args], capture_output=True, text=True, env=_env(), cwd=cwd,
                       timeout=START_TIMEOUT)
    assert r.returncode == 0, r.stderr[-2000:]
    return time.perf_counter() - t0


def duration(s: Setup, kind: str) -> float:
    """How long an uninterrupted eval / export of the reference takes as a process here (measured once)."""
    if kind not in s.durations:
        run = s.work / f"timing_{kind}"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(s.reference, run, ignore=shutil.ignore_patterns("eval_*", "export"))
        s.durations[kind] = timed(["eval", str(run), *EVAL_FLAGS] if kind == "eval" else ["export", str(run), *EXPORT_FLAGS])
        shutil.rmtree(run)
    return s.durations[kind]


def prepare_setup(s: Setup) -> tuple[list[str], dict[str, bytes]]:
    """A 6-frame top-bottom stereo video and its uninterrupted ``endogs prepare`` (made once)."""
    if s.video is None:
        from endogs.data.synthetic import SyntheticConfig, generate
        from endogs.video.synthetic_stereo import write_stereo_video

        scene = generate(SyntheticConfig(width=160, height=128, n_frames=6, camera="moving", deformation=0.3, seed=3))
        v = write_stereo_video(scene, s.work / "video", layout="top-bottom", overwrite=True)
        args = [str(v.inputs[0]), "--calib", str(v.calibration), "--quiet"]
        ref = s.work / "prepared_reference"
        shutil.rmtree(ref, ignore_errors=True)
        s.durations["prepare"] = timed(["prepare", args[0], "--out", str(ref), *args[1:]])
        s.video = (args, tree_files(ref))
    return s.video


def batch_setup(s: Setup) -> tuple[Path, dict]:
    """A one-pair SPEC (the tiny scene, the tiny preset) and its uninterrupted batch (made once)."""
    if s.batch is None:
        import yaml

        spec = s.work / "spec.yaml"
        spec.write_text(yaml.safe_dump({
            "name": "kill", "output": "batch_reference", "overrides": {"device": "cpu"},
            "eval": {"images": False, "video": False, "fps_min_time": 0.0, "fps_warmup": 0},
            "inputs": [{"scene": str(s.scene)}], "configs": [{"name": "tiny", "preset": str(s.preset)}]}))
        ref = s.work / "batch_reference"
        shutil.rmtree(ref, ignore_errors=True)
        s.durations["batch"] = timed(["batch", str(spec), "--out", str(ref)], cwd=s.work)
        s.batch = (spec, batch_result(ref))
    return s.batch


def batch_result(out: Path) -> dict:
    """The pair's final parameters' checksum and metrics of a finished batch output folder."""
    import torch

    (run,) = [p.parent for p in out.glob(f"*/{RUN_FILE}")]
    ckpt = RunFolder(run).load_checkpoint()
    assert ckpt["done"]
    params = {k: float(v.double().sum()) for k, v in ckpt["scene"]["state_dict"].items() if isinstance(v, torch.Tensor)}
    metrics = json.loads(RunFolder(run).metrics_file("test").read_text())["metrics"]
    return {"step": ckpt["step"], "params": params, "metrics": metrics}


def check_visible(folder: Path) -> int:
    """Assert every file under its final name in ``folder`` is whole; returns how many were checked."""
    import cv2
    import numpy as np
    import yaml


    n = 0
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name.startswith(".") or any(part.startswith(".") for part in p.relative_to(folder).parts[:-1]):
            continue  # temporary names (.NAME.tmp-PID.ext, .FOLDER.tmp-...) are never final
        n += 1
        if p.name == CHECKPOINT_FILE:
            RunFolder(p.parent).load_checkpoint()
        elif p.name == LOG_FILE:
            RunFolder(p.parent).read_log()
        elif p.suffix == ".yaml":
            assert isinstance(yaml.safe_load(p.read_text()), dict), p
        elif p.suffix == ".json":
            json.loads(p.read_text())
        elif p.suffix == ".png":
            assert cv2.imread(str(p), cv2.IMREAD_UNCHANGED) is not None, p
        elif p.suffix == ".npy":
            np.load(p)
        elif p.suffix == ".ply":
            head = p.read_bytes()
            assert head.startswith(b"ply\n") and b"end_header" in head, p
        elif p.suffix in (".md", ".csv", ".txt", ".log"):
            p.read_text()
    return n


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def _start(args: list[str], cwd: Optional[Path] = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "endogs", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env=_env(), cwd=cwd, start_new_session=True)


def _kill(proc: subprocess.Popen) -> bool:
    """SIGKILL the command's process (only it: what it started must cope, as after a real kill -9)."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    return True


def session_pids(sid: int) -> list[int]:
    """Live processes of session ``sid`` (Linux /proc; [] elsewhere): what a killed command had started."""
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid and fields[0] != "Z":  # fields after the name: state, ppid, pgrp, session
            out.append(int(stat.parent.name))
    return out


def kill_at(args: list[str], delay: float, cwd: Optional[Path] = None,
            orphans_grace: Optional[float] = None) -> tuple[bool, float]:
    """Run ``python -m endogs ARGS``; SIGKILL it ``delay`` s after the start. Returns whether it was killed
    and how long the last process it started (its session) outlived it (0 without ``orphans_grace``).
    With ``orphans_grace``: assert that nothing it started is still running that long after."""
    proc = _start(args, cwd)
    try:
        proc.wait(timeout=delay)
        return False, 0.0
    except subprocess.TimeoutExpired:
        killed = _kill(proc)
    outlived = 0.0
    if orphans_grace is not None:
        start = time.monotonic()
        while session_pids(proc.pid) and time.monotonic() - start < orphans_grace:
            time.sleep(0.2)
        outlived = time.monotonic() - start
        left = session_pids(proc.pid)
        for pid in left:  # do not leave them to the next trial
            os.kill(pid, signal.SIGKILL)
        assert not left, f"{' '.join(args)}: {len(left)} processes it started outlived it by {orphans_grace:.0f} s"
    return killed, outlived


def log_steps(run: Path) -> int:
    """How many training steps the run's log has recorded so far (0 before it exists)."""
    try:
        data = (run / LOG_FILE).read_bytes()
    except OSError:
        return 0
    return sum(line.startswith(b'{"step"') for line in data.split(b"\n")[:-1])  # whole lines only


def kill_after_step(args: list[str], run: Path, step: int, delay: float) -> bool:
    """Run ``python -m endogs ARGS``; SIGKILL it ``delay`` s after its log in ``run`` has recorded ``step``."""
    proc = _start(args)
    deadline = time.monotonic() + START_TIMEOUT
    while proc.poll() is None and log_steps(run) < step:
        if time.monotonic() > deadline:
            _kill(proc)
            raise AssertionError(f"{' '.join(args)} wrote no log line {step} within {START_TIMEOUT:.0f} s")
        time.sleep(0.01)
    time.sleep(delay)
    return _kill(proc)


def same_checkpoint(a: Path, b: Path) -> None:
    import torch


    ca, cb = RunFolder(a).load_checkpoint(), RunFolder(b).load_checkpoint()
    assert ca["step"] == cb["step"] and ca["done"] and cb["done"]
    sa, sb = ca["scene"]["state_dict"], cb["scene"]["state_dict"]
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k} differs from the uninterrupted run"


def trial(s: Setup, kind: str, n: int, rng: random.Random) -> dict:
    if kind == "train":
        delay = rng.uniform(*TRAIN_WINDOW)
    else:
        if kind == "prepare":
            prepare_setup(s)
        elif kind == "batch":
            batch_setup(s)
        delay = rng.uniform(*FRACTION) * (s.durations[kind] if kind in ("prepare", "batch") else duration(s, kind))
    moment = {"delay": round(delay, 3)}
    if kind == "train":
        run = s.work / f"t{n}"
        shutil.rmtree(run, ignore_errors=True)
        if n % 3 == 0:  # during start-up or initialisation
            killed, _ = kill_at(train_args(s, run), delay)
        else:  # during the optimisation
            step, delay = rng.randint(1, TINY["iterations"] - 1), rng.uniform(*AFTER_STEP)
            moment = {"after_step": step, "delay": round(delay, 3)}
            killed = kill_after_step(train_args(s, run), run, step, delay)
        checked = check_visible(run) if run.exists() else 0

        resumed = RunFolder(run).has_checkpoint()
        assert cli(["train", "--resume", str(run), "--quiet"] if resumed else train_args(s, run)) == 0
        same_checkpoint(run, s.reference)
        shutil.rmtree(run)
    elif kind == "prepare":
        args, ref_files = prepare_setup(s)
        out = s.work / f"t{n}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = ["prepare", args[0], "--out", str(out), *args[1:]]
        killed, _ = kill_at(cmd, delay)
        checked = len(tree_files(out)) if out.exists() else 0  # the folder appears whole (atomic rename) or not at all
        if out.exists():
            check_visible(out)
        else:
            assert cli(cmd) == 0
        assert tree_files(out) == ref_files, "the prepared scene differs from the uninterrupted one"
        resumed = False
        shutil.rmtree(out)
        for tmp in s.work.glob(f".t{n}*"):  # a killed prepare leaves its hidden temporary folder
            shutil.rmtree(tmp, ignore_errors=True)
    elif kind == "batch":
        spec, ref = batch_setup(s)
        out = s.work / f"t{n}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = ["batch", str(spec), "--out", str(out)]
        # Ray's processes outlive a SIGKILLed driver: its raylet and GCS die with it, but its dashboard agent and
        # runtime-env agent, seeing the raylet gone, try to report that to the dead GCS, and Ray gives that call a
        # fixed 60 s timeout (ray._private.utils.publish_error_to_driver, Ray 2.60); they must be gone within the
        # grace, and how long they lingered is reported
        killed, outlived = kill_at(cmd, delay, cwd=s.work, orphans_grace=ORPHANS_GRACE)
        moment["orphans_s"] = round(outlived, 1)
        checked = check_visible(out) if out.exists() else 0
        resumed = any(out.glob(f"*/{CHECKPOINT_FILE}"))
        r = subprocess.run([sys.executable, "-m", "endogs", *cmd], capture_output=True, text=True, env=_env(), cwd=s.work,
                           timeout=START_TIMEOUT)
        assert r.returncode == 0, r.stderr[-2000:]
        assert batch_result(out) == ref, "the batch's pair differs from the uninterrupted batch"
        check_visible(out)
        shutil.rmtree(out)
    else:
        run = s.work / f"t{n}"
        shutil.rmtree(run, ignore_errors=True)
        shutil.copytree(s.reference, run, ignore=shutil.ignore_patterns("eval_*", "export"))
        args = ["eval", str(run), *EVAL_FLAGS] if kind == "eval" else ["export", str(run), *EXPORT_FLAGS]
        killed, _ = kill_at(args, delay)
        checked = check_visible(run)
        resumed = False
        assert cli(args) == 0
        if kind == "eval":
            got = json.loads(RunFolder(run).metrics_file("test").read_text())
            assert got["metrics"] == s.ref_metrics["metrics"], "metrics differ from the uninterrupted evaluation"
        else:
            assert export_files(RunFolder(run).export_dir) == s.ref_export, "exported files differ from the uninterrupted export"
        check_visible(run)
        shutil.rmtree(run)
    return {"kind": kind, **moment, "killed": killed, "files_checked": checked, "resumed": resumed}


def run_trials(work: Path, trials: int, seed: int,
               kinds: tuple[str, ...] = ("train", "train", "eval", "export", "train", "prepare", "train", "eval", "export", "batch"),
               log: Optional[callable] = None) -> list[dict]:
    s = setup(work)
    rng = random.Random(seed)
    out = []
    for n in range(trials):
        r = trial(s, kinds[n % len(kinds)], n, rng)
        out.append(r)
        if log:
            log(r)
    return out


def summary(results: list[dict]) -> str:
    by = Counter(r["kind"] for r in results)
    killed = Counter(r["kind"] for r in results if r["killed"])
    resumed = sum(r["resumed"] for r in results)
    parts = [f"{k} {by[k]} ({killed[k]} killed)" for k in sorted(by)]
    return f"{len(results)} trials, 0 failed: " + ", ".join(parts) + f"; {resumed} train reruns resumed from a checkpoint"


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--work", type=Path, default=Path("/tmp/endogs-kill"))
    a = ap.parse_args(argv)
    t0 = time.perf_counter()
    results = run_trials(a.work, a.trials, a.seed, log=lambda r: print(json.dumps(r), flush=True))
    print(f"{summary(results)}; {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
