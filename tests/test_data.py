"""Data layer: every format round-trips on small on-disk fixtures, and bad input fails clearly."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import data_fixtures as fx
from endogs.data import detect_format, load_scene, split_indices
from endogs.errors import ConfigError, DataError


# --------------------------------------------------------------------------------------------
# EndoNeRF


def test_endonerf_round_trip(tmp_path):
    truth = fx.endonerf(tmp_path, n=10, f=25.0)
    scene = load_scene(tmp_path)
    assert scene.format == "endonerf" and len(scene) == 10
    assert (scene.width, scene.height) == (fx.W, fx.H)
    f0 = scene.frames[0]
    np.testing.assert_allclose(f0.camera.K, [[25, 0, fx.W / 2], [0, 25, fx.H / 2], [0, 0, 1]])
    for i, fr in enumerate(scene.frames):
        assert fr.index == i
        assert fr.time == pytest.approx(i / 9)
        np.testing.assert_array_equal(fr.camera.c2w, np.eye(4))
        np.testing.assert_allclose(fr.image, truth["images"][i] / 255.0, atol=1e-6)
        assert fr.image.dtype == np.float32 and fr.image.shape == (fx.H, fx.W, 3)
        # 255 = tool in masks/ -> True = tissue
        np.testing.assert_array_equal(fr.mask, ~truth["tools"][i])
        gt = ~truth["tools"][i]
        gt[0, 0] = False
        np.testing.assert_array_equal(fr.eval_mask, gt)
        np.testing.assert_array_equal(fr.depth, truth["depth"][i].astype(np.float32))
        assert fr.depth[0, 0] == 0  # invalid stays 0
    assert scene.depth_unit == "unknown"
    assert scene.test_indices == [1, 9] and scene.train_indices == [0, 2, 3, 4, 5, 6, 7, 8]
    assert scene.near == 0 and scene.far == 19
    assert "gt_masks" in scene.eval_mask_source


def test_endonerf_principal_point_and_crop(tmp_path):
    fx.endonerf(tmp_path, n=3)
    s = load_scene(tmp_path, principal_point="pixel-center", crop_bottom=4)
    assert s.height == fx.H - 4
    assert s.frames[0].camera.cx == pytest.approx((fx.W - 1) / 2) and s.frames[0].camera.cy == pytest.approx((fx.H - 1) / 2)
    assert s.frames[0].image.shape == (fx.H - 4, fx.W, 3)
    assert s.frames[0].depth.shape == (fx.H - 4, fx.W) and s.frames[0].mask.shape == (fx.H - 4, fx.W)


def test_endonerf_gt_masks_optional(tmp_path):
    truth = fx.endonerf(tmp_path, n=3, with_gt_masks=False)
    s = load_scene(tmp_path)
    np.testing.assert_array_equal(s.frames[1].eval_mask, ~truth["tools"][1])


def test_endonerf_scene_meta_gives_units_and_intrinsics(tmp_path):
    fx.endonerf(tmp_path, n=3)
    for i in range(3):  # rewrite depth as 16-bit mm * 256
        d = np.full((fx.H, fx.W), int(42.5 * 256), np.uint16)
        fx.write_gray(tmp_path / "depth" / f"frame-{i:06d}.depth.png", d)
    meta = {"depth_unit": "mm", "depth_png_scale": 256.0, "mask_polarity": "tool", "principal_point": [9.0, 7.0], "fx": 25.0, "fy": 26.0}
    (tmp_path / "endogs_scene.json").write_text(json.dumps(meta))
    s = load_scene(tmp_path)
    assert s.depth_unit == "mm"
    np.testing.assert_allclose(s.frames[2].depth, 42.5)
    K = s.frames[0].camera.K
    assert (K[0, 0], K[1, 1], K[0, 2], K[1, 2]) == (25.0, 26.0, 9.0, 7.0)


def test_real_endonerf_poses_bounds_are_read_as_identity(tmp_path, shared_data):
    src = shared_data / "endonerf_meta" / "pulling_soft_tissues" / "poses_bounds.npy"
    if not src.is_file():
        pytest.skip("shared EndoNeRF metadata not present")
    from endogs.data.endonerf import read_poses_bounds

    arr = read_poses_bounds(src)
    assert arr.shape == (63, 17)
    mats = arr[:, :15].reshape(-1, 3, 5)
    np.testing.assert_allclose(mats[:, :, :3], np.broadcast_to(np.eye(3), (63, 3, 3)))
    np.testing.assert_allclose(mats[0, :, 4], [512, 640, 569.46820041])


# --------------------------------------------------------------------------------------------
# StereoMIS (Deform3DGS conversion) and polarity guards


def test_stereomis_detected_and_polarity_and_hwf(tmp_path):
    root = tmp_path / "stereo_P3_1_10"
    truth = fx.endonerf(root, n=5, stereomis=True)
    assert detect_format(root) == "stereomis"
    s = load_scene(root)
    assert s.format == "stereomis"
    cam = s.frames[0].camera
    assert (cam.cx, cam.cy) == pytest.approx((fx.W / 2 + 0.7, fx.H / 2 - 0.3))  # stored (cy, cx, f)
    np.testing.assert_array_equal(s.frames[3].mask, ~truth["tools"][3])  # 255 = tissue source
    s2 = load_scene(root, principal_point="center")
    assert (s2.frames[0].camera.cx, s2.frames[0].camera.cy) == (fx.W / 2, fx.H / 2)


def test_stereomis_loaded_as_endonerf_is_refused(tmp_path):
    root = tmp_path / "scene"
    fx.endonerf(root, n=5, stereomis=True)
    with pytest.raises(DataError, match="stereomis"):
        load_scene(root, format="endonerf")


def test_inverted_masks_are_refused_unless_declared(tmp_path):
    truth = fx.endonerf(tmp_path, n=4)
    for i in range(4):  # write tissue-white masks into an EndoNeRF layout
        fx.write_gray(tmp_path / "masks" / f"frame-{i:06d}.mask.png", (~truth["tools"][i]).astype(np.uint8) * 255)
    with pytest.raises(DataError, match="polarity looks inverted"):
        load_scene(tmp_path)
    s = load_scene(tmp_path, mask_polarity="tissue")
    np.testing.assert_array_equal(s.frames[2].mask, ~truth["tools"][2])


# --------------------------------------------------------------------------------------------
# Hamlyn


def test_hamlyn_round_trip(tmp_path):
    truth = fx.hamlyn(tmp_path, n=6)
    s = load_scene(tmp_path, crop_left=4)
    assert s.format == "hamlyn" and len(s) == 6
    assert s.width == fx.W - 4
    cam = s.frames[0].camera
    assert cam.fx == 30.0 and cam.fy == 31.0 and cam.cx == pytest.approx(9.5 - 4) and cam.cy == 7.5
    assert s.train_indices == [0, 2, 4] and s.test_indices == [1, 3, 5]
    np.testing.assert_allclose(s.frames[2].image, truth["images"][2][:, 4:] / 255.0, atol=1e-6)
    np.testing.assert_array_equal(s.frames[2].mask, ~truth["tools"][2][:, 4:])
    d = s.frames[2].depth
    assert d[0, 0] == 502 and d[-1, 0] == 0
    assert s.depth_unit == "mm"
    c = load_scene(tmp_path, crop_left=4, principal_point="center").frames[0].camera
    assert (c.cx, c.cy) == ((fx.W - 4) / 2, fx.H / 2)


# --------------------------------------------------------------------------------------------
# SCARED


def test_scared_round_trip(tmp_path):
    truth = fx.scared(tmp_path, n=9)
    assert detect_format(tmp_path) == "scared"
    s = load_scene(tmp_path)
    assert s.format == "scared" and len(s) == 9 and s.depth_unit == "mm"
    cam = s.frames[0].camera
    np.testing.assert_allclose(cam.K, [[40, 0, 10.3], [0, 40, 7.9], [0, 0, 1]])  # rectified, from Q
    # poses: inverse of camera-pose, relative to the first frame
    c0 = truth["c2w"][0]
    for i, fr in enumerate(s.frames):
        np.testing.assert_allclose(fr.camera.c2w, np.linalg.inv(c0) @ truth["c2w"][i], atol=1e-9)
    np.testing.assert_allclose(s.frames[0].camera.c2w, np.eye(4), atol=1e-12)
    d = s.frames[4].depth
    assert d[5, 5] == pytest.approx(40 * 4 / 20)  # fl * bl / disparity
    assert (d[0] == 0).all() and d[1, 0] == 0  # invalid disparity and out-of-range depth
    assert s.frames[4].mask.dtype == bool and s.frames[4].mask[5, 5]
    np.testing.assert_array_equal(s.frames[4].gt_depth, d)
    assert s.test_indices == [1]
    kl = load_scene(tmp_path, intrinsics="KL").frames[0].camera.K
    np.testing.assert_allclose(kl, truth["KL"])


def test_scared_skip_and_paper_table(tmp_path):
    root = tmp_path / "dataset_3" / "keyframe_1"
    truth = fx.scared(root, n=9)
    s = load_scene(root, skip=4)
    assert len(s) == 3 and [f.name for f in s.frames] == ["frame_data000000.png", "frame_data000004.png", "frame_data000008.png"]
    assert [f.time for f in s.frames] == [0.0, 0.5, 1.0]
    np.testing.assert_allclose(s.frames[1].camera.c2w, np.linalg.inv(truth["c2w"][0]) @ truth["c2w"][4], atol=1e-9)
    assert len(load_scene(root, skip="paper")) == 3  # dataset 3 keyframe 1 -> every 4th frame
    plain = tmp_path / "plain"
    shutil.copytree(root, plain)
    with pytest.raises(ConfigError, match="dataset_X/keyframe_Y"):
        load_scene(plain, skip="paper")


def test_scared_depth_range_option(tmp_path):
    fx.scared(tmp_path, n=2)
    with pytest.raises(DataError, match="no valid"):
        load_scene(tmp_path, depth_range=(30, 300))  # every depth is 8 mm


def test_scared_keyframe(tmp_path):
    truth = fx.scared_keyframe(tmp_path)
    s = load_scene(tmp_path)
    assert s.format == "scared-keyframe" and len(s) == 1
    fr = s.frames[0]
    assert fr.time == 0.0
    np.testing.assert_allclose(fr.camera.K, [[30, 0, 10], [0, 30, 8], [0, 0, 1]])
    np.testing.assert_allclose(fr.camera.dist, [0.01, -0.02, 0, 0, 0.003])
    assert fr.depth[5, 5] == 55.0 and fr.depth[0, 0] == 0.0  # NaN -> invalid
    np.testing.assert_allclose(fr.image, truth["image"] / 255.0, atol=1e-6)
    assert s.extras["baseline_mm"] == pytest.approx(4.2)


def test_stereo_calibration_json_and_yaml_agree(tmp_path):
    from endogs.data.calib import read_stereo_calibration

    fx.scared_keyframe(tmp_path)
    y = read_stereo_calibration(tmp_path / "endoscope_calibration.yaml")
    js = {"image_size": [fx.W, fx.H], "left": {"K": y.K1.tolist(), "distortion": y.D1.tolist()},
          "right": {"K": y.K2.tolist(), "distortion": y.D2.tolist()}, "stereo": {"R": y.R.tolist(), "T": y.T.tolist()}}
    (tmp_path / "c.json").write_text(json.dumps(js))
    j = read_stereo_calibration(tmp_path / "c.json")
    for a, b in ((y.K1, j.K1), (y.D1, j.D1), (y.K2, j.K2), (y.R, j.R), (y.T, j.T)):
        np.testing.assert_allclose(a, b)
    assert j.image_size == (fx.W, fx.H) and y.baseline == pytest.approx(4.2)


# --------------------------------------------------------------------------------------------
# Split rule and options


def test_split_rules():
    assert split_indices(17, "every8") == ([0, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16], [1, 9])
    assert split_indices(4, "all") == ([0, 1, 2, 3], [0, 1, 2, 3])
    assert split_indices(5, "alternate") == ([0, 2, 4], [1, 3])
    with pytest.raises(ConfigError):
        split_indices(3, "random")


def test_split_all_and_lazy_loading(tmp_path):
    fx.endonerf(tmp_path, n=9)
    s = load_scene(tmp_path, split="all")
    assert s.train_indices == s.test_indices == list(range(9))
    (tmp_path / "images" / "frame-000004.color.png").unlink()  # images decode lazily
    with pytest.raises(DataError, match="frame-000004"):
        _ = s.frames[4].image


def test_unknown_option_and_format(tmp_path):
    fx.endonerf(tmp_path, n=3)
    with pytest.raises(ConfigError, match="unknown option.*skip"):
        load_scene(tmp_path, skip=2)
    with pytest.raises(ConfigError, match="unknown format"):
        load_scene(tmp_path, format="colmap")


# --------------------------------------------------------------------------------------------
# Bad input: one clear error naming the path


def _one_line(exc) -> str:
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


@pytest.mark.parametrize(
    "breakage, match, where",
    [
        ("rm_images_dir", "missing images folder", "images"),
        ("rm_depth_dir", "missing depth folder", "depth"),
        ("rm_poses", "missing poses_bounds.npy", "poses_bounds.npy"),
        ("extra_image", "images/ has 6 files but poses_bounds.npy has 5", "images"),
        ("missing_mask", "masks/ has 4 files but poses_bounds.npy has 5", "masks"),
        ("corrupt_image", "corrupt", "frame-000002.color.png"),
        ("wrong_shape_depth", "differs from the images", "frame-000001.depth.png"),
        ("nonbinary_mask", "not binary", "frame-000003.mask.png"),
        ("zero_depth", "no valid", "frame-000002.depth.png"),
        ("nan_pose", "NaN", "poses_bounds.npy"),
        ("bad_pose_shape", "expected (N, 17)", "poses_bounds.npy"),
        ("empty_depth_dir", "depth folder is empty", "depth"),
        ("hwf_mismatch", "hwf column says", "poses_bounds.npy"),
    ],
)
def test_endonerf_bad_input(tmp_path, breakage, match, where):
    root = tmp_path / "scene"
    fx.endonerf(root, n=5)
    if breakage == "rm_images_dir":
        shutil.rmtree(root / "images")
        (root / "images").mkdir()
        shutil.rmtree(root / "images")
    elif breakage == "rm_depth_dir":
        shutil.rmtree(root / "depth")
    elif breakage == "rm_poses":
        (root / "poses_bounds.npy").unlink()
    elif breakage == "extra_image":
        shutil.copy(root / "images" / "frame-000000.color.png", root / "images" / "frame-000099.color.png")
    elif breakage == "missing_mask":
        (root / "masks" / "frame-000004.mask.png").unlink()
    elif breakage == "corrupt_image":
        (root / "images" / "frame-000002.color.png").write_bytes(b"\x89PNG garbage")
    elif breakage == "wrong_shape_depth":
        fx.write_gray(root / "depth" / "frame-000001.depth.png", np.ones((fx.H + 2, fx.W), np.uint8))
    elif breakage == "nonbinary_mask":
        m = np.zeros((fx.H, fx.W), np.uint8)
        m[3, 3] = 128
        fx.write_gray(root / "masks" / "frame-000003.mask.png", m)
    elif breakage == "zero_depth":
        fx.write_gray(root / "depth" / "frame-000002.depth.png", np.zeros((fx.H, fx.W), np.uint8))
    elif breakage == "nan_pose":
        pb = np.load(root / "poses_bounds.npy")
        pb[3, 3] = np.nan
        np.save(root / "poses_bounds.npy", pb)
    elif breakage == "bad_pose_shape":
        np.save(root / "poses_bounds.npy", np.zeros((5, 15)))
    elif breakage == "empty_depth_dir":
        shutil.rmtree(root / "depth")
        (root / "depth").mkdir()
    elif breakage == "hwf_mismatch":
        pb = np.load(root / "poses_bounds.npy")
        pb[:, 4] = 100  # H
        np.save(root / "poses_bounds.npy", pb)
    with pytest.raises(DataError) as exc:
        load_scene(root)
    msg = _one_line(exc)
    assert match in msg, msg
    assert where in msg, msg


def test_unknown_layout_and_missing_folder(tmp_path):
    (tmp_path / "stuff").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="unknown scene layout") as exc:
        load_scene(tmp_path)
    assert str(tmp_path) in _one_line(exc)
    with pytest.raises(DataError, match="no such folder"):
        load_scene(tmp_path / "nope")
    with pytest.raises(DataError, match="expected a scene folder"):
        load_scene(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="found nothing"):
        load_scene(tmp_path / "empty")


@pytest.mark.parametrize("breakage", ["count", "pose_nan", "bad_json", "no_q", "corrupt_tiff"])
def test_scared_bad_input(tmp_path, breakage):
    fx.scared(tmp_path, n=3)
    d = tmp_path / "data"
    if breakage == "count":
        (d / "disparity" / "frame_data000002.tiff").unlink()
        match, where = "disparity/ has 2 files", "disparity"
    elif breakage == "pose_nan":
        p = d / "frame_data" / "frame_data000001.json"
        j = json.loads(p.read_text())
        j["camera-pose"][0][3] = float("nan")
        p.write_text(json.dumps(j))
        match, where = "NaN", "frame_data000001.json"
    elif breakage == "bad_json":
        (d / "frame_data" / "frame_data000001.json").write_text("{not json")
        match, where = "invalid JSON", "frame_data000001.json"
    elif breakage == "no_q":
        (d / "reprojection_data" / "frame_data000000.json").write_text("{}")
        match, where = "missing key reprojection-matrix", "frame_data000000.json"
    else:
        (d / "disparity" / "frame_data000001.tiff").write_bytes(b"II*\x00broken")
        match, where = "corrupt", "frame_data000001.tiff"
    with pytest.raises(DataError) as exc:
        load_scene(tmp_path)
    msg = _one_line(exc)
    assert match in msg and where in msg, msg


def test_hamlyn_bad_intrinsics(tmp_path):
    fx.hamlyn(tmp_path, n=2)
    (tmp_path / "intrinsics.txt").write_text("1 2 3\n4 5 6\n")
    with pytest.raises(DataError, match="intrinsics.txt"):
        load_scene(tmp_path)


def test_validate_full_decodes_every_image(tmp_path):
    fx.endonerf(tmp_path, n=3)
    p = tmp_path / "images" / "frame-000001.color.png"
    raw = p.read_bytes()
    p.write_bytes(raw[:60])  # header intact, pixel data truncated
    load_scene(tmp_path, validate="fast")
    with pytest.raises(DataError, match="frame-000001.color.png"):
        load_scene(tmp_path, validate="full")
