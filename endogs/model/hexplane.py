"""HexPlane deformation field: K-planes over (x, y, z, t) + a small MLP decoder (EndoGaussian/4DGS family)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from endogs.model.config import HexPlaneConfig, register_builder
from endogs.model.deformation import Deltas, Heads, NormalizedField, TimeLike, time_tensor

if TYPE_CHECKING:
    from endogs.model.gaussians import GaussianModel

try:  # the compiled CPU sampler; without numba the grid_sample path is used
    from endogs.model import hexplane_numba as _numba_sampling
except Exception:  # ImportError, or a broken llvmlite/numba install  # pragma: no cover
    _numba_sampling = None

SPATIAL_PAIRS = ((0, 1), (0, 2), (1, 2))
"""Axis pairs of the spatial planes xy, xz, yz."""

TIME_AXES = (0, 1, 2)
"""Spatial axis of the time planes xt, yt, zt."""


class HexPlaneField(NormalizedField):
    """Multi-resolution space-time planes, multiplied across the six planes (K-planes) and
    concatenated across resolutions, decoded by a trunk MLP and one zero-initialised head per
    deformed attribute.

    Per resolution level, the three spatial planes are one parameter ``[3, C, R, R]`` (plane
    ``(i, j)`` indexed ``[C, j, i]``) and the three time planes one parameter ``[3, C, T, R]``
    (``[C, t, i]``). They are sampled with ``grid_sample`` (bilinear, ``align_corners=True``,
    border padding) at AABB-normalised coordinates in [-1, 1]; time maps [0, 1] -> [-1, 1].
    Spatial planes start uniform in ``spatial_init`` and time planes at 1 (+ small noise), as in
    K-planes, so at initialisation the features do not depend on t.
    """

    def __init__(self, cfg: HexPlaneConfig, aabb: Tensor, n_frames: int):
        super().__init__(cfg, aabb)
        hc = cfg
        self.grid_lr = cfg.grid_lr
        self.time_resolution = int(hc.time_resolution or max(2, n_frames // 2))
        self.spatial_resolutions = tuple(int(r) for r in hc.spatial_resolutions)
        self.feature_dim = hc.feature_dim
        c, tr = hc.feature_dim, self.time_resolution
        self.spatial = nn.ParameterList(
            [nn.Parameter(torch.empty(3, c, r, r).uniform_(*hc.spatial_init)) for r in self.spatial_resolutions]
        )
        self.temporal = nn.ParameterList(
            [
                nn.Parameter(1.0 + torch.empty(3, c, tr, r).uniform_(-hc.time_init_noise, hc.time_init_noise))
                for r in self.spatial_resolutions
            ]
        )
        in_dim = c * len(self.spatial_resolutions)
        width = hc.decoder_width(aabb.device.type)
        trunk: list[nn.Module] = [nn.Linear(in_dim, width)]
        for _ in range(hc.trunk_layers - 1):
            trunk += [nn.ReLU(), nn.Linear(width, width)]
        self.trunk = nn.Sequential(*trunk)
        self.heads = Heads(self.attributes, width, width, hc.head_layers)

    def features(self, xyz: Tensor, t: Tensor) -> Tensor:
        """Grid features [N, C * levels] at normalised positions ``xyz`` [N, 3] and time ``t`` (0-dim, in [0, 1]).

        On the CPU, with coordinates that need no gradient, the compiled sampler of
        :mod:`endogs.model.hexplane_numba` computes the same values (and plane gradients) as the
        ``grid_sample`` path below, several times faster."""
        planes = [p for pair in zip(self.spatial, self.temporal) for p in pair]
        if _numba_sampling is not None and _numba_sampling.use_numba_sampling(xyz, planes):
            return _numba_sampling.hexplane_features(xyz, float(t * 2.0 - 1.0), planes)
        return self.features_reference(xyz, t)

    def features_reference(self, xyz: Tensor, t: Tensor) -> Tensor:
        """:meth:`features` by ``grid_sample`` and an autograd product (any device; gradients for the coordinates too)."""
        n = xyz.shape[0]
        tc = (t * 2.0 - 1.0).expand(n)  # [N]
        grid_s = torch.stack([xyz[:, [i, j]] for i, j in SPATIAL_PAIRS])  # [3, N, 2] as (x=axis i, y=axis j)
        grid_t = torch.stack([torch.stack([xyz[:, i], tc], dim=-1) for i in TIME_AXES])  # [3, N, 2]
        feats = []
        for spatial, temporal in zip(self.spatial, self.temporal):
            fs = F.grid_sample(spatial, grid_s[:, :, None], mode="bilinear", padding_mode="border", align_corners=True)
            ft = F.grid_sample(temporal, grid_t[:, :, None], mode="bilinear", padding_mode="border", align_corners=True)
            s0, s1, s2 = fs.unbind(0)
            t0, t1, t2 = ft.unbind(0)
            # the product of the six planes, in prod(dim=0)'s order (same values); an explicit chain has
            # a cheap backward where ProdBackward divides and handles zeros (~3x the time at 20k Gaussians)
            f = s0 * s1 * s2 * t0 * t1 * t2  # [C, N, 1]
            feats.append(f[:, :, 0].t())  # [N, C]
        return torch.cat(feats, dim=-1)  # [N, C * levels]

    def forward(self, model: "GaussianModel", t: TimeLike) -> Deltas:
        means = model.params["means"]  # [N, 3]
        t = time_tensor(t, means)
        h = self.trunk(self.features(self.normalize(means), t))  # [N, H]
        return self.to_deltas(self.heads(h))

    def param_groups(self) -> list[dict]:
        planes = [*self.spatial, *self.temporal]
        net = [*self.trunk.parameters(), *self.heads.parameters()]
        return [
            {"params": planes, "lr": self.grid_lr, "name": "deform_grid"},
            {"params": net, "lr": self.network_lr, "name": "deform_network"},
        ]

    def tv_loss(self) -> Tensor:
        """Mean squared first difference of the planes along their spatial axes (time planes only
        along space; time is regularised by :meth:`time_smoothness_loss`), summed over levels."""
        total = self._zero()
        for spatial, temporal in zip(self.spatial, self.temporal):
            total = total + (spatial[..., 1:] - spatial[..., :-1]).square().mean()
            total = total + (spatial[..., 1:, :] - spatial[..., :-1, :]).square().mean()
            total = total + (temporal[..., 1:] - temporal[..., :-1]).square().mean()
        return total

    def time_smoothness_loss(self) -> Tensor:
        """Mean squared second difference of the time planes along time, summed over levels."""
        total = self._zero()
        if self.time_resolution < 3:
            return total
        for temporal in self.temporal:  # [3, C, T, R]
            d2 = temporal[..., 2:, :] - 2.0 * temporal[..., 1:-1, :] + temporal[..., :-2, :]
            total = total + d2.square().mean()
        return total

    def time_l1_loss(self) -> Tensor:
        """Mean |1 - time plane| summed over levels: pulls features towards time independence."""
        total = self._zero()
        for temporal in self.temporal:
            total = total + (1.0 - temporal).abs().mean()
        return total


@register_builder("hexplane")
def _build(cfg, model, aabb, n_frames) -> DeformationField:
    return HexPlaneField(cfg, aabb, n_frames)
