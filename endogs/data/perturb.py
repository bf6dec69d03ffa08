"""Perturbed camera poses with known ground truth, for testing and benchmarking pose refinement.

Odometry errors drift: they are correlated from frame to frame. :func:`drifting_perturbation`
draws a smooth random drift (a sum of low-frequency sinusoids per axis, seeded) whose per-frame RMS
is ``trans_sigma`` (scene units) in translation and ``rot_deg`` degrees in rotation, applied in each
camera's own frame (``c2w @ dT``), zero-mean over the sequence.
"""

from __future__ import annotations

import numpy as np

from endogs.data.types import Scene
from endogs.utils.geometry import rotvec_to_matrix


def drifting_perturbation(times: np.ndarray, trans_sigma: float, rot_deg: float, seed: int = 0, harmonics: int = 3) -> np.ndarray:
    """[N, 4, 4] camera-frame perturbations ``dT_i`` at ``times`` (in [0, 1])."""
    rng = np.random.default_rng(seed)
    t = np.asarray(times, dtype=np.float64)
    curves = np.zeros((len(t), 6))
    for k in range(1, harmonics + 1):
        amp = rng.normal(size=6) / k
        phase = rng.uniform(0, 2 * np.pi, size=6)
        curves += amp * np.sin(np.pi * k * t[:, None] + phase)
    curves -= curves.mean(0)
    rms = np.sqrt((curves**2).mean(0)).clip(min=1e-12)
    curves /= np.sqrt(3.0) * np.concatenate([rms[:3].mean().repeat(3), rms[3:].mean().repeat(3)])
    curves[:, :3] *= np.radians(rot_deg)
    curves[:, 3:] *= trans_sigma
    out = np.repeat(np.eye(4)[None], len(t), axis=0)
    for i, c in enumerate(curves):
        out[i, :3, :3] = rotvec_to_matrix(c[:3])
        out[i, :3, 3] = c[3:]
    return out


def perturb_scene_poses(scene: Scene, trans_sigma: float, rot_deg: float, seed: int = 0) -> tuple[Scene, np.ndarray]:
    """The scene with every camera pose perturbed by :func:`drifting_perturbation` (in place on its
    frames) and the original poses [N, 4, 4] (the ground truth)."""
    truth = np.stack([f.camera.c2w for f in scene.frames])
    dT = drifting_perturbation(np.array([f.time for f in scene.frames]), trans_sigma, rot_deg, seed)
    for f, c2w, d in zip(scene.frames, truth, dT):
        f.camera = f.camera.with_pose(c2w @ d)
    return scene, truth
