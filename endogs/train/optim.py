"""The optimizer of the imaging terms (:mod:`endogs.model.imaging`).

Pose corrections and exposures have one row per training frame, and a step sees one frame. Dense Adam
moves every row at every step on its momentum, so each visit's gradient is spent in full in the steps
that follow and is never averaged with the row's other visits: with 35 frames a row moved 5.6x its
learning rate per visit whether its gradients agreed or were noise (``scripts/bench_row_adam.py``),
and refinement lost 4-5 dB on real video (docs/BENCHMARKS.md). These rows are therefore optimised
lazily by PyTorch's :class:`torch.optim.SparseAdam`: only the rows with a gradient, and their
moments, change, so a row's moments average over its own visits (0.7x the rate per visit for noise,
4.3x for a consistent gradient). The global head-light scalars keep a plain Adam.
"""

from __future__ import annotations

import warnings
from typing import Any, Optional

import torch


class ImagingOptimizer:
    """``SparseAdam`` over the per-frame row parameters, ``Adam`` over the rest.

    Args:
        groups: param groups as :meth:`endogs.model.imaging.Imaging.param_groups` gives them;
            those with ``"rows": True`` hold per-frame tables.
    """

    def __init__(self, groups: list[dict], eps: float = 1e-15):
        rows = [{k: v for k, v in g.items() if k != "rows"} for g in groups if g.get("rows")]
        dense = [{k: v for k, v in g.items() if k != "rows"} for g in groups if not g.get("rows")]
        self.rows: Optional[torch.optim.SparseAdam] = torch.optim.SparseAdam(rows, eps=eps) if rows else None
        self.dense: Optional[torch.optim.Adam] = torch.optim.Adam(dense, eps=eps) if dense else None

    @property
    def param_groups(self) -> list[dict]:
        return [g for o in (self.rows, self.dense) if o is not None for g in o.param_groups]

    def step(self) -> None:
        if self.rows is not None:
            for g in self.rows.param_groups:
                for p in g["params"]:
                    if p.grad is not None and not p.grad.is_sparse:
                        p.grad = p.grad.to_sparse(1)  # the rows with a non-zero gradient
            self.rows.step()
        if self.dense is not None:
            self.dense.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in (self.rows, self.dense):
            if o is not None:
                o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"rows": None if self.rows is None else self.rows.state_dict(),
                "dense": None if self.dense is None else self.dense.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "param_groups" in state:  # a checkpoint of an earlier version: one dense Adam over everything
            warnings.warn("the checkpoint holds the earlier single-Adam state of the imaging terms; their "
                          "optimizer moments restart (the parameters themselves are restored)", stacklevel=2)
            return
        for name, o in (("rows", self.rows), ("dense", self.dense)):
            if o is not None and state.get(name) is not None:
                o.load_state_dict(state[name])
