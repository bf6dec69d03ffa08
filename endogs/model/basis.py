"""Per-Gaussian temporal-basis deformation (Deform3DGS family): no network.

Each Gaussian owns coefficients ``deform_<attribute> [N, B, C]`` over B fixed functions of t
(Gaussian RBFs with centres evenly spaced over [0, 1], and optionally Fourier terms). They live in
``GaussianModel.params`` so gsplat's densification copies, splits and removes them with the
Gaussians; the field itself holds only the (fixed) basis definition and reads the coefficients
from the model on every call.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from endogs.model.config import BasisConfig, register_builder
from endogs.model.deformation import ATTRIBUTE_DIMS, Deltas, NormalizedField, TimeLike, time_tensor
from endogs.model.gaussians import DEFORM_PREFIX

if TYPE_CHECKING:
    from endogs.model.gaussians import GaussianModel


class TemporalBasisField(NormalizedField):
    """``delta_attr(t) = sum_b coef[n, b, :] * phi_b(t)``; position offsets are in units of the AABB's
    largest half-extent. Coefficients start at zero (identity deformation)."""

    def __init__(self, cfg: BasisConfig, aabb: Tensor, model: "GaussianModel"):
        super().__init__(cfg, aabb)
        bc = cfg
        self.coef_lr = cfg.coef_lr
        centres = torch.linspace(0.0, 1.0, bc.num_rbf) if bc.num_rbf > 1 else torch.full((bc.num_rbf,), 0.5)
        spacing = 1.0 / (bc.num_rbf - 1) if bc.num_rbf > 1 else 1.0
        self.register_buffer("centres", centres)  # [R]
        self.rbf_sigma = bc.rbf_width * spacing
        self.register_buffer("freqs", math.pi * torch.arange(1, bc.num_fourier + 1, dtype=torch.float32))  # [F]
        self.num_basis = bc.num_rbf + 2 * bc.num_fourier
        n = len(model)
        for name in self.attributes:
            key = self.param_name(name)
            shape = (n, self.num_basis, ATTRIBUTE_DIMS[name])
            if key in model.params and tuple(model.params[key].shape) == shape:
                continue
            model.add_param(key, torch.zeros(shape, device=model.device))

    def gaussian_lrs(self) -> dict[str, float]:
        return {self.param_name(name): self.coef_lr for name in self.attributes}

    @staticmethod
    def param_name(attribute: str) -> str:
        """Key of an attribute's coefficients in ``GaussianModel.params``."""
        return DEFORM_PREFIX + attribute

    def basis(self, t: Tensor) -> Tensor:
        """Basis values [B] at a 0-dim time ``t``."""
        rbf = torch.exp(-0.5 * ((t - self.centres) / self.rbf_sigma) ** 2)  # [R]
        ft = self.freqs * t  # [F]
        return torch.cat([rbf, torch.sin(ft), torch.cos(ft)])  # [B]

    def forward(self, model: "GaussianModel", t: TimeLike) -> Deltas:
        t = time_tensor(t, model.params["means"])
        phi = self.basis(t)  # [B]
        outputs = {name: torch.einsum("nbc,b->nc", model.params[self.param_name(name)], phi) for name in self.attributes}
        return self.to_deltas(outputs)


@register_builder("basis")
def _build(cfg, model, aabb, n_frames) -> DeformationField:
    return TemporalBasisField(cfg, aabb, model)
