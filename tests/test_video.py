"""Units of endogs.video: inputs, calibration checks, stereo matching, masks, poses (files, odometry
fallbacks), monocular depth, and the CLI's one-line errors."""

from __future__ import annotations

import os

# open3d's OpenMP runtime busy-waits by default, which makes odometry 5-10x slower on shared cores;
# set before any test of the session loads it (endogs.video.poses.import_open3d does the same).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from endogs.cli import main
from endogs.data import load_scene
from endogs.data.synthetic import SyntheticConfig, generate, render_view
from endogs.errors import ConfigError, DataError
from endogs.video import PrepareOptions, prepare_scene
from endogs.video import poses as P
from endogs.video.cli import COMMANDS
from endogs.video.masks import auto_tool_mask
from endogs.video.rectify import load_calibration
from endogs.video.stereo import StereoMatcher
from endogs.video.synthetic_stereo import default_rig, write_calibration_yaml, write_stereo_video


@pytest.fixture(scope="module")
def small():
    return generate(SyntheticConfig(width=160, height=128, n_frames=3, camera="moving", seed=2))


@pytest.fixture(scope="module")
def small_video(small, tmp_path_factory):
    return write_stereo_video(small, tmp_path_factory.mktemp("v") / "rec", layout="folders")


def run_cli(argv, capsys):
    rc = main(argv, commands=COMMANDS)
    return rc, capsys.readouterr()


# ------------------------------------------------------------------------------------------ synthetic
def test_render_view_reproduces_generate(small):
    v = render_view(small, small.K, small.c2w)
    np.testing.assert_array_equal(v.images, small.images)
    np.testing.assert_array_equal(v.gt_depth, small.gt_depth)
    np.testing.assert_array_equal(v.tool_masks, small.tool_masks)


def test_stereo_video_files(small_video):
    root = small_video.root
    assert len(list((root / "left_image").glob("*.png"))) == 3 and (root / "gt" / "c2w.npy").is_file()
    fs = cv2.FileStorage(str(root / "endoscope_calibration.yaml"), cv2.FILE_STORAGE_READ)
    assert fs.getNode("M1").mat().shape == (3, 3) and fs.getNode("T").mat().size == 3
    fs.release()


# ------------------------------------------------------------------------------------------ stereo
def test_sgbm_padding_lr_check_and_depth_from_Q():
    rng = np.random.default_rng(0)
    tex = cv2.GaussianBlur((rng.random((120, 200, 3)) * 255).astype(np.uint8), (0, 0), 1.0)
    d = 20
    left = tex[:, :-d]
    right = tex[:, d:]  # a fronto-parallel plane: disparity d everywhere
    f, b = 150.0, 4.0
    Q = np.array([[1, 0, 0, -90], [0, 1, 0, -60], [0, 0, 0, f], [0, 0, 1 / b, 0]], float)
    res = StereoMatcher(Q, left.shape[1], 32, depth_min=1, depth_max=1000, highlight_threshold=256).compute(left, right)
    # without left padding SGBM would leave the first 32 columns empty
    assert res.valid[:, d + 2 : 32].mean() > 0.9
    assert not res.valid[:, : d - 2].any()  # no match exists there
    assert np.median(res.depth[res.valid]) == pytest.approx(f * b / d, rel=1e-3)


def test_highlights_have_no_depth():
    rng = np.random.default_rng(1)
    tex = cv2.GaussianBlur((rng.random((100, 160, 3)) * 200).astype(np.uint8), (0, 0), 1.0)
    tex[40:46, 80:86] = 255
    Q = np.array([[1, 0, 0, -80], [0, 1, 0, -50], [0, 0, 0, 100], [0, 0, 0.25, 0]], float)
    res = StereoMatcher(Q, 150, 16, depth_min=1, depth_max=1e4).compute(tex[:, :-10], tex[:, 10:])
    assert res.highlights[43, 83] and res.depth[43, 83] == 0 and (res.depth > 0).mean() > 0.5


# ------------------------------------------------------------------------------------------ masks
def test_auto_mask_ignores_tissue_and_highlights():
    s = generate(SyntheticConfig(width=160, height=128, n_frames=2, tool=False))
    for img in s.images:
        assert auto_tool_mask(np.round(img * 255).astype(np.uint8)).mean() < 0.01


# ------------------------------------------------------------------------------------------ calibration
def test_calibration_checks(small_video, tmp_path):
    good = small_video.calibration
    c = load_calibration(good, (160, 128))
    assert c.K1[0, 0] == pytest.approx(small_video.rig.K1[0, 0])
    # --calib-size scales a calibration made for another size
    c2 = load_calibration(good, (80, 64), calib_size=(160, 128), input_size=(80, 64))
    assert c2.K1[0, 0] == pytest.approx(c.K1[0, 0] / 2)
    # a calibration of a larger image is caught by its principal point
    with pytest.raises(DataError, match="--calib-size"):
        load_calibration(good, (320, 256))
    # missing key
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.read_text().split("M1:")[0].replace("T: !!opencv-matrix", "X: !!opencv-matrix"))
    with pytest.raises(DataError, match="missing key"):
        load_calibration(bad, (160, 128))
    # a JSON stating another image size
    rig = small_video.rig
    js = tmp_path / "c.json"
    js.write_text(json.dumps({"image_size": [320, 256], "left": {"K": rig.K1.tolist(), "distortion": rig.D1.tolist()},
                              "right": {"K": rig.K2.tolist(), "distortion": rig.D2.tolist()},
                              "stereo": {"R": rig.R.tolist(), "T": rig.T.tolist()}}))
    with pytest.raises(DataError, match="calibration is for 320x256 images but the input views are 160x128"):
        load_calibration(js, (160, 128))
    # camera 1 on the right
    flipped = tmp_path / "flip.yaml"
    r2 = default_rig(generate(SyntheticConfig(n_frames=1)))
    r2.T = -r2.T
    write_calibration_yaml(flipped, r2)
    with pytest.raises(DataError, match="left"):
        load_calibration(flipped, (160, 128))


# ------------------------------------------------------------------------------------------ poses
def _odometry_inputs(scene):
    imgs = [np.round(i * 255).astype(np.uint8) for i in scene.images]
    deps = [d.copy() for d in scene.depth]
    valid = [(d > 0) & ~t for d, t in zip(scene.depth, scene.tool_masks)]
    K = scene.K.copy()
    K[:2, 2] -= 0.5
    return imgs, deps, valid, K


@pytest.fixture(scope="module")
def static_moving():
    return generate(SyntheticConfig(width=192, height=160, n_frames=4, camera="moving", deformation=0.0,
                                    camera_motion=0.5, seed=4))


def test_odometry_failure_falls_back_and_is_reported(static_moving, monkeypatch):
    imgs, deps, valid, K = _odometry_inputs(static_moving)
    real = P.Odometry.estimate
    calls = {"n": 0}

    def flaky(self, src, tgt, init):
        calls["n"] += 1
        ok, T, info = real(self, src, tgt, init)
        return (False, T, info) if calls["n"] == 2 else (ok, T, info)  # step 1 -> 2 "fails"

    monkeypatch.setattr(P.Odometry, "estimate", flaky)
    logs = []
    c2w, rep = P.odometry_poses(imgs, deps, valid, K, keyframe_every=0, frame_labels=[10, 11, 12, 13], log=logs.append)
    assert [f["frame"] for f in rep.failures] == [2] and rep.failures[0]["fallback"] == "orb-pnp"
    assert rep.failures[0]["source_frame"] == 12
    assert any("frame 2" in s and "orb-pnp" in s and "10" not in s.split("frame 2")[1][:3] for s in logs), logs
    # the replaced step explains the images as well as the true motion does (and better than no motion)
    d1 = np.where(valid[1], deps[1], 0)
    psnr = {name: P.warp_psnr(imgs[1], d1, imgs[2], K, T) for name, T in (
        ("fallback", np.linalg.inv(c2w[2]) @ c2w[1]), ("identity", np.eye(4)),
        ("truth", np.linalg.inv(static_moving.c2w[2]) @ static_moving.c2w[1]))}
    assert psnr["fallback"] > psnr["truth"] - 1.0 and psnr["fallback"] > psnr["identity"], psnr

    # ORB+PnP fails too: constant velocity, reported
    monkeypatch.setattr(P, "orb_pnp", lambda *a, **k: (None, "too few ORB features"))
    calls["n"] = 0
    logs.clear()
    c2w2, rep2 = P.odometry_poses(imgs, deps, valid, K, keyframe_every=0, log=logs.append)
    assert rep2.failures[0]["fallback"] == "constant-velocity" and "too few ORB features" in rep2.failures[0]["reason"]
    step01 = np.linalg.inv(c2w2[1]) @ c2w2[0]
    step12 = np.linalg.inv(c2w2[2]) @ c2w2[1]
    np.testing.assert_allclose(step12, step01, atol=1e-9)  # the previous motion, not garbage
    assert any("frame 2" in s and "constant-velocity" in s for s in logs)


def test_odometry_rejects_a_step_that_makes_the_warp_worse(static_moving, monkeypatch):
    imgs, deps, valid, K = _odometry_inputs(static_moving)
    real = P.Odometry.estimate

    def wild(self, src, tgt, init):
        ok, T, info = real(self, src, tgt, init)
        T = T.copy()
        T[:3, 3] += [3.0, 0, 0]  # "succeeds" with a 3 mm error: within the step limit, photometrically wrong
        return ok, T, info

    monkeypatch.setattr(P.Odometry, "estimate", wild)
    _, rep = P.odometry_poses(imgs, deps, valid, K, keyframe_every=0)
    assert len(rep.failures) == 3 and all("worse than" in f["reason"] for f in rep.failures), rep.failures
    assert all(f["fallback"] == "orb-pnp" for f in rep.failures)


def test_pose_file_formats(tmp_path):
    rng = np.random.default_rng(0)
    c2w = np.tile(np.eye(4), (5, 1, 1))
    for k in range(5):
        c2w[k, :3, :3] = cv2.Rodrigues(rng.normal(0, 0.1, 3))[0]
        c2w[k, :3, 3] = rng.normal(0, 5, 3)
    # TUM-like: frame tx ty tz qx qy qz qw, metres, frames out of order
    rows = []
    for k in range(5):
        R = c2w[k, :3, :3]
        w = np.sqrt(1 + np.trace(R)) / 2
        q = [(R[2, 1] - R[1, 2]) / (4 * w), (R[0, 2] - R[2, 0]) / (4 * w), (R[1, 0] - R[0, 1]) / (4 * w), w]
        rows.append([k] + list(c2w[k, :3, 3] / 1000) + q)
    csv = tmp_path / "gt.txt"
    csv.write_text("# frame tx ty tz qx qy qz qw\n" + "\n".join(" ".join(f"{v:.12g}" for v in r) for r in rows[::-1]))
    np.testing.assert_allclose(P.read_pose_file(csv, [1, 3], unit="m"), c2w[[1, 3]], atol=1e-8)
    js = tmp_path / "p.json"
    js.write_text(json.dumps({"poses": np.linalg.inv(c2w).tolist()}))
    np.testing.assert_allclose(P.read_pose_file(js, [0, 4], convention="w2c"), c2w[[0, 4]], atol=1e-9)
    with pytest.raises(DataError, match="has no pose for input frame 7"):
        P.read_pose_file(csv, [1, 7], unit="m")
    bad = tmp_path / "bad.csv"
    bad.write_text("1,2,3,4,5\n")
    with pytest.raises(DataError, match="expected 7"):
        P.read_pose_file(bad, [0])
    skew = tmp_path / "skew.csv"
    skew.write_text(",".join(["2"] + ["0"] * 15) + "\n")
    with pytest.raises(DataError, match="not a rigid transform"):
        P.read_pose_file(skew, [0])


# ------------------------------------------------------------------------------------------ monocular
def test_monocular_needs_a_model_and_works_with_one(small_video, tmp_path):
    left = small_video.root / "left_image"
    with pytest.raises(ConfigError, match="--depth-model DIR"):
        prepare_scene(left, tmp_path / "m", PrepareOptions(focal=150.0, poses="identity"))
    with pytest.raises(ConfigError, match="odometry needs metric stereo depth"):
        prepare_scene(left, tmp_path / "m", PrepareOptions(focal=150.0, depth_model=tmp_path, poses="odometry"),
                      depth_model_loader=lambda p: None)

    def fake_loader(path):  # a stand-in model: inverse depth from brightness
        return lambda rgb: rgb.mean(axis=2).astype(np.float32) + 1.0

    res = prepare_scene(left, tmp_path / "m", PrepareOptions(calib=small_video.calibration, depth_model=tmp_path,
                                                              poses="identity", masks="auto"), depth_model_loader=fake_loader)
    s = load_scene(res.root)
    assert s.depth_unit == "relative" and len(s) == 3
    assert res.meta["rectification"]["baseline_mm"] == 0.0
    assert s.frames[0].camera.fx == pytest.approx(res.meta["fx"])


# ------------------------------------------------------------------------------------------ CLI errors
def test_cli_errors_are_one_line_and_name_the_file(small_video, tmp_path, capsys):
    bad_video = tmp_path / "broken.mp4"
    bad_video.write_bytes(b"not a video" * 100)
    rc, cap = run_cli(["prepare", str(bad_video), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "broken.mp4: cannot read video" in cap.err and "re-encode" in cap.err

    rc, cap = run_cli(["prepare", str(small_video.root), "--out", str(tmp_path / "o"), "--start", "100"], capsys)
    assert rc == 2 and "no frame in the range start=100" in cap.err and "left_image" in cap.err

    # left/right size mismatch
    lr = tmp_path / "lr"
    (lr / "left").mkdir(parents=True)
    (lr / "right").mkdir()
    cv2.imwrite(str(lr / "left" / "0.png"), np.zeros((128, 160, 3), np.uint8))
    cv2.imwrite(str(lr / "right" / "0.png"), np.zeros((120, 160, 3), np.uint8))
    rc, cap = run_cli(["prepare", str(lr), "--out", str(tmp_path / "o"), "--calib", str(small_video.calibration)], capsys)
    assert rc == 2 and "right view is 160x120 but the left is 160x128" in cap.err

    # stacked video without calibration
    v = tmp_path / "stack.mp4"
    from endogs.video.synthetic_stereo import write_video

    write_video(v, np.zeros((2, 256, 160, 3), np.uint8), 5.0)
    rc, cap = run_cli(["prepare", str(v), "--out", str(tmp_path / "o")], capsys)
    assert rc == 2 and "look like a stacked top-bottom stereo video but no calibration" in cap.err

    # calibration with a missing key
    bad = tmp_path / "nokey.yaml"
    bad.write_text(small_video.calibration.read_text().replace("M2:", "MX:"))
    rc, cap = run_cli(["prepare", str(small_video.root), "--out", str(tmp_path / "o"), "--calib", str(bad)], capsys)
    assert rc == 2 and "nokey.yaml: missing key M2 or K2" in cap.err
    errors = [ln for ln in cap.err.splitlines() if "error" in ln]  # after the progress lines
    assert len(errors) == 1 and errors[0].startswith("endogs: error: ")
    assert not (tmp_path / "o").exists()


def test_cli_subprocess_exit_code_and_stderr(tmp_path):
    bad = tmp_path / "empty.mp4"
    bad.write_bytes(b"")
    code = ("import sys; from endogs.cli import main; from endogs.video.cli import COMMANDS; "
            "sys.exit(main(sys.argv[1:], commands=COMMANDS))")
    p = subprocess.run([sys.executable, "-c", code, "prepare", str(bad), "--out", str(tmp_path / "o")],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("endogs: error: ") and "empty.mp4" in lines[0]


def test_mask_video_with_tissue_polarity(small_video, tmp_path):
    from endogs.video.synthetic_stereo import write_video

    masks = np.stack([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in sorted((small_video.root / "gt" / "tool_masks").glob("*.png"))])
    tissue_white = np.repeat((255 - masks)[..., None], 3, axis=3)
    write_video(tmp_path / "masks.mp4", tissue_white, 5.0)
    res = prepare_scene(small_video.root, tmp_path / "s", PrepareOptions(
        poses="identity", masks=str(tmp_path / "masks.mp4"), mask_polarity="tissue", start=1))
    s = load_scene(res.root)
    ref = load_scene(prepare_scene(small_video.root, tmp_path / "r", PrepareOptions(
        poses="identity", masks=str(small_video.root / "gt" / "tool_masks"), start=1)).root)
    assert len(s) == 2 and res.meta["masks"]["method"] == "file"
    for a, b in zip(s.frames, ref.frames):
        ta, tb = ~a.mask, ~b.mask
        assert tb.any() and (ta & tb).sum() / (ta | tb).sum() > 0.9
