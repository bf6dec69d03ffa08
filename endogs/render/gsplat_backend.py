"""The production path: gsplat's fused CUDA rasterizer (imported lazily, CUDA tensors only)."""

from __future__ import annotations

from typing import Any, Dict, Optional, Tuple

from torch import Tensor


def rasterize_gsplat(
    means: Tensor,  # [N, 3]
    quats: Tensor,  # [N, 4]
    scales: Tensor,  # [N, 3]
    opacities: Tensor,  # [N]
    colors: Tensor,  # [N, 3] or [N, K, 3]
    viewmats: Tensor,  # [C, 4, 4]
    Ks: Tensor,  # [C, 3, 3]
    width: int,
    height: int,
    sh_degree: Optional[int],
    backgrounds: Optional[Tensor],  # [C, 3]
    near: float,
    far: float,
    eps2d: float,
    absgrad: bool,
) -> Tuple[Tensor, Tensor, Tensor, Dict[str, Any]]:
    """Render with ``gsplat.rasterization(render_mode="RGB+ED", packed=False)``.

    The caller guarantees CUDA float32 tensors; gsplat is imported here and nowhere else.

    Returns:
        ``(rgb [C, H, W, 3], depth [C, H, W, 1], alpha [C, H, W, 1], info)``.
    """
    if means.device.type != "cuda":  # defensive: never reach gsplat's CUDA ops with CPU tensors
        raise ValueError(f"the gsplat backend needs CUDA tensors, got {means.device}")
    from gsplat import rasterization  # lazy: importing/compiling gsplat is for CUDA runs only

    out, alphas, info = rasterization(
        means,
        quats,
        scales,
        opacities,
        colors,
        viewmats,
        Ks,
        width,
        height,
        near_plane=near,
        far_plane=far,
        eps2d=eps2d,
        sh_degree=sh_degree,
        packed=False,
        backgrounds=backgrounds,
        render_mode="RGB+ED",
        absgrad=absgrad,
        rasterize_mode="classic",
    )
    info["backend"] = "gsplat"
    return out[..., :3], out[..., 3:4], alphas, info
