"""``render()``: draw a :class:`~endogs.snapshot.Snapshot` from one or more cameras.

Two backends honour one contract (gsplat 1.5.3, ``packed=False``, ``render_mode="RGB+ED"``):

* ``"gsplat"``: gsplat's fused CUDA kernels, for float32 CUDA tensors (the production path);
* ``"cpu"``: endogs' own differentiable pure-PyTorch tile rasterizer (:mod:`endogs.render.cpu`).
  It runs on any device; it is the only path for CPU tensors, where gsplat has no kernels.

``backend="auto"`` picks gsplat for float32 CUDA snapshots and the PyTorch rasterizer otherwise.
Either way ``RenderOutput.info`` carries what gsplat's ``DefaultStrategy`` needs
(``means2d`` with its gradient, ``radii``, ``width``, ``height``, ``n_cameras``, ``gaussian_ids``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Literal, Optional, Sequence, Union

import numpy as np
import torch
from torch import Tensor

from ..camera import Camera
from ..errors import EndogsError
from ..snapshot import Snapshot
from .cpu import DEFAULT_CHUNK_ELEMS, DEFAULT_TILE_SIZE, rasterize_tiles
from .cpu_select import CpuBackendError, choose_cpu_backend  # noqa: F401 (re-exported)
from .projection import project_gaussians
from .sh import sh_to_rgb

Backend = Literal["auto", "cpu", "gsplat"]
BackgroundLike = Union[None, float, Sequence[float], np.ndarray, Tensor]


class RenderInputError(EndogsError, ValueError):
    """Invalid input to :func:`render` (a ``ValueError`` with a one-line message)."""


@dataclass
class RenderOutput:
    """What :func:`render` returns.

    Attributes:
        rgb: [C, H, W, 3] colour, background blended in as ``rgb + (1 - alpha) * background``.
        depth: [C, H, W, 1] expected z-depth ``sum(w z) / sum(w)`` (0 where nothing is drawn).
        alpha: [C, H, W, 1] accumulated opacity.
        info: gsplat's ``meta`` dict (``packed=False``): ``means2d`` [C, N, 2] (its ``.grad`` is
            retained, so it is set after backward when the snapshot needs grad), ``radii`` [C, N, 2]
            int32, ``depths`` [C, N], ``conics`` [C, N, 3], ``opacities`` [C, N], ``width``,
            ``height``, ``n_cameras``, ``gaussian_ids`` (None), ``backend`` and more.
        backend: ``"cpu"`` or ``"gsplat"``, the backend that drew the images.
    """

    rgb: Tensor  # [C, H, W, 3]
    depth: Tensor  # [C, H, W, 1]
    alpha: Tensor  # [C, H, W, 1]
    info: Dict[str, Any]
    backend: str


def render(
    snapshot: Snapshot,
    cameras: Union[Camera, Sequence[Camera]],
    *,
    background: BackgroundLike = None,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
    backend: Backend = "auto",
    absgrad: bool = False,
    tile_size: Optional[int] = None,
    max_chunk_elems: int = DEFAULT_CHUNK_ELEMS,
    cpu_backend: Optional[str] = None,
) -> RenderOutput:
    """Render a snapshot from one camera or a list of same-sized cameras.

    Outputs follow the snapshot's dtype and device; gradients flow to every snapshot tensor.

    Args:
        snapshot: Activated Gaussians (colours as RGB, or SH of degree ``snapshot.sh_degree``).
        cameras: A :class:`Camera` or a non-empty sequence of cameras with the same size.
        background: None (black), a scalar, an RGB triple, or a [C, 3] tensor, one per camera.
        near: Near plane: Gaussians closer than this (camera z) are not drawn.
        far: Far plane.
        eps2d: Low-pass filter added to every projected 2D covariance (pixels^2).
        backend: ``"auto"`` (gsplat for float32 CUDA tensors, else the PyTorch rasterizer),
            ``"cpu"`` (the PyTorch rasterizer, on any device) or ``"gsplat"`` (CUDA only).
        absgrad: Also accumulate ``info["means2d"].absgrad`` in backward (for
            ``DefaultStrategy(absgrad=True)``).
        tile_size: CPU rasterizer tile edge (speed only; results do not depend on it); None is
            the chosen CPU rasterizer's default (4 for PyTorch, 8 for numba).
        max_chunk_elems: PyTorch rasterizer memory cap (padded pixel x Gaussian evaluations).
        cpu_backend: ``"auto"`` (numba kernels for CPU tensors, else PyTorch), ``"numba"`` or
            ``"torch"``; None reads ``ENDOGS_CPU_BACKEND`` (default ``"auto"``). See
            :mod:`endogs.render.cpu_select`. ``info["cpu_backend"]`` says which one drew.

    Returns:
        A :class:`RenderOutput`.

    Raises:
        RenderInputError: (a ValueError) for bad cameras, non-finite or mismatched tensors, a
            bad background, an unknown backend, or ``backend="gsplat"`` without CUDA tensors.
        CpuBackendError: (a ValueError) for a bad ``cpu_backend``, or ``"numba"`` forced where
            numba cannot run.
    """
    cams = _as_camera_list(cameras)
    width, height = cams[0].width, cams[0].height
    means, quats, scales, opacities, colors = _checked_tensors(snapshot)
    dtype, device = means.dtype, means.device
    C, N = len(cams), means.shape[0]
    if not (0.0 < near < far):
        raise RenderInputError(f"render: need 0 < near < far, got near={near}, far={far}")
    if eps2d < 0:
        raise RenderInputError(f"render: eps2d must be >= 0, got {eps2d}")
    bg = _background(background, C, dtype, device)  # [C, 3] or None
    viewmats = torch.as_tensor(np.stack([c.viewmat for c in cams]), dtype=dtype, device=device)
    Ks = torch.as_tensor(np.stack([c.K for c in cams]), dtype=dtype, device=device)  # [C, 3, 3]

    chosen = _choose_backend(backend, device, dtype)
    raster = choose_cpu_backend(cpu_backend, device) if chosen == "cpu" else None
    if chosen == "gsplat" and N > 0:
        from .gsplat_backend import rasterize_gsplat

        rgb, depth, alpha, info = rasterize_gsplat(
            means, quats, scales, opacities, colors, viewmats, Ks, width, height,
            snapshot.sh_degree, bg, near, far, eps2d, absgrad,
        )  # fmt: skip
        _retain_means2d_grad(info)
        return RenderOutput(rgb=rgb, depth=depth, alpha=alpha, info=info, backend="gsplat")

    proj = None
    if raster == "numba":  # the same projection by two compiled passes (endogs.render.projection_numba)
        from .projection_numba import project_gaussians_numba, use_numba_projection

        if use_numba_projection(means, quats, scales, opacities, viewmats, Ks):
            proj = project_gaussians_numba(
                means, quats, scales, opacities, viewmats, Ks, width, height, eps2d=eps2d, near=near, far=far
            )
    if proj is None:
        proj = project_gaussians(
            means, quats, scales, opacities, viewmats, Ks, width, height, eps2d=eps2d, near=near, far=far
        )
    if snapshot.sh_degree is None:
        rgb_g = colors[None].expand(C, N, 3)  # [C, N, 3]
    else:
        campos = torch.as_tensor(np.stack([c.c2w[:3, 3] for c in cams]), dtype=dtype, device=device)
        dirs = means[None, :, :] - campos[:, None, :]  # [C, N, 3]
        rgb_g = None
        if raster == "numba":  # the same colours by one compiled pass (endogs.render.sh_numba)
            from .sh_numba import sh_to_rgb_numba, use_numba_sh

            if use_numba_sh(snapshot.sh_degree, dirs, colors):
                rgb_g = sh_to_rgb_numba(snapshot.sh_degree, dirs, colors)  # [C, N, 3]
        if rgb_g is None:
            rgb_g = sh_to_rgb(snapshot.sh_degree, dirs, colors[None])  # [C, N, 3]
    feats = torch.cat([rgb_g, proj.depths[..., None]], dim=-1)  # [C, N, 4]
    opac_c = opacities[None, :].expand(C, N)  # [C, N]
    if raster == "numba":
        from .cpu_numba import DEFAULT_TILE_SIZE as NUMBA_TILE_SIZE, rasterize_tiles_numba

        acc, alpha, layout = rasterize_tiles_numba(
            proj.means2d, proj.conics, feats, opac_c, proj.radii, proj.depths, width, height,
            tile_size=tile_size or NUMBA_TILE_SIZE, absgrad=absgrad,
        )  # fmt: skip
    else:
        acc, alpha, layout = rasterize_tiles(
            proj.means2d, proj.conics, feats, opac_c, proj.radii, proj.depths, width, height,
            tile_size=tile_size or DEFAULT_TILE_SIZE, max_chunk_elems=max_chunk_elems, absgrad=absgrad,
        )  # fmt: skip
    rgb = acc[..., :3]  # [C, H, W, 3]
    if bg is not None:
        rgb = rgb + (1.0 - alpha) * bg[:, None, None, :]  # [C, H, W, 3]
    depth = acc[..., 3:4] / alpha.clamp(min=1e-10)  # [C, H, W, 1]
    info: Dict[str, Any] = {
        "backend": "cpu",
        "cpu_backend": raster,
        "means2d": proj.means2d,
        "radii": proj.radii,
        "depths": proj.depths,
        "conics": proj.conics,
        "opacities": opac_c,
        "width": width,
        "height": height,
        "n_cameras": C,
        "n_batches": 1,
        "batch_ids": None,
        "camera_ids": None,
        "gaussian_ids": None,
        "tile_size": layout.tile_size,
        "tile_width": layout.tiles_x,
        "tile_height": layout.tiles_y,
        "n_isects": layout.n_pairs,
    }
    _retain_means2d_grad(info)
    return RenderOutput(rgb=rgb, depth=depth, alpha=alpha, info=info, backend="cpu")


def _retain_means2d_grad(info: Dict[str, Any]) -> None:
    """Keep ``info["means2d"].grad`` after backward (what densification reads), when it has one."""
    m2 = info.get("means2d")
    if isinstance(m2, Tensor) and m2.requires_grad:
        m2.retain_grad()


def _as_camera_list(cameras: Union[Camera, Sequence[Camera]]) -> List[Camera]:
    cams = [cameras] if isinstance(cameras, Camera) else list(cameras)
    if not cams:
        raise RenderInputError("render: got an empty list of cameras")
    for c in cams:
        if not isinstance(c, Camera):
            raise RenderInputError(f"render: cameras must be endogs Camera objects, got {type(c).__name__}")
    sizes = {(c.width, c.height) for c in cams}
    if len(sizes) > 1:
        raise RenderInputError(f"render: all cameras must have the same size, got {sorted(sizes)}")
    return cams


def _checked_tensors(s: Snapshot) -> List[Tensor]:
    named = [("means", s.means), ("quats", s.quats), ("scales", s.scales), ("opacities", s.opacities), ("colors", s.colors)]
    dtype, device = s.means.dtype, s.means.device
    if dtype not in (torch.float32, torch.float64):
        raise RenderInputError(f"render: snapshot tensors must be float32 or float64, got {dtype}")
    for name, t in named:
        if t.dtype != dtype or t.device != device:
            raise RenderInputError(
                f"render: snapshot.{name} is {t.dtype} on {t.device} but means is {dtype} on {device}"
            )
        # One reduction per tensor: a NaN or inf anywhere makes the sum non-finite.
        if t.numel() and not bool(torch.isfinite(t.detach().sum())):
            raise RenderInputError(f"render: snapshot.{name} contains NaN or infinite values")
    return [t for _, t in named]


def _background(bg: BackgroundLike, C: int, dtype: torch.dtype, device: torch.device) -> Optional[Tensor]:
    if bg is None:
        return None
    t = torch.as_tensor(bg, dtype=dtype, device=device)
    if t.ndim == 0:
        t = t.expand(3)
    if t.shape == (3,):
        t = t[None].expand(C, 3)
    if t.shape != (C, 3):
        raise RenderInputError(f"render: background must be a scalar, [3] or [{C}, 3], got {tuple(t.shape)}")
    if not bool(torch.isfinite(t).all()):
        raise RenderInputError("render: background contains NaN or infinite values")
    return t


def _choose_backend(backend: str, device: torch.device, dtype: torch.dtype) -> str:
    if backend not in ("auto", "cpu", "gsplat"):
        raise RenderInputError(f"render: backend must be 'auto', 'cpu' or 'gsplat', got {backend!r}")
    if backend == "gsplat":
        if device.type != "cuda":
            raise RenderInputError(
                f"render: backend='gsplat' needs CUDA tensors but the snapshot is on {device}; use backend='cpu' or 'auto'"
            )
        if dtype != torch.float32:
            raise RenderInputError(f"render: backend='gsplat' needs float32 tensors, got {dtype}; use backend='cpu'")
        return "gsplat"
    if backend == "auto" and device.type == "cuda" and dtype == torch.float32:
        return "gsplat"
    return "cpu"
