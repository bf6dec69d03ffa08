"""Tests of the synthetic endoscopic scene generator (endogs.data.synthetic)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from endogs.camera import Camera
from endogs.data.synthetic import config as syn_config
from endogs.data.synthetic import surface as syn_surface
from endogs.data.synthetic import writers as syn_writers
from endogs.data.synthetic import (
    SceneExistsError,
    SyntheticConfig,
    generate,
    material_coords,
    surface_z,
    tissue_points,
    write_endonerf,
    write_scared,
    write_synthetic_scene,
)
from endogs.errors import EndogsError


@pytest.fixture(scope="module")
def fixed():
    return generate(SyntheticConfig())


@pytest.fixture(scope="module")
def moving():
    return generate(SyntheticConfig(camera="moving"))


@pytest.fixture(scope="module")
def tilted():
    return generate(SyntheticConfig(camera="moving", tilt=0.5))


def _centroid(mask: np.ndarray) -> np.ndarray:
    v, u = np.nonzero(mask)
    return np.array([u.mean(), v.mean()])


# --------------------------------------------------------------------------------------------------
# config


@pytest.mark.parametrize(
    "kwargs",
    [
        {"width": 0},
        {"height": 8},
        {"width": 12.5},
        {"n_frames": 0},
        {"seed": -1},
        {"camera": "wobbly"},
        {"depth_noise": -0.1},
        {"focal_factor": 0.0},
        {"distance": 5.0},
        {"left_strip": 0.7},
        {"specular": "yes"},
        {"deformation": float("nan")},
        {"tilt": 0.9},
    ],
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        SyntheticConfig(**kwargs)


def test_config_defaults_and_intrinsics():
    cfg = SyntheticConfig()
    assert (cfg.width, cfg.height, cfg.n_frames, cfg.camera) == (160, 128, 24, "fixed")
    np.testing.assert_allclose(cfg.K, [[144.0, 0, 80.0], [0, 144.0, 64.0], [0, 0, 1]])
    assert SyntheticConfig(n_frames=1).times().tolist() == [0.0]


# --------------------------------------------------------------------------------------------------
# in-memory scene


def test_shapes_dtypes_ranges(fixed):
    N, H, W = 24, 128, 160
    assert fixed.images.shape == (N, H, W, 3) and fixed.images.dtype == np.float32
    assert fixed.tool_masks.shape == (N, H, W) and fixed.tool_masks.dtype == bool
    assert fixed.depth.shape == (N, H, W) and fixed.depth.dtype == np.float32
    assert fixed.gt_depth.shape == (N, H, W) and fixed.gt_depth.dtype == np.float32
    assert fixed.K.shape == (3, 3) and fixed.c2w.shape == (N, 4, 4) and fixed.times.shape == (N,)
    assert fixed.images.min() >= 0.0 and fixed.images.max() <= 1.0
    # images hold exactly the 8-bit levels written to disk
    np.testing.assert_array_equal(np.round(fixed.images * 255) / 255, fixed.images)
    assert np.isfinite(fixed.gt_depth).all() and np.isfinite(fixed.depth).all()
    assert 40.0 < fixed.gt_depth.min() and fixed.gt_depth.max() < 80.0
    assert fixed.depth.min() == 0.0 and fixed.depth.max() < 80.0
    np.testing.assert_allclose(fixed.K, [[144.0, 0, 80.0], [0, 144.0, 64.0], [0, 0, 1]])
    np.testing.assert_array_equal(fixed.c2w, np.broadcast_to(np.eye(4), (N, 4, 4)))


def test_times(fixed):
    np.testing.assert_array_equal(fixed.times, np.arange(24) / 23.0)


def test_deterministic_and_seed_dependent(fixed):
    again = generate(SyntheticConfig())
    for name in ("images", "tool_masks", "depth", "gt_depth", "c2w", "albedo"):
        np.testing.assert_array_equal(getattr(again, name), getattr(fixed, name), err_msg=name)
    other = generate(SyntheticConfig(seed=1, n_frames=2))
    assert np.abs(other.images[0] - fixed.images[0]).mean() > 0.02
    assert np.abs(other.gt_depth[0] - fixed.gt_depth[0]).max() > 0.1


def test_images_look_like_tissue_with_a_grey_tool(fixed):
    tissue = ~fixed.tool_masks
    rgb = fixed.images[tissue]
    assert rgb.std() > 0.05  # not blank
    mean = rgb.mean(0)
    assert mean[0] > 0.45 and mean[0] > 1.5 * mean[1] and mean[0] > 1.5 * mean[2]
    assert (rgb[:, 0] >= rgb[:, 1]).mean() > 0.95  # red dominant on tissue
    tool = fixed.images[fixed.tool_masks]
    tmean = tool.mean(0)
    assert np.ptp(tmean) < 0.05 and 0.15 < tmean.mean() < 0.85  # grey-ish
    assert np.median(np.abs(tool[:, 0] - tool[:, 1])) < 0.03


def test_tool_fraction_moves_and_is_closer(fixed):
    frac = fixed.tool_masks.mean(axis=(1, 2))
    assert (frac > 0.03).all() and (frac < 0.30).all()
    assert np.linalg.norm(_centroid(fixed.tool_masks[-1]) - _centroid(fixed.tool_masks[0])) > 2.0
    assert (fixed.tool_masks[0] != fixed.tool_masks[12]).mean() > 0.005
    tm = fixed.tool_masks
    assert (fixed.tool_depth[tm] < fixed.gt_depth[tm] - 0.5).all()
    assert (fixed.tool_depth[~tm] == 0).all()
    # the noisy depth sees the tool, not the tissue behind it
    valid_tool = tm & (fixed.depth > 0)
    assert valid_tool.sum() > 100
    assert np.median(np.abs(fixed.depth[valid_tool] - fixed.tool_depth[valid_tool])) < 0.5


def test_no_tool_option():
    sc = generate(SyntheticConfig(tool=False, n_frames=3))
    assert not sc.tool_masks.any() and (sc.tool_depth == 0).all()


@pytest.mark.parametrize("scene_name", ["fixed", "moving", "tilted"])
def test_gt_depth_lies_on_the_height_field(scene_name, request):
    scene = request.getfixturevalue(scene_name)
    for i in (0, 7, 15, 23):
        cam = scene.camera(i)
        assert isinstance(cam, Camera)
        pts = cam.unproject(scene.gt_depth[i].astype(np.float64))  # [H, W, 3]
        z = surface_z(scene, pts[..., 0], pts[..., 1], scene.times[i])
        assert np.abs(pts[..., 2] - z).max() < 0.05
        assert np.abs(pts[..., 2] - z).max() < 1e-3  # in fact float32-exact
        # and projecting them back lands on the pixel centres
        uv, zc = cam.project(pts.reshape(-1, 3))
        u, v = np.meshgrid(np.arange(160) + 0.5, np.arange(128) + 0.5)
        np.testing.assert_allclose(uv[:, 0], u.ravel(), atol=1e-4)
        np.testing.assert_allclose(uv[:, 1], v.ravel(), atol=1e-4)


def test_tilt_gives_an_oblique_view_with_realistic_depth_range(moving, tilted):
    def ratio(d):
        lo, hi = np.percentile(d[d > 0], [10, 90])
        return hi / lo

    for i in (0, 12, 23):
        assert ratio(moving.gt_depth[i]) < 1.2  # the default surface nearly faces the camera
        assert 1.4 < ratio(tilted.gt_depth[i]) < 1.9  # as in real endoscopic views
        half = tilted.width // 2
        assert tilted.gt_depth[i][:, half:].mean() > tilted.gt_depth[i][:, :half].mean() + 8  # far side right
    np.testing.assert_array_equal(moving.c2w, tilted.c2w)  # same trajectory, other tissue


def test_noisy_depth_close_to_truth_with_realistic_holes(fixed):
    tissue = ~fixed.tool_masks
    valid = fixed.depth > 0
    m = valid & tissue
    err = fixed.depth[m] - fixed.gt_depth[m]
    assert np.median(np.abs(err)) < 0.5
    assert 0.15 < err.std() < 0.6  # ~0.3 mm * (z/60)^2 at z ~ 50-60 mm
    frac = valid.mean(axis=(1, 2))
    assert (frac > 0.60).all() and (frac < 0.95).all()
    strip = int(round(0.08 * 160))
    assert (fixed.depth[:, :, :strip] == 0).all()
    assert (fixed.depth[:, :, strip:] > 0).mean() > 0.85
    # holes around specular highlights
    assert (fixed.depth[fixed.specular_masks] == 0).mean() > 0.9


def test_noise_free_depth_option():
    sc = generate(SyntheticConfig(depth_noise=0.0, holes=False, n_frames=3))
    valid = sc.depth > 0
    assert (valid[:, :, 13:]).all()
    np.testing.assert_allclose(sc.depth[valid], sc.visible_depth[valid], atol=1e-5)


def test_surface_deforms(fixed):
    change = np.abs(fixed.gt_depth[-1] - fixed.gt_depth[0])
    assert change.max() > 0.5
    assert np.abs(fixed.gt_depth[12] - fixed.gt_depth[0]).max() > 0.5
    static = generate(SyntheticConfig(deformation=0.0, n_frames=4, tool=False))
    np.testing.assert_allclose(static.gt_depth[3], static.gt_depth[0], atol=1e-4)


def test_material_coords_follow_the_tissue(fixed):
    x, y = np.meshgrid(np.linspace(-20, 20, 9), np.linspace(-15, 15, 7))
    X0, Y0 = material_coords(fixed, x, y, 0.0)
    np.testing.assert_array_equal(X0, x)
    np.testing.assert_array_equal(Y0, y)
    X1, Y1 = material_coords(fixed, x, y, 1.0)
    disp = np.hypot(X1 - x, Y1 - y)
    assert 0.5 < disp.max() < 8.0


def test_specular_highlights_exist_and_move(fixed):
    spec = fixed.specular_masks
    assert (spec.sum(axis=(1, 2)) > 5).all()
    assert spec.mean() < 0.08
    assert (fixed.images[spec].min(axis=-1) > 0.85).mean() > 0.5  # white-ish
    assert (spec[0] != spec[-1]).sum() > 20
    assert np.linalg.norm(_centroid(spec[0]) - _centroid(spec[-1])) > 1.0
    matte = generate(SyntheticConfig(specular=False, n_frames=2))
    assert not matte.specular_masks.any()
    assert matte.images[0].min(axis=-1).max() < fixed.images[0].min(axis=-1).max()


def test_moving_camera_poses(moving):
    c2w = moving.c2w
    np.testing.assert_array_equal(c2w[0], np.eye(4))
    for i in range(1, 24):
        R = c2w[i, :3, :3]
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        assert abs(np.linalg.det(R) - 1.0) < 1e-12
        np.testing.assert_array_equal(c2w[i, 3], [0, 0, 0, 1])
    assert np.abs(c2w[-1] - np.eye(4)).max() > 1e-3
    trans = np.linalg.norm(c2w[:, :3, 3], axis=1)
    assert 1.0 < trans.max() < 15.0  # a few mm
    angle = np.degrees(np.arccos(np.clip((np.trace(c2w[:, :3, :3], axis1=1, axis2=2) - 1) / 2, -1, 1)))
    assert 1.0 < angle.max() < 10.0  # a few degrees
    steps = np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1)
    assert steps.max() < 1.0  # smooth


def test_tissue_points_on_surface(fixed, moving):
    for scene in (fixed, moving):
        pts = tissue_points(scene, 0.37, stride=4)
        assert pts.shape == (32 * 40, 3)
        z = surface_z(scene, pts[:, 0], pts[:, 1], 0.37)
        assert np.abs(pts[:, 2] - z).max() < 1e-3
    wide = tissue_points(fixed, 1.0, stride=8, margin=0.25)
    assert wide[:, 0].min() < tissue_points(fixed, 1.0, stride=8)[:, 0].min() - 5.0
    # at a frame time, the points of that frame's pixel centres are the gt depth
    pts = tissue_points(moving, moving.times[5], stride=1, frame=5)
    np.testing.assert_allclose(
        pts.reshape(128, 160, 3), moving.camera(5).unproject(moving.gt_depth[5].astype(np.float64)),
        atol=1e-3,
    )


def test_other_sizes_and_speed():
    sc = generate(SyntheticConfig(width=96, height=72, n_frames=3, camera="moving", seed=5))
    assert sc.images.shape == (3, 72, 96, 3)
    assert sc.K[0, 2] == 48.0 and sc.K[1, 2] == 36.0
    t0 = time.process_time()
    generate(SyntheticConfig())
    assert time.process_time() - t0 < 5.0  # ~0.3 s on one core; generous for shared CI machines


# --------------------------------------------------------------------------------------------------
# on disk


def _files(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p for p in sorted(root.rglob("*")) if p.is_file()}


def test_write_endonerf_round_trip(fixed, tmp_path):
    root = write_endonerf(fixed, tmp_path / "scene")
    assert root == (tmp_path / "scene").absolute()
    files = _files(root)
    for sub, ext in (("images", "color.png"), ("depth", "depth.png"), ("masks", "mask.png"),
                     ("gt_masks", "mask.png"), ("gt_depth", "depth.npy")):
        names = sorted(k for k in files if k.startswith(sub + "/"))
        assert names == [f"{sub}/frame-{i:06d}.{ext}" for i in range(24)]
    for i in (0, 11, 23):
        name = f"frame-{i:06d}"
        bgr = cv2.imread(str(root / "images" / f"{name}.color.png"), cv2.IMREAD_UNCHANGED)
        assert bgr.dtype == np.uint8 and bgr.shape == (128, 160, 3)
        np.testing.assert_array_equal(bgr[..., ::-1].astype(np.float32) / 255.0, fixed.images[i])
        dpng = cv2.imread(str(root / "depth" / f"{name}.depth.png"), cv2.IMREAD_UNCHANGED)
        assert dpng.dtype == np.uint16 and dpng.shape == (128, 160)
        np.testing.assert_array_equal(dpng == 0, fixed.depth[i] == 0)
        assert np.abs(dpng / 256.0 - fixed.depth[i]).max() <= 1 / 512 + 1e-6
        for sub in ("masks", "gt_masks"):
            mask = cv2.imread(str(root / sub / f"{name}.mask.png"), cv2.IMREAD_UNCHANGED)
            assert mask.dtype == np.uint8 and mask.ndim == 2
            assert set(np.unique(mask)) <= {0, 255}
            np.testing.assert_array_equal(mask == 255, fixed.tool_masks[i])
        gt = np.load(root / "gt_depth" / f"{name}.depth.npy")
        assert gt.dtype == np.float32
        np.testing.assert_array_equal(gt, fixed.gt_depth[i])
    pb = np.load(root / "poses_bounds.npy")
    assert pb.dtype == np.float64 and pb.shape == (24, 17)
    m = pb[:, :15].reshape(24, 3, 5)
    np.testing.assert_array_equal(m[:, :, :4], fixed.c2w[:, :3, :4])
    np.testing.assert_array_equal(m[:, :, 4], np.broadcast_to([128.0, 160.0, 144.0], (24, 3)))
    for i in range(24):
        d = cv2.imread(str(root / "depth" / f"frame-{i:06d}.depth.png"), cv2.IMREAD_UNCHANGED) / 256.0
        assert pb[i, 15] == d[d > 0].min() and pb[i, 16] == d[d > 0].max()
    meta = json.loads((root / "endogs_scene.json").read_text())
    assert meta["format_version"] == 1 and meta["generator"] == "endogs.data.synthetic"
    assert meta["depth_unit"] == "mm" and meta["depth_png_scale"] == 256.0
    assert meta["mask_polarity"] == "tool" and meta["camera"] == "fixed"
    assert meta["principal_point"] == [80.0, 64.0] and meta["fx"] == meta["fy"] == 144.0
    assert SyntheticConfig(**meta["config"]) == fixed.config
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp folder left


def test_write_scared_round_trip(moving, tmp_path):
    root = write_scared(moving, tmp_path / "keyframe_1")
    data = root / "data"
    bl = 4.2
    for sub, ext in (("left_finalpass", "png"), ("disparity", "tiff"), ("frame_data", "json"),
                     ("reprojection_data", "json"), ("gt_depth", "npy")):
        names = sorted(p.name for p in (data / sub).iterdir())
        assert names == [f"frame_data{i:06d}.{ext}" for i in range(24)], sub
    assert not (root / "masks").exists() and not (data / "masks").exists()
    for i in (0, 9, 23):
        name = f"frame_data{i:06d}"
        bgr = cv2.imread(str(data / "left_finalpass" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        np.testing.assert_array_equal(bgr[..., ::-1].astype(np.float32) / 255.0, moving.images[i])
        reproj = json.loads((data / "reprojection_data" / f"{name}.json").read_text())
        Q = np.array(reproj["reprojection-matrix"])
        assert Q.shape == (4, 4)
        fl, bl_q = Q[2, 3], 1.0 / Q[3, 2]
        assert fl == 144.0 and abs(bl_q - bl) < 1e-12
        assert (Q[0, 3], Q[1, 3]) == (-80.0, -64.0)
        disp = tifffile.imread(data / "disparity" / f"{name}.tiff")
        assert disp.dtype == np.float32 and disp.shape == (128, 160)
        np.testing.assert_array_equal(disp == 0, moving.depth[i] == 0)
        valid = disp > 0
        depth = fl * bl_q / disp[valid].astype(np.float64)
        np.testing.assert_allclose(depth, moving.depth[i][valid], rtol=1e-6)
        # the standard reprojection: [x y z w] = Q [u v disp 1] with (u, v) at pixel centres
        v, u = np.nonzero(valid)
        hom = np.stack([u + 0.5, v + 0.5, disp[valid], np.ones(valid.sum())]).T @ Q.T
        np.testing.assert_allclose(hom[:, 2] / hom[:, 3], moving.depth[i][valid], rtol=1e-6)
        fd = json.loads((data / "frame_data" / f"{name}.json").read_text())
        cal = fd["camera-calibration"]
        np.testing.assert_array_equal(cal["KL"], moving.K)
        np.testing.assert_array_equal(cal["KR"], moving.K)
        assert cal["DL"] == [0.0] * 5 and cal["DR"] == [0.0] * 5
        np.testing.assert_array_equal(cal["R"], np.eye(3))
        assert cal["T"] == [-bl, 0.0, 0.0]
        pose = np.array(fd["camera-pose"])
        assert pose.shape == (4, 4)
        np.testing.assert_allclose(pose, np.linalg.inv(moving.c2w[i]), atol=1e-12)
        np.testing.assert_allclose(np.linalg.inv(pose), moving.c2w[i], atol=1e-12)
        gt = np.load(data / "gt_depth" / f"{name}.npy")
        assert gt.dtype == np.float32
        np.testing.assert_array_equal(gt, moving.gt_depth[i])
    meta = json.loads((root / "endogs_scene.json").read_text())
    assert meta["baseline_mm"] == bl and meta["camera"] == "moving"
    assert meta["depth_unit"] == "mm" and meta["principal_point"] == [80.0, 64.0]


def test_write_refuses_to_overwrite_and_is_atomic(tmp_path, monkeypatch):
    cfg = SyntheticConfig(n_frames=2, width=32, height=24)
    root = tmp_path / "s"
    root.mkdir()  # an existing empty folder is fine
    write_synthetic_scene(root, config=cfg)
    before = _files(root)
    with pytest.raises(SceneExistsError) as exc:
        write_synthetic_scene(root, config=cfg)
    assert isinstance(exc.value, EndogsError) and isinstance(exc.value, FileExistsError)
    assert _files(root).keys() == before.keys()
    write_synthetic_scene(root, layout="scared", config=cfg, overwrite=True)
    assert (root / "data" / "disparity").is_dir() and not (root / "images").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(SceneExistsError):
        write_synthetic_scene(tmp_path / "file", config=cfg, overwrite=True)
    # a failure half-way leaves neither a partial scene nor a temporary folder
    calls = {"n": 0}
    real_imwrite = syn_writers._imwrite

    def flaky(path, arr):
        calls["n"] += 1
        if calls["n"] > 3:
            raise OSError("disk full")
        real_imwrite(path, arr)

    monkeypatch.setattr(syn_writers, "_imwrite", flaky)
    with pytest.raises(OSError):
        write_synthetic_scene(tmp_path / "half", config=cfg)
    assert not (tmp_path / "half").exists()
    calls["n"] = 0
    with pytest.raises(OSError):
        write_synthetic_scene(root, config=cfg, overwrite=True)
    assert (root / "data" / "disparity").is_dir()  # the old scene is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "s"]
    with pytest.raises(ValueError):
        write_synthetic_scene(tmp_path / "x", layout="llff", config=cfg)


def test_same_config_same_bytes(tmp_path):
    cfg = SyntheticConfig(n_frames=3, width=48, height=40, camera="moving")

    def digest(root: Path) -> dict:
        return {k: hashlib.sha256(p.read_bytes()).hexdigest() for k, p in _files(root).items()}

    for layout in ("endonerf", "scared"):
        a = write_synthetic_scene(tmp_path / f"a_{layout}", layout=layout, config=cfg)
        b = write_synthetic_scene(tmp_path / f"b_{layout}", layout=layout, config=cfg)
        assert digest(a) == digest(b)


def test_default_layout_configs(tmp_path):
    root = write_synthetic_scene(tmp_path / "k", layout="scared", config=None)
    meta = json.loads((root / "endogs_scene.json").read_text())
    assert meta["camera"] == "moving" and meta["config"]["n_frames"] == 24


def test_slope_bound_holds_and_wide_views_are_rejected():
    for deformation, tilt in ((0.0, 0.0), (1.0, 0.0), (2.0, 0.0), (1.0, 0.5), (0.0, -0.8)):
        cfg = SyntheticConfig(deformation=deformation, tilt=tilt, seed=3)
        model = syn_surface._SceneModel(cfg)
        x, y = np.meshgrid(np.linspace(-90, 90, 361), np.linspace(-90, 90, 361))
        for t in np.linspace(0, 1, 9):
            _, hx, hy = model.height(x, y, float(t), grad=True)
            assert np.hypot(hx, hy).max() <= syn_config._max_slope(deformation, tilt)
    with pytest.raises(ValueError, match="too wide"):
        generate(SyntheticConfig(focal_factor=0.3, deformation=2.0, n_frames=2, width=32, height=32))
    # unusual but valid: a tall, wide view passes the sampled check
    tall = generate(SyntheticConfig(width=64, height=128, n_frames=2, camera="moving"))
    pts = tall.camera(1).unproject(tall.gt_depth[1].astype(np.float64))
    assert np.abs(pts[..., 2] - surface_z(tall, pts[..., 0], pts[..., 1], 1.0)).max() < 1e-3
    strong = generate(SyntheticConfig(deformation=2.0, n_frames=3, width=64, height=48))
    pts = strong.camera(2).unproject(strong.gt_depth[2].astype(np.float64))
    assert np.abs(pts[..., 2] - surface_z(strong, pts[..., 0], pts[..., 1], 1.0)).max() < 1e-3


def test_exposure_drift_scales_each_frame_by_its_exact_gain(moving, tmp_path):
    cfg = SyntheticConfig(camera="moving", exposure_drift=0.3, image_noise=0.0)
    drift = generate(cfg)
    assert np.all(moving.exposure == 1.0)  # off by default: the images of every existing scene are unchanged
    g = drift.exposure
    assert g.shape == (cfg.n_frames,) and g[0] == 1.0
    assert np.all(np.abs(np.log(g)) <= 0.3 + 1e-12) and np.ptp(np.log(g)) > 0.1  # a real drift, within its bound
    assert np.all(np.abs(np.diff(np.log(g))) < 0.1)  # smooth from frame to frame
    # geometry, tool, depth and poses are those of the constant-exposure scene; only brightness changes
    for name in ("gt_depth", "depth", "tool_masks", "c2w", "albedo"):
        assert np.array_equal(getattr(drift, name), getattr(moving, name)), name
    for i in range(cfg.n_frames):
        ref = moving.images[i].astype(np.float64)
        ok = (ref * g[i] < 0.98) & (ref > 0.05)  # not clipped, not in the quantisation noise floor
        ratio = drift.images[i][ok] / ref[ok]
        assert abs(np.median(ratio) - g[i]) < 0.01, i
    meta_root = tmp_path / "s"
    from endogs.data.synthetic import write_endonerf

    write_endonerf(drift, meta_root)
    import json

    assert json.loads((meta_root / "endogs_scene.json").read_text())["exposure_gain"] == [float(x) for x in g]
    with pytest.raises(ValueError, match="exposure_drift"):
        SyntheticConfig(exposure_drift=2.0)


def test_cli_writes_a_tilted_rigid_scene_and_refuses_bad_values(tmp_path):
    import subprocess
    import sys

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "endogs", "synthetic", *map(str, args)], capture_output=True, text=True, timeout=120)

    r = cli(tmp_path / "s", "--width", 48, "--height", 40, "--n-frames", 3, "--camera", "moving", "--tilt", 0.5, "--deformation", 0)
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "s" / "endogs_scene.json").read_text())
    assert (meta["config"]["tilt"], meta["config"]["deformation"]) == (0.5, 0.0)
    for bad, msg in ((("--tilt", 0.9), "SyntheticConfig.tilt must be within [-0.8, 0.8], got 0.9"),
                     (("--tilt", 0.8, "--deformation", 2), "the view is too wide")):
        r = cli(tmp_path / "bad", "--width", 48, "--height", 40, "--n-frames", 3, *bad)
        assert r.returncode != 0 and msg in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (tmp_path / "bad").exists()
