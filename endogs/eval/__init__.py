"""Evaluation: metrics (every published variant, labelled), protocols, trivial baselines, timing,
reports and benchmarks.

Public API: :func:`evaluate_run` / :class:`EvalOptions` (one run: the pure
:func:`endogs.eval.evaluate.evaluate`, then the data-only :func:`endogs.eval.report.write_report`),
:func:`run_benchmark` (many), the pure metric functions in :mod:`endogs.eval.metrics`, LPIPS in
:mod:`endogs.eval.lpips`.
"""

from endogs.eval.evaluate import EvalOptions
from endogs.eval.pipeline import evaluate_run
from endogs.eval.result import EvalResult

__all__ = ["EvalOptions", "EvalResult", "evaluate_run", "run_benchmark"]


def run_benchmark(*args, **kwargs):
    from endogs.eval.benchmark import run_benchmark as _run

    return _run(*args, **kwargs)
