"""Point cloud -> initial (raw, unactivated) Gaussian parameters."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
from scipy.spatial import cKDTree
from torch import Tensor

from endogs.init.pointcloud import PointCloud

SH_C0 = 0.28209479177387814
"""Zeroth-order real spherical-harmonics constant: colour = SH_C0 * dc + 0.5."""


def rgb_to_sh(rgb: Tensor) -> Tensor:
    """RGB in [0, 1] -> SH DC coefficient (gsplat's convention)."""
    return (rgb - 0.5) / SH_C0


def sh_to_rgb(sh0: Tensor) -> Tensor:
    """SH DC coefficient -> view-independent RGB (before gsplat's clamp at 0)."""
    return sh0 * SH_C0 + 0.5


def knn_mean_distance(xyz: np.ndarray, k: int = 3) -> np.ndarray:
    """Mean distance of each point to its ``k`` nearest other points.

    Args:
        xyz: [M, 3] points (M >= 2).
        k: number of neighbours (clamped to M - 1).

    Returns:
        [M] float64 distances.
    """
    m = len(xyz)
    k = min(k, m - 1)
    dist, _ = cKDTree(xyz).query(xyz, k=k + 1)  # [M, k+1], column 0 is the point itself
    return dist.reshape(m, k + 1)[:, 1:].mean(axis=1)


def gaussians_from_point_cloud(
    pc: PointCloud,
    sh_degree: int = 3,
    init_opacity: float = 0.1,
    init_scale: float = 1.0,
    knn: int = 3,
    device: Optional[Union[str, torch.device]] = None,
) -> dict[str, Tensor]:
    """Raw Gaussian parameters seeded from a point cloud, in gsplat's storage convention.

    Args:
        pc: the initial cloud (M >= 1 points).
        sh_degree: maximum SH degree; colours get K = (sh_degree + 1) ** 2 coefficients.
        init_opacity: initial opacity in (0, 1), stored as its logit.
        init_scale: multiplier of the kNN distance used as the isotropic initial scale.
        knn: neighbours averaged for the scale.
        device: device of the returned tensors (default CPU).

    Returns:
        ``means [M, 3]``, ``scales [M, 3]`` (log), ``quats [M, 4]`` (identity, wxyz),
        ``opacities [M]`` (logit), ``sh0 [M, 1, 3]``, ``shN [M, K-1, 3]`` (zeros), all float32.
    """
    if not 0 <= sh_degree <= 3:
        raise ValueError(f"sh_degree must be in 0..3, got {sh_degree}")
    if not 0.0 < init_opacity < 1.0:
        raise ValueError(f"init_opacity must be in (0, 1), got {init_opacity}")
    m = len(pc)
    if m == 0:
        raise ValueError("cannot initialise Gaussians from an empty point cloud")
    if m == 1:
        dist = np.full(1, max(pc.scale_hint, 1.0) * 0.01)
    else:
        dist = knn_mean_distance(pc.xyz.astype(np.float64), knn)  # [M]
        positive = dist[dist > 0]
        floor = 1e-3 * float(np.median(positive)) if len(positive) else 1e-6
        dist = np.maximum(dist, max(floor, 1e-12))  # duplicate points would give log(0)
    k = (sh_degree + 1) ** 2
    means = torch.from_numpy(pc.xyz.copy())  # [M, 3]
    log_scale = torch.from_numpy(np.log(dist * init_scale)).float()  # [M]
    rgb = torch.from_numpy(pc.rgb.copy())  # [M, 3]
    quats = torch.zeros(m, 4)
    quats[:, 0] = 1.0
    params = {
        "means": means,
        "scales": log_scale[:, None].repeat(1, 3),  # [M, 3]
        "quats": quats,  # [M, 4]
        "opacities": torch.full((m,), float(np.log(init_opacity / (1.0 - init_opacity)))),  # [M]
        "sh0": rgb_to_sh(rgb)[:, None, :],  # [M, 1, 3]
        "shN": torch.zeros(m, k - 1, 3),  # [M, K-1, 3]
    }
    return {name: t.to(device=device, dtype=torch.float32).contiguous() for name, t in params.items()}
