"""Training configuration (tyro turns the field docstrings into ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Mapping, Optional

from endogs.config_io import from_dict, load_yaml, merge, parse_yaml
from endogs.data import FormatName, SplitName
from endogs.errors import ConfigError
from endogs.init import InitConfig
from endogs.train.strategy import CappedStrategy
from endogs.utils.device import DeviceName
from endogs.model.imaging import ImagingConfig
from endogs.model.config import DEFAULT_KIND, DeformConfig, HexPlaneConfig, LearningRates

PRESETS_PACKAGE = "endogs.configs"
"""The package whose *.yaml files are the presets (shipped in the wheel as package data)."""


@dataclass
class DataOptions:
    """Which frames to read and how."""

    format: Optional[FormatName] = None
    """Dataset layout; detected when not given."""

    split: Optional[SplitName] = None
    """Train/test rule; the format's usual one when not given. Test frames never touch training."""

    downscale: Optional[float] = None
    """Train on images downscaled by this factor (intrinsics scaled to match); None picks by device:
    1 on CUDA, on CPU enough to bring the width to at most 320 px."""

    crop_bottom: int = 0
    """EndoNeRF: rows removed at the image bottom."""


@dataclass
class LossConfig:
    """Weights of the named loss terms (endogs.train.terms). Tool pixels are excluded by weighting
    the loss, never by zeroing renders."""

    l1: float = 0.8
    """Weight of the masked L1 colour loss."""

    dssim: float = 0.2
    """Weight of the masked D-SSIM colour loss."""

    depth: float = 0.05
    """Weight of the depth loss on valid tissue depth."""

    depth_kind: Literal["auto", "inverse_l1", "pearson"] = "auto"
    """inverse_l1 for stereo/metric depth, pearson (scale-invariant) for monocular priors; auto picks
    by the scene's depth unit."""

    tv: float = 1e-4
    """Total variation of the HexPlane spatial planes."""

    time_smooth: float = 3e-3
    """Second-difference smoothness of the HexPlane time planes (3e-3: +0.7 and +1.0 dB on held-out
    frames of the 320x256 synthetic scene over 1e-3 with two seeds, +0.4 dB on the demo, neutral on real
    video; docs/BENCHMARKS.md)."""

    time_l1: float = 0.0
    """Mean |1 - time plane| of the HexPlane (pulls features towards time independence)."""

    offset_bound: float = 1.0
    """Pull of the deformation field's position outputs back from its bound (``deform.max_offset``),
    where the bound's ``tanh`` has no gradient left (0 = off)."""

    pose_reg: float = 0.1
    """Pull of the refined camera poses towards the input poses (squared correction of the step's frame)."""

    exposure_reg: float = 0.01
    """Pull of the per-frame exposures towards identity (squared parameters of the step's frame)."""

    terms: dict[str, float] = field(default_factory=dict)
    """Weights of terms registered outside this config (``register_loss``), by name."""

    use_masks: bool = True
    """Exclude tool pixels (mask False) from the losses."""


@dataclass
class TrainConfig:
    """A complete per-scene optimisation."""

    iterations: Optional[int] = None
    """Total optimisation steps (coarse + fine); None picks by device (CPU 1500, CUDA 14000)."""

    coarse_iterations: Optional[int] = None
    """Static (deformation off) warm-up steps at the start; None = 10 % of the iterations."""

    sh_degree: int = 1
    """Maximum spherical-harmonics degree of the colours (0..3)."""

    sh_degree_interval: int = 500
    """Raise the active SH degree every this many steps."""

    init_opacity: float = 0.5
    """Initial opacity of the Gaussians."""

    init_scale: float = 1.0
    """Multiplier of the kNN-based initial scales."""

    means_lr_final: float = 0.01
    """Final / initial learning rate of the means (exponential decay)."""

    deform_lr_final: float = 0.1
    """Final / initial learning rate of the deformation field."""

    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Background colour."""

    device: DeviceName = "auto"
    """Where to train; auto = CUDA when present."""

    seed: int = 0
    """Random seed (frame order, densification)."""

    log_every: int = 50
    """Steps between log lines."""

    checkpoint_every: int = 500
    """Steps between resumable checkpoints."""

    max_nonfinite_steps: int = 5
    """A step whose loss or gradients are NaN/inf is skipped (no optimizer step; counted as
    ``skipped_nonfinite`` in the log); this many in a row stop training with an error, keeping the
    last checkpoint saved with finite parameters."""

    data: DataOptions = field(default_factory=DataOptions)
    init: InitConfig = field(default_factory=InitConfig)
    deform: DeformConfig = field(default_factory=HexPlaneConfig)
    """The deformation field (``--deform.kind`` picks it; its options and learning rates follow)."""
    lr: LearningRates = field(default_factory=lambda: LearningRates(means=8e-4, scales=1e-2, quats=2e-3, sh0=1e-2, shN=5e-4))
    """Initial learning rates of the Gaussians; higher than gsplat's 30k-step defaults, for schedules
    of a few thousand steps. The deformation field's rates are options of ``deform`` and all decay by
    ``deform_lr_final`` over the fine stage."""
    loss: LossConfig = field(default_factory=LossConfig)
    imaging: ImagingConfig = field(default_factory=ImagingConfig)
    """Camera refinement, head light and exposure."""
    strategy: CappedStrategy = field(default_factory=CappedStrategy)
    """Densification and pruning: the strategy object itself (gsplat DefaultStrategy's options)."""

    def __post_init__(self) -> None:
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        if not 0 <= self.sh_degree <= 3:
            raise ConfigError(f"sh_degree must be in 0..3, got {self.sh_degree}")
        if self.data.downscale is not None and self.data.downscale < 1:
            raise ConfigError(f"data.downscale must be >= 1, got {self.data.downscale}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("checkpoint_every and log_every must be >= 1")
        if self.max_nonfinite_steps < 1:
            raise ConfigError(f"max_nonfinite_steps must be >= 1, got {self.max_nonfinite_steps}")

    @classmethod
    def migrate_dict(cls, data: Mapping[str, Any], where: str) -> dict[str, Any]:
        """Configs before per-field classes kept the fields' rates in ``lr`` (grid, network, mlp,
        basis): move the chosen field's into ``deform``; the others, at their old defaults, go."""
        lr = data.get("lr")
        if not isinstance(lr, Mapping) or not set(lr) & set(_OLD_FIELD_RATES):
            return dict(data)
        lr = dict(lr)
        deform = dict(data.get("deform") or {})
        kind = deform.get("kind", DEFAULT_KIND)
        for old, (kinds, new, default) in _OLD_FIELD_RATES.items():
            if old not in lr:
                continue
            value = lr.pop(old)
            if kind in kinds:
                deform.setdefault(new, value)
            elif value != default:
                raise ConfigError(f"{where}: lr.{old} is now deform.{new} of kind {' or '.join(kinds)} (deform.kind is {kind!r}); move or remove it")
        return {**data, "lr": lr, "deform": deform}

    def resolved(self, device_type: str, width: int, height: int) -> "TrainConfig":
        """A copy with the device-dependent defaults filled in for images of ``width`` x ``height``."""
        cuda = device_type == "cuda"
        iters = self.iterations or (14000 if cuda else 1500)
        coarse = self.coarse_iterations if self.coarse_iterations is not None else iters // 10
        if coarse > iters:
            raise ConfigError(f"coarse_iterations ({coarse}) exceeds iterations ({iters})")
        down = self.data.downscale or (1.0 if cuda else max(1.0, width / 320.0))
        pixels = (width / down) * (height / down)
        if not self.strategy.cpu_gaussians_per_pixel > 0:
            raise ConfigError(f"strategy.cpu_gaussians_per_pixel must be > 0, got {self.strategy.cpu_gaussians_per_pixel}")
        cap = self.strategy.max_gaussians or (300_000 if cuda else int(max(2000, self.strategy.cpu_gaussians_per_pixel * pixels)))
        changes: dict[str, Any] = {"iterations": iters, "coarse_iterations": coarse, "device": device_type,
                                   "data": {"downscale": down}, "strategy": {"max_gaussians": cap}}
        if isinstance(self.deform, HexPlaneConfig) and self.deform.hidden_dim is None:
            changes["deform"] = {"hidden_dim": self.deform.decoder_width(device_type)}
        return merge(self, changes)


_OLD_FIELD_RATES = {
    "grid": (("hexplane",), "grid_lr", 3e-2),
    "network": (("hexplane",), "network_lr", 3e-3),
    "mlp": (("mlp",), "network_lr", 1e-3),
    "basis": (("basis",), "coef_lr", 3e-4),
}
"""Old ``lr`` key -> (kinds that use it, its name in the field's config, its old training default)."""


def _presets() -> dict[str, Any]:
    """name -> importlib.resources traversable of every bundled preset."""
    from importlib.resources import files

    return {p.name[: -len(".yaml")]: p for p in files(PRESETS_PACKAGE).iterdir() if p.name.endswith(".yaml")}


def list_presets() -> list[str]:
    return sorted(_presets())


def load_preset(name_or_path: str) -> TrainConfig:
    """The default config updated by a preset YAML (a bundled preset's name or a path); strict keys."""
    if Path(name_or_path).suffix:
        path = Path(name_or_path)
        data = load_yaml(path)
        where = path.name
    else:
        presets = _presets()
        if name_or_path not in presets:
            raise ConfigError(f"unknown preset {name_or_path!r}; available: {', '.join(sorted(presets)) or 'none'}")
        data = parse_yaml(presets[name_or_path].read_text(), f"preset {name_or_path}")
        where = f"{name_or_path}.yaml"
    data.pop("description", None)
    return from_dict(TrainConfig, data, where=where)
