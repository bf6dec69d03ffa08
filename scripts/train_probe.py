"""Train a preset with JSON overrides and print the held-out masked PSNR at each quarter of the run.

Used for the learning-rate and deformation-field comparisons in docs/BENCHMARKS.md (Training)::

    .venv/bin/python scripts/train_probe.py SCENE RUN_DIR --preset demo \
        --overrides '{"deform": {"kind": "basis", "coef_lr": 0.0003}}'

Test frames are only rendered for the report; they never reach the optimizer. Prints one tuple per
quarter, (step, test PSNR, Gaussians, seconds since start), then a JSON summary line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import torch

from endogs.config_io import merge
from endogs.eval.metrics import psnr
from endogs.render import render
from endogs.train.config import load_preset
from endogs.train.trainer import Trainer


def test_psnr(tr: Trainer) -> float:
    data, values = tr.data, []
    with torch.no_grad():
        for i in data.test_indices:
            f = data.frames[i]
            out = render(tr.scene.at(f.time, sh_degree=tr.cfg.sh_degree), f.camera, background=tr.cfg.background)
            values.append(psnr(out.rgb[0].numpy(), f.image, f.mask))
    return sum(values) / len(values)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scene", type=Path)
    ap.add_argument("run_dir", type=Path, help="replaced if it exists")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--overrides", default="{}", help="nested TrainConfig keys as JSON")
    args = ap.parse_args()
    cfg = merge(load_preset(args.preset), json.loads(args.overrides))
    shutil.rmtree(args.run_dir, ignore_errors=True)
    t0 = time.perf_counter()
    tr = Trainer.create(cfg, args.scene, args.run_dir)
    evals: list[tuple] = []

    def on_step(t: Trainer, terms: dict) -> None:
        if t.step % max(1, t.cfg.iterations // 4) == 0:
            evals.append((t.step, round(test_psnr(t), 2), t.scene.num_gaussians, round(time.perf_counter() - t0, 1)))
            print(evals[-1], flush=True)

    tr.train(progress=False, on_step=on_step)
    print(json.dumps({"preset": args.preset, "overrides": json.loads(args.overrides), "test_psnr": evals[-1][1],
                      "num_gaussians": tr.scene.num_gaussians, "train_s": round(tr.elapsed, 1)}))


if __name__ == "__main__":
    main()
