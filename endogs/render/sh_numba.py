"""Compiled CPU view-dependent colour: the SH evaluation of :func:`endogs.render.sh.sh_to_rgb` and its
backward in two numba kernels.

The PyTorch path builds the basis from ~30 element-wise ops over the Gaussians, multiplies it into the
``[N, K, 3]`` coefficients and sums; its autograd then runs about as many ops again, each a pass over
memory (degree 3 at 81,920 Gaussians: 38-47 ms forward and backward, against 10-13 ms here, measured
side by side in one process). Here one pass per Gaussian does it all:

* *forward* (parallel over Gaussians): normalise the view direction, evaluate the ``(d + 1) ** 2``
  basis functions (gsplat's order, signs and constants, :mod:`endogs.render.sh`), sum them into the
  three channels, add 0.5 and clamp at 0;
* *backward* (parallel over Gaussians): recompute the basis, pass the gradient where the clamp did
  (``raw + 0.5 >= 0``, as ``torch.clamp_min`` does), write ``dL/dcoeff = Y_k * g`` (summed over the
  cameras) and ``dL/ddir`` through the basis' hand-written derivatives and the normalisation.

The parallel loops run over blocks of 256 Gaussians (one set of scratch arrays per block, not per
Gaussian); each Gaussian is owned by one thread, so the result does not depend on the number of threads. The
kernels compute in the tensors' dtype (float32 in training; the float64 tests compare them with the
PyTorch path to 1e-12), are compiled on first use and cached on disk. :func:`use_numba_sh` decides when
this path applies (CPU float tensors, degree >= 1, numba chosen as the CPU backend); everywhere else
``sh_to_rgb`` is the reference and the path.
"""

from __future__ import annotations

import numpy as np
import torch
from numba import njit, prange
from torch import Tensor
from torch.autograd.function import once_differentiable

from .cpu_numba import set_numba_threads
from .cpu_select import choose_cpu_backend
from .sh import SH_C0, SH_C1, SH_C2, SH_C3, num_sh_bases

_FASTMATH = {"contract", "nsz"}

# [C0, C1, C2 x5, C3 x7, 0.5, 1e-12, 0, 2, 3, 4, 6, 8]: the constants in the compute dtype (a literal
# would promote float32 arithmetic to float64)
_CONSTS = np.array([SH_C0, SH_C1, *SH_C2, *SH_C3, 0.5, 1e-12, 0.0, 2.0, 3.0, 4.0, 6.0, 8.0])
_HALF, _EPS, _ZERO, _TWO, _THREE, _FOUR, _SIX, _EIGHT = range(14, 22)
_BLOCK = 256  # Gaussians per parallel iteration (one set of scratch arrays each)


@njit(cache=True, inline="always")
def _basis(x, y, z, k, y_out):  # pragma: no cover - compiled
    """The basis at unit (x, y, z) into ``y_out`` [K] (K = 4, 9 or 16)."""
    kk = y_out.shape[0]
    y_out[0] = k[0]
    y_out[1] = -k[1] * y
    y_out[2] = k[1] * z
    y_out[3] = -k[1] * x
    if kk > 4:
        xx, yy, zz = x * x, y * y, z * z
        y_out[4] = k[2] * (x * y)
        y_out[5] = k[3] * (y * z)
        y_out[6] = k[4] * (k[_TWO] * zz - xx - yy)
        y_out[7] = k[5] * (x * z)
        y_out[8] = k[6] * (xx - yy)
        if kk > 9:
            y_out[9] = k[7] * y * (k[_THREE] * xx - yy)
            y_out[10] = k[8] * (x * y) * z
            y_out[11] = k[9] * y * (k[_FOUR] * zz - xx - yy)
            y_out[12] = k[10] * z * (k[_TWO] * zz - k[_THREE] * xx - k[_THREE] * yy)
            y_out[13] = k[11] * x * (k[_FOUR] * zz - xx - yy)
            y_out[14] = k[12] * z * (xx - yy)
            y_out[15] = k[13] * x * (xx - k[_THREE] * yy)


@njit(cache=True, inline="always")
def _unit(dirs, c, n, k):  # pragma: no cover - compiled
    """Unit direction of ``dirs[c, n]`` as ``d / max(|d|, 1e-12)``, that denominator, and whether |d| > 1e-12."""
    dx, dy, dz = dirs[c, n, 0], dirs[c, n, 1], dirs[c, n, 2]
    norm = np.sqrt(dx * dx + dy * dy + dz * dz)
    den = norm if norm > k[_EPS] else k[_EPS]
    return dx / den, dy / den, dz / den, den, norm > k[_EPS]


@njit(cache=True, inline="always", fastmath=_FASTMATH)
def _raw_colour(yb, coeffs, g, ch, k):  # pragma: no cover - compiled
    """``sum_k yb[k] * coeffs[g, k, ch] + 0.5``, before the clamp."""
    s = k[_ZERO]
    for b in range(yb.shape[0]):
        s += yb[b] * coeffs[g, b, ch]
    return s + k[_HALF]


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _forward(dirs, coeffs, kk, k, out):  # pragma: no cover - compiled
    """out[c, n] = max(sum_k Y_k(unit(dirs[c, n])) coeffs[n, k] + 0.5, 0)."""
    n_cam, n = dirs.shape[0], dirs.shape[1]
    for blk in prange((n + _BLOCK - 1) // _BLOCK):
        yb = np.empty(kk, dtype=dirs.dtype)
        for g in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            for c in range(n_cam):
                x, y, z, _, _ = _unit(dirs, c, g, k)
                _basis(x, y, z, k, yb)
                for ch in range(3):
                    s = _raw_colour(yb, coeffs, g, ch, k)
                    out[c, g, ch] = s if s > k[_ZERO] else k[_ZERO]


@njit(cache=True, parallel=True, fastmath=_FASTMATH)
def _backward(dirs, coeffs, kk, k, gout, gcoeffs, gdirs):  # pragma: no cover - compiled
    """dL/dcoeffs [N, K, 3] (summed over the cameras) and dL/ddirs [C, N, 3]."""
    n_cam, n = dirs.shape[0], dirs.shape[1]
    for blk in prange((n + _BLOCK - 1) // _BLOCK):
        yb = np.empty(kk, dtype=dirs.dtype)
        gy = np.empty(kk, dtype=dirs.dtype)  # dL/dY_k
        g3 = np.empty(3, dtype=dirs.dtype)  # dL/d(colour) where the clamp passes
        for g in range(blk * _BLOCK, min(n, (blk + 1) * _BLOCK)):
            for c in range(n_cam):
                x, y, z, den, unclamped = _unit(dirs, c, g, k)
                _basis(x, y, z, k, yb)
                for ch in range(3):
                    s = _raw_colour(yb, coeffs, g, ch, k)
                    g3[ch] = gout[c, g, ch] if s >= k[_ZERO] else k[_ZERO]
                for b in range(kk):
                    gy[b] = coeffs[g, b, 0] * g3[0] + coeffs[g, b, 1] * g3[1] + coeffs[g, b, 2] * g3[2]
                    for ch in range(3):
                        if c == 0:
                            gcoeffs[g, b, ch] = yb[b] * g3[ch]
                        else:
                            gcoeffs[g, b, ch] += yb[b] * g3[ch]
                # dL/du through the basis' derivatives (u = unit direction)
                gx = -k[1] * gy[3]
                gyy = -k[1] * gy[1]
                gz = k[1] * gy[2]
                if kk > 4:
                    xx, yy, zz = x * x, y * y, z * z
                    gx += k[2] * y * gy[4] - k[_TWO] * k[4] * x * gy[6] + k[5] * z * gy[7] + k[_TWO] * k[6] * x * gy[8]
                    gyy += k[2] * x * gy[4] + k[3] * z * gy[5] - k[_TWO] * k[4] * y * gy[6] - k[_TWO] * k[6] * y * gy[8]
                    gz += k[3] * y * gy[5] + k[_FOUR] * k[4] * z * gy[6] + k[5] * x * gy[7]
                    if kk > 9:
                        gx += (k[7] * k[_SIX] * x * y * gy[9] + k[8] * y * z * gy[10] - k[9] * k[_TWO] * x * y * gy[11]
                               - k[10] * k[_SIX] * x * z * gy[12] + k[11] * (k[_FOUR] * zz - k[_THREE] * xx - yy) * gy[13]
                               + k[12] * k[_TWO] * x * z * gy[14] + k[13] * k[_THREE] * (xx - yy) * gy[15])
                        gyy += (k[7] * k[_THREE] * (xx - yy) * gy[9] + k[8] * x * z * gy[10]
                                + k[9] * (k[_FOUR] * zz - xx - k[_THREE] * yy) * gy[11] - k[10] * k[_SIX] * y * z * gy[12]
                                - k[11] * k[_TWO] * x * y * gy[13] - k[12] * k[_TWO] * y * z * gy[14]
                                - k[13] * k[_SIX] * x * y * gy[15])
                        gz += (k[8] * x * y * gy[10] + k[9] * k[_EIGHT] * y * z * gy[11]
                               + k[10] * (k[_SIX] * zz - k[_THREE] * xx - k[_THREE] * yy) * gy[12]
                               + k[11] * k[_EIGHT] * x * z * gy[13] + k[12] * (xx - yy) * gy[14])
                # through u = d / max(|d|, eps): (g - u (u . g)) / |d|, or g / eps where the clamp holds
                if unclamped:
                    dot = x * gx + y * gyy + z * gz
                    gx, gyy, gz = gx - x * dot, gyy - y * dot, gz - z * dot
                gdirs[c, g, 0] = gx / den
                gdirs[c, g, 1] = gyy / den
                gdirs[c, g, 2] = gz / den


class _SHColour(torch.autograd.Function):
    @staticmethod
    def forward(ctx, degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
        kk = num_sh_bases(degree)
        d = dirs.detach().contiguous().numpy()
        co = coeffs.detach()[:, :kk].contiguous().numpy()
        consts = _CONSTS.astype(d.dtype)
        out = np.empty(d.shape, dtype=d.dtype)
        set_numba_threads()
        _forward(d, co, kk, consts, out)
        ctx.saved = (d, co, kk, consts)
        ctx.coeff_shape = tuple(coeffs.shape)
        return torch.from_numpy(out)

    @staticmethod
    @once_differentiable
    def backward(ctx, gout: Tensor):
        d, co, kk, consts = ctx.saved
        g = gout.detach().contiguous().numpy().astype(d.dtype, copy=False)
        gco = np.empty(ctx.coeff_shape, dtype=d.dtype)
        gco[:, kk:] = 0.0  # coefficients above the degree: no gradient
        gd = np.empty(d.shape, dtype=d.dtype)
        set_numba_threads()
        _backward(d, co, kk, consts, g, gco[:, :kk], gd)
        return None, torch.from_numpy(gd), torch.from_numpy(gco)


def use_numba_sh(degree: int, dirs: Tensor, coeffs: Tensor) -> bool:
    """True when the compiled colour applies: degree 1..3, ``dirs`` [C, N, 3] and ``coeffs`` [N, K, 3]
    CPU tensors of one float dtype (float32 / float64), and numba is the CPU backend
    (:func:`~endogs.render.cpu_select.choose_cpu_backend`, ``ENDOGS_CPU_BACKEND``)."""
    if not 1 <= degree <= 3 or dirs.dim() != 3 or coeffs.dim() != 3 or dirs.shape[-1] != 3 or coeffs.shape[-1] != 3:
        return False
    if dirs.shape[1] != coeffs.shape[0] or coeffs.shape[1] < num_sh_bases(degree):
        return False
    if dirs.device.type != "cpu" or coeffs.device.type != "cpu" or dirs.dtype != coeffs.dtype:
        return False
    if dirs.dtype not in (torch.float32, torch.float64):
        return False
    return choose_cpu_backend(None, dirs.device) == "numba"


def sh_to_rgb_numba(degree: int, dirs: Tensor, coeffs: Tensor) -> Tensor:
    """:func:`endogs.render.sh.sh_to_rgb` for ``dirs`` [C, N, 3] and coefficients ``coeffs`` [N, K, 3]
    shared by the cameras; returns [C, N, 3], differentiable with respect to both."""
    return _SHColour.apply(int(degree), dirs, coeffs)
