"""MLP deformation field over the positional encoding of (canonical position, t)
(Deformable-3DGS / SurgicalGaussian family)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from endogs.model.config import MLPConfig, register_builder
from endogs.model.deformation import ATTRIBUTE_DIMS, Deltas, NormalizedField, TimeLike, time_tensor, zero_linear

if TYPE_CHECKING:
    from endogs.model.gaussians import GaussianModel


def positional_encoding(x: Tensor, num_freqs: int) -> Tensor:
    """``[x, sin(2^k pi x), cos(2^k pi x)]`` for k < num_freqs.

    Args:
        x: [N, D].
        num_freqs: L.

    Returns:
        [N, D * (1 + 2L)].
    """
    if num_freqs == 0:
        return x
    freqs = (2.0 ** torch.arange(num_freqs, device=x.device, dtype=x.dtype)) * math.pi  # [L]
    xf = x[..., None, :] * freqs[:, None]  # [N, L, D]
    return torch.cat([x, torch.sin(xf).flatten(-2), torch.cos(xf).flatten(-2)], dim=-1)


class MLPField(NormalizedField):
    """``depth`` ReLU layers of ``width`` with the encoded input concatenated again after each layer
    in ``skips``; one zero-initialised linear head per deformed attribute."""

    def __init__(self, cfg: MLPConfig, aabb: Tensor):
        super().__init__(cfg, aabb)
        mc = cfg
        self.pos_freqs, self.time_freqs = mc.pos_freqs, mc.time_freqs
        self.skips = tuple(mc.skips)
        in_dim = 3 * (1 + 2 * mc.pos_freqs) + (1 + 2 * mc.time_freqs)
        layers = []
        d = in_dim
        for i in range(mc.depth):
            layers.append(nn.Linear(d, mc.width))
            d = mc.width + (in_dim if i in self.skips else 0)
        self.layers = nn.ModuleList(layers)
        self.heads = nn.ModuleDict({name: zero_linear(d, ATTRIBUTE_DIMS[name]) for name in self.attributes})

    def forward(self, model: "GaussianModel", t: TimeLike) -> Deltas:
        means = model.params["means"]  # [N, 3]
        n = means.shape[0]
        t = time_tensor(t, means)
        x = torch.cat(
            [positional_encoding(self.normalize(means), self.pos_freqs), positional_encoding(t.expand(n, 1), self.time_freqs)],
            dim=-1,
        )  # [N, in_dim]
        h = x
        for i, layer in enumerate(self.layers):
            h = torch.relu(layer(h))
            if i in self.skips:
                h = torch.cat([h, x], dim=-1)
        return self.to_deltas({name: head(h) for name, head in self.heads.items()})


@register_builder("mlp")
def _build(cfg, model, aabb, n_frames) -> DeformationField:
    return MLPField(cfg, aabb)
