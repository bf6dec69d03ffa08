"""Depth prior -> point cloud: multi-frame unprojection of tissue pixels with valid depth.

The canonical scene of a deforming tissue is seeded from the depth maps of many training frames,
not only frame 0: regions hidden by an instrument in one frame are visible (and unprojected) in
others. Each frame's depth is cleaned (valid, tissue, within per-frame percentiles), unprojected
with that frame's pose, then the fused cloud is voxel-downsampled, cleaned of statistical
outliers (open3d) and capped to a maximum number of points.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence

import numpy as np

from endogs.data.types import Frame
from endogs.errors import ConfigError, DataError


@dataclass
class InitConfig:
    """Options of the depth-prior initialisation (``endogs.init``)."""

    num_frames: int = 32
    """Number of training frames to unproject, spread evenly over the sequence (first and last
    included); 0 means every frame."""

    fusion: Literal["all", "fill"] = "all"
    """How frames are fused: "all" keeps the points of every selected frame; "fill" keeps the first
    selected frame whole and adds points of later frames only where the first frame has no valid
    tissue depth (behind the tool, outside its view), which gives a sharper canonical surface when
    the tissue moves."""

    depth_percentiles: tuple[float, float] = (2.0, 98.0)
    """Per-frame percentile range (low, high) of valid tissue depth to keep; pixels outside are
    dropped as outliers."""

    pixel_stride: int = 2
    """Use every n-th pixel along rows and columns (1 = every pixel)."""

    voxel_size: Optional[float] = None
    """Voxel size of the downsampling, in world (depth) units; None = the bounding-box diagonal of
    the fused cloud divided by ``voxel_divisions``; 0 disables downsampling."""

    voxel_divisions: int = 256
    """With ``voxel_size`` None, the number of voxels along the bounding-box diagonal."""

    remove_outliers: bool = True
    """Run open3d's statistical outlier removal after downsampling."""

    outlier_neighbors: int = 20
    """Neighbours considered by the statistical outlier removal."""

    outlier_std_ratio: float = 2.0
    """Points whose mean neighbour distance exceeds the global mean by this many standard deviations
    are removed."""

    max_points: int = 50_000
    """Cap on the number of points (a seeded random subset is kept when exceeded)."""

    use_masks: bool = True
    """Use only tissue pixels (``Frame.mask`` True); frames without a mask use every pixel."""

    seed: int = 0
    """Seed of the random subset."""

    def __post_init__(self) -> None:
        lo, hi = self.depth_percentiles
        if not 0.0 <= lo < hi <= 100.0:
            raise ConfigError(f"init.depth_percentiles must satisfy 0 <= low < high <= 100, got {self.depth_percentiles}")
        if self.num_frames < 0:
            raise ConfigError(f"init.num_frames must be >= 0 (0 = all frames), got {self.num_frames}")
        if self.fusion not in ("all", "fill"):
            raise ConfigError(f"init.fusion must be 'all' or 'fill', got {self.fusion!r}")
        if self.pixel_stride < 1:
            raise ConfigError(f"init.pixel_stride must be >= 1, got {self.pixel_stride}")
        if self.voxel_size is not None and self.voxel_size < 0:
            raise ConfigError(f"init.voxel_size must be >= 0 or None (auto), got {self.voxel_size}")
        if self.voxel_divisions < 1:
            raise ConfigError(f"init.voxel_divisions must be >= 1, got {self.voxel_divisions}")
        if self.outlier_neighbors < 1:
            raise ConfigError(f"init.outlier_neighbors must be >= 1, got {self.outlier_neighbors}")
        if self.outlier_std_ratio <= 0:
            raise ConfigError(f"init.outlier_std_ratio must be > 0, got {self.outlier_std_ratio}")
        if self.max_points < 1:
            raise ConfigError(f"init.max_points must be >= 1, got {self.max_points}")


@dataclass
class PointCloud:
    """A coloured point cloud in world coordinates.

    Attributes:
        xyz: float32 [M, 3] world positions.
        rgb: float32 [M, 3] colours in [0, 1].
        frame_indices: the ``Frame.index`` of each frame that contributed points.
    """

    xyz: np.ndarray  # [M, 3]
    rgb: np.ndarray  # [M, 3]
    frame_indices: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.xyz = np.ascontiguousarray(self.xyz, dtype=np.float32)
        self.rgb = np.ascontiguousarray(self.rgb, dtype=np.float32)
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3:
            raise ValueError(f"PointCloud.xyz must be [M, 3], got {self.xyz.shape}")
        if self.rgb.shape != self.xyz.shape:
            raise ValueError(f"PointCloud.rgb must be {self.xyz.shape}, got {self.rgb.shape}")

    def __len__(self) -> int:
        return self.xyz.shape[0]

    @property
    def aabb(self) -> np.ndarray:
        """[2, 3] float32: per-axis minimum (row 0) and maximum (row 1)."""
        if len(self) == 0:
            return np.zeros((2, 3), dtype=np.float32)
        return np.stack([self.xyz.min(axis=0), self.xyz.max(axis=0)])

    @property
    def center(self) -> np.ndarray:
        """[3] centre of the bounding box."""
        return self.aabb.mean(axis=0)

    @property
    def scale_hint(self) -> float:
        """Extent of the cloud for gsplat's ``scene_scale``: half the bounding-box diagonal (the radius
        of the sphere around the box), in world units."""
        lo, hi = self.aabb
        return float(0.5 * np.linalg.norm(hi - lo))


def select_frames(frames: Sequence[Frame], num_frames: int) -> list[Frame]:
    """``num_frames`` frames spread evenly over ``frames`` (first and last included; 0 = all)."""
    n = len(frames)
    if num_frames == 0 or num_frames >= n:
        return list(frames)
    idx = np.unique(np.round(np.linspace(0, n - 1, num_frames)).astype(int))
    return [frames[i] for i in idx]


def _valid_pixels(frame: Frame, depth: np.ndarray, cfg: InitConfig) -> np.ndarray:
    """Boolean [H, W]: tissue pixels with valid depth inside the frame's percentile range."""
    valid = np.isfinite(depth) & (depth > 0)
    if cfg.use_masks and frame.has_mask:
        mask = frame.mask
        if mask is not None:
            if mask.shape != depth.shape:
                raise DataError(f"frame {frame.index}: mask {mask.shape} and depth {depth.shape} differ in size")
            valid &= mask.astype(bool)
    if not valid.any():
        return valid
    lo, hi = np.percentile(depth[valid], cfg.depth_percentiles)
    return valid & (depth >= lo) & (depth <= hi)


def _frame_points(frame: Frame, cfg: InitConfig) -> Optional[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """World points [M, 3], colours [M, 3] and the full-resolution valid mask [H, W] of one frame."""
    depth = frame.depth
    if depth is None:
        return None
    depth = np.asarray(depth, dtype=np.float32)
    h, w = frame.height, frame.width
    if depth.shape != (h, w):
        raise DataError(f"frame {frame.index}: depth is {depth.shape}, camera is {h}x{w}")
    image = np.asarray(frame.image, dtype=np.float32)
    if image.shape[:2] != (h, w):
        raise DataError(f"frame {frame.index}: image is {image.shape[:2]}, camera is {h}x{w}")
    valid = _valid_pixels(frame, depth, cfg)  # [H, W]
    keep = np.zeros_like(valid)
    s = cfg.pixel_stride
    keep[::s, ::s] = valid[::s, ::s]
    v, u = np.nonzero(keep)
    uv = np.stack([u + 0.5, v + 0.5], axis=-1)  # pixel centres
    xyz = frame.camera.unproject(depth[v, u].astype(np.float64), uv=uv)  # [M, 3]
    rgb = np.clip(image[v, u, :3], 0.0, 1.0)  # [M, 3]
    return xyz.astype(np.float32), rgb.astype(np.float32), valid


def _outside_reference(xyz: np.ndarray, ref: Frame, ref_valid: np.ndarray) -> np.ndarray:
    """Boolean [M]: points that the reference frame does not cover with valid tissue depth."""
    uv, z = ref.camera.project(xyz.astype(np.float64))
    u = np.floor(uv[:, 0]).astype(np.int64)
    v = np.floor(uv[:, 1]).astype(np.int64)
    inside = (z > 0) & (u >= 0) & (u < ref.width) & (v >= 0) & (v < ref.height)
    covered = np.zeros(len(xyz), dtype=bool)
    covered[inside] = ref_valid[v[inside], u[inside]]
    return ~covered


def point_cloud_from_frames(frames: Sequence[Frame], cfg: Optional[InitConfig] = None) -> PointCloud:
    """Fuse the depth maps of several frames into one cleaned, coloured point cloud.

    Args:
        frames: candidate frames in time order (normally the training frames); frames without
            depth are skipped.
        cfg: options; defaults to ``InitConfig()``.

    Returns:
        The fused cloud, with at most ``cfg.max_points`` points.

    Raises:
        DataError: no frame has a depth map, or no valid tissue depth remains.
    """
    cfg = cfg or InitConfig()
    with_depth = [f for f in frames if f.has_depth]
    if not with_depth:
        raise DataError(
            "scene has no depth maps; depth-prior initialisation needs them: use `endogs prepare` "
            "with stereo depth or a monocular depth model"
        )
    chosen = select_frames(with_depth, cfg.num_frames)

    xyz_parts: list[np.ndarray] = []
    rgb_parts: list[np.ndarray] = []
    used: list[int] = []
    ref: Optional[tuple[Frame, np.ndarray]] = None
    for frame in chosen:
        out = _frame_points(frame, cfg)
        if out is None or len(out[0]) == 0:
            continue
        xyz, rgb, valid = out
        if cfg.fusion == "fill":
            if ref is None:
                ref = (frame, valid)
            else:
                keep = _outside_reference(xyz, *ref)
                xyz, rgb = xyz[keep], rgb[keep]
                if len(xyz) == 0:
                    continue
        xyz_parts.append(xyz)
        rgb_parts.append(rgb)
        used.append(frame.index)
    if not xyz_parts:
        raise DataError(
            f"no valid tissue depth in the {len(chosen)} frame(s) used for initialisation "
            "(all depth is 0, non-finite or masked out as tool)"
        )
    xyz = np.concatenate(xyz_parts)  # [M, 3]
    rgb = np.concatenate(rgb_parts)  # [M, 3]
    xyz, rgb = _clean(xyz, rgb, cfg)
    if len(xyz) > cfg.max_points:
        rng = np.random.default_rng(cfg.seed)
        idx = np.sort(rng.choice(len(xyz), size=cfg.max_points, replace=False))
        xyz, rgb = xyz[idx], rgb[idx]
    return PointCloud(xyz, np.clip(rgb, 0.0, 1.0), frame_indices=tuple(used))


def _clean(xyz: np.ndarray, rgb: np.ndarray, cfg: InitConfig) -> tuple[np.ndarray, np.ndarray]:
    """Voxel downsampling and statistical outlier removal with open3d."""
    import open3d as o3d  # slow import (~4 s): keep it out of module import time

    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(xyz.astype(np.float64))
    pcd.colors = o3d.utility.Vector3dVector(rgb.astype(np.float64))
    voxel = cfg.voxel_size
    if voxel is None:
        diag = float(np.linalg.norm(xyz.max(axis=0) - xyz.min(axis=0)))
        voxel = diag / cfg.voxel_divisions
    if voxel > 0:
        pcd = pcd.voxel_down_sample(voxel)
    if cfg.remove_outliers and len(pcd.points) > cfg.outlier_neighbors:
        pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=cfg.outlier_neighbors, std_ratio=cfg.outlier_std_ratio)
    return np.asarray(pcd.points, dtype=np.float32), np.asarray(pcd.colors, dtype=np.float32)
