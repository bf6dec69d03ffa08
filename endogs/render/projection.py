"""EWA projection of 3D Gaussians onto pinhole images, following gsplat 1.5.3's conventions.

This is a re-written, differentiable pure-PyTorch version of what gsplat's fused CUDA
projection kernel computes for ``rasterize_mode="classic"`` and ``packed=False``:

* covariance ``Sigma = R S S^T R^T`` from a (normalised) wxyz quaternion and scales;
* perspective Jacobian with gsplat's field-of-view clamp (the point is clamped to 1.3x the
  image half-extent before the Jacobian is formed; the 2D mean itself is not clamped);
* a ``eps2d`` low-pass added to the 2D covariance's diagonal (0.3 px^2 by default);
* the opacity-aware radius of gsplat >= 1.5: ``extend = min(3.33, sqrt(2 ln(255 o)))`` and
  ``radius = ceil(extend * sqrt(cov2d_ii))`` per axis; Gaussians with ``o < 1/255`` are culled;
* culling (radius 0) outside ``[near, far]``, for a non-positive determinant, and for a box that
  does not overlap the image.

Culled entries have radii 0 and, as in gsplat, zero ``means2d``, ``depths`` and ``conics``.
Everything is kept finite for culled entries, so their (zero) gradients never become NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from endogs.utils.geometry import quat_to_rotmat

#: Smallest alpha a Gaussian may contribute (gsplat's ``ALPHA_THRESHOLD``).
ALPHA_THRESHOLD = 1.0 / 255.0
#: Largest alpha of one Gaussian at one pixel.
ALPHA_MAX = 0.999
#: Footprint in standard deviations when the opacity does not tighten it.
MAX_EXTEND = 3.33


@dataclass
class Projection:
    """Per-camera screen-space Gaussians (gsplat's ``packed=False`` layout).

    Attributes:
        means2d: [C, N, 2] pixel coordinates of the centres (pixel centres at +0.5).
        conics: [C, N, 3] upper triangle (a, b, c) of the inverse 2D covariance.
        depths: [C, N] camera-space z.
        radii: [C, N, 2] int32 half-extents in pixels; an entry is visible iff both are > 0.
    """

    means2d: Tensor  # [C, N, 2]
    conics: Tensor  # [C, N, 3]
    depths: Tensor  # [C, N]
    radii: Tensor  # [C, N, 2] int32




def covariance_3d(quats: Tensor, scales: Tensor) -> Tensor:
    """World-space covariances ``R diag(s)^2 R^T``.

    Args:
        quats: [N, 4] wxyz quaternions.
        scales: [N, 3] standard deviations along the local axes.

    Returns:
        [N, 3, 3] symmetric covariances.
    """
    M = quat_to_rotmat(quats) * scales[:, None, :]  # [N, 3, 3]
    return M @ M.transpose(-1, -2)  # [N, 3, 3]


def project_gaussians(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    eps2d: float = 0.3,
    near: float = 0.01,
    far: float = 1e10,
) -> Projection:
    """Project Gaussians into C pinhole cameras (differentiable w.r.t. the Gaussian parameters).

    Args:
        means: [N, 3] world positions.
        quats: [N, 4] wxyz rotations.
        scales: [N, 3] positive standard deviations.
        opacities: [N] opacities in (0, 1); only used (without gradient) for the radius bound.
        viewmats: [C, 4, 4] world-to-camera transforms (OpenCV axes).
        Ks: [C, 3, 3] intrinsics.
        width: Image width in pixels.
        height: Image height in pixels.
        eps2d: Low-pass added to the 2D covariance diagonal.
        near: Near plane; Gaussians with depth below it are culled.
        far: Far plane; Gaussians with depth above it are culled.

    Returns:
        The :class:`Projection` of every (camera, Gaussian) pair.
    """
    C, N = viewmats.shape[0], means.shape[0]
    # Internally everything is laid out with the Gaussian axis last ([C, ..., N]): elementwise
    # ops and their autograd are then contiguous, which matters at 100k+ Gaussians.
    Rc = viewmats[:, :3, :3]  # [C, 3, 3]
    t = viewmats[:, :3, 3:]  # [C, 3, 1]
    x, y, z = (Rc @ means.t() + t).unbind(1)  # [C, N] each: camera-space position
    # Camera-space axes of each Gaussian: W = Rc R, so that Sigma_c = W diag(s^2) W^T.
    R = quat_to_rotmat(quats, gaussian_axis_last=True)  # [3(i), 3(k), N]
    Wc = (Rc @ R.reshape(3, 3 * N)).view(C, 3, 3, N)  # [C, 3(i), 3(k), N]
    w0, w1, w2 = Wc.unbind(1)  # [C, 3(k), N] each: rows of W
    in_depth = (z >= near) & (z <= far)  # [C, N]
    # A safe depth for culled entries keeps every intermediate (and its gradient) finite.
    keep_z = in_depth.to(z.dtype)  # [C, N]
    zs = z * keep_z + (1.0 - keep_z)  # [C, N]
    fx, fy = Ks[:, 0, 0, None], Ks[:, 1, 1, None]  # [C, 1]
    cx, cy = Ks[:, 0, 2, None], Ks[:, 1, 2, None]  # [C, 1]
    tan_fovx, tan_fovy = 0.5 * width / fx, 0.5 * height / fy  # [C, 1]
    lim_xp = (width - cx) / fx + 0.3 * tan_fovx  # [C, 1]
    lim_xn = cx / fx + 0.3 * tan_fovx  # [C, 1]
    lim_yp = (height - cy) / fy + 0.3 * tan_fovy  # [C, 1]
    lim_yn = cy / fy + 0.3 * tan_fovy  # [C, 1]
    rz = 1.0 / zs  # [C, N]
    u, v = x * rz, y * rz  # [C, N] normalised image coordinates
    # EWA: cov2d = J Sigma_c J^T with J = [[fx/z, 0, -fx tx/z^2], [0, fy/z, -fy ty/z^2]], where
    # (tx, ty) is the position clamped to 1.3x the field of view (gsplat's persp_proj).
    j00, j11 = fx * rz, fy * rz  # [C, N]
    j02 = -j00 * torch.maximum(torch.minimum(u, lim_xp), -lim_xn)  # [C, N]
    j12 = -j11 * torch.maximum(torch.minimum(v, lim_yp), -lim_yn)  # [C, N]
    st = scales.t()  # [3, N]
    A0 = (j00[:, None] * w0 + j02[:, None] * w2) * st  # [C, 3, N] row 0 of J W diag(s)
    A1 = (j11[:, None] * w1 + j12[:, None] * w2) * st  # [C, 3, N] row 1
    c00 = (A0 * A0).sum(1) + eps2d  # [C, N]
    c11 = (A1 * A1).sum(1) + eps2d  # [C, N]
    c01 = (A0 * A1).sum(1)  # [C, N]
    det = c00 * c11 - c01 * c01  # [C, N]
    det_ok = det > 0  # [C, N]
    keep_d = det_ok.to(det.dtype)  # [C, N]
    inv_det = keep_d / (det * keep_d + (1.0 - keep_d))  # [C, N] 0 where culled
    mx, my = fx * u + cx, fy * v + cy  # [C, N]

    with torch.no_grad():
        opa = opacities.detach()[None, :].expand_as(z)  # [C, N]
        opa_ok = opa >= ALPHA_THRESHOLD  # [C, N]
        extend = torch.sqrt(2.0 * torch.log(opa.clamp_min(ALPHA_THRESHOLD) / ALPHA_THRESHOLD))
        extend = extend.clamp(max=MAX_EXTEND)  # [C, N]
        rx = torch.ceil(extend * torch.sqrt(c00.detach().clamp_min(0)))  # [C, N]
        ry = torch.ceil(extend * torch.sqrt(c11.detach().clamp_min(0)))  # [C, N]
        mxd, myd = mx.detach(), my.detach()  # [C, N]
        inside = (mxd + rx > 0) & (mxd - rx < width) & (myd + ry > 0) & (myd - ry < height)  # [C, N]
        valid = in_depth & det_ok & opa_ok & ((rx > 0) | (ry > 0)) & inside  # [C, N]
        valid &= torch.isfinite(rx) & torch.isfinite(ry) & torch.isfinite(mxd) & torch.isfinite(myd)
        vf = valid.to(z.dtype)  # [C, N]
        radii = torch.stack([rx * vf, ry * vf], dim=-1).to(torch.int32)  # [C, N, 2]

    # Culled entries are zero, as gsplat leaves them.
    vi = vf * inv_det  # [C, N]
    conics = torch.stack([c11 * vi, -c01 * vi, c00 * vi], dim=-1)  # [C, N, 3]
    means2d = torch.stack([mx * vf, my * vf], dim=-1)  # [C, N, 2]
    depths = z * vf  # [C, N]
    return Projection(means2d=means2d, conics=conics, depths=depths, radii=radii)




def max_extend(opacity: float) -> float:
    """The footprint (in standard deviations) gsplat uses for a Gaussian of this opacity."""
    if opacity < ALPHA_THRESHOLD:
        return 0.0
    return min(MAX_EXTEND, math.sqrt(2.0 * math.log(opacity / ALPHA_THRESHOLD)))
