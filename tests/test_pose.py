"""Camera-pose corrections: SE(3) maths, the Gaussian move that stands in for a camera move,
gradients on the CPU rasterizer, interpolation for frames not trained on."""

import math

import numpy as np
import pytest
import torch

from endogs.camera import Camera
from endogs.model.pose import (
    PoseCorrections,
    correction_matrix,
    move_gaussians,
    quat_of_matrix,
    quat_of_rotvec,
    refined_c2w,
    so3_exp,
    so3_log,
)
from endogs.render import render
from endogs.snapshot import Snapshot


def _rot(axis, angle):
    a = torch.tensor(axis, dtype=torch.float64)
    return so3_exp(a / a.norm() * angle)


def test_so3_exp_log_round_trip_and_orthonormal():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(50, 3, generator=g, dtype=torch.float64) * 0.8
    R = so3_exp(w)
    eye = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    assert torch.allclose(R @ R.transpose(-1, -2), eye, atol=1e-12)
    assert torch.allclose(torch.linalg.det(R), torch.ones(50, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(so3_log(R), w, atol=1e-9)
    # exact identity and finite gradients at zero
    z = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    assert torch.equal(so3_exp(z), torch.eye(3, dtype=torch.float64))
    so3_exp(z).sum().backward()
    assert torch.isfinite(z.grad).all()


def test_quaternions_agree_with_matrices():
    w = torch.tensor([0.3, -0.2, 0.5], dtype=torch.float64)
    q = quat_of_rotvec(w).numpy()
    q2 = quat_of_matrix(so3_exp(w).numpy())
    assert np.allclose(q, q2 * np.sign(q2[0] * q[0]), atol=1e-12)


def _scene(n=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    means = torch.rand(n, 3, generator=g, dtype=torch.float64) * torch.tensor([2.0, 1.6, 1.0], dtype=torch.float64) - torch.tensor([1.0, 0.8, -2.5], dtype=torch.float64)
    quats = torch.randn(n, 4, generator=g, dtype=torch.float64)
    scales = torch.rand(n, 3, generator=g, dtype=torch.float64) * 0.08 + 0.03
    opac = torch.rand(n, generator=g, dtype=torch.float64) * 0.6 + 0.3
    cols = torch.rand(n, 3, generator=g, dtype=torch.float64)
    return Snapshot(means, quats, scales, opac, cols)


def _camera(c2w=None):
    K = np.array([[60.0, 0, 32.0], [0, 60.0, 24.0], [0, 0, 1]])
    if c2w is None:
        c2w = np.eye(4)
        c2w[:3, :3] = _rot([0.2, 1.0, 0.1], 0.15).numpy()
        c2w[:3, 3] = [0.05, -0.1, 0.2]
    return Camera(K, c2w, 64, 48)


def test_moving_gaussians_equals_moving_the_camera():
    snap, cam = _scene(), _camera()
    delta = torch.tensor([0.02, -0.03, 0.01, 0.05, 0.02, -0.04], dtype=torch.float64)
    ref = render(snap, cam.with_pose(refined_c2w(cam.c2w, delta, 0.5)))
    m, q = move_gaussians(snap.means, snap.quats, cam.c2w, delta, 0.5)
    moved = render(snap.with_(means=m, quats=q), cam)
    assert ref.rgb.abs().max() > 0.1  # something is drawn
    assert torch.allclose(moved.rgb, ref.rgb, atol=1e-9)
    assert torch.allclose(moved.depth * moved.alpha, ref.depth * ref.alpha, atol=1e-8)
    # and a zero correction moves nothing
    m0, q0 = move_gaussians(snap.means, snap.quats, cam.c2w, torch.zeros(6, dtype=torch.float64), 0.5)
    assert torch.allclose(m0, snap.means, atol=1e-14)
    assert torch.allclose(q0, snap.quats, atol=1e-14)


def test_corrections_start_at_identity_and_get_gradients_on_cpu():
    pc = PoseCorrections([0, 2, 3], [0.0, 0.5, 1.0], scene_scale=0.5)
    assert torch.count_nonzero(pc.delta) == 0
    assert torch.equal(correction_matrix(pc.of(2), 0.5), torch.eye(4))
    snap = _scene().to(dtype=torch.float32)
    cam = _camera()
    target = render(snap, cam.with_pose(refined_c2w(cam.c2w, torch.tensor([0.0, 0.02, 0.0, 0.03, 0.0, 0.0]), 0.5))).rgb.detach()
    m, q = move_gaussians(snap.means, snap.quats, cam.c2w, pc.of(2), 0.5)
    out = render(snap.with_(means=m, quats=q), cam).rgb
    (out - target).abs().mean().backward()
    g = pc.delta.grad
    assert g is not None and torch.isfinite(g).all()
    assert g[1].abs().sum() > 0  # the rendered frame's row
    assert g[0].abs().sum() == 0 and g[2].abs().sum() == 0  # the others untouched


def test_refinement_recovers_a_small_camera_offset():
    snap = _scene(n=200, seed=1).to(dtype=torch.float32)
    cam = _camera()
    true = torch.tensor([0.0, 0.015, -0.01, 0.02, -0.015, 0.0])
    target = render(snap, cam.with_pose(refined_c2w(cam.c2w, true, 1.0))).rgb.detach()
    pc = PoseCorrections([0], [0.0], scene_scale=1.0)
    opt = torch.optim.Adam(pc.parameters(), lr=2e-3)
    for _ in range(150):
        m, q = move_gaussians(snap.means, snap.quats, cam.c2w, pc.of(0), 1.0)
        loss = (render(snap.with_(means=m, quats=q), cam).rgb - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    err = (pc.delta.detach()[0] - true).norm()
    assert err < 0.25 * true.norm(), (pc.delta.detach()[0], true)


def test_interpolation_of_frames_not_trained_on():
    pc = PoseCorrections([0, 2], [0.0, 1.0], scene_scale=1.0)
    with torch.no_grad():
        pc.delta[0] = torch.tensor([0.0, 0.0, 0.1, 1.0, 0.0, 0.0])
        pc.delta[1] = torch.tensor([0.0, 0.0, 0.3, 3.0, 2.0, 0.0])
    mid = pc.interpolated(0.5)
    assert torch.allclose(mid, torch.tensor([0.0, 0.0, 0.2, 2.0, 1.0, 0.0]), atol=1e-6)
    assert torch.allclose(pc.interpolated(-1.0), pc.delta[0].detach())
    assert torch.allclose(pc.interpolated(2.0), pc.delta[1].detach())
    assert torch.allclose(pc.for_frame(2, 1.0), pc.delta[1].detach())
    assert torch.allclose(pc.for_frame(1, 0.25), pc.interpolated(0.25))
    # geodesic, not linear, on a general rotation pair
    with torch.no_grad():
        pc.delta[0, :3] = torch.tensor([0.4, 0.0, 0.0])
        pc.delta[1, :3] = torch.tensor([0.0, 0.4, 0.0])
    R = so3_exp(pc.interpolated(0.5)[:3].double())
    Ra, Rb = so3_exp(torch.tensor([0.4, 0.0, 0.0], dtype=torch.float64)), so3_exp(torch.tensor([0.0, 0.4, 0.0], dtype=torch.float64))
    ang = lambda A, B: float(so3_log(A.t() @ B).norm())
    assert math.isclose(ang(Ra, R), ang(R, Rb), rel_tol=1e-5)


def test_checkpoint_round_trip():
    pc = PoseCorrections([1, 4], [0.1, 0.7], scene_scale=2.0)
    with torch.no_grad():
        pc.delta.normal_()
    back = PoseCorrections.from_checkpoint(pc.to_checkpoint())
    assert torch.equal(back.delta, pc.delta)
    assert back.frame_indices == [1, 4] and back.scene_scale == 2.0
