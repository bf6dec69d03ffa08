"""Configuration dataclasses of the model layer (tyro turns the field docstrings into ``--help``)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Mapping, Optional

from endogs.errors import ConfigError

DeformKind = Literal["hexplane", "mlp", "basis", "none"]


@dataclass
class HexPlaneConfig:
    """HexPlane (K-planes over x, y, z, t) feature grid with a small MLP decoder."""

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

    hidden_dim: int = 64
    """Width of the decoder MLP."""

    trunk_layers: int = 1
    """Linear layers of the shared decoder trunk (>= 1)."""

    head_layers: int = 1
    """Hidden layers of each per-attribute head before its zero-initialised output layer."""

    def validate(self) -> None:
        if self.feature_dim < 1:
            raise ConfigError(f"deform.hexplane.feature_dim must be >= 1, got {self.feature_dim}")
        if not self.spatial_resolutions or min(self.spatial_resolutions) < 2:
            raise ConfigError(f"deform.hexplane.spatial_resolutions must be non-empty, each >= 2, got {self.spatial_resolutions}")
        if self.time_resolution is not None and self.time_resolution < 2:
            raise ConfigError(f"deform.hexplane.time_resolution must be >= 2 or None, got {self.time_resolution}")
        lo, hi = self.spatial_init
        if not lo <= hi:
            raise ConfigError(f"deform.hexplane.spatial_init must be (low, high) with low <= high, got {self.spatial_init}")
        if self.time_init_noise < 0:
            raise ConfigError(f"deform.hexplane.time_init_noise must be >= 0, got {self.time_init_noise}")
        if self.hidden_dim < 1 or self.trunk_layers < 1 or self.head_layers < 0:
            raise ConfigError("deform.hexplane needs hidden_dim >= 1, trunk_layers >= 1 and head_layers >= 0")


@dataclass
class MLPConfig:
    """Deformation MLP over the positional encoding of (canonical position, t) (SurgicalGaussian /
    Deformable-3DGS style)."""

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

    def validate(self) -> None:
        if self.width < 1 or self.depth < 1:
            raise ConfigError(f"deform.mlp.width and depth must be >= 1, got {self.width}, {self.depth}")
        if any(not 0 <= s < self.depth - 1 for s in self.skips):
            raise ConfigError(f"deform.mlp.skips must index hidden layers 0..{self.depth - 2}, got {self.skips}")
        if self.pos_freqs < 0 or self.time_freqs < 0:
            raise ConfigError("deform.mlp.pos_freqs and time_freqs must be >= 0")


@dataclass
class BasisConfig:
    """Per-Gaussian temporal basis (Deform3DGS style): every deformed attribute of every Gaussian is
    a learned combination of fixed functions of t."""

    num_rbf: int = 17
    """Gaussian radial basis functions with centres evenly spaced over [0, 1]."""

    rbf_width: float = 1.0
    """Standard deviation of each RBF, in units of the centre spacing."""

    num_fourier: int = 0
    """Fourier frequencies k = 1..num_fourier, each giving sin(pi k t) and cos(pi k t)."""

    def validate(self) -> None:
        if self.num_rbf < 0 or self.num_fourier < 0 or self.num_rbf + self.num_fourier == 0:
            raise ConfigError("deform.basis needs num_rbf >= 0, num_fourier >= 0 and at least one basis function")
        if self.rbf_width <= 0:
            raise ConfigError(f"deform.basis.rbf_width must be > 0, got {self.rbf_width}")


@dataclass
class DeformConfig:
    """Which deformation field moves the canonical Gaussians over time, and what it deforms."""

    kind: DeformKind = "hexplane"
    """Field: "hexplane" (K-planes + MLP decoder), "mlp" (positional encoding + MLP), "basis"
    (per-Gaussian temporal basis) or "none" (static scene)."""

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

    hexplane: HexPlaneConfig = field(default_factory=HexPlaneConfig)
    """Options of kind "hexplane"."""

    mlp: MLPConfig = field(default_factory=MLPConfig)
    """Options of kind "mlp"."""

    basis: BasisConfig = field(default_factory=BasisConfig)
    """Options of kind "basis"."""

    def __post_init__(self) -> None:
        if self.kind not in ("hexplane", "mlp", "basis", "none"):
            raise ConfigError(f"deform.kind must be one of hexplane, mlp, basis, none; got {self.kind!r}")
        if self.kind != "none" and not self.attributes:
            raise ConfigError("deform: no attribute is deformed; enable one of position/rotation/scale/opacity/color or use kind none")
        if self.aabb_margin < 0:
            raise ConfigError(f"deform.aabb_margin must be >= 0, got {self.aabb_margin}")
        if not self.max_offset >= 0:
            raise ConfigError(f"deform.max_offset must be >= 0 (0 = unbounded), got {self.max_offset}")
        self.hexplane.validate()
        self.mlp.validate()
        self.basis.validate()

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

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (lists for tuples), e.g. for a checkpoint or YAML."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DeformConfig":
        """Inverse of :meth:`to_dict`; unknown keys are errors."""
        return _from_dict(cls, data, "deform")


def _from_dict(cls: type, data: Mapping[str, Any], where: str) -> Any:
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}")
    kwargs: dict[str, Any] = {}
    nested = {"hexplane": HexPlaneConfig, "mlp": MLPConfig, "basis": BasisConfig}
    for name, value in data.items():
        if name in nested and isinstance(value, Mapping):
            kwargs[name] = _from_dict(nested[name], value, f"{where}.{name}")
        elif isinstance(value, list):
            kwargs[name] = tuple(value)
        else:
            kwargs[name] = value
    return cls(**kwargs)


@dataclass
class LearningRates:
    """Adam learning rates of the scene's parameters (initial values; schedules live in training)."""

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

    basis: float = 1.6e-3
    """Per-Gaussian temporal-basis coefficients (kind "basis"; unit-free, position offsets are scaled
    by the AABB)."""

    grid: float = 1.6e-3
    """HexPlane planes."""

    network: float = 1.6e-4
    """HexPlane decoder weights."""

    mlp: float = 1e-3
    """Weights of the pure-MLP deformation field (kind "mlp"); its own rate because a deep field
    over a positional encoding trains at a different rate than the HexPlane's small decoder."""

    eps: float = 1e-15
    """Adam epsilon (gsplat's value)."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            if getattr(self, f.name) < 0:
                raise ConfigError(f"learning rate {f.name} must be >= 0, got {getattr(self, f.name)}")
