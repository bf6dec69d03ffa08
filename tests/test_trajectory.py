import numpy as np
import pytest

from endogs.eval.trajectory import trajectory_error


def _traj(n=10, seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        a = 0.05 * i
        R = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
        P = np.eye(4)
        P[:3, :3] = R
        P[:3, 3] = [i * 1.0, 0.3 * np.sin(i), rng.normal() * 0.1]
        out.append(P)
    return np.stack(out)


def test_identical_and_rigidly_moved_trajectories_have_no_error():
    gt = _traj()
    e = trajectory_error(gt, gt)
    assert e.ate < 1e-9 and e.rpe_trans < 1e-9 and e.rpe_rot_deg < 1e-5
    M = np.eye(4)
    M[:3, :3] = np.array([[0, -1, 0], [1, 0, 0], [0, 0, 1]])
    M[:3, 3] = [5.0, -2.0, 1.0]
    moved = M @ gt  # the whole trajectory in another rigid frame
    e = trajectory_error(moved, gt)
    assert e.ate < 1e-9 and e.rpe_trans < 1e-9 and e.rpe_rot_deg < 1e-5


def test_known_errors():
    gt = _traj()
    est = gt.copy()
    est[:, :3, 3] += np.where(np.arange(10) % 2 == 0, 0.1, -0.1)[:, None] * np.array([0.0, 0.0, 1.0])
    e = trajectory_error(est, gt)
    assert 0.09 < e.ate <= 0.1 + 1e-9  # alternating offsets survive the alignment (which may only lower them)
    assert e.rpe_rot_deg < 1e-6 and e.rpe_trans == pytest.approx(0.2, rel=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="same length"):
        trajectory_error(_traj(5), _traj(6))
    bad = _traj(3)
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        trajectory_error(bad, _traj(3))
