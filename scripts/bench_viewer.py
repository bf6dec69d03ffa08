#!/usr/bin/env python
"""Benchmark the viewer's render function (``endogs.viewer.core.ViewRenderer``) on a trained run.

It calls the render function exactly as nerfview does (``render_fn(camera_state, render_tab_state)``,
including, with ``--trace``, nerfview's ``sys.settrace`` interrupt hook that is active during real
renders) for a camera orbiting a few degrees around the endoscope's first pose, and reports:

* ``move``: the camera moves every call, time fixed: the snapshot comes from the cache, so this
  is the frame rate while the user drags the view (and the playback rate once every frame time is
  cached);
* ``scrub``: a new time every call: the deformation field is evaluated each time (the rate while
  dragging the time slider).

Prints one JSON line per (mode, case) and a summary line: wall-clock median (``median_ms``, ``fps``),
the process CPU time per call (``cpu_ms``, summed over threads) and the 1-minute load average (other
processes on the machine slow the wall clock down). Example (docs/BENCHMARKS.md, "Viewer")::

    python scripts/bench_viewer.py --demo outputs/bench_viewer --size 320x256 --threads 2
    python scripts/bench_viewer.py RUN_DIR --size 320x256 --modes RGB Depth --trace

``--demo DIR`` writes the sample scene of ``make demo`` (160x128, 24 frames) to DIR/scene and
trains it for ``--iterations`` steps on the CPU into DIR/run (once; later calls reuse it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import nerfview
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


_CameraState = nerfview.CameraState  # vertical fov, OpenCV c2w


@dataclass
class _TabState:
    viewer_width: int
    viewer_height: int


def make_demo_run(root: Path, iterations: int) -> Path:
    from endogs.config_io import merge
    from endogs.data.synthetic import write_synthetic_scene
    from endogs.train.config import TrainConfig
    from endogs.run import RunFolder
    from endogs.train.trainer import Trainer

    run = root / "run"
    if RunFolder(run).has_checkpoint():
        return run
    scene = root / "scene"
    if not scene.exists():
        write_synthetic_scene(scene)
    cfg = merge(TrainConfig(), {"iterations": iterations, "device": "cpu"})
    print(f"training the demo scene for {iterations} iterations into {run} ...", file=sys.stderr)
    Trainer.create(cfg, scene, run).train(progress=True)
    return run


def orbit_c2w(c2w0: np.ndarray, look: float, deg: float) -> np.ndarray:
    """``c2w0`` rotated by ``deg`` about the vertical axis through the point ``look`` ahead of it."""
    a = math.radians(deg)
    R = np.array([[math.cos(a), 0, math.sin(a)], [0, 1, 0], [-math.sin(a), 0, math.cos(a)]])
    pivot = c2w0[:3, 3] + c2w0[:3, 2] * look
    out = np.eye(4)
    out[:3, :3] = c2w0[:3, :3] @ R
    out[:3, 3] = pivot - out[:3, 2] * look
    return out


def _trace(frame, event, arg):  # what nerfview installs around each render (it checks a flag per line)
    return _trace


def bench(args) -> list[dict]:
    import torch

    torch.set_num_threads(args.threads)
    from endogs.run import load_run
    from endogs.viewer.core import RenderSettings, StaticSource, ViewRenderer

    run = make_demo_run(Path(args.demo), args.iterations) if args.demo else Path(args.run)
    t0 = time.perf_counter()
    loaded = load_run(run, args.device)
    data = loaded.data()
    load_s = time.perf_counter() - t0
    cam0 = data.frames[0].camera
    W, H = args.size
    fov = 2 * math.atan(cam0.height / (2 * cam0.fy))
    look = 0.5 * (data.near + data.far)
    rows = []
    for mode in args.modes:
        settings = RenderSettings.for_device(loaded.device, mode=mode, max_res_moving=max(W, H), max_res_still=max(W, H))
        r = ViewRenderer(StaticSource(loaded.scene), settings, is_moving=lambda: True)
        tab = _TabState(W, H)
        for case in ("move", "scrub"):
            times, cpu = [], []
            n = args.warmup + args.frames
            for i in range(n):
                settings.time = 0.5 if case == "move" else (i * 0.6180339887) % 1.0
                cs = _CameraState(fov, W / H, orbit_c2w(cam0.c2w, look, 5.0 * math.sin(i * 0.7)))
                if args.trace:
                    sys.settrace(_trace)
                tic, ctic = time.perf_counter(), time.process_time()
                img = r(cs, tab)
                dt, cdt = time.perf_counter() - tic, time.process_time() - ctic
                sys.settrace(None)
                if i >= args.warmup:
                    times.append(dt)
                    cpu.append(cdt)
            assert img.shape == (H, W, 3) and r.stats.errors == 0, r.stats.last_error
            med = statistics.median(times)
            row = {"mode": mode, "case": case, "size": f"{W}x{H}", "median_ms": round(med * 1000, 1),
                   "mean_ms": round(statistics.fmean(times) * 1000, 1), "fps": round(1.0 / med, 2),
                   "cpu_ms": round(statistics.median(cpu) * 1000, 1), "loadavg_1m": round(os.getloadavg()[0], 2),
                   "frames": len(times), "trace": bool(args.trace)}
            rows.append(row)
            print(json.dumps(row), flush=True)
    summary = {"run": str(run), "gaussians": loaded.scene.num_gaussians, "device": loaded.device.type,
               "threads": torch.get_num_threads(), "cpus": os.cpu_count(), "load_s": round(load_s, 2),
               "torch": torch.__version__, "python": platform.python_version(), "machine": platform.machine()}
    print(json.dumps(summary), flush=True)
    return rows


def parse_size(s: str) -> tuple[int, int]:
    try:
        w, h = s.lower().split("x")
        return int(w), int(h)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, e.g. 320x256, got {s!r}") from None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", nargs="?", help="a run folder (endogs train output)")
    p.add_argument("--demo", metavar="DIR", help="make (once) and use a run of the demo scene in DIR")
    p.add_argument("--iterations", type=int, default=100, help="training steps of the --demo run")
    p.add_argument("--size", type=parse_size, default=(320, 256), help="render size WxH (default 320x256)")
    p.add_argument("--modes", nargs="+", default=["RGB", "Depth", "Deformation"], help="render modes to time")
    p.add_argument("--frames", type=int, default=20, help="timed calls per case")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls first")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    p.add_argument("--trace", action="store_true", help="run each call under a sys.settrace hook as nerfview does")
    args = p.parse_args(argv)
    if not args.run and not args.demo:
        p.error("give a RUN folder or --demo DIR")
    bench(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
