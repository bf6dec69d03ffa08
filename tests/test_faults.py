"""Faults while training and writing: non-finite steps (skipped, counted, then a stop) and a full disk
(ENOSPC) while writing a checkpoint, a report or a prepared scene."""

from __future__ import annotations

import builtins
import errno
import io
import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from endogs.cli import main
from endogs.eval.cli import eval_run
from endogs.run import RunFolder
from endogs.train import TrainConfig, Trainer
from endogs.train.terms import LOSS_TERMS, register_loss
from endogs.config_io import merge
from test_eval import TINY, make_scene

NAN_STEPS: set[int] = set()  # the steps at which the probe term is NaN


@pytest.fixture
def nan_probe():
    @register_loss("nan_probe")
    def probe(x):
        return x.rgb.sum() * (math.nan if x.step in NAN_STEPS else 0.0)

    yield NAN_STEPS
    NAN_STEPS.clear()
    LOSS_TERMS.pop("nan_probe")


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(tmp_path_factory.mktemp("faults") / "scene")


def tiny(**over) -> TrainConfig:
    return merge(merge(TrainConfig(), TINY), over)


def params(tr: Trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in tr.scene.state_dict().items()}


def one_line(err: str, *needles: str) -> str:
    """The error is the last line of stderr (``endogs train`` prints its start line first), the only one."""
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("training ")]
    assert len(lines) == 1 and lines[0].startswith("endogs: error: ") and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def test_a_nan_loss_step_is_skipped_and_counted(scene, tmp_path, nan_probe):
    nan_probe.add(3)
    snaps = {}
    tr = Trainer.create(tiny(iterations=6, loss={"terms": {"nan_probe": 1.0}}), scene, tmp_path / "run")
    tr.train(progress=False, on_step=lambda t, terms: snaps.__setitem__(t.step, (params(t), terms)))
    before, after = snaps[3][0], snaps[4][0]  # step index 3 ran between these
    assert all(torch.equal(before[k], after[k]) for k in before)  # no optimizer step on NaN
    assert not all(torch.equal(snaps[2][0][k], before[k]) for k in before)  # ordinary steps do move
    assert math.isnan(snaps[4][1]["loss"]) and snaps[4][1]["skipped_nonfinite"] == 1 and snaps[3][1]["skipped_nonfinite"] == 0
    log = RunFolder(tmp_path / "run").read_log()
    steps = {r["step"]: r for r in log if "skipped_nonfinite" in r}
    assert steps[3]["skipped_nonfinite"] == 0 and steps[4]["skipped_nonfinite"] == 1 and steps[6]["skipped_nonfinite"] == 1
    assert log[-1]["event"] == "done"
    ckpt = RunFolder(tmp_path / "run").load_checkpoint()
    assert ckpt["done"] and ckpt["skipped_nonfinite"] == 1
    adam = ckpt["optimizers"]["gaussians"]["means"]["state"][0]["step"]
    assert float(adam) == 5  # six steps, one skipped


def test_consecutive_nan_losses_stop_with_one_line_and_keep_the_checkpoint(scene, tmp_path, nan_probe, capsys):
    nan_probe.update(range(5, 100))
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({**TINY, "iterations": 20, "checkpoint_every": 2, "max_nonfinite_steps": 3}))
    run = tmp_path / "run"
    assert main(["train", str(scene), "--preset", str(preset), "--output", str(run), "--quiet",
                 "--loss.terms", "nan_probe", "1.0"]) == 2
    line = one_line(capsys.readouterr().err, str(run / "checkpoint.pt"), "3 steps in a row (to step 8)", "--resume")
    assert "non-finite" in line
    ckpt = RunFolder(run).load_checkpoint()
    assert ckpt["step"] == 6 and not ckpt["done"]  # the checkpoint of step 6; steps 5-7 were skipped, none saved after
    assert all(torch.isfinite(v).all() for v in ckpt["scene"]["state_dict"].values() if v.is_floating_point())
    log = RunFolder(run).read_log()
    assert log[-1] == {"event": "nonfinite_stop", "step": 8, "skipped_nonfinite": 3}
    assert RunFolder(run).open(device="cpu").step == 6  # loadable for eval / export / view


def test_a_nan_parameter_withholds_checkpoints_and_stops(scene, tmp_path):
    run = tmp_path / "run"
    tr = Trainer.create(tiny(iterations=30, checkpoint_every=1, max_nonfinite_steps=4), scene, run)

    def poison(t, terms):
        if t.step == 4:
            with torch.no_grad():
                t.scene.params["means"][0, 0] = math.nan

    with pytest.raises(Exception) as exc:
        tr.train(progress=False, on_step=poison)
    assert type(exc.value).__name__ == "TrainingDiverged" and "4 steps in a row (to step 8)" in str(exc.value)
    ckpt = RunFolder(run).load_checkpoint()
    assert ckpt["step"] == 3  # step 4's save found a NaN parameter and kept the step-3 file
    assert all(torch.isfinite(v).all() for v in ckpt["scene"]["state_dict"].values() if v.is_floating_point())
    resumed = Trainer.resume(run)  # the kept checkpoint resumes
    assert resumed.step == 3 and resumed.params_finite()


def test_max_nonfinite_steps_must_be_positive():
    from endogs.errors import ConfigError

    with pytest.raises(ConfigError, match="max_nonfinite_steps must be >= 1, got 0"):
        TrainConfig(max_nonfinite_steps=0)


# ---------------------------------------------------------------------------------------------- disk full
class FullDisk:
    """Every file opened for writing under a temporary name (``.NAME.tmp-PID...``) takes ``room``
    bytes, then its writes fail with ENOSPC - what a file system that fills up does."""

    def __init__(self, monkeypatch, room: int = 100):
        self.room, self.hits = room, []
        real = builtins.open

        def fake_open(file, mode="r", *a, **kw):
            f = real(file, mode, *a, **kw)
            name = str(file) if isinstance(file, (str, Path)) else ""
            if any(c in mode for c in "wax") and ".tmp-" in name:  # a temporary file, or one in a temporary folder
                self.hits.append(Path(name).name)
                return self._limit(f)
            return f

        monkeypatch.setattr(builtins, "open", fake_open)
        monkeypatch.setattr(io, "open", fake_open)

    def _limit(self, f):
        room = [self.room]
        write = f.write

        def limited(data):
            if len(data) > room[0]:
                write(data[: room[0]])
                room[0] = 0
                raise OSError(errno.ENOSPC, "No space left on device")
            room[0] -= len(data)
            return write(data)

        f.write = limited
        return f


def no_temporaries(folder: Path) -> None:
    left = [p for p in folder.rglob("*") if ".tmp-" in p.name]
    assert not left, left


@pytest.fixture(scope="module")
def trained(scene, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    Trainer.create(tiny(iterations=4, checkpoint_every=2), scene, run).train(progress=False)
    return run


def test_disk_full_while_writing_a_checkpoint(scene, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    preset = tmp_path / "p.yaml"
    preset.write_text(yaml.safe_dump({**TINY, "iterations": 6, "checkpoint_every": 2}))
    tr = Trainer.create(tiny(iterations=6, checkpoint_every=2), scene, run)
    tr.train(progress=False, stop_at=2)
    good = RunFolder(run).load_checkpoint()
    disk = FullDisk(monkeypatch, room=2000)
    assert main(["train", "--resume", str(run), "--quiet"]) == 2
    one_line(capsys.readouterr().err, str(run / "checkpoint.pt"), "no space left on the device", "free some space")
    assert disk.hits and all(h.startswith(".checkpoint.tmp-") for h in disk.hits)
    monkeypatch.undo()
    kept = RunFolder(run).load_checkpoint()
    assert kept["step"] == good["step"] == 2
    assert all(torch.equal(kept["scene"]["state_dict"][k], good["scene"]["state_dict"][k]) for k in good["scene"]["state_dict"])
    no_temporaries(run)
    assert main(["train", "--resume", str(run), "--quiet"]) == 0  # space again: the run finishes
    assert RunFolder(run).load_checkpoint()["done"]


def test_disk_full_while_writing_a_report(trained, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ev"
    args = ["eval", str(trained), "--output", str(out), "--no-images", "--no-video", "--no-plots", "--fps-min-time", "0", "--quiet"]
    assert main(args, commands={"eval": eval_run}) == 0
    first = json.loads((out / "metrics.json").read_text())
    capsys.readouterr()
    FullDisk(monkeypatch, room=50)
    assert main(args, commands={"eval": eval_run}) == 2
    line = one_line(capsys.readouterr().err, "no space left on the device")
    assert str(out) in line
    monkeypatch.undo()
    assert json.loads((out / "metrics.json").read_text()) == first  # the previous report is intact
    no_temporaries(out)


def test_disk_full_while_writing_a_prepared_scene(tmp_path, monkeypatch, capsys):
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene

    root = tmp_path / "scene"
    FullDisk(monkeypatch, room=10)
    with pytest.raises(Exception) as exc:
        write_synthetic_scene(root, config=SyntheticConfig(width=48, height=40, n_frames=4))
    monkeypatch.undo()
    assert type(exc.value).__name__ == "DiskFullError" and str(exc.value).startswith(f"{root.absolute()}: no space left")
    assert not root.exists() and not list(tmp_path.iterdir())  # nothing under the final name, no temporary folder


def test_the_finite_check_is_exact_when_a_sum_overflows(scene, tmp_path):
    tr = Trainer.create(tiny(iterations=4), scene, tmp_path / "run")
    ps = [p for p in tr._optimized() if p.numel() > 1]
    for p in tr._optimized():
        p.grad = torch.zeros_like(p)
    ps[0].grad.fill_(3e38)  # every element finite, their float32 sum is inf
    assert torch.isinf(ps[0].grad.sum())
    assert tr._finite(torch.tensor(1.0))
    for bad in (math.nan, math.inf, -math.inf):
        ps[-1].grad.view(-1)[-1] = bad
        assert not tr._finite(torch.tensor(1.0)), bad
        ps[-1].grad.view(-1)[-1] = 0.0
    assert not tr._finite(torch.tensor(math.nan))
    assert tr._finite(torch.tensor(1.0))
