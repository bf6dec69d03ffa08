"""Many (input, config) pairs as Ray tasks: ``endogs batch SPEC.yaml``.

:mod:`.spec` validates a SPEC and plans the pairs, :mod:`.task` is the work of one pair (prepare →
train → eval through the single commands' functions), :mod:`.runner` schedules the tasks on Ray, retries
failures and writes the comparison table. Ray is an optional dependency (``endogs[cluster]``), imported
only when a batch runs.
"""

from endogs.batch.spec import BatchPlan, plan_batch

__all__ = ["BatchPlan", "plan_batch", "run_batch"]


def run_batch(*args, **kwargs):
    from endogs.batch.runner import run_batch as _run

    return _run(*args, **kwargs)
