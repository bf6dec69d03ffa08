"""The deformation-field interface, shared helpers and the factory (``DeformConfig.build``).

A field maps the canonical Gaussians and a time ``t`` in [0, 1] to per-Gaussian offsets
(:class:`Deltas`). Every field's output layer (or coefficient tensor) starts at zero, so at
initialisation the deformed scene equals the canonical scene exactly, for every ``t``.

How each offset is applied (``DynamicScene.at``):

- ``d_means [N, 3]``: added to the canonical means (world units).
- ``d_quats [N, 4]``: added to the *raw* quaternion before normalisation (4DGS/EndoGaussian style).
- ``d_scales [N, 3]``: added to the log-scales (a multiplicative scale change).
- ``d_opacity [N]``: added to the opacity logit.
- ``d_color [N, 3]``: an RGB offset of the view-independent colour (the SH DC term moves by
  ``d_color / SH_C0``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Union

import numpy as np
import torch
from torch import Tensor, nn

from endogs.model.config import DeformConfig, register_builder

if TYPE_CHECKING:
    from endogs.model.gaussians import GaussianModel

TimeLike = Union[float, int, Tensor]

ATTRIBUTE_DIMS = {"means": 3, "quats": 4, "scales": 3, "opacities": 1, "colors": 3}
"""Output channels of each deformable attribute."""

_DELTA_FIELDS = {"means": "d_means", "quats": "d_quats", "scales": "d_scales", "opacities": "d_opacity", "colors": "d_color"}


@dataclass
class Deltas:
    """Per-Gaussian offsets at one time; None where the attribute is not deformed."""

    d_means: Optional[Tensor] = None  # [N, 3] world units
    d_quats: Optional[Tensor] = None  # [N, 4] added to the raw quaternion
    d_scales: Optional[Tensor] = None  # [N, 3] log-space
    d_opacity: Optional[Tensor] = None  # [N] logit space
    d_color: Optional[Tensor] = None  # [N, 3] RGB offset of the DC colour

    @classmethod
    def from_outputs(cls, outputs: dict[str, Tensor]) -> "Deltas":
        """Build from ``{attribute: [N, C]}`` (opacities [N, 1] is squeezed to [N])."""
        kw = {}
        for name, value in outputs.items():
            kw[_DELTA_FIELDS[name]] = value[:, 0] if name == "opacities" else value
        return cls(**kw)


def time_tensor(t: TimeLike, like: Tensor) -> Tensor:
    """``t`` as a 0-dim tensor on ``like``'s device and dtype."""
    if isinstance(t, Tensor):
        if t.numel() != 1:
            raise ValueError(f"t must be a scalar, got shape {tuple(t.shape)}")
        return t.reshape(()).to(device=like.device, dtype=like.dtype)
    return torch.tensor(float(t), device=like.device, dtype=like.dtype)


def expand_aabb(aabb: Union[Tensor, np.ndarray], margin: float) -> Tensor:
    """[2, 3] box grown by ``margin`` x extent on each side; degenerate axes get 1 % of the largest extent."""
    aabb = torch.as_tensor(np.asarray(aabb) if not isinstance(aabb, Tensor) else aabb, dtype=torch.float32)
    if aabb.shape != (2, 3):
        raise ValueError(f"aabb must be [2, 3] (min row, max row), got {tuple(aabb.shape)}")
    lo, hi = aabb[0], aabb[1]
    if bool((hi < lo).any()):
        raise ValueError(f"aabb min must be <= max, got {aabb.tolist()}")
    ext = hi - lo  # [3]
    ext = ext.clamp_min(float(ext.max().clamp_min(1e-6)) * 0.01)
    centre = 0.5 * (lo + hi)
    half = ext * (0.5 + margin)
    return torch.stack([centre - half, centre + half])


def zero_linear(in_dim: int, out_dim: int) -> nn.Linear:
    """A Linear layer with zero weight and bias (identity-at-init output)."""
    layer = nn.Linear(in_dim, out_dim)
    nn.init.zeros_(layer.weight)
    nn.init.zeros_(layer.bias)
    return layer


class DeformationField(nn.Module):
    """Interface: ``forward(model, t) -> Deltas``.

    Subclasses set ``self.attributes`` (the deformed attributes, see ``DeformConfig.attributes``)
    and implement :meth:`forward`. Regularisers default to zero.
    """

    attributes: tuple[str, ...] = ()
    network_lr: float = 0.0
    """Adam rate of the field's own parameters in the default :meth:`param_groups` (set from the config)."""

    def forward(self, model: "GaussianModel", t: TimeLike) -> Deltas:  # pragma: no cover - interface
        raise NotImplementedError

    def param_groups(self) -> list[dict]:
        """Adam param groups of the field's own (non-per-Gaussian) parameters, each named."""
        params = [p for p in self.parameters() if p.requires_grad]
        return [{"params": params, "lr": self.network_lr, "name": "deform_network"}] if params else []

    def gaussian_lrs(self) -> dict[str, float]:
        """Adam rates of the per-Gaussian tensors the field added to ``GaussianModel.params``."""
        return {}

    def tv_loss(self) -> Tensor:
        """Spatial total variation of the field's feature grids (0 when it has none)."""
        return self._zero()

    def time_smoothness_loss(self) -> Tensor:
        """Smoothness of the field along time (0 when not applicable)."""
        return self._zero()

    def time_l1_loss(self) -> Tensor:
        """Distance of the field from time independence (0 when not applicable)."""
        return self._zero()

    def offset_bound_loss(self) -> Tensor:
        """Pull of the position outputs back from the field's bound (0 when not applicable)."""
        return self._zero()

    def mean_offset_loss(self) -> Tensor:
        """Squared mean position output of the last forward pass (0 when not applicable)."""
        return self._zero()

    def _zero(self) -> Tensor:
        for t in list(self.parameters()) + list(self.buffers()):
            return t.new_zeros(())
        return torch.zeros(())


class NoDeformation(DeformationField):
    """A static scene: no attribute is deformed."""

    def forward(self, model: "GaussianModel", t: TimeLike) -> Deltas:
        return Deltas()


class NormalizedField(DeformationField):
    """Base of fields that see AABB-normalised positions and emit position offsets in units of the
    AABB's largest half-extent (so learning rates need not depend on the scene's units)."""

    def __init__(self, cfg: DeformConfig, aabb: Tensor):
        super().__init__()
        self.attributes = cfg.attributes
        self.network_lr = float(getattr(cfg, "network_lr", 0.0))
        self.detach_canonical = cfg.detach_canonical
        aabb = expand_aabb(aabb, cfg.aabb_margin)
        self.register_buffer("aabb", aabb)  # [2, 3]
        self.register_buffer("motion_scale", 0.5 * (aabb[1] - aabb[0]).max())  # []
        self.max_offset = float(cfg.max_offset)
        self._raw_means: Optional[Tensor] = None  # the last position output that needs a gradient

    def normalize(self, means: Tensor) -> Tensor:
        """World positions [N, 3] -> [-1, 1] inside the AABB."""
        if self.detach_canonical:
            means = means.detach()
        lo, hi = self.aabb[0], self.aabb[1]
        return (means - lo) / (hi - lo) * 2.0 - 1.0

    def to_deltas(self, outputs: dict[str, Tensor]) -> Deltas:
        """Bound the position output (``max_offset * tanh(out / max_offset)``, the identity near 0),
        scale it to world units and pack."""
        if "means" in outputs:
            out = outputs["means"]
            self._raw_means = out if out.requires_grad else None
            if self.max_offset > 0:
                out = self.max_offset * torch.tanh(out / self.max_offset)
            outputs = dict(outputs, means=out * self.motion_scale)
        return Deltas.from_outputs(outputs)

    def offset_bound_loss(self) -> Tensor:
        """Mean squared excess of the last differentiable position output over half the bound
        (``max_offset / 2``, where ``tanh`` starts to flatten), summed over the axes.

        Past the bound the ``tanh`` has no gradient left, so a Gaussian pushed there stays there
        for good (out of view, unpruned); this term pulls the raw output back, and is zero for every
        motion well inside the bound. Zero (no gradient) when unbounded or before a forward pass."""
        raw = self._raw_means
        if raw is None or self.max_offset <= 0:
            return self._zero()
        return (raw.abs() - 0.5 * self.max_offset).clamp_min(0.0).square().sum(dim=-1).mean()

    def mean_offset_loss(self) -> Tensor:
        """Squared norm of the mean raw position output over the Gaussians of the last forward pass.

        A translation of the whole scene at one time is indistinguishable from a move of that
        frame's camera; with camera refinement on, this term hands it to the camera correction
        instead of the deformation field. Zero (no gradient) before a forward pass."""
        raw = self._raw_means
        if raw is None:
            return self._zero()
        return raw.mean(dim=0).square().sum()


class Heads(nn.Module):
    """One small MLP head per deformed attribute; each ends in a zero-initialised Linear."""

    def __init__(self, attributes: tuple[str, ...], in_dim: int, hidden_dim: int, hidden_layers: int):
        super().__init__()
        self.heads = nn.ModuleDict()
        for name in attributes:
            layers: list[nn.Module] = []
            d = in_dim
            for _ in range(hidden_layers):
                layers += [nn.ReLU(), nn.Linear(d, hidden_dim)]
                d = hidden_dim
            if hidden_layers:
                layers.append(nn.ReLU())
            layers.append(zero_linear(d, ATTRIBUTE_DIMS[name]))
            self.heads[name] = nn.Sequential(*layers)
        self.shared_relu = hidden_layers > 0  # every head's first module is the same ReLU of h

    def forward(self, h: Tensor) -> dict[str, Tensor]:
        """Each head's output [N, C]. With hidden layers every head starts with ``ReLU(h)``: computed
        once and shared (the same values and gradients as per head, without three of the four ReLUs
        and their backward passes over [N, hidden])."""
        if not self.shared_relu:
            return {name: head(h) for name, head in self.heads.items()}
        r = torch.relu(h)
        out = {}
        for name, head in self.heads.items():
            y = r
            for layer in list(head)[1:]:
                y = layer(y)
            out[name] = y
        return out


def make_deformation(
    cfg: DeformConfig,
    model: "GaussianModel",
    aabb: Optional[Union[Tensor, np.ndarray]] = None,
    n_frames: int = 2,
) -> DeformationField:
    """Build the configured field for ``model``.

    Args:
        cfg: the deformation options.
        model: the canonical Gaussians. For kind "basis" its ``params`` gain zero-initialised
            ``deform_<attribute>`` coefficient tensors (kept when already present with the right shape).
            Any registered kind works: this calls ``cfg.build``.
        aabb: [2, 3] box that normalises positions (e.g. ``PointCloud.aabb``); default: the box of
            the model's means.
        n_frames: number of frames of the sequence (sets the default HexPlane time resolution).

    Returns:
        The field, on the model's device.
    """
    if aabb is None:
        with torch.no_grad():
            m = model.params["means"]
            aabb = torch.stack([m.min(dim=0).values, m.max(dim=0).values]) if len(m) else torch.zeros(2, 3)
    aabb = torch.as_tensor(aabb, dtype=torch.float32).detach().cpu()
    field = cfg.build(model, aabb, n_frames)
    return field.to(model.device)


@register_builder("none")
def _build(cfg, model, aabb, n_frames) -> DeformationField:
    return NoDeformation()
