"""Densification and pruning: gsplat's ``DefaultStrategy`` with the 1.5.3 opacity-reset bug fixed.

gsplat 1.5.3 guards its opacity reset with ``step % reset_every == 0 & step > 0``, which Python
parses as ``(step % reset_every == 0) and (0 > 0)``: the reset never fires. ``EndoStrategy`` performs
it as intended (fixed upstream after the release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import reset_opa


@dataclass
class EndoStrategy(DefaultStrategy):
    def step_post_backward(self, params, optimizers, state: dict[str, Any], step: int, info: dict[str, Any], packed: bool = False):
        n_before = len(params["means"])
        super().step_post_backward(params, optimizers, state, step, info, packed=packed)
        state["last_refine"] = (n_before, len(params["means"]))
        if 0 < step < self.refine_stop_iter and step % self.reset_every == 0:
            reset_opa(params=params, optimizers=optimizers, state=state, value=self.prune_opa * 2.0)
            state["last_reset"] = step


@dataclass
class CappedStrategy(EndoStrategy):
    """``EndoStrategy`` that stops growing once ``max_gaussians`` is reached (0 = no cap)."""

    max_gaussians: int = 0

    def _grow_gs(self, params, optimizers, state, step):
        if self.max_gaussians and len(params["means"]) >= self.max_gaussians:
            return 0, 0
        return super()._grow_gs(params, optimizers, state, step)
