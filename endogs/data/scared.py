"""SCARED (MICCAI EndoVis 2019): the MICCAI_challenge_preprocess layout and raw keyframes.

Preprocessed keyframe::

    keyframe/data/left_finalpass/*.png      rectified left RGB
    keyframe/data/disparity/*.tiff          float disparity (px); depth_mm = fl * bl / disparity
    keyframe/data/frame_data/*.json         {"camera-calibration": {KL, KR, DL, DR, R, T}, "camera-pose": 4x4 world-to-camera}
    keyframe/data/reprojection_data/*.json  {"reprojection-matrix": Q}; fl = Q[2][3], bl = 1 / Q[3][2]

Raw keyframe::

    keyframe/Left_Image.png  Right_Image.png  endoscope_calibration.yaml  [left_depth_map.tiff (XYZ mm, NaN unknown)]
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal, Optional, Union

import cv2
import numpy as np

from endogs.camera import Camera
from endogs.data.calib import read_stereo_calibration
from endogs.data.common import (
    bind,
    check_counts,
    check_depth_nonzero,
    check_headers,
    common_size,
    decode_all,
    depth_bounds,
    make_scene,
)
from endogs.data.io import IMAGE_EXTS, check_inside, check_pose, image_shape, json_matrix, list_files, read_depth, read_json, read_rgb, require_file
from endogs.data.types import Scene
from endogs.errors import ConfigError, DataError

# Frame subsampling used by EndoSurf and EndoGaussian per (dataset, keyframe).
PAPER_SKIP = {(1, 1): 2, (2, 1): 1, (3, 1): 4, (6, 1): 8, (7, 1): 8}


def scared_data_dir(root: Path) -> Optional[Path]:
    """The ``data`` folder of a preprocessed keyframe (``root/data`` or ``root`` itself)."""
    for cand in (root / "data", root):
        if (cand / "left_finalpass").is_dir() and (cand / "frame_data").is_dir():
            return cand
    return None


def paper_skip(root: Path) -> int:
    text = str(root.resolve()).replace("\\", "/")
    m = re.search(r"dataset_?(\d+)/keyframe_?(\d+)", text)
    if not m:
        raise ConfigError(f"skip='paper' needs a path with dataset_X/keyframe_Y in it to look up the peers' table; got {root}")
    key = (int(m.group(1)), int(m.group(2)))
    if key not in PAPER_SKIP:
        raise ConfigError(f"skip='paper': dataset {key[0]} keyframe {key[1]} is not in the peers' table {sorted(PAPER_SKIP)}")
    return PAPER_SKIP[key]


def disparity_to_depth(disp: np.ndarray, fl: float, bl: float, depth_range: tuple[float, float]) -> np.ndarray:
    """depth = fl * bl / disparity; 0 where the disparity is invalid or the depth outside (lo, hi]."""
    depth = np.zeros(disp.shape, dtype=np.float32)
    ok = np.isfinite(disp) & (disp > 0)
    vals = fl * bl / disp[ok].astype(np.float64)  # float64: a tiny disparity must not overflow float32
    lo, hi = depth_range
    vals[(vals <= lo) | (vals > min(hi, float(np.finfo(np.float32).max)))] = 0.0
    depth[ok] = vals.astype(np.float32)
    return depth


def tissue_from_depth(depth: np.ndarray) -> np.ndarray:
    """Valid-depth region closed with a (W/128)^2 kernel, as EndoSurf/EndoGaussian build SCARED masks."""
    k = max(1, depth.shape[1] // 128)
    valid = (depth > 0).astype(np.uint8)
    return cv2.morphologyEx(valid, cv2.MORPH_CLOSE, np.ones((k, k), np.uint8)).astype(bool)


def _load_disp_depth(path: Path, fl: float, bl: float, depth_range, hw) -> np.ndarray:
    disp = read_depth(path, 1.0, hw)
    return disparity_to_depth(disp, fl, bl, depth_range)


def _mask_from(depth_loader) -> np.ndarray:
    return tissue_from_depth(depth_loader())


def load_scared(
    root: Path,
    *,
    split: str = "every8",
    validate: str = "standard",
    skip: Union[int, Literal["paper"]] = 1,
    depth_range: tuple[float, float] = (0.0, 300.0),
    intrinsics: Literal["rectified", "KL"] = "rectified",
) -> Scene:
    """Load a preprocessed SCARED keyframe.

    Args:
        skip: keep every ``skip``-th frame; "paper" uses EndoSurf/EndoGaussian's per-keyframe table.
        depth_range: valid depth (lo, hi] in mm (EndoSurf keeps 30-300).
        intrinsics: "rectified" (from Q, matching the rectified ``left_finalpass`` images) or "KL"
            (the unrectified left intrinsics that EndoGaussian pairs with rectified images).
    """
    data = scared_data_dir(root)
    if data is None:
        raise DataError("not a SCARED keyframe: expected data/left_finalpass and data/frame_data", root)
    if skip == "paper":
        skip = paper_skip(root)
    if not isinstance(skip, int) or skip < 1:
        raise ConfigError(f"skip must be a positive integer or 'paper', got {skip!r}")
    if intrinsics not in ("rectified", "KL"):
        raise ConfigError(f"unknown intrinsics {intrinsics!r}; choose rectified or KL")
    lo, hi = (float(v) for v in depth_range)
    if not (0 <= lo < hi):
        raise ConfigError(f"depth_range must satisfy 0 <= lo < hi, got {depth_range}")

    images = list_files(data / "left_finalpass", IMAGE_EXTS, "left_finalpass")
    n_all = len(images)
    disps = list_files(data / "disparity", (".tiff", ".tif"), "disparity")
    check_counts(n_all, "disparity/", disps, data / "disparity", "left_finalpass/")
    fdata = list_files(data / "frame_data", (".json",), "frame_data")
    check_counts(n_all, "frame_data/", fdata, data / "frame_data", "left_finalpass/")
    reproj = list_files(data / "reprojection_data", (".json",), "reprojection_data")
    check_counts(n_all, "reprojection_data/", reproj, data / "reprojection_data", "left_finalpass/")
    gt_dir = data / "gt_depth"
    gts = list_files(gt_dir, (".npy",), "gt_depth") if gt_dir.is_dir() else None
    if gts is not None:
        check_counts(n_all, "gt_depth/", gts, gt_dir, "left_finalpass/")

    keep = list(range(0, n_all, skip))
    H, W = common_size(images, "image")
    check_headers(disps, (H, W), "disparity")

    cameras, depth_loaders, w2c0 = [], [], None
    for i in keep:
        meta = read_json(fdata[i])
        q = json_matrix(read_json(reproj[i]), ["reprojection-matrix"], (4, 4), reproj[i])
        fl, inv_bl = q[2, 3], q[3, 2]
        if not (fl > 0 and inv_bl != 0):
            raise DataError(f"reprojection matrix has focal {fl:g} and 1/baseline {inv_bl:g}; expected positive focal and non-zero baseline", reproj[i])
        bl = abs(1.0 / inv_bl)
        if intrinsics == "rectified":
            K = np.array([[fl, 0.0, -q[0, 3]], [0.0, fl, -q[1, 3]], [0.0, 0.0, 1.0]])
        else:
            K = json_matrix(meta, ["camera-calibration", "KL"], (3, 3), fdata[i])
        w2c = json_matrix(meta, ["camera-pose"], (4, 4), fdata[i])
        try:
            c2w = np.linalg.inv(w2c)
        except np.linalg.LinAlgError:
            raise DataError("camera-pose is singular", fdata[i]) from None
        check_pose(c2w, fdata[i], "camera-pose")
        if w2c0 is None:
            w2c0 = w2c
        cameras.append(Camera(K, w2c0 @ c2w, W, H))  # relative to the first kept frame
        depth_loaders.append(bind(_load_disp_depth, disps[i], fl, bl, (lo, hi), (H, W)))
    mask_loaders = [bind(_mask_from, ld) for ld in depth_loaders]
    if gts is not None:
        gt_loaders = [bind(read_depth, gts[i], 1.0, (H, W)) for i in keep]
    else:
        gt_loaders = depth_loaders  # the disparity is SCARED's (interpolated) structured-light ground truth

    near, far = lo, hi
    if validate in ("standard", "full"):
        depths = decode_all(depth_loaders)
        check_depth_nonzero(depths, [disps[i] for i in keep])
        near, far = depth_bounds(depths)
    return make_scene(
        root=root,
        fmt="scared",
        cameras=cameras,
        image_loaders=[bind(read_rgb, images[i], (H, W)) for i in keep],
        names=[images[i].name for i in keep],
        depth_loaders=depth_loaders,
        mask_loaders=mask_loaders,
        eval_mask_loaders=None,
        gt_depth_loaders=gt_loaders,
        split=split,
        near=near,
        far=far,
        depth_unit="mm",
        mask_source="valid depth, closed (no tool masks in SCARED)",
        eval_mask_source="valid depth, closed (no tool masks in SCARED)",
        extras={"skip": skip, "frames_on_disk": n_all, "intrinsics": intrinsics, "depth_range_mm": [lo, hi]},
        validate=validate,
    )


def _read_xyz_depth(path: Path, hw) -> np.ndarray:
    return read_depth(path, 1.0, hw, channel=2)


def load_scared_keyframe(root: Path, *, split: str = "all", validate: str = "standard", depth_range: tuple[float, float] = (0.0, 300.0)) -> Scene:
    """A raw SCARED keyframe as a one-frame scene (unrectified left image, K = M1, distortion D1)."""
    img = require_file(root / "Left_Image.png", "Left_Image.png", "a raw SCARED keyframe has Left_Image.png and endoscope_calibration.yaml")
    calib = read_stereo_calibration(require_file(root / "endoscope_calibration.yaml", "endoscope_calibration.yaml"))
    H, W, _ = image_shape(img)
    cam = Camera(calib.K1, np.eye(4), W, H, dist=calib.D1)
    depth_path = root / "left_depth_map.tiff"
    if depth_path.is_file():
        check_inside(depth_path, root)
    lo, hi = (float(v) for v in depth_range)
    depth_loaders = mask_loaders = None
    if depth_path.is_file():
        dh, dw, _ = image_shape(depth_path)
        if (dh, dw) != (H, W):
            raise DataError(f"depth map size {dw}x{dh} differs from Left_Image.png's {W}x{H}", depth_path)

        def depth_loader() -> np.ndarray:
            d = _read_xyz_depth(depth_path, (H, W))
            d[(d <= lo) | (d > hi)] = 0.0
            return d

        depth_loaders = [depth_loader]
        mask_loaders = [bind(_mask_from, depth_loader)]
    near, far = lo, hi
    if depth_loaders is not None and validate in ("standard", "full"):
        depths = decode_all(depth_loaders)
        check_depth_nonzero(depths, [depth_path])
        near, far = depth_bounds(depths)
    return make_scene(
        root=root,
        fmt="scared-keyframe",
        cameras=[cam],
        image_loaders=[bind(read_rgb, img, (H, W))],
        names=[img.name],
        depth_loaders=depth_loaders,
        mask_loaders=mask_loaders,
        eval_mask_loaders=None,
        gt_depth_loaders=depth_loaders,
        split=split,
        near=near,
        far=far,
        depth_unit="mm",
        mask_source="valid depth, closed" if depth_loaders else "none",
        eval_mask_source="valid depth, closed" if depth_loaders else "none",
        extras={"baseline_mm": calib.baseline, "distortion": calib.D1.tolist(), "right_image": (root / "Right_Image.png").is_file()},
        validate=validate,
    )
