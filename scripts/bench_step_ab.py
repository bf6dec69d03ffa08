"""Side-by-side timing of CPU training steps with each step optimisation switched off or on, in one process.

    .venv/bin/python scripts/bench_step_ab.py RUN [--blocks 8] [--steps-per-block 3] [--modes none,all,...] [--json]

RUN is a finished (or any checkpointed) run folder, e.g. one of `endogs reconstruct`; it is copied to a
temporary folder and resumed at its Gaussian count (the copy is trained, RUN is not touched). The
modes then take turns, ``--steps-per-block`` steps each, for ``--blocks`` rounds, so a slow spell of a
shared machine falls on every mode alike (whole-process A/B runs of the same step drift by +-20 % here).
Prints per mode the median, lower quartile and fastest step, and the page faults and system time.

Switches (each is what the named change replaced; "on" is today's code):

    sh       the compiled SH colour (endogs.render.sh_numba) instead of sh_to_rgb's PyTorch ops
    relu     the heads' shared first ReLU instead of one per head
    finite   the one-pass (sum) finiteness check of the gradients instead of isfinite over every element
    adam     PyTorch's fused CPU Adam instead of its per-op implementation (not today's code: "on" is
             the fused Adam that was tried and not kept, see docs/BENCHMARKS.md; "all" leaves it off)

Not a switch: glibc's malloc settings (endogs.utils.malloc), which every CPU trainer applies in every
mode. They cannot be undone inside a process (glibc's default threshold is dynamic), and without them
a process that loaded a checkpoint page-faults its large tensors on every step (24,000-36,000 faults
and 50-70 ms of system time per step at 81,920 Gaussians), which would swamp every other difference.
Modes: ``none`` (all off), ``all`` (today's code: sh, relu and finite on), ``NAME`` (only that one on),
``-NAME`` (today's code but that one off), ``+NAME`` (today's code and that one on: ``+adam``).
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import torch

SWITCHES = ("sh", "relu", "finite", "adam")
KEPT = ("sh", "relu", "finite")  # "all": today's code


def _switches(mode: str) -> set[str]:
    if mode == "none":
        return set()
    if mode == "all":
        return set(KEPT)
    if mode.startswith("-") and mode[1:] in KEPT:
        return set(KEPT) - {mode[1:]}
    if mode.startswith("+") and mode[1:] in SWITCHES:
        return set(KEPT) | {mode[1:]}
    if mode in SWITCHES:
        return {mode}
    raise ValueError(mode)


def _elementwise_finite(self, loss: torch.Tensor) -> bool:
    checks = [torch.isfinite(loss).all()] + [torch.isfinite(p.grad).all() for p in self._optimized() if p.grad is not None]
    return bool(torch.stack(checks).all())


class Switchboard:
    """Turns the switches of one trainer on and off."""

    def __init__(self, tr) -> None:
        import endogs.render.sh_numba as shn
        from endogs.train.trainer import Trainer

        self.tr, self.shn, self.trainer_cls = tr, shn, Trainer
        self.use_sh, self.finite = shn.use_numba_sh, Trainer._finite
        self.opts = [o for o in (*tr.optimizers.gaussians.values(), tr.optimizers.deform) if o is not None]
        self.heads = getattr(tr.scene.deform, "heads", None)
        self.can_share = self.heads is not None and self.heads.shared_relu  # heads with hidden layers

    def set(self, on: set[str]) -> None:
        self.shn.use_numba_sh = self.use_sh if "sh" in on else (lambda *a: False)
        if self.heads is not None:
            self.heads.shared_relu = self.can_share and "relu" in on
        self.trainer_cls._finite = self.finite if "finite" in on else _elementwise_finite
        for o in self.opts:
            for g in o.param_groups:
                g["fused"], g["foreach"] = (True, None) if "adam" in on else (None, None)

    def restore(self) -> None:
        self.shn.use_numba_sh, self.trainer_cls._finite = self.use_sh, self.finite


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run", type=Path)
    ap.add_argument("--blocks", type=int, default=8)
    ap.add_argument("--steps-per-block", type=int, default=3)
    ap.add_argument("--modes", default="none,all")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args(argv)
    from endogs.run import CHECKPOINT_FILE, RunFolder

    if not RunFolder(a.run).has_checkpoint():
        print(f"bench_step_ab: {a.run}: no {CHECKPOINT_FILE}; give a run folder of `endogs train` or `endogs reconstruct`", file=sys.stderr)
        return 2
    try:
        modes = {m: _switches(m) for m in a.modes.split(",")}
    except ValueError as e:
        print(f"bench_step_ab: unknown mode {e}; use none, all, one of {', '.join(SWITCHES)}, -NAME or +NAME", file=sys.stderr)
        return 2
    if a.blocks < 1 or a.steps_per_block < 1:
        print("bench_step_ab: --blocks and --steps-per-block must be >= 1", file=sys.stderr)
        return 2
    from endogs.train.trainer import Trainer

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(a.run, Path(tmp) / "run", ignore=shutil.ignore_patterns("eval*"))
        tr = Trainer.resume(Path(tmp) / "run")
        tr.cfg.iterations = tr.step + 10**6  # far from the end of the schedules
        board = Switchboard(tr)
        times = {m: [] for m in modes}
        faults = {m: 0 for m in modes}
        sys_s = {m: 0.0 for m in modes}
        try:
            for on in modes.values():  # one untimed step per mode (compilation, first allocations)
                board.set(on)
                tr.train_step()
            for _ in range(a.blocks):
                for m, on in modes.items():
                    board.set(on)
                    r0 = resource.getrusage(resource.RUSAGE_SELF)
                    for _ in range(a.steps_per_block):
                        t0 = time.perf_counter()
                        tr.train_step()
                        times[m].append(time.perf_counter() - t0)
                    r1 = resource.getrusage(resource.RUSAGE_SELF)
                    faults[m] += r1.ru_minflt - r0.ru_minflt
                    sys_s[m] += r1.ru_stime - r0.ru_stime
        finally:
            board.restore()
        n_steps = a.blocks * a.steps_per_block
        res = {"run": str(a.run), "gaussians": tr.scene.num_gaussians, "threads": torch.get_num_threads(), "steps_per_mode": n_steps,
               "modes": {m: {"median_ms": round(1000 * statistics.median(v), 1), "p25_ms": round(1000 * sorted(v)[len(v) // 4], 1),
                             "min_ms": round(1000 * min(v), 1), "page_faults_per_step": round(faults[m] / n_steps, 1),
                             "system_ms_per_step": round(1000 * sys_s[m] / n_steps, 1), "on": sorted(modes[m])} for m, v in times.items()}}
    if a.json:
        print(json.dumps(res))
        return 0
    print(f"{res['gaussians']} Gaussians, {res['threads']} threads, {n_steps} steps per mode in {a.blocks} interleaved blocks")
    print("| mode | median ms | p25 ms | min ms | page faults / step | system ms / step |\n|---|---:|---:|---:|---:|---:|")
    for m, r in res["modes"].items():
        print(f"| {m} | {r['median_ms']} | {r['p25_ms']} | {r['min_ms']} | {r['page_faults_per_step']} | {r['system_ms_per_step']} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
