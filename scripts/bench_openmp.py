"""CPU training steps under the OpenMP / threading-layer conditions a process can end up in, side by side.

    .venv/bin/python scripts/bench_openmp.py RUN [--rounds 3] [--steps 30] [--modes plain,open3d,tbb] [--json]

RUN is a finished (or any checkpointed) run folder; it is copied to a temporary folder per process and
resumed at its Gaussian count (RUN is not touched). Each round starts one fresh process per mode, one
after the other (a process cannot switch its threading layer or wait policy, so whole processes
alternate; a slow spell of the machine can still fall on one, the rounds show the spread):

    plain           resume and step; nothing else loaded
    open3d          ``import open3d`` first, as the point-cloud init of every ``endogs train`` and the
                    odometry of ``endogs reconstruct`` do
    tbb             ``import open3d`` first and numba on its TBB layer (NUMBA_THREADING_LAYER=tbb),
                    which was numba's own choice after open3d had loaded its libtbb, before
                    :data:`endogs.render.cpu_numba.THREADING_LAYER_PRIORITY` put OpenMP first

Prints per process the threading layer, the mean and median step and the CPU time per step, then
the median over rounds of each mode's mean step.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

MODES = ("plain", "open3d", "tbb")


def _child(run: Path, steps: int, mode: str) -> dict:
    if mode in ("open3d", "tbb"):
        import open3d  # noqa: F401
    import numba

    from endogs.render.cpu_numba import set_numba_threads
    from endogs.train.trainer import Trainer

    set_numba_threads()  # starts numba's threads: the layer is chosen here

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(run, Path(tmp) / "run", ignore=shutil.ignore_patterns("eval*"))
        tr = Trainer.resume(Path(tmp) / "run")
        tr.cfg.iterations = tr.step + 10**6  # far from the end of the schedules
        for _ in range(3):  # untimed: kernel loads, first allocations
            tr.train_step()
        times = []
        r0, t00 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        for _ in range(steps):
            t0 = time.perf_counter()
            tr.train_step()
            times.append(time.perf_counter() - t0)
        wall = time.perf_counter() - t00
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
        return {"layer": numba.threading_layer(), "gaussians": tr.scene.num_gaussians, "mean_ms": round(1000 * wall / steps, 1),
                "median_ms": round(1000 * statistics.median(times), 1), "cpu_ms_per_step": round(1000 * cpu / steps, 1)}


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--modes", default=",".join(MODES))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    from endogs.run import CHECKPOINT_FILE, RunFolder

    if not RunFolder(a.run).has_checkpoint():
        print(f"bench_openmp: {a.run}: no {CHECKPOINT_FILE}; give a run folder of `endogs train` or `endogs reconstruct`", file=sys.stderr)
        return 2
    if a.rounds < 1 or a.steps < 1:
        print("bench_openmp: --rounds and --steps must be >= 1", file=sys.stderr)
        return 2
    modes = a.modes.split(",")
    if any(m not in MODES for m in modes):
        print(f"bench_openmp: unknown mode in --modes {a.modes}; use some of {', '.join(MODES)}", file=sys.stderr)
        return 2
    if a.child:
        print(json.dumps(_child(a.run, a.steps, a.child)))
        return 0
    root = str(Path(__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else ""))
    for var in ("OMP_WAIT_POLICY", "NUMBA_THREADING_LAYER", "NUMBA_THREADING_LAYER_PRIORITY"):
        env.pop(var, None)  # each child: the defaults, but for what its mode sets
    rows = []
    for r in range(a.rounds):
        for mode in modes:
            out = subprocess.run([sys.executable, __file__, str(a.run), "--steps", str(a.steps), "--child", mode],
                                 capture_output=True, text=True, env=dict(env, NUMBA_THREADING_LAYER="tbb") if mode == "tbb" else env)
            if out.returncode != 0:
                print(f"bench_openmp: the {mode} process failed: {out.stderr.strip().splitlines()[-1] if out.stderr.strip() else out.returncode}",
                      file=sys.stderr)
                return 1
            rec = {"round": r, "mode": mode, **json.loads(out.stdout.strip().splitlines()[-1])}
            rows.append(rec)
            if a.json:
                print(json.dumps(rec), flush=True)
    summary = {m: round(statistics.median(x["mean_ms"] for x in rows if x["mode"] == m), 1) for m in modes}
    if a.json:
        print(json.dumps({"median_of_means_ms": summary, "steps": a.steps, "rounds": a.rounds}))
        return 0
    print(f"{rows[0]['gaussians']} Gaussians, {a.steps} steps per process")
    print("| round | mode | layer | mean ms | median ms | CPU ms / step |\n|---:|---|---|---:|---:|---:|")
    for x in rows:
        print(f"| {x['round']} | {x['mode']} | {x['layer']} | {x['mean_ms']} | {x['median_ms']} | {x['cpu_ms_per_step']} |")
    print("median over rounds of the mean step: " + ", ".join(f"{m} {v} ms" for m, v in summary.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
