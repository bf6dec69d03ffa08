"""Image and depth metrics: pure functions, every variant the literature uses, labelled.

All image inputs are RGB in [0, 1] as [H, W, 3] (numpy arrays or torch tensors); masks are boolean
[H, W] with True = tissue (the pixels that count). Values are computed in float64 on the CPU.

PSNR variants (FORMATS.md §1.6, PEERS.md §4):

* :func:`psnr` - true masked PSNR: the MSE over tissue pixels only,
  ``mse = sum(m * (r - g)^2) / (3 * sum(m))`` (EndoSurf, EndoGS, EndoGaussian's ``PSNR*``).
* :func:`psnr_legacy` - PSNR of the mask-multiplied images over *all* pixels,
  ``mse = mean((r*m - g*m)^2)``; tool pixels count as perfect zeros, which inflates the value by
  about ``10 log10(1 / tissue_fraction)`` dB (EndoNeRF, EndoGaussian ``PSNR``, Deform3DGS,
  SurgicalGaussian, Endo-4DGS).
* :func:`psnr_full` - no mask at all.

PSNR = ``10 log10(1 / mse)``; the MSE is floored at :data:`MSE_FLOOR` (a 100 dB cap) so that a
perfect frame gives a finite number.

SSIM (Wang et al. 2004; 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, data range 1), from
torchmetrics' SSIM map restricted to where the window fits inside the image ("valid" region, as
pytorch-msssim and the original MATLAB code; the tests check both libraries and the definition agree):

* :func:`ssim` - mean SSIM of the mask-multiplied images (what the peers report; the tool region,
  zero in both images, scores a perfect 1 and inflates the mean).
* :func:`ssim_masked` - the same map averaged over tissue pixels only.
"""

from __future__ import annotations

import math
from typing import Optional, Union

import numpy as np
import torch

ArrayLike = Union[np.ndarray, torch.Tensor]

MSE_FLOOR = 1e-10
"""PSNR is capped at 10 log10(1 / MSE_FLOOR) = 100 dB."""

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K = (0.01, 0.03)


def as_f64(x: ArrayLike) -> torch.Tensor:
    """A float64 CPU tensor (no copy when it already is one)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64)
    return torch.from_numpy(np.asarray(x, dtype=np.float64))


def _image(x: ArrayLike, name: str) -> torch.Tensor:
    t = as_f64(x)
    if t.ndim != 3 or t.shape[-1] != 3:
        raise ValueError(f"{name} must be [H, W, 3], got {tuple(t.shape)}")
    return t


def _mask(mask: Optional[ArrayLike], shape: tuple[int, int]) -> torch.Tensor:
    if mask is None:
        return torch.ones(shape, dtype=torch.float64)
    m = as_f64(mask)
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"mask must be {tuple(shape)}, got {tuple(m.shape)}")
    return (m > 0.5).to(torch.float64)


def mse_to_psnr(mse: float) -> float:
    """PSNR in dB of an MSE on [0, 1] data (peak 1); NaN when the MSE is NaN (e.g. no pixel counted)."""
    if mse is None or not math.isfinite(mse):
        return float("nan")
    return -10.0 * math.log10(max(float(mse), MSE_FLOOR))


def sq_error_sums(render: ArrayLike, gt: ArrayLike, mask: Optional[ArrayLike] = None) -> dict[str, float]:
    """The sums behind every PSNR variant of one frame (for per-frame values and pooled MSEs).

    Returns ``tissue_sq`` = sum over tissue pixels and channels of (r - g)^2, ``tissue_n`` = 3 x the
    number of tissue pixels, ``all_sq`` = sum over all pixels of (r*m - g*m)^2 (equal to tissue_sq,
    since tool pixels are 0 in both), ``full_sq`` = unmasked sum, ``all_n`` = 3 x H x W.
    """
    r, g = _image(render, "render"), _image(gt, "gt")
    if r.shape != g.shape:
        raise ValueError(f"render {tuple(r.shape)} and gt {tuple(g.shape)} differ in shape")
    m = _mask(mask, tuple(r.shape[:2]))[..., None]
    d2 = (r - g) ** 2
    legacy = (r * m - g * m) ** 2
    return {
        "tissue_sq": float((d2 * m).sum()),
        "tissue_n": float(m.sum() * 3.0),
        "all_sq": float(legacy.sum()),
        "full_sq": float(d2.sum()),
        "all_n": float(d2.numel()),
    }


def psnr(render: ArrayLike, gt: ArrayLike, mask: Optional[ArrayLike] = None) -> float:
    """True masked PSNR: MSE over tissue pixels only (NaN when the mask is empty)."""
    s = sq_error_sums(render, gt, mask)
    return mse_to_psnr(s["tissue_sq"] / s["tissue_n"] if s["tissue_n"] > 0 else float("nan"))


def psnr_legacy(render: ArrayLike, gt: ArrayLike, mask: Optional[ArrayLike] = None) -> float:
    """PSNR of mask-multiplied images over all pixels (tool pixels count as zero error)."""
    s = sq_error_sums(render, gt, mask)
    return mse_to_psnr(s["all_sq"] / s["all_n"])


def psnr_full(render: ArrayLike, gt: ArrayLike) -> float:
    """PSNR over all pixels of the unmasked images."""
    s = sq_error_sums(render, gt, None)
    return mse_to_psnr(s["full_sq"] / s["all_n"])


def _nchw(x: torch.Tensor) -> torch.Tensor:
    return x.permute(2, 0, 1)[None].contiguous()


def _masked_pair(render: ArrayLike, gt: ArrayLike, mask: Optional[ArrayLike]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    r, g = _image(render, "render"), _image(gt, "gt")
    if r.shape != g.shape:
        raise ValueError(f"render {tuple(r.shape)} and gt {tuple(g.shape)} differ in shape")
    m = _mask(mask, tuple(r.shape[:2]))
    r, g = r.clamp(0, 1) * m[..., None], g.clamp(0, 1) * m[..., None]
    return r, g, m


def ssim_map(render: ArrayLike, gt: ArrayLike, mask: Optional[ArrayLike] = None,
             device: Optional[Union[str, torch.device]] = None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The per-pixel SSIM map (channel mean) of the mask-multiplied images, [H, W] float64 on the CPU,
    NaN outside the valid region (the 5-pixel border where the 11x11 window does not fit).

    Computed with torchmetrics (``return_full_image``) in ``dtype`` on ``device`` (float32 by default:
    float64 convolutions are ~10x slower on CPUs; the difference is below 1e-5 in SSIM).
    """
    from torchmetrics.functional.image import structural_similarity_index_measure as tm_ssim

    r, g, _ = _masked_pair(render, gt, mask)
    H, W = r.shape[:2]
    out = torch.full((H, W), float("nan"), dtype=torch.float64)
    p = SSIM_WINDOW // 2
    if H <= 2 * p or W <= 2 * p:
        return out
    dev = torch.device(device) if device is not None else torch.device("cpu")
    _, full = tm_ssim(_nchw(r).to(dev, dtype), _nchw(g).to(dev, dtype), gaussian_kernel=True, sigma=SSIM_SIGMA,
                      kernel_size=SSIM_WINDOW, data_range=1.0, k1=SSIM_K[0], k2=SSIM_K[1], return_full_image=True)
    out[p:H - p, p:W - p] = full[0].mean(0)[p:H - p, p:W - p].to("cpu", torch.float64)
    return out


def ssim_pair(render: ArrayLike, gt: ArrayLike, mask: Optional[ArrayLike] = None, **kw) -> tuple[float, float]:
    """(``ssim``, ``ssim_masked``) from one SSIM map: its mean over the valid region, and its mean over
    the tissue pixels of the valid region."""
    smap = ssim_map(render, gt, mask, **kw)
    valid = torch.isfinite(smap)
    m = _mask(mask, tuple(smap.shape)) > 0
    tissue = valid & m
    s_all = float(smap[valid].mean()) if bool(valid.any()) else float("nan")
    s_tis = float(smap[tissue].mean()) if bool(tissue.any()) else float("nan")
    return s_all, s_tis


def ssim(render: ArrayLike, gt: ArrayLike, mask: Optional[ArrayLike] = None, **kw) -> float:
    """Mean SSIM of the mask-multiplied images over the valid region (tool pixels score 1)."""
    return ssim_pair(render, gt, mask, **kw)[0]


def ssim_masked(render: ArrayLike, gt: ArrayLike, mask: Optional[ArrayLike] = None, **kw) -> float:
    """SSIM map of the mask-multiplied images averaged over tissue pixels of the valid region."""
    return ssim_pair(render, gt, mask, **kw)[1]


def depth_errors(pred: ArrayLike, gt: ArrayLike, valid: Optional[ArrayLike] = None) -> dict[str, float]:
    """RMSE and absolute relative error of a depth map over ``valid`` pixels with gt > 0.

    Rendered depth 0 (nothing drawn) counts as an error, not as a hole. Returns ``rmse`` and
    ``absrel`` (NaN when no pixel is valid) and ``n`` (pixels counted).
    """
    p, g = as_f64(pred), as_f64(gt)
    if p.shape != g.shape:
        raise ValueError(f"depth prediction {tuple(p.shape)} and gt {tuple(g.shape)} differ in shape")
    sel = torch.isfinite(g) & (g > 0)
    if valid is not None:
        sel &= as_f64(valid) > 0.5
    n = int(sel.sum())
    if n == 0:
        return {"rmse": float("nan"), "absrel": float("nan"), "n": 0}
    d = p[sel] - g[sel]
    return {"rmse": float(torch.sqrt((d**2).mean())), "absrel": float((d.abs() / g[sel]).mean()), "n": n}


def image_metrics(render: ArrayLike, gt: ArrayLike, mask: Optional[ArrayLike] = None, lpips=None,
                  device: Optional[Union[str, torch.device]] = None) -> dict[str, float]:
    """Every per-frame image metric of one frame: psnr, psnr_legacy, psnr_full, ssim, ssim_masked,
    lpips (None unless an :class:`endogs.eval.lpips.LPIPS` is given), tissue_fraction, and the sums of
    :func:`sq_error_sums` (keys prefixed ``_``) for pooled PSNRs. ``device``: where the SSIM map is
    computed (float32)."""
    s = sq_error_sums(render, gt, mask)
    s_all, s_tis = ssim_pair(render, gt, mask, device=device)
    out = {
        "psnr": mse_to_psnr(s["tissue_sq"] / s["tissue_n"] if s["tissue_n"] > 0 else float("nan")),
        "psnr_legacy": mse_to_psnr(s["all_sq"] / s["all_n"]),
        "psnr_full": mse_to_psnr(s["full_sq"] / s["all_n"]),
        "ssim": s_all,
        "ssim_masked": s_tis,
        "lpips": None,
        "tissue_fraction": s["tissue_n"] / s["all_n"],
    }
    if lpips is not None:
        r, g, _ = _masked_pair(render, gt, mask)
        out["lpips"] = lpips.distance(r, g)
    out.update({f"_{k}": v for k, v in s.items()})
    return out


def pooled_psnr(frames: list[dict[str, float]]) -> dict[str, float]:
    """PSNRs of one MSE pooled over all frames (EndoNeRF's eval_rgb.py aggregates this way):
    ``psnr_pooled`` (tissue pixels of all frames; EndoGS) and ``psnr_legacy_pooled`` (all pixels of the
    mask-multiplied frames; EndoNeRF)."""
    tsq = sum(f["_tissue_sq"] for f in frames)
    tn = sum(f["_tissue_n"] for f in frames)
    asq = sum(f["_all_sq"] for f in frames)
    an = sum(f["_all_n"] for f in frames)
    return {
        "psnr_pooled": mse_to_psnr(tsq / tn) if tn > 0 else float("nan"),
        "psnr_legacy_pooled": mse_to_psnr(asq / an) if an > 0 else float("nan"),
    }
