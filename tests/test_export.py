"""endogs export on a tiny trained run: PLY round trip, depth maps, videos, index, one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from endogs.cli import main
from endogs.export.cli import export

COMMANDS = {"export": export}
# A run that trains in a few seconds: 300 Gaussians with SH degree 1, a temporal-basis field.
TINY = {
    "iterations": 6, "coarse_iterations": 2, "device": "cpu", "log_every": 1, "sh_degree": 1, "sh_degree_interval": 1,
    "strategy": {"enabled": False}, "init": {"max_points": 300, "num_frames": 3, "remove_outliers": False},
    "deform": {"kind": "basis", "num_rbf": 4},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from endogs.config_io import merge
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene
    from endogs.train import TrainConfig, Trainer

    root = tmp_path_factory.mktemp("export")
    scene = write_synthetic_scene(root / "scene", config=SyntheticConfig(width=48, height=40, n_frames=6))
    Trainer.create(merge(TrainConfig(), TINY), scene, root / "run").train(progress=False)
    return scene, root / "run"


def one_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("endogs: error: "), lines[0]
    return lines[0]


def test_ply_round_trip_reproduces_renders(trained, tmp_path, capsys):
    """Export PLYs, read them back with plyfile alone, rebuild Snapshots, render: same images."""
    from plyfile import PlyData

    from endogs.data import load_scene
    from endogs.export import ply_property_names, read_gaussian_ply, raw_to_snapshot
    from endogs.render import render
    from endogs.snapshot import Snapshot
    from endogs.run import load_run

    scene_dir, run = trained
    out = tmp_path / "exp"
    times = [0.0, 0.4, 1.0]
    assert main(["export", str(run), "--what", "ply", "--times", *map(str, times), "--out", str(out), "--quiet"],
                commands=COMMANDS) == 0
    assert capsys.readouterr().out.strip() == f"index: {out / 'index.json'}"
    index = json.loads((out / "index.json").read_text())
    entry = index["exports"]["ply"]
    assert [f["time"] for f in entry["files"]] == times and entry["sh_degree"] == 1 and index["unit"] == "mm"
    assert index["step"] == 6 and index["run"] == str(run.resolve())
    assert not list(out.rglob(".*tmp*"))

    model = load_run(run, "cpu").scene
    cam = load_scene(scene_dir).frames[2].camera
    for f in entry["files"]:
        path = out / f["path"]
        v = PlyData.read(str(path))["vertex"]
        names = list(v.data.dtype.names)
        assert names == ply_property_names(1)  # INRIA order: x y z nx ny nz f_dc f_rest(9) opacity scale rot
        assert len(v.data) == f["gaussians"] == model.num_gaussians
        assert all(v.data.dtype[n] == np.dtype("<f4") for n in names)
        assert not np.any([v[n] for n in ("nx", "ny", "nz")])
        col = lambda *ks: torch.tensor(np.stack([v[k] for k in ks], 1))  # noqa: E731
        rest = col(*[f"f_rest_{i}" for i in range(9)]).reshape(-1, 3, 3).transpose(1, 2)  # channel-major
        snap = Snapshot(
            means=col("x", "y", "z"),
            quats=torch.nn.functional.normalize(col("rot_0", "rot_1", "rot_2", "rot_3"), dim=-1),
            scales=torch.exp(col("scale_0", "scale_1", "scale_2")),
            opacities=torch.sigmoid(col("opacity")[:, 0]),
            colors=torch.cat([col("f_dc_0", "f_dc_1", "f_dc_2")[:, None], rest], 1),
            sh_degree=1,
        )
        with torch.no_grad():
            ref = render(model.at(f["time"]), cam)
            got = render(snap, cam)
            mine = render(raw_to_snapshot(read_gaussian_ply(path)), cam)
        assert (ref.alpha > 0.5).float().mean() > 0.3  # the view shows the model
        for r in (got, mine):
            assert torch.allclose(r.rgb, ref.rgb, atol=2e-4), (r.rgb - ref.rgb).abs().max()
            assert torch.allclose(r.alpha, ref.alpha, atol=2e-4)
            assert torch.allclose(r.depth, ref.depth, atol=1e-3)
    # the snapshot at t=0.4 differs from t=0 (the field is deformed), so the files are per time
    a, b = (read_gaussian_ply(out / f["path"]).means for f in entry["files"][:2])
    assert not torch.allclose(a, b)


def test_inria_payload_matches_gsplat_exporter():
    """Our PLY = gsplat.export_splats' PLY plus the three zero normal columns (SH degrees 0 and 2)."""
    from gsplat import export_splats

    from endogs.export import gaussian_ply_bytes, snapshot_to_raw
    from endogs.export.ply import export_splats_format
    from endogs.snapshot import Snapshot

    g = torch.Generator().manual_seed(0)
    for degree in (0, 2):
        n, k = 50, (degree + 1) ** 2
        snap = Snapshot(means=torch.randn(n, 3, generator=g), quats=torch.randn(n, 4, generator=g),
                        scales=torch.rand(n, 3, generator=g) + 0.01, opacities=torch.rand(n, generator=g) * 0.98 + 0.01,
                        colors=torch.randn(n, k, 3, generator=g), sh_degree=degree)
        raw = snapshot_to_raw(snap)
        assert torch.allclose(torch.sigmoid(raw.opacities), snap.opacities, atol=1e-6)
        assert torch.allclose(torch.exp(raw.scales), snap.scales, rtol=1e-5)
        ours = gaussian_ply_bytes(raw)
        body = np.frombuffer(ours[ours.index(b"end_header\n") + 11:], "<f4").reshape(n, -1)
        assert not body[:, 3:6].any()
        if degree:
            theirs = export_splats(raw.means, raw.scales, raw.quats, raw.opacities, raw.sh0, raw.shN)
            ref = np.frombuffer(theirs[theirs.index(b"end_header\n") + 11:], "<f4").reshape(n, -1)
            assert np.array_equal(np.delete(body, [3, 4, 5], axis=1), ref)
        assert export_splats_format(raw, "ply_compressed").startswith(b"ply\n")
        assert len(export_splats_format(raw, "splat")) == 32 * n  # antimatter15: 32 bytes per splat
    # saturated opacities stay finite
    sat = snapshot_to_raw(Snapshot(means=torch.zeros(2, 3), quats=torch.tensor([[1.0, 0, 0, 0]] * 2),
                                   scales=torch.ones(2, 3), opacities=torch.tensor([0.0, 1.0]), colors=torch.zeros(2, 3)))
    assert torch.isfinite(sat.opacities).all() and sat.sh_degree == 0


def test_all_kinds_depth_video_and_index(trained, tmp_path):
    import cv2
    import imageio_ffmpeg
    import open3d as o3d

    from endogs.data import load_scene
    from endogs.eval.evaluate import render_numpy as render_frame
    from endogs.run import load_run

    scene_dir, run = trained
    out = tmp_path / "all"
    args = ["export", str(run), "--what", "all", "--times", "0", "0.2", "1", "--out", str(out), "--quiet",
            "--virtual-views", "2", "--mesh-format", "obj"]
    assert main(args, commands=COMMANDS) == 0
    index = json.loads((out / "index.json").read_text())
    ex = index["exports"]
    assert list(ex) == ["ply", "points", "mesh", "depth", "video"]
    for kind, entry in ex.items():
        for f in entry["files"]:
            for key in ("path", "png", "npy"):
                if f.get(key):
                    assert (out / f[key]).is_file() and (out / f[key]).stat().st_size > 0, (kind, f)
    assert not list(out.rglob(".*tmp*"))

    # depth: frame 1 is at t = 0.2; the .npy equals a fresh render, the PNG holds depth * scale
    d = ex["depth"]
    f = d["files"][1]
    assert f["frame"] == 1 and d["unit"] == "mm" and d["png_dtype"] == "uint16"
    data = load_scene(scene_dir)
    _, ref_depth = render_frame(load_run(run, "cpu").scene, 0.2, data.frames[1].camera)
    npy = np.load(out / f["npy"])
    png = cv2.imread(str(out / f["png"]), cv2.IMREAD_UNCHANGED)
    assert npy.dtype == np.float32 and npy.shape == (40, 48) and png.dtype == np.uint16 and png.shape == (40, 48)
    valid = npy > 0
    assert valid.sum() == f["valid_pixels"] > 0.5 * valid.size
    assert np.allclose(npy[valid], ref_depth[valid], atol=1e-3)
    assert np.all(png[~valid] == 0)
    assert np.abs(png[valid] / d["png_scale"] - npy[valid]).max() <= 0.5 / d["png_scale"] + 1e-6
    assert np.allclose(np.array(f["K"]), data.frames[1].camera.K)

    # points: tissue only, coloured, world units
    p = ex["points"]["files"][0]
    pc = o3d.io.read_point_cloud(str(out / p["path"]))
    assert len(pc.points) == p["points"] > 0 and pc.has_colors() and pc.has_normals()
    tool = ~data.frames[0].eval_mask
    assert tool.any() and p["points"] <= (~tool).sum()
    # mesh (obj): non-empty
    m = ex["mesh"]["files"][0]
    assert m["path"].endswith(".obj") and m["triangles"] > 0 and m["virtual_views"] == 2
    assert len(o3d.io.read_triangle_mesh(str(out / m["path"])).triangles) == m["triangles"]

    # videos decode with the expected frame count and size (RGB | depth side by side)
    for v in ex["video"]["files"]:
        reader = imageio_ffmpeg.read_frames(str(out / v["path"]))
        meta = next(reader)
        frames = [np.frombuffer(fr, np.uint8).reshape(meta["size"][1], meta["size"][0], 3) for fr in reader]
        assert len(frames) == v["frames"] == 3
        assert tuple(meta["size"]) == (v["width"], v["height"]) == (96, 40)
        assert frames[0][:, :48].mean() > 5 and frames[0][:, 48:].mean() > 5
    cam_frames = ex["video"]["files"][0]

    # re-exporting one kind replaces its entry, keeps the others, removes its stale files
    args = ["export", str(run), "--what", "depth", "--times", "0.5", "--out", str(out), "--quiet"]
    assert main(args, commands=COMMANDS) == 0
    index2 = json.loads((out / "index.json").read_text())
    assert [f["time"] for f in index2["exports"]["depth"]["files"]] == [0.5]
    assert index2["exports"]["video"]["files"][0] == cam_frames
    assert sorted(p.name for p in (out / "depth").iterdir()) == ["depth_0000_t0.5000.npy", "depth_0000_t0.5000.png"]


def test_default_times_are_the_frames_and_ply_needs_no_dataset(trained, tmp_path, capsys):
    import shutil

    import yaml

    scene_dir, run = trained
    moved = tmp_path / "run"
    shutil.copytree(run, moved)
    raw = yaml.safe_load((moved / "run.yaml").read_text())
    raw["data"] = str(tmp_path / "gone")
    (moved / "run.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    assert main(["export", str(moved), "--stride", "2", "--quiet"], commands=COMMANDS) == 0
    index = json.loads((moved / "export" / "index.json").read_text())
    assert [f["time"] for f in index["exports"]["ply"]["files"]] == [0.0, 0.4, 0.8]
    # camera-based kinds need the dataset: a one-line error naming --data
    assert main(["export", str(moved), "--what", "points"], commands=COMMANDS) == 2
    assert "--data" in one_error_line(capsys.readouterr().err)
    assert main(["export", str(moved), "--what", "points", "--data", str(scene_dir), "--times", "1", "--quiet"],
                commands=COMMANDS) == 0


@pytest.mark.parametrize(
    "args, expect",
    [
        (["--what", "nurbs"], "unknown kind 'nurbs'"),
        (["--what", "ply,mesh,gif"], "unknown kind 'gif'"),
        (["--times", "0.5", "1.5"], "1.5 is outside [0, 1]"),
        (["--times", "-0.25"], "-0.25 is outside [0, 1]"),
        (["--stride", "0"], "--stride"),
    ],
)
def test_bad_options_are_one_line_errors(trained, capsys, args, expect):
    _, run = trained
    assert main(["export", str(run), *args], commands=COMMANDS) == 2
    assert expect in one_error_line(capsys.readouterr().err)


def test_missing_run_exits_2_with_one_line(tmp_path):
    code = ("import sys; from endogs.cli import main; from endogs.export.cli import export; "
            "sys.exit(main(sys.argv[1:], commands={'export': export}))")
    missing = tmp_path / "no_run"
    r = subprocess.run([sys.executable, "-c", code, "export", str(missing), "--what", "mesh"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert one_error_line(r.stderr).startswith(f"endogs: error: {missing}: no such run folder")
    not_run = tmp_path / "folder"
    not_run.mkdir()
    assert main(["export", str(not_run)], commands=COMMANDS) == 2
