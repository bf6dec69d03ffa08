"""Compiled CPU projection: :func:`endogs.render.projection.project_gaussians` and its backward in two
numba kernels.

The PyTorch projection is some 60 element-wise tensor ops over the (camera, Gaussian) pairs, and its
autograd runs as many again, each a pass over memory; at 20k Gaussians it took ~4 ms forward and ~5 ms
backward of a ~35 ms render (docs/BENCHMARKS.md). Here one pass per Gaussian does each direction:

* *forward* (parallel over blocks of Gaussians): normalise the quaternion, form the rotation, and per
  camera the camera-space position, the EWA 2D covariance with gsplat's field-of-view clamp and the
  ``eps2d`` low-pass, the conic, the opacity-aware radii and the culling — the same formulas, in the
  same order, as the PyTorch path;
* *backward* (parallel over blocks): recompute those per Gaussian and run the chain rule by hand, from
  the gradients of ``means2d``, ``conics`` and ``depths`` to those of the means, quaternions (through the
  normalisation) and scales, summed over the cameras in camera order. Culled entries pass nothing, as
  in the PyTorch graph (there they are multiplied by 0).

Each Gaussian is owned by one thread, so the results do not depend on the number of threads. The
kernels compute in the tensors' dtype (float32 in training; float64 for the tests, which compare values
and gradients with the PyTorch path to 1e-12), are compiled on first use and cached on disk.
:func:`use_numba_projection` says when this path applies; everywhere else (other devices, a camera that
needs a gradient, ``ENDOGS_CPU_BACKEND=torch``) ``project_gaussians`` is the reference and the path.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor
from torch.autograd.function import once_differentiable

from .cpu_numba import set_numba_threads
from .cpu_select import choose_cpu_backend
from .projection import ALPHA_THRESHOLD, MAX_EXTEND, Projection

_FASTMATH = {"contract", "nsz"}
_BLOCK = 256  # Gaussians per parallel iteration

# the kernels' constants in the compute dtype (a float literal would promote float32 maths to float64)
_CONSTS = np.array([0.0, 0.5, 1.0, 2.0, 0.3, 1e-12, ALPHA_THRESHOLD, MAX_EXTEND, 1e9])
_Z, _HALF, _ONE, _TWO, _FOV, _QEPS, _ATHR, _MAXEXT, _RMAX = range(9)


@njit(cache=True, inline="always")
def _rotation(q, g, k, R):  # pragma: no cover - compiled
    """R [3, 3] of Gaussian ``g``'s quaternion (wxyz) after normalisation; returns the normalised
    (w, x, y, z), the divisor max(|q|, 1e-12) and whether |q| was above the clamp."""
    w, x, y, z = q[g, 0], q[g, 1], q[g, 2], q[g, 3]
    nrm = math.sqrt(w * w + x * x + y * y + z * z)
    d = nrm if nrm > k[_QEPS] else k[_QEPS]
    w, x, y, z = w / d, x / d, y / d, z / d
    one, two = k[_ONE], k[_TWO]
    xx, yy, zz = x * x, y * y, z * z
    xy, xz, yz = x * y, x * z, y * z
    wx, wy, wz = w * x, w * y, w * z
    R[0, 0], R[0, 1], R[0, 2] = one - two * (yy + zz), two * (xy - wz), two * (xz + wy)
    R[1, 0], R[1, 1], R[1, 2] = two * (xy + wz), one - two * (xx + zz), two * (yz - wx)
    R[2, 0], R[2, 1], R[2, 2] = two * (xz - wy), two * (yz + wx), one - two * (xx + yy)
    return w, x, y, z, d, nrm > k[_QEPS]


@njit(cache=True, inline="always")
def _camera(vm, Ks, cam, W, H, k):  # pragma: no cover - compiled
    """fx, fy, cx, cy and the field-of-view clamp limits (lim_xp, lim_xn, lim_yp, lim_yn) of a camera."""
    fx, fy, cx, cy = Ks[cam, 0, 0], Ks[cam, 1, 1], Ks[cam, 0, 2], Ks[cam, 1, 2]
    tan_fovx = k[_HALF] * W / fx
    tan_fovy = k[_HALF] * H / fy
    lim_xp = (W - cx) / fx + k[_FOV] * tan_fovx
    lim_xn = cx / fx + k[_FOV] * tan_fovx
    lim_yp = (H - cy) / fy + k[_FOV] * tan_fovy
    lim_yn = cy / fy + k[_FOV] * tan_fovy
    return fx, fy, cx, cy, lim_xp, lim_xn, lim_yp, lim_yn


@njit(cache=True, inline="always")
def _to_camera(vm, cam, means, g, R, Wc):  # pragma: no cover - compiled
    """Gaussian ``g``'s camera-space position (x, y, z) in camera ``cam``; ``Wc`` [3, 3] = Rc R (its
    axes in camera space)."""
    x = vm[cam, 0, 0] * means[g, 0] + vm[cam, 0, 1] * means[g, 1] + vm[cam, 0, 2] * means[g, 2] + vm[cam, 0, 3]
    y = vm[cam, 1, 0] * means[g, 0] + vm[cam, 1, 1] * means[g, 1] + vm[cam, 1, 2] * means[g, 2] + vm[cam, 1, 3]
    z = vm[cam, 2, 0] * means[g, 0] + vm[cam, 2, 1] * means[g, 1] + vm[cam, 2, 2] * means[g, 2] + vm[cam, 2, 3]
    for i in range(3):
        for kk in range(3):
            Wc[i, kk] = vm[cam, i, 0] * R[0, kk] + vm[cam, i, 1] * R[1, kk] + vm[cam, i, 2] * R[2, kk]
    return x, y, z


@njit(cache=True, inline="always")
def _clamp(u, lo, hi):  # pragma: no cover - compiled
    """max(min(u, hi), lo) as torch.maximum(torch.minimum(u, hi), lo) evaluates it."""
    v = u if u < hi else hi
    return v if v > lo else lo


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _forward(means, quats, scales, opac, vm, Ks, W, H, eps2d, near, far, k, m2d, conics, depths, radii):  # pragma: no cover
    N, C = means.shape[0], vm.shape[0]
    zero, one, two = k[_Z], k[_ONE], k[_TWO]
    for blk in prange((N + _BLOCK - 1) // _BLOCK):
        R = np.empty((3, 3), dtype=k.dtype)
        Wc = np.empty((3, 3), dtype=k.dtype)
        for g in range(blk * _BLOCK, min(N, blk * _BLOCK + _BLOCK)):
            _rotation(quats, g, k, R)
            s0, s1, s2 = scales[g, 0], scales[g, 1], scales[g, 2]
            o = opac[g]
            opa_ok = o >= k[_ATHR]
            oc = o if o > k[_ATHR] else k[_ATHR]
            ext = math.sqrt(two * math.log(oc / k[_ATHR]))
            ext = ext if ext < k[_MAXEXT] else k[_MAXEXT]
            for cam in range(C):
                x, y, z = _to_camera(vm, cam, means, g, R, Wc)
                in_depth = (z >= near) & (z <= far)
                zs = z if in_depth else one
                fx, fy, cx, cy, lxp, lxn, lyp, lyn = _camera(vm, Ks, cam, W, H, k)
                rz = one / zs
                u, v = x * rz, y * rz
                j00, j11 = fx * rz, fy * rz
                j02 = -j00 * _clamp(u, -lxn, lxp)
                j12 = -j11 * _clamp(v, -lyn, lyp)
                a00 = (j00 * Wc[0, 0] + j02 * Wc[2, 0]) * s0
                a01 = (j00 * Wc[0, 1] + j02 * Wc[2, 1]) * s1
                a02 = (j00 * Wc[0, 2] + j02 * Wc[2, 2]) * s2
                a10 = (j11 * Wc[1, 0] + j12 * Wc[2, 0]) * s0
                a11 = (j11 * Wc[1, 1] + j12 * Wc[2, 1]) * s1
                a12 = (j11 * Wc[1, 2] + j12 * Wc[2, 2]) * s2
                c00 = a00 * a00 + a01 * a01 + a02 * a02 + eps2d
                c11 = a10 * a10 + a11 * a11 + a12 * a12 + eps2d
                c01 = a00 * a10 + a01 * a11 + a02 * a12
                det = c00 * c11 - c01 * c01
                mx, my = fx * u + cx, fy * v + cy
                rx = math.ceil(ext * math.sqrt(c00 if c00 > zero else zero))
                ry = math.ceil(ext * math.sqrt(c11 if c11 > zero else zero))
                inside = (mx + rx > zero) & (mx - rx < W) & (my + ry > zero) & (my - ry < H)
                ok = in_depth & (det > zero) & opa_ok & ((rx > zero) | (ry > zero)) & inside
                ok = ok & math.isfinite(rx) & math.isfinite(ry) & math.isfinite(mx) & math.isfinite(my)
                if ok:
                    inv = one / det
                    conics[cam, g, 0], conics[cam, g, 1], conics[cam, g, 2] = c11 * inv, -c01 * inv, c00 * inv
                    m2d[cam, g, 0], m2d[cam, g, 1] = mx, my
                    depths[cam, g] = z
                    radii[cam, g, 0] = min(rx, k[_RMAX])
                    radii[cam, g, 1] = min(ry, k[_RMAX])
                else:
                    conics[cam, g, 0], conics[cam, g, 1], conics[cam, g, 2] = zero, zero, zero
                    m2d[cam, g, 0], m2d[cam, g, 1] = zero, zero
                    depths[cam, g] = zero
                    radii[cam, g, 0], radii[cam, g, 1] = 0, 0


@njit(cache=True, inline="always")
def _clamp_pass(u, lo, hi, half, one, zero):  # pragma: no cover - compiled
    """d clamp(u) / du as torch's minimum / maximum backward gives it (a tie passes half)."""
    p = one if u < hi else (half if u == hi else zero)
    v = u if u < hi else hi
    return p * (one if v > lo else (half if v == lo else zero))


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _backward(means, quats, scales, vm, Ks, W, H, eps2d, k, radii, g_m2d, g_conics, g_depths, g_means, g_quats, g_scales):  # pragma: no cover
    N, C = means.shape[0], vm.shape[0]
    zero, half, one, two = k[_Z], k[_HALF], k[_ONE], k[_TWO]
    for blk in prange((N + _BLOCK - 1) // _BLOCK):
        R = np.empty((3, 3), dtype=k.dtype)
        Wc = np.empty((3, 3), dtype=k.dtype)
        gW = np.empty((3, 3), dtype=k.dtype)
        gR = np.empty((3, 3), dtype=k.dtype)
        for g in range(blk * _BLOCK, min(N, blk * _BLOCK + _BLOCK)):
            qw, qx, qy, qz, qd, qnorm_ok = _rotation(quats, g, k, R)
            s0, s1, s2 = scales[g, 0], scales[g, 1], scales[g, 2]
            gm0 = gm1 = gm2 = zero
            gs0 = gs1 = gs2 = zero
            for i in range(3):
                for kk in range(3):
                    gR[i, kk] = zero
            for cam in range(C):
                if radii[cam, g, 0] <= 0 or radii[cam, g, 1] <= 0:
                    continue  # culled: multiplied by 0 in the forward, no gradient
                x, y, z = _to_camera(vm, cam, means, g, R, Wc)
                fx, fy, cx, cy, lxp, lxn, lyp, lyn = _camera(vm, Ks, cam, W, H, k)
                rz = one / z  # a drawn entry is within [near, far]
                u, v = x * rz, y * rz
                j00, j11 = fx * rz, fy * rz
                uc, vc = _clamp(u, -lxn, lxp), _clamp(v, -lyn, lyp)
                j02, j12 = -j00 * uc, -j11 * vc
                b00, b01, b02 = j00 * Wc[0, 0] + j02 * Wc[2, 0], j00 * Wc[0, 1] + j02 * Wc[2, 1], j00 * Wc[0, 2] + j02 * Wc[2, 2]
                b10, b11, b12 = j11 * Wc[1, 0] + j12 * Wc[2, 0], j11 * Wc[1, 1] + j12 * Wc[2, 1], j11 * Wc[1, 2] + j12 * Wc[2, 2]
                a00, a01, a02 = b00 * s0, b01 * s1, b02 * s2
                a10, a11, a12 = b10 * s0, b11 * s1, b12 * s2
                c00 = a00 * a00 + a01 * a01 + a02 * a02 + eps2d
                c11 = a10 * a10 + a11 * a11 + a12 * a12 + eps2d
                c01 = a00 * a10 + a01 * a11 + a02 * a12
                inv = one / (c00 * c11 - c01 * c01)
                # conics = (c11, -c01, c00) * inv
                ga, gb, gc = g_conics[cam, g, 0], g_conics[cam, g, 1], g_conics[cam, g, 2]
                g_inv = ga * c11 - gb * c01 + gc * c00
                g_det = -g_inv * inv * inv
                g00 = gc * inv + g_det * c11
                g11 = ga * inv + g_det * c00
                g01 = -gb * inv - two * c01 * g_det
                # c00 = |A0|^2 + eps, c11 = |A1|^2 + eps, c01 = A0 . A1
                ga00, ga01, ga02 = two * g00 * a00 + g01 * a10, two * g00 * a01 + g01 * a11, two * g00 * a02 + g01 * a12
                ga10, ga11, ga12 = two * g11 * a10 + g01 * a00, two * g11 * a11 + g01 * a01, two * g11 * a12 + g01 * a02
                # A0k = (j00 W0k + j02 W2k) s_k, A1k = (j11 W1k + j12 W2k) s_k
                gs0 += ga00 * b00 + ga10 * b10
                gs1 += ga01 * b01 + ga11 * b11
                gs2 += ga02 * b02 + ga12 * b12
                h00, h01, h02 = ga00 * s0, ga01 * s1, ga02 * s2
                h10, h11, h12 = ga10 * s0, ga11 * s1, ga12 * s2
                g_j00 = h00 * Wc[0, 0] + h01 * Wc[0, 1] + h02 * Wc[0, 2]
                g_j02 = h00 * Wc[2, 0] + h01 * Wc[2, 1] + h02 * Wc[2, 2]
                g_j11 = h10 * Wc[1, 0] + h11 * Wc[1, 1] + h12 * Wc[1, 2]
                g_j12 = h10 * Wc[2, 0] + h11 * Wc[2, 1] + h12 * Wc[2, 2]
                gW[0, 0], gW[0, 1], gW[0, 2] = h00 * j00, h01 * j00, h02 * j00
                gW[1, 0], gW[1, 1], gW[1, 2] = h10 * j11, h11 * j11, h12 * j11
                gW[2, 0], gW[2, 1], gW[2, 2] = h00 * j02 + h10 * j12, h01 * j02 + h11 * j12, h02 * j02 + h12 * j12
                # j02 = -j00 clamp(u), j12 = -j11 clamp(v); means2d = (fx u + cx, fy v + cy)
                g_j00 += -uc * g_j02
                g_j11 += -vc * g_j12
                g_u = fx * g_m2d[cam, g, 0] - j00 * g_j02 * _clamp_pass(u, -lxn, lxp, half, one, zero)
                g_v = fy * g_m2d[cam, g, 1] - j11 * g_j12 * _clamp_pass(v, -lyn, lyp, half, one, zero)
                # j00 = fx rz, j11 = fy rz, u = x rz, v = y rz, rz = 1 / z; depths = z
                g_rz = fx * g_j00 + fy * g_j11 + x * g_u + y * g_v
                gx, gy = rz * g_u, rz * g_v
                gz = g_depths[cam, g] - rz * rz * g_rz
                # camera-space position = Rc m + t; Wc = Rc R
                gm0 += vm[cam, 0, 0] * gx + vm[cam, 1, 0] * gy + vm[cam, 2, 0] * gz
                gm1 += vm[cam, 0, 1] * gx + vm[cam, 1, 1] * gy + vm[cam, 2, 1] * gz
                gm2 += vm[cam, 0, 2] * gx + vm[cam, 1, 2] * gy + vm[cam, 2, 2] * gz
                for l in range(3):
                    for kk in range(3):
                        gR[l, kk] += vm[cam, 0, l] * gW[0, kk] + vm[cam, 1, l] * gW[1, kk] + vm[cam, 2, l] * gW[2, kk]
            g_means[g, 0], g_means[g, 1], g_means[g, 2] = gm0, gm1, gm2
            g_scales[g, 0], g_scales[g, 1], g_scales[g, 2] = gs0, gs1, gs2
            # R of the normalised quaternion (w, x, y, z)
            w, x, y, z = qw, qx, qy, qz
            gw = two * (-z * gR[0, 1] + y * gR[0, 2] + z * gR[1, 0] - x * gR[1, 2] - y * gR[2, 0] + x * gR[2, 1])
            gx = two * (y * gR[0, 1] + z * gR[0, 2] + y * gR[1, 0] - two * x * gR[1, 1] - w * gR[1, 2]
                        + z * gR[2, 0] + w * gR[2, 1] - two * x * gR[2, 2])
            gy = two * (-two * y * gR[0, 0] + x * gR[0, 1] + w * gR[0, 2] + x * gR[1, 0] + z * gR[1, 2]
                        - w * gR[2, 0] + z * gR[2, 1] - two * y * gR[2, 2])
            gz = two * (-two * z * gR[0, 0] - w * gR[0, 1] + x * gR[0, 2] + w * gR[1, 0] - two * z * gR[1, 1]
                        + y * gR[1, 2] + x * gR[2, 0] + y * gR[2, 1])
            # q_hat = q / max(|q|, 1e-12)
            if qnorm_ok:
                dot = w * gw + x * gx + y * gy + z * gz
                gw, gx, gy, gz = gw - w * dot, gx - x * dot, gy - y * dot, gz - z * dot
            g_quats[g, 0], g_quats[g, 1], g_quats[g, 2], g_quats[g, 3] = gw / qd, gx / qd, gy / qd, gz / qd


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


class _ProjectNumba(torch.autograd.Function):
    @staticmethod
    def forward(ctx, means, quats, scales, opacities, viewmats, Ks, width, height, eps2d, near, far):  # type: ignore[override]
        C, N = viewmats.shape[0], means.shape[0]
        arrs = [_np(t) for t in (means, quats, scales, opacities, viewmats, Ks)]
        dt = arrs[0].dtype
        k = _CONSTS.astype(dt)
        m2d = np.empty((C, N, 2), dtype=dt)
        conics = np.empty((C, N, 3), dtype=dt)
        depths = np.empty((C, N), dtype=dt)
        radii = np.empty((C, N, 2), dtype=np.int32)
        set_numba_threads()
        scal = [dt.type(v) for v in (width, height, eps2d, near, far)]
        _forward(*arrs, *scal, k, m2d, conics, depths, radii)
        ctx.saved = (arrs, scal, k, radii)
        r = torch.from_numpy(radii)
        ctx.mark_non_differentiable(r)
        return torch.from_numpy(m2d), torch.from_numpy(conics), torch.from_numpy(depths), r

    @staticmethod
    @once_differentiable
    def backward(ctx, g_m2d, g_conics, g_depths, _g_radii):  # type: ignore[override]
        (means, quats, scales, _opac, vm, Ks), (W, H, eps2d, _near, _far), k, radii = ctx.saved
        dt = means.dtype
        g = [_np(t).astype(dt, copy=False) for t in (g_m2d, g_conics, g_depths)]
        g_means = np.empty_like(means)
        g_quats = np.empty_like(quats)
        g_scales = np.empty_like(scales)
        set_numba_threads()
        _backward(means, quats, scales, vm, Ks, W, H, eps2d, k, radii, *g, g_means, g_quats, g_scales)
        return (torch.from_numpy(g_means), torch.from_numpy(g_quats), torch.from_numpy(g_scales),
                None, None, None, None, None, None, None, None)  # fmt: skip


def use_numba_projection(means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor) -> bool:
    """True when the compiled projection applies: CPU tensors of one float dtype (float32 / float64), the
    cameras (``viewmats``, ``Ks``) without gradient, and numba the CPU backend
    (:func:`~endogs.render.cpu_select.choose_cpu_backend`, ``ENDOGS_CPU_BACKEND``)."""
    ts = (means, quats, scales, opacities, viewmats, Ks)
    if any(t.device.type != "cpu" or t.dtype != means.dtype for t in ts):
        return False
    if means.dtype not in (torch.float32, torch.float64) or viewmats.requires_grad or Ks.requires_grad:
        return False
    return choose_cpu_backend(None, means.device) == "numba"


def project_gaussians_numba(
    means: Tensor, quats: Tensor, scales: Tensor, opacities: Tensor, viewmats: Tensor, Ks: Tensor,
    width: int, height: int, eps2d: float = 0.3, near: float = 0.01, far: float = 1e10,
) -> Projection:  # fmt: skip
    """:func:`endogs.render.projection.project_gaussians` by the compiled kernels (same arguments and
    result; differentiable with respect to ``means``, ``quats`` and ``scales``)."""
    m2d, conics, depths, radii = _ProjectNumba.apply(
        means, quats, scales, opacities, viewmats, Ks, int(width), int(height), float(eps2d), float(near), float(far)
    )
    return Projection(means2d=m2d, conics=conics, depths=depths, radii=radii)
