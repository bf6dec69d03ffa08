"""Compiled CPU sampling of the HexPlane planes: numba kernels for the six-plane product and its backward.

:class:`~endogs.model.hexplane.HexPlaneField` multiplies, per resolution level, six bilinear samples
(three spatial planes, three time planes) of ``grid_sample(..., mode="bilinear",
padding_mode="border", align_corners=True)``. On the CPU, PyTorch's ``grid_sample`` backward and the
autograd of the product chain took about a third of a training step (20k Gaussians, 320x256). This
module computes the same values in two kernels:

* *forward* (parallel over Gaussians): the planes are copied channel-last (``[plane, cell, C]``) so a
  corner's C features are one contiguous vector; each Gaussian's six samples are multiplied in the
  order ``s_xy * s_xz * s_yz * t_x * t_y * t_z``, as the PyTorch path does.
* *backward* (parallel over blocks of Gaussians): the six samples are recomputed, the gradient of
  each is the output gradient times the product of the other five (prefix and suffix products, no
  division), and it is scattered to the four corners. Each thread's block adds into its own copy of
  the plane gradients, summed afterwards in block order, so no two threads write the same memory and
  a given thread count always gives the same bits (other counts differ by rounding).

Only the planes receive gradients: the coordinates are constants (the field's ``detach_canonical``,
the default). Where the coordinates need a gradient, the tensors are not on the CPU, numba is missing
or ``ENDOGS_CPU_BACKEND=torch`` asks for the reference path, the field uses ``grid_sample``
(:func:`use_numba_sampling` decides). Kernels compile on first use, are cached on disk (``cache=True``)
and compute in the planes' dtype (float32 in training, float64 in the reference tests).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor
from torch.autograd.function import once_differentiable

from endogs.render.cpu_numba import set_numba_threads
from endogs.render.cpu_select import choose_cpu_backend

_FASTMATH = {"contract", "nsz"}


@njit(cache=True, inline="always")
def _cell(x, size, hi, k):  # pragma: no cover - compiled
    """Lower corner and fraction of normalised ``x`` on an axis of ``size`` cells, as ``grid_sample``
    computes them (align_corners=True, border padding; NaN goes to the first cell). ``k`` holds the
    constants [0, 1, 0.5] and ``hi`` is ``size - 1``, in the compute dtype (a literal would promote float32 to float64)."""
    u = (x + k[1]) * k[2] * hi
    if not u >= k[0]:
        u = k[0]
    if not u <= hi:
        u = hi
    i0 = min(int(np.floor(u)), size - 2)
    return i0, u - i0


@njit(cache=True, inline="always")
def _bilinear(fx, fy, one):  # pragma: no cover - compiled
    """Weights of the corners (x0, y0), (x1, y0), (x0, y1), (x1, y1) at fractions ``fx``, ``fy``."""
    return (one - fx) * (one - fy), fx * (one - fy), (one - fx) * fy, fx * fy


@njit(cache=True, parallel=True)
def _cells(xyz, tc, res, tres, idx, frac):  # pragma: no cover - compiled
    """Per Gaussian and plane: the flat index of the lower corner (row stride ``res``) and the two
    fractions, as ``grid_sample`` computes them (align_corners=True, border padding)."""
    n = xyz.shape[0]
    k = np.array([0.0, 1.0, 0.5, res - 1.0, tres - 1.0]).astype(xyz.dtype)
    t0, ft = _cell(tc[0], tres, k[4], k)  # the time coordinate is the same for every Gaussian
    for g in prange(n):
        ix, fx = _cell(xyz[g, 0], res, k[3], k)
        iy, fy = _cell(xyz[g, 1], res, k[3], k)
        iz, fz = _cell(xyz[g, 2], res, k[3], k)
        # spatial planes (i, j) = (0, 1), (0, 2), (1, 2): column = axis i, row = axis j
        idx[g, 0] = iy * res + ix
        frac[g, 0, 0] = fx
        frac[g, 0, 1] = fy
        idx[g, 1] = iz * res + ix
        frac[g, 1, 0] = fx
        frac[g, 1, 1] = fz
        idx[g, 2] = iz * res + iy
        frac[g, 2, 0] = fy
        frac[g, 2, 1] = fz
        # time planes x-t, y-t, z-t: column = the spatial axis, row = time
        idx[g, 3] = t0 * res + ix
        frac[g, 3, 0] = fx
        frac[g, 3, 1] = ft
        idx[g, 4] = t0 * res + iy
        frac[g, 4, 0] = fy
        frac[g, 4, 1] = ft
        idx[g, 5] = t0 * res + iz
        frac[g, 5, 0] = fz
        frac[g, 5, 1] = ft


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _forward(sp, tp, idx, frac, res, out, col):  # pragma: no cover - compiled
    """out[g, col:col+C] = product of the six bilinear samples (``sp`` [3, R*R, C], ``tp`` [3, T*R, C])."""
    n = idx.shape[0]
    c_dim = sp.shape[2]
    one = np.ones(1, dtype=sp.dtype)[0]
    for g in prange(n):
        for k in range(6):
            w00, w01, w10, w11 = _bilinear(frac[g, k, 0], frac[g, k, 1], one)
            b = idx[g, k]
            p = sp[k] if k < 3 else tp[k - 3]
            if k == 0:
                for c in range(c_dim):
                    out[g, col + c] = w00 * p[b, c] + w01 * p[b + 1, c] + w10 * p[b + res, c] + w11 * p[b + res + 1, c]
            else:
                for c in range(c_dim):
                    out[g, col + c] *= w00 * p[b, c] + w01 * p[b + 1, c] + w10 * p[b + res, c] + w11 * p[b + res + 1, c]


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _backward(sp, tp, idx, frac, res, gout, col, bounds, gsp, gtp):  # pragma: no cover - compiled
    """Scatter dL/d(sample) to the planes' corners. Gaussians ``bounds[j]:bounds[j+1]`` add into the
    private gradients ``gsp[j]`` [3, R*R, C] and ``gtp[j]`` [3, T*R, C] (zeroed by the caller), so
    no two threads write the same memory; the caller sums over j."""
    c_dim = sp.shape[2]
    one = np.ones(1, dtype=sp.dtype)[0]
    for j in prange(bounds.shape[0] - 1):
        v = np.empty((6, c_dim), dtype=sp.dtype)
        suf = np.empty((7, c_dim), dtype=sp.dtype)
        pre = np.empty(c_dim, dtype=sp.dtype)
        gk = np.empty(c_dim, dtype=sp.dtype)
        w = np.empty((6, 4), dtype=sp.dtype)
        for g in range(bounds[j], bounds[j + 1]):
            for k in range(6):
                w00, w01, w10, w11 = _bilinear(frac[g, k, 0], frac[g, k, 1], one)
                w[k, 0], w[k, 1], w[k, 2], w[k, 3] = w00, w01, w10, w11
                b = idx[g, k]
                p = sp[k] if k < 3 else tp[k - 3]
                for c in range(c_dim):
                    v[k, c] = w00 * p[b, c] + w01 * p[b + 1, c] + w10 * p[b + res, c] + w11 * p[b + res + 1, c]
            for c in range(c_dim):
                suf[6, c] = one
                pre[c] = gout[g, col + c]
            for k in range(5, -1, -1):
                for c in range(c_dim):
                    suf[k, c] = suf[k + 1, c] * v[k, c]
            for k in range(6):
                b = idx[g, k]
                q = gsp[j, k] if k < 3 else gtp[j, k - 3]
                for c in range(c_dim):
                    gk[c] = pre[c] * suf[k + 1, c]
                    pre[c] *= v[k, c]
                # one store per loop, so each vectorises
                for corner, off in enumerate((0, 1, res, res + 1)):
                    wc = w[k, corner]
                    for c in range(c_dim):
                        q[b + off, c] += wc * gk[c]


def use_numba_sampling(xyz: Tensor, planes: Sequence[Tensor]) -> bool:
    """True when the compiled sampler applies: CPU tensors of one float dtype, coordinates that need
    no gradient, and the CPU rasterizer choice (:func:`~endogs.render.cpu_select.choose_cpu_backend`,
    ``ENDOGS_CPU_BACKEND``) is numba."""
    if xyz.requires_grad or xyz.device.type != "cpu" or xyz.dtype not in (torch.float32, torch.float64):
        return False
    if not all(p.device.type == "cpu" and p.dtype == xyz.dtype for p in planes):
        return False
    return choose_cpu_backend(None, xyz.device) == "numba"  # the rasterizer's choice (ENDOGS_CPU_BACKEND)


def _channel_last(plane: Tensor) -> np.ndarray:
    """[3, C, H, W] -> contiguous numpy [3, H*W, C]."""
    k, c, h, w = plane.shape
    return plane.detach().reshape(k, c, h * w).transpose(1, 2).contiguous().numpy()


class _HexSample(torch.autograd.Function):
    @staticmethod
    def forward(ctx, xyz: Tensor, tc: float, *planes: Tensor) -> Tensor:  # planes: s0, t0, s1, t1, ...
        xyz_np = xyz.detach().contiguous().numpy()
        n = xyz_np.shape[0]
        levels = len(planes) // 2
        c_dim = planes[0].shape[1]
        out = np.empty((n, c_dim * levels), dtype=xyz_np.dtype)
        saved = []
        set_numba_threads()
        for lev in range(levels):
            spatial, temporal = planes[2 * lev], planes[2 * lev + 1]
            res, tres = spatial.shape[-1], temporal.shape[-2]
            idx = np.empty((n, 6), dtype=np.int64)
            frac = np.empty((n, 6, 2), dtype=xyz_np.dtype)
            _cells(xyz_np, np.array([tc], dtype=xyz_np.dtype), res, tres, idx, frac)
            sp, tp = _channel_last(spatial), _channel_last(temporal)
            _forward(sp, tp, idx, frac, res, out, lev * c_dim)
            saved.append((sp, tp, idx, frac, res))
        ctx.saved = saved
        ctx.shapes = [(p.shape, p.dtype) for p in planes]
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, gout: Tensor):
        g = gout.detach().contiguous().numpy()
        threads = set_numba_threads()
        grads: list[Optional[Tensor]] = [None, None]
        for lev, (sp, tp, idx, frac, res) in enumerate(ctx.saved):
            c_dim = sp.shape[2]
            n = idx.shape[0]
            chunks = max(1, min(threads, n))
            bounds = np.linspace(0, n, chunks + 1).round().astype(np.int64)
            gsp = np.zeros((chunks,) + sp.shape, dtype=sp.dtype)
            gtp = np.zeros((chunks,) + tp.shape, dtype=tp.dtype)
            if n:
                _backward(sp, tp, idx, frac, res, g, lev * c_dim, bounds, gsp, gtp)
            gsp, gtp = gsp.sum(axis=0), gtp.sum(axis=0)
            for gp, (shape, dtype) in ((gsp, ctx.shapes[2 * lev]), (gtp, ctx.shapes[2 * lev + 1])):
                k, c, h, w = shape
                grads.append(torch.from_numpy(gp).transpose(1, 2).reshape(k, c, h, w).to(dtype))
        return tuple(grads)


def hexplane_features(xyz: Tensor, tc: float, planes: Sequence[Tensor]) -> Tensor:
    """Grid features [N, C * levels] of the HexPlane at normalised ``xyz`` [N, 3] (no gradient) and
    time coordinate ``tc`` in [-1, 1]; ``planes`` = (spatial_0, temporal_0, spatial_1, ...), spatial
    [3, C, R, R], temporal [3, C, T, R]. Differentiable with respect to the planes."""
    return _HexSample.apply(xyz, float(tc), *planes)
