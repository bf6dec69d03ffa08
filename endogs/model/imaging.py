"""What the endoscope adds between the tissue and the image: refined camera poses, the head light
and per-frame exposure (each optional). Configured by :class:`ImagingConfig`, held by the scene
(``scene.imaging``), saved in its checkpoint, and applied by :func:`endogs.view.render_frame`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch
from torch import nn

from endogs.camera import cameras_move
from endogs.errors import ConfigError
from endogs.model.appearance import Exposure, HeadLight
from endogs.model.pose import PoseCorrections


@dataclass
class ImagingConfig:
    """Camera refinement and endoscope appearance (tyro turns the docstrings into ``--help``)."""

    refine_poses: Optional[bool] = False
    """Refine a per-frame SE(3) correction of every training camera; None = auto: on when the scene's
    cameras move (prepared videos, SCARED), off for fixed-camera scenes (EndoNeRF identity poses).
    Off by default for now: on the synthetic drift benchmark (scripts/bench_pose.py) refinement cut
    the pose error but did not yet raise held-out PSNR (docs/BENCHMARKS.md)."""

    pose_lr: float = 5e-4
    """Adam rate of the pose corrections (radians; translations in units of the scene scale)."""

    pose_start: Optional[int] = None
    """First step that refines the poses; None = after the static (coarse) stage."""

    rows_lr_final: float = 0.01
    """Factor of the pose and exposure rates at the last step (exponential decay from pose_start;
    1 = constant). The decay let the model settle: +0.8 dB on real video, +0.3 dB on the synthetic
    drift benchmark against constant rates (docs/BENCHMARKS.md)."""

    head_light: bool = False
    """Shade the Gaussians by a light at the camera: learnable distance falloff and Lambertian term."""

    light_lr: float = 1e-2
    """Adam rate of the head-light falloff and Lambertian weight."""

    exposure: bool = False
    """Learn a per-frame affine colour (exposure, white balance) of the training frames; test frames
    get it interpolated in time from their neighbours."""

    exposure_lr: float = 1e-3
    """Adam rate of the per-frame exposures."""

    def __post_init__(self) -> None:
        for name in ("pose_lr", "light_lr", "exposure_lr", "rows_lr_final"):
            if not getattr(self, name) >= 0:
                raise ConfigError(f"imaging.{name} must be >= 0, got {getattr(self, name)}")
        if self.pose_start is not None and self.pose_start < 0:
            raise ConfigError(f"imaging.pose_start must be >= 0, got {self.pose_start}")


class Imaging(nn.Module):
    """The optional imaging terms of one video (any of them may be None)."""

    def __init__(self, poses: Optional[PoseCorrections] = None, head_light: Optional[HeadLight] = None,
                 exposure: Optional[Exposure] = None):
        super().__init__()
        self.poses = poses
        self.head_light = head_light
        self.exposure = exposure

    @property
    def active(self) -> bool:
        return self.poses is not None or self.head_light is not None or self.exposure is not None

    def param_groups(self, cfg: ImagingConfig) -> list[dict]:
        """Optimizer groups; ``"rows": True`` marks the per-frame tables (one row per training frame),
        which :class:`endogs.train.optim.ImagingOptimizer` updates lazily."""
        groups = []
        if self.poses is not None:
            groups.append({"params": [self.poses.delta], "lr": cfg.pose_lr, "name": "poses", "rows": True})
        if self.head_light is not None:
            groups.append({"params": list(self.head_light.parameters()), "lr": cfg.light_lr, "name": "head_light"})
        if self.exposure is not None:
            groups.append({"params": [self.exposure.params], "lr": cfg.exposure_lr, "name": "exposure", "rows": True})
        return groups

    def describe(self) -> dict[str, Any]:
        """What is on, for run.yaml/metrics.json."""
        return {"refined_poses": self.poses is not None, "head_light": self.head_light is not None,
                "exposure": self.exposure is not None}

    def to_checkpoint(self) -> dict[str, Any]:
        return {
            "poses": None if self.poses is None else self.poses.to_checkpoint(),
            "head_light": None if self.head_light is None else self.head_light.to_checkpoint(),
            "exposure": None if self.exposure is None else self.exposure.to_checkpoint(),
        }

    @classmethod
    def from_checkpoint(cls, state: Optional[dict], device: Any = "cpu") -> "Imaging":
        state = state or {}
        poses = None if state.get("poses") is None else PoseCorrections.from_checkpoint(state["poses"])
        light = None if state.get("head_light") is None else HeadLight.from_checkpoint(state["head_light"])
        expo = None if state.get("exposure") is None else Exposure.from_checkpoint(state["exposure"])
        return cls(poses, light, expo).to(device)


def build_imaging(cfg: ImagingConfig, train_indices: Sequence[int], train_times: Sequence[float],
                  train_c2ws: Sequence[np.ndarray], scene_scale: float, reference_distance: float,
                  device: Any = "cpu") -> Imaging:
    """The imaging terms a new run trains (poses: ``cfg.refine_poses``, or auto by camera motion)."""
    refine = cfg.refine_poses if cfg.refine_poses is not None else cameras_move(train_c2ws)
    poses = PoseCorrections(train_indices, train_times, scene_scale) if refine else None
    light = HeadLight(reference_distance) if cfg.head_light else None
    expo = Exposure(train_indices, train_times) if cfg.exposure else None
    return Imaging(poses, light, expo).to(device)
