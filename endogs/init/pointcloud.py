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
from endogs.camera import cameras_move


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

    border_margin: float = 0.05
    """When the cameras move, also seed a band this wide beyond each frame's border (a fraction of
    the frame's width and height): the surface is extended past the edge with the depth and colour of
    the nearest valid tissue pixel, and only points that no selected frame sees are kept. A held-out
    view that looks slightly past every training view then renders extrapolated tissue instead of
    the background. It is seeded at a quarter of the frames' density (twice the voxel size), marked ``PointCloud.extrapolated``
    and left out of the cloud's box and scale. 0 disables it; it is skipped when every camera pose is
    the same."""

    footprint_power: float = 2.0
    """When the cameras move and the cloud has more than ``max_points`` points, the subset is drawn
    with probability proportional to (distance to the nearest selected camera) ** -footprint_power
    instead of uniformly. A pixel covers an area proportional to the squared distance, so the
    default 2 gives tissue the same number of points per pixel in the views that see it closest:
    tissue the endoscope approaches is not left with half the Gaussians per pixel of tissue seen
    from afar. 0 = a uniform subset; ignored when every camera pose is the same."""

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
        if not 0.0 <= self.footprint_power <= 4.0:
            raise ConfigError(f"init.footprint_power must be in [0, 4], got {self.footprint_power}")
        if self.max_points < 1:
            raise ConfigError(f"init.max_points must be >= 1, got {self.max_points}")
        if not 0.0 <= self.border_margin <= 0.5:
            raise ConfigError(f"init.border_margin must be in [0, 0.5] (a fraction of the frame size), got {self.border_margin}")


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
    extrapolated: Optional[np.ndarray] = None  # [M] bool; None = no point is

    def __post_init__(self) -> None:
        self.xyz = np.ascontiguousarray(self.xyz, dtype=np.float32)
        self.rgb = np.ascontiguousarray(self.rgb, dtype=np.float32)
        if self.xyz.ndim != 2 or self.xyz.shape[1] != 3:
            raise ValueError(f"PointCloud.xyz must be [M, 3], got {self.xyz.shape}")
        if self.rgb.shape != self.xyz.shape:
            raise ValueError(f"PointCloud.rgb must be {self.xyz.shape}, got {self.rgb.shape}")
        ext = np.zeros(len(self.xyz), bool) if self.extrapolated is None else np.asarray(self.extrapolated, dtype=bool)
        if ext.shape != (len(self.xyz),):
            raise ValueError(f"PointCloud.extrapolated must be [{len(self.xyz)}], got {ext.shape}")
        self.extrapolated = ext

    def __len__(self) -> int:
        return self.xyz.shape[0]

    @property
    def aabb(self) -> np.ndarray:
        """[2, 3] float32: per-axis minimum (row 0) and maximum (row 1) of the observed points (the
        extrapolated border band, if any, is left out so that it changes no scale of the scene)."""
        xyz = self.xyz[~self.extrapolated] if self.extrapolated.any() and not self.extrapolated.all() else self.xyz
        if len(xyz) == 0:
            return np.zeros((2, 3), dtype=np.float32)
        return np.stack([xyz.min(axis=0), xyz.max(axis=0)])

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


def _margin_points(frame: Frame, valid: np.ndarray, cfg: InitConfig) -> tuple[np.ndarray, np.ndarray]:
    """World points [M, 3] and colours [M, 3] of the band of ``cfg.border_margin`` beyond the frame's
    border, each with the depth and colour of the nearest valid tissue pixel (nearest in the image,
    after clamping to it), unprojected along its own ray."""
    from scipy.ndimage import distance_transform_edt

    h, w = valid.shape
    mu, mv = int(round(cfg.border_margin * w)), int(round(cfg.border_margin * h))
    if (mu == 0 and mv == 0) or not valid.any():
        return np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32)
    s = 2 * cfg.pixel_stride  # a quarter of the frame's density: the band only has to hold a colour
    v, u = np.mgrid[-mv:h + mv:s, -mu:w + mu:s]
    outside = (u < 0) | (u >= w) | (v < 0) | (v >= h)
    u, v = u[outside], v[outside]
    _, (iy, ix) = distance_transform_edt(~valid, return_indices=True)  # nearest valid pixel of every pixel
    uc, vc = np.clip(u, 0, w - 1), np.clip(v, 0, h - 1)
    ny, nx = iy[vc, uc], ix[vc, uc]
    depth = np.asarray(frame.depth, dtype=np.float64)[ny, nx]
    rgb = np.clip(np.asarray(frame.image, dtype=np.float32)[ny, nx, :3], 0.0, 1.0)
    xyz = frame.camera.unproject(depth, uv=np.stack([u + 0.5, v + 0.5], axis=-1).astype(np.float64))
    return xyz.astype(np.float32), rgb.astype(np.float32)


def _seen_by_any(xyz: np.ndarray, frames: Sequence[Frame]) -> np.ndarray:
    """Boolean [M]: points in front of and inside the image of at least one of ``frames``."""
    seen = np.zeros(len(xyz), dtype=bool)
    for f in frames:
        uv, z = f.camera.project(xyz.astype(np.float64))
        seen |= (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < f.width) & (uv[:, 1] >= 0) & (uv[:, 1] < f.height)
    return seen


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
    moving = cameras_move([f.camera.c2w for f in with_depth])
    margin = cfg.border_margin > 0 and moving
    margin_xyz: list[np.ndarray] = []
    margin_rgb: list[np.ndarray] = []
    for frame in chosen:
        out = _frame_points(frame, cfg)
        if out is None or len(out[0]) == 0:
            continue
        xyz, rgb, valid = out
        if margin:
            mx, mc = _margin_points(frame, valid, cfg)
            margin_xyz.append(mx)
            margin_rgb.append(mc)
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
    voxel = cfg.voxel_size
    if voxel is None:
        voxel = float(np.linalg.norm(xyz.max(axis=0) - xyz.min(axis=0))) / cfg.voxel_divisions
    xyz, rgb = _clean(xyz, rgb, cfg, voxel)
    ext = np.zeros(len(xyz), bool)
    if margin_xyz:  # cleaned on its own, at twice the voxel size (it only has to hold a colour), so that it stays marked
        mx, mc = np.concatenate(margin_xyz), np.concatenate(margin_rgb)
        unseen = ~_seen_by_any(mx, with_depth)
        if unseen.any():
            mx, mc = _clean(mx[unseen], mc[unseen], cfg, 2.0 * voxel)
            xyz, rgb = np.concatenate([xyz, mx]), np.concatenate([rgb, mc])
            ext = np.concatenate([ext, np.ones(len(mx), bool)])
    if len(xyz) > cfg.max_points:
        rng = np.random.default_rng(cfg.seed)
        p = None
        if cfg.footprint_power > 0 and moving:
            p = _footprint_weights(xyz, [f.camera.c2w[:3, 3] for f in chosen], cfg.footprint_power)
        idx = np.sort(rng.choice(len(xyz), size=cfg.max_points, replace=False, p=p))
        xyz, rgb, ext = xyz[idx], rgb[idx], ext[idx]
    return PointCloud(xyz, np.clip(rgb, 0.0, 1.0), frame_indices=tuple(used), extrapolated=ext)


def _footprint_weights(xyz: np.ndarray, centres: Sequence[np.ndarray], power: float) -> np.ndarray:
    """Sampling probabilities proportional to (distance to the nearest camera centre) ** -power."""
    from scipy.spatial import cKDTree

    d, _ = cKDTree(np.asarray(centres, dtype=np.float64)).query(xyz.astype(np.float64))
    w = np.maximum(d, 1e-6 * max(float(d.max()), 1e-6)) ** -power
    return w / w.sum()


def _clean(xyz: np.ndarray, rgb: np.ndarray, cfg: InitConfig, voxel: float) -> tuple[np.ndarray, np.ndarray]:
    """Voxel downsampling (``voxel`` in world units; 0 = none) and statistical outlier removal with open3d."""
    import open3d as o3d  # slow import (~4 s): keep it out of module import time

    pcd = o3d.geometry.PointCloud()
    pcd.points = o3d.utility.Vector3dVector(xyz.astype(np.float64))
    pcd.colors = o3d.utility.Vector3dVector(rgb.astype(np.float64))
    if voxel > 0:
        pcd = pcd.voxel_down_sample(voxel)
    if cfg.remove_outliers and len(pcd.points) > cfg.outlier_neighbors:
        pcd, _ = pcd.remove_statistical_outlier(nb_neighbors=cfg.outlier_neighbors, std_ratio=cfg.outlier_std_ratio)
    return np.asarray(pcd.points, dtype=np.float32), np.asarray(pcd.colors, dtype=np.float32)
