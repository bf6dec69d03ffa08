"""Densification and pruning: gsplat's ``DefaultStrategy`` with the 1.5.3 opacity-reset bug fixed.

gsplat 1.5.3 guards its opacity reset with ``step % reset_every == 0 & step > 0``, which Python
parses as ``(step % reset_every == 0) and (0 > 0)``: the reset never fires. ``EndoStrategy`` performs
it as intended (fixed upstream after the release).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Optional

import torch
from gsplat.strategy import DefaultStrategy
from gsplat.strategy.ops import duplicate, remove, reset_opa, split

from endogs.errors import ConfigError


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
    """Densification and pruning: gsplat's ``DefaultStrategy`` (its options, with defaults for
    schedules of a few thousand steps), the opacity reset fixed, and a cap: it never grows beyond
    ``max_gaussians``. When more Gaussians qualify for duplication or splitting than there is room
    for, those with the highest mean screen-space gradient are grown (a split adds one Gaussian
    net, a duplicate one). This dataclass is ``TrainConfig.strategy`` itself.

    Args:
        refine_start_iter: first step that refines.
        refine_stop_iter: last step that refines (absolute step).
        enabled: densify and prune at all.
        max_gaussians: stop growing beyond this many Gaussians (0 = no cap); None picks by device
            (CUDA 300k; CPU ``cpu_gaussians_per_pixel`` per training pixel).
        cpu_gaussians_per_pixel: the CPU cap per training pixel when ``max_gaussians`` is None
            (0.35: 28,672 Gaussians at 320x256, ~0.14 s per step on 2 cores; the ``fast``
            preset's 1.0 for real video, 0.26-0.32 s per step over 2800 iterations; see
            docs/BENCHMARKS.md).
        relocate_fraction: at the cap, when more Gaussians qualify for growth than there is room
            for, remove up to this fraction of all Gaussians per refinement, the least opaque first
            (never a growth candidate, never one at or above ``relocate_max_opacity``), and grow as
            many more candidates in their place: capacity moves to where the image gradient is
            (0 = off; the idea of 3DGS-MCMC's relocation, done here by pruning and growing).
        relocate_max_opacity: only Gaussians below this opacity are relocated.
    """

    refine_start_iter: int = 100
    refine_stop_iter: int = 2000
    enabled: bool = True
    max_gaussians: Optional[int] = None
    cpu_gaussians_per_pixel: float = 0.35
    relocate_fraction: float = 0.0
    relocate_max_opacity: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.relocate_fraction < 1.0:
            raise ConfigError(f"strategy.relocate_fraction must be in [0, 1), got {self.relocate_fraction}")
        if not 0.0 < self.relocate_max_opacity <= 1.0:
            raise ConfigError(f"strategy.relocate_max_opacity must be in (0, 1], got {self.relocate_max_opacity}")

    @classmethod
    def migrate_dict(cls, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Older configs spelled two options differently (refine_start, refine_stop)."""
        out = dict(data)
        for old, new in (("refine_start", "refine_start_iter"), ("refine_stop", "refine_stop_iter")):
            if old in out:
                if new in out:
                    raise ConfigError(f"{where}: both {old} and {new}; keep {new}")
                out[new] = out.pop(old)
        return out

    @torch.no_grad()
    def _grow_gs(self, params, optimizers, state, step):
        if not self.max_gaussians:
            return super()._grow_gs(params, optimizers, state, step)
        n = len(params["means"])
        room = self.max_gaussians - n
        state["last_relocate"] = 0
        if room <= 0 and not self.relocate_fraction:
            return 0, 0
        grads, candidates, small, split_big = self._candidates(params, state, step)
        excess = int(candidates.sum()) - room
        if self.relocate_fraction and excess > 0:
            opacity = torch.sigmoid(params["opacities"].flatten())
            movable = ~candidates & (opacity < self.relocate_max_opacity)
            k = min(excess, int(self.relocate_fraction * n), int(movable.sum()))
            if k > 0:
                score = torch.where(movable, opacity, torch.full_like(opacity, 2.0))
                dead = torch.zeros_like(candidates)
                dead[torch.topk(score, k, largest=False).indices] = True
                remove(params=params, optimizers=optimizers, state=state, mask=dead)
                state["last_relocate"] = k
                room += k
                grads, candidates, small, split_big = self._candidates(params, state, step)
        if room <= 0:
            return 0, 0
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

    def _candidates(self, params, state, step):
        """Mean screen-space gradients [N] and the growth candidates as gsplat's DefaultStrategy picks them:
        (grads, candidates, small, split_big)."""
        grads = state["grad2d"] / state["count"].clamp_min(1)  # [N]
        grow = grads > self.grow_grad2d
        small = torch.exp(params["scales"]).max(dim=-1).values <= self.grow_scale3d * state["scene_scale"]
        split_big = grow & ~small
        if step < self.refine_scale2d_stop_iter:
            split_big |= state["radii"] > self.grow_scale2d
        return grads, (grow & small) | split_big, small, split_big
