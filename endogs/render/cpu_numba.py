"""Compiled CPU rasterizer: numba kernels for binning, compositing and its backward.

It composites exactly what :mod:`endogs.render.cpu` (and gsplat 1.5.3, ``packed=False``,
``rasterize_mode="classic"``) composites; only the way it is computed differs:

1. *Binning*: the tiles of each visible Gaussian are those whose pixel centres meet both its
   radius box and its ``alpha >= 1/255`` ellipse (the same exact per-row ellipse test as the
   PyTorch path), counted and then written in parallel over the Gaussians; a serial, stable
   counting sort by tile that visits the Gaussians in (camera, depth) order then leaves each
   tile's run of the CSR list ``pair_gid`` front to back (no comparison sort of the pairs).
2. *Forward* (parallel over tiles with ``prange``): per pixel, front to back, stopping
   (exclusively) before the Gaussian that would take the transmittance to ``1e-4``. The loop runs
   over the tile's Gaussians outside and its pixels inside; the pixel loop is branch-free (masks
   and selects, ``exp`` by a polynomial) so LLVM vectorises it, and a tile stops when all its pixels
   have. The final transmittance and the index of the Gaussian that stopped each pixel are kept.
3. *Backward* (parallel over tiles): per pixel, back to front from that index, recovering ``T`` by
   division by ``1 - alpha`` and carrying the suffix sum ``S`` of ``w G``;
   ``dL/dsigma = alpha / (1 - alpha) S - w G``. Again Gaussians outside, (vectorised) pixels inside:
   a (tile, Gaussian) pair's gradient is summed over the tile's pixels and written once, so tiles
   never race; the pairs are then summed per Gaussian (in float64) in one serial pass.

The kernels compute in the tensors' dtype: float32 in training (twice the SIMD lanes of float64),
float64 for float64 tensors (which the reference tests compare with a float64 brute-force renderer
to 1e-12). ``exp(-s)`` is ``exp(-s/16)**16`` with a degree-12 Taylor polynomial, accurate to about
1e-15 relative in float64 and to float32 rounding in float32. Sums over a tile's pixels are
``_LANES`` explicit partial sums (``fastmath`` contract/nsz only, no reassociation), so a freshly
compiled kernel and the cached one give the same bits. The kernels are compiled on first use and
cached on disk (``cache=True``, in numba's cache folder next to this file or in
``NUMBA_CACHE_DIR``), one specialisation per dtype. ``torch.get_num_threads()`` sets numba's
thread count for every call.
"""

from __future__ import annotations

import math
import os
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

#: numba's threading layers in the order endogs tries them. numba picks one when its threads first
#: start, by default TBB whenever a libtbb can be loaded, and open3d brings one (its libtbb.so.12): in a
#: process that had imported open3d (the point-cloud init of every `endogs train`, the preparation) the
#: kernels ran on TBB and a training step at 81,920 Gaussians took 20-40 % longer than on OpenMP
#: (scripts/bench_openmp.py, docs/BENCHMARKS.md). Set unless NUMBA_THREADING_LAYER(_PRIORITY) is in
#: the environment (the user's choice), and only before numba's threads start (later it changes nothing).
THREADING_LAYER_PRIORITY = ["omp", "tbb", "workqueue"]


def prefer_openmp_layer() -> None:
    """Make numba try OpenMP before TBB (see ``THREADING_LAYER_PRIORITY``) unless the environment chose."""
    if "NUMBA_THREADING_LAYER" not in os.environ and "NUMBA_THREADING_LAYER_PRIORITY" not in os.environ:
        numba.config.THREADING_LAYER_PRIORITY = list(THREADING_LAYER_PRIORITY)


prefer_openmp_layer()


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


@njit(cache=True, inline="always")
def _tiles_of(g, m, cn, opa, radii, N, W, H, ts, tw, th, fill, tiles, at):  # pragma: no cover - compiled
    """Number of tiles Gaussian ``g`` (flat ``camera * N + gaussian``) meets; with ``fill``, their
    ids are also written to ``tiles[at:]`` in row-major tile order."""
    cam = g // N
    mx, my = float(m[g, 0]), float(m[g, 1])
    rx, ry = float(radii[g, 0]), float(radii[g, 1])
    lox = max(math.ceil(mx - rx - 0.5), 0.0)
    hix = min(math.floor(mx + rx - 0.5), W - 1.0)
    loy = max(math.ceil(my - ry - 0.5), 0.0)
    hiy = min(math.floor(my + ry - 0.5), H - 1.0)
    if hix < lox or hiy < loy:
        return 0
    a, b, c = float(cn[g, 0]), float(cn[g, 1]), float(cn[g, 2])
    tau2 = max(2.0 * (math.log(max(float(opa[g]), 1e-30)) + _LN_255 + _CULL_SLACK), 0.0)
    det = max(a * c - b * b, 1e-30)
    yext = math.sqrt(tau2 * a / det)
    yxm = b * math.sqrt(tau2 / (c * det))
    ta = tau2 * a
    n = 0
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
            if fill:
                tiles[at + n] = base + tx
            n += 1
    return n


@njit(cache=True, parallel=True)
def _bin_count(order, m, cn, opa, radii, N, W, H, ts, tw, th, per):  # pragma: no cover - compiled
    """per[i] = number of tiles that Gaussian ``order[i]`` meets (parallel over Gaussians)."""
    empty = np.zeros(0, dtype=np.int64)
    for i in prange(order.shape[0]):
        per[i] = _tiles_of(order[i], m, cn, opa, radii, N, W, H, ts, tw, th, False, empty, 0)


@njit(cache=True, parallel=True)
def _bin_fill(order, m, cn, opa, radii, N, W, H, ts, tw, th, offs, tiles):  # pragma: no cover - compiled
    """tiles[offs[i]:offs[i+1]] = the tiles of Gaussian ``order[i]`` (parallel over Gaussians)."""
    for i in prange(order.shape[0]):
        _tiles_of(order[i], m, cn, opa, radii, N, W, H, ts, tw, th, True, tiles, offs[i])


@njit(cache=True)
def _bin_sort(vid, pos, offs, tiles, start, pair_gid):  # pragma: no cover - compiled
    """Counting sort of the pairs by tile, stable over the Gaussians ``vid[pos]`` (depth order), so
    each tile's run is front to back; ``start`` [tiles + 1] receives the CSR offsets."""
    n_tiles = start.shape[0] - 1
    counts = np.zeros(n_tiles, dtype=np.int64)
    for p in range(tiles.shape[0]):
        counts[tiles[p]] += 1
    start[0] = 0
    for t in range(n_tiles):
        start[t + 1] = start[t] + counts[t]
    cursor = start[:-1].copy()
    for i in range(pos.shape[0]):
        j = pos[i]
        g = vid[j]
        for p in range(offs[j], offs[j + 1]):
            t = tiles[p]
            pair_gid[cursor[t]] = g
            cursor[t] += 1


#: fastmath flags of the compositing kernels: fused multiply-adds and no signed zeros. Not
#: "reassoc": with it, numba's cached parallel kernels round differently from freshly compiled ones
#: (so a run's numbers would depend on whether the on-disk cache existed); the sums over a tile's
#: pixels are written as ``_LANES`` explicit partial sums instead, which vectorise without it and
#: add in an order fixed by the source. No "nnan"/"ninf", so NaN checks stay exact.
_FASTMATH = {"contract", "nsz"}
#: Partial sums per reduction, and the multiple a tile's pixel count is padded to (padded pixels
#: composite nothing and receive nothing).
_LANES = 8

#: exp(-s) is evaluated as exp(-s/16)**16, exp(-r) by its Taylor polynomial of this degree
#: (r <= 0.35: truncation below 1e-15, so the float64 kernels agree with ``math.exp`` to ~1e-15).
_EXP_DEGREE = 12
#: Largest sigma the polynomial is used for: alpha < 1/255 above ln(255) for any opacity <= 1, and
#: those pixels are masked out (the clamp only keeps the polynomial in its range).
_SIG_CLAMP = 5.6


def _constants(dtype: np.dtype) -> np.ndarray:
    """The kernels' constants in the compute dtype (a literal would promote float32 maths to float64):
    0.5, 1, alpha threshold, alpha max, T stop, 1/16, sigma clamp, 0, then the exp coefficients
    (Horner order, highest first)."""
    k = [0.5, 1.0, ALPHA_THRESHOLD, ALPHA_MAX, T_STOP, 1.0 / 16.0, _SIG_CLAMP, 0.0]
    k += [(-1.0) ** i / math.factorial(i) for i in range(_EXP_DEGREE, -1, -1)]
    return np.array(k, dtype=dtype)


@njit(cache=True, inline="always")
def _exp_neg(sig, hi, r16, c):  # pragma: no cover - compiled
    """exp(-sig) for 0 <= sig <= hi, branch-free (vectorises; numba has no vector exp without SVML)."""
    r = (hi if sig > hi else sig) * r16
    q = ((((((c[0] * r + c[1]) * r + c[2]) * r + c[3]) * r + c[4]) * r + c[5]) * r + c[6]) * r
    q = (((((q + c[7]) * r + c[8]) * r + c[9]) * r + c[10]) * r + c[11]) * r + c[12]
    q = q * q
    q = q * q
    q = q * q
    return q * q


@njit(cache=True)
def _load_tile(s, e, pair_gid, m, cn, opa, feats, k):  # pragma: no cover - compiled
    """Tile-local copies in the compute dtype: rows (mx, my, a, b, c, o, ln(255 o) + slack) and
    features [n, F]."""
    F = feats.shape[1]
    loc = np.empty((e - s, 7), dtype=k.dtype)
    lf = np.empty((e - s, F), dtype=k.dtype)
    for j in range(e - s):
        g = pair_gid[s + j]
        loc[j, 0], loc[j, 1] = m[g, 0], m[g, 1]
        loc[j, 2], loc[j, 3], loc[j, 4] = cn[g, 0], cn[g, 1], cn[g, 2]
        o = opa[g]
        loc[j, 5] = o
        # sigma above this gives alpha < 1/255 for sure (the exact test follows for the rest).
        loc[j, 6] = math.log(max(float(o), 1e-30)) + _LN_255 + 1e-6
        for f in range(F):
            lf[j, f] = feats[g, f]
    return loc, lf


@njit(cache=True)
def _tile_pixels(t, tw, th, ts, W, H, k):  # pragma: no cover - compiled
    """Tile ``t``'s camera, pixel box (y0, y1, x0, x1), its pixel count P and the pixel centres
    (row-major) as two arrays padded to a multiple of ``_LANES`` (padding repeats the first pixel;
    the kernels mask it out)."""
    cam = t // (tw * th)
    ty = (t // tw) % th
    tx = t % tw
    y0, y1 = ty * ts, min(ty * ts + ts, H)
    x0, x1 = tx * ts, min(tx * ts + ts, W)
    P = (y1 - y0) * (x1 - x0)
    n = (P + _LANES - 1) // _LANES * _LANES
    pxc = np.full(n, x0 + k[0], dtype=k.dtype)
    pyc = np.full(n, y0 + k[0], dtype=k.dtype)
    q = 0
    for py in range(y0, y1):
        for px in range(x0, x1):
            pxc[q] = px + k[0]
            pyc[q] = py + k[0]
            q += 1
    return cam, y0, y1, x0, x1, P, pxc, pyc


@njit(cache=True, inline="always")
def _pixel_sum(v, part, zero):  # pragma: no cover - compiled
    """Sum of ``v`` (length a multiple of ``_LANES``): ``_LANES`` partial sums over strided pixels
    (which vectorise without reassociation), then those in order, into the scratch ``part``."""
    for lane in range(_LANES):
        part[lane] = v[lane]
    for p0 in range(_LANES, v.shape[0], _LANES):
        for lane in range(_LANES):
            part[lane] += v[p0 + lane]
    acc = zero
    for lane in range(_LANES):
        acc += part[lane]
    return acc


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _forward(tile_start, pair_gid, m, cn, opa, feats, W, H, ts, tw, th, k, out, tfinal, tstop_at):  # pragma: no cover
    """Composite every tile; ``out`` [C, H, W, F+1], ``tfinal`` / ``tstop_at`` [C, H, W] (the final
    transmittance, and the tile-list index of the Gaussian that stopped the pixel, or the list's
    length). Gaussians outer, the tile's pixels inner and branch-free (so the pixel loop vectorises);
    the tile stops when every pixel has."""
    F = feats.shape[1]
    n_tiles = tile_start.shape[0] - 1
    half, one, athr, amax, tstop, r16, hi, zero = k[0], k[1], k[2], k[3], k[4], k[5], k[6], k[7]
    c = (k[8], k[9], k[10], k[11], k[12], k[13], k[14], k[15], k[16], k[17], k[18], k[19], k[20])
    for t in prange(n_tiles):
        s, e = tile_start[t], tile_start[t + 1]
        if e == s:
            continue
        cam, y0, y1, x0, x1, P, pxc, pyc = _tile_pixels(t, tw, th, ts, W, H, k)
        loc, lf = _load_tile(s, e, pair_gid, m, cn, opa, feats, k)
        n = pxc.shape[0]  # P padded to a multiple of _LANES
        T = np.ones(n, dtype=k.dtype)
        live = np.zeros(n, dtype=k.dtype)  # 1 while the pixel composites, then 0 (always 0 for padding)
        live[:P] = one
        stop = np.full(n, zero + (e - s), dtype=k.dtype)
        w = np.empty(n, dtype=k.dtype)
        acc = np.zeros((F + 1, n), dtype=k.dtype)
        alive = P
        for j in range(e - s):
            mx, my = loc[j, 0], loc[j, 1]
            a, b, cc = loc[j, 2], loc[j, 3], loc[j, 4]
            o, thr = loc[j, 5], loc[j, 6]
            fj = zero + j
            dead = 0  # an integer count: its sum vectorises without reassociation
            for p in range(n):
                dx = mx - pxc[p]
                dy = my - pyc[p]
                sig = half * (a * dx * dx + cc * dy * dy) + b * dx * dy
                al = o * _exp_neg(sig, hi, r16, c)
                al = amax if al > amax else al
                Tp = T[p]
                nT = Tp * (one - al)
                ok = (live[p] > zero) & (sig <= thr) & (al >= athr)
                die = ok & (nT <= tstop)
                use = ok & (nT > tstop)
                if die:
                    live[p] = zero
                    stop[p] = fj
                dead += 1 if die else 0
                w[p] = al * Tp if use else zero
                T[p] = nT if use else Tp
            for f in range(F):
                v = lf[j, f]
                for p in range(n):
                    acc[f, p] += w[p] * v
            for p in range(n):
                acc[F, p] += w[p]
            alive -= dead
            if alive <= 0:
                break
        q = 0
        for py in range(y0, y1):
            for px in range(x0, x1):
                for f in range(F + 1):
                    out[cam, py, px, f] = acc[f, q]
                tfinal[cam, py, px] = T[q]
                tstop_at[cam, py, px] = stop[q]
                q += 1


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def _backward(tile_start, pair_gid, m, cn, opa, feats, W, H, ts, tw, th, k, gout, tfinal, tstop_at, gp, gabs, absgrad):  # pragma: no cover
    """Per-pair gradients ``gp`` [M, 6+F] = (mx, my, a, b, c, o, feats) and ``gabs`` [M, 2]. Gaussians back
    to front outer, the tile's pixels inner (branch-free, vectorised): per pixel, ``T`` is recovered by
    division by ``1 - alpha`` and the suffix sum ``S`` of ``w G`` is carried; a pair's gradient is summed
    over the tile's pixels and written once, so tiles never race."""
    F = feats.shape[1]
    n_tiles = tile_start.shape[0] - 1
    half, one, athr, amax, r16, hi, zero = k[0], k[1], k[2], k[3], k[5], k[6], k[7]
    c = (k[8], k[9], k[10], k[11], k[12], k[13], k[14], k[15], k[16], k[17], k[18], k[19], k[20])
    for t in prange(n_tiles):
        s, e = tile_start[t], tile_start[t + 1]
        if e == s:
            continue
        cam, y0, y1, x0, x1, P, pxc, pyc = _tile_pixels(t, tw, th, ts, W, H, k)
        loc, lf = _load_tile(s, e, pair_gid, m, cn, opa, feats, k)
        n = pxc.shape[0]  # P padded to a multiple of _LANES; padding: stop 0, so nothing passes
        T = np.ones(n, dtype=k.dtype)
        S = np.zeros(n, dtype=k.dtype)
        stop = np.zeros(n, dtype=k.dtype)
        go = np.zeros((F + 1, n), dtype=k.dtype)
        G = np.empty(n, dtype=k.dtype)
        w = np.empty(n, dtype=k.dtype)
        # per pixel, the terms of a pair's gradients: mean2d (2), conic (3), opacity, |d mean2d| (2), features
        vals = np.empty((8 + F, n), dtype=k.dtype)
        part = np.empty(_LANES, dtype=k.dtype)
        q = 0
        last = zero
        for py in range(y0, y1):
            for px in range(x0, x1):
                T[q] = tfinal[cam, py, px]
                stop[q] = tstop_at[cam, py, px]
                last = max(last, stop[q])
                for f in range(F + 1):
                    go[f, q] = gout[cam, py, px, f]
                q += 1
        for j in range(int(last) - 1, -1, -1):
            mx, my = loc[j, 0], loc[j, 1]
            a, b, cc = loc[j, 2], loc[j, 3], loc[j, 4]
            o, thr = loc[j, 5], loc[j, 6]
            fj = zero + j
            for p in range(n):
                G[p] = go[F, p]
            for f in range(F):
                v = lf[j, f]
                for p in range(n):
                    G[p] += go[f, p] * v
            for p in range(n):
                dx = mx - pxc[p]
                dy = my - pyc[p]
                sig = half * (a * dx * dx + cc * dy * dy) + b * dx * dy
                al0 = o * _exp_neg(sig, hi, r16, c)
                ok = (fj < stop[p]) & (sig <= thr) & (al0 >= athr)
                al = amax if al0 > amax else al0
                om = one - al
                Tp = T[p] / om
                wG = al * Tp * G[p]
                Sp = S[p]
                gs = al / om * Sp - wG
                T[p] = Tp if ok else T[p]
                S[p] = Sp + wG if ok else Sp
                w[p] = al * Tp if ok else zero
                gs = gs if (ok & (al0 <= amax)) else zero  # a clamped alpha passes no gradient to sigma
                gmx = gs * (a * dx + b * dy)
                gmy = gs * (b * dx + cc * dy)
                vals[0, p] = gmx
                vals[1, p] = gmy
                vals[2, p] = gs * dx * dx
                vals[3, p] = gs * dx * dy
                vals[4, p] = gs * dy * dy
                vals[5, p] = gs
                if absgrad:  # loop-invariant: LLVM hoists it
                    vals[6, p] = abs(gmx)
                    vals[7, p] = abs(gmy)
            for f in range(F):
                for p in range(n):
                    vals[8 + f, p] = w[p] * go[f, p]
            kk = s + j
            gp[kk, 0] = _pixel_sum(vals[0], part, zero)
            gp[kk, 1] = _pixel_sum(vals[1], part, zero)
            gp[kk, 2] = half * _pixel_sum(vals[2], part, zero)
            gp[kk, 3] = _pixel_sum(vals[3], part, zero)
            gp[kk, 4] = half * _pixel_sum(vals[4], part, zero)
            gp[kk, 5] = -_pixel_sum(vals[5], part, zero) / o
            for f in range(F):
                gp[kk, 6 + f] = _pixel_sum(vals[8 + f], part, zero)
            if absgrad:
                gabs[kk, 0] = _pixel_sum(vals[6], part, zero)
                gabs[kk, 1] = _pixel_sum(vals[7], part, zero)


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


def set_numba_threads() -> int:
    """Run numba's parallel loops on as many threads as torch uses (thread-local setting); returns that number.
    The first call starts numba's threads, on the layer of ``THREADING_LAYER_PRIORITY``."""
    n = max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def _np(t: Tensor, dtype: Optional[np.dtype] = None) -> np.ndarray:
    a = t.detach().contiguous().numpy()
    return a if dtype is None or a.dtype == dtype else a.astype(dtype)


def _compute_dtype(dtype: torch.dtype) -> np.dtype:
    """The kernels compute in float64 for float64 tensors and in float32 for any other dtype."""
    return np.dtype(np.float64) if dtype == torch.float64 else np.dtype(np.float32)


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

        vid = (radii > 0).all(-1).reshape(-1).nonzero().squeeze(1)  # [V], ascending
        cam = torch.div(vid, N, rounding_mode="floor")
        pos = _depth_order(depths.detach().reshape(-1)[vid], cam, C) if vid.numel() else vid  # into vid
        args = (
            _np(vid), _np(means2d.reshape(C * N, 2)), _np(conics.reshape(C * N, 3)),
            _np(opacities.reshape(C * N)), _np(radii.reshape(C * N, 2)), N, width, height, ts, tw, th,
        )  # fmt: skip
    n_tiles = C * th * tw
    set_numba_threads()
    # tiles per Gaussian, in index order (contiguous reads), then a stable counting sort by tile
    # that visits the Gaussians in depth order
    per = np.empty(args[0].shape[0], dtype=np.int64)
    _bin_count(*args, per)
    offs = np.zeros(per.shape[0] + 1, dtype=np.int64)
    np.cumsum(per, out=offs[1:])
    tiles = np.empty(int(offs[-1]), dtype=np.int64)
    _bin_fill(*args, offs, tiles)
    start = np.empty(n_tiles + 1, dtype=np.int64)
    pair_gid = np.empty(tiles.shape[0], dtype=np.int64)
    _bin_sort(args[0], _np(pos), offs, tiles, start, pair_gid)
    return NumbaLayout(C, width, height, ts, tw, th, start, pair_gid)


class _RasterizeNumba(torch.autograd.Function):
    """Autograd wrapper: (means2d, conics, feats, opacities) -> [C, H, W, F + 1] (feats, alpha)."""

    @staticmethod
    def forward(ctx, means2d, conics, feats, opacities, layout, absgrad):  # type: ignore[override]
        C, N = opacities.shape
        F = feats.shape[-1]
        H, W = layout.height, layout.width
        L = layout
        dt = _compute_dtype(feats.dtype)
        arrs = (_np(means2d.reshape(C * N, 2), dt), _np(conics.reshape(C * N, 3), dt),
                _np(opacities.reshape(C * N), dt), _np(feats.reshape(C * N, F), dt))  # fmt: skip
        k = _constants(dt)
        out = np.zeros((C, H, W, F + 1), dtype=dt)
        tfinal = np.ones((C, H, W), dtype=dt)
        stop = np.zeros((C, H, W), dtype=dt)
        set_numba_threads()
        _forward(L.tile_start, L.pair_gid, *arrs, W, H, L.tile_size, L.tiles_x, L.tiles_y, k, out, tfinal, stop)
        ctx.layout, ctx.absgrad, ctx.arrs, ctx.state = layout, absgrad, arrs, (k, tfinal, stop)
        ctx.save_for_backward(means2d)
        return torch.from_numpy(out).to(feats.dtype)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        (means2d,) = ctx.saved_tensors
        L: NumbaLayout = ctx.layout
        m, cn, opa, feats = ctx.arrs
        k, tfinal, stop = ctx.state
        C, N = means2d.shape[:2]
        F = feats.shape[1]
        M = L.n_pairs
        gout = _np(grad_out, k.dtype)
        gp = np.zeros((M, 6 + F), dtype=k.dtype)
        gabs = np.zeros((M if ctx.absgrad else 0, 2), dtype=k.dtype)
        set_numba_threads()
        _backward(L.tile_start, L.pair_gid, m, cn, opa, feats, L.width, L.height, L.tile_size, L.tiles_x,
                  L.tiles_y, k, gout, tfinal, stop, gp, gabs, bool(ctx.absgrad))  # fmt: skip
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
