"""Render a scene as the endoscope saw it: the one path from a trained scene to an image that
training, evaluation, export and the viewer share.

On top of ``scene.at(t)`` and :func:`endogs.render.render` it applies the scene's imaging terms
(:mod:`endogs.model.imaging`):

* the refined pose of a dataset frame (its own correction when trained on, interpolated in time
  otherwise), by moving the Gaussians (:func:`endogs.model.pose.move_gaussians`) so that gradients
  reach the correction on every rasterizer;
* the head light at the (refined) camera centre: view-dependent colour is evaluated there and
  shaded, then handed to the rasterizer as plain RGB;
* the frame's exposure, on the rendered image.

Without imaging terms it is exactly ``render(scene.at(t), camera)``.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch

from endogs.camera import Camera
from endogs.model.appearance import Exposure
from endogs.model.pose import move_gaussians, refined_c2w, refined_center
from endogs.render import RenderOutput, render
from endogs.render.sh import sh_to_rgb
from endogs.snapshot import Snapshot


def frame_pose(scene: Any, frame_index: Optional[int], t: float, c2w: np.ndarray) -> np.ndarray:
    """The refined camera-to-world pose of dataset frame ``frame_index`` (input pose when the scene
    refines none, or when ``frame_index`` is None)."""
    poses = getattr(getattr(scene, "imaging", None), "poses", None)
    if poses is None or frame_index is None:
        return np.asarray(c2w, dtype=np.float64)
    return refined_c2w(c2w, poses.for_frame(frame_index, t), poses.scene_scale)


def lit_snapshot(snap: Snapshot, center: torch.Tensor, light: Any) -> Snapshot:
    """``snap`` with plain RGB colours seen from ``center`` [3] and shaded by the head light there."""
    colors = snap.colors
    if snap.sh_degree is not None:
        colors = sh_to_rgb(snap.sh_degree, snap.means - center, colors)
    colors = colors * light.shading(snap.means, snap.quats, snap.scales, center)[:, None]
    return snap.with_(colors=colors, sh_degree=None)


def render_frame(scene: Any, t: float, camera: Camera, *, frame_index: Optional[int] = None, train: bool = False,
                 sh_degree: Optional[int] = None, deform: bool = True, optimize_poses: bool = True,
                 **render_kw: Any) -> RenderOutput:
    """Render ``scene`` at time ``t`` from ``camera`` (the input pose of frame ``frame_index``, or
    any camera when None).

    Args:
        train: the frame is a training frame being optimised: its own pose correction and exposure
            are used with gradients (``optimize_poses`` False detaches the pose).
        render_kw: passed to :func:`endogs.render.render` (background, absgrad, ...).
    """
    snap = scene.at(t, sh_degree=sh_degree, deform=deform)
    imaging = getattr(scene, "imaging", None)
    if imaging is None or not imaging.active:
        return render(snap, camera, **render_kw)
    poses, light, expo = imaging.poses, imaging.head_light, imaging.exposure
    delta = None
    if poses is not None and frame_index is not None:
        if train and poses.has(frame_index):
            delta = poses.of(frame_index) if optimize_poses else poses.of(frame_index).detach()
        else:
            delta = poses.for_frame(frame_index, t)
        delta = delta.to(snap.means.dtype)
    if delta is not None:
        center = refined_center(camera.c2w, delta, poses.scene_scale)
    else:
        center = torch.as_tensor(camera.c2w[:3, 3], dtype=snap.means.dtype, device=snap.device)
    if light is not None:
        snap = lit_snapshot(snap, center, light)
    elif delta is not None and snap.sh_degree is not None:  # view-dependent colour from the refined centre
        snap = snap.with_(colors=sh_to_rgb(snap.sh_degree, snap.means - center, snap.colors), sh_degree=None)
    if delta is not None:
        means, quats = move_gaussians(snap.means, snap.quats, camera.c2w, delta, poses.scene_scale)
        snap = snap.with_(means=means, quats=quats)
    out = render(snap, camera, **render_kw)
    if expo is not None and frame_index is not None:
        params = expo.of(frame_index) if (train and frame_index in expo.frame_indices) else expo.for_frame(frame_index, t)
        rgb = Exposure.apply(out.rgb, params)
        out = RenderOutput(rgb=rgb, depth=out.depth, alpha=out.alpha, info=out.info, backend=out.backend)
    return out
