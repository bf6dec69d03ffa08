"""Compiled CPU rasterizer: numba kernels for binning, compositing and its backward.

It composites exactly what :mod:`endogs.render.cpu` (and gsplat 1.5.3, ``packed=False``,
``rasterize_mode="classic"``) composites; only the way it is computed differs:

1. *Binning* (serial, one pass to count and one to fill): visible Gaussians are visited in
   (camera, depth) order and appended to every tile whose pixel centres meet both their radius
   box and their ``alpha >= 1/255`` ellipse (the same exact per-row ellipse test as the PyTorch
   path). Visiting in depth order makes this a counting sort: each tile's run of the CSR list
   ``pair_gid`` is already front to back, no pair sort is needed.
2. *Forward* (parallel over tiles with ``prange``): per pixel, front to back, stopping
   (exclusively) before the Gaussian that would take the transmittance to ``1e-4``. The loop runs
   over the tile's Gaussians outside and its pixels inside (each pixel sees the same sequence as a
   per-pixel loop, so the result is the same to the bit), and a tile stops when all its pixels have.
   The final transmittance and the number of Gaussians visited are kept per pixel.
3. *Backward* (parallel over tiles): per pixel, back to front from the last visited Gaussian,
   recovering ``T`` by division by ``1 - alpha`` and carrying the suffix sum ``S`` of
   ``w G``; ``dL/dsigma = alpha / (1 - alpha) S - w G``. Again Gaussians outside, pixels inside:
   a (tile, Gaussian) pair's gradient is summed over the tile's pixels locally and written once, so
   tiles never race; the pairs are then summed per Gaussian in one serial pass.

Arithmetic is float64 inside the kernels whatever the tensor dtype. The kernels are compiled on
first use and cached on disk (``cache=True``, in numba's cache folder next to this file or in
``NUMBA_CACHE_DIR``). ``torch.get_num_threads()`` sets numba's thread count for every call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numba
import numpy as np
import torch
from numba import njit, prange
from torch import Tensor

from .cpu import _CULL_SLACK, _LN_255, T_STOP  # one definition of the compositing constants
from .projection import ALPHA_MAX, ALPHA_THRESHOLD

#: Default tile edge in pixels of the compiled path (a speed knob only).
DEFAULT_TILE_SIZE = 8


@dataclass
class NumbaLayout:
    """CSR binning of (tile, Gaussian) pairs, front to back within each tile.

    Attributes:
        n_cameras: Number of images C.
        width: Image width.
        height: Image height.
        tile_size: Tile edge in pixels.
        tiles_x: Tiles per row.
        tiles_y: Tiles per column.
        tile_start: [C*tiles_y*tiles_x + 1] int64 offsets into ``pair_gid``.
        pair_gid: [M] int64 flat ``camera * N + gaussian`` ids.
    """

    n_cameras: int
    width: int
    height: int
    tile_size: int
    tiles_x: int
    tiles_y: int
    tile_start: np.ndarray
    pair_gid: np.ndarray

    @property
    def n_pairs(self) -> int:
        """Number of (tile, Gaussian) intersections."""
        return int(self.pair_gid.shape[0])


@njit(cache=True)
def _bin(order, m, cn, opa, radii, N, W, H, ts, tw, th, fill, counts, pair_gid):  # pragma: no cover - compiled
    """Count (``fill`` False) or write (``fill`` True, ``counts`` = running offsets) the pairs."""
    for i in range(order.shape[0]):
        g = order[i]
        cam = g // N
        mx, my = float(m[g, 0]), float(m[g, 1])
        rx, ry = float(radii[g, 0]), float(radii[g, 1])
        lox = max(math.ceil(mx - rx - 0.5), 0.0)
        hix = min(math.floor(mx + rx - 0.5), W - 1.0)
        loy = max(math.ceil(my - ry - 0.5), 0.0)
        hiy = min(math.floor(my + ry - 0.5), H - 1.0)
        if hix < lox or hiy < loy:
            continue
        a, b, c = float(cn[g, 0]), float(cn[g, 1]), float(cn[g, 2])
        tau2 = max(2.0 * (math.log(max(float(opa[g]), 1e-30)) + _LN_255 + _CULL_SLACK), 0.0)
        det = max(a * c - b * b, 1e-30)
        yext = math.sqrt(tau2 * a / det)
        yxm = b * math.sqrt(tau2 / (c * det))
        ta = tau2 * a
        for ty in range(int(loy) // ts, int(hiy) // ts + 1):
            band0 = max(ty * ts + 0.5 - my, -yext)
            band1 = min(min(ty * ts + ts, H) - 0.5 - my, yext)
            if band1 < band0:
                continue
            yl = min(max(yxm, band0), band1)
            yr = min(max(-yxm, band0), band1)
            xl = (-b * yl - math.sqrt(max(ta - det * yl * yl, 0.0))) / a
            xr = (-b * yr + math.sqrt(max(ta - det * yr * yr, 0.0))) / a
            px0 = max(math.ceil(xl + mx - 0.5), lox)
            px1 = min(math.floor(xr + mx - 0.5), hix)
            if px1 < px0:
                continue
            base = (cam * th + ty) * tw
            for tx in range(int(px0) // ts, int(px1) // ts + 1):
                t = base + tx
                if fill:
                    pair_gid[counts[t]] = g
                counts[t] += 1


@njit(cache=True)
def _load_tile(s, e, pair_gid, m, cn, opa, feats):  # pragma: no cover - compiled
    """Tile-local float64 copies: rows (mx, my, a, b, c, o, ln(255 o) + slack) and features."""
    F = feats.shape[1]
    loc = np.empty((e - s, 7))
    lf = np.empty((e - s, F))
    for j in range(e - s):
        g = pair_gid[s + j]
        loc[j, 0], loc[j, 1] = m[g, 0], m[g, 1]
        loc[j, 2], loc[j, 3], loc[j, 4] = cn[g, 0], cn[g, 1], cn[g, 2]
        o = float(opa[g])
        loc[j, 5] = o
        # sigma above this gives alpha < 1/255 for sure (the exact test follows for the rest).
        loc[j, 6] = math.log(max(o, 1e-30)) + _LN_255 + 1e-6
        for f in range(F):
            lf[j, f] = feats[g, f]
    return loc, lf


@njit(cache=True)
def _tile_pixels(t, tw, th, ts, W, H):  # pragma: no cover - compiled
    """Tile ``t``'s camera, pixel box (y0, y1, x0, x1) and pixel centres (row-major) as two arrays."""
    cam = t // (tw * th)
    ty = (t // tw) % th
    tx = t % tw
    y0, y1 = ty * ts, min(ty * ts + ts, H)
    x0, x1 = tx * ts, min(tx * ts + ts, W)
    P = (y1 - y0) * (x1 - x0)
    pxc = np.empty(P)
    pyc = np.empty(P)
    q = 0
    for py in range(y0, y1):
        for px in range(x0, x1):
            pxc[q], pyc[q] = px + 0.5, py + 0.5
            q += 1
    return cam, y0, y1, x0, x1, pxc, pyc


@njit(parallel=True, cache=True)
def _forward(tile_start, pair_gid, m, cn, opa, feats, W, H, ts, tw, th, out, tfinal, nvis):  # pragma: no cover
    """Composite every tile; ``out`` [C, H, W, F+1], ``tfinal``/``nvis`` [C, H, W]. Gaussians outer, the
    tile's pixels inner: each Gaussian is read once per tile, and the tile stops when every pixel has."""
    F = feats.shape[1]
    n_tiles = tile_start.shape[0] - 1
    for t in prange(n_tiles):
        s, e = tile_start[t], tile_start[t + 1]
        if e == s:
            continue
        cam, y0, y1, x0, x1, pxc, pyc = _tile_pixels(t, tw, th, ts, W, H)
        loc, lf = _load_tile(s, e, pair_gid, m, cn, opa, feats)
        P = pxc.shape[0]
        T = np.ones(P)
        live = np.ones(P, dtype=np.bool_)
        n = np.zeros(P, dtype=np.int64)
        acc = np.zeros((P, F + 1))
        alive = P
        for j in range(e - s):
            mx, my = loc[j, 0], loc[j, 1]
            a, b, c = loc[j, 2], loc[j, 3], loc[j, 4]
            o, thr = loc[j, 5], loc[j, 6]
            for p in range(P):
                if not live[p]:
                    continue
                dx, dy = mx - pxc[p], my - pyc[p]
                sig = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                if sig > thr:
                    continue
                al = o * math.exp(-sig)
                if al < ALPHA_THRESHOLD:
                    continue
                al = min(al, ALPHA_MAX)
                Tp = T[p]
                nT = Tp * (1.0 - al)
                if nT <= T_STOP:
                    live[p] = False
                    alive -= 1
                    continue
                w = al * Tp
                for f in range(F):
                    acc[p, f] += w * lf[j, f]
                acc[p, F] += w
                T[p] = nT
                n[p] = j + 1
            if alive == 0:
                break
        q = 0
        for py in range(y0, y1):
            for px in range(x0, x1):
                for f in range(F + 1):
                    out[cam, py, px, f] = acc[q, f]
                tfinal[cam, py, px] = T[q]
                nvis[cam, py, px] = n[q]
                q += 1


@njit(parallel=True, cache=True)
def _backward(tile_start, pair_gid, m, cn, opa, feats, W, H, ts, tw, th, gout, tfinal, nvis, gp, gabs, absgrad):  # pragma: no cover
    """Per-pair gradients ``gp`` [M, 6+F] = (mx, my, a, b, c, o, feats) and ``gabs`` [M, 2]. Gaussians back
    to front outer, pixels inner: a pair's gradient is summed over the tile's pixels in local variables
    (in the same pixel order as a per-pixel loop would, so the sums are the same) and written once."""
    F = feats.shape[1]
    n_tiles = tile_start.shape[0] - 1
    for t in prange(n_tiles):
        s, e = tile_start[t], tile_start[t + 1]
        if e == s:
            continue
        cam, y0, y1, x0, x1, pxc, pyc = _tile_pixels(t, tw, th, ts, W, H)
        loc, lf = _load_tile(s, e, pair_gid, m, cn, opa, feats)
        P = pxc.shape[0]
        T = np.empty(P)
        S = np.zeros(P)
        n = np.empty(P, dtype=np.int64)
        go = np.empty((P, F + 1))
        q = 0
        nmax = 0
        for py in range(y0, y1):
            for px in range(x0, x1):
                T[q] = tfinal[cam, py, px]
                n[q] = nvis[cam, py, px]
                nmax = max(nmax, n[q])
                for f in range(F + 1):
                    go[q, f] = gout[cam, py, px, f]
                q += 1
        acc = np.empty(6 + F)
        for j in range(nmax - 1, -1, -1):
            mx, my = loc[j, 0], loc[j, 1]
            a, b, c = loc[j, 2], loc[j, 3], loc[j, 4]
            o, thr = loc[j, 5], loc[j, 6]
            acc[:] = 0.0
            ab0 = 0.0
            ab1 = 0.0
            for p in range(P):
                if j >= n[p]:
                    continue
                dx, dy = mx - pxc[p], my - pyc[p]
                sig = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy
                if sig > thr:
                    continue
                al = o * math.exp(-sig)
                if al < ALPHA_THRESHOLD:
                    continue
                clamped = al > ALPHA_MAX
                al = min(al, ALPHA_MAX)
                Tp = T[p] / (1.0 - al)
                T[p] = Tp
                w = al * Tp
                G = go[p, F]
                for f in range(F):
                    G += go[p, f] * lf[j, f]
                    acc[6 + f] += w * go[p, f]
                Sp = S[p]
                gs = al / (1.0 - al) * Sp - w * G
                S[p] = Sp + w * G
                if clamped:
                    continue
                gmx = gs * (a * dx + b * dy)
                gmy = gs * (b * dx + c * dy)
                acc[0] += gmx
                acc[1] += gmy
                acc[2] += gs * 0.5 * dx * dx
                acc[3] += gs * dx * dy
                acc[4] += gs * 0.5 * dy * dy
                acc[5] -= gs / o
                if absgrad:
                    ab0 += abs(gmx)
                    ab1 += abs(gmy)
            k = s + j
            for f in range(6 + F):
                gp[k, f] = acc[f]
            if absgrad:
                gabs[k, 0] = ab0
                gabs[k, 1] = ab1


@njit(cache=True)
def _reduce(pair_gid, gp, gabs, grads, gabs_out, absgrad):  # pragma: no cover - compiled
    """Sum per-pair gradients into per-Gaussian ones (serial: ids repeat across tiles)."""
    K = gp.shape[1]
    for k in range(pair_gid.shape[0]):
        g = pair_gid[k]
        for j in range(K):
            grads[g, j] += gp[k, j]
        if absgrad:
            gabs_out[g, 0] += gabs[k, 0]
            gabs_out[g, 1] += gabs[k, 1]


def _threads() -> None:
    """Run numba's parallel loops on as many threads as torch uses (thread-local setting)."""
    numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))


def _np(t: Tensor) -> np.ndarray:
    return t.detach().contiguous().numpy()


def build_layout(
    means2d: Tensor, conics: Tensor, opacities: Tensor, radii: Tensor, depths: Tensor,
    width: int, height: int, tile_size: int = DEFAULT_TILE_SIZE,
) -> NumbaLayout:  # fmt: skip
    """Bin visible Gaussians into tiles (CSR), front to back within each tile."""
    C, N = radii.shape[:2]
    ts = int(tile_size)
    if ts < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    tw, th = math.ceil(width / ts), math.ceil(height / ts)
    with torch.no_grad():
        from .cpu import _depth_order

        vid = (radii > 0).all(-1).reshape(-1).nonzero().squeeze(1)  # [V]
        cam = torch.div(vid, N, rounding_mode="floor")
        order = vid[_depth_order(depths.detach().reshape(-1)[vid], cam, C)] if vid.numel() else vid
        args = (
            _np(order), _np(means2d.reshape(C * N, 2)), _np(conics.reshape(C * N, 3)),
            _np(opacities.reshape(C * N)), _np(radii.reshape(C * N, 2)), N, width, height, ts, tw, th,
        )  # fmt: skip
    n_tiles = C * th * tw
    counts = np.zeros(n_tiles, dtype=np.int64)
    empty = np.zeros(0, dtype=np.int64)
    _bin(*args, False, counts, empty)
    start = np.zeros(n_tiles + 1, dtype=np.int64)
    np.cumsum(counts, out=start[1:])
    pair_gid = np.empty(int(start[-1]), dtype=np.int64)
    cursor = start[:-1].copy()
    _bin(*args, True, cursor, pair_gid)
    return NumbaLayout(C, width, height, ts, tw, th, start, pair_gid)


class _RasterizeNumba(torch.autograd.Function):
    """Autograd wrapper: (means2d, conics, feats, opacities) -> [C, H, W, F + 1] (feats, alpha)."""

    @staticmethod
    def forward(ctx, means2d, conics, feats, opacities, layout, absgrad):  # type: ignore[override]
        C, N = opacities.shape
        F = feats.shape[-1]
        H, W = layout.height, layout.width
        L = layout
        arrs = (_np(means2d.reshape(C * N, 2)), _np(conics.reshape(C * N, 3)),
                _np(opacities.reshape(C * N)), _np(feats.reshape(C * N, F)))  # fmt: skip
        out = np.zeros((C, H, W, F + 1), dtype=arrs[3].dtype)
        tfinal = np.ones((C, H, W), dtype=np.float64)
        nvis = np.zeros((C, H, W), dtype=np.int64)
        _threads()
        _forward(L.tile_start, L.pair_gid, *arrs, W, H, L.tile_size, L.tiles_x, L.tiles_y, out, tfinal, nvis)
        ctx.layout, ctx.absgrad, ctx.arrs, ctx.state = layout, absgrad, arrs, (tfinal, nvis)
        ctx.save_for_backward(means2d)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (means2d,) = ctx.saved_tensors
        L: NumbaLayout = ctx.layout
        m, cn, opa, feats = ctx.arrs
        tfinal, nvis = ctx.state
        C, N = means2d.shape[:2]
        F = feats.shape[1]
        M = L.n_pairs
        gout = _np(grad_out.to(means2d.dtype))
        gp = np.zeros((M, 6 + F), dtype=np.float64)
        gabs = np.zeros((M if ctx.absgrad else 0, 2), dtype=np.float64)
        _threads()
        _backward(L.tile_start, L.pair_gid, m, cn, opa, feats, L.width, L.height, L.tile_size, L.tiles_x,
                  L.tiles_y, gout, tfinal, nvis, gp, gabs, bool(ctx.absgrad))  # fmt: skip
        grads = np.zeros((C * N, 6 + F), dtype=np.float64)
        gabs_out = np.zeros((C * N if ctx.absgrad else 0, 2), dtype=np.float64)
        _reduce(L.pair_gid, gp, gabs, grads, gabs_out, bool(ctx.absgrad))
        dt = means2d.dtype
        g = torch.from_numpy(grads).to(dt)
        if ctx.absgrad:
            means2d.absgrad = torch.from_numpy(gabs_out).to(dt).reshape(C, N, 2)
        return (g[:, 0:2].reshape(C, N, 2), g[:, 2:5].reshape(C, N, 3), g[:, 6:].reshape(C, N, F),
                g[:, 5].reshape(C, N), None, None)  # fmt: skip


def rasterize_tiles_numba(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    feats: Tensor,  # [C, N, F]
    opacities: Tensor,  # [C, N]
    radii: Tensor,  # [C, N, 2]
    depths: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int = DEFAULT_TILE_SIZE,
    absgrad: bool = False,
    layout: Optional[NumbaLayout] = None,
) -> Tuple[Tensor, Tensor, NumbaLayout]:
    """Composite projected Gaussians front to back into C images (CPU tensors only).

    Same contract as :func:`endogs.render.cpu.rasterize_tiles`: returns ``(feats_img [C, H, W, F],
    alpha [C, H, W, 1], layout)`` and, with ``absgrad``, sets ``means2d.absgrad`` in backward.
    """
    if layout is None:
        layout = build_layout(means2d, conics, opacities, radii, depths, width, height, tile_size)
    out = _RasterizeNumba.apply(means2d, conics, feats, opacities, layout, absgrad)  # [C, H, W, F+1]
    return out[..., :-1], out[..., -1:], layout
