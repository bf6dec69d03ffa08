#!/usr/bin/env python
"""Benchmark ``endogs.render.render``: forward and forward+backward time, peak memory.

Prints one JSON line per case. A case is ``<N>@<W>x<H>`` (N may use a ``k`` suffix), e.g.
``20k@320x256``. The scene is the prototype's benchmark scene (docs/STACK.md section 3): N Gaussians
uniform in x in [-2, 2], y in [-1.6, 1.6], z in [2.5, 3.5], scale 2.4/sqrt(N) * U(0.5, 1.5),
random rotations, opacity U(0.3, 0.9), RGB colours, one pinhole camera at the origin with
fx = fy = 0.9 W. "fwd" is ``render()`` with gradients enabled; "fwd+bwd" adds
``(rgb.sum() + depth.sum()).backward()`` into means, quats, scales, opacities and colours.
Times are medians over ``--repeats`` runs after ``--warmup`` runs.

On CPU every case is run with each rasterizer of ``--cpu-backends`` (default ``numba,torch``:
the compiled kernels and the pure-PyTorch reference), one after the other in the same
invocation, and a ``speedup`` line per case compares their fwd+bwd medians.
``--jit`` instead measures the numba kernels' first-call cost: a fresh process with an empty
on-disk cache (cold) and one with the cache it left (warm).

Examples:
    python scripts/bench_render.py                              # all 9 cases, each in its own process
    python scripts/bench_render.py --cases 20k@320x256 --repeats 9
    python scripts/bench_render.py --device cuda --backend gsplat
    python scripts/bench_render.py --cases 20k@320x256,100k@640x512 --threads 2
    python scripts/bench_render.py --jit
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DEFAULT_CASES = [f"{n}@{w}x{h}" for n in ("5k", "20k", "100k") for (w, h) in ((160, 128), (320, 256), (640, 512))]


def parse_case(case: str) -> Tuple[int, int, int]:
    """``'20k@320x256'`` -> (20000, 320, 256)."""
    try:
        n_str, size = case.split("@")
        w_str, h_str = size.lower().split("x")
        n = int(float(n_str[:-1]) * 1000) if n_str.lower().endswith("k") else int(n_str)
        return n, int(w_str), int(h_str)
    except ValueError as exc:
        raise SystemExit(f"bad case {case!r}: expected N@WxH, e.g. 20k@320x256") from exc


def make_scene(n: int, device: str, seed: int = 0):
    """The benchmark scene (see the module docstring) as leaf tensors and a Snapshot of them."""
    from endogs.render.reference import synthetic_scene

    snap = synthetic_scene(n, seed=seed, device=device)
    for name in ("means", "quats", "scales", "opacities", "colors"):
        getattr(snap, name).requires_grad_()
    params = [snap.means, snap.quats, snap.scales, snap.opacities, snap.colors]
    return params, snap


def make_camera(width: int, height: int):
    from endogs.render.reference import pinhole_camera

    return pinhole_camera(width, height)


def run_case(
    case: str, device: str, backend: str, repeats: int, warmup: int, threads: int, tile_size: int = 0,
    cpu_backend: str = "auto",
) -> Dict:
    """Time one case in this process and return its JSON record."""
    import torch

    from endogs.render import render

    if threads > 0:
        torch.set_num_threads(threads)
    n, width, height = parse_case(case)
    params, snap = make_scene(n, device)
    cam = make_camera(width, height)
    cuda = device.startswith("cuda")

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    fwd, fwd_bwd, cpu = [], [], []
    out = None
    for i in range(warmup + repeats):
        for p in params:
            p.grad = None
        sync()
        c0, t0 = time.process_time(), time.perf_counter()
        out = render(
            snap, cam, backend=backend, cpu_backend=cpu_backend, **({"tile_size": tile_size} if tile_size > 0 else {})
        )
        sync()
        t1 = time.perf_counter()
        (out.rgb.sum() + out.depth.sum()).backward()
        sync()
        t2, c2 = time.perf_counter(), time.process_time()
        if i >= warmup:
            fwd.append((t1 - t0) * 1e3)
            fwd_bwd.append((t2 - t0) * 1e3)
            cpu.append((c2 - c0) * 1e3)
    assert out is not None
    rec = {
        "case": case,
        "n_gaussians": n,
        "width": width,
        "height": height,
        "device": device,
        "backend": out.backend,
        "cpu_backend": out.info.get("cpu_backend"),
        "fwd_ms": round(statistics.median(fwd), 2),
        "fwd_bwd_ms": round(statistics.median(fwd_bwd), 2),
        "fwd_ms_min": round(min(fwd), 2),
        "fwd_bwd_ms_min": round(min(fwd_bwd), 2),
        "fwd_bwd_cpu_ms": round(statistics.median(cpu), 2),  # process CPU time, all threads
        "repeats": repeats,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0, 1),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "tile_size": out.info.get("tile_size"),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "visible": int((out.info["radii"] > 0).all(-1).sum()),
        "coverage": round(float((out.alpha > 0.5).float().mean()), 3),
    }
    if "n_isects" in out.info:
        rec["n_isects"] = int(out.info["n_isects"])
    if cuda:
        rec["cuda_peak_mem_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        rec["gpu"] = torch.cuda.get_device_name()
    return rec


def main(argv: List[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="auto", help="cpu, cuda or auto (cuda when available)")
    ap.add_argument("--backend", default="auto", choices=["auto", "cpu", "gsplat"])
    ap.add_argument("--cases", default="all", help="comma-separated N@WxH list, or 'all'")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--tile-size", type=int, default=0, help="PyTorch rasterizer tile edge (0: its default)")
    ap.add_argument(
        "--in-process", action="store_true", help="run all cases in this process (peak RSS is then cumulative)"
    )
    ap.add_argument("--cpu-backends", default="numba,torch", help="CPU rasterizers to compare (comma-separated)")
    ap.add_argument("--jit", action="store_true", help="measure numba's cold and warm first-call time instead")
    ap.add_argument("--out", type=Path, default=None, help="also append the JSON lines to this file")
    args = ap.parse_args(argv)

    device = args.device
    if device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    cases = DEFAULT_CASES if args.cases == "all" else [c.strip() for c in args.cases.split(",") if c.strip()]
    for c in cases:
        parse_case(c)

    if args.jit:
        print(json.dumps(measure_jit(args.threads)))
        return 0
    cpu_backends = ["auto"] if device != "cpu" else [b.strip() for b in args.cpu_backends.split(",") if b.strip()]
    single = len(cases) == 1 and len(cpu_backends) == 1
    failures = 0
    for case in cases:
        fwd_bwd: Dict[str, float] = {}
        for cpu_backend in cpu_backends:
            if args.in_process or single:
                try:
                    rec = run_case(
                        case, device, args.backend, args.repeats, args.warmup, args.threads, args.tile_size, cpu_backend
                    )
                except Exception as exc:  # report and carry on with the other cases
                    rec = {"case": case, "device": device, "error": f"{type(exc).__name__}: {exc}"}
                line = json.dumps(rec)
            else:
                cmd = [
                    sys.executable, __file__, "--cases", case, "--device", device, "--backend", args.backend,
                    "--repeats", str(args.repeats), "--warmup", str(args.warmup), "--threads", str(args.threads),
                    "--tile-size", str(args.tile_size), "--cpu-backends", cpu_backend,
                ]  # fmt: skip
                proc = subprocess.run(cmd, capture_output=True, text=True, env=os.environ.copy())
                lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
                if proc.returncode != 0 or not lines:
                    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                    line = json.dumps({"case": case, "device": device, "error": f"rc={proc.returncode}: {tail}"})
                else:
                    line = lines[-1]
            if '"error"' in line:
                failures += 1
            else:
                fwd_bwd[cpu_backend] = json.loads(line)["fwd_bwd_ms"]
            _emit(line, args.out)
        if "numba" in fwd_bwd and "torch" in fwd_bwd:
            ratio = round(fwd_bwd["torch"] / fwd_bwd["numba"], 2)
            _emit(json.dumps({"case": case, "speedup_fwd_bwd_numba_vs_torch": ratio, **{f"{k}_ms": v for k, v in fwd_bwd.items()}}), args.out)
    if not single or args.in_process:
        print(json.dumps({"summary": True, "host": platform.node(), "cpus": os.cpu_count(), "failures": failures}))
    return 1 if failures else 0


def _emit(line: str, out: Path | None) -> None:
    print(line, flush=True)
    if out is not None:
        with open(out, "a") as fh:
            fh.write(line + "\n")


_JIT_PROBE = """
import time, torch
t0 = time.perf_counter()
from endogs.render import render
from endogs.render.reference import pinhole_camera, synthetic_scene
s = synthetic_scene(2000, seed=0)
s.means.requires_grad_()
t1 = time.perf_counter()
out = render(s, pinhole_camera(160, 128), cpu_backend="numba")
(out.rgb.sum() + out.depth.sum()).backward()
t2 = time.perf_counter()
out = render(s, pinhole_camera(160, 128), cpu_backend="numba")
(out.rgb.sum() + out.depth.sum()).backward()
t3 = time.perf_counter()
print((t2 - t1) * 1e3, (t3 - t2) * 1e3)
"""


def measure_jit(threads: int) -> Dict:
    """First render+backward in a fresh process with an empty numba cache (cold), then warm."""
    import tempfile

    rec: Dict = {"jit": True, "load_avg_1m": round(os.getloadavg()[0], 2)}
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        if threads > 0:
            env["OMP_NUM_THREADS"] = str(threads)
        for name in ("cold", "warm"):
            proc = subprocess.run([sys.executable, "-c", _JIT_PROBE], capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                raise SystemExit(f"jit probe failed: {(proc.stderr.strip().splitlines() or ['?'])[-1]}")
            first, second = (float(x) for x in proc.stdout.split())
            rec[f"{name}_first_call_ms"] = round(first, 1)
            rec[f"{name}_second_call_ms"] = round(second, 1)
        rec["cache_files"] = sum(len(f) for _, _, f in os.walk(cache))
    return rec


if __name__ == "__main__":
    sys.exit(main())
