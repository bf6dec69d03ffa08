"""``endogs prepare``: video (stereo or monocular) → scene folder in EndoNeRF layout. See
:mod:`endogs.video` for the pipeline and :mod:`endogs.video.writer` for the output layout."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from endogs.config_io import to_dict
from endogs.errors import ConfigError, DataError
from endogs.utils.progress import Progress
from endogs.video.config import PrepareOptions
from endogs.video.mono import NO_MODEL_HELP, NOMINAL_MEDIAN_DEPTH, load_depth_model, relative_depth
from endogs.video.masks import MaskSource, auto_tool_mask, check_polarity
from endogs.video.poses import PoseReport, odometry_poses, read_pose_file, to_rectified
from endogs.video.rectify import find_calibration, load_calibration, mono_intrinsics, mono_rectifier, stereo_rectifier
from endogs.video.sources import open_input, select_frames
from endogs.video.stereo import StereoMatcher, auto_num_disparities, highlight_mask
from endogs.video.writer import depth_png_scale, make_preview, write_scene_files

FORMAT_VERSION = 1
GENERATOR = "endogs.video.prepare"
MIN_VALID_FRACTION = 0.02  # a frame with less valid depth than this is an error (load_scene needs depth)


@dataclass
class PrepareResult:
    root: Path
    n_frames: int
    meta: dict
    valid_fraction: list[float]
    median_depth: list[float]
    pose_report: PoseReport
    seconds: dict = field(default_factory=dict)

    def summary(self) -> str:
        vf = np.asarray(self.valid_fraction)
        md = np.asarray([m for m in self.median_depth if m > 0])
        unit = self.meta["depth_unit"]
        lines = [
            f"prepared {self.n_frames} frames {self.meta['width']}x{self.meta['height']} -> {self.root}",
            f"  intrinsics fx {self.meta['fx']:.2f} fy {self.meta['fy']:.2f} principal point "
            f"({self.meta['principal_point'][0]:.2f}, {self.meta['principal_point'][1]:.2f})",
            f"  depth ({unit}): valid {100 * vf.mean():.1f}% (min {100 * vf.min():.1f}%), per-frame median "
            f"{md.min():.1f}-{md.max():.1f}" if md.size else "  depth: none valid",
            f"  poses: {self.pose_report.method}"
            + (f", {len(self.pose_report.failures)} fallback step(s) at frames "
               f"{[f['frame'] for f in self.pose_report.failures]}" if self.pose_report.failures else "")
            + (f", pose graph with {self.pose_report.keyframe_edges} keyframe edges" if self.pose_report.pose_graph else ""),
            "  time: " + ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items()),
        ]
        return "\n".join(lines)


def _resize(img: np.ndarray, size: Optional[tuple[int, int]], nearest: bool = False) -> np.ndarray:
    if size is None or (img.shape[1], img.shape[0]) == tuple(size):
        return img
    return cv2.resize(img, tuple(size), interpolation=cv2.INTER_NEAREST if nearest else cv2.INTER_AREA)


def prepare_scene(input: Path, out: Path, opts: Optional[PrepareOptions] = None,
                  log: Callable[[str], None] = lambda s: None, depth_model_loader=None) -> PrepareResult:
    """Turn a video or image sequence into a scene folder (atomically: a temporary folder renamed at the end)."""
    from endogs.data.synthetic import _atomic_dir

    opts = opts or PrepareOptions()
    opts.validate()
    t0 = time.perf_counter()
    seconds: dict[str, float] = {}
    input = Path(input)
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not opts.overwrite:
        raise ConfigError(f"{out}: the output folder exists and is not empty; pass --overwrite or choose another --out")
    if out.resolve() == input.resolve() or input.resolve() in out.resolve().parents:
        raise ConfigError(f"{out}: the output folder must not be the input or inside it")

    # ---- input, calibration, frames
    calib_path = opts.calib
    if calib_path is not None and not Path(calib_path).is_file():
        raise DataError("missing calibration file", calib_path)
    if calib_path is None and opts.layout != "mono":
        calib_path = find_calibration(input, opts.right)
    inp = open_input(input, opts.right, opts.layout, calib_path is not None, opts.swap)
    if inp.stereo and calib_path is None:
        raise ConfigError(f"{input}: stereo input needs a calibration: pass --calib FILE (OpenCV YAML with M1 D1 M2 D2 R T, "
                          "or JSON)")
    indices, stride = select_frames(inp, opts.start, opts.end, opts.stride, opts.fps)
    in_size = inp.view_size
    size = tuple(opts.resize) if opts.resize is not None else in_size
    W, H = size
    log(f"prepare: {inp.describe()}, {len(indices)} frames (input {indices[0]}..{indices[-1]}, stride {stride}), "
        f"{in_size[0]}x{in_size[1]}" + (f" -> {W}x{H}" if size != in_size else ""))

    if inp.stereo:
        calib = load_calibration(calib_path, size, opts.calib_size, input_size=in_size)
        rect = stereo_rectifier(calib, size)
        nd = opts.num_disparities or auto_num_disparities(rect.K[0, 0], rect.baseline, opts.depth_min)
        if nd >= W - 16:
            raise ConfigError(f"the disparity range ({nd} px for --depth-min {opts.depth_min:g} mm) leaves no room in "
                              f"{W} px wide images; raise --depth-min or set --num-disparities")
        matcher = StereoMatcher(rect.Q, W, nd, opts.block_size, opts.lr_max_diff, opts.depth_min, opts.depth_max,
                                opts.highlight_threshold, opts.highlight_dilate)
        log(f"prepare: calibration {calib_path}; rectified fx {rect.K[0, 0]:.2f}, baseline {rect.baseline:.3f} mm, "
            f"SGBM {nd} disparities")
        depth_unit = "mm"
        estimator = None
    else:
        if calib_path is not None:
            calib = load_calibration(calib_path, size, opts.calib_size, input_size=in_size)
            rect = mono_rectifier(calib.K1, calib.D1, size)
        else:
            rect = mono_rectifier(mono_intrinsics(opts.focal, size), None, size)
        if opts.depth_model is None:
            raise ConfigError(f"{input}: {NO_MODEL_HELP}")

        estimator = (depth_model_loader or load_depth_model)(opts.depth_model)
        matcher, nd = None, None
        depth_unit = "relative"

    # ---- poses: fail fast on options and pose files before the heavy work
    pose_mode = opts.poses
    pose_file = None
    if pose_mode not in ("identity", "odometry"):
        pose_file = Path(pose_mode)
        raw_poses = read_pose_file(pose_file, indices, opts.pose_convention, opts.pose_unit)
        pose_mode = "file"
    elif pose_mode == "odometry" and not inp.stereo:
        raise ConfigError("--poses odometry needs metric stereo depth; with monocular input use --poses identity or a "
                          "pose file")

    # ---- masks
    mask_src = None
    if opts.masks not in ("none", "auto"):
        mask_src = MaskSource(Path(opts.masks), opts.mask_polarity, inp.count, in_size)
        if mask_src.reader.kind == "video":
            mask_src.load(indices)

    # ---- per frame: rectify, depth, masks
    images, depths, tools, usable = [], [], [], []
    valid_frac, med_depth, labels = [], [], []
    hl_frac = []
    t1 = time.perf_counter()
    bar = Progress(len(indices), "prepare: depth", write=log)  # a line every ~10 % of the frames
    for idx, left, right in inp.pairs(indices):
        left = _resize(left, size)
        L = rect.left(left)
        if inp.stereo:
            R = rect.right(_resize(right, size))
            res = matcher.compute(L, R)
            depth, valid, hl = res.depth, res.valid, res.highlights
        else:
            hl = highlight_mask(L, opts.highlight_threshold, int(round(opts.highlight_dilate * W / 640)))
            depth = relative_depth(estimator(L))
            depth[hl] = 0
            valid = depth > 0
        if mask_src is not None:
            m = _resize(mask_src.get(idx).astype(np.uint8), size, nearest=True)
            tool = rect.left(m, cv2.INTER_NEAREST) > 0
        elif opts.masks == "auto":
            tool = auto_tool_mask(L)
        else:
            tool = np.zeros((H, W), bool)
        vf = float(valid.mean())
        if vf < MIN_VALID_FRACTION:
            hint = ("; the views may be swapped (--swap) or the calibration may not belong to this video"
                    if inp.stereo else "")
            raise DataError(f"input frame {idx}: only {100 * vf:.1f}% of the pixels got a valid depth{hint}",
                            inp.left.path)
        images.append(L)
        depths.append(depth)
        tools.append(tool)
        usable.append(valid & ~tool)
        valid_frac.append(vf)
        med_depth.append(float(np.median(depth[valid])))
        hl_frac.append(float(hl.mean()))
        labels.append(idx)
        bar.update(1, valid=f"{100 * vf:.0f}%", median=f"{med_depth[-1]:.1f} {depth_unit}")
    if not images:
        raise DataError(f"the input ended before frame {indices[0]}; it has fewer frames than it states", inp.left.path)
    if len(images) < len(indices):
        log(f"warning: the input ended after {len(images)} of {len(indices)} frames")
        indices = indices[: len(images)]
        if pose_file is not None:
            raw_poses = raw_poses[: len(images)]
    if mask_src is not None:
        warn = check_polarity([float(t.mean()) for t in tools], str(mask_src.path), opts.mask_polarity)
        if warn:
            raise DataError(warn)
    seconds["depth"] = time.perf_counter() - t1

    # ---- poses
    t2 = time.perf_counter()
    if pose_mode == "identity":
        c2w = np.tile(np.eye(4), (len(images), 1, 1))
        report = PoseReport("identity")
    elif pose_mode == "file":
        c2w = to_rectified(raw_poses, rect.R1)
        report = PoseReport(f"file:{pose_file}")
    else:
        log(f"prepare: odometry over {len(images)} frames")
        c2w, report = odometry_poses(images, depths, usable, rect.K, depth_max_mm=opts.depth_max,
                                     max_step_mm=opts.max_step_mm, max_step_deg=opts.max_step_deg,
                                     keyframe_every=opts.keyframe_every, frame_labels=labels, log=log)
    seconds["poses"] = time.perf_counter() - t2

    # ---- metadata and writing
    K = rect.K_endogs
    fps = inp.fps
    meta = {
        "format_version": FORMAT_VERSION,
        "generator": GENERATOR,
        "layout": "endonerf",
        "depth_unit": depth_unit,
        "depth_png_scale": depth_png_scale(opts.depth_max if inp.stereo else 20 * NOMINAL_MEDIAN_DEPTH),
        "mask_polarity": "tool",
        "fx": float(K[0, 0]),
        "fy": float(K[1, 1]),
        "principal_point": [float(K[0, 2]), float(K[1, 2])],
        "width": W,
        "height": H,
        "n_frames": len(images),
        "time_convention": "i/(N-1)",
        "source_frames": [int(i) for i in labels],
        "timestamps_s": [i / fps for i in labels] if fps else None,
        "source": {"input": str(input), "right": None if opts.right is None else str(opts.right), "layout": inp.layout,
                   "swap": opts.swap, "calibration": None if calib_path is None else str(calib_path), "fps": fps,
                   "stride": stride, "input_size": list(in_size), "resize": None if opts.resize is None else list(size)},
        "rectification": rect.to_dict(),
        "depth": ({"method": "StereoSGBM 3-way, left-padded, LR check", "num_disparities": nd,
                   "block_size": opts.block_size, "lr_max_diff_px": opts.lr_max_diff, "depth_min_mm": opts.depth_min,
                   "depth_max_mm": opts.depth_max, "highlight_threshold": opts.highlight_threshold}
                  if inp.stereo else {"method": "monocular model", "model": str(opts.depth_model),
                                      "note": "relative depth: median scaled to 50, larger = farther"}),
        "masks": {"method": "file" if mask_src is not None else opts.masks,
                  "path": None if mask_src is None else str(mask_src.path),
                  "polarity_of_source": opts.mask_polarity if mask_src is not None else None},
        "poses": report.to_dict(),
        "stats": {"valid_fraction": valid_frac, "median_depth": med_depth, "highlight_fraction": hl_frac,
                  "tool_fraction": [float(t.mean()) for t in tools]},
        "options": to_dict(opts),
    }
    failures = [f["frame"] for f in report.failures]
    preview = make_preview(images, depths, tools, c2w, labels, depth_unit, failures) if opts.preview else None
    t3 = time.perf_counter()
    root = _atomic_dir(out, opts.overwrite,
                       lambda d: write_scene_files(d, images, depths, tools, c2w, float(K[0, 0]), meta, preview))
    seconds["write"] = time.perf_counter() - t3
    seconds["total"] = time.perf_counter() - t0
    return PrepareResult(root, len(images), meta, valid_frac, med_depth, report, seconds)
