"""Export a reconstruction: Gaussian PLYs, point clouds, TSDF meshes, depth maps and videos per time.

>>> index = export_run("outputs/runs/pulling", ExportOptions(what=("ply", "mesh"), times=(0.0, 0.5, 1.0)))
>>> index["exports"]["mesh"]["files"][0]["path"]   # relative to the output folder
'mesh/mesh_0000_t0.0000.ply'

Every file is written under a temporary name and renamed; ``OUT/index.json`` lists what was written
(paths relative to OUT, times, counts, units). Exporting another kind into the same folder later
updates the index; re-exporting a kind replaces its entry and deletes its files that were not
rewritten.

Times are normalised: frame ``i`` of ``N`` is at ``i / (N - 1)``. Views that need a camera (points,
mesh, depth, video) use the data camera of the frame nearest to the time, at the run's training
resolution unless ``downscale`` says otherwise.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Sequence, get_args

import numpy as np
import torch
import tyro
from typing_extensions import Annotated

from endogs import view
from endogs.camera import Camera
from endogs.errors import ConfigError, DataError
from endogs.eval.io import write_json
from endogs.export import geometry as G
from endogs.export.media import auto_depth_scale, depth_to_png16
from endogs.export.ply import export_splats_format, finite_rows, gaussian_ply_bytes, snapshot_to_raw
from endogs.run import DeviceName, RunFolder
from endogs.utils.fs import atomic_write, write_bytes
from endogs.utils.image import colorize_depth, downscaled_size, encode_png, resample
from endogs.utils.mp4 import Mp4Writer
from endogs.utils.progress import Progress

WHAT = ("ply", "points", "mesh", "depth", "video")
INDEX_FILE = "index.json"
INDEX_FORMAT_VERSION = 1
NEEDS_CAMERAS = ("points", "mesh", "depth", "video")


PlyFormat = Literal["inria", "compressed", "splat"]
MeshFormat = Literal["ply", "obj"]


@dataclass
class ExportOptions:
    """What to export and how; ``endogs export`` offers every field as a flag."""

    what: Annotated[tuple[str, ...], tyro.conf.arg(metavar="{ply,points,mesh,depth,video,all} [...]")] = ("ply",)
    """One or more of ply (3DGS PLY of the deformed Gaussians, for splat viewers), points (coloured tissue
    point clouds from rendered depth), mesh (TSDF-fused surface meshes), depth (16-bit PNG + float32 .npy
    depth maps), video (mp4s from the data camera and a small orbit, RGB | depth), or all; space- or
    comma-separated."""
    times: Optional[tuple[float, ...]] = None
    """Normalised times in [0, 1] (frame i of N is at i/(N-1)); default: every frame's time."""
    stride: int = 1
    """Without --times, export every stride-th frame."""
    out: Optional[Path] = None
    """The output folder; default RUN/export."""
    data: Optional[Path] = None
    """The scene folder, when it moved since training."""
    device: DeviceName = "auto"
    """Where to render; auto = CUDA when present."""
    downscale: Optional[float] = None
    """Image downscale of rendered views; default: the run's training resolution."""
    alpha_min: float = 0.5
    """Pixels with accumulated opacity below this have no depth (points, mesh, depth)."""
    mask_tools: bool = True
    """Points: drop pixels outside the frame's tissue mask (tools)."""
    ply_format: PlyFormat = "inria"
    """inria (standard 3DGS PLY), compressed (SuperSplat) or splat (antimatter15), via gsplat."""
    mesh_format: MeshFormat = "ply"
    """Mesh file format."""
    mesh_resolution: int = 256
    """TSDF voxels along the scene extent (voxel = extent / resolution, but not finer than one pixel's
    footprint at the tissue distance)."""
    voxel_size: Optional[float] = None
    """TSDF voxel edge in scene units (overrides --mesh-resolution)."""
    data_views: int = 8
    """Mesh: at most this many distinct data cameras fused per time."""
    virtual_views: int = 4
    """Mesh: extra views on a small circle around the frame's camera."""
    view_radius: float = 0.05
    """Mesh: radius of that circle as a fraction of the tissue distance."""
    min_component: float = 0.02
    """Mesh: drop connected pieces with fewer triangles than this fraction of the largest piece's."""
    depth_scale: Optional[float] = None
    """Depth: 16-bit PNG value = depth x scale; default: the largest power of two that keeps twice the
    scene's deepest depth within 65535."""
    fps: float = 10.0
    """Video frame rate."""
    orbit_radius: float = 0.1
    """Video: radius of the orbit as a fraction of the tissue distance."""
    progress: bool = True
    """Show progress (a bar on a terminal, otherwise a line every ~10 %)."""

    def __post_init__(self) -> None:
        self.what = parse_what(self.what)
        if self.times is not None:
            self.times = check_times(self.times)
        if self.stride < 1:
            raise ConfigError(f"--stride must be >= 1, got {self.stride}")
        if self.downscale is not None and not (math.isfinite(self.downscale) and self.downscale >= 1):
            raise ConfigError(f"--downscale must be >= 1, got {self.downscale}")
        if not 0.0 < self.alpha_min <= 1.0:
            raise ConfigError(f"--alpha-min must be in (0, 1], got {self.alpha_min}")
        if self.ply_format not in get_args(PlyFormat):
            raise ConfigError(f"--ply-format must be one of {', '.join(get_args(PlyFormat))}, got {self.ply_format!r}")
        if self.mesh_format not in get_args(MeshFormat):
            raise ConfigError(f"--mesh-format must be one of {', '.join(get_args(MeshFormat))}, got {self.mesh_format!r}")
        if not 8 <= self.mesh_resolution <= 4096:
            raise ConfigError(f"--mesh-resolution must be within 8..4096 voxels, got {self.mesh_resolution}")
        if self.voxel_size is not None and not (math.isfinite(self.voxel_size) and self.voxel_size > 0):
            raise ConfigError(f"--voxel-size must be > 0, got {self.voxel_size}")
        if self.data_views < 1 or self.virtual_views < 0:
            raise ConfigError("--data-views must be >= 1 and --virtual-views >= 0")
        if not 0 <= self.view_radius <= 1 or not 0 <= self.orbit_radius <= 1:
            raise ConfigError("--view-radius and --orbit-radius are fractions of the tissue distance, within [0, 1]")
        if not 0 <= self.min_component < 1:
            raise ConfigError(f"--min-component must be in [0, 1), got {self.min_component}")
        if self.depth_scale is not None and not (math.isfinite(self.depth_scale) and self.depth_scale > 0):
            raise ConfigError(f"--depth-scale must be > 0, got {self.depth_scale}")
        if not 0 < self.fps <= 240:
            raise ConfigError(f"--fps must be in (0, 240], got {self.fps}")


def parse_what(what) -> tuple[str, ...]:
    """Kinds from names, comma lists or ``all``, in canonical order; unknown names are a ConfigError."""
    if isinstance(what, str):
        what = (what,)
    names = [w.strip().lower() for item in what for w in str(item).split(",") if w.strip()]
    if not names:
        raise ConfigError(f"--what needs at least one of {', '.join(WHAT)} (or all)")
    bad = [n for n in names if n not in WHAT and n != "all"]
    if bad:
        raise ConfigError(f"--what: unknown kind {bad[0]!r}; choose from {', '.join(WHAT)} or all")
    chosen = set(WHAT) if "all" in names else set(names)
    return tuple(w for w in WHAT if w in chosen)


def check_times(times: Sequence[float]) -> tuple[float, ...]:
    """Validated normalised times (each finite, within [0, 1]); a ConfigError otherwise."""
    out = []
    for t in times:
        t = float(t)
        if not math.isfinite(t) or not 0.0 <= t <= 1.0:
            raise ConfigError(f"--times: {t:g} is outside [0, 1] (normalised time: frame i of N is at i/(N-1))")
        out.append(t)
    if not out:
        raise ConfigError("--times needs at least one time in [0, 1]")
    return tuple(out)


# ------------------------------------------------------------------------------------------ exporter
class Exporter:
    """Export a :class:`~endogs.model.scene.DynamicScene` (and, for camera-based kinds, its dataset).

    Args:
        scene: the model; rendered with :func:`endogs.render.render`.
        data: the dataset :class:`~endogs.data.types.Scene` (cameras, masks, frame times); may be None
            for ``ply`` alone.
        out_dir: the output folder.
        options: what and how; ``options.out`` is ignored here.
        unit: the length unit of the scene (the dataset's ``depth_unit``).
        background: render background (RGB triple or None for black).
        meta: extra top-level facts for the index (run folder, step, ...).
        downscale: image downscale for camera-based kinds when ``options.downscale`` is None.
    """

    def __init__(self, scene, data, out_dir: Path, options: ExportOptions, unit: Optional[str] = None,
                 background=None, meta: Optional[dict] = None, downscale: float = 1.0):
        self.scene = scene
        self.data = data
        self.out = Path(out_dir)
        self.opt = options
        self.unit = unit or (getattr(data, "depth_unit", None) if data is not None else None) or "unknown"
        self.background = background
        self.meta = dict(meta or {})
        self.downscale = float(options.downscale or downscale or 1.0)
        self._reference: dict[float, G.RGBD] = {}
        self._scale: Optional[dict[str, float]] = None
        if data is None and any(w in NEEDS_CAMERAS for w in options.what):
            raise DataError(f"--what {'/'.join(w for w in options.what if w in NEEDS_CAMERAS)} needs the run's dataset "
                            "(cameras and masks); pass --data SCENE")

    # ---------------------------------------------------------------------------------- frames
    @property
    def n_frames(self) -> int:
        return len(self.data) if self.data is not None else int(getattr(self.scene, "n_frames", 2))

    def frame_times(self) -> list[float]:
        if self.data is not None:
            return [float(f.time) for f in self.data.frames]
        n = self.n_frames
        return [0.0] if n <= 1 else [i / (n - 1) for i in range(n)]

    def times(self) -> list[float]:
        if self.opt.times is not None:
            return list(self.opt.times)
        return self.frame_times()[:: self.opt.stride]

    def nearest_frame(self, t: float) -> int:
        ft = np.asarray(self.frame_times())
        return int(np.argmin(np.abs(ft - t)))

    def _size(self) -> tuple[int, int]:
        cam = self.data.frames[0].camera
        return downscaled_size(cam.width, cam.height, self.downscale)

    def camera(self, i: int) -> Camera:
        """Frame ``i``'s camera at export resolution, at its refined pose when the run refined poses."""
        f = self.data.frames[i]
        cam = f.camera.with_pose(view.frame_pose(self.scene, i, f.time, f.camera.c2w))
        w, h = self._size()
        return cam if (w, h) == (cam.width, cam.height) else cam.resized(w, h)

    def tissue_mask(self, i: int) -> Optional[np.ndarray]:
        """The frame's evaluation mask (True = tissue) at export resolution, or None."""
        m = self.data.frames[i].eval_mask
        return None if m is None else resample(m.astype(bool), self._size(), "nearest")

    # ---------------------------------------------------------------------------------- rendering
    @torch.no_grad()
    def snapshot(self, t: float):
        return self.scene.at(float(t))

    def render(self, t: float, cameras: Sequence[Camera]) -> list[G.RGBD]:
        return G.render_views(self.snapshot(t), cameras, alpha_min=self.opt.alpha_min, background=self.background)

    def reference(self, t: float) -> G.RGBD:
        """The render at time ``t`` from the nearest frame's camera (cached)."""
        if t not in self._reference:
            self._reference = {t: self.render(t, [self.camera(self.nearest_frame(t))])[0]}
        return self._reference[t]

    def scale(self) -> dict[str, float]:
        """Scene size from the first time's reference view: tissue distance, extent, largest depth."""
        if self._scale is None:
            times = self.times()
            ref = self.reference(times[0])
            pts, _ = G.view_points(ref)
            dist = G.view_distance(ref)
            if not np.isfinite(dist) or len(pts) < 2:
                raise DataError(f"the model draws nothing from the camera of frame {self.nearest_frame(times[0])} at "
                                f"t={times[0]:g} (opacity >= {self.opt.alpha_min}); nothing to export")
            self._scale = {"distance": dist, "extent": G.extent_of(pts), "max_depth": float(ref.depth[ref.valid].max())}
            cam = ref.camera
            self._scale["pixel_footprint"] = dist / max(cam.fx, cam.fy)
        return self._scale

    def _bar(self, items, desc: str):
        items = list(items)
        with Progress(len(items), f"export {desc}", enabled=self.opt.progress) as bar:
            for x in items:
                yield x
                bar.update(1)

    @staticmethod
    def _name(prefix: str, k: int, t: float, ext: str) -> str:
        return f"{prefix}_{k:04d}_t{t:.4f}.{ext}"

    # ---------------------------------------------------------------------------------- kinds
    def export_ply(self, times: Sequence[float]) -> dict[str, Any]:
        """One 3DGS PLY per time (INRIA layout, or gsplat's compressed / splat formats)."""
        fmt = self.opt.ply_format
        ext = {"inria": "ply", "compressed": "compressed.ply", "splat": "splat"}[fmt]
        files = []
        degree = None
        for k, t in enumerate(self._bar(times, "ply")):
            raw = snapshot_to_raw(self.snapshot(t))
            degree = raw.sh_degree
            if fmt == "inria":
                data = gaussian_ply_bytes(raw)
            else:
                data = export_splats_format(raw, "ply_compressed" if fmt == "compressed" else "splat")
            rel = f"ply/{self._name('gaussians', k, t, ext)}"
            write_bytes(self.out / rel, data)
            n_ok = int(finite_rows(raw).sum())
            files.append({"path": rel, "time": t, "gaussians": n_ok, "dropped_non_finite": len(raw) - n_ok,
                          "bytes": len(data)})
        layout = {
            "inria": "3DGS PLY (INRIA): x y z nx ny nz f_dc_0..2 f_rest_* (channel-major) opacity (logit) "
                     "scale_0..2 (log) rot_0..3 (w x y z, normalised); float32 little-endian",
            "compressed": "gsplat ply_compressed (SuperSplat compressed PLY)",
            "splat": "gsplat splat (antimatter15 .splat)",
        }[fmt]
        return {"files": files, "format": fmt, "layout": layout, "sh_degree": degree, "unit": self.unit}

    def export_points(self, times: Sequence[float]) -> dict[str, Any]:
        """Per-time coloured point clouds from the rendered depth of the nearest frame's camera:
        pixels with opacity >= alpha_min, tissue only (the frame's mask) when ``mask_tools``."""
        import open3d as o3d

        files = []
        for k, t in enumerate(self._bar(times, "points")):
            i = self.nearest_frame(t)
            ref = self.reference(t)
            mask = self.tissue_mask(i) if self.opt.mask_tools else None
            pts, cols = G.view_points(ref, mask)
            rel = f"points/{self._name('points', k, t, 'ply')}" if len(pts) else None  # nothing drawn: no file
            if rel:
                pc = G.make_point_cloud(pts, cols, camera_position=ref.camera.position)
                _write_o3d(self.out / rel, lambda p: o3d.io.write_point_cloud(str(p), pc, write_ascii=False))
            files.append({"path": rel, "time": t, "frame": i, "points": int(len(pts)), "masked": mask is not None})
        return {"files": files, "unit": self.unit, "alpha_min": self.opt.alpha_min, "tissue_only": self.opt.mask_tools,
                "source": "expected depth rendered from the data camera of the nearest frame, back-projected; "
                          "colours are the rendered RGB; normals estimated (16-NN) and oriented to the camera",
                "resolution": list(self._size())}

    def mesh_cameras(self, t: float) -> tuple[list[Camera], int, int]:
        """Data cameras (distinct poses, at most ``data_views``, the nearest frame's first) and
        ``virtual_views`` cameras on a small circle around the nearest frame's camera."""
        i = self.nearest_frame(t)
        ref_cam = self.camera(i)
        sc = self.scale()
        tol = 1e-3 * sc["distance"]
        cams = [ref_cam]
        n = len(self.data)
        for j in np.unique(np.linspace(0, n - 1, min(n, self.opt.data_views)).round().astype(int)):
            if len(cams) >= self.opt.data_views:
                break
            c = self.camera(int(j))
            if not any(G.same_pose(c, o, tol) for o in cams):
                cams.append(c)
        n_data = len(cams)
        radius = self.opt.view_radius * sc["distance"]
        for v in range(self.opt.virtual_views if radius > 0 else 0):
            cams.append(G.orbit_camera(ref_cam, sc["distance"], radius, 2 * math.pi * v / self.opt.virtual_views))
        return cams, n_data, len(cams) - n_data

    def voxel_size(self) -> float:
        """``--voxel-size``, else extent / ``mesh_resolution`` but not below one pixel's footprint at
        the tissue distance (finer voxels only add vertices, not detail)."""
        if self.opt.voxel_size:
            return float(self.opt.voxel_size)
        sc = self.scale()
        return float(max(sc["extent"] / self.opt.mesh_resolution, sc["pixel_footprint"]))

    def export_mesh(self, times: Sequence[float]) -> dict[str, Any]:
        """Per-time TSDF meshes fused from rendered RGB-D (data cameras + virtual views), cleaned of
        small components."""
        import open3d as o3d

        voxel = self.voxel_size()
        trunc = 4.0 * voxel
        files = []
        for k, t in enumerate(self._bar(times, "mesh")):
            cams, n_data, n_virtual = self.mesh_cameras(t)
            views = self.render(t, cams)
            mesh = G.tsdf_mesh(views, voxel, trunc, depth_trunc=3.0 * self.scale()["max_depth"])
            mesh, stats = G.clean_mesh(mesh, self.opt.min_component)
            rel = f"mesh/{self._name('mesh', k, t, self.opt.mesh_format)}"
            if stats.triangles:
                _write_o3d(self.out / rel, lambda p: o3d.io.write_triangle_mesh(str(p), mesh, write_ascii=False,
                                                                                write_vertex_colors=True))
            else:
                rel = None
            files.append({"path": rel, "time": t, "frame": self.nearest_frame(t), "data_views": n_data,
                          "virtual_views": n_virtual, **stats.as_dict()})
        return {"files": files, "format": self.opt.mesh_format, "unit": self.unit, "voxel_size": voxel,
                "sdf_trunc": trunc, "scene_extent": self.scale()["extent"], "tissue_distance": self.scale()["distance"],
                "alpha_min": self.opt.alpha_min, "min_component": self.opt.min_component,
                "source": "open3d ScalableTSDFVolume (RGB8) of expected depth + RGB rendered at each time from the "
                          "data cameras and virtual views around the nearest frame's camera; tool pixels are not masked",
                "resolution": list(self._size())}

    def export_depth(self, times: Sequence[float]) -> dict[str, Any]:
        """Per-time rendered depth from the nearest frame's camera: float32 .npy and 16-bit PNG."""
        scale = self.opt.depth_scale or auto_depth_scale(2.0 * self.scale()["max_depth"])
        files = []
        for k, t in enumerate(self._bar(times, "depth")):
            i = self.nearest_frame(t)
            ref = self.reference(t)
            png, clipped = depth_to_png16(ref.depth, scale)
            base = f"depth/{self._name('depth', k, t, '')[:-1]}"
            write_bytes(self.out / f"{base}.png", encode_png(png))
            atomic_write(self.out / f"{base}.npy", lambda p: np.save(p, ref.depth.astype(np.float32)))
            cam = ref.camera
            files.append({"png": f"{base}.png", "npy": f"{base}.npy", "time": t, "frame": i,
                          "valid_pixels": int(ref.valid.sum()), "clipped_pixels": clipped,
                          "K": cam.K.tolist(), "c2w": cam.c2w.tolist()})
        return {"files": files, "unit": self.unit, "png_scale": scale, "png_dtype": "uint16",
                "png_meaning": f"depth [{self.unit}] = value / {scale:g}; 0 = invalid (opacity < {self.opt.alpha_min})",
                "npy_meaning": f"float32 [H, W] depth [{self.unit}], 0 = invalid",
                "depth": "expected z-depth along the optical axis (OpenCV camera: x right, y down, z forward); "
                         "K in pixels with pixel centres at +0.5, c2w camera-to-world", "tissue_only": False,
                "resolution": list(self._size())}

    def export_video(self, times: Sequence[float]) -> dict[str, Any]:
        """Two mp4s over ``times``: from the nearest frame's camera, and from a small orbit around it
        (one turn over the sequence); each frame is RGB | depth (turbo, near = red)."""
        sc = self.scale()
        ref = self.reference(times[0])
        d = ref.depth[ref.valid]
        lo, hi = np.percentile(d, [1, 99])
        pad = 0.1 * max(hi - lo, 1e-6)
        lo, hi = float(lo - pad), float(hi + pad)
        radius = self.opt.orbit_radius * sc["distance"]
        n = len(times)
        paths = {"camera": "video/camera.mp4", "orbit": "video/orbit.mp4"}
        writers = {k: Mp4Writer(self.out / p, fps=self.opt.fps) for k, p in paths.items()}
        try:
            for k, t in enumerate(self._bar(times, "video")):
                cam = self.camera(self.nearest_frame(t))
                orbit = G.orbit_camera(cam, sc["distance"], radius, 2 * math.pi * k / max(n, 1))
                for name, view in zip(("camera", "orbit"), self.render(t, [cam, orbit])):
                    frame = np.concatenate([(view.rgb * 255 + 0.5).astype(np.uint8),
                                            colorize_depth(view.depth, lo, hi, view.valid)], axis=1)
                    writers[name].write(frame)
            for w in writers.values():
                w.close()
        except BaseException:
            for w in writers.values():
                w.abort()
            raise
        files = [{"path": paths[k], "view": k, "frames": w.frames, "width": w.size[0], "height": w.size[1],
                  "fps": self.opt.fps} for k, w in writers.items()]
        return {"files": files, "times": list(times), "unit": self.unit, "depth_range": [lo, hi],
                "layout": "left: RGB, right: expected depth (turbo colour map, near = red, far = blue; black = "
                          "opacity below alpha_min)",
                "orbit": {"radius": radius, "distance": sc["distance"], "turns": 1},
                "resolution": list(self._size())}

    # ---------------------------------------------------------------------------------- driver
    def run(self) -> dict[str, Any]:
        """Export every requested kind and write ``index.json``; returns the index."""
        times = self.times()
        if not times:
            raise ConfigError("no time to export")
        self.out.mkdir(parents=True, exist_ok=True)
        exports = read_index(self.out).get("exports")
        exports = exports if isinstance(exports, dict) else {}
        for kind in self.opt.what:
            entry = getattr(self, f"export_{kind}")(times)
            entry["written_at"] = _now()
            if exports.get(kind):
                _remove_stale(self.out, exports[kind], entry)
            exports[kind] = entry
            index = {**self._header(), "exports": {k: exports[k] for k in WHAT if k in exports}}
            write_json(self.out / INDEX_FILE, index)  # after every kind: an interrupted export stays listed
        return index

    def _header(self) -> dict[str, Any]:
        from endogs import __version__

        return {"format_version": INDEX_FORMAT_VERSION, "generator": f"endogs {__version__} export", "unit": self.unit,
                "time_convention": "normalised: frame i of N at i/(N-1)", "n_frames": self.n_frames,
                "coordinates": "world frame of the dataset poses (OpenCV camera axes)", **self.meta}


# ------------------------------------------------------------------------------------------ helpers
def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _write_o3d(path: Path, write: Callable[[Path], bool]) -> None:
    """open3d writes under the final name (OBJ files record it) in a hidden folder, then we rename."""
    tmp_dir = path.parent / f".tmp-{os.getpid()}"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    tmp = tmp_dir / path.name
    try:
        if not write(tmp):
            raise OSError(f"open3d could not write {path}")
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def _entry_paths(entry: dict) -> set[str]:
    out = set()
    for f in entry.get("files", []):
        for key in ("path", "png", "npy"):
            if f.get(key):
                out.add(f[key])
    return out


def _remove_stale(out: Path, old: dict, new: dict) -> None:
    root = out.resolve()
    for rel in _entry_paths(old) - _entry_paths(new):
        p = (out / rel).resolve()
        if root in p.parents and p.is_file():  # never outside the export folder
            p.unlink()


def read_index(out: Path) -> dict[str, Any]:
    """The folder's ``index.json`` (empty when absent or unreadable)."""
    p = Path(out) / INDEX_FILE
    if not p.is_file():
        return {}
    try:
        data = json.loads(p.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def export_run(run_dir: Path, options: Optional[ExportOptions] = None) -> dict[str, Any]:
    """Load a run folder and export it (see :class:`ExportOptions`); returns the index.

    Raises:
        EndogsError: a missing or broken run, a missing dataset (for camera-based kinds), bad options.
    """
    opt = options or ExportOptions()
    run_dir = Path(run_dir)
    run, data = open_export_run(run_dir, opt)
    out = Path(opt.out) if opt.out is not None else RunFolder(run_dir).export_dir
    meta = {"run": str(run_dir.resolve()), "step": run.step, "done": run.done,
            "data": str(Path(opt.data or run.data_path).resolve()) if data is not None else None}
    cfg = run.config
    exp = Exporter(run.scene, data, out, opt, unit=getattr(data, "depth_unit", None), background=cfg.background,
                   meta=meta, downscale=float(cfg.data.downscale or 1.0))
    return exp.run()


def open_export_run(run_dir: Path, opt: ExportOptions):
    """(LoadedRun, dataset or None): the dataset is required only for camera-based kinds."""
    need_data = any(w in NEEDS_CAMERAS for w in opt.what)
    run = RunFolder(run_dir).open(opt.device, data=opt.data, need_data=need_data)
    if need_data:
        return run, run.dataset
    # the dataset only supplies the unit and the frame times here: use it when it is still there
    return run, run.try_data(opt.data)
