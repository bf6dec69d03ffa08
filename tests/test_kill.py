"""kill -9 at seeded random moments of ``endogs train``, ``eval``, ``export``, ``prepare`` and ``batch`` (real
processes): no file is ever half-written under its final name, and rerunning (train: ``--resume``) gives the
result of an uninterrupted run - bit-identical parameters, equal metrics, byte-identical exports and
prepared scenes, the batch's pair with the same parameters and metrics.
``scripts/kill_trials.py --trials N`` runs more of the same trials."""

from __future__ import annotations

import random

import pytest

from scripts import kill_trials as kt


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return kt.setup(tmp_path_factory.mktemp("kill"))


def test_check_visible_catches_a_half_written_file(setup, tmp_path):
    """The checker the trials rely on fails on a cut checkpoint, a cut metrics.json and a cut PNG."""
    import shutil

    from endogs.errors import DataError

    run = tmp_path / "run"
    shutil.copytree(setup.reference, run)
    assert kt.check_visible(run) >= 5
    ckpt = run / "checkpoint.pt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])
    with pytest.raises(DataError, match="checkpoint is corrupt"):
        kt.check_visible(run)
    shutil.copy(setup.reference / "checkpoint.pt", ckpt)
    metrics = run / "eval_test" / "metrics.json"
    metrics.write_text(metrics.read_text()[:40])
    with pytest.raises(ValueError):
        kt.check_visible(run)
    shutil.copy(setup.reference / "eval_test" / "metrics.json", metrics)
    png = next((run / "export").rglob("*.png"))
    png.write_bytes(png.read_bytes()[:30])
    with pytest.raises(AssertionError):
        kt.check_visible(run)
    (png.parent / f".{png.stem}.tmp-1{png.suffix}").write_bytes(b"half")  # a temporary name is not final
    shutil.copy(setup.reference / "export" / png.relative_to(run / "export"), png)
    kt.check_visible(run)


@pytest.mark.parametrize("kind,trials", [("train", 8), ("eval", 6), ("export", 6), ("prepare", 3), ("batch", 2)])
def test_kill_9_then_rerun_equals_an_uninterrupted_run(setup, kind, trials):
    rng = random.Random(f"kill-{kind}")
    results = [kt.trial(setup, kind, n, rng) for n in range(trials)]
    assert all(r["kind"] == kind for r in results)
    assert sum(r["killed"] for r in results) >= max(1, trials // 2), results  # most trials are really cut short
    if kind == "train":
        assert any(r["resumed"] for r in results), results  # some resumed from a checkpoint of the killed run
