"""Configuration dataclasses of the model layer (tyro turns the field docstrings into ``--help``).

Every deformation field is one config dataclass: the options shared by all fields (which
attributes move, the AABB margin) come from :class:`DeformConfig`, its own options, its own
learning rates and ``build()`` from the subclass. ``@register_field`` makes a kind known to
YAML, the command line (``--deform.kind K``) and checkpoints; nothing else lists the kinds.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Mapping, Optional

from endogs.config_io import from_dict, to_dict
from endogs.errors import ConfigError

if TYPE_CHECKING:
    from torch import Tensor

    from endogs.model.deformation import DeformationField
    from endogs.model.gaussians import GaussianModel

FIELDS: dict[str, type["DeformConfig"]] = {}
"""kind -> config class of every registered deformation field (filled by :func:`register_field`)."""

DEFAULT_KIND = "hexplane"

_OLD_NESTED = ("hexplane", "mlp", "basis")
"""Keys under which configs before per-field classes nested each field's options."""


BUILDERS: dict[str, Any] = {}
"""kind -> ``fn(cfg, model, aabb, n_frames) -> DeformationField`` of the built-in fields, registered by
their own modules (endogs.model.hexplane, mlp, basis, deformation), so this module imports none of
them (no import cycle)."""


def register_builder(kind: str):
    """Decorator used by a field module: the function that builds the field of ``kind``."""

    def deco(fn):
        BUILDERS[kind] = fn
        return fn

    return deco


def register_field(cls: type["DeformConfig"]) -> type["DeformConfig"]:
    """Class decorator: make ``cls`` (a ``DeformConfig`` subclass whose ``kind`` field defaults to its
    name) selectable as ``deform.kind``."""
    kind = cls.__dataclass_fields__["kind"].default
    if not isinstance(kind, str) or not kind:
        raise TypeError(f"{cls.__name__}: a registered field needs a string default for 'kind'")
    FIELDS[kind] = cls
    return cls


def field_kinds() -> tuple[str, ...]:
    return tuple(FIELDS)


def field_type(kind: str, where: str = "deform") -> type["DeformConfig"]:
    """The config class of ``kind``; a one-line error naming the registered kinds otherwise."""
    if kind not in FIELDS:
        raise ConfigError(f"{where}.kind: {kind!r} is not one of {', '.join(map(repr, FIELDS))}")
    return FIELDS[kind]


@dataclass
class DeformConfig:
    """Which deformation field moves the canonical Gaussians over time, and what it deforms."""

    kind: str = ""
    """Field: hexplane (K-planes + MLP decoder), mlp (positional encoding + MLP), basis (per-Gaussian
    temporal basis), none (static scene), or any registered field. The options listed below are those
    of the chosen kind: see another's with --deform.kind K --help."""

    position: bool = True
    """Deform the means."""

    rotation: bool = True
    """Deform the rotations (an offset added to the raw quaternion before normalisation)."""

    scale: bool = True
    """Deform the log-scales."""

    opacity: bool = False
    """Deform the opacities (logit offset)."""

    color: bool = True
    """Deform the view-independent colour (an RGB offset of the DC term): specular highlights move
    with the tissue."""

    detach_canonical: bool = True
    """Feed the field a detached copy of the canonical means (hexplane, mlp), so position gradients
    reach the canonical means only through the additive path."""

    aabb_margin: float = 0.1
    """Margin added on each side of the point-cloud AABB that normalises positions, as a fraction of
    its extent."""

    max_offset: float = 0.5
    """Largest position offset, as a fraction of the AABB's largest half-extent (the offset is
    ``max_offset * tanh(raw / max_offset)``: the identity for small motions); 0 = unbounded.
    Unbounded, a few hundred Gaussians of a long real-video run were flung tens of mm to metres
    away (in front of the camera) once the HexPlane features grew, and the run collapsed."""

    def __post_init__(self) -> None:
        own = type(self).__dataclass_fields__["kind"].default
        if self.kind != own:
            raise ConfigError(f"deform: {type(self).__name__} is kind {own!r}, not {self.kind!r}")
        if FIELDS.get(self.kind) is not type(self):
            raise ConfigError(f"deform: {type(self).__name__} is not a registered field (kind {self.kind!r}); decorate it with @register_field")
        if self.kind != "none" and not self.attributes:
            raise ConfigError("deform: no attribute is deformed; enable one of position/rotation/scale/opacity/color or use kind none")
        if self.aabb_margin < 0:
            raise ConfigError(f"deform.aabb_margin must be >= 0, got {self.aabb_margin}")
        if not self.max_offset >= 0:
            raise ConfigError(f"deform.max_offset must be >= 0 (0 = unbounded), got {self.max_offset}")
        self.validate()

    def validate(self) -> None:
        """Check the field's own options (raise ``ConfigError``)."""

    def build(self, model: "GaussianModel", aabb: "Tensor", n_frames: int) -> "DeformationField":
        """The field for ``model`` (positions normalised by ``aabb`` [2, 3], a sequence of ``n_frames``)."""
        raise NotImplementedError

    @property
    def attributes(self) -> tuple[str, ...]:
        """Deformed attributes, in the order means, quats, scales, opacities, colors."""
        flags = (
            ("means", self.position),
            ("quats", self.rotation),
            ("scales", self.scale),
            ("opacities", self.opacity),
            ("colors", self.color),
        )
        return tuple(name for name, on in flags if on)

    def common(self) -> dict[str, Any]:
        """The shared options set away from their defaults (what a change of kind keeps)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(DeformConfig)
                if f.name != "kind" and getattr(self, f.name) != f.default}

    def with_kind(self, kind: str) -> "DeformConfig":
        """This config as field ``kind``: shared options set away from their defaults kept, the rest
        at the new field's defaults."""
        if kind == self.kind:
            return self
        return field_type(kind)(**self.common())

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples), e.g. for a checkpoint or YAML."""
        return to_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "deform") -> "DeformConfig":
        """Inverse of :meth:`to_dict`; unknown keys are errors."""
        return from_dict(cls, data, where)

    # hooks of endogs.config_io (strict YAML loading and merging)
    @classmethod
    def migrate_dict(cls, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Configs before per-field classes nested each field's options (``hexplane: {...}``,
        ``mlp: {...}``, ``basis: {...}``): keep the chosen kind's, drop the others."""
        data = dict(data)
        kind = data.get("kind", DEFAULT_KIND)
        for key in _OLD_NESTED:
            if isinstance(data.get(key), Mapping):
                nested = data.pop(key)
                if key == kind:
                    data = {**nested, **data}
        return data

    @classmethod
    def resolve_type(cls, data: Mapping[str, Any], where: str) -> type:
        default = cls.__dataclass_fields__["kind"].default or DEFAULT_KIND
        return field_type(data.get("kind", default), where)

    def merge_base(self, override: Mapping[str, Any]) -> dict[str, Any]:
        """What an override is applied to: a new ``kind`` starts from that field's defaults."""
        return self.with_kind(override.get("kind", self.kind)).to_dict()


@register_field
@dataclass
class HexPlaneConfig(DeformConfig):
    """HexPlane (K-planes over x, y, z, t) feature grid with a small MLP decoder."""

    kind: Literal["hexplane"] = "hexplane"

    feature_dim: int = 32
    """Feature channels of every plane (per resolution)."""

    spatial_resolutions: tuple[int, ...] = (32, 64)
    """Spatial resolution of each level; levels are concatenated (multi-resolution)."""

    time_resolution: Optional[int] = None
    """Cells along time; None = max(2, n_frames // 2)."""

    spatial_init: tuple[float, float] = (0.1, 0.5)
    """Uniform range of the initial spatial-plane values (K-planes' multiplicative init)."""

    time_init_noise: float = 0.01
    """Time planes start at 1 (time-independent features) plus uniform noise of this amplitude."""

    hidden_dim: Optional[int] = None
    """Width of the decoder MLP; None picks by device: 32 on the CPU (held-out PSNR within noise of
    64's on the synthetic scenes, 7-18 % less training time, docs/BENCHMARKS.md), 64 on CUDA."""

    trunk_layers: int = 1
    """Linear layers of the shared decoder trunk (>= 1)."""

    head_layers: int = 1
    """Hidden layers of each per-attribute head before its zero-initialised output layer."""

    grid_lr: float = 3e-2
    """Adam rate of the planes: they learn fast (a field at 4DGS's rates barely moves in 3000 steps)."""

    network_lr: float = 3e-3
    """Adam rate of the decoder weights."""

    def validate(self) -> None:
        if self.feature_dim < 1:
            raise ConfigError(f"deform.feature_dim must be >= 1, got {self.feature_dim}")
        if not self.spatial_resolutions or min(self.spatial_resolutions) < 2:
            raise ConfigError(f"deform.spatial_resolutions must be non-empty, each >= 2, got {self.spatial_resolutions}")
        if self.time_resolution is not None and self.time_resolution < 2:
            raise ConfigError(f"deform.time_resolution must be >= 2 or None, got {self.time_resolution}")
        lo, hi = self.spatial_init
        if not lo <= hi:
            raise ConfigError(f"deform.spatial_init must be (low, high) with low <= high, got {self.spatial_init}")
        if self.time_init_noise < 0:
            raise ConfigError(f"deform.time_init_noise must be >= 0, got {self.time_init_noise}")
        if (self.hidden_dim is not None and self.hidden_dim < 1) or self.trunk_layers < 1 or self.head_layers < 0:
            raise ConfigError("deform (hexplane) needs hidden_dim >= 1, trunk_layers >= 1 and head_layers >= 0")
        _check_rates(self, "grid_lr", "network_lr")

    def decoder_width(self, device_type: str) -> int:
        """``hidden_dim``, or the width it picks on ``device_type`` ("cpu", "cuda", ...) when None."""
        if self.hidden_dim is not None:
            return self.hidden_dim
        return 64 if device_type == "cuda" else 32

    def build(self, model: "GaussianModel", aabb: "Tensor", n_frames: int) -> "DeformationField":
        return BUILDERS["hexplane"](self, model, aabb, n_frames)


@register_field
@dataclass
class MLPConfig(DeformConfig):
    """Deformation MLP over the positional encoding of (canonical position, t) (SurgicalGaussian /
    Deformable-3DGS style)."""

    kind: Literal["mlp"] = "mlp"

    width: int = 256
    """Hidden width."""

    depth: int = 8
    """Hidden layers."""

    skips: tuple[int, ...] = (4,)
    """Hidden layers after which the encoded input is concatenated again."""

    pos_freqs: int = 10
    """Frequencies of the positional encoding of the AABB-normalised position."""

    time_freqs: int = 6
    """Frequencies of the encoding of t."""

    network_lr: float = 1e-3
    """Adam rate of the network; not the HexPlane decoder's 3e-3, at which this network's ReLUs die
    (measured)."""

    def validate(self) -> None:
        if self.width < 1 or self.depth < 1:
            raise ConfigError(f"deform.width and depth must be >= 1, got {self.width}, {self.depth}")
        if any(not 0 <= s < self.depth - 1 for s in self.skips):
            raise ConfigError(f"deform.skips must index hidden layers 0..{self.depth - 2}, got {self.skips}")
        if self.pos_freqs < 0 or self.time_freqs < 0:
            raise ConfigError("deform.pos_freqs and time_freqs must be >= 0")
        _check_rates(self, "network_lr")

    def build(self, model: "GaussianModel", aabb: "Tensor", n_frames: int) -> "DeformationField":
        return BUILDERS["mlp"](self, model, aabb, n_frames)


@register_field
@dataclass
class BasisConfig(DeformConfig):
    """Per-Gaussian temporal basis (Deform3DGS style): every deformed attribute of every Gaussian is
    a learned combination of fixed functions of t."""

    kind: Literal["basis"] = "basis"

    num_rbf: int = 17
    """Gaussian radial basis functions with centres evenly spaced over [0, 1]."""

    rbf_width: float = 1.0
    """Standard deviation of each RBF, in units of the centre spacing."""

    num_fourier: int = 0
    """Fourier frequencies k = 1..num_fourier, each giving sin(pi k t) and cos(pi k t)."""

    coef_lr: float = 3e-4
    """Adam rate of the per-Gaussian coefficients (unit-free: position offsets are scaled by the
    AABB). Slow: each is updated at full step size whenever its frame is seen, so a high rate makes
    every Gaussian jitter over time."""

    def validate(self) -> None:
        if self.num_rbf < 0 or self.num_fourier < 0 or self.num_rbf + self.num_fourier == 0:
            raise ConfigError("deform (basis) needs num_rbf >= 0, num_fourier >= 0 and at least one basis function")
        if self.rbf_width <= 0:
            raise ConfigError(f"deform.rbf_width must be > 0, got {self.rbf_width}")
        _check_rates(self, "coef_lr")

    def build(self, model: "GaussianModel", aabb: "Tensor", n_frames: int) -> "DeformationField":
        return BUILDERS["basis"](self, model, aabb, n_frames)


@register_field
@dataclass
class StaticConfig(DeformConfig):
    """No deformation: a static scene."""

    kind: Literal["none"] = "none"

    def build(self, model: "GaussianModel", aabb: "Tensor", n_frames: int) -> "DeformationField":
        return BUILDERS["none"](self, model, aabb, n_frames)


def _check_rates(cfg: DeformConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            raise ConfigError(f"deform.{name} must be >= 0, got {getattr(cfg, name)}")


@dataclass
class LearningRates:
    """Adam learning rates of the canonical Gaussians (initial values; schedules live in training).
    Each deformation field's own rates are options of its config."""

    means: float = 1.6e-4
    """Canonical means; multiplied by the scene scale."""

    scales: float = 5e-3
    """Log-scales."""

    quats: float = 1e-3
    """Raw quaternions."""

    opacities: float = 5e-2
    """Logit opacities."""

    sh0: float = 2.5e-3
    """SH DC coefficients."""

    shN: float = 2.5e-3 / 20
    """Higher SH bands."""

    eps: float = 1e-15
    """Adam epsilon (gsplat's value)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"learning rate {f.name} must be >= 0, got {getattr(self, f.name)}")
