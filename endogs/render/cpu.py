"""Differentiable tile-based Gaussian rasterizer in pure PyTorch (the CPU backend).

It composites exactly what gsplat 1.5.3's CUDA kernels composite (``packed=False``,
``rasterize_mode="classic"``):

* pixel centres at ``(x + 0.5, y + 0.5)``;
* ``alpha = min(0.999, o * exp(-sigma))`` with ``sigma = 0.5 (a dx^2 + c dy^2) + b dx dy``;
  contributions with ``alpha < 1/255`` are skipped;
* front-to-back compositing in depth order; a pixel stops (exclusively) before the Gaussian
  that would take its transmittance to ``1e-4`` or below;
* the accumulated alpha is ``1 - T``;
* in the backward pass a clamped alpha (``o * exp(-sigma) > 0.999``) passes no gradient to
  sigma or the opacity, as in gsplat.

How it works:

1. *Binning.* Each visible Gaussian is binned into the ``tile_size`` x ``tile_size`` tiles that
   hold a pixel centre inside both its radius box and its ``alpha >= 1/255`` ellipse: per tile
   row, the exact x-range of the ellipse within the row's band of pixel centres gives the tiles
   (gsplat's radius box always contains that ellipse, so nothing it would draw is lost). A
   stable sort by tile of the depth-ordered pairs gives each tile's front-to-back list.
2. *Dense blocks.* Tiles are ordered by load and cut into chunks; a chunk is a padded
   ``[tiles, pixels, gaussians]`` block. In a block ``-sigma + ln(o)`` is one batched matmul of a
   fixed ``[pixels, 6]`` quadratic basis with six per-Gaussian coefficients, the transmittance
   is a ``cumprod`` along the Gaussian axis, and colours (with depth and a ones channel for alpha)
   are one more batched matmul.
3. *Backward, by hand.* With ``r = alpha / (1 - alpha)`` and ``S`` the suffix sum of ``w G``
   (``G`` = output gradient dotted with a Gaussian's features), ``dL/dsigma = r S - w G``;
   the per-pixel gradients are reduced to per-Gaussian coefficient gradients by one matmul with
   the basis. Only ``r`` and ``w`` are kept per block (or recomputed when they would exceed
   ``save_limit_bytes``), so memory stays bounded by ``max_chunk_elems`` and that limit.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.nn.functional import threshold_

from .projection import ALPHA_MAX, ALPHA_THRESHOLD

#: Transmittance at or below which a pixel is finished (gsplat: exclusive).
T_STOP = 1e-4
#: Default tile edge in pixels (a speed knob only: results do not depend on it).
DEFAULT_TILE_SIZE = 4
#: Default cap on the padded ``tiles x pixels x gaussians`` elements processed at once.
DEFAULT_CHUNK_ELEMS = 1 << 22
#: Default cap on compositing state kept from forward for backward (bytes).
DEFAULT_SAVE_LIMIT = 256 << 20
#: A chunk stops at tiles with fewer than this fraction of its first tile's Gaussians.
_CHUNK_LOAD_RATIO = 0.8
#: -sigma' of padding slots: exp(-1e4) is exactly 0 in float32 and float64.
_PAD_LOGALPHA = -1e4
#: Slack (in sigma units) of the tile/ellipse test, so float rounding never drops a tile.
_CULL_SLACK = 1e-3
_LN_255 = math.log(255.0)


@dataclass
class TileLayout:
    """Which Gaussians touch which tiles, in compositing order, and how tiles are chunked.

    Attributes:
        n_cameras: Number of images C.
        width: Image width.
        height: Image height.
        tile_size: Tile edge in pixels.
        tiles_x: Tiles per row.
        tiles_y: Tiles per column.
        pair_gid: [M] flat ``camera * N + gaussian`` ids, grouped by tile, front to back.
        tile_ids: [T] global ids ``(camera * tiles_y + ty) * tiles_x + tx`` of the non-empty
            tiles, by decreasing number of Gaussians.
        tile_start: [T] offset of each tile's run in ``pair_gid``.
        tile_count: [T] number of Gaussians in each tile.
        chunks: ``(first, end, max_count)`` ranges into ``tile_ids``.
    """

    n_cameras: int
    width: int
    height: int
    tile_size: int
    tiles_x: int
    tiles_y: int
    pair_gid: Tensor  # [M]
    tile_ids: Tensor  # [T]
    tile_start: Tensor  # [T]
    tile_count: Tensor  # [T]
    chunks: List[Tuple[int, int, int]] = field(default_factory=list)

    @property
    def n_pairs(self) -> int:
        """Number of (tile, Gaussian) intersections."""
        return int(self.pair_gid.numel())

    @property
    def padded_elems(self) -> int:
        """Number of (pixel, Gaussian) evaluations, padding included."""
        p = self.tile_size * self.tile_size
        return sum((e - s) * p * lmax for s, e, lmax in self.chunks)


def build_tile_layout(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    opacities: Tensor,  # [C, N]
    radii: Tensor,  # [C, N, 2]
    depths: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int = DEFAULT_TILE_SIZE,
    max_chunk_elems: int = DEFAULT_CHUNK_ELEMS,
) -> TileLayout:
    """Bin visible Gaussians into tiles, sorted front to back within each tile.

    Args:
        means2d: [C, N, 2] projected centres.
        conics: [C, N, 3] inverse 2D covariances (for the tile/ellipse test).
        opacities: [C, N] opacities (the ellipse is where ``alpha >= 1/255``).
        radii: [C, N, 2] integer radii (visible iff both > 0).
        depths: [C, N] camera depths (the compositing order).
        width: Image width.
        height: Image height.
        tile_size: Tile edge in pixels.
        max_chunk_elems: Cap on ``tiles x tile_size^2 x max_gaussians`` per chunk.

    Returns:
        The :class:`TileLayout`.
    """
    C, N = radii.shape[:2]
    dev = means2d.device
    ts = int(tile_size)
    if ts < 1:
        raise ValueError(f"tile_size must be >= 1, got {tile_size}")
    tw, th = math.ceil(width / ts), math.ceil(height / ts)
    empty = torch.zeros(0, dtype=torch.long, device=dev)
    layout = TileLayout(C, width, height, ts, tw, th, empty, empty, empty, empty)
    with torch.no_grad():
        vid = (radii > 0).all(-1).reshape(-1).nonzero().squeeze(1)  # [V]
        V = int(vid.numel())
        if V == 0:
            return layout
        cam = torch.div(vid, N, rounding_mode="floor")  # [V]
        order = _depth_order(depths.detach().reshape(-1).index_select(0, vid), cam, C)  # [V]
        vid, cam = vid.index_select(0, order), cam.index_select(0, order)  # [V] by camera, then depth
        m = means2d.detach().reshape(-1, 2).index_select(0, vid)  # [V, 2]
        r = radii.reshape(-1, 2).index_select(0, vid).to(m.dtype)  # [V, 2]
        # Pixel columns/rows whose centre lies inside the radius box.
        lo = torch.ceil(m - r - 0.5).clamp_min(0)  # [V, 2]
        lim = torch.tensor([width - 1, height - 1], dtype=m.dtype, device=dev)  # [2]
        hi = torch.minimum(torch.floor(m + r - 0.5), lim)  # [V, 2]
        ty0 = torch.div(lo[:, 1], ts, rounding_mode="floor").long()  # [V]
        ny = torch.div(hi[:, 1], ts, rounding_mode="floor").long() - ty0 + 1  # [V]
        ny = torch.where((hi >= lo).all(-1), ny, torch.zeros_like(ny))  # [V]

        # The alpha >= 1/255 region is the ellipse 0.5 d^T Q d <= tau, tau = ln(255 o).
        cn = conics.detach().reshape(-1, 3).index_select(0, vid)  # [V, 3]
        a, b, c = cn.t()  # [V] each
        opa = opacities.detach().reshape(-1).index_select(0, vid)  # [V]
        tau2 = 2.0 * (torch.log(opa) + _LN_255 + _CULL_SLACK)  # [V]
        tau2 = tau2.clamp_min(0)  # [V]
        det = (a * c - b * b).clamp_min(1e-30)  # [V]
        y_ext = torch.sqrt(tau2 * a / det)  # [V] half height of the ellipse
        y_at_xmin = b * torch.sqrt(tau2 / (c * det))  # [V] where its left end is
        per_g = torch.stack(
            [m[:, 0], m[:, 1], a, b, tau2 * a, det, y_ext, y_at_xmin, lo[:, 0], hi[:, 0]], 0
        )  # [10, V]

        # Level 1: one entry per (Gaussian, tile row); find the ellipse's x-range in that band.
        R = int(ny.sum())
        if R == 0:
            return layout
        row_g = torch.repeat_interleave(torch.arange(V, device=dev), ny)  # [R]
        ty = torch.arange(R, device=dev) - (torch.cumsum(ny, 0) - ny).index_select(0, row_g)  # [R]
        ty += ty0.index_select(0, row_g)
        mx, my, ga, gb, ta, gdet, yext, yxm, box0, box1 = per_g.index_select(1, row_g).unbind(0)  # [R]
        band0 = ty.to(m.dtype) * ts + 0.5 - my  # [R] first pixel-centre row, relative to the mean
        band1 = torch.clamp_max(ty.to(m.dtype) * ts + ts, height) - 0.5 - my  # [R] last one
        band0 = torch.maximum(band0, -yext)  # [R]
        band1 = torch.minimum(band1, yext)  # [R]
        # The left boundary x(y) = (-b y - sqrt(2 tau a - det y^2)) / a is convex: its minimum over
        # the band is at the band-clamped y of the ellipse's leftmost point (and symmetrically).
        yl = torch.minimum(torch.maximum(yxm, band0), band1)  # [R]
        yr = torch.minimum(torch.maximum(-yxm, band0), band1)  # [R]
        xl = (-gb * yl - torch.sqrt((ta - gdet * yl * yl).clamp_min(0))) / ga  # [R]
        xr = (-gb * yr + torch.sqrt((ta - gdet * yr * yr).clamp_min(0))) / ga  # [R]
        px0 = torch.maximum(torch.ceil(xl + mx - 0.5), box0)  # [R] first pixel column
        px1 = torch.minimum(torch.floor(xr + mx - 0.5), box1)  # [R] last pixel column
        tx0 = torch.div(px0, ts, rounding_mode="floor").long()  # [R]
        nx = torch.div(px1, ts, rounding_mode="floor").long() - tx0 + 1  # [R]
        ok = (px1 >= px0) & (band1 >= band0)  # [R]
        nx = torch.where(ok, nx, torch.zeros_like(nx))  # [R]

        # Level 2: one entry per (Gaussian, tile), still in depth-rank order.
        M = int(nx.sum())
        if M == 0:
            return layout
        pair_row = torch.repeat_interleave(torch.arange(R, device=dev), nx)  # [M]
        tx = torch.arange(M, device=dev) - (torch.cumsum(nx, 0) - nx).index_select(0, pair_row)  # [M]
        row_tile = (cam.index_select(0, row_g) * th + ty) * tw + tx0  # [R] tile of the row's first pair
        tile = (row_tile.index_select(0, pair_row) + tx).to(torch.int32)  # [M]
        rank = row_g.index_select(0, pair_row)  # [M]
        # Pairs are in depth-rank order, so a stable sort by tile gives (tile, depth) order.
        tile_s, perm = torch.sort(tile, stable=True)  # [M']
        pair_gid = vid[rank[perm]]  # [M']
        tiles, counts = torch.unique_consecutive(tile_s, return_counts=True)  # [T]
        starts = torch.cumsum(counts, 0) - counts  # [T]
        by_load = torch.argsort(counts, descending=True)  # [T]
        layout.pair_gid = pair_gid
        layout.tile_ids = tiles[by_load].long()
        layout.tile_start = starts[by_load]
        layout.tile_count = counts[by_load]
        layout.chunks = _chunk_ranges(layout.tile_count.tolist(), ts * ts, max_chunk_elems)
    return layout


def _depth_order(d: Tensor, cam: Tensor, n_cameras: int) -> Tensor:
    """Stable order of entries by (camera, depth); depths are positive (beyond the near plane)."""
    if d.dtype == torch.float32:  # positive floats sort like their bit patterns
        key = d.view(torch.int32).long()  # [V] < 2^31
        if n_cameras > 1:
            key = key + (cam << 31)
        return torch.argsort(key, stable=True)
    order = torch.argsort(d, stable=True)  # [V]
    if n_cameras > 1:
        order = order.index_select(0, torch.argsort(cam.index_select(0, order), stable=True))
    return order


def _chunk_ranges(loads: List[int], per_tile: int, max_elems: int) -> List[Tuple[int, int, int]]:
    """Split tiles (sorted by decreasing load) into chunks padded to their first tile's load.

    A chunk ends when it would exceed ``max_elems`` padded elements or when the load falls below
    ``_CHUNK_LOAD_RATIO`` of the chunk's first load (bounding padding waste).
    """
    neg = [-x for x in loads]  # ascending
    chunks = []
    i, T = 0, len(loads)
    while i < T:
        lmax = int(loads[i])
        cap = max(1, int(max_elems) // (per_tile * lmax))
        j_ratio = bisect.bisect_right(neg, -_CHUNK_LOAD_RATIO * lmax, lo=i + 1)
        j = min(T, i + cap, max(j_ratio, i + 1))
        chunks.append((i, j, lmax))
        i = j
    return chunks


def _tile_basis(ts: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """[ts*ts, 6] basis (1, u, v, u^2, v^2, uv) of pixel-centre offsets from the tile centre."""
    c = torch.arange(ts, dtype=dtype, device=device) + 0.5 - 0.5 * ts  # [ts]
    v, u = torch.meshgrid(c, c, indexing="ij")  # [ts, ts] rows (v) by columns (u)
    u, v = u.reshape(-1), v.reshape(-1)  # [P]
    return torch.stack([torch.ones_like(u), u, v, u * u, v * v, u * v], dim=-1)  # [P, 6]


@dataclass
class _Chunk:
    """Gathered per-(tile, slot) parameters of one chunk."""

    tiles: Tensor  # [Tc] global tile ids
    gid: Tensor  # [Tc, L] flat Gaussian ids (padding points at a real id, with zero weight)
    gx: Tensor  # [Tc, L] centre x relative to the tile centre
    gy: Tensor  # [Tc, L]
    a: Tensor  # [Tc, L] conic
    b: Tensor  # [Tc, L]
    c: Tensor  # [Tc, L]
    feat1: Tensor  # [Tc, L, F + 1] features with a trailing 1 (accumulates alpha)
    nk: Tensor  # [6, Tc, L] coefficients of -sigma' = ln(o) - sigma over the basis
    may_clamp: bool  # some opacity exceeds 0.999, so alpha may be clamped


def _gather_chunk(layout: TileLayout, table: Tensor, s: int, e: int, lmax: int, any_clamp: bool = True) -> _Chunk:
    """Gather a chunk's Gaussians from ``table`` [6 + F + 1, C*N] = rows (mx, my, a, b, c, o, feats, 1).

    ``any_clamp`` False promises that no opacity exceeds 0.999 (so no alpha is ever clamped).
    """
    dev = table.device
    ts = layout.tile_size
    tiles = layout.tile_ids[s:e]  # [Tc]
    Tc = tiles.shape[0]
    pos = torch.arange(lmax, device=dev)  # [L]
    pad = pos[None, :] >= layout.tile_count[s:e, None]  # [Tc, L]
    idx = (layout.tile_start[s:e, None] + pos[None, :]).masked_fill_(pad, 0)  # [Tc, L]
    gid = layout.pair_gid.index_select(0, idx.reshape(-1)).view(Tc, lmax)  # [Tc, L]
    g = table.index_select(1, gid.reshape(-1)).view(-1, Tc, lmax)  # [Q, Tc, L]
    txy = tiles % (layout.tiles_x * layout.tiles_y)  # [Tc]
    cx = (txy % layout.tiles_x).to(table.dtype) * ts + 0.5 * ts  # [Tc]
    cy = torch.div(txy, layout.tiles_x, rounding_mode="floor").to(table.dtype) * ts + 0.5 * ts  # [Tc]
    gx = g[0] - cx[:, None]  # [Tc, L]
    gy = g[1] - cy[:, None]  # [Tc, L]
    a, b, c, opa = g[2], g[3], g[4], g[5]  # [Tc, L]
    agx, bgy = a * gx, b * gy  # [Tc, L]
    bgx, cgy = b * gx, c * gy  # [Tc, L]
    nk0 = torch.log(opa) - 0.5 * (agx * gx + cgy * gy) - bgx * gy  # [Tc, L]
    nk = torch.stack([nk0, agx + bgy, bgx + cgy, -0.5 * a, -0.5 * c, -b], dim=0)  # [6, Tc, L]
    nk.masked_fill_(pad[None], 0.0)
    nk[0].masked_fill_(pad, _PAD_LOGALPHA)
    may_clamp = any_clamp and bool((opa > ALPHA_MAX).any())
    feat1 = g[6:].permute(1, 2, 0).contiguous()  # [Tc, L, F+1]
    return _Chunk(tiles, gid, gx, gy, a, b, c, feat1, nk, may_clamp)


def _composite(basis: Tensor, ch: _Chunk) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
    """Compositing state of a chunk.

    Returns:
        ``r`` [Tc, P, L]: ``alpha / (1 - alpha)`` (0 where skipped or after the pixel stopped);
        ``w`` [Tc, P, L]: compositing weights ``alpha * T_before``; ``clamped`` [Tc, P, L] bool
        (alpha clamped at 0.999) or None when no opacity in the chunk exceeds 0.999.
    """
    _, Tc, L = ch.nk.shape
    P = basis.shape[0]
    alpha = torch.bmm(basis.expand(Tc, P, 6), ch.nk.permute(1, 0, 2))  # [Tc, P, L] ln(o) - sigma
    alpha.exp_()  # [Tc, P, L] o * exp(-sigma)
    threshold_(alpha, ALPHA_THRESHOLD, 0.0)  # skip alpha < 1/255
    clamped = None
    if ch.may_clamp:
        clamped = alpha > ALPHA_MAX  # [Tc, P, L]
        alpha.clamp_(max=ALPHA_MAX)
    trans = torch.sub(1.0, alpha)  # [Tc, P, L] 1 - alpha
    r = alpha.div_(trans)  # [Tc, P, L] alpha / (1 - alpha)
    trans.cumprod_(-1)  # [Tc, P, L] transmittance after each Gaussian
    # A pixel stops before the Gaussian that would take T to <= 1e-4. T only decreases, so only
    # pixels whose final T is that low need fixing: zero r from the stopping Gaussian on.
    stopped = (trans[..., -1] <= T_STOP).reshape(-1).nonzero().squeeze(1)  # [R]
    if stopped.numel():
        rows = r.view(-1, L)
        rows[stopped] = rows[stopped] * (trans.view(-1, L)[stopped] > T_STOP).to(r.dtype)
    w = trans.mul_(r)  # [Tc, P, L] alpha * T_before = T_after * alpha / (1 - alpha)
    return r, w, clamped


def _tiles_to_image(buf: Tensor, layout: TileLayout) -> Tensor:
    """[C*ty*tx, P, F] tile-major buffer -> [C, H, W, F] image."""
    ts, F = layout.tile_size, buf.shape[-1]
    img = buf.view(layout.n_cameras, layout.tiles_y, layout.tiles_x, ts, ts, F)
    img = img.permute(0, 1, 3, 2, 4, 5).reshape(
        layout.n_cameras, layout.tiles_y * ts, layout.tiles_x * ts, F
    )  # [C, Hp, Wp, F]
    return img[:, : layout.height, : layout.width]  # [C, H, W, F]


def _image_to_tiles(img: Tensor, layout: TileLayout) -> Tensor:
    """[C, H, W, F] image -> [C*ty*tx, P, F] tile-major buffer (zero padded)."""
    ts, F = layout.tile_size, img.shape[-1]
    C, Hp, Wp = layout.n_cameras, layout.tiles_y * ts, layout.tiles_x * ts
    full = img.new_zeros(C, Hp, Wp, F)  # [C, Hp, Wp, F]
    full[:, : layout.height, : layout.width] = img
    full = full.view(C, layout.tiles_y, ts, layout.tiles_x, ts, F).permute(0, 1, 3, 2, 4, 5)
    return full.reshape(C * layout.tiles_y * layout.tiles_x, ts * ts, F)  # [C*ty*tx, P, F]


def _make_table(means2d: Tensor, conics: Tensor, feats: Tensor, opacities: Tensor) -> Tensor:
    """[6 + F + 1, C*N] gather table with rows (mx, my, a, b, c, o, feats..., 1)."""
    C, N = opacities.shape
    ones = torch.ones(1, C * N, dtype=feats.dtype, device=feats.device)  # [1, C*N]
    # Opacities of culled entries never enter a tile; clamp so log() stays finite anyway.
    opa = opacities.reshape(1, C * N).clamp_min(1e-30)  # [1, C*N]
    return torch.cat(
        [means2d.reshape(C * N, 2).t(), conics.reshape(C * N, 3).t(), opa, feats.reshape(C * N, -1).t(), ones], 0
    )  # [Q, C*N]


class _RasterizeTiles(torch.autograd.Function):
    """Autograd wrapper: (means2d, conics, feats, opacities) -> [C, H, W, F + 1] (feats, alpha)."""

    @staticmethod
    def forward(ctx, means2d, conics, feats, opacities, layout, absgrad, save_limit_bytes):  # type: ignore[override]
        C, N = opacities.shape
        F = feats.shape[-1]
        ts = layout.tile_size
        buf = feats.new_zeros(C * layout.tiles_y * layout.tiles_x, ts * ts, F + 1)  # [C*ty*tx, P, F+1]
        # Keep (r, w) per chunk for backward when they fit; otherwise backward recomputes them.
        keep = layout.padded_elems * 2 * feats.element_size() <= save_limit_bytes
        saved = []
        if layout.chunks:
            table = _make_table(means2d, conics, feats, opacities)  # [Q, C*N]
            basis = _tile_basis(ts, feats.dtype, feats.device)  # [P, 6]
            any_clamp = bool((opacities > ALPHA_MAX).any())
            for s, e, lmax in layout.chunks:
                ch = _gather_chunk(layout, table, s, e, lmax, any_clamp)
                r, w, clamped = _composite(basis, ch)  # [Tc, P, L]
                buf.index_copy_(0, ch.tiles, torch.matmul(w, ch.feat1))  # [Tc, P, F+1] per tile
                if keep:
                    saved.append((ch, r, w, clamped))
        ctx.layout = layout
        ctx.absgrad = absgrad
        ctx.saved_state = saved if keep else None
        ctx.save_for_backward(means2d, conics, feats, opacities)
        return _tiles_to_image(buf, layout)

    @staticmethod
    def backward(ctx, grad_out):  # type: ignore[override]
        means2d, conics, feats, opacities = ctx.saved_tensors
        layout: TileLayout = ctx.layout
        C, N = opacities.shape
        F = feats.shape[-1]
        grads = feats.new_zeros(6 + F, C * N)  # [(mx, my, a, b, c, log o, feats), C*N]
        gabs = feats.new_zeros(2, C * N) if ctx.absgrad else None  # [2, C*N]
        saved = ctx.saved_state
        ctx.saved_state = None
        if layout.chunks:
            gbuf = _image_to_tiles(grad_out, layout)  # [C*ty*tx, P, F+1]
            basis = _tile_basis(layout.tile_size, feats.dtype, feats.device)  # [P, 6]
            basis_t = basis.t().contiguous()  # [6, P]
            table = _make_table(means2d, conics, feats, opacities) if saved is None else None
            any_clamp = bool((opacities > ALPHA_MAX).any())
            for i, (s, e, lmax) in enumerate(layout.chunks):
                if saved is None:
                    ch = _gather_chunk(layout, table, s, e, lmax, any_clamp)
                    r, w, clamped = _composite(basis, ch)  # [Tc, P, L]
                else:
                    ch, r, w, clamped = saved[i]
                    saved[i] = None  # free as we go
                gout = gbuf.index_select(0, ch.tiles)  # [Tc, P, F+1]
                gfeat = torch.matmul(gout.transpose(1, 2), w)  # [Tc, F+1, L]
                wg = torch.matmul(gout, ch.feat1.transpose(1, 2)).mul_(w)  # [Tc, P, L] w * dL/dw
                suffix = torch.cumsum(wg, dim=-1)  # [Tc, P, L]
                total = suffix[..., -1:].clone()  # [Tc, P, 1]
                torch.sub(total, suffix, out=suffix)  # [Tc, P, L] sum of w G over later Gaussians
                gsig = suffix.mul_(r).sub_(wg)  # [Tc, P, L] dL/dsigma = r S - w G
                if clamped is not None:
                    gsig.masked_fill_(clamped, 0.0)
                gk = torch.matmul(basis_t, gsig)  # [Tc, 6, L] dL/dk for sigma' = basis . k
                g0, g1, g2, g3, g4, g5 = gk.unbind(1)  # [Tc, L] each
                gx, gy, a, b, c = ch.gx, ch.gy, ch.a, ch.b, ch.c
                dmx = g0 * (a * gx + b * gy) - g1 * a - g2 * b  # [Tc, L]
                dmy = g0 * (b * gx + c * gy) - g1 * b - g2 * c  # [Tc, L]
                da = 0.5 * g0 * gx * gx - g1 * gx + 0.5 * g3  # [Tc, L]
                db = g0 * gx * gy - g1 * gy - g2 * gx + g5  # [Tc, L]
                dc = 0.5 * g0 * gy * gy - g2 * gy + 0.5 * g4  # [Tc, L]
                dlogo = -g0  # [Tc, L]
                Tc, L = dmx.shape
                part = torch.cat(
                    [torch.stack([dmx, dmy, da, db, dc, dlogo], 0).view(6, Tc * L),
                     gfeat[:, :F].permute(1, 0, 2).reshape(F, Tc * L)], 0
                )  # [6+F, Tc*L]
                gid = ch.gid.reshape(-1)  # [Tc*L]
                grads.index_add_(1, gid, part)
                if gabs is not None:
                    # Per pixel, dsigma/dmx = a (gx - u) + b (gy - v), dsigma/dmy = b (gx - u) + c (gy - v).
                    kx = torch.stack([ch.nk[1], ch.nk[3] * 2, ch.nk[5]], 1)  # [Tc, 3, L]
                    ky = torch.stack([ch.nk[2], ch.nk[5], ch.nk[4] * 2], 1)  # [Tc, 3, L]
                    ax = (torch.matmul(basis[:, :3], kx) * gsig).abs_().sum(1)  # [Tc, L]
                    ay = (torch.matmul(basis[:, :3], ky) * gsig).abs_().sum(1)  # [Tc, L]
                    gabs.index_add_(1, gid, torch.stack([ax, ay], 0).view(2, Tc * L))
        g_means2d = grads[0:2].t().reshape(C, N, 2)
        g_conics = grads[2:5].t().reshape(C, N, 3)
        g_opac = (grads[5] / opacities.reshape(-1).clamp_min(1e-30)).reshape(C, N)
        g_feats = grads[6:].t().reshape(C, N, F)
        if gabs is not None:
            means2d.absgrad = gabs.t().reshape(C, N, 2)
        return g_means2d, g_conics, g_feats, g_opac, None, None, None


def rasterize_tiles(
    means2d: Tensor,  # [C, N, 2]
    conics: Tensor,  # [C, N, 3]
    feats: Tensor,  # [C, N, F]
    opacities: Tensor,  # [C, N]
    radii: Tensor,  # [C, N, 2]
    depths: Tensor,  # [C, N]
    width: int,
    height: int,
    tile_size: int = DEFAULT_TILE_SIZE,
    max_chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    absgrad: bool = False,
    layout: Optional[TileLayout] = None,
    save_limit_bytes: int = DEFAULT_SAVE_LIMIT,
) -> Tuple[Tensor, Tensor, TileLayout]:
    """Composite projected Gaussians front to back into C images.

    Args:
        means2d: [C, N, 2] pixel centres of the Gaussians.
        conics: [C, N, 3] inverse 2D covariances (a, b, c).
        feats: [C, N, F] per-Gaussian features to accumulate (colours, depth, ...).
        opacities: [C, N] opacities.
        radii: [C, N, 2] integer radii; entries with a zero radius are skipped.
        depths: [C, N] sort keys (camera depth).
        width: Image width.
        height: Image height.
        tile_size: Tile edge in pixels (a speed knob; results do not depend on it).
        max_chunk_elems: Memory knob: padded pixel x Gaussian evaluations per chunk.
        absgrad: Also set ``means2d.absgrad`` (sum over pixels of |dL/dmeans2d|) in backward.
        layout: A precomputed :class:`TileLayout` to reuse.
        save_limit_bytes: Keep the forward's compositing state for backward when it takes at
            most this many bytes; otherwise backward recomputes it chunk by chunk.

    Returns:
        ``(feats_img [C, H, W, F], alpha [C, H, W, 1], layout)`` with accumulated (not
        normalised) features and the accumulated opacity ``1 - T``.
    """
    if layout is None:
        layout = build_tile_layout(
            means2d, conics, opacities, radii, depths, width, height, tile_size, max_chunk_elems
        )
    need_grad = torch.is_grad_enabled() and any(
        t.requires_grad for t in (means2d, conics, feats, opacities)
    )
    limit = save_limit_bytes if need_grad else -1
    out = _RasterizeTiles.apply(means2d, conics, feats, opacities, layout, absgrad, limit)  # [C, H, W, F+1]
    return out[..., :-1], out[..., -1:], layout
