"""Densification and pruning: gsplat's ``DefaultStrategy`` with the 1.5.3 opacity-reset bug fixed.

gsplat 1.5.3 guards its opacity reset with ``step % reset_every == 0 & step > 0``, which Python
parses as ``(step % reset_every == 0) and (0 > 0)``: the reset never fires. ``EndoStrategy`` performs
it as intended (fixed upstream after the release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import duplicate, reset_opa, split


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
    """``EndoStrategy`` that never grows beyond ``max_gaussians`` (0 = no cap): when more Gaussians
    qualify for duplication or splitting than there is room for, those with the highest mean
    screen-space gradient are grown (a split adds one Gaussian net, a duplicate one)."""

    max_gaussians: int = 0

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state, step):
        if not self.max_gaussians:
            return super()._grow_gs(params, optimizers, state, step)
        n = len(params["means"])
        room = self.max_gaussians - n
        if room <= 0:
            return 0, 0
        grads = state["grad2d"] / state["count"].clamp_min(1)  # [N]
        grow = grads > self.grow_grad2d
        small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        split_big = grow & ~small
        if step < self.refine_scale2d_stop_iter:
            split_big |= state["radii"] > self.grow_scale2d
        candidates = (grow & small) | split_big
        if int(candidates.sum()) > room:  # keep the `room` strongest candidates
            score = torch.where(candidates, grads, torch.full_like(grads, -1.0))
            keep = torch.zeros_like(candidates)
            keep[torch.topk(score, room).indices] = True
            candidates &= keep
        is_dupli = candidates & small & ~split_big
        is_split = candidates & split_big
        n_dupli, n_split = int(is_dupli.sum()), int(is_split.sum())
        if n_dupli:
            duplicate(params=params, optimizers=optimizers, state=state, mask=is_dupli)
        if n_split:  # duplicates were appended at the end and are not split
            is_split = torch.cat([is_split, torch.zeros(n_dupli, dtype=torch.bool, device=is_split.device)])
            split(params=params, optimizers=optimizers, state=state, mask=is_split, revised_opacity=self.revised_opacity)
        return n_dupli, n_split
