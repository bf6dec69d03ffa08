"""Geometry from renders: RGB-D views, virtual cameras, coloured point clouds and TSDF meshes.

All lengths are in the scene's unit (the dataset's ``depth_unit``). open3d is imported lazily
(it takes seconds) and must be 0.19 for TSDF fusion: 0.20's ``ScalableTSDFVolume`` extracts empty
meshes (see the shared STACK.md §5).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from endogs.camera import Camera
from endogs.errors import EndogsError


@dataclass
class RGBD:
    """One rendered view: ``rgb`` [H, W, 3] float32 in [0, 1], expected z-depth ``depth`` [H, W]
    float32 (0 where invalid), accumulated ``alpha`` [H, W] and ``valid`` [H, W] bool."""

    camera: Camera
    rgb: np.ndarray
    depth: np.ndarray
    alpha: np.ndarray
    valid: np.ndarray


@torch.no_grad()
def render_views(snapshot, cameras: Sequence[Camera], alpha_min: float = 0.5, background=None,
                 chunk: int = 4) -> list[RGBD]:
    """Render ``snapshot`` from same-sized cameras (``chunk`` per call) through :func:`endogs.render.render`.

    A pixel is valid where the accumulated opacity reaches ``alpha_min`` and the depth is positive
    and finite; invalid depth is 0.
    """
    from endogs.render import render

    out: list[RGBD] = []
    cams = list(cameras)
    for i in range(0, len(cams), chunk):
        part = cams[i:i + chunk]
        r = render(snapshot, part, background=background)
        rgb = r.rgb.clamp(0, 1).float().cpu().numpy()  # [C, H, W, 3]
        depth = r.depth[..., 0].float().cpu().numpy()  # [C, H, W]
        alpha = r.alpha[..., 0].float().cpu().numpy()  # [C, H, W]
        for c, cam in enumerate(part):
            valid = (alpha[c] >= alpha_min) & np.isfinite(depth[c]) & (depth[c] > 0)
            out.append(RGBD(cam, rgb[c], np.where(valid, depth[c], 0.0).astype(np.float32), alpha[c], valid))
    return out


# ------------------------------------------------------------------------------------------ cameras
def look_at(position: np.ndarray, target: np.ndarray, down_hint: np.ndarray) -> np.ndarray:
    """4x4 camera-to-world (OpenCV axes) at ``position`` looking at ``target``; ``down_hint`` picks
    the roll (the image y axis stays as close to it as possible)."""
    z = np.asarray(target, np.float64) - np.asarray(position, np.float64)
    z /= max(np.linalg.norm(z), 1e-12)
    x = np.cross(down_hint, z)
    if np.linalg.norm(x) < 1e-9:  # hint parallel to the view direction
        x = np.cross(np.array([0.0, 0.0, 1.0]) if abs(z[2]) < 0.9 else np.array([1.0, 0.0, 0.0]), z)
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    c2w = np.eye(4)
    c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3] = x, y, z, position
    return c2w


def orbit_camera(camera: Camera, distance: float, radius: float, angle: float) -> Camera:
    """``camera`` moved by ``radius`` on a circle in its image plane (angle 0 = right, pi/2 = down),
    turned to keep looking at the point ``distance`` ahead of the original camera."""
    c2w = camera.c2w
    right, down, forward, pos = c2w[:3, 0], c2w[:3, 1], c2w[:3, 2], c2w[:3, 3]
    target = pos + distance * forward
    new_pos = pos + radius * (np.cos(angle) * right + np.sin(angle) * down)
    return camera.with_pose(look_at(new_pos, target, down))


def view_distance(view: RGBD) -> float:
    """Median valid depth of a view (the distance to the tissue), or NaN when nothing is drawn."""
    d = view.depth[view.valid]
    return float(np.median(d)) if d.size else float("nan")


def same_pose(a: Camera, b: Camera, tol: float) -> bool:
    return bool(np.abs(a.c2w[:3, :3] - b.c2w[:3, :3]).max() < 1e-6 and np.linalg.norm(a.position - b.position) < tol)


# ------------------------------------------------------------------------------------- point clouds
def view_points(view: RGBD, mask: Optional[np.ndarray] = None) -> tuple[np.ndarray, np.ndarray]:
    """World points [M, 3] and colours [M, 3] of a view's valid pixels (and ``mask``, True = keep)."""
    keep = view.valid if mask is None else (view.valid & mask)
    pts = view.camera.unproject(view.depth.astype(np.float64))[keep]  # [M, 3]
    return pts, view.rgb[keep].astype(np.float64)


def extent_of(points: np.ndarray) -> float:
    """Robust size of a cloud: the diagonal of its 1st-99th percentile box (0 for < 2 points)."""
    if len(points) < 2:
        return 0.0
    lo, hi = np.percentile(points, [1, 99], axis=0)
    return float(np.linalg.norm(hi - lo))


def make_point_cloud(points: np.ndarray, colors: np.ndarray, camera_position: Optional[np.ndarray] = None,
                     normals_knn: int = 16):
    """An open3d cloud with colours and (when it has enough points) normals oriented to the camera."""
    import open3d as o3d

    pc = o3d.geometry.PointCloud()
    pc.points = o3d.utility.Vector3dVector(np.ascontiguousarray(points, np.float64))
    pc.colors = o3d.utility.Vector3dVector(np.ascontiguousarray(np.clip(colors, 0, 1), np.float64))
    if normals_knn > 0 and len(points) > normals_knn:
        pc.estimate_normals(o3d.geometry.KDTreeSearchParamKNN(knn=normals_knn))
        if camera_position is not None:
            pc.orient_normals_towards_camera_location(np.asarray(camera_position, np.float64))
    return pc


# ---------------------------------------------------------------------------------------- TSDF mesh
@dataclass
class MeshStats:
    vertices: int
    triangles: int
    components_kept: int
    components_removed: int
    triangles_removed: int
    area: float
    edge_manifold: bool
    boundary_edges: int
    boundary_loops: int  # connected chains of boundary edges: 1 for a hole-free open sheet
    hole_edges: int  # boundary edges outside the longest chain (the rim): small holes and notches

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def tsdf_mesh(views: Sequence[RGBD], voxel_size: float, sdf_trunc: Optional[float] = None,
              depth_trunc: Optional[float] = None):
    """Fuse RGB-D views into a triangle mesh with open3d's ``ScalableTSDFVolume`` (RGB8).

    Args:
        views: rendered views (invalid depth 0 is skipped).
        voxel_size: TSDF voxel edge in scene units.
        sdf_trunc: truncation distance; default 4 voxels.
        depth_trunc: ignore depth beyond this; default 1.5 x the largest valid depth.
    """
    import open3d as o3d

    if voxel_size <= 0 or not np.isfinite(voxel_size):
        raise EndogsError(f"mesh voxel size must be positive, got {voxel_size}")
    sdf_trunc = 4.0 * voxel_size if sdf_trunc is None else sdf_trunc
    if depth_trunc is None:
        dmax = max((float(v.depth.max()) for v in views if v.valid.any()), default=1.0)
        depth_trunc = 1.5 * dmax
    vol = o3d.pipelines.integration.ScalableTSDFVolume(
        voxel_length=float(voxel_size), sdf_trunc=float(sdf_trunc),
        color_type=o3d.pipelines.integration.TSDFVolumeColorType.RGB8,
    )
    for v in views:
        if not v.valid.any():
            continue
        cam = v.camera
        # open3d maps integer pixel u to x = (u - cx) / fx; endogs puts pixel centres at u + 0.5
        intr = o3d.camera.PinholeCameraIntrinsic(cam.width, cam.height, cam.fx, cam.fy, cam.cx - 0.5, cam.cy - 0.5)
        color = o3d.geometry.Image(np.ascontiguousarray((v.rgb * 255.0 + 0.5).clip(0, 255).astype(np.uint8)))
        depth = o3d.geometry.Image(np.ascontiguousarray(v.depth, dtype=np.float32))
        rgbd = o3d.geometry.RGBDImage.create_from_color_and_depth(
            color, depth, depth_scale=1.0, depth_trunc=float(depth_trunc), convert_rgb_to_intensity=False)
        vol.integrate(rgbd, intr, np.ascontiguousarray(cam.viewmat))
    return vol.extract_triangle_mesh()


def clean_mesh(mesh, min_component: float = 0.02, min_triangles: int = 16):
    """Remove degenerate/duplicate elements and connected components smaller than ``min_component``
    of the largest one (or than ``min_triangles``); returns (mesh, :class:`MeshStats`)."""
    mesh.remove_duplicated_vertices()
    mesh.remove_degenerate_triangles()
    mesh.remove_duplicated_triangles()
    removed = n_removed_tri = 0
    kept = 0
    if len(mesh.triangles):
        labels, counts, _ = mesh.cluster_connected_triangles()
        labels, counts = np.asarray(labels), np.asarray(counts)
        limit = max(min_triangles, min_component * counts.max())
        small = counts < limit
        removed, kept = int(small.sum()), int((~small).sum())
        drop = small[labels]
        n_removed_tri = int(drop.sum())
        mesh.remove_triangles_by_mask(drop)
    mesh.remove_unreferenced_vertices()
    mesh.compute_vertex_normals()
    n_tri = len(mesh.triangles)
    boundary, loops, holes = boundary_edges(np.asarray(mesh.triangles), len(mesh.vertices)) if n_tri else (0, 0, 0)
    stats = MeshStats(
        vertices=len(mesh.vertices), triangles=n_tri, components_kept=kept, components_removed=removed,
        triangles_removed=n_removed_tri, area=float(mesh.get_surface_area()) if n_tri else 0.0,
        edge_manifold=bool(mesh.is_edge_manifold(allow_boundary_edges=True)) if n_tri else False,
        boundary_edges=boundary, boundary_loops=loops, hole_edges=holes,
    )
    return mesh, stats


def boundary_edges(triangles: np.ndarray, n_vertices: int) -> tuple[int, int, int]:
    """Boundary edges of a triangle list [T, 3]: (count, connected chains, edges outside the longest chain)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    edges = np.sort(np.concatenate([triangles[:, [0, 1]], triangles[:, [1, 2]], triangles[:, [2, 0]]]), axis=1)
    uniq, cnt = np.unique(edges, axis=0, return_counts=True)
    b = uniq[cnt == 1]  # [E, 2]
    if not len(b):
        return 0, 0, 0
    graph = coo_matrix((np.ones(len(b)), (b[:, 0], b[:, 1])), shape=(n_vertices, n_vertices))
    _, labels = connected_components(graph, directed=False)
    per_chain = np.bincount(labels[b[:, 0]])  # edges per chain
    per_chain = per_chain[per_chain > 0]
    return int(len(b)), int(len(per_chain)), int(len(b) - per_chain.max())
