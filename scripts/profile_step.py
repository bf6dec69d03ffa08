"""Where a training step's time goes: the share of each stage of `Trainer.train_step` on a real scene.

    .venv/bin/python scripts/profile_step.py SCENE [--steps 30] [--warmup 5] [--json] [-- extra endogs train flags]

e.g. 20k Gaussians at 320x256 (the rasterizer benchmark's size) with the defaults:

    .venv/bin/python scripts/profile_step.py outputs/big -- --init.max-points 20000 --strategy.max-gaussians 40000

The trainer is built as `endogs train` builds it, put in its fine stage (deformation on) and run for
``--warmup`` untimed then ``--steps`` timed steps. Each stage is timed by wall clock around its own call
(wrappers installed for the profile only, nothing changes in endogs):

    deformation  DynamicScene.at (the field's forward: HexPlane sampling and decoder)
    projection   project_gaussians / project_gaussians_numba (3D covariances, 2D means and conics)
    colour       sh_to_rgb / sh_to_rgb_numba (view-dependent colour) and the head light when on
    binning      the rasterizer's tile layout (build_layout / build_tile_layout)
    composite    the rasterizer's forward, less its binning
    losses       the named loss terms (L1, D-SSIM, depth, regularisers)
    backward     loss.backward(), all of it (split below)
    optimizer    the Adam steps and zero_grad
    strategy     densification (step_pre_backward / step_post_backward)
    other        the rest of train_step (frame pick, rates, PSNR of the step, finiteness check)

The backward is then split by torch.profiler over the same number of steps (autograd nodes of the
rasterizer, grid_sample or the compiled sampler = HexPlane, the SH colour, convolution = D-SSIM, the rest). Threads: torch.get_num_threads(),
numba follows it. Prints a table (or one JSON object with --json).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Optional

import torch
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file or imported as scripts.NAME
from train_flags import no_scene, scene_parser, split_flags  # noqa: E402

FORWARD = ("deformation", "projection", "colour", "binning", "composite", "losses")
STAGES = FORWARD + ("backward", "optimizer", "strategy", "other")


class Timers:
    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)
        self.active: set[str] = set()

    def wrap(self, name: str, fn):
        """``fn`` timed under ``name``; a call inside another call of the same stage counts once."""

        def timed(*a, **k):
            if name in self.active:
                return fn(*a, **k)
            self.active.add(name)
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.total[name] += time.perf_counter() - t0
                self.active.discard(name)

        timed.__wrapped__ = fn
        return timed


@contextlib.contextmanager
def patched(timers: Timers):
    """Install the stage timers (restored on exit)."""
    import endogs.render.api as api
    import endogs.render.cpu as cpu
    import endogs.render.cpu_numba as cnb
    import endogs.render.projection_numba as pjn
    import endogs.render.sh_numba as shn
    import endogs.train.trainer as trainer
    import endogs.view as view
    from endogs.model.scene import DynamicScene, SceneOptimizers
    from endogs.train.strategy import CappedStrategy

    saved = []

    def swap(owner, attr, new):
        saved.append((owner, attr, getattr(owner, attr)))
        setattr(owner, attr, new)

    # binning is timed inside the rasterizer call, so the composite share is the rasterizer's total less binning
    swap(cnb, "build_layout", timers.wrap("binning", cnb.build_layout))
    swap(cpu, "build_tile_layout", timers.wrap("binning", cpu.build_tile_layout))
    swap(cnb, "rasterize_tiles_numba", timers.wrap("raster", cnb.rasterize_tiles_numba))
    swap(api, "rasterize_tiles", timers.wrap("raster", api.rasterize_tiles))
    swap(api, "project_gaussians", timers.wrap("projection", api.project_gaussians))
    swap(pjn, "project_gaussians_numba", timers.wrap("projection", pjn.project_gaussians_numba))
    swap(api, "sh_to_rgb", timers.wrap("colour", api.sh_to_rgb))
    swap(shn, "sh_to_rgb_numba", timers.wrap("colour", shn.sh_to_rgb_numba))
    if hasattr(view, "lit_snapshot"):
        swap(view, "lit_snapshot", timers.wrap("colour", view.lit_snapshot))
    if hasattr(view, "sh_to_rgb"):
        swap(view, "sh_to_rgb", timers.wrap("colour", view.sh_to_rgb))
    swap(DynamicScene, "at", timers.wrap("deformation", DynamicScene.at))
    swap(trainer, "total_loss", timers.wrap("losses", trainer.total_loss))
    swap(torch.Tensor, "backward", timers.wrap("backward", torch.Tensor.backward))
    swap(SceneOptimizers, "step", timers.wrap("optimizer", SceneOptimizers.step))
    swap(SceneOptimizers, "zero_grad", timers.wrap("optimizer", SceneOptimizers.zero_grad))
    swap(CappedStrategy, "step_pre_backward", timers.wrap("strategy", CappedStrategy.step_pre_backward))
    swap(CappedStrategy, "step_post_backward", timers.wrap("strategy", CappedStrategy.step_post_backward))
    try:
        yield
    finally:
        for owner, attr, old in reversed(saved):
            setattr(owner, attr, old)


def backward_split(tr, steps: int) -> dict[str, float]:
    """Seconds per autograd node type over ``steps`` steps (torch.profiler, CPU; each node's inclusive time)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            tr.train_step()
    prefix = "autograd::engine::evaluate_function: "
    return {ev.key[len(prefix):]: ev.cpu_time_total / 1e6 for ev in prof.key_averages() if ev.key.startswith(prefix)}


def group_nodes(nodes: dict[str, float]) -> dict[str, float]:
    out: dict[str, float] = defaultdict(float)
    for node, sec in nodes.items():
        if "Rasterize" in node:
            kind = "rasterizer (composite backward)"
        elif "GridSampler" in node or "HexSample" in node:
            kind = "HexPlane sampling"
        elif "SHColour" in node:
            kind = "SH colour"
        elif "Convolution" in node:
            kind = "convolution (D-SSIM)"
        else:
            kind = "other autograd nodes"
        out[kind] += sec
    return dict(out)


def main(argv: Optional[list[str]] = None) -> int:
    argv, extra = split_flags(argv)
    ap = scene_parser(__doc__)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    if no_scene("profile_step", a.scene):
        return 2
    if a.steps < 1 or a.warmup < 0:
        print("profile_step: --steps must be >= 1 and --warmup >= 0", file=sys.stderr)
        return 2
    import tempfile

    from endogs.errors import EndogsError
    from endogs.render.cpu_select import choose_cpu_backend
    from endogs.train.cli import parse
    from endogs.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        try:
            tr = Trainer.create(parse([str(a.scene), *extra]).config, a.scene, Path(tmp) / "run")
        except EndogsError as e:
            print(f"profile_step: {e}", file=sys.stderr)
            return 2
        tr.step = tr.cfg.coarse_iterations  # the fine stage: deformation on
        for _ in range(a.warmup):
            tr.train_step()
        timers = Timers()
        with patched(timers):
            t0 = time.perf_counter()
            for _ in range(a.steps):
                tr.train_step()
            wall = time.perf_counter() - t0
        nodes = backward_split(tr, a.steps)
        split = group_nodes(nodes)
        gaussians, size = tr.scene.num_gaussians, (tr.frames[0].camera.width, tr.frames[0].camera.height)
        raster = choose_cpu_backend(None, tr.device) if tr.device.type == "cpu" else "-"

    t = dict(timers.total)
    sec = {s: 0.0 for s in STAGES}
    for s in FORWARD + ("backward", "optimizer", "strategy"):
        sec[s] = t.get(s, 0.0)
    sec["composite"] = t.get("raster", 0.0) - t.get("binning", 0.0)
    sec["other"] = wall - sum(sec[s] for s in STAGES if s != "other")
    res = {"scene": str(a.scene), "flags": extra, "gaussians": gaussians, "size": list(size), "threads": torch.get_num_threads(),
           "cpu_rasterizer": raster, "steps": a.steps, "ms_per_step": round(1000 * wall / a.steps, 1),
           "stages_ms": {s: round(1000 * v / a.steps, 2) for s, v in sec.items()},
           "stages_share": {s: round(v / wall, 3) for s, v in sec.items()},
           "backward_split_share": {k: round(v / max(sum(split.values()), 1e-12), 3) for k, v in sorted(split.items())},
           "top_autograd_nodes_ms": {k: round(1000 * v / a.steps, 2) for k, v in sorted(nodes.items(), key=lambda kv: -kv[1])[:8]}}
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"{gaussians} Gaussians at {size[0]}x{size[1]}, {res['threads']} threads, CPU rasterizer {raster}: "
          f"{res['ms_per_step']} ms per step over {a.steps} steps (fine stage)")
    print("| stage | ms/step | share |\n|---|---:|---:|")
    for s in STAGES:
        print(f"| {s} | {res['stages_ms'][s]:.1f} | {100 * res['stages_share'][s]:.0f} % |")
    print("backward, by autograd node (torch.profiler, same steps): " +
          ", ".join(f"{k} {100 * v:.0f} %" for k, v in res["backward_split_share"].items()))
    print("largest autograd nodes (ms/step, inclusive, profiled): " +
          ", ".join(f"{k} {v:.1f}" for k, v in res["top_autograd_nodes_ms"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
