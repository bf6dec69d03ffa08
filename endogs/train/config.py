"""Training configuration (tyro turns the field docstrings into ``--help``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

from endogs.config_io import from_dict, load_yaml, merge
from endogs.errors import ConfigError
from endogs.init import InitConfig
from endogs.model.config import DeformConfig, LearningRates

CONFIGS_DIR = Path(__file__).resolve().parents[2] / "configs"


@dataclass
class DataOptions:
    """Which frames to read and how."""

    format: Optional[Literal["endonerf", "stereomis", "scared", "scared-keyframe", "hamlyn"]] = None
    """Dataset layout; detected when not given."""

    split: Optional[Literal["every8", "all", "alternate"]] = None
    """Train/test rule; the format's usual one when not given. Test frames never touch training."""

    downscale: Optional[float] = None
    """Train on images downscaled by this factor (intrinsics scaled to match); None picks by device:
    1 on CUDA, on CPU enough to bring the width to at most 320 px."""

    crop_bottom: int = 0
    """EndoNeRF: rows removed at the image bottom."""


@dataclass
class LossConfig:
    """Loss weights. Tool pixels are excluded by weighting the loss, never by zeroing renders."""

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

    time_smooth: float = 1e-3
    """Second-difference smoothness of the HexPlane time planes."""

    use_masks: bool = True
    """Exclude tool pixels (mask False) from the losses."""


@dataclass
class StrategyConfig:
    """Densification and pruning (gsplat DefaultStrategy, opacity reset fixed)."""

    enabled: bool = True
    """Densify and prune at all."""

    refine_start: int = 100
    """First step that refines."""

    refine_stop: int = 2000
    """Last step that refines (absolute step)."""

    refine_every: int = 100
    """Steps between refinements."""

    reset_every: int = 3000
    """Steps between opacity resets."""

    grow_grad2d: float = 0.0002
    """Screen-space gradient threshold to grow a Gaussian."""

    grow_scale3d: float = 0.01
    """Relative size below which a Gaussian is duplicated rather than split."""

    prune_scale3d: float = 0.1
    """Relative size above which a Gaussian is pruned after a reset."""

    prune_opa: float = 0.005
    """Opacity below which a Gaussian is pruned."""

    absgrad: bool = False
    """Use absolute gradients (AbsGS); raise grow_grad2d to about 0.0008 with it."""

    max_gaussians: Optional[int] = None
    """Stop growing beyond this many Gaussians; None picks by device (CUDA 300k; CPU 0.35 per
    training pixel, which keeps a 320x256 run near 0.5 s per step on 2 cores)."""


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

    device: Literal["auto", "cpu", "cuda"] = "auto"
    """Where to train; auto = CUDA when present."""

    seed: int = 0
    """Random seed (frame order, densification)."""

    log_every: int = 50
    """Steps between log lines."""

    checkpoint_every: int = 500
    """Steps between resumable checkpoints."""

    data: DataOptions = field(default_factory=DataOptions)
    init: InitConfig = field(default_factory=InitConfig)
    deform: DeformConfig = field(default_factory=DeformConfig)
    lr: LearningRates = field(default_factory=lambda: LearningRates(
        means=8e-4, scales=1e-2, quats=2e-3, sh0=1e-2, shN=5e-4, basis=3e-4, grid=3e-2, network=3e-3, mlp=1e-3))
    """Initial learning rates; higher than gsplat's 30k-step defaults for the Gaussians, for schedules
    of a few thousand steps. The HexPlane planes and decoder learn fast (a field at 4DGS's rates
    barely moves in 3000 steps); the per-Gaussian basis coefficients learn slowly (each one is
    updated by Adam at full step size whenever its frame is seen, so a high rate makes every
    Gaussian jitter over time); the pure MLP field's ReLUs die at the decoder's 3e-3 (measured),
    hence its own ``mlp`` rate. All deformation rates decay by ``deform_lr_final`` over the fine stage."""
    loss: LossConfig = field(default_factory=LossConfig)
    strategy: StrategyConfig = field(default_factory=StrategyConfig)

    def __post_init__(self) -> None:
        if self.iterations is not None and self.iterations < 1:
            raise ConfigError(f"iterations must be >= 1, got {self.iterations}")
        if not 0 <= self.sh_degree <= 3:
            raise ConfigError(f"sh_degree must be in 0..3, got {self.sh_degree}")
        if self.data.downscale is not None and self.data.downscale < 1:
            raise ConfigError(f"data.downscale must be >= 1, got {self.data.downscale}")
        if self.checkpoint_every < 1 or self.log_every < 1:
            raise ConfigError("checkpoint_every and log_every must be >= 1")

    def resolved(self, device_type: str, width: int, height: int) -> "TrainConfig":
        """A copy with the device-dependent defaults filled in for images of ``width`` x ``height``."""
        cuda = device_type == "cuda"
        iters = self.iterations or (14000 if cuda else 1500)
        coarse = self.coarse_iterations if self.coarse_iterations is not None else iters // 10
        if coarse > iters:
            raise ConfigError(f"coarse_iterations ({coarse}) exceeds iterations ({iters})")
        down = self.data.downscale or (1.0 if cuda else max(1.0, width / 320.0))
        pixels = (width / down) * (height / down)
        cap = self.strategy.max_gaussians or (300_000 if cuda else int(max(2000, 0.35 * pixels)))
        return merge(self, {"iterations": iters, "coarse_iterations": coarse, "device": device_type,
                            "data": {"downscale": down}, "strategy": {"max_gaussians": cap}})


def list_presets() -> list[str]:
    return sorted(p.stem for p in CONFIGS_DIR.glob("*.yaml"))


def load_preset(name_or_path: str) -> TrainConfig:
    """The default config updated by a preset YAML (a name in configs/ or a path); strict keys."""
    path = Path(name_or_path)
    if not path.suffix:
        path = CONFIGS_DIR / f"{name_or_path}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown preset {name_or_path!r}; available: {', '.join(list_presets()) or 'none'}")
    data = load_yaml(path)
    data.pop("description", None)
    return from_dict(TrainConfig, data, where=path.name)
