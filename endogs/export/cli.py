"""``endogs export`` (a typed function; the lead registers it in endogs/cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Literal, Optional

import tyro
from typing_extensions import Annotated

Positional = tyro.conf.Positional


def export(
    run: Positional[Path],
    what: Annotated[tuple[str, ...], tyro.conf.arg(metavar="{ply,points,mesh,depth,video,all} [...]")] = ("ply",),
    times: Optional[tuple[float, ...]] = None,
    stride: int = 1,
    out: Optional[Path] = None,
    data: Optional[Path] = None,
    device: Literal["auto", "cpu", "cuda"] = "auto",
    downscale: Optional[float] = None,
    alpha_min: float = 0.5,
    mask_tools: bool = True,
    ply_format: Literal["inria", "compressed", "splat"] = "inria",
    mesh_format: Literal["ply", "obj"] = "ply",
    mesh_resolution: int = 256,
    voxel_size: Optional[float] = None,
    data_views: int = 8,
    virtual_views: int = 4,
    fps: float = 10.0,
    orbit_radius: float = 0.1,
    quiet: bool = False,
) -> None:
    """Export a trained run: Gaussian PLYs, point clouds, meshes, depth maps or videos per time.

    Writes OUT/ply/, points/, mesh/, depth/, video/ and OUT/index.json (what was written: paths,
    times, counts, units). Lengths are in the dataset's depth unit.

    Args:
        run: the run folder (with run.yaml and checkpoint.pt).
        what: one or more of ply (3DGS PLY of the deformed Gaussians, for splat viewers), points
            (coloured tissue point clouds from rendered depth), mesh (TSDF-fused surface meshes), depth
            (16-bit PNG + float32 .npy depth maps), video (mp4s from the data camera and a small orbit,
            RGB | depth), or all; space- or comma-separated.
        times: normalised times in [0, 1] (frame i of N is at i/(N-1)); default: every frame's time.
        stride: without --times, export every stride-th frame.
        out: the output folder; default RUN/export.
        data: the scene folder, when it moved since training.
        device: where to render; auto = CUDA when present.
        downscale: image downscale of rendered views; default: the run's training resolution.
        alpha_min: pixels with accumulated opacity below this have no depth (points, mesh, depth).
        mask_tools: points: drop pixels outside the frame's tissue mask (tools).
        ply_format: inria (standard 3DGS PLY), compressed (SuperSplat) or splat (antimatter15), via gsplat.
        mesh_format: ply or obj.
        mesh_resolution: TSDF voxels along the scene extent (voxel = extent / resolution, but not
            finer than one pixel's footprint at the tissue distance).
        voxel_size: TSDF voxel edge in scene units (overrides --mesh-resolution).
        data_views: mesh: at most this many distinct data cameras fused per time.
        virtual_views: mesh: extra views on a small circle around the frame's camera.
        fps: video frame rate.
        orbit_radius: video: radius of the orbit as a fraction of the tissue distance.
        quiet: no progress bars; print only the index path.
    """
    from endogs.export.exporter import INDEX_FILE, ExportOptions, export_run

    opt = ExportOptions(
        what=what, times=times, stride=stride, out=out, data=data, device=device, downscale=downscale,
        alpha_min=alpha_min, mask_tools=mask_tools, ply_format=ply_format, mesh_format=mesh_format,
        mesh_resolution=mesh_resolution, voxel_size=voxel_size, data_views=data_views,
        virtual_views=virtual_views, fps=fps, orbit_radius=orbit_radius, progress=not quiet,
    )
    index = export_run(run, opt)
    from endogs.run import RunFolder

    out_dir = Path(out) if out is not None else RunFolder(run).export_dir
    if not quiet:
        for kind in opt.what:
            entry = index["exports"][kind]
            n = sum(1 for f in entry["files"] if f.get("path") or f.get("png"))
            print(f"{kind}: {n} file(s) in {out_dir / kind}", file=sys.stderr)
    print(f"index: {out_dir / INDEX_FILE}")
