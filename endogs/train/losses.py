"""Training losses. Masks weight the loss; rendered images are never zeroed to fake agreement.

Images are [H, W, 3] (or [B, H, W, 3]) in [0, 1]; weights are [H, W] (or [B, H, W]) in [0, 1],
1 on tissue pixels that should be supervised.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor


def _batched(img: Tensor) -> Tensor:
    return img if img.ndim == 4 else img[None]


def _weights(weight: Optional[Tensor], like: Tensor) -> Tensor:
    if weight is None:
        return torch.ones(like.shape[:-1], dtype=like.dtype, device=like.device)
    w = weight.to(like.dtype)
    return w if w.ndim == like.ndim - 1 else w[None]


def masked_l1(pred: Tensor, gt: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    """Mean absolute error over weighted pixels (all channels)."""
    pred, gt = _batched(pred), _batched(gt)
    w = _weights(weight, pred)  # [B, H, W]
    err = (pred - gt).abs().mean(-1)  # [B, H, W]
    return (err * w).sum() / w.sum().clamp_min(1e-8)


@lru_cache(maxsize=8)
def _gauss_window(size: int, sigma: float, channels: int, device_str: str, dtype: torch.dtype) -> Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).to(dtype)
    w = (g[:, None] * g[None, :]).expand(channels, 1, size, size).contiguous()
    return w.to(torch.device(device_str))


def ssim_map(pred: Tensor, gt: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Per-pixel SSIM [B, H, W] (channel mean), Gaussian window, C1 = 0.01^2, C2 = 0.03^2.

    Borders use zero padding ("same" size) so the map aligns with the mask; evaluation uses a
    maintained implementation (pytorch-msssim) on valid windows instead.
    """
    x = _batched(pred).permute(0, 3, 1, 2)
    y = _batched(gt).permute(0, 3, 1, 2)
    c = x.shape[1]
    w = _gauss_window(window, sigma, c, str(x.device), x.dtype)
    pad = window // 2

    def filt(z: Tensor) -> Tensor:
        return F.conv2d(z, w, padding=pad, groups=c)

    mu_x, mu_y = filt(x), filt(y)
    sxx = filt(x * x) - mu_x**2
    syy = filt(y * y) - mu_y**2
    sxy = filt(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return s.mean(1)


def masked_dssim_autograd(pred: Tensor, gt: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    """1 - SSIM averaged over weighted pixels, by autograd through :func:`ssim_map` (the reference of
    :func:`masked_dssim`)."""
    s = ssim_map(pred, gt)
    w = _weights(weight, _batched(pred))
    return 1.0 - (s * w).sum() / w.sum().clamp_min(1e-8)


@lru_cache(maxsize=8)
def _gauss_1d(size: int, sigma: float, channels: int, device_str: str, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = (g / g.sum()).to(dtype)
    dev = torch.device(device_str)
    return (g.view(1, 1, 1, size).expand(channels, 1, 1, size).contiguous().to(dev),
            g.view(1, 1, size, 1).expand(channels, 1, size, 1).contiguous().to(dev))


def _blur(z: Tensor, window: int = 11, sigma: float = 1.5) -> Tensor:
    """The SSIM window of :func:`ssim_map` (zero padding, same size) as two 1-D passes; [B, C, H, W].
    Symmetric with zero padding, so it is its own adjoint (the backward blurs too)."""
    c = z.shape[1]
    gx, gy = _gauss_1d(window, sigma, c, str(z.device), z.dtype)
    pad = window // 2
    return F.conv2d(F.conv2d(z, gx, padding=(0, pad), groups=c), gy, padding=(pad, 0), groups=c)


class _FusedDSSIM(torch.autograd.Function):
    """1 - weighted mean SSIM with a hand-written backward: three blurs instead of autograd's graph.

    With A = 2 mu_x mu_y + c1, B = 2 s_xy + c2, C = mu_x^2 + mu_y^2 + c1, D = s_xx + s_yy + c2 and
    S = AB / (CD) per pixel and channel, the gradient with respect to the blurred moments is
    dS/dmu_x = S (2 mu_y / A - 2 mu_y / B - 2 mu_x / C + 2 mu_x / D), dS/dE[x^2] = -S / D,
    dS/dE[xy] = 2 S / B, and d/dx = blur(g dS/dmu_x) + 2 x blur(g dS/dE[x^2]) + y blur(g dS/dE[xy]).
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, w: Tensor) -> Tensor:  # type: ignore[override]
        # x, y [B, C, H, W]; w [B, H, W]
        c = x.shape[1]
        moments = _blur(torch.cat([x, y, x * x, y * y, x * y], dim=1))
        mu_x, mu_y, exx, eyy, exy = moments.split(c, dim=1)
        c1, c2 = 0.01**2, 0.03**2
        a = 2 * mu_x * mu_y + c1
        b = 2 * (exy - mu_x * mu_y) + c2
        cc = mu_x * mu_x + mu_y * mu_y + c1
        d = (exx - mu_x * mu_x) + (eyy - mu_y * mu_y) + c2
        s = (a * b) / (cc * d)
        wsum = w.sum().clamp_min(1e-8)
        loss = 1.0 - (s.mean(1) * w).sum() / wsum
        ctx.save_for_backward(x, y, w, mu_x, mu_y, a, b, cc, d, s, wsum)
        return loss

    @staticmethod
    def backward(ctx, grad: Tensor):  # type: ignore[override]
        x, y, w, mu_x, mu_y, a, b, cc, d, s, wsum = ctx.saved_tensors
        g = (-grad / (x.shape[1] * wsum)) * w[:, None]  # dL/dS per pixel and channel
        gs = g * s
        d_mu = gs * (2 * mu_y / a - 2 * mu_y / b - 2 * mu_x / cc + 2 * mu_x / d)
        d_exx = -gs / d
        d_exy = 2 * gs / b
        c = x.shape[1]
        bm, bxx, bxy = _blur(torch.cat([d_mu, d_exx, d_exy], dim=1)).split(c, dim=1)
        return bm + 2 * x * bxx + y * bxy, None, None


def masked_dssim(pred: Tensor, gt: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    """1 - SSIM averaged over weighted pixels (the map of :func:`ssim_map`), with a fused backward;
    equal to :func:`masked_dssim_autograd` in value and gradient up to rounding. ``gt`` and ``weight``
    receive no gradient."""
    x = _batched(pred).permute(0, 3, 1, 2)
    y = _batched(gt).to(x.dtype).permute(0, 3, 1, 2).detach()
    w = _weights(weight, _batched(pred)).detach()
    return _FusedDSSIM.apply(x, y, w)


def inverse_depth_l1(pred_depth: Tensor, gt_depth: Tensor, weight: Tensor) -> Tensor:
    """L1 between inverse depths over weighted pixels with valid ground truth, made unit-free.

    The error is scaled by the median ground-truth depth, so it reads as a relative error
    (|d_gt / d_pred - 1| for small errors) whatever the depth unit.
    """
    valid = (gt_depth > 0) & (weight > 0)
    if not bool(valid.any()):
        return pred_depth.sum() * 0.0
    gt = gt_depth[valid]
    scale = gt.median().detach()
    # Renders with little accumulated opacity have a near-zero expected depth; clamping keeps their
    # inverse depth bounded (the colour loss is what fills such holes).
    pd = pred_depth[valid].clamp_min(0.2 * float(gt.min()))
    return ((1.0 / pd - 1.0 / gt).abs() * weight[valid]).sum() * scale / weight[valid].sum()


def pearson_depth(pred_depth: Tensor, prior: Tensor, weight: Tensor) -> Tensor:
    """1 - Pearson correlation between rendered depth and a relative (monocular) depth prior.

    ``prior`` is depth-like (larger = farther, 0 = invalid) up to an unknown scale and shift, as
    ``endogs prepare`` stores monocular depth (``depth_unit: relative``); the loss ignores both.
    """
    valid = (prior > 0) & (weight > 0)
    if int(valid.sum()) < 2:
        return pred_depth.sum() * 0.0
    a = pred_depth[valid]
    b = prior[valid]
    a = a - a.mean()
    b = b - b.mean()
    corr = (a * b).sum() / (a.norm() * b.norm()).clamp_min(1e-12)
    return 1.0 - corr


def psnr(pred: Tensor, gt: Tensor, weight: Optional[Tensor] = None) -> float:
    """PSNR (dB) of the weighted MSE; for monitoring training only."""
    pred, gt = _batched(pred), _batched(gt)
    w = _weights(weight, pred)
    mse = (((pred - gt) ** 2).mean(-1) * w).sum() / w.sum().clamp_min(1e-8)
    return float(-10.0 * math.log10(max(float(mse), 1e-12)))
