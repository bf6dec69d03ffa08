"""``endogs eval`` and ``endogs benchmark`` (typed functions; the lead registers them in endogs/cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import tyro
from typing_extensions import Annotated

from endogs.eval.evaluate import EvalOptions
from endogs.run import DeviceName

Positional = tyro.conf.Positional


def eval_run(
    run: Positional[Path],
    options: Annotated[EvalOptions, tyro.conf.arg(name="")] = EvalOptions(),
    quiet: bool = False,
) -> None:
    """Evaluate a trained run: PSNR (true masked, legacy, full), SSIM, LPIPS, depth, FPS, baselines.

    Writes RUN/eval_<split>/ (metrics.json, per_frame.csv, report.md, images, plots, sequence.mp4)
    and prints the metrics table. Every field of EvalOptions is a flag.

    Args:
        run: the run folder (with run.yaml and checkpoint.pt).
        quiet: print only the final "report:" line.
    """
    from endogs.eval.pipeline import evaluate_run
    from endogs.eval.report import stdout_summary
    from endogs.run import REPORT_FILE

    log = (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr))
    result = evaluate_run(run, options, log=log)
    path = result.out_dir / REPORT_FILE
    print(f"report: {path}" if quiet else stdout_summary(result.report, path))


def benchmark(
    config: Positional[Path],
    reuse: bool = False,
    output: Optional[Path] = None,
    device: DeviceName = "auto",
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
