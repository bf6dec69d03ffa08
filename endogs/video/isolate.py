"""Run :func:`endogs.video.prepare.prepare_scene` in a child process, for commands that train afterwards
(``endogs reconstruct``, ``endogs batch``).

Why a child: open3d (the odometry) and numba's parallel kernels (the CPU rasterizer, the HexPlane
sampler, the SH colour) run on the same OpenMP runtime, the system libgomp, which reads
``OMP_WAIT_POLICY`` once, when it loads. The preparation needs it passive
(:func:`endogs.video.poses.import_open3d`: open3d's odometry is 5-10x slower with spinning workers on
a shared machine); the training step needs libgomp's default: in a process that had loaded open3d
first, a step at 81,920 Gaussians took 20-25 % longer (``scripts/bench_openmp.py``, docs/BENCHMARKS.md).
In a child process the preparation gets its runtime and the trainer keeps its own.

The child is ``python -m endogs.video.isolate``: the request (input, output, options, thread count)
goes to its stdin pickled; it sends back pickled ``(kind, value)`` messages on a private copy of its
stdout (log lines, then the :class:`~endogs.video.prepare.PrepareResult` or the user error); anything
else it prints goes to stderr. A user error (:class:`~endogs.errors.EndogsError`) is raised again
here, the same class with the same one-line message; any other failure is a ``RuntimeError`` with the
child's traceback. Ctrl-C stops both.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Callable, Optional

from endogs.errors import EndogsError
from endogs.video.config import PrepareOptions

_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])  # the folder that holds the endogs package


def prepare_scene_isolated(input: Path, out: Path, opts: Optional[PrepareOptions] = None,
                           log: Callable[[str], None] = lambda s: None):
    """:func:`~endogs.video.prepare.prepare_scene` in a child process; same arguments (the log lines
    come back as the child writes them), same result, same user errors."""
    threads = None
    if "torch" in sys.modules:
        threads = int(sys.modules["torch"].get_num_threads())
    request = pickle.dumps({"input": Path(input), "out": Path(out), "options": opts, "threads": threads})
    env = dict(os.environ)
    env["PYTHONPATH"] = _PACKAGE_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen([sys.executable, "-m", "endogs.video.isolate"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
    result, error, crash = None, None, None
    try:
        proc.stdin.write(request)
        proc.stdin.close()
        while True:
            try:
                kind, value = pickle.load(proc.stdout)
            except EOFError:
                break
            if kind == "log":
                log(value)
            elif kind == "result":
                result = value
            elif kind == "error":
                error = value
            else:
                crash = value
        status = proc.wait()
    except BaseException:  # Ctrl-C (or a broken pipe): never leave the child running
        proc.kill()
        proc.wait()
        raise
    finally:
        proc.stdout.close()
    if error is not None:
        raise error
    if crash is not None:
        raise RuntimeError(f"the scene preparation failed in its child process:\n{crash}")
    if result is None:
        raise RuntimeError(f"the scene preparation's child process exited with status {status} and sent no result")
    return result


def _picklable_error(exc: EndogsError) -> EndogsError:
    """``exc`` if it survives a pickle round trip (its class and message), else a plain EndogsError with its message."""
    try:
        back = pickle.loads(pickle.dumps(exc))
        if type(back) is type(exc) and str(back) == str(exc):
            return exc
    except Exception:
        pass
    return EndogsError(str(exc))


def _child() -> int:
    channel = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # stray prints of the libraries go to stderr, never into the message stream

    def send(kind: str, value) -> None:
        pickle.dump((kind, value), channel)
        channel.flush()

    try:
        req = pickle.load(sys.stdin.buffer)
        if req["threads"] is not None:
            import torch

            torch.set_num_threads(req["threads"])
        from endogs.video.prepare import prepare_scene

        send("result", prepare_scene(req["input"], req["out"], req["options"], log=lambda s: send("log", s)))
    except EndogsError as exc:
        send("error", _picklable_error(exc))
    except KeyboardInterrupt:
        return 130
    except BaseException:
        send("crash", traceback.format_exc())
        return 1
    finally:
        channel.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(_child())
