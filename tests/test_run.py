"""endogs.run: the run folder's files, checkpoints, and open()'s one-line errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import yaml

from endogs.cli import main
from endogs.errors import ConfigError, DataError, EndogsError
from endogs.run import CHECKPOINT_VERSION, RunFolder, load_run
from test_eval import make_scene, train_tiny


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    scene = make_scene(root / "scene", n_frames=6)
    return scene, train_tiny(scene, root / "run")


def copy_run(run: Path, dst: Path) -> RunFolder:
    shutil.copytree(run, dst)
    return RunFolder(dst)


def one_line(exc: EndogsError, path: Path, *needles: str) -> str:
    msg = str(exc)
    assert "\n" not in msg and msg.startswith(f"{path}: "), msg
    for n in needles:
        assert n in msg, (n, msg)
    return msg


def test_open_loads_the_trained_model(trained):
    scene, run = trained
    r = RunFolder(run).open("cpu", need_data=True)
    assert r.step == 4 and r.done and r.device.type == "cpu" and not r.scene.training
    assert r.data_path == scene.resolve() and len(r.dataset) == 6 and r.config.iterations == 4
    assert [x.get("event") for x in r.log()][:1] == ["init"] and r.log()[-1]["event"] == "done"
    assert load_run(run, "cpu").scene.num_gaussians == r.scene.num_gaussians


def test_file_names_are_the_folder_s(tmp_path):
    f = RunFolder(tmp_path / "r")
    assert [p.name for p in (f.run_file, f.log_file, f.checkpoint_file, f.done_file, f.task_log, f.export_dir)] == \
        ["run.yaml", "log.jsonl", "checkpoint.pt", "done.json", "task.log", "export"]
    assert f.metrics_file("test") == tmp_path / "r" / "eval_test" / "metrics.json"


def test_checkpoint_round_trip_is_versioned_and_atomic(tmp_path):
    f = RunFolder(tmp_path / "r")
    f.path.mkdir()
    state = {"step": 3, "x": torch.arange(5.0)}
    f.save_checkpoint(state)
    assert sorted(p.name for p in f.path.iterdir()) == ["checkpoint.pt"]  # no temporary file left
    back = f.load_checkpoint()
    assert back["version"] == CHECKPOINT_VERSION and back["step"] == 3 and torch.equal(back["x"], state["x"])
    assert list(torch.load(f.checkpoint_file, weights_only=True)) == ["version", "step", "x"]


def test_log_append_read_and_an_interrupted_last_line(tmp_path):
    f = RunFolder(tmp_path / "r")
    f.start_log()
    f.append_log({"step": 1})
    f.append_log({"event": "done"})
    assert f.read_log() == [{"step": 1}, {"event": "done"}] and f.finished()
    with open(f.log_file, "a") as fh:
        fh.write('{"step": 2, "lo')  # killed mid-write
    assert f.read_log() == [{"step": 1}, {"event": "done"}]
    f.log_file.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(DataError) as e:
        f.read_log()
    one_line(e.value, f.log_file, "line 2 of log.jsonl is not JSON")


def test_every_failure_of_open_is_one_line(trained, tmp_path):
    scene, run = trained

    def fails(folder, path, *needles, exc=DataError, **kw):
        with pytest.raises(exc) as e:
            RunFolder(folder).open("cpu", **kw)
        return one_line(e.value, path, *needles)

    fails(tmp_path / "nope", tmp_path / "nope", "no such run folder", "endogs train")
    (tmp_path / "file").write_text("x")
    fails(tmp_path / "file", tmp_path / "file", "expected a run folder", "got a file")
    (tmp_path / "empty").mkdir()
    fails(tmp_path / "empty", tmp_path / "empty", "not an endogs run folder (no run.yaml)")

    f = copy_run(run, tmp_path / "yaml")
    f.run_file.write_text("data: [unclosed\n")
    fails(f.path, f.run_file, "not valid YAML")
    f.run_file.write_text("data: x\n")
    fails(f.path, f.run_file, "lacks 'data' or 'config'")
    raw = yaml.safe_load((run / "run.yaml").read_text())
    raw["config"]["no_such_option"] = 1
    f.run_file.write_text(yaml.safe_dump(raw))
    fails(f.path, f.run_file, "does not match this endogs", "no_such_option", "retrain")

    f = copy_run(run, tmp_path / "ckpt")
    f.checkpoint_file.unlink()
    fails(f.path, f.path, "no checkpoint.pt", "--resume")
    f.checkpoint_file.write_bytes(b"not a checkpoint")
    fails(f.path, f.checkpoint_file, "corrupt")
    torch.save([1, 2], f.checkpoint_file)
    fails(f.path, f.checkpoint_file, "not an endogs checkpoint")
    torch.save({"version": 99, "scene": {}}, f.checkpoint_file)
    fails(f.path, f.checkpoint_file, "format version 99", f"reads version {CHECKPOINT_VERSION}", "retrain")
    ck = torch.load(run / "checkpoint.pt", weights_only=True)
    del ck["scene"]
    torch.save(ck, f.checkpoint_file)
    fails(f.path, f.checkpoint_file, "incompatible", "'scene'")

    f = copy_run(run, tmp_path / "log")
    f.log_file.write_text("garbage\n")
    fails(f.path, f.log_file, "line 1 of log.jsonl")

    f = copy_run(run, tmp_path / "moved")
    raw = yaml.safe_load(f.run_file.read_text())
    raw["data"] = str(tmp_path / "gone")
    f.run_file.write_text(yaml.safe_dump(raw, sort_keys=False))
    fails(f.path, tmp_path / "gone", "scene folder is gone", "--data", need_data=True)
    assert RunFolder(f.path).open("cpu").dataset is None  # the model alone needs no dataset
    assert len(RunFolder(f.path).open("cpu", data=scene, need_data=True).dataset) == 6
    fails(f.path, tmp_path / "elsewhere", "no such scene folder", data=tmp_path / "elsewhere", need_data=True)
    other = make_scene(tmp_path / "other", n_frames=9)
    fails(f.path, other, "has 9 frames but the run was trained on 6", data=other, need_data=True)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_is_one_line(trained):
    with pytest.raises(ConfigError) as e:
        RunFolder(trained[1]).open("cuda")
    assert str(e.value) == "device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto"


def test_the_cli_prints_open_errors_on_one_line(trained, tmp_path, capsys):
    from endogs.export.cli import export

    f = copy_run(trained[1], tmp_path / "r")
    torch.save({"version": 0}, f.checkpoint_file)
    assert main(["export", str(f.path), "--what", "ply"], commands={"export": export}) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"endogs: error: {f.checkpoint_file}: checkpoint format version 0"), err
