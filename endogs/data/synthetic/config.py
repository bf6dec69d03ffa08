"""Configuration, constants and the in-memory scene of the synthetic generator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from endogs.camera import Camera
from endogs.errors import EndogsError

SyntheticLayout = Literal["endonerf", "scared"]
"""On-disk layouts the synthetic scene is written in (the one definition; the CLI uses this type)."""

CameraMotion = Literal["fixed", "moving"]
"""Camera paths of the synthetic scene (the one definition; the CLI uses this type)."""

__all__ = [
    "SyntheticConfig",
    "SyntheticScene",
    "SceneExistsError",
    "generate",
    "render_view",
    "SyntheticView",
    "surface_z",
    "material_coords",
    "tissue_points",
    "write_endonerf",
    "write_scared",
    "write_synthetic_scene",
    "poses_bounds",
    "depth_to_png16",
    "reprojection_matrix",
    "FORMAT_VERSION",
    "DEPTH_PNG_SCALE",
]

FORMAT_VERSION = 1
DEPTH_PNG_SCALE = 256.0
_GENERATOR = "endogs.data.synthetic"
_CHUNK = 32768  # points per vectorised step: keeps numpy temporaries in cache (2-3x faster)


class SceneExistsError(EndogsError, FileExistsError):
    """The output folder already holds files and ``overwrite`` was not requested."""


# ---------------------------------------------------------------------------------------------------
# Configuration and result types


@dataclass
class SyntheticConfig:
    """Synthetic endoscopic scene: tissue, head light, tool, noisy stereo-like depth."""

    width: int = 160
    """Image width in pixels."""
    height: int = 128
    """Image height in pixels."""
    n_frames: int = 24
    """Number of frames; frame i has time t = i / (n_frames - 1)."""
    seed: int = 0
    """Seed of the texture, the tissue folds and the depth noise."""
    camera: CameraMotion = "fixed"
    """'fixed': identity camera-to-world for every frame (EndoNeRF protocol); 'moving': a smooth motion of
    a few mm and a few degrees, identity at frame 0."""
    specular: bool = True
    """Add white specular highlights (and depth holes around them)."""
    tool: bool = True
    """Add the surgical tool (in images, noisy depth and tool masks)."""
    depth_noise: float = 0.3
    """Std (mm) of the noisy depth at 60 mm; it grows with depth squared, as for stereo."""
    focal_factor: float = 0.9
    """Focal length fx = fy = focal_factor * width, in pixels; the principal point is (W/2, H/2)."""
    distance: float = 60.0
    """Mean distance (mm) of the tissue from the first camera."""
    deformation: float = 1.0
    """Scale of all tissue motion (breathing and the pulled bump); 0 gives a static surface."""
    camera_motion: float = 1.0
    """Scale of the camera trajectory in 'moving' mode."""
    baseline: float = 4.2
    """Stereo baseline (mm) used for disparity and for the occlusion holes of the noisy depth."""
    left_strip: float = 0.08
    """Fraction of the width, at the left border, that has no depth (unseen by the right camera)."""
    holes: bool = True
    """Punch holes into the noisy depth: occlusions, around highlights and random blobs (the left strip
    is always applied)."""
    image_noise: float = 0.0
    """Std of Gaussian sensor noise added to the images (in [0,1] units)."""
    tilt: float = 0.0
    """Slope dz/dx of the tissue's mean plane: 0 faces the camera (depth varies ~1.1x across the view);
    0.5 is an oblique view of the tissue wall (~27 deg; far side to the right, depth varies ~1.6x across
    the view, as in SCARED), which makes camera rotation and sideways translation distinguishable."""
    exposure_drift: float = 0.0
    """Auto-exposure drift: frame i's image is multiplied by the gain exp(exposure_drift * u(t_i)), with
    u a smooth seeded curve, u(0) = 0 and |u| <= 1 (the exact gains are ``SyntheticScene.exposure``);
    0 = constant exposure."""

    def __post_init__(self) -> None:
        for name in ("width", "height", "n_frames", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"SyntheticConfig.{name} must be an integer, got {v!r}")
        if not 16 <= self.width <= 8192 or not 16 <= self.height <= 8192:
            raise ValueError(f"image size must be within 16..8192 px, got {self.width}x{self.height}")
        if not 1 <= self.n_frames <= 100_000:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.camera not in ("fixed", "moving"):
            raise ValueError(f"camera must be 'fixed' or 'moving', got {self.camera!r}")
        for name in ("specular", "tool", "holes"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"SyntheticConfig.{name} must be a bool, got {getattr(self, name)!r}")
        checks = {
            "depth_noise": (0.0, 10.0),
            "focal_factor": (0.3, 5.0),
            "distance": (20.0, 200.0),
            "deformation": (0.0, 2.0),
            "camera_motion": (0.0, 3.0),
            "baseline": (0.5, 50.0),
            "left_strip": (0.0, 0.5),
            "image_noise": (0.0, 0.5),
            "exposure_drift": (0.0, 1.0),
            "tilt": (-0.8, 0.8),
        }
        for name, (lo, hi) in checks.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise ValueError(f"SyntheticConfig.{name} must be a number, got {v!r}")
            if not (np.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"SyntheticConfig.{name} must be within [{lo}, {hi}], got {v!r}")

    @property
    def fx(self) -> float:
        return float(self.focal_factor * self.width)

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsics (pixel centres at +0.5, principal point at the image centre)."""
        f = self.fx
        return np.array([[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]])

    def times(self) -> np.ndarray:
        n = self.n_frames
        return np.zeros(1) if n == 1 else np.arange(n, dtype=np.float64) / (n - 1)


def _max_slope(deformation: float, tilt: float = 0.0) -> float:
    """Upper bound of |grad h| over space and time (mirrors the amplitudes in :class:`_SceneModel`).

    dome 7/32·e^-½ + folds 2π(0.8/38 + 0.45/24 + 0.25/15) + bump 4/10·e^-½·def + breathing
    1.5·0.25·2π/55·def + |tilt| (all lengths scale together with the distance, so slopes do not).
    """
    e = np.exp(-0.5)
    folds = 2 * np.pi * (0.8 / 38 + 0.45 / 24 + 0.25 / 15)
    return 7.0 / 32.0 * e + folds + (0.4 * e + 1.5 * 0.25 * 2 * np.pi / 55.0) * deformation + abs(tilt)


@dataclass
class SyntheticScene:
    """A generated scene in memory. Arrays are indexed by frame first."""

    config: SyntheticConfig
    images: np.ndarray
    """[N,H,W,3] float32 in [0,1], quantised to multiples of 1/255 (exactly what the PNGs hold)."""
    tool_masks: np.ndarray
    """[N,H,W] bool, True = tool (exact at pixel centres)."""
    depth: np.ndarray
    """[N,H,W] float32 mm, noisy visible depth (tool included), 0 = invalid."""
    gt_depth: np.ndarray
    """[N,H,W] float32 mm, exact depth of the tissue surface everywhere (also behind the tool)."""
    K: np.ndarray
    """[3,3] float64 intrinsics."""
    c2w: np.ndarray
    """[N,4,4] float64 camera-to-world, OpenCV axes; frame 0 is the identity."""
    times: np.ndarray
    """[N] float64, t = i / (N-1)."""
    albedo: np.ndarray
    """[N,H,W,3] float32 tissue albedo seen at each pixel (behind the tool too)."""
    normals: np.ndarray
    """[N,H,W,3] float32 world-space unit normals of the tissue (pointing towards the camera)."""
    specular_masks: np.ndarray
    """[N,H,W] bool, pixels whose specular term exceeds 0.25 (highlights)."""
    tool_depth: np.ndarray
    """[N,H,W] float32 mm, exact tool depth, 0 where there is no tool."""
    exposure: np.ndarray
    """[N] float64, the brightness gain of each frame (all 1 unless ``config.exposure_drift``)."""
    _model: "_SceneModel" = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def n_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    def camera(self, i: int) -> Camera:
        """The :class:`endogs.camera.Camera` of frame ``i``."""
        return Camera(self.K, self.c2w[i], self.width, self.height)

    @property
    def visible_depth(self) -> np.ndarray:
        """[N,H,W] exact depth of what each pixel sees (tool where the tool is)."""
        return np.where(self.tool_masks, self.tool_depth, self.gt_depth)


# ---------------------------------------------------------------------------------------------------
# The analytic scene model
