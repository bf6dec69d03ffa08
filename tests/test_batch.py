"""endogs batch on a local Ray instance (2 CPUs): a sweep equals the single commands, a killed worker
resumes from its checkpoint, a broken input fails alone, a rerun does no work, the SPEC is validated."""

from __future__ import annotations

import csv
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from endogs.batch.cli import batch
from endogs.batch.spec import plan_batch
from endogs.cli import main
from endogs.eval.cli import eval_run

COMMANDS = {"batch": batch}
# A preset that trains in a few seconds on 48x40 frames: 300 Gaussians, 30 steps, a checkpoint every
# 10 steps (the killed worker dies after the one of step 10), a tiny HexPlane, no densification.
TINY_PRESET = {
    "iterations": 30, "coarse_iterations": 5, "log_every": 5, "checkpoint_every": 10, "sh_degree": 0,
    "strategy": {"enabled": False}, "init": {"max_points": 300, "num_frames": 4, "remove_outliers": False},
    "deform": {"spatial_resolutions": [8], "feature_dim": 8, "hidden_dim": 16},
}
EVAL = {"images": False, "video": False, "fps_min_time": 0.0, "fps_warmup": 0}
QUALITY = ("psnr", "psnr_legacy", "ssim", "ssim_masked")


def run_cli(*args, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "endogs", *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          timeout=400, env={**os.environ, **(env or {})})


def write_yaml(path: Path, obj) -> Path:
    path.write_text(yaml.safe_dump(obj, sort_keys=False))
    return path


def csv_rows(path: Path) -> list[dict]:
    return list(csv.DictReader(path.open()))


def states(stderr: str) -> dict[str, list[str]]:
    """pair -> the states its progress lines went through."""
    out: dict[str, list[str]] = {}
    for line in stderr.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in ("queued", "running", "retry", "done", "failed", "skipped") and "__" in parts[1]:
            out.setdefault(parts[1], []).append(parts[0])
    return out


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """Three tiny synthetic scenes and the tiny preset, in a folder the batch runs from (relative paths)."""
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene

    root = tmp_path_factory.mktemp("batch")
    for seed in range(3):
        write_synthetic_scene(root / "scenes" / f"syn{seed}", config=SyntheticConfig(width=48, height=40, n_frames=10, seed=seed))
    write_yaml(root / "tiny.yaml", TINY_PRESET)
    return root


def sweep_spec(work: Path, name: str = "sweep.yaml", **changes) -> Path:
    spec = {
        "name": "sweep", "output": "out", "overrides": {"device": "cpu"}, "eval": EVAL,
        "inputs": [{"scene": "scenes/syn*"}],
        "configs": [{"name": "hex", "preset": "tiny.yaml"},
                    {"name": "basis", "preset": "tiny.yaml", "overrides": {"deform": {"kind": "basis"}}}],
        **changes,
    }
    return write_yaml(work / name, spec)


@pytest.fixture(scope="module")
def sweep(work):
    spec = sweep_spec(work)
    r = run_cli("batch", spec.name, cwd=work)
    return spec, r


@pytest.fixture
def one_thread():
    """torch on one thread, as in the batch's tasks (cpus_per_task 1); two threads on a busy 2-core machine
    are several times slower for these tiny scenes."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_sweep_matches_the_single_commands(work, sweep, tmp_path, one_thread):
    spec, r = sweep
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    out = work / "out"
    assert r.stdout.strip().splitlines()[-1] == f"report: {out / 'table.md'}"
    pairs = [f"syn{i}__{c}" for i in range(3) for c in ("hex", "basis")]
    seen = states(r.stderr)
    assert set(seen) == set(pairs)
    for p in pairs:
        assert seen[p] == ["queued", "running", "done"], (p, seen[p])
    assert "local Ray instance (127.0.0.1)" in r.stderr
    rows = csv_rows(out / "table.csv")
    measured = {(row["scene"], row["method"]): row for row in rows if row["source"] == "measured here"}
    assert len(measured) == 6 and sum(row["source"] == "baseline, measured here" for row in rows) == 9
    md = (out / "table.md").read_text()
    assert md.startswith("# Batch: sweep") and "| syn2 | endogs (basis) | measured here |" in md

    # the same pairs one by one: endogs train (preset file + the flags of the overrides), endogs eval
    for p in pairs:
        scene, config = p.split("__")
        ref = tmp_path / p
        extra = ["--deform.kind", "basis"] if config == "basis" else []
        assert main(["train", str(work / "scenes" / scene), "--preset", str(work / "tiny.yaml"), "--device", "cpu",
                     "--output", str(ref), "--quiet", *extra]) == 0
        assert main(["eval", str(ref), "--no-images", "--no-video", "--fps-min-time", "0", "--quiet"],
                    commands={"eval": eval_run}) == 0
        single = json.loads((ref / "eval_test" / "metrics.json").read_text())
        batched = json.loads((out / p / "eval_test" / "metrics.json").read_text())
        row = measured[(scene, f"endogs ({config})")]
        for k in QUALITY:
            assert batched["metrics"]["model"][k] == pytest.approx(single["metrics"]["model"][k], abs=1e-6), (p, k)
            assert float(row[k]) == pytest.approx(single["metrics"]["model"][k], abs=1e-5), (p, k)
        assert int(row["num_gaussians"]) == single["timing"]["training"]["num_gaussians"]
        # same resolved training config as the single command
        assert yaml.safe_load((out / p / "run.yaml").read_text())["config"] == yaml.safe_load((ref / "run.yaml").read_text())["config"]
        done = json.loads((out / p / "done.json").read_text())
        assert done["pair"] == p and done["attempt"] == 1 and done["train"] == "trained"


@pytest.mark.slow
def test_second_run_does_no_work(work, sweep):
    spec, first = sweep
    assert first.returncode == 0, first.stderr
    out = work / "out"
    before = {p: (p / "checkpoint.pt").stat().st_mtime_ns for p in out.glob("syn*__*")}
    logs = {p: (p / "log.jsonl").read_text() for p in out.glob("syn*__*")}
    table = csv_rows(out / "table.csv")
    r = run_cli("batch", spec.name, cwd=work)
    assert r.returncode == 0, r.stderr
    seen = states(r.stderr)
    assert len(seen) == 6 and all(v == ["skipped"] for v in seen.values()), r.stderr
    assert "Ray" not in r.stderr  # nothing to run: Ray is not even started
    assert {p: (p / "checkpoint.pt").stat().st_mtime_ns for p in out.glob("syn*__*")} == before
    assert {p: (p / "log.jsonl").read_text() for p in out.glob("syn*__*")} == logs
    assert csv_rows(out / "table.csv") == table

    # a changed config for an existing pair is refused before any work, naming the key
    changed = sweep_spec(work, "changed.yaml", overrides={"device": "cpu", "iterations": 31})
    r = run_cli("batch", changed.name, cwd=work)
    assert r.returncode == 2, r.stderr
    err = r.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("endogs: error: ") and "iterations" in err[0] and "syn0__hex" in err[0]


@pytest.fixture(scope="module")
def faulty(work):
    """syn0 (whose hex worker is killed once after its first checkpoint), a corrupt copy of it and a stereo
    video, x two identical configs."""
    from endogs.data.synthetic import SyntheticConfig, generate
    from endogs.video.synthetic_stereo import write_stereo_video

    bad = work / "broken" / "bad"
    shutil.copytree(work / "scenes" / "syn0", bad)
    frame = sorted((bad / "images").iterdir())[3]
    frame.write_bytes(b"not an image")
    video = write_stereo_video(generate(SyntheticConfig(width=160, height=128, n_frames=4, camera="moving", seed=5)),
                               work / "rec", layout="side-by-side")
    spec = write_yaml(work / "faulty.yaml", {
        "name": "faulty", "output": "out_faulty", "max_retries": 1, "overrides": {"device": "cpu"}, "eval": EVAL,
        "inputs": [{"scene": "scenes/syn0"}, {"scene": "broken/bad"},
                   {"video": str(video.inputs[0].relative_to(work)), "name": "vid", "prepare": {"poses": "identity"}}],
        "configs": [{"name": "hex", "preset": "tiny.yaml"}, {"name": "same", "preset": "tiny.yaml"}],
    })
    r = run_cli("batch", spec.name, cwd=work, env={"ENDOGS_BATCH_TEST_KILL": "syn0__hex"})
    return work / "out_faulty", r, frame


@pytest.mark.slow
def test_killed_worker_is_retried_and_resumes_from_its_checkpoint(faulty):
    out, r, _ = faulty
    seen = states(r.stderr)
    assert seen["syn0__hex"] == ["queued", "running", "retry", "running", "done"], r.stderr
    retry = [ln for ln in r.stderr.splitlines() if ln.startswith("retry")][0]
    assert "WorkerCrashedError" in retry and "resuming from its last checkpoint" in retry
    log = [json.loads(x) for x in (out / "syn0__hex" / "log.jsonl").read_text().splitlines()]
    resumes = [x for x in log if x.get("event") == "resume"]
    assert len(resumes) == 1 and resumes[0]["step"] == 10
    assert log[-1]["event"] == "done" and log[-1]["step"] == 30
    task_log = (out / "syn0__hex" / "task.log").read_text()
    assert "== attempt 1" in task_log and "test hook: killing worker process" in task_log and "== attempt 2" in task_log
    done = json.loads((out / "syn0__hex" / "done.json").read_text())
    assert done["attempt"] == 2 and done["train"] == "resumed"
    # resuming reaches the result of the uninterrupted identical config
    same = json.loads((out / "syn0__same" / "done.json").read_text())
    assert same["attempt"] == 1 and same["train"] == "trained"
    for k in QUALITY:
        assert done["metrics"][k] == pytest.approx(same["metrics"][k], abs=1e-6), k


@pytest.mark.slow
def test_broken_input_fails_alone(faulty):
    out, r, frame = faulty
    assert r.returncode == 1, r.stderr  # documented: 1 when some pair failed
    assert "Traceback" not in r.stderr
    seen = states(r.stderr)
    for p in ("bad__hex", "bad__same"):
        assert seen[p] == ["queued", "running", "failed"], (p, seen[p])  # a corrupt input is not retried
    for p in ("syn0__same", "vid__hex", "vid__same"):
        assert seen[p][-1] == "done", (p, seen[p])
    failed = [ln for ln in r.stderr.splitlines() if ln.startswith("failed")]
    assert len(failed) == 2 and all(str(frame) in ln and str(frame.parents[1]) in ln for ln in failed)
    assert all("config hex" in ln or "config same" in ln for ln in failed)
    rows = csv_rows(out / "table.csv")
    bad = [row for row in rows if row["scene"] == "bad"]
    assert [row["source"] for row in bad] == ["failed", "failed"] and all("corrupt" in row["note"] for row in bad)
    assert bad[0]["psnr"] == ""
    assert sum(row["source"] == "measured here" for row in rows) == 4
    assert "## Failed pairs" in (out / "table.md").read_text()
    assert "failed: bad / hex" in r.stdout and "failed: bad / same" in r.stdout
    states_json = {p["pair"]: p["state"] for p in json.loads((out / "batch.json").read_text())["pairs"]}
    assert states_json == {"syn0__hex": "done", "syn0__same": "done", "bad__hex": "failed", "bad__same": "failed",
                           "vid__hex": "done", "vid__same": "done"}
    # the video was prepared once, by one pair, into OUTPUT/scenes/vid; the other pair waited and reused it
    assert (out / "scenes" / "vid" / "poses_bounds.npy").is_file() and (out / "scenes" / "vid.prepare.json").is_file()
    prepared = [json.loads((out / p / "done.json").read_text())["prepare"] for p in ("vid__hex", "vid__same")]
    assert sorted(prepared) == ["prepared", "reused"]


def test_spec_errors_are_one_line_exit_2(work, tmp_path, capsys):
    def check(spec: dict, *needles: str) -> None:
        path = write_yaml(tmp_path / "spec.yaml", spec)
        assert main(["batch", str(path), "--out", str(tmp_path / "out")], commands=COMMANDS) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("endogs: error: ") and str(path) in err[0], err
        for n in needles:
            assert n in err[0], (n, err[0])

    scene = str(work / "scenes" / "syn0")
    ok = {"inputs": [{"scene": scene}]}
    check({**ok, "colour": 1}, "unknown key", "colour")
    check({"inputs": [{"scene": scene, "colour": 1}]}, "inputs[0]", "colour")
    check({"inputs": [{"scene": str(tmp_path / "missing")}]}, "inputs[0]", str(tmp_path / "missing"), "fix")
    check({"inputs": [{"scene": str(tmp_path / "nothing*")}]}, "matches no folder", "fix the pattern")
    check({"inputs": [{"video": str(tmp_path / "missing.mp4")}]}, "no such video", "fix")
    check({"inputs": [{"scene": scene, "video": scene}]}, "exactly one of")
    check({"inputs": []}, "non-empty 'inputs'")
    check({**ok, "configs": [{"name": "a", "overrides": {"deform": {"knd": "mlp"}}}]}, "knd")
    check({**ok, "configs": [{"name": "a", "preset": "nope"}]}, "unknown preset")
    check({**ok, "configs": [{"name": "a"}, {"name": "a"}]}, "unique")
    check({"inputs": [{"scene": scene}, {"scene": scene}]}, "both named 'syn0'")
    check({"inputs": [{"scene": scene, "prepare": {"poses": "identity"}}]}, "videos only")
    check({**ok, "eval": {"split": "tests"}}, "split")
    check({**ok, "max_retries": -1}, "max_retries")
    assert not (tmp_path / "out").exists()  # nothing was written


def test_plan_names_pairs_and_merges_overrides(work):
    spec = write_yaml(work / "plan.yaml", {
        "overrides": {"iterations": 7, "seed": 3}, "output": "plan_out",
        "inputs": [{"scene": "scenes/syn[01]", "overrides": {"seed": 4}}, {"scene": "scenes/syn2", "name": "two"}],
        "configs": [{"preset": "tiny.yaml", "overrides": {"iterations": 9}}, {"name": "mlp", "overrides": {"deform": {"kind": "mlp"}}}],
    })
    cwd = os.getcwd()
    os.chdir(work)
    try:
        plan = plan_batch(spec.name)
    finally:
        os.chdir(cwd)
    assert plan.name == "plan" and plan.out_dir == (work / "plan_out").resolve()
    assert [p.key for p in plan.pairs] == ["syn0__tiny", "syn0__mlp", "syn1__tiny", "syn1__mlp", "two__tiny", "two__mlp"]
    by = {p.key: p for p in plan.pairs}
    assert by["syn0__tiny"].config.iterations == 9 and by["syn0__tiny"].config.seed == 4  # config > input > SPEC
    assert by["two__mlp"].config.iterations == 7 and by["two__mlp"].config.seed == 3 and by["two__mlp"].config.deform.kind == "mlp"
    assert by["two__tiny"].input.data == (work / "scenes" / "syn2").resolve()
    assert by["syn1__mlp"].run_dir == plan.out_dir / "syn1__mlp"
    assert all(p.finished is None for p in plan.pairs)


def test_without_ray_asks_for_the_extra(work, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    spec = write_yaml(tmp_path / "spec.yaml", {"inputs": [{"scene": str(work / "scenes" / "syn0")}]})
    assert main(["batch", str(spec), "--out", str(tmp_path / "out")], commands=COMMANDS) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "endogs[cluster]" in err[0]


def test_one_batch_per_output_folder(tmp_path):
    from endogs.batch.runner import output_lock
    from endogs.batch.task import STAMP_FILE
    from endogs.errors import ConfigError

    with output_lock(tmp_path) as stamp:
        assert (tmp_path / STAMP_FILE).read_text() == stamp and json.loads(stamp)["pid"] == os.getpid()
        with pytest.raises(ConfigError, match=f"pid {os.getpid()}"):
            with output_lock(tmp_path):
                pass
    assert not (tmp_path / STAMP_FILE).exists()
    # a lock left by a killed batch on this machine is taken over
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True).stdout
    (tmp_path / STAMP_FILE).write_text(json.dumps({"id": "x", "host": socket.gethostname(), "pid": int(dead)}))
    with output_lock(tmp_path) as stamp:
        assert json.loads(stamp)["id"] != "x"
