"""Options of ``endogs prepare`` (video → scene folder). Field docstrings become ``--help``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from endogs.errors import ConfigError

Layout = Literal["auto", "top-bottom", "side-by-side", "mono"]


@dataclass
class PrepareOptions:
    """How to turn an endoscopic video (stereo or monocular) into a scene folder."""

    right: Optional[Path] = None
    """The right view as a second video or image folder (INPUT is then the left view)."""

    calib: Optional[Path] = None
    """Stereo calibration: OpenCV FileStorage YAML (M1 D1 M2 D2 R T, as SCARED's
    endoscope_calibration.yaml) or JSON. Default: endoscope_calibration.yaml, calibration.yaml,
    calibration.json or stereo_calib.json beside the input."""

    calib_size: Optional[tuple[int, int]] = None
    """Width and height of the images the calibration was made for; its intrinsics are scaled to the
    input frames. Default: the calibration's image_size when it states one (which must then equal the
    frame size), else the frame size."""

    layout: Layout = "auto"
    """How a single video or folder holds the views: top-bottom (SCARED rgb.mp4: top = left),
    side-by-side (left half = left), or mono. auto: top-bottom when the frames are taller than wide,
    side-by-side when more than twice as wide as tall, each only with a calibration; else mono."""

    swap: bool = False
    """Swap the left and right views (e.g. a stack with the left view at the bottom)."""

    start: int = 0
    """First input frame (0-based position in the video or in the sorted folder)."""

    end: Optional[int] = None
    """Input frame after the last one to use (exclusive); default: to the end."""

    stride: int = 1
    """Use every stride-th input frame."""

    fps: Optional[float] = None
    """Target frame rate for videos (stride = round(video fps / fps)); instead of --stride."""

    resize: Optional[tuple[int, int]] = None
    """Resize the input frames to WIDTH HEIGHT before rectification (the intrinsics follow)."""

    depth_min: float = 20.0
    """Nearest valid depth (mm); also sets the disparity search range."""

    depth_max: float = 250.0
    """Farthest valid depth (mm)."""

    num_disparities: Optional[int] = None
    """SGBM disparity range (a multiple of 16); default from depth_min: f*b/depth_min rounded up."""

    block_size: int = 5
    """SGBM block size (odd)."""

    lr_max_diff: float = 1.0
    """Left-right consistency: largest |d_left - d_right| (px) kept."""

    highlight_threshold: int = 240
    """Pixels whose darkest channel is at least this (0..255) are specular highlights: no depth."""

    highlight_dilate: float = 5.0
    """Dilation radius (px at 640 px width, scaled with the width) around highlights."""

    focal: Optional[float] = None
    """Monocular input without --calib: focal length in pixels (principal point at the centre)."""

    depth_model: Optional[Path] = None
    """Monocular input: a local monocular depth model folder (e.g. Depth-Anything in transformers
    format). Relative depth; nothing is downloaded."""

    masks: str = "none"
    """Tool masks: none (all tissue), auto (colour heuristic for grey/metallic instruments), or a
    folder or video of masks for the input (left) frames, polarity --mask-polarity."""

    mask_polarity: Literal["tool", "tissue"] = "tool"
    """What white (255) means in the given masks."""

    poses: str = "odometry"
    """Camera poses: identity (fixed endoscope), odometry (RGB-D odometry on the stereo depth with a
    keyframe pose graph), or a file: a folder of SCARED frame_data*.json, or a CSV/TXT with one pose
    per input frame."""

    pose_convention: Literal["auto", "c2w", "w2c"] = "auto"
    """Pose files: camera-to-world or world-to-camera; auto = w2c for SCARED JSON, c2w for CSV."""

    pose_unit: Literal["mm", "m"] = "mm"
    """Translation unit of pose files."""

    keyframe_every: int = 5
    """Odometry: a keyframe every this many frames; keyframe-to-keyframe edges refine the chained
    poses in a pose graph (0 = no pose graph)."""

    max_step_mm: float = 8.0
    """Odometry: a step moving more than this (mm) between consecutive frames counts as failed."""

    max_step_deg: float = 15.0
    """Odometry: a step rotating more than this (degrees) counts as failed."""

    preview: bool = True
    """Write preview.png (frames, depth, masks, trajectory)."""

    overwrite: bool = False
    """Replace an existing output folder."""

    def validate(self) -> None:
        if self.start < 0:
            raise ConfigError(f"--start must be >= 0, got {self.start}")
        if self.end is not None and self.end <= self.start:
            raise ConfigError(f"--end ({self.end}) must be greater than --start ({self.start})")
        if self.stride < 1:
            raise ConfigError(f"--stride must be >= 1, got {self.stride}")
        if self.fps is not None:
            if not self.fps > 0:
                raise ConfigError(f"--fps must be positive, got {self.fps}")
            if self.stride != 1:
                raise ConfigError("give either --fps or --stride, not both")
        if self.resize is not None and (len(self.resize) != 2 or min(self.resize) < 16):
            raise ConfigError(f"--resize takes WIDTH HEIGHT of at least 16 px, got {self.resize}")
        if self.calib_size is not None and (len(self.calib_size) != 2 or min(self.calib_size) < 1):
            raise ConfigError(f"--calib-size takes WIDTH HEIGHT, got {self.calib_size}")
        if not 0 < self.depth_min < self.depth_max:
            raise ConfigError(f"need 0 < --depth-min < --depth-max, got {self.depth_min} and {self.depth_max}")
        if self.num_disparities is not None and (self.num_disparities < 16 or self.num_disparities % 16):
            raise ConfigError(f"--num-disparities must be a positive multiple of 16, got {self.num_disparities}")
        if self.block_size < 1 or self.block_size % 2 == 0 or self.block_size > 31:
            raise ConfigError(f"--block-size must be odd, 1..31, got {self.block_size}")
        if self.lr_max_diff < 0:
            raise ConfigError(f"--lr-max-diff must be >= 0, got {self.lr_max_diff}")
        if not 0 <= self.highlight_threshold <= 256:
            raise ConfigError(f"--highlight-threshold must be in 0..256 (256 = off), got {self.highlight_threshold}")
        if self.keyframe_every < 0:
            raise ConfigError(f"--keyframe-every must be >= 0, got {self.keyframe_every}")
        if not (self.max_step_mm > 0 and self.max_step_deg > 0):
            raise ConfigError("--max-step-mm and --max-step-deg must be positive")
        if self.masks in ("", None):
            raise ConfigError("--masks takes none, auto or a path")
        if self.poses in ("", None):
            raise ConfigError("--poses takes identity, odometry or a path")
