"""``endogs eval`` and ``endogs benchmark`` (typed functions; the lead registers them in endogs/cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

import tyro

Positional = tyro.conf.Positional


def eval_run(
    run: Positional[Path],
    split: Literal["test", "train", "all"] = "test",
    protocol: Literal["auto", "endonerf", "endonerf-all", "scared", "native"] = "auto",
    lpips_weights: Optional[Path] = None,
    data: Optional[Path] = None,
    output: Optional[Path] = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    images: bool = True,
    video: bool = True,
    fps_min_time: float = 2.0,
    quiet: bool = False,
) -> None:
    """Evaluate a trained run: PSNR (true masked, legacy, full), SSIM, LPIPS, depth, FPS, baselines.

    Writes RUN/eval_<split>/ (metrics.json, per_frame.csv, report.md, images, plots, sequence.mp4)
    and prints the metrics table.

    Args:
        run: the run folder (with run.yaml and checkpoint.pt).
        split: frames to evaluate: the protocol's test frames, the training frames, or all frames.
        protocol: endonerf (test = (i-1)%8==0, gt_masks), endonerf-all (EndoNeRF: all frames from 1),
            scared (depth-validity masks, depth in mm), native (the dataset's own split); auto picks by
            format and split.
        lpips_weights: torchvision's alexnet-owt-7be5be79.pth (or its folder); default: the torch hub
            cache. Without it LPIPS is reported as unavailable.
        data: the scene folder, when it moved since training.
        output: the report folder; default RUN/eval_<split>.
        device: where to render; auto = CUDA when present.
        images: write renders, GT | render | error and depth comparison images.
        video: write sequence.mp4 (renders every frame of the sequence).
        fps_min_time: seconds of timed rendering for the FPS measurement (after warm-up).
        quiet: print only the final "report:" line.
    """
    from endogs.eval.evaluate import EvalOptions, evaluate_run
    from endogs.eval.report import stdout_summary
    from endogs.run import REPORT_FILE

    opts = EvalOptions(split=split, protocol=protocol, lpips_weights=lpips_weights, data=data, output=output,
                       device=device, images=images, video=video, fps_min_time=fps_min_time)
    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr))
    result = evaluate_run(run, opts, log=log)
    path = result.out_dir / REPORT_FILE
    print(f"report: {path}" if quiet else stdout_summary(result.report, path))


def benchmark(
    config: Positional[Path],
    reuse: bool = False,
    output: Optional[Path] = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    quiet: bool = False,
) -> None:
    """Train and evaluate a list of scenes (x presets / deformation fields) into one comparison table.

    Writes OUTPUT/table.md, OUTPUT/table.csv and OUTPUT/benchmark.json; published peer numbers from
    the config's peers file appear as "reported", ours as "measured here".

    Args:
        config: the benchmark YAML (see configs/benchmark/example.yaml).
        reuse: skip finished runs and evaluations (resume unfinished runs) instead of refusing to
            overwrite them.
        output: the benchmark folder; default: the config's `output`, else outputs/benchmark/<name>.
        device: where to train and evaluate; auto = CUDA when present.
        quiet: no progress output.
    """
    from endogs.eval.benchmark import run_benchmark

    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr))
    res = run_benchmark(config, reuse=reuse, output=output, device=device, log=log)
    print(res.table_text)
    print(f"report: {res.out_dir / 'table.md'}")


COMMANDS = {"eval": eval_run, "benchmark": benchmark}

__all__ = ["eval_run", "benchmark", "COMMANDS"]
