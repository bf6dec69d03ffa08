"""Rendering: gsplat's CUDA rasterizer on GPUs, endogs' own differentiable rasterizer elsewhere.

Public API: :func:`render` and :class:`RenderOutput` (see :mod:`endogs.render.api`).
"""

from .api import RenderInputError, RenderOutput, render

__all__ = ["render", "RenderOutput", "RenderInputError"]
