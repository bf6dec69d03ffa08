"""endogs.utils.malloc: glibc is told to keep freed blocks (its effect on a training step, page faults
and system time, is measured in docs/BENCHMARKS.md, not here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from endogs.utils import malloc

PROBE = "import sys; from endogs.utils import malloc; print(malloc.keep_freed_memory(), malloc.keep_freed_memory())"


def _probe(env_extra: dict) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "ENDOGS_MALLOC"}
    return subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env={**env, **env_extra}, check=True).stdout.strip()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")
def test_glibc_accepts_both_settings_once_and_default_opts_out():
    assert _probe({}) == "True True"  # applied, and the second call reports the first's result
    assert _probe({"ENDOGS_MALLOC": "default"}) == "False False"


def test_a_cpu_trainer_applies_it(monkeypatch, tmp_path):
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene
    from endogs.train import TrainConfig, Trainer
    from endogs.train import trainer as trainer_mod

    calls = []
    monkeypatch.setattr(trainer_mod, "keep_freed_memory", lambda: calls.append(1) or True)
    scene = write_synthetic_scene(tmp_path / "s", config=SyntheticConfig(width=24, height=16, n_frames=4), overwrite=True)
    Trainer(TrainConfig(device="cpu"), scene, tmp_path / "run")
    assert calls == [1]
