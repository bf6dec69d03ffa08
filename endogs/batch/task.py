"""The work of one (input, config) pair, as it runs inside a Ray worker: prepare (videos) → train → eval.

It goes through the functions of the single commands: :func:`endogs.video.prepare.prepare_scene`
(``endogs prepare``), :class:`endogs.train.Trainer` create/resume/train (``endogs train``, via
:func:`endogs.eval.benchmark.train_or_reuse`) and :func:`endogs.eval.pipeline.evaluate_run`
(``endogs eval``, via :func:`endogs.eval.benchmark.evaluate_or_reuse`). Every step is idempotent, so
a retry continues where the last attempt stopped: a prepared scene is reused, an unfinished run resumes
from its last checkpoint (``endogs train --resume``), a finished one is not retrained, a current
evaluation is read back. After the evaluation the task writes ``done.json`` atomically; its presence
(matching the pair) is what makes a later ``endogs batch`` of the same SPEC skip the pair.

The pair's folder also gets ``task.log``: one block per attempt (host, steps, errors with their
traceback).

Test-only hook: a job with ``kill_after_checkpoint`` set SIGKILLs its own worker process right after
the first checkpoint that attempt writes, to exercise the retry-and-resume path. Only the batch
driver sets it, and only for the first attempt of the pairs named in the environment variable
``ENDOGS_BATCH_TEST_KILL`` (see :mod:`endogs.batch.runner`); it is never set otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from endogs.errors import EndogsError
from endogs.run import RunFolder

STAMP_FILE = ".endogs-batch"  # OUTPUT/.endogs-batch: held by the running driver, checked by every task


@dataclass
class PairJob:
    """Everything a task needs, in plain values (absolute paths: workers do not share the driver's cwd)."""

    key: str
    input_name: str
    config_name: str
    data: str  # the scene folder to train on
    video: Optional[str]  # the video to prepare into ``data`` first, or None
    prepare: Optional[dict[str, Any]]  # PrepareOptions as a dict (videos)
    prepared_marker: Optional[str]  # OUTPUT/scenes/<input>.prepare.json
    prepared_record: Optional[dict[str, Any]]
    run_dir: str
    out_dir: str
    stamp: str  # the content of OUTPUT/.endogs-batch, proves the task sees the driver's output folder
    config: dict[str, Any]  # TrainConfig as a dict
    eval: dict[str, Any]  # EvalSettings as a dict
    eval_record: dict[str, Any]  # what done.json records about the evaluation
    protocol: Optional[str]
    attempt: int
    cpus: float
    kill_after_checkpoint: bool = False  # test only (module docstring)


class SharedStorageError(EndogsError):
    """The task's node does not see the batch's output folder (not shared storage)."""


def _emit(events, *event) -> None:
    if events is not None:
        events.put.remote(event)  # fire and forget: progress reporting never blocks or fails a pair


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def check_shared_output(job: PairJob) -> None:
    stamp = Path(job.out_dir) / STAMP_FILE
    try:
        ok = stamp.read_text() == job.stamp
    except OSError:
        ok = False
    if not ok:
        raise SharedStorageError(f"node {socket.gethostname()} does not see this batch's output folder; put it on storage "
                                 "shared by every node (NFS, ...) and mounted at the same path", job.out_dir)


def ensure_scene(job: PairJob, log: Callable[[str], None]) -> Optional[str]:
    """Prepare the pair's video into its scene folder unless a matching preparation is there; returns
    "prepared", "reused" or None (not a video)."""
    if job.video is None:
        return None
    from endogs.config_io import from_dict
    from endogs.eval import io
    from endogs.video.config import PrepareOptions
    from endogs.video.prepare import prepare_scene

    data, marker = Path(job.data), Path(job.prepared_marker)
    try:
        if data.is_dir() and json.loads(marker.read_text()) == job.prepared_record:
            log(f"scene {data} already prepared from {job.video}")
            return "reused"
    except (OSError, json.JSONDecodeError):
        pass
    opts = from_dict(PrepareOptions, job.prepare, where=f"{job.key} prepare")
    opts = dataclasses.replace(opts, overwrite=data.exists())  # a folder without marker is a preparation cut short
    log(f"preparing {job.video} -> {data}")
    result = prepare_scene(Path(job.video), data, opts, log=log)
    log(result.summary())
    io.write_json(marker, job.prepared_record)
    return "prepared"


def kill_after_first_checkpoint(log: Callable[[str], None]) -> Callable[[Any, dict], None]:
    """Test-only ``on_step`` hook: SIGKILL this process once the attempt's first checkpoint is on disk."""
    first: dict[str, int] = {}

    def on_step(tr, terms) -> None:
        every = tr.cfg.checkpoint_every
        # the trainer calls on_step after a step, then checkpoints when step % every == 0
        ckpt = first.setdefault("step", (tr.step - 1) // every * every + every)
        if tr.step > ckpt:
            log(f"test hook: killing worker process {os.getpid()} at step {tr.step}, after the checkpoint of step {ckpt}")
            os.kill(os.getpid(), signal.SIGKILL)

    return on_step


def run_pair(job: PairJob, events=None) -> dict[str, Any]:
    """Run one attempt of a pair; returns {"ok": True, "report": metrics.json, ...} or {"ok": False,
    "error": one line, "retryable": bool}. User errors (:class:`EndogsError`: a corrupt input, a bad
    option) are final; other exceptions may be retried. A dead worker is seen by the driver."""
    host = socket.gethostname()
    t0 = time.perf_counter()
    _emit(events, "running", job.key, job.attempt, host)
    run_dir = Path(job.run_dir)
    try:
        check_shared_output(job)
        run_dir.mkdir(parents=True, exist_ok=True)
    except SharedStorageError as exc:
        return {"ok": False, "error": str(exc), "retryable": True, "host": host}  # another node may see it
    except OSError as exc:
        return {"ok": False, "error": _one_line(exc), "retryable": True, "host": host}
    with open(RunFolder(run_dir).task_log, "a", buffering=1) as logf:
        def log(s: str) -> None:
            logf.write(s.rstrip("\n") + "\n")

        log(f"== attempt {job.attempt} of {job.key} on {host} (pid {os.getpid()}) at {time.strftime('%Y-%m-%d %H:%M:%S')}")
        try:
            return _run(job, events, host, t0, log)
        except Exception as exc:  # reported to the driver; the traceback stays in task.log
            log(traceback.format_exc())
            return {"ok": False, "error": _one_line(exc) if not isinstance(exc, EndogsError) else str(exc),
                    "retryable": not isinstance(exc, EndogsError), "host": host}


def _run(job: PairJob, events, host: str, t0: float, log: Callable[[str], None]) -> dict[str, Any]:
    import torch

    from endogs.config_io import from_dict, to_dict
    from endogs.eval import io
    from endogs.eval.benchmark import EvalSettings, evaluate_or_reuse, train_or_reuse
    from endogs.train.config import TrainConfig

    torch.set_num_threads(max(1, int(job.cpus)))
    prepared = ensure_scene(job, log)
    if prepared is not None:
        _emit(events, "prepared", job.key, job.attempt, job.input_name)
    cfg = from_dict(TrainConfig, job.config, where=f"{job.key} config")
    run_dir = Path(job.run_dir)
    on_step = kill_after_first_checkpoint(log) if job.kill_after_checkpoint else None
    train_status = train_or_reuse(cfg, Path(job.data), run_dir, True, log, on_step=on_step)
    settings = from_dict(EvalSettings, job.eval, where=f"{job.key} eval")
    report, eval_status = evaluate_or_reuse(run_dir, settings, job.protocol, "auto", True, log)
    folder = RunFolder(run_dir)
    _, resolved = folder.read_config()
    seconds = time.perf_counter() - t0
    done = {
        "pair": job.key, "input": job.input_name, "config_name": job.config_name, "data": job.data,
        "config": to_dict(resolved), "eval": job.eval_record,
        "metrics_file": str(folder.metrics_file(settings.split)),
        "metrics": report["metrics"]["model"], "verdict": report["verdict"],
        "train": train_status, "evaluation": eval_status, "prepare": prepared,
        "attempt": job.attempt, "host": host, "seconds": round(seconds, 3),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    io.write_json(folder.done_file, done)
    log(f"done: train {train_status}, eval {eval_status}, {seconds:.1f} s")
    return {"ok": True, "report": report, "done": done, "host": host}
