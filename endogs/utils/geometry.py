"""Rotations: the one quaternion -> rotation matrix (torch; numpy callers convert) and the one numpy
rotation vector -> matrix (Rodrigues)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def quat_to_rotmat(quats: Tensor, gaussian_axis_last: bool = False) -> Tensor:
    """Rotation matrices of (not necessarily unit) wxyz quaternions.

    Args:
        quats: [..., 4] quaternions (w, x, y, z); [N, 4] with ``gaussian_axis_last``.
        gaussian_axis_last: lay the result out [3 (row), 3 (column), N] instead of [..., 3, 3]
            (the CPU rasterizer keeps the Gaussian axis last so elementwise autograd is contiguous).

    Returns:
        [..., 3, 3] rotation matrices (or [3, 3, N]).
    """
    q = quats / quats.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [..., 4]
    # The same values either way; q.t() (2-D input) keeps the backward's memory layout, and with it the
    # floating-point summation order, that the CPU rasterizer's results are reproduced with.
    w, x, y, z = q.t() if gaussian_axis_last else q.unbind(-1)
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    rows = [
        1 - 2 * (yy + zz), 2 * (xy - wz), 2 * (xz + wy),
        2 * (xy + wz), 1 - 2 * (xx + zz), 2 * (yz - wx),
        2 * (xz - wy), 2 * (yz + wx), 1 - 2 * (xx + yy),
    ]  # fmt: skip
    if gaussian_axis_last:
        return torch.stack(rows, dim=0).view(3, 3, -1)  # [3, 3, N]
    return torch.stack(rows, dim=-1).reshape(q.shape[:-1] + (3, 3))  # [..., 3, 3]


def rotvec_to_matrix(w: np.ndarray) -> np.ndarray:
    """3x3 rotation matrix (float64) of a rotation vector (axis * angle in radians), Rodrigues."""
    th = float(np.linalg.norm(w))
    if th < 1e-15:
        return np.eye(3)
    k = np.asarray(w, dtype=np.float64) / th
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * Kx + (1 - np.cos(th)) * (Kx @ Kx)
