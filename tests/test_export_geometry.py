"""Mesh and point-cloud accuracy of endogs export against the synthetic scene's exact surface.

The model is built from ground truth, not trained (training to this accuracy takes minutes on CPU):
Gaussians sit on the true tissue surface at the ray hits of frame 0's pixel grid, and a temporal-basis
field moves each one along its ray to the true surface at every frame time. So the test measures
the export path exactly (rendering, back-projection through moving cameras, TSDF fusion, cleaning).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from endogs.data.synthetic import SyntheticConfig, generate, surface_z, tissue_points, write_endonerf

STRIDE = 2  # Gaussians on every 2nd pixel ray of frame 0


def gt_dynamic_scene(syn, stride: int = STRIDE, margin: float = 0.1, opacity: float = 0.95, size: float = 0.6):
    """A DynamicScene whose Gaussians lie on the exact tissue surface at each frame time."""
    from endogs.init.gaussians import SH_C0
    from endogs.model.config import BasisConfig
    from endogs.model.gaussians import GaussianModel
    from endogs.model.scene import DynamicScene

    cfg, T = syn.config, syn.n_frames
    P = np.stack([tissue_points(syn, float(t), stride=stride, frame=0, margin=margin) for t in syn.times])  # [T, M, 3]
    n = P.shape[1]
    uv, z = syn.camera(0).project(P[0])
    u = np.clip(uv[:, 0].astype(int), 0, cfg.width - 1)
    v = np.clip(uv[:, 1].astype(int), 0, cfg.height - 1)
    sigma = size * stride * z / cfg.fx  # about half the ray spacing
    g = GaussianModel({
        "means": torch.tensor(P[0], dtype=torch.float32),
        "scales": torch.tensor(np.log(sigma), dtype=torch.float32)[:, None].repeat(1, 3),
        "quats": torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1),
        "opacities": torch.full((n,), math.log(opacity / (1 - opacity))),
        "sh0": torch.tensor((syn.albedo[0][v, u] - 0.5) / SH_C0, dtype=torch.float32)[:, None, :],
        "shN": torch.zeros(n, 0, 3),
    })
    dc = BasisConfig(position=True, rotation=False, scale=False, color=False, num_rbf=T, max_offset=0.0)  # exact linear placement
    flat = P.reshape(-1, 3)
    scene = DynamicScene.build(g, dc, n_frames=T, aabb=np.stack([flat.min(0), flat.max(0)]))
    field = scene.deform
    phi = torch.stack([field.basis(torch.tensor(float(t))) for t in syn.times]).double()  # [T, B]
    target = torch.tensor(P - P[:1], dtype=torch.float64).reshape(T, -1) / float(field.motion_scale)  # [T, 3M]
    coef = torch.linalg.lstsq(phi, target).solution  # [B, 3M]
    with torch.no_grad():
        scene.params["deform_means"].copy_(coef.reshape(-1, n, 3).permute(1, 0, 2).float())
    return scene.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Synthetic scene with a moving camera and a tool; mesh + points exported at t = 0 and 1."""
    from endogs.data import load_scene
    from endogs.export import ExportOptions, Exporter

    root = tmp_path_factory.mktemp("export_geometry")
    syn = generate(SyntheticConfig(width=80, height=64, n_frames=5, camera="moving"))
    data = load_scene(write_endonerf(syn, root / "scene"))
    scene = gt_dynamic_scene(syn)
    for t in syn.times:  # the field reproduces the true surface at the frame times
        want = tissue_points(syn, float(t), stride=STRIDE, frame=0, margin=0.1)
        assert np.abs(scene.at(float(t)).means.detach().numpy() - want).max() < 1e-3
    opt = ExportOptions(what=("points", "mesh"), times=(0.0, 1.0), virtual_views=4, progress=False)
    index = Exporter(scene, data, root / "out", opt).run()
    return syn, data, root / "out", index


def vertical_error(syn, pts: np.ndarray, t: float) -> np.ndarray:
    """|z - surface z| above each point (an upper bound of the distance to the height-field surface)."""
    return np.abs(pts[:, 2] - surface_z(syn, pts[:, 0], pts[:, 1], t))


def test_mesh_matches_the_true_surface(exported):
    import open3d as o3d

    syn, data, out, index = exported
    entry = index["exports"]["mesh"]
    voxel = entry["voxel_size"]
    assert 0.5 < voxel < 1.0 and entry["unit"] == "mm"  # one pixel's footprint at ~55 mm with fx = 72 px
    errs = {}
    for f in entry["files"]:
        t = f["time"]
        mesh = o3d.io.read_triangle_mesh(str(out / f["path"]))
        V = np.asarray(mesh.vertices)
        # non-empty, one clean manifold sheet; at most a few tiny notches besides its rim: measurable
        assert len(V) == f["vertices"] > 1000 and len(mesh.triangles) == f["triangles"]
        assert f["edge_manifold"] and f["components_kept"] == 1
        assert f["boundary_loops"] <= 3 and f["hole_edges"] <= 0.1 * f["boundary_edges"], f
        assert f["data_views"] == 5 and f["virtual_views"] == 4  # the moving camera gives 5 distinct poses
        # accuracy: mesh -> true surface
        acc = vertical_error(syn, V, t)
        # completeness: true surface seen by the frame's camera -> mesh (exact point-to-triangle distance)
        rc = o3d.t.geometry.RaycastingScene()
        rc.add_triangles(o3d.t.geometry.TriangleMesh.from_legacy(mesh))
        gt = tissue_points(syn, t, stride=1, frame=f["frame"])
        comp = rc.compute_distance(o3d.core.Tensor(gt.astype(np.float32))).numpy()
        chamfer = 0.5 * (acc.mean() + comp.mean())
        errs[t] = (np.median(acc), np.percentile(acc, 95), np.median(comp), np.percentile(comp, 95), chamfer)
        assert np.median(acc) < 0.35 and np.percentile(acc, 95) < 0.7, errs[t]
        assert np.median(comp) < 0.3 and np.percentile(comp, 95) < 0.7, errs[t]
        assert chamfer < 0.35, errs[t]
        # the mesh is the surface at its own time: against the other time's surface it is clearly off
        wrong = vertical_error(syn, V, 1.0 - t)
        assert np.mean(wrong) > 2.0 * acc.mean(), (np.mean(wrong), acc.mean())
    print("mesh (acc median, acc p95, comp median, comp p95, chamfer) [mm]:", errs)


def test_point_clouds_match_the_true_surface_tissue_only(exported):
    import open3d as o3d

    syn, data, out, index = exported
    entry = index["exports"]["points"]
    assert entry["tissue_only"] and entry["resolution"] == [80, 64]
    for f in entry["files"]:
        t = f["time"]
        pc = o3d.io.read_point_cloud(str(out / f["path"]))
        P = np.asarray(pc.points)
        tissue = data.frames[f["frame"]].eval_mask
        assert len(P) == f["points"] == tissue.sum() and (~tissue).sum() > 50  # every tissue pixel, no tool pixel
        assert pc.has_colors() and pc.has_normals()
        err = vertical_error(syn, P, t)
        assert np.median(err) < 0.3 and np.percentile(err, 95) < 0.5, (np.median(err), np.percentile(err, 95))
        # normals face the camera
        cam = data.frames[f["frame"]].camera.position
        facing = np.einsum("ij,ij->i", np.asarray(pc.normals), cam - P)
        assert (facing > 0).all()
        print(f"points t={t}: median {np.median(err):.3f} mm, p95 {np.percentile(err, 95):.3f} mm, n={len(P)}")
