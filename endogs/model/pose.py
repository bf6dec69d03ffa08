"""Per-frame camera-pose corrections refined during training.

A correction is a small rigid motion ``dT`` of the camera in its own frame: the refined
camera-to-world pose of frame ``i`` is ``c2w_i @ dT_i``. Each correction has six parameters
``(omega, rho)``: ``omega`` a rotation vector (radians) and ``rho`` a translation in units of the
scene scale (so one learning rate suits scenes in mm and in metres). All start at zero, i.e. the
input poses.

Rendering with the refined camera is the same as rendering the Gaussians moved by
``G = c2w @ dT^-1 @ c2w^-1`` from the input camera: :func:`move_gaussians` applies ``G`` to the
means and rotations, so the gradients of any rasterizer (ours on the CPU, gsplat on CUDA) reach
the corrections without the rasterizer knowing about them. View-dependent colour must be
evaluated from the refined camera centre before that move (see :func:`refined_center`).

Frames that were not trained on (the test frames) get the correction interpolated in time between
the two nearest training frames (rotation along the geodesic, translation linearly):
:meth:`PoseCorrections.interpolated`. Their images never touch the corrections.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import torch
from torch import Tensor, nn

_EPS = 1e-8


def _skew(v: Tensor) -> Tensor:
    """[..., 3] -> [..., 3, 3] cross-product matrices."""
    z = torch.zeros_like(v[..., 0])
    x, y, w = v[..., 0], v[..., 1], v[..., 2]
    return torch.stack([z, -w, y, w, z, -x, -y, x, z], dim=-1).reshape(*v.shape[:-1], 3, 3)


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrices [..., 3, 3] of rotation vectors [..., 3] (Rodrigues, exact at 0 with
    finite gradients: the series terms are used below 1e-4 rad)."""
    theta2 = (omega * omega).sum(-1, keepdim=True)[..., None]  # [..., 1, 1]
    small = theta2 < 1e-8
    theta2_safe = torch.where(small, torch.ones_like(theta2), theta2)
    theta = theta2_safe.sqrt()
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / theta2_safe)
    K = _skew(omega)
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device).expand_as(K)
    return eye + a * K + b * (K @ K)


def so3_log(R: Tensor) -> Tensor:
    """Rotation vectors [..., 3] of rotation matrices [..., 3, 3] (angles below pi)."""
    cos = ((R[..., 0, 0] + R[..., 1, 1] + R[..., 2, 2] - 1.0) * 0.5).clamp(-1.0 + 1e-7, 1.0 - 1e-7)
    theta = torch.acos(cos)
    v = torch.stack([R[..., 2, 1] - R[..., 1, 2], R[..., 0, 2] - R[..., 2, 0], R[..., 1, 0] - R[..., 0, 1]], dim=-1)
    sin = torch.sin(theta)
    scale = torch.where(theta < 1e-4, 0.5 + theta * theta / 12.0, theta / (2.0 * sin.clamp(min=_EPS)))
    return v * scale[..., None]


def quat_of_rotvec(omega: Tensor) -> Tensor:
    """Unit quaternions (w, x, y, z) [..., 4] of rotation vectors [..., 3]."""
    theta2 = (omega * omega).sum(-1, keepdim=True)
    small = theta2 < 1e-8
    theta = torch.where(small, torch.ones_like(theta2), theta2).sqrt()
    half_sinc = torch.where(small, 0.5 - theta2 / 48.0, torch.sin(0.5 * theta) / theta)
    w = torch.where(small, 1.0 - theta2 / 8.0, torch.cos(0.5 * theta))
    return torch.cat([w, omega * half_sinc], dim=-1)


def quat_of_matrix(R: np.ndarray) -> np.ndarray:
    """Unit quaternion (w, x, y, z) of a 3x3 rotation matrix (numpy, float64)."""
    R = np.asarray(R, dtype=np.float64)
    m = R
    tr = m[0, 0] + m[1, 1] + m[2, 2]
    if tr > 0:
        s = 2.0 * np.sqrt(tr + 1.0)
        q = [0.25 * s, (m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s]
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [(m[2, 1] - m[1, 2]) / s, 0.25 * s, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s]
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s, 0.25 * s, (m[1, 2] + m[2, 1]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    return q / np.linalg.norm(q)


def quat_mul(a: Tensor, b: Tensor) -> Tensor:
    """Hamilton product of quaternions (w, x, y, z), broadcasting."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack(
        [
            aw * bw - ax * bx - ay * by - az * bz,
            aw * bx + ax * bw + ay * bz - az * by,
            aw * by - ax * bz + ay * bw + az * bx,
            aw * bz + ax * by - ay * bx + az * bw,
        ],
        dim=-1,
    )


def correction_matrix(delta: Tensor, scene_scale: float) -> Tensor:
    """4x4 camera-frame corrections [..., 4, 4] of parameters [..., 6] = (omega, rho)."""
    R = so3_exp(delta[..., :3])
    t = delta[..., 3:] * scene_scale
    top = torch.cat([R, t[..., None]], dim=-1)
    bottom = torch.zeros_like(top[..., :1, :])
    bottom[..., 0, 3] = 1.0
    return torch.cat([top, bottom], dim=-2)


def refined_c2w(c2w: np.ndarray, delta: Tensor, scene_scale: float) -> np.ndarray:
    """The refined camera-to-world pose ``c2w @ dT`` as a float64 numpy array (no gradient)."""
    dT = correction_matrix(delta.detach().double().cpu(), scene_scale).numpy()
    return np.asarray(c2w, dtype=np.float64) @ dT


def refined_center(c2w: np.ndarray, delta: Tensor, scene_scale: float) -> Tensor:
    """World position [3] of the refined camera centre, differentiable in ``delta``."""
    C = torch.as_tensor(c2w, dtype=delta.dtype, device=delta.device)
    t = delta[3:] * scene_scale
    return C[:3, :3] @ t + C[:3, 3]


def move_gaussians(means: Tensor, quats: Tensor, c2w: np.ndarray, delta: Tensor, scene_scale: float) -> tuple[Tensor, Tensor]:
    """Means and quaternions moved by ``G = c2w dT^-1 c2w^-1``: seen from the input camera
    ``c2w`` they look as the unmoved Gaussians look from the refined camera ``c2w @ dT``."""
    dtype, device = means.dtype, means.device
    C = torch.as_tensor(c2w, dtype=dtype, device=device)
    Rc, tc = C[:3, :3], C[:3, 3]
    d = delta.to(dtype)
    Rd = so3_exp(d[:3])
    td = d[3:] * scene_scale
    # G(x) = Rc Rd^T (Rc^T (x - tc) - td) + tc
    RG = Rc @ Rd.t() @ Rc.t()
    tG = tc - Rc @ (Rd.t() @ (Rc.t() @ tc + td))
    new_means = means @ RG.t() + tG
    qc = torch.as_tensor(quat_of_matrix(np.asarray(c2w)[:3, :3]), dtype=dtype, device=device)
    qc_inv = qc * torch.tensor([1.0, -1.0, -1.0, -1.0], dtype=dtype, device=device)
    qd_inv = quat_of_rotvec(-d[:3])
    qG = quat_mul(quat_mul(qc, qd_inv), qc_inv)
    return new_means, quat_mul(qG[None, :], quats)


def time_bracket(times: Sequence[float], t: float) -> tuple[int, int, float]:
    """Rows ``(a, b)`` of the two times around ``t`` and the weight ``s`` of ``b`` (``t`` outside the
    range: the nearest row twice, weight 0)."""
    order = sorted(range(len(times)), key=lambda r: times[r])
    if t <= times[order[0]]:
        return order[0], order[0], 0.0
    if t >= times[order[-1]]:
        return order[-1], order[-1], 0.0
    for a, b in zip(order[:-1], order[1:]):
        if times[a] <= t <= times[b]:
            return a, b, (0.0 if times[b] <= times[a] else (t - times[a]) / (times[b] - times[a]))
    raise AssertionError("unreachable: t lies inside the range of times")


class PoseCorrections(nn.Module):
    """Zero-initialised SE(3) corrections of the training cameras, one row per training frame.

    Args:
        frame_indices: Dataset indices of the training frames, in row order.
        frame_times: Their times in [0, 1].
        scene_scale: Length unit of the translations (the point cloud's scale).
    """

    def __init__(self, frame_indices: Sequence[int], frame_times: Sequence[float], scene_scale: float):
        super().__init__()
        if len(frame_indices) != len(frame_times) or not len(frame_indices):
            raise ValueError("PoseCorrections needs one time per training frame and at least one frame")
        self.scene_scale = float(scene_scale)
        self.frame_indices = [int(i) for i in frame_indices]
        self._row = {i: r for r, i in enumerate(self.frame_indices)}
        self.register_buffer("times", torch.as_tensor(list(frame_times), dtype=torch.float64))
        self.delta = nn.Parameter(torch.zeros(len(frame_indices), 6))

    def has(self, frame_index: int) -> bool:
        return int(frame_index) in self._row

    def of(self, frame_index: int) -> Tensor:
        """The parameters [6] of a training frame (differentiable)."""
        return self.delta[self._row[int(frame_index)]]

    def interpolated(self, t: float) -> Tensor:
        """Parameters [6] at time ``t`` for a frame not trained on: the geodesic interpolation of
        the corrections of the two training frames around ``t`` (the nearest one outside their range)."""
        a, b, s = time_bracket(self.times.tolist(), t)
        d = self.delta.detach()
        if a == b:
            return d[a].clone()
        Ra, Rb = so3_exp(d[a, :3].double()), so3_exp(d[b, :3].double())
        omega = so3_log(Ra @ so3_exp(s * so3_log(Ra.t() @ Rb)))
        rho = (1.0 - s) * d[a, 3:].double() + s * d[b, 3:].double()
        return torch.cat([omega, rho]).to(d.dtype)

    def for_frame(self, frame_index: int, t: float) -> Tensor:
        """The (detached) correction of any frame: its own when trained on, else interpolated."""
        return self.of(frame_index).detach().clone() if self.has(frame_index) else self.interpolated(t)

    def regularizer(self, frame_index: Optional[int] = None) -> Tensor:
        """Squared size of the correction of training frame ``frame_index`` (radians and scene-scale
        units), or the mean over all frames when None: pulls them towards the input poses. Training
        regularises the frame of the step only, so a frame's correction changes only at its own steps
        (see :class:`endogs.train.optim.ImagingOptimizer`)."""
        if frame_index is None:
            return self.delta.square().sum(-1).mean()
        return self.of(frame_index).square().sum()

    def to_checkpoint(self) -> dict:
        return {"frame_indices": list(self.frame_indices), "times": self.times.tolist(), "scene_scale": self.scene_scale,
                "delta": self.delta.detach().cpu().clone()}

    @classmethod
    def from_checkpoint(cls, state: dict, device: torch.device | str = "cpu") -> "PoseCorrections":
        pc = cls(state["frame_indices"], state["times"], state["scene_scale"])
        with torch.no_grad():
            pc.delta.copy_(torch.as_tensor(state["delta"], dtype=torch.float32))
        return pc.to(device)
