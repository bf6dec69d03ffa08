"""Reference tools for the renderer: synthetic scenes, simple cameras and a brute-force renderer.

Used by the tests and ``scripts/bench_render.py``; handy for debugging a backend, never for
production rendering (:func:`render_dense_reference` loops over Gaussians in Python).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..camera import Camera
from ..snapshot import Snapshot
from .projection import ALPHA_MAX, ALPHA_THRESHOLD, project_gaussians
from .sh import sh_to_rgb


def pinhole_camera(
    width: int, height: int, c2w: Optional[np.ndarray] = None, f_scale: float = 0.9
) -> Camera:
    """Camera with ``fx = fy = f_scale * width`` and the principal point at the image centre.

    Args:
        width: Image width.
        height: Image height.
        c2w: [4, 4] camera-to-world pose (OpenCV axes); identity when None.
        f_scale: Focal length as a fraction of the width.
    """
    f = f_scale * width
    K = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    return Camera(K, np.eye(4) if c2w is None else np.asarray(c2w, dtype=np.float64), width, height)


def look_at(
    eye: Sequence[float], target: Sequence[float] = (0.0, 0.0, 3.0), down: Sequence[float] = (0.0, 1.0, 0.0)
) -> np.ndarray:
    """[4, 4] OpenCV camera-to-world pose at ``eye`` looking at ``target`` (y axis towards ``down``)."""
    eye_, target_, down_ = (np.asarray(v, dtype=np.float64) for v in (eye, target, down))
    z = target_ - eye_
    z /= np.linalg.norm(z)
    x = np.cross(down_, z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, eye_
    return c2w


def synthetic_scene(
    n: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
    scale: Optional[float] = None,
    xy: Tuple[float, float] = (2.0, 1.6),
    z: Tuple[float, float] = (2.5, 3.5),
    opacity: Tuple[float, float] = (0.3, 0.9),
    sh_degree: Optional[int] = None,
) -> Snapshot:
    """Random Gaussians in a box in front of a camera at the origin looking along +z.

    With the defaults this is the benchmark scene of docs/STACK.md section 3: x in [-2, 2],
    y in [-1.6, 1.6], z in [2.5, 3.5], scales ``2.4 / sqrt(n) * U(0.5, 1.5)`` (about ten layers of
    depth complexity whatever n), random rotations, opacities U(0.3, 0.9), RGB colours in [0, 1].

    Args:
        n: Number of Gaussians.
        seed: Random seed (the scene is drawn in float64, then cast, so dtypes agree).
        dtype: Output dtype.
        device: Output device.
        scale: Base scale instead of ``2.4 / sqrt(n)``.
        xy: Half extents of the box in x and y.
        z: Depth range of the box.
        opacity: Opacity range.
        sh_degree: None for RGB colours, else SH coefficients ``N(0, 0.5)`` of that degree.
    """
    g = torch.Generator().manual_seed(seed)
    f64 = torch.float64

    def rand(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=g, dtype=f64)

    means = torch.stack(
        [(rand(n) * 2 - 1) * xy[0], (rand(n) * 2 - 1) * xy[1], z[0] + (z[1] - z[0]) * rand(n)], dim=-1
    )  # [n, 3]
    s0 = 2.4 / math.sqrt(max(n, 1)) if scale is None else scale
    scales = s0 * (0.5 + rand(n, 3))  # [n, 3]
    quats = F.normalize(torch.randn(n, 4, generator=g, dtype=f64), dim=-1)  # [n, 4]
    opac = opacity[0] + (opacity[1] - opacity[0]) * rand(n)  # [n]
    if sh_degree is None:
        colors = rand(n, 3)  # [n, 3]
    else:
        colors = 0.5 * torch.randn(n, (sh_degree + 1) ** 2, 3, generator=g, dtype=f64)  # [n, K, 3]
    to = dict(dtype=dtype, device=device)
    return Snapshot(
        means.to(**to), quats.to(**to), scales.to(**to), opac.to(**to), colors.to(**to), sh_degree=sh_degree
    )


def render_dense_reference(
    snapshot: Snapshot,
    camera: Camera,
    background: Optional[Tensor] = None,
    near: float = 0.01,
    far: float = 1e10,
    eps2d: float = 0.3,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Brute-force float64 renderer (differentiable by autograd): every pixel x every Gaussian.

    Follows gsplat's compositing rules literally, one Gaussian at a time in depth order:
    ``alpha = min(0.999, o exp(-sigma))``; skip ``sigma < 0`` or ``alpha < 1/255``; a pixel stops
    when ``T (1 - alpha) <= 1e-4`` (exclusive). Projection is :func:`project_gaussians`.

    Returns:
        rgb [H, W, 3], expected depth [H, W, 1] and alpha [H, W, 1], all float64.
    """
    s = snapshot.to(dtype=torch.float64)
    W, H = camera.width, camera.height
    vm = torch.as_tensor(camera.viewmat, dtype=torch.float64, device=s.device)[None]  # [1, 4, 4]
    K = torch.as_tensor(camera.K, dtype=torch.float64, device=s.device)[None]  # [1, 3, 3]
    p = project_gaussians(s.means, s.quats, s.scales, s.opacities, vm, K, W, H, eps2d, near, far)
    if s.sh_degree is None:
        colors = s.colors  # [N, 3]
    else:
        campos = torch.as_tensor(camera.c2w[:3, 3], dtype=torch.float64, device=s.device)  # [3]
        colors = sh_to_rgb(s.sh_degree, s.means - campos, s.colors)  # [N, 3]
    d0 = p.depths[0].detach()  # [N]
    order = sorted((p.radii[0] > 0).all(-1).nonzero().squeeze(1).tolist(), key=lambda i: float(d0[i]))
    ys, xs = torch.meshgrid(
        torch.arange(H, dtype=torch.float64, device=s.device),
        torch.arange(W, dtype=torch.float64, device=s.device),
        indexing="ij",
    )  # [H, W]
    px, py = xs + 0.5, ys + 0.5  # [H, W]
    T = torch.ones(H, W, dtype=torch.float64, device=s.device)  # [H, W]
    done = torch.zeros(H, W, dtype=torch.bool, device=s.device)  # [H, W]
    rgb = torch.zeros(H, W, 3, dtype=torch.float64, device=s.device)  # [H, W, 3]
    dep = torch.zeros(H, W, dtype=torch.float64, device=s.device)  # [H, W]
    for i in order:
        dx, dy = p.means2d[0, i, 0] - px, p.means2d[0, i, 1] - py  # [H, W]
        a, b, c = p.conics[0, i]
        sigma = 0.5 * (a * dx * dx + c * dy * dy) + b * dx * dy  # [H, W]
        alpha = torch.clamp(s.opacities[i] * torch.exp(-sigma), max=ALPHA_MAX)  # [H, W]
        use = (sigma >= 0) & (alpha >= ALPHA_THRESHOLD) & ~done  # [H, W]
        next_T = T * (1 - alpha)  # [H, W]
        stop = use & (next_T <= 1e-4)  # [H, W]
        done = done | stop
        use = use & ~stop
        wgt = torch.where(use, alpha * T, torch.zeros_like(T))  # [H, W]
        rgb = rgb + wgt[..., None] * colors[i]
        dep = dep + wgt * p.depths[0, i]
        T = torch.where(use, next_T, T)
    acc = 1 - T  # [H, W]
    if background is not None:
        rgb = rgb + T[..., None] * torch.as_tensor(background, dtype=torch.float64, device=s.device)
    depth = dep / acc.clamp(min=1e-10)  # [H, W]
    return rgb, depth[..., None], acc[..., None]
