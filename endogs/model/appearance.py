"""Appearance terms of an endoscope: the head light at the camera and per-frame exposure.

Head light. The only light of an endoscopic scene sits at (next to) the lens, so the radiance a
tissue point sends back falls with its distance ``d`` to the camera and with the angle ``theta``
between its surface normal and the viewing ray. The learnt albedo (the Gaussians' colours) is
shaded as

    rgb = albedo * (d_ref / d) ** falloff * ((1 - lambert) + lambert * |cos theta|)

with two learnable scalars, ``falloff`` (2 for an ideal point light, inverse-square) and
``lambert`` in [0, 1] (0: no angular term; 1: Lambertian), and ``d_ref`` a fixed reference
distance (the median depth of the initial cloud), so that the albedo keeps the brightness of a
point at the typical distance. A Gaussian's normal is the axis of its smallest scale (a flat
Gaussian on the surface). Both scalars start at 0: the term is the identity until training moves
it. It has no per-frame parameter, so it applies unchanged to frames never trained on.

Exposure. Auto-exposure and white balance change a frame's brightness as a whole: an optional
per-frame affine colour ``rgb' = exp(gain) * rgb + bias`` (per channel), zero-initialised,
regularised towards identity, and interpolated linearly in time for frames not trained on.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from endogs.model.pose import time_bracket
from endogs.utils.geometry import quat_to_rotmat


def gaussian_normals(quats: Tensor, scales: Tensor) -> Tensor:
    """Unit normals [N, 3]: the rotation axis of each Gaussian's smallest scale."""
    R = quat_to_rotmat(quats)  # [N, 3, 3]; column j = local axis j
    idx = scales.detach().argmin(dim=-1)
    return R[torch.arange(R.shape[0], device=R.device), :, idx]


class HeadLight(nn.Module):
    """Shading by a light at the camera centre (see the module docstring).

    Args:
        reference_distance: ``d_ref``, in scene units (> 0).
    """

    def __init__(self, reference_distance: float):
        super().__init__()
        if not reference_distance > 0:
            raise ValueError(f"HeadLight needs a positive reference distance, got {reference_distance}")
        self.reference_distance = float(reference_distance)
        self.falloff = nn.Parameter(torch.zeros(()))
        self.lambert_raw = nn.Parameter(torch.zeros(()))

    @property
    def lambert(self) -> Tensor:
        return self.lambert_raw.clamp(0.0, 1.0)

    def shading(self, means: Tensor, quats: Tensor, scales: Tensor, center: Tensor) -> Tensor:
        """Per-Gaussian factor [N] for a light (and camera) at ``center`` [3]."""
        ray = means - center.to(means.dtype)  # [N, 3]
        d = ray.norm(dim=-1).clamp(min=1e-6)
        cos = (gaussian_normals(quats, scales) * ray).sum(-1).abs() / d
        lam = self.lambert.to(means.dtype)
        dist = torch.exp(-self.falloff.to(means.dtype) * torch.log(d / self.reference_distance))
        return dist * ((1.0 - lam) + lam * cos)

    def to_checkpoint(self) -> dict:
        return {"reference_distance": self.reference_distance, "falloff": float(self.falloff.detach()), "lambert_raw": float(self.lambert_raw.detach())}

    @classmethod
    def from_checkpoint(cls, state: dict) -> "HeadLight":
        hl = cls(state["reference_distance"])
        with torch.no_grad():
            hl.falloff.fill_(float(state["falloff"]))
            hl.lambert_raw.fill_(float(state["lambert_raw"]))
        return hl


class Exposure(nn.Module):
    """Per-frame affine colour of the training frames (rows in ``frame_indices`` order)."""

    def __init__(self, frame_indices: Sequence[int], frame_times: Sequence[float]):
        super().__init__()
        if len(frame_indices) != len(frame_times) or not len(frame_indices):
            raise ValueError("Exposure needs one time per training frame and at least one frame")
        self.frame_indices = [int(i) for i in frame_indices]
        self._row = {i: r for r, i in enumerate(self.frame_indices)}
        self.register_buffer("times", torch.as_tensor(list(frame_times), dtype=torch.float64))
        self.params = nn.Parameter(torch.zeros(len(frame_indices), 6))  # log-gain rgb, bias rgb

    def has(self, frame_index: int) -> bool:
        return int(frame_index) in self._row

    def of(self, frame_index: int) -> Tensor:
        return self.params[self._row[int(frame_index)]]

    def for_frame(self, frame_index: int, t: float) -> Tensor:
        """Detached parameters [6] of any frame: its own when trained on, else interpolated in time."""
        if int(frame_index) in self._row:
            return self.of(frame_index).detach().clone()
        a, b, s = time_bracket(self.times.tolist(), t)
        p = self.params.detach()
        return ((1.0 - s) * p[a] + s * p[b]).clone()

    @staticmethod
    def apply(image: Tensor, params: Tensor) -> Tensor:
        """``exp(gain) * image + bias`` for an image [..., 3]."""
        p = params.to(image.dtype)
        return image * torch.exp(p[:3]) + p[3:]

    def regularizer(self, frame_index: Optional[int] = None) -> Tensor:
        """Squared distance from identity of training frame ``frame_index``'s exposure (the mean over
        all frames when None)."""
        if frame_index is None:
            return self.params.square().sum(-1).mean()
        return self.of(frame_index).square().sum()

    def to_checkpoint(self) -> dict:
        return {"frame_indices": list(self.frame_indices), "times": self.times.tolist(), "params": self.params.detach().cpu().clone()}

    @classmethod
    def from_checkpoint(cls, state: dict) -> "Exposure":
        ex = cls(state["frame_indices"], state["times"])
        with torch.no_grad():
            ex.params.copy_(torch.as_tensor(state["params"], dtype=torch.float32))
        return ex
