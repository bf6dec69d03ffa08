"""Camera-trajectory errors against ground truth: ATE and RPE (the SLAM/TUM definitions).

Poses are camera-to-world 4x4 matrices (OpenCV axes). The absolute trajectory error (ATE) is the
RMSE of the camera centres after the rigid (rotation + translation, no scale) least-squares
alignment of the estimate onto the ground truth (Umeyama/Kabsch), since a reconstruction is free
to sit in any rigid frame. The relative pose error (RPE) compares the motion between consecutive
frames, ``inv(P_i) P_{i+1}`` of both trajectories: RMSE of its translation and mean of its
rotation angle (degrees); it needs no alignment.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TrajectoryError:
    ate: float  # RMSE of aligned camera centres (scene units)
    rpe_trans: float  # RMSE of the relative translations (scene units)
    rpe_rot_deg: float  # mean relative rotation error (degrees)

    def as_dict(self) -> dict[str, float]:
        return {"ate": self.ate, "rpe_trans": self.rpe_trans, "rpe_rot_deg": self.rpe_rot_deg}


def _check(poses: np.ndarray, name: str) -> np.ndarray:
    p = np.asarray(poses, dtype=np.float64)
    if p.ndim != 3 or p.shape[1:] != (4, 4):
        raise ValueError(f"{name} must be [N, 4, 4] camera-to-world matrices, got {p.shape}")
    if not np.isfinite(p).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return p


def rigid_alignment(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R [3, 3] and translation t [3] minimising sum |R src_i + t - dst_i|^2 (Kabsch)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    H = (src - mu_s).T @ (dst - mu_d)
    U, _, Vt = np.linalg.svd(H)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(Vt.T @ U.T)) or 1.0])
    R = Vt.T @ D @ U.T
    return R, mu_d - R @ mu_s


def _angle_deg(R: np.ndarray) -> np.ndarray:
    cos = (np.trace(R, axis1=-2, axis2=-1) - 1.0) * 0.5
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def trajectory_error(estimate: np.ndarray, truth: np.ndarray) -> TrajectoryError:
    """ATE and RPE of ``estimate`` against ``truth`` (both [N, 4, 4], N >= 2, same frames)."""
    est, gt = _check(estimate, "estimate"), _check(truth, "truth")
    if est.shape != gt.shape or len(est) < 2:
        raise ValueError(f"need two trajectories of the same length >= 2, got {len(est)} and {len(gt)}")
    ce, cg = est[:, :3, 3], gt[:, :3, 3]
    if len(est) >= 3:
        R, t = rigid_alignment(ce, cg)
        ce = ce @ R.T + t
    ate = float(np.sqrt(((ce - cg) ** 2).sum(-1).mean()))
    rel_e = np.linalg.inv(est[:-1]) @ est[1:]
    rel_g = np.linalg.inv(gt[:-1]) @ gt[1:]
    err = np.linalg.inv(rel_g) @ rel_e
    rpe_t = float(np.sqrt((err[:, :3, 3] ** 2).sum(-1).mean()))
    rpe_r = float(_angle_deg(err[:, :3, :3]).mean())
    return TrajectoryError(ate, rpe_t, rpe_r)
