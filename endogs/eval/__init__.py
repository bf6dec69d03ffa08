"""Evaluation: metrics (every published variant, labelled), protocols, trivial baselines, timing,
reports and benchmarks.

Public API: :func:`evaluate_run` / :class:`EvalOptions` (one run), :func:`run_benchmark` (many),
the pure metric functions in :mod:`endogs.eval.metrics`, LPIPS in :mod:`endogs.eval.lpips`.
"""

from endogs.eval.evaluate import EvalOptions, EvalResult, evaluate_run

__all__ = ["EvalOptions", "EvalResult", "evaluate_run", "run_benchmark"]


def run_benchmark(*args, **kwargs):
    from endogs.eval.benchmark import run_benchmark as _run

    return _run(*args, **kwargs)
