"""The renderable state of a scene at one time: what ``render()`` draws.

A ``Snapshot`` holds *activated* per-Gaussian tensors (positions in world units, unit-free
quaternions, positive scales, opacities in (0, 1), colours). The model produces one with
``scene.at(t)``; the renderer, exporter and viewer consume it. It carries no optimizer state.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Optional

import torch
from torch import Tensor


@dataclass
class Snapshot:
    means: Tensor  # [N, 3] world positions
    quats: Tensor  # [N, 4] rotations as (w, x, y, z); need not be normalised
    scales: Tensor  # [N, 3] positive standard deviations along the local axes
    opacities: Tensor  # [N] in (0, 1)
    # Colours: plain RGB [N, 3] when ``sh_degree`` is None, otherwise spherical-harmonics
    # coefficients [N, K, 3] with K >= (sh_degree + 1) ** 2 (gsplat's convention: the DC term
    # holds (rgb - 0.5) / 0.28209479, and the rendered colour is clamped at 0).
    colors: Tensor
    sh_degree: Optional[int] = None
    time: Optional[float] = None

    def __post_init__(self) -> None:
        n = self.means.shape[0]
        if self.means.shape != (n, 3):
            raise ValueError(f"Snapshot.means must be [N, 3], got {tuple(self.means.shape)}")
        if self.quats.shape != (n, 4):
            raise ValueError(f"Snapshot.quats must be [{n}, 4], got {tuple(self.quats.shape)}")
        if self.scales.shape != (n, 3):
            raise ValueError(f"Snapshot.scales must be [{n}, 3], got {tuple(self.scales.shape)}")
        if self.opacities.shape != (n,):
            raise ValueError(f"Snapshot.opacities must be [{n}], got {tuple(self.opacities.shape)}")
        if self.sh_degree is None:
            if self.colors.shape != (n, 3):
                raise ValueError(f"Snapshot.colors must be [{n}, 3] RGB, got {tuple(self.colors.shape)}")
        else:
            if not 0 <= self.sh_degree <= 3:
                raise ValueError(f"Snapshot.sh_degree must be in 0..3, got {self.sh_degree}")
            k = (self.sh_degree + 1) ** 2
            if self.colors.ndim != 3 or self.colors.shape[0] != n or self.colors.shape[1] < k or self.colors.shape[2] != 3:
                raise ValueError(f"Snapshot.colors must be [{n}, >={k}, 3] SH coefficients, got {tuple(self.colors.shape)}")

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def device(self) -> torch.device:
        return self.means.device

    def _map(self, fn) -> "Snapshot":
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for name in ("means", "quats", "scales", "opacities", "colors"):
            kw[name] = fn(kw[name])
        return Snapshot(**kw)

    def to(self, device=None, dtype=None) -> "Snapshot":
        return self._map(lambda t: t.to(device=device, dtype=dtype))

    def detach(self) -> "Snapshot":
        return self._map(lambda t: t.detach())

    def subset(self, index: Tensor) -> "Snapshot":
        """The Gaussians selected by a boolean mask or index tensor."""
        return self._map(lambda t: t[index])

    def with_(self, **changes) -> "Snapshot":
        return replace(self, **changes)
