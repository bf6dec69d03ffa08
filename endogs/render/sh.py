"""Real spherical harmonics up to degree 3, with gsplat's basis, signs and constants.

The colour of a Gaussian seen along the unit direction ``d`` (from the camera centre towards
the Gaussian) is ``max(0, sum_k Y_k(d) c_k + 0.5)``; the DC basis is ``Y_0 = 0.28209479``, so a
DC coefficient of ``(rgb - 0.5) / 0.28209479`` renders ``rgb``.
"""

from __future__ import annotations

import torch
from torch import Tensor

SH_C0 = 0.28209479177387814
SH_C1 = 0.4886025119029199
SH_C2 = (
    1.0925484305920792,
    -1.0925484305920792,
    0.31539156525252005,
    -1.0925484305920792,
    0.5462742152960396,
)
SH_C3 = (
    -0.5900435899266435,
    2.890611442640554,
    -0.4570457994644658,
    0.3731763325901154,
    -0.4570457994644658,
    1.445305721320277,
    -0.5900435899266435,
)


def num_sh_bases(degree: int) -> int:
    """Number of SH coefficients of a degree: ``(degree + 1) ** 2``."""
    return (degree + 1) ** 2


def rgb_to_sh0(rgb: Tensor) -> Tensor:
    """DC coefficient that renders ``rgb`` (any shape)."""
    return (rgb - 0.5) / SH_C0


def sh_bases(degree: int, dirs: Tensor) -> Tensor:
    """SH basis functions evaluated at unit directions.

    Args:
        degree: 0..3.
        dirs: [..., 3] unit vectors.

    Returns:
        [..., (degree + 1) ** 2] basis values, in gsplat's coefficient order.
    """
    if not 0 <= degree <= 3:
        raise ValueError(f"SH degree must be in 0..3, got {degree}")
    out = [torch.full_like(dirs[..., 0], SH_C0)]  # [...]
    if degree >= 1:
        x, y, z = dirs.unbind(-1)  # [...] each
        out += [-SH_C1 * y, SH_C1 * z, -SH_C1 * x]
        if degree >= 2:
            xx, yy, zz = x * x, y * y, z * z
            xy, yz, xz = x * y, y * z, x * z
            out += [
                SH_C2[0] * xy,
                SH_C2[1] * yz,
                SH_C2[2] * (2.0 * zz - xx - yy),
                SH_C2[3] * xz,
                SH_C2[4] * (xx - yy),
            ]
            if degree >= 3:
                out += [
                    SH_C3[0] * y * (3.0 * xx - yy),
                    SH_C3[1] * xy * z,
                    SH_C3[2] * y * (4.0 * zz - xx - yy),
                    SH_C3[3] * z * (2.0 * zz - 3.0 * xx - 3.0 * yy),
                    SH_C3[4] * x * (4.0 * zz - xx - yy),
                    SH_C3[5] * z * (xx - yy),
                    SH_C3[6] * x * (xx - 3.0 * yy),
                ]
    return torch.stack(out, dim=-1)  # [..., K]


def eval_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Raw SH colour ``sum_k Y_k(normalize(dirs)) * coeffs_k`` (no offset, no clamp).

    Args:
        degree: 0..3; only the first ``(degree + 1) ** 2`` coefficients are used.
        dirs: [..., 3] view directions (need not be unit length).
        coeffs: [..., K, 3] coefficients with ``K >= (degree + 1) ** 2``, broadcastable
            against ``dirs``' leading dimensions.

    Returns:
        [..., 3] colours.
    """
    k = num_sh_bases(degree)
    if coeffs.shape[-2] < k:
        raise ValueError(f"SH degree {degree} needs {k} coefficients, got {coeffs.shape[-2]}")
    if degree == 0:
        return SH_C0 * coeffs[..., 0, :].expand(dirs.shape[:-1] + (3,))  # [..., 3]
    unit = dirs / dirs.norm(dim=-1, keepdim=True).clamp_min(1e-12)  # [..., 3]
    basis = sh_bases(degree, unit)  # [..., k]
    return (basis[..., None] * coeffs[..., :k, :]).sum(dim=-2)  # [..., 3]


def sh_to_rgb(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """Rendered colour as gsplat computes it: ``clamp_min(eval_sh + 0.5, 0)``.

    Args:
        degree: 0..3.
        dirs: [..., 3] view directions (Gaussian mean minus camera centre).
        coeffs: [..., K, 3] coefficients.

    Returns:
        [..., 3] non-negative colours.
    """
    return torch.clamp_min(eval_sh(degree, dirs, coeffs) + 0.5, 0.0)  # [..., 3]
