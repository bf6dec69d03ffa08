"""``endogs prepare`` end to end on a synthetic stereo video with exact ground truth (and on real SCARED
frames when ../shared/data/scared_640 is present)."""

from __future__ import annotations

import os

# open3d's OpenMP runtime busy-waits by default, which makes odometry 5-10x slower on shared cores;
# set before any test of the session loads it (endogs.video.poses.import_open3d does the same).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json

import numpy as np
import pytest

from endogs.data import load_scene
from endogs.data.calib import StereoCalibration
from endogs.data.synthetic import SyntheticConfig, generate
from endogs.video import PrepareOptions, prepare_scene
from endogs.video.poses import rotation_deg, warp_psnr
from endogs.video.rectify import stereo_rectifier
from endogs.video.synthetic_stereo import rectified_ground_truth, write_stereo_video

W, H, N = 256, 208, 8


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    """A moving endoscope over gently deforming tissue, as a SCARED-like top-bottom mp4 + calibration."""
    scene = generate(SyntheticConfig(width=W, height=H, n_frames=N, camera="moving", deformation=0.3, seed=3))
    video = write_stereo_video(scene, tmp_path_factory.mktemp("video") / "rec", layout="top-bottom")
    return scene, video


@pytest.fixture(scope="module")
def prepared(synth, tmp_path_factory):
    scene, video = synth
    out = tmp_path_factory.mktemp("prep") / "scene"
    logs = []
    res = prepare_scene(video.inputs[0], out, PrepareOptions(masks="auto"), log=logs.append)
    gt_view, gt_rel = rectified_ground_truth(scene, res.meta)
    return res, gt_view, gt_rel, logs


def test_prepared_scene_loads_with_exact_rectified_intrinsics(synth, prepared):
    scene, video = synth
    res, _, _, _ = prepared
    s = load_scene(res.root)
    assert s.format == "endonerf" and len(s) == N and (s.width, s.height) == (W, H)
    assert s.depth_unit == "mm"
    # intrinsics = P1 of an independent cv2.stereoRectify of the true rig (+0.5 px centre convention)
    rig = video.rig
    ref = stereo_rectifier(StereoCalibration(rig.K1, rig.D1, rig.K2, rig.D2, rig.R, rig.T), (W, H))
    K = s.frames[0].camera.K
    np.testing.assert_allclose(K[:2, :2], ref.K[:2, :2], rtol=1e-9)
    np.testing.assert_allclose(K[:2, 2], ref.K[:2, 2] + 0.5, atol=1e-9)
    pb = np.load(res.root / "poses_bounds.npy")
    assert pb.shape == (N, 17)
    np.testing.assert_allclose(pb[0, :15].reshape(3, 5)[:, 4], [H, W, K[0, 0]])
    np.testing.assert_allclose(s.frames[0].camera.c2w, np.eye(4), atol=1e-9)
    assert (res.root / "preview.png").is_file()
    assert s.frames[0].mask.dtype == bool and s.frames[0].mask.mean() > 0.8  # True = tissue
    meta = json.loads((res.root / "endogs_scene.json").read_text())
    assert meta["source_frames"] == list(range(N)) and meta["depth_png_scale"] == 256.0
    assert not [p for p in res.root.parent.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_stereo_depth_matches_ground_truth(prepared):
    res, gt_view, _, _ = prepared
    s = load_scene(res.root)
    errs, fracs = [], []
    for i, f in enumerate(s.frames):
        d, g = f.depth, gt_view.visible_depth[i]
        m = d > 0
        fracs.append(m.mean())
        errs.append(np.median(np.abs(d[m] - g[m]) / g[m]))
    assert min(fracs) > 0.75, fracs
    assert max(errs) < 0.02, errs  # measured ~0.010 (1/16 px SGBM steps, ~20 px disparities)


def test_odometry_poses_match_ground_truth(prepared):
    res, _, gt, _ = prepared
    est = np.stack([f.camera.c2w for f in load_scene(res.root).frames])
    assert res.pose_report.method == "odometry" and not res.pose_report.failures
    ate = np.linalg.norm(est[:, :3, 3] - gt[:, :3, 3], axis=1)
    rpe_t, rpe_r, step_t = [], [], []
    for i in range(N - 1):
        g = np.linalg.inv(gt[i]) @ gt[i + 1]
        e = np.linalg.inv(g) @ (np.linalg.inv(est[i]) @ est[i + 1])
        rpe_t.append(np.linalg.norm(e[:3, 3]))
        rpe_r.append(rotation_deg(e))
        step_t.append(np.linalg.norm(g[:3, 3]))
    path = float(np.sum(step_t))
    # identity poses would give RPE = the true steps (~0.9 mm) and ATE up to the whole path (~6 mm)
    assert np.mean(rpe_t) < 0.5 * np.mean(step_t), (rpe_t, step_t)
    assert max(rpe_t) < 0.8 and max(rpe_r) < 0.8, (rpe_t, rpe_r)  # measured max 0.64 mm, 0.61 deg
    assert ate.max() < 0.3 * path, (ate, path)


def test_auto_masks_find_the_tool(prepared):
    res, gt_view, _, _ = prepared
    s = load_scene(res.root)
    for i, f in enumerate(s.frames):
        tool, gt = ~f.mask, gt_view.tool_masks[i]
        assert (tool & gt).sum() / (tool | gt).sum() > 0.7


def test_pose_files_scared_json_and_csv(synth, tmp_path):
    scene, video = synth
    gt_dir = video.root / "gt"
    for src in (gt_dir / "frame_data", gt_dir / "poses.csv"):
        res = prepare_scene(video.inputs[0], tmp_path / src.stem, PrepareOptions(start=2, end=6, poses=str(src)))
        _, rel = rectified_ground_truth(scene, res.meta)
        est = np.stack([f.camera.c2w for f in load_scene(res.root).frames])
        np.testing.assert_allclose(est, rel, atol=1e-6)
        assert res.meta["source_frames"] == [2, 3, 4, 5]


def test_other_layouts_and_user_masks(tmp_path):
    scene = generate(SyntheticConfig(width=160, height=128, n_frames=3, camera="moving", seed=1))
    metas = {}
    for layout in ("side-by-side", "two-videos", "folders"):
        v = write_stereo_video(scene, tmp_path / layout, layout=layout)
        right = v.inputs[1] if len(v.inputs) > 1 else None
        opts = PrepareOptions(right=right, calib=v.calibration, poses="identity",
                              masks=str(v.root / "gt" / "tool_masks"), mask_polarity="tool")
        res = prepare_scene(v.inputs[0], tmp_path / f"{layout}_scene", opts)
        s = load_scene(res.root)
        gt_view, _ = rectified_ground_truth(scene, res.meta)
        for i, f in enumerate(s.frames):
            tool, gt = ~f.mask, gt_view.tool_masks[i]
            assert (tool & gt).sum() / (tool | gt).sum() > 0.85
            d, g = f.depth, gt_view.visible_depth[i]
            assert np.median(np.abs(d[d > 0] - g[d > 0]) / g[d > 0]) < 0.03
        metas[layout] = res.meta
    assert metas["folders"]["source"]["layout"] == "two"
    assert metas["side-by-side"]["fx"] == pytest.approx(metas["folders"]["fx"])
    # the same masks declared with the wrong polarity are caught
    with pytest.raises(Exception, match="look inverted: pass --mask-polarity tool"):
        prepare_scene(tmp_path / "folders", tmp_path / "bad", PrepareOptions(
            poses="identity", masks=str(tmp_path / "folders" / "gt" / "tool_masks"), mask_polarity="tissue"))


def test_frame_selection_stride_fps_and_resize(synth, tmp_path):
    _, video = synth
    res = prepare_scene(video.inputs[0], tmp_path / "a", PrepareOptions(start=1, end=8, fps=2.5, poses="identity"))
    assert res.meta["source_frames"] == [1, 3, 5, 7] and res.meta["source"]["stride"] == 2
    assert res.meta["timestamps_s"] == pytest.approx([0.2, 0.6, 1.0, 1.4])
    res2 = prepare_scene(video.inputs[0], tmp_path / "b", PrepareOptions(end=2, resize=(128, 104), poses="identity"))
    s = load_scene(res2.root)
    assert (s.width, s.height) == (128, 104)
    # half the resolution: half the rectified focal length (up to the rectification's own choice)
    assert s.frames[0].camera.fx == pytest.approx(res.meta["fx"] / 2, rel=0.01)


def test_atomic_write_and_overwrite(synth, tmp_path, monkeypatch):
    _, video = synth
    out = tmp_path / "scene"
    opts = PrepareOptions(end=2, poses="identity")
    import endogs.video.prepare as P

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(P, "write_scene_files", boom)
    with pytest.raises(OSError):
        prepare_scene(video.inputs[0], out, opts)
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    monkeypatch.undo()
    prepare_scene(video.inputs[0], out, opts)
    with pytest.raises(Exception, match="--overwrite"):
        prepare_scene(video.inputs[0], out, opts)
    opts.overwrite = True
    prepare_scene(video.inputs[0], out, opts)
    assert len(load_scene(out)) == 2


# ------------------------------------------------------------------------------------------ real data
def test_real_scared_frames(scared_640, tmp_path):
    res = prepare_scene(scared_640, tmp_path / "real", PrepareOptions(end=3, keyframe_every=0))
    assert res.meta["fx"] == pytest.approx(555.21, abs=0.05)  # rectified P1, not the raw 511.7
    assert res.meta["rectification"]["baseline_mm"] == pytest.approx(4.1326, abs=1e-3)
    s = load_scene(res.root)
    K = np.array(res.meta["rectification"]["P1"])[:3, :3]
    for i, f in enumerate(s.frames):
        d = f.depth
        assert (d > 0).mean() > 0.75
        assert 37 <= np.median(d[d > 0]) <= 72  # the measured per-frame range (VIDEO_NOTES.md)
    c2w = np.stack([f.camera.c2w for f in s.frames])
    for i in range(len(s) - 1):
        a = np.round(s.frames[i].image * 255).astype(np.uint8)
        b = np.round(s.frames[i + 1].image * 255).astype(np.uint8)
        T = np.linalg.inv(c2w[i + 1]) @ c2w[i]
        p_id = warp_psnr(a, s.frames[i].depth, b, K, np.eye(4))
        p_odo = warp_psnr(a, s.frames[i].depth, b, K, T)
        assert p_odo > p_id + 3.0, (i, p_id, p_odo)


def test_reconstruct_prepares_trains_and_evaluates(tmp_path, capsys, monkeypatch):
    from functools import partial

    import endogs.eval.evaluate as E
    from endogs.cli import main
    from endogs.video.cli import COMMANDS

    monkeypatch.setattr(E, "EvalOptions", partial(E.EvalOptions, fps_min_time=0.05, images=False, plots=False))
    scene = generate(SyntheticConfig(width=160, height=128, n_frames=4, camera="moving", seed=5))
    v = write_stereo_video(scene, tmp_path / "rec", layout="side-by-side")
    rc = main(["reconstruct", str(v.inputs[0]), "--out", str(tmp_path / "scene"), "--run", str(tmp_path / "run"),
               "--iterations", "2", "--poses", "identity", "--quiet"], commands=COMMANDS)
    out = capsys.readouterr().out
    assert rc == 0
    assert f"run: {tmp_path / 'run'}" in out and f"endogs view {tmp_path / 'run'}" in out
    assert "test frames [1] at the training resolution" in out and "PSNR" in out and "SSIM" in out and "poses identity" in out
    assert "verdict:" in out
    metrics = json.loads((tmp_path / "run" / "eval_test" / "metrics.json").read_text())
    assert np.isfinite(metrics["metrics"]["model"]["psnr"])
