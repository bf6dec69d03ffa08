"""Camera refinement against a known drift: a synthetic moving endoscope over rigid tissue seen
obliquely (depth varies ~1.6x across the view, as in SCARED), its exact poses perturbed by a smooth
drift of 1 mm and 1 degree RMS per frame (endogs.data.perturb). Refinement must cut the pose error of
the training cameras (ATE and both RPEs against the exact poses) by at least half for each of two drift
draws, and raise the held-out PSNR averaged over the two (test frames at their input pose plus the
interpolated corrections; their images never reach the optimizer). One draw alone is not a stable
measure of the PSNR at this size: with the default time smoothness of 3e-3, draw 0 gives 28.12 dB refined
against 28.37 frozen and draw 1 29.94 against 28.33 (docs/BENCHMARKS.md). The same benchmark, with the
figures on deforming and on nearly fronto-parallel tissue, is ``scripts/bench_pose.py``."""

from __future__ import annotations

import pytest

from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene
from scripts import bench_pose

# refinement at a constant rate of 2e-3 with no pull towards the (drifted) input poses; the defaults
# (5e-4 decaying to 1 %, pull 0.1) are set for real video, where the odometry is better than this drift
REFINE = {"imaging": {"pose_lr": 0.002, "rows_lr_final": 1.0}, "loss": {"pose_reg": 0.0}}
DRAWS = (0, 1)  # drift seeds


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    root = tmp_path_factory.mktemp("drift")
    cfg = SyntheticConfig(width=96, height=80, n_frames=16, camera="moving", seed=0, deformation=0.0, tilt=0.5)
    scene = write_synthetic_scene(root / "scene", config=cfg, overwrite=True)
    return [
        [bench_pose.run_case(scene, root / f"run_{draw}_{int(refine)}", refine, 800, 1.0, 1.0, draw, REFINE) for refine in (False, True)]
        for draw in DRAWS
    ]


def test_the_drift_is_the_one_asked_for_and_frozen_poses_keep_it(cases):
    for frozen, _ in cases:
        inp = frozen["input_pose_error"]
        assert 0.9 < inp["ate"] < 1.1 and inp["rpe_trans"] > 0.3 and inp["rpe_rot_deg"] > 0.3  # mm, mm, degrees
        assert frozen["pose_error"] == pytest.approx(inp)


def test_refinement_halves_ate_and_rpe_and_raises_held_out_psnr(cases):
    for frozen, refined in cases:
        inp, err = refined["input_pose_error"], refined["pose_error"]
        for key in ("ate", "rpe_trans", "rpe_rot_deg"):
            assert err[key] <= 0.5 * inp[key], (key, err, inp)
    gain = sum(r["test_psnr"] - f["test_psnr"] for f, r in cases) / len(cases)
    assert gain > 0.3, [(f["test_psnr"], r["test_psnr"]) for f, r in cases]
