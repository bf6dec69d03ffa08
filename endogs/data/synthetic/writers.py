"""The two on-disk layouts (EndoNeRF, SCARED keyframe) and the atomic folder writes."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Optional, Union

import cv2
import numpy as np

from endogs.data.synthetic.config import DEPTH_PNG_SCALE, FORMAT_VERSION, SceneExistsError, SyntheticConfig, SyntheticLayout, SyntheticScene, _GENERATOR
from endogs.data.synthetic.render import generate
from endogs.utils.fs import disk_full_is_one_line

def _metadata(scene: SyntheticScene, layout: str) -> dict:
    cfg = scene.config
    return {
        "format_version": FORMAT_VERSION,
        "generator": _GENERATOR,
        "layout": layout,
        "depth_unit": "mm",
        "depth_png_scale": DEPTH_PNG_SCALE,
        "mask_polarity": "tool",
        "camera": cfg.camera,
        "principal_point": [float(scene.K[0, 2]), float(scene.K[1, 2])],
        "fx": float(scene.K[0, 0]),
        "fy": float(scene.K[1, 1]),
        "width": scene.width,
        "height": scene.height,
        "n_frames": scene.n_frames,
        "time_convention": "i/(N-1)",
        "exposure_gain": [float(g) for g in scene.exposure],
        "config": {
            k: (v.item() if isinstance(v, np.generic) else v) for k, v in dataclasses.asdict(cfg).items()
        },
    }


def _write_json(path: Path, obj, indent: Optional[int] = 2) -> None:
    path.write_text(json.dumps(obj, indent=indent) + "\n")


def _imwrite(path: Path, arr: np.ndarray) -> None:
    if not cv2.imwrite(str(path), arr, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"cv2.imwrite failed for {path}")


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.round(np.clip(img, 0, 1) * 255.0).astype(np.uint8)[..., ::-1])


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """uint16 depth PNG values: round(depth_mm * 256), 0 = invalid (and clipped to 65535)."""
    return np.clip(np.round(np.asarray(depth, np.float64) * DEPTH_PNG_SCALE), 0, 65535).astype(np.uint16)


def _atomic_dir(root: Union[str, Path], overwrite: bool, fill) -> Path:
    """Run ``fill(tmp_dir)`` then move tmp_dir to ``root`` in one rename."""
    root = Path(root).absolute()
    if root.exists():
        if not root.is_dir():
            raise SceneExistsError("exists and is not a folder; choose another output path", root)
        if any(root.iterdir()) and not overwrite:
            raise SceneExistsError("already exists and is not empty; pass overwrite=True (--overwrite)", root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = root.parent / f".{root.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        with disk_full_is_one_line(root):
            fill(tmp)
        old = None
        if root.exists():
            old = root.parent / f".{root.name}.old-{tag}"
            os.rename(root, old)
        try:
            os.rename(tmp, root)
        except BaseException:
            if old is not None:
                os.rename(old, root)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def poses_bounds(scene: SyntheticScene) -> np.ndarray:
    """The (N,17) float64 ``poses_bounds.npy`` rows: [c2w 3x4 | hwf] row-major, then near, far.

    near/far are the min/max of the valid noisy depth as stored in the depth PNG (0 if none is valid).
    """
    N = scene.n_frames
    out = np.zeros((N, 17), np.float64)
    hwf = np.array([scene.height, scene.width, scene.K[0, 0]], np.float64)
    q = depth_to_png16(scene.depth).astype(np.float64) / DEPTH_PNG_SCALE
    for i in range(N):
        m = np.concatenate([scene.c2w[i, :3, :4], hwf[:, None]], axis=1)
        valid = q[i][q[i] > 0]
        near, far = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 0.0)
        out[i, :15] = m.reshape(-1)
        out[i, 15:] = (near, far)
    return out


def write_endonerf(scene: SyntheticScene, root: Union[str, Path], overwrite: bool = False) -> Path:
    """Write ``scene`` in the EndoNeRF layout (atomically) and return ``root``.

    Layout::

        images/frame-%06d.color.png   RGB 8-bit
        depth/frame-%06d.depth.png    uint16, round(depth_mm * 256), 0 = invalid
        masks/frame-%06d.mask.png     uint8, 255 = tool, 0 = tissue
        gt_masks/frame-%06d.mask.png  same (evaluation masks)
        gt_depth/frame-%06d.depth.npy float32 [H,W] exact tissue depth (mm)
        poses_bounds.npy              (N,17) float64, c2w in OpenCV axes (no LLFF swap) + hwf, near, far
        endogs_scene.json             metadata
    """

    def fill(d: Path) -> None:
        for sub in ("images", "depth", "masks", "gt_masks", "gt_depth"):
            (d / sub).mkdir()
        png16 = depth_to_png16(scene.depth)
        for i in range(scene.n_frames):
            name = f"frame-{i:06d}"
            _imwrite(d / "images" / f"{name}.color.png", _to_bgr8(scene.images[i]))
            _imwrite(d / "depth" / f"{name}.depth.png", png16[i])
            mask = scene.tool_masks[i].astype(np.uint8) * 255
            _imwrite(d / "masks" / f"{name}.mask.png", mask)
            _imwrite(d / "gt_masks" / f"{name}.mask.png", mask)
            np.save(d / "gt_depth" / f"{name}.depth.npy", scene.gt_depth[i].astype(np.float32))
        np.save(d / "poses_bounds.npy", poses_bounds(scene))
        _write_json(d / "endogs_scene.json", _metadata(scene, "endonerf"))

    return _atomic_dir(root, overwrite, fill)


def reprojection_matrix(fx: float, cx: float, cy: float, baseline: float) -> np.ndarray:
    """Rectified-stereo Q: fl = Q[2,3], bl = 1/Q[3,2], disparity = fl*bl/depth."""
    return np.array(
        [[1.0, 0, 0, -cx], [0, 1.0, 0, -cy], [0, 0, 0, fx], [0, 0, 1.0 / baseline, 0]], np.float64
    )


def write_scared(scene: SyntheticScene, root: Union[str, Path], overwrite: bool = False) -> Path:
    """Write ``scene`` as a SCARED keyframe folder, MICCAI_challenge_preprocess style; return ``root``.

    Layout::

        data/left_finalpass/frame_data%06d.png      RGB 8-bit
        data/disparity/frame_data%06d.tiff          float32 disparity px = fl*bl/depth_mm, 0 = invalid
        data/frame_data/frame_data%06d.json         {"camera-calibration": {KL, KR, DL, DR, R, T=[-bl,0,0]},
                                                     "camera-pose": 4x4 world-to-camera (mm)}
        data/reprojection_data/frame_data%06d.json  {"reprojection-matrix": Q}
        data/gt_depth/frame_data%06d.npy            float32 exact tissue depth (mm)
        endogs_scene.json                           metadata + "baseline_mm"

    There are no tool masks (as in SCARED), though the tool is in the images and the depth.
    """
    import tifffile

    bl = float(scene.config.baseline)
    fl = float(scene.K[0, 0])
    Q = reprojection_matrix(fl, float(scene.K[0, 2]), float(scene.K[1, 2]), bl)
    K = scene.K.tolist()
    calib = {
        "KL": K,
        "KR": K,
        "DL": [0.0] * 5,
        "DR": [0.0] * 5,
        "R": np.eye(3).tolist(),
        "T": [-bl, 0.0, 0.0],
    }

    def fill(d: Path) -> None:
        data = d / "data"
        subs = ("left_finalpass", "disparity", "frame_data", "reprojection_data", "gt_depth")
        for sub in subs:
            (data / sub).mkdir(parents=True)
        for i in range(scene.n_frames):
            name = f"frame_data{i:06d}"
            _imwrite(data / "left_finalpass" / f"{name}.png", _to_bgr8(scene.images[i]))
            dep = scene.depth[i].astype(np.float64)
            with np.errstate(divide="ignore"):
                disp = np.where(dep > 0, fl * bl / dep, 0.0).astype(np.float32)
            tifffile.imwrite(data / "disparity" / f"{name}.tiff", disp)
            w2c = np.linalg.inv(scene.c2w[i])
            _write_json(data / "frame_data" / f"{name}.json",
                        {"camera-calibration": calib, "camera-pose": w2c.tolist()}, indent=None)
            _write_json(data / "reprojection_data" / f"{name}.json", {"reprojection-matrix": Q.tolist()},
                        indent=None)
            np.save(data / "gt_depth" / f"{name}.npy", scene.gt_depth[i].astype(np.float32))
        meta = _metadata(scene, "scared")
        meta["baseline_mm"] = bl
        _write_json(d / "endogs_scene.json", meta)

    return _atomic_dir(root, overwrite, fill)


def write_synthetic_scene(
    root: Union[str, Path],
    layout: SyntheticLayout = "endonerf",
    config: Optional[SyntheticConfig] = None,
    overwrite: bool = False,
) -> Path:
    """Generate a scene and write it to ``root`` in ``layout``; returns ``root``.

    The default config for the SCARED layout uses the moving camera (SCARED sequences move).
    """
    if layout not in ("endonerf", "scared"):
        raise ValueError(f"layout must be 'endonerf' or 'scared', got {layout!r}")
    if config is None:
        config = SyntheticConfig(camera="moving" if layout == "scared" else "fixed")
    scene = generate(config)
    writer = write_endonerf if layout == "endonerf" else write_scared
    return writer(scene, root, overwrite=overwrite)
