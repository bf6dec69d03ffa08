"""Canonical Gaussians: a ``ParameterDict`` of per-Gaussian tensors only.

gsplat's strategy ops (``duplicate``, ``split``, ``remove``, ...) index *every* entry of the
params dict along dim 0 and replace it by a new ``nn.Parameter``. So ``GaussianModel.params``
holds per-Gaussian tensors only, including per-Gaussian deformation coefficients (named
``deform_<attribute>``), and nothing may keep a reference to an entry across a strategy call:
read ``model.params[name]`` afresh each time.
"""

from __future__ import annotations

import math
from typing import Mapping, Optional, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from endogs.init.gaussians import SH_C0, gaussians_from_point_cloud
from endogs.init.pointcloud import PointCloud
from endogs.model.config import LearningRates
from endogs.snapshot import Snapshot

CORE_PARAMS = ("means", "scales", "quats", "opacities", "sh0", "shN")
DEFORM_PREFIX = "deform_"


def sh_degree_from_bases(k: int) -> int:
    """SH degree of K = (degree + 1) ** 2 coefficients."""
    d = int(round(math.sqrt(k))) - 1
    if (d + 1) ** 2 != k or not 0 <= d <= 3:
        raise ValueError(f"{k} SH coefficients do not match a degree in 0..3")
    return d


class GaussianModel(nn.Module):
    """Per-Gaussian parameters in gsplat's storage convention.

    ``params`` entries: ``means [N, 3]``, ``scales [N, 3]`` (log), ``quats [N, 4]`` (raw wxyz),
    ``opacities [N]`` (logit), ``sh0 [N, 1, 3]``, ``shN [N, K-1, 3]`` with K = (max_sh_degree + 1) ** 2,
    plus any ``deform_*`` per-Gaussian deformation parameters ``[N, ...]``.
    """

    def __init__(self, params: Mapping[str, Tensor]):
        """Wrap raw tensors (they become trainable ``nn.Parameter``s; sizes are validated)."""
        super().__init__()
        missing = [k for k in CORE_PARAMS if k not in params]
        if missing:
            raise ValueError(f"GaussianModel is missing parameter(s) {missing}")
        self.params = nn.ParameterDict()  # filled in order (a plain dict would be sorted by key)
        for name in (*CORE_PARAMS, *(k for k in params if k not in CORE_PARAMS)):
            v = params[name]
            self.params[name] = v if isinstance(v, nn.Parameter) else nn.Parameter(v.detach().clone())
        self.check()

    # ----------------------------------------------------------------------------------- building
    @classmethod
    def from_point_cloud(
        cls,
        pc: PointCloud,
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float = 1.0,
        device: Optional[Union[str, torch.device]] = None,
    ) -> "GaussianModel":
        """Gaussians seeded from a point cloud (see :func:`endogs.init.gaussians_from_point_cloud`)."""
        return cls(gaussians_from_point_cloud(pc, sh_degree, init_opacity, init_scale, device=device))

    @classmethod
    def empty(
        cls,
        num_gaussians: int,
        max_sh_degree: int = 3,
        extra: Optional[Mapping[str, tuple[int, ...]]] = None,
        device: Optional[Union[str, torch.device]] = None,
    ) -> "GaussianModel":
        """Zero-filled (identity-rotation) Gaussians of a given size, e.g. to load a checkpoint into.

        Args:
            num_gaussians: N.
            max_sh_degree: 0..3.
            extra: trailing shapes of additional per-Gaussian parameters, e.g. ``{"deform_means": (17, 3)}``.
            device: device of the tensors.
        """
        n, k = num_gaussians, (max_sh_degree + 1) ** 2
        params = {
            "means": torch.zeros(n, 3, device=device),
            "scales": torch.zeros(n, 3, device=device),
            "quats": F.pad(torch.ones(n, 1, device=device), (0, 3)),
            "opacities": torch.zeros(n, device=device),
            "sh0": torch.zeros(n, 1, 3, device=device),
            "shN": torch.zeros(n, k - 1, 3, device=device),
        }
        for name, shape in (extra or {}).items():
            params[name] = torch.zeros(n, *shape, device=device)
        return cls(params)

    def check(self) -> None:
        """Raise ValueError unless every parameter has the same leading size and core shapes are right."""
        n = self.params["means"].shape[0]
        for name, p in self.params.items():
            if p.ndim == 0 or p.shape[0] != n:
                raise ValueError(f"GaussianModel.params[{name!r}] has shape {tuple(p.shape)}, expected leading size {n}")
        expect = {"means": (n, 3), "scales": (n, 3), "quats": (n, 4), "opacities": (n,), "sh0": (n, 1, 3)}
        for name, shape in expect.items():
            if tuple(self.params[name].shape) != shape:
                raise ValueError(f"GaussianModel.params[{name!r}] must be {shape}, got {tuple(self.params[name].shape)}")
        shn = self.params["shN"]
        if shn.ndim != 3 or shn.shape[2] != 3:
            raise ValueError(f"GaussianModel.params['shN'] must be [N, K-1, 3], got {tuple(shn.shape)}")
        sh_degree_from_bases(shn.shape[1] + 1)

    # --------------------------------------------------------------------------------- properties
    def __len__(self) -> int:
        return self.params["means"].shape[0]

    @property
    def num_gaussians(self) -> int:
        return len(self)

    @property
    def max_sh_degree(self) -> int:
        return sh_degree_from_bases(self.params["shN"].shape[1] + 1)

    @property
    def device(self) -> torch.device:
        return self.params["means"].device

    def add_param(self, name: str, value: Tensor) -> None:
        """Register an extra per-Gaussian parameter (leading size N), e.g. deformation coefficients."""
        if value.shape[0] != len(self):
            raise ValueError(f"per-Gaussian parameter {name!r} must have leading size {len(self)}, got {tuple(value.shape)}")
        self.params[name] = nn.Parameter(value.to(self.device))

    # -------------------------------------------------------------------------------- activation
    def colors(self, sh_degree: Optional[int] = None, d_color: Optional[Tensor] = None) -> tuple[Tensor, int]:
        """SH coefficients [N, (d+1)^2, 3] up to degree ``d`` (default: the maximum).

        Args:
            sh_degree: degree to keep (0..max_sh_degree).
            d_color: optional [N, 3] RGB offset of the view-independent colour (added to the DC term
                as ``d_color / SH_C0``).
        """
        d = self.max_sh_degree if sh_degree is None else int(sh_degree)
        if not 0 <= d <= self.max_sh_degree:
            raise ValueError(f"sh_degree must be in 0..{self.max_sh_degree}, got {sh_degree}")
        sh0 = self.params["sh0"]  # [N, 1, 3]
        if d_color is not None:
            sh0 = sh0 + d_color[:, None, :] / SH_C0
        k = (d + 1) ** 2
        return torch.cat([sh0, self.params["shN"][:, : k - 1]], dim=1), d  # [N, K, 3]

    def canonical(self, sh_degree: Optional[int] = None) -> Snapshot:
        """The undeformed Gaussians, activated (normalised quats, exp scales, sigmoid opacities)."""
        p = self.params
        colors, d = self.colors(sh_degree)
        return Snapshot(
            means=p["means"],
            quats=F.normalize(p["quats"], dim=-1),
            scales=torch.exp(p["scales"]),
            opacities=torch.sigmoid(p["opacities"]),
            colors=colors,
            sh_degree=d,
        )

    # -------------------------------------------------------------------------------- optimizers
    def learning_rate(self, name: str, lrs: LearningRates, scene_scale: float = 1.0, extra: Optional[Mapping[str, float]] = None) -> float:
        """Initial learning rate of parameter ``name`` (``means`` scaled by ``scene_scale``;
        entries a deformation field added take their rate from ``extra``)."""
        if name == "means":
            return lrs.means * scene_scale
        if name in CORE_PARAMS:
            return getattr(lrs, name)
        if extra is not None and name in extra:
            return extra[name]
        raise KeyError(f"no learning rate for per-Gaussian parameter {name!r}")

    def make_optimizers(
        self, lrs: Optional[LearningRates] = None, scene_scale: float = 1.0, batch_size: int = 1,
        extra: Optional[Mapping[str, float]] = None,
    ) -> dict[str, torch.optim.Adam]:
        """One Adam per parameter, each with a single named param group (gsplat's strategy contract).

        Args:
            lrs: learning rates (defaults: ``LearningRates()``).
            scene_scale: multiplies the means' learning rate (e.g. ``PointCloud.scale_hint``).
            batch_size: images per step; scales lr, eps and betas as gsplat's simple_trainer does.
            extra: rates of the entries a deformation field added (``DeformationField.gaussian_lrs``).

        Returns:
            ``{name: Adam}`` for every trainable entry of ``params``.
        """
        lrs = lrs or LearningRates()
        bs = batch_size
        out: dict[str, torch.optim.Adam] = {}
        for name, p in self.params.items():
            if not p.requires_grad:
                continue
            lr = self.learning_rate(name, lrs, scene_scale, extra) * math.sqrt(bs)
            out[name] = torch.optim.Adam(
                [{"params": [p], "lr": lr, "name": name}],
                eps=lrs.eps / math.sqrt(bs),
                betas=(1 - bs * (1 - 0.9), 1 - bs * (1 - 0.999)),
            )
        return out
