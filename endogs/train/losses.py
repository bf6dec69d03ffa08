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


def masked_dssim(pred: Tensor, gt: Tensor, weight: Optional[Tensor] = None) -> Tensor:
    """1 - SSIM averaged over weighted pixels."""
    s = ssim_map(pred, gt)
    w = _weights(weight, _batched(pred))
    return 1.0 - (s * w).sum() / w.sum().clamp_min(1e-8)


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
