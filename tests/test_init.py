"""Depth-prior initialisation: frames -> point cloud -> Gaussian parameters."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from endogs.camera import Camera
from endogs.data.types import Frame
from endogs.errors import ConfigError, DataError
from endogs.init import InitConfig, gaussians_from_point_cloud, point_cloud_from_frames, sh_to_rgb
from endogs.init.pointcloud import PointCloud

W, H, F = 48, 40, 40.0
K = np.array([[F, 0, W / 2], [0, F, H / 2], [0, 0, 1.0]])
TOOL0 = (slice(8, 30), slice(14, 32))  # rows, cols of the tool in frame 0
SLOPE, OFFSET = 0.3, 2.0  # world plane z = OFFSET + SLOPE * x


def plane_distance(xyz: np.ndarray) -> np.ndarray:
    return np.abs(xyz[:, 2] - OFFSET - SLOPE * xyz[:, 0]) / np.sqrt(1 + SLOPE**2)


def texture(xyz: np.ndarray) -> np.ndarray:
    x, y = xyz[..., 0], xyz[..., 1]
    return np.stack([0.5 + 0.4 * np.sin(4 * x), 0.5 + 0.4 * np.cos(4 * y), 0.5 + 0.3 * np.sin(2 * (x + y))], -1)


def rot_y(a: float) -> np.ndarray:
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def make_frames(n: int = 8, outliers: float = 0.0, spikes: float = 0.0, depth: bool = True) -> list[Frame]:
    """A tilted textured plane seen by a slowly moving and turning camera; frame 0 has a tool."""
    rng = np.random.default_rng(1)
    frames = []
    u, v = np.meshgrid(np.arange(W) + 0.5, np.arange(H) + 0.5)
    dirs = np.stack([(u - K[0, 2]) / F, (v - K[1, 2]) / F, np.ones_like(u)], -1)  # [H, W, 3]
    for i in range(n):
        c2w = np.eye(4)
        c2w[:3, :3] = rot_y(0.03 * i)
        c2w[:3, 3] = [0.03 * i, 0.01 * i, 0.0]
        cam = Camera(K, c2w, W, H)
        rd = dirs @ c2w[:3, :3].T  # [H, W, 3] world directions for unit z-depth
        c = c2w[:3, 3]
        d = (OFFSET + SLOPE * c[0] - c[2]) / (rd[..., 2] - SLOPE * rd[..., 0])  # z-depth [H, W]
        img = texture(c + d[..., None] * rd).astype(np.float32)
        mask = np.ones((H, W), bool)
        if i == 0:
            mask[TOOL0] = False
        else:
            mask[:, :6] = False  # the tool has moved to the left border
        d = d.astype(np.float32)
        pick = rng.random((H, W))
        d = np.where(pick < outliers, d * 0.85, d)  # off-surface but inside the depth range
        d = np.where(pick > 1 - spikes, d * 50.0, d)  # far spikes (stereo failures)
        frames.append(
            Frame(
                i,
                i / max(n - 1, 1),
                cam,
                image=lambda img=img: img,
                depth=(lambda d=d: d) if depth else None,
                mask=lambda m=mask: m,
            )
        )
    return frames


def count_in_tool(pc: PointCloud, frame0: Frame, margin: int = 2) -> int:
    uv, z = frame0.camera.project(pc.xyz.astype(np.float64))
    r, c = TOOL0
    inside = (
        (uv[:, 0] >= c.start + margin) & (uv[:, 0] < c.stop - margin) & (uv[:, 1] >= r.start + margin) & (uv[:, 1] < r.stop - margin)
    )
    return int((inside & (z > 0)).sum())


def test_points_on_surface_with_matching_colours():
    frames = make_frames()
    pc = point_cloud_from_frames(frames, InitConfig(pixel_stride=1, border_margin=0.0))
    assert pc.xyz.dtype == np.float32 and pc.rgb.dtype == np.float32
    assert len(pc) > 1000
    assert plane_distance(pc.xyz).max() < 1e-3
    assert np.abs(pc.rgb - texture(pc.xyz)).mean() < 0.01
    assert pc.rgb.min() >= 0 and pc.rgb.max() <= 1
    assert pc.frame_indices == tuple(range(8))
    lo, hi = pc.aabb
    assert pc.scale_hint == pytest.approx(0.5 * np.linalg.norm(hi - lo))
    assert 0.5 < pc.scale_hint < 5


def test_tool_region_of_frame0_filled_from_later_frames():
    frames = make_frames()
    only0 = point_cloud_from_frames(frames, InitConfig(num_frames=1, pixel_stride=1))
    assert only0.frame_indices == (0,)
    assert count_in_tool(only0, frames[0]) == 0
    clouds = {f: point_cloud_from_frames(frames, InitConfig(pixel_stride=1, fusion=f)) for f in ("all", "fill")}
    for fusion, pc in clouds.items():
        assert count_in_tool(pc, frames[0]) > 100, fusion
    # "fill" adds later points only where frame 0 has no valid tissue, so it keeps fewer points.
    assert len(clouds["fill"]) < len(clouds["all"])


def seen_by(xyz: np.ndarray, cam: Camera) -> np.ndarray:
    uv, z = cam.project(xyz.astype(np.float64))
    return (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < cam.width) & (uv[:, 1] >= 0) & (uv[:, 1] < cam.height)


def pixel_coverage(xyz: np.ndarray, cam: Camera, cell: int = 4) -> float:
    """Fraction of cell x cell pixel blocks of ``cam`` that at least one point projects into."""
    uv, _ = cam.project(xyz[seen_by(xyz, cam)].astype(np.float64))
    hit = np.zeros((cam.height // cell + 1, cam.width // cell + 1), bool)
    hit[(uv[:, 1] // cell).astype(int), (uv[:, 0] // cell).astype(int)] = True
    return float(hit[: cam.height // cell, : cam.width // cell].mean())


def test_border_band_extends_the_surface_past_every_frame():
    frames = make_frames()
    exact = dict(pixel_stride=1, voxel_size=0.0, remove_outliers=False, depth_percentiles=(0.0, 100.0))
    plain = point_cloud_from_frames(frames, InitConfig(border_margin=0.0, **exact))
    band = point_cloud_from_frames(frames, InitConfig(border_margin=0.1, **exact))
    seen = np.zeros(len(band), bool)
    for f in frames:
        seen |= seen_by(band.xyz, f.camera)
    # The frames' own points are unchanged; every added point lies outside every frame's view.
    assert seen.sum() == len(plain) and len(band) > len(plain) + 50
    np.testing.assert_array_equal(band.extrapolated, ~seen)
    assert not plain.extrapolated.any()
    # ... and the box and scale of the scene are those of the observed points.
    np.testing.assert_array_equal(band.aabb, plain.aabb)
    assert band.scale_hint == plain.scale_hint
    extra = band.xyz[~seen]
    # The band continues the surface: near the plane, with the texture of the nearest edge pixels.
    assert np.median(plane_distance(extra)) < 0.05
    assert np.abs(band.rgb[~seen] - texture(extra)).mean() < 0.1
    # A view that looks past the last frame (the camera went on moving) is covered better.
    c2w = frames[-1].camera.c2w.copy()
    c2w[:3, :3] = rot_y(0.03 * 9)
    c2w[:3, 3] = [0.03 * 9, 0.01 * 9, 0.0]
    ahead = Camera(K, c2w, W, H)
    assert pixel_coverage(band.xyz, ahead) > pixel_coverage(plain.xyz, ahead) + 0.03
    assert pixel_coverage(band.xyz, ahead) > 0.97


def test_border_band_skipped_for_a_fixed_camera():
    frames = make_frames(n=4)
    for f in frames:
        f.camera = frames[0].camera
    exact = dict(pixel_stride=1, voxel_size=0.0, remove_outliers=False)
    plain = point_cloud_from_frames(frames, InitConfig(border_margin=0.0, **exact))
    band = point_cloud_from_frames(frames, InitConfig(border_margin=0.1, **exact))
    np.testing.assert_array_equal(plain.xyz, band.xyz)


def test_point_subset_follows_the_pixel_footprint_when_the_camera_moves():
    frames = make_frames()
    base = dict(pixel_stride=1, border_margin=0.0)
    full = point_cloud_from_frames(frames, InitConfig(**base))
    centres = np.stack([f.camera.c2w[:3, 3] for f in frames])

    def nearest(xyz):
        return np.linalg.norm(xyz[:, None] - centres[None], axis=-1).min(1)

    d = nearest(full.xyz)
    near_edge, far_edge = np.quantile(d, [0.2, 0.8])
    n = len(full) // 4

    def kept_ratio(pc):  # share of the near fifth kept / share of the far fifth kept
        dk = nearest(pc.xyz)
        return ((dk <= near_edge).sum() / (d <= near_edge).sum()) / ((dk >= far_edge).sum() / (d >= far_edge).sum())

    uniform = point_cloud_from_frames(frames, InitConfig(max_points=n, footprint_power=0.0, **base))
    weighted = point_cloud_from_frames(frames, InitConfig(max_points=n, **base))
    assert len(uniform) == len(weighted) == n
    expected = (np.median(d[d >= far_edge]) / np.median(d[d <= near_edge])) ** 2  # pixel area far / near
    assert 0.85 < kept_ratio(uniform) < 1.15
    assert 0.75 * expected < kept_ratio(weighted) < 1.25 * expected and expected > 1.8
    # A fixed camera keeps the uniform subset whatever the power.
    fixed = make_frames(n=4)
    for f in fixed:
        f.camera = fixed[0].camera
    a = point_cloud_from_frames(fixed, InitConfig(max_points=300, footprint_power=0.0, **base))
    b = point_cloud_from_frames(fixed, InitConfig(max_points=300, **base))
    np.testing.assert_array_equal(a.xyz, b.xyz)


def test_frames_spread_over_sequence():
    frames = make_frames(n=10)
    pc = point_cloud_from_frames(frames, InitConfig(num_frames=4, pixel_stride=2))
    assert pc.frame_indices == (0, 3, 6, 9)


def test_outliers_removed():
    # In-range off-surface outliers: kept without outlier removal, gone with it.
    frames = make_frames(outliers=0.01)
    raw = point_cloud_from_frames(frames, InitConfig(pixel_stride=1, remove_outliers=False, depth_percentiles=(0, 100)))
    assert (plane_distance(raw.xyz) > 0.05).sum() > 20
    clean = point_cloud_from_frames(frames, InitConfig(pixel_stride=1, border_margin=0.0))
    assert plane_distance(clean.xyz).max() < 1e-3
    # Far depth spikes: dropped by the per-frame percentile clipping alone.
    frames = make_frames(spikes=0.01)
    pc = point_cloud_from_frames(frames, InitConfig(pixel_stride=1, remove_outliers=False, border_margin=0.0))
    assert plane_distance(pc.xyz).max() < 1e-3


def test_point_cap_is_seeded():
    frames = make_frames(n=4)
    a = point_cloud_from_frames(frames, InitConfig(max_points=300, seed=3))
    b = point_cloud_from_frames(frames, InitConfig(max_points=300, seed=3))
    assert len(a) == 300
    np.testing.assert_array_equal(a.xyz, b.xyz)


def test_no_depth_raises_data_error():
    with pytest.raises(DataError, match="no depth maps.*endogs prepare"):
        point_cloud_from_frames(make_frames(n=3, depth=False))
    frames = make_frames(n=2)
    for f in frames:
        f._mask.loader = lambda: np.zeros((H, W), bool)
    with pytest.raises(DataError, match="no valid tissue depth"):
        point_cloud_from_frames(frames)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(depth_percentiles=(50.0, 10.0)),
        dict(num_frames=-1),
        dict(pixel_stride=0),
        dict(voxel_size=-1.0),
        dict(max_points=0),
        dict(fusion="median"),
        dict(border_margin=-0.1),
        dict(border_margin=0.6),
        dict(footprint_power=-1.0),
        dict(footprint_power=5.0),
    ],
)
def test_init_config_validation(kwargs):
    with pytest.raises(ConfigError):
        InitConfig(**kwargs)


@pytest.mark.parametrize("sh_degree", [0, 1, 2, 3])
def test_gaussians_from_point_cloud(sh_degree):
    h = 0.1
    g = np.stack(np.meshgrid(np.arange(10), np.arange(10), indexing="ij"), -1).reshape(-1, 2) * h
    xyz = np.concatenate([g, np.zeros((100, 1))], 1)
    rgb = np.random.default_rng(0).random((100, 3))
    p = gaussians_from_point_cloud(PointCloud(xyz, rgb), sh_degree=sh_degree, init_opacity=0.1)
    k = (sh_degree + 1) ** 2
    assert p["means"].shape == (100, 3) and p["scales"].shape == (100, 3)
    assert p["quats"].shape == (100, 4) and p["opacities"].shape == (100,)
    assert p["sh0"].shape == (100, 1, 3) and p["shN"].shape == (100, k - 1, 3)
    assert all(t.dtype == torch.float32 for t in p.values())
    interior = ((g > 0) & (g < 9 * h - 1e-9)).all(1)
    torch.testing.assert_close(torch.exp(p["scales"][interior]), torch.full((int(interior.sum()), 3), h), rtol=1e-5, atol=0)
    torch.testing.assert_close(torch.sigmoid(p["opacities"]), torch.full((100,), 0.1))
    torch.testing.assert_close(p["quats"], torch.tensor([1.0, 0, 0, 0]).expand(100, 4))
    torch.testing.assert_close(sh_to_rgb(p["sh0"][:, 0]), torch.from_numpy(rgb).float())
    assert not p["shN"].any()


def test_gaussians_duplicate_points_have_finite_scales():
    xyz = np.array([[0, 0, 0], [0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    p = gaussians_from_point_cloud(PointCloud(xyz, np.full_like(xyz, 0.5)), sh_degree=0)
    assert torch.isfinite(p["scales"]).all()
