"""EndoNeRF layout (and StereoMIS after the Deform3DGS conversion, which reuses it).

```
scene/
  images/  depth/  masks/  [gt_masks/]  [gt_depth/*.npy]  poses_bounds.npy  [endogs_scene.json]
```
Files are paired by sorted order. ``poses_bounds.npy`` is (N, 17) LLFF: a 3x5 matrix [R | t | hwf]
per row (OpenCV axes, identity for EndoNeRF) followed by (near, far). Masks: 255 = tool in EndoNeRF,
255 = tissue in StereoMIS. StereoMIS's hwf column holds (cy, cx, f) instead of (H, W, f).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

import numpy as np

from endogs.camera import Camera
from endogs.data.common import (
    SCENE_META,
    bind,
    check_counts,
    check_depth_nonzero,
    check_headers,
    check_mask_polarity,
    common_size,
    cropped,
    decode_all,
    depth_bounds,
    make_scene,
    read_scene_meta,
)
from endogs.data.io import IMAGE_EXTS, check_pose, list_files, read_depth, read_mask, read_rgb, require_dir, require_file
from endogs.data.types import Scene
from endogs.errors import ConfigError, DataError

PrincipalPoint = Literal["auto", "center", "pixel-center", "stored"]


def read_poses_bounds(path: Path) -> np.ndarray:
    require_file(path, "poses_bounds.npy", "the EndoNeRF layout needs an (N, 17) LLFF pose file")
    try:
        arr = np.load(path, allow_pickle=False)
    except Exception as exc:
        raise DataError(f"cannot read poses_bounds.npy ({type(exc).__name__}); expected an (N, 17) float array", path) from None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0:
        raise DataError(f"poses_bounds.npy has shape {arr.shape}, expected (N, 17)", path)
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise DataError(f"poses_bounds.npy has dtype {arr.dtype}, expected floats", path)
    arr = arr.astype(np.float64)
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        raise DataError(f"poses_bounds.npy row {int(np.argmax(bad))} contains NaN or infinite values", path)
    return arr


def looks_like_stereomis(root: Path) -> Optional[bool]:
    """True/False when the hwf column of poses_bounds.npy tells the layout apart, None if unknown."""
    try:
        arr = np.load(root / "poses_bounds.npy", allow_pickle=False)
        h, w, _ = _first_image_shape(root)
    except Exception:
        return None
    if arr.ndim != 2 or arr.shape[1] != 17 or arr.shape[0] == 0 or not np.issubdtype(arr.dtype, np.number):
        return None
    hwf = arr[0, :15].reshape(3, 5)[:, 4]
    if np.allclose(hwf[:2], (h, w), atol=0.5):
        return False
    if 0 < hwf[0] < h and 0 < hwf[1] < w:
        return True
    return None


def _first_image_shape(root: Path):
    from endogs.data.io import image_shape

    files = list_files(root / "images", IMAGE_EXTS, "images")
    return image_shape(files[0])


def load_endonerf(
    root: Path,
    *,
    split: str = "every8",
    validate: str = "standard",
    variant: Literal["endonerf", "stereomis"] = "endonerf",
    principal_point: PrincipalPoint = "auto",
    crop_bottom: int = 0,
    mask_polarity: Optional[Literal["tool", "tissue"]] = None,
    depth_scale: Optional[float] = None,
) -> Scene:
    """Load an EndoNeRF-layout scene.

    Args:
        variant: "endonerf" (hwf = H, W, f; masks 255 = tool) or "stereomis" (hwf = cy, cx, f;
            masks 255 = tissue).
        principal_point: "center" = (W/2, H/2) as EndoGaussian/Deform3DGS; "pixel-center" =
            ((W-1)/2, (H-1)/2) as EndoSurf; "stored" = from endogs_scene.json or, for StereoMIS, the
            hwf column; "auto" = "stored" when available, else "center".
        crop_bottom: rows removed at the image bottom (EndoGS/ForPlane crop 12 on EndoNeRF).
        mask_polarity: overrides the format's polarity ("tool": 255 = tool; "tissue": 255 = tissue).
            When not given, masks that mark most pixels as tool are rejected as inverted.
        depth_scale: depth = stored value / depth_scale (default: endogs_scene.json's
            depth_png_scale, else 1 with unit "unknown").
    """
    if variant not in ("endonerf", "stereomis"):
        raise ConfigError(f"unknown EndoNeRF variant {variant!r}")
    if principal_point not in ("auto", "center", "pixel-center", "stored"):
        raise ConfigError(f"unknown principal_point {principal_point!r}; choose auto, center, pixel-center or stored")
    if mask_polarity not in (None, "tool", "tissue"):
        raise ConfigError(f"unknown mask_polarity {mask_polarity!r}; choose tool (255 = tool) or tissue (255 = tissue)")
    if crop_bottom < 0:
        raise ConfigError(f"crop_bottom must be >= 0, got {crop_bottom}")
    meta = read_scene_meta(root)
    pb_path = root / "poses_bounds.npy"
    require_dir(root / "images", "images", "an EndoNeRF scene has images/ depth/ masks/ poses_bounds.npy")
    arr = read_poses_bounds(pb_path)
    n = arr.shape[0]
    image_files = list_files(root / "images", IMAGE_EXTS, "images")
    check_counts(n, "images/", image_files, root / "images", "poses_bounds.npy")
    depth_files = list_files(root / "depth", IMAGE_EXTS + (".npy",), "depth")
    check_counts(n, "depth/", depth_files, root / "depth", "poses_bounds.npy")
    mask_files = list_files(root / "masks", IMAGE_EXTS, "masks")
    check_counts(n, "masks/", mask_files, root / "masks", "poses_bounds.npy")
    gt_mask_files = None
    if (root / "gt_masks").is_dir():
        gt_mask_files = list_files(root / "gt_masks", IMAGE_EXTS, "gt_masks")
        check_counts(n, "gt_masks/", gt_mask_files, root / "gt_masks", "poses_bounds.npy")
    gt_depth_files = None
    if (root / "gt_depth").is_dir():
        gt_depth_files = list_files(root / "gt_depth", (".npy", ".png", ".tif", ".tiff"), "gt_depth")
        check_counts(n, "gt_depth/", gt_depth_files, root / "gt_depth", "poses_bounds.npy")

    H, W = common_size(image_files, "image")
    check_headers(depth_files, (H, W), "depth map")
    check_headers(mask_files, (H, W), "mask")
    if gt_mask_files:
        check_headers(gt_mask_files, (H, W), "gt mask")
    if gt_depth_files:
        check_headers(gt_depth_files, (H, W), "gt depth")
    if crop_bottom >= H:
        raise ConfigError(f"crop_bottom {crop_bottom} removes the whole {H}-row image")

    # Intrinsics from the hwf column (identical for every frame).
    mats = arr[:, :15].reshape(n, 3, 5)
    hwf = mats[0, :, 4]
    if variant == "endonerf":
        if not np.allclose(hwf[:2], (H, W), atol=0.5):
            hint = (
                " (it looks like (cy, cx, f) of a StereoMIS conversion: load it with format='stereomis')"
                if 0 < hwf[0] < H and 0 < hwf[1] < W
                else ""
            )
            raise DataError(f"hwf column says {hwf[1]:g}x{hwf[0]:g} but the images are {W}x{H}{hint}", pb_path)
        stored_c = None
    else:
        if not (0 < hwf[0] < H and 0 < hwf[1] < W):
            raise DataError(f"hwf column {hwf.tolist()} is not (cy, cx, f) inside a {W}x{H} image as StereoMIS stores it", pb_path)
        stored_c = (float(hwf[1]), float(hwf[0]))
    f = float(hwf[2])
    if not f > 0:
        raise DataError(f"focal length in the hwf column must be positive, got {f}", pb_path)
    fx = float(meta.get("fx", f))
    fy = float(meta.get("fy", fx if "fx" in meta else f))
    if "principal_point" in meta:
        stored_c = tuple(float(v) for v in meta["principal_point"])
    mode = principal_point
    if mode == "auto":
        mode = "stored" if stored_c is not None else "center"
    if mode == "stored":
        if stored_c is None:
            raise ConfigError(f"principal_point='stored' but neither {SCENE_META} nor the hwf column stores one; use center or pixel-center")
        cx, cy = stored_c
    elif mode == "center":
        cx, cy = W / 2.0, H / 2.0
    else:
        cx, cy = (W - 1) / 2.0, (H - 1) / 2.0
    K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])

    cameras = []
    for i in range(n):
        c2w = np.eye(4)
        c2w[:3, :4] = mats[i, :, :4]
        check_pose(c2w, pb_path, f"pose of row {i}")
        cameras.append(Camera(K, c2w, W, H).cropped(bottom=crop_bottom))
    bounds = arr[:, 15:17]

    # Depth scale and unit.
    if depth_scale is None:
        depth_scale = float(meta.get("depth_png_scale", 1.0))
        depth_unit = str(meta.get("depth_unit", "unknown"))
    else:
        if not depth_scale > 0:
            raise ConfigError(f"depth_scale must be positive, got {depth_scale}")
        depth_unit = str(meta.get("depth_unit", "unknown"))

    # Mask polarity.
    default_polarity = meta.get("mask_polarity", "tool" if variant == "endonerf" else "tissue")
    polarity = mask_polarity or default_polarity
    if polarity not in ("tool", "tissue"):
        raise DataError(f"mask_polarity must be 'tool' or 'tissue', got {polarity!r}", root / SCENE_META)
    tool_white = polarity == "tool"

    crop = {"bottom": crop_bottom}
    hw = (H, W)
    image_loaders = [cropped(bind(read_rgb, p, hw), crop) for p in image_files]
    depth_loaders = [cropped(bind(read_depth, p, depth_scale, hw), crop) for p in depth_files]
    mask_loaders = [cropped(bind(read_mask, p, tool_white, hw), crop) for p in mask_files]
    gt_mask_loaders = None if gt_mask_files is None else [cropped(bind(read_mask, p, tool_white, hw), crop) for p in gt_mask_files]
    gt_depth_loaders = None if gt_depth_files is None else [cropped(bind(read_depth, p, 1.0 if p.suffix == ".npy" else depth_scale, hw), crop) for p in gt_depth_files]

    near, far = float(bounds[:, 0].min()), float(bounds[:, 1].max())
    if validate in ("standard", "full"):
        depths = decode_all(depth_loaders)
        check_depth_nonzero(depths, depth_files)
        masks = decode_all(mask_loaders)
        if mask_polarity is None:
            other = "tissue" if polarity == "tool" else "tool"
            check_mask_polarity(
                masks,
                root / "masks",
                f"255 = {polarity}",
                f"pass mask_polarity='{other}' (--mask-polarity {other})"
                + (" or load it with format='stereomis'" if variant == "endonerf" else ""),
            )
        if gt_mask_loaders is not None:
            decode_all(gt_mask_loaders)
        if not far > near:
            near, far = depth_bounds(depths)

    mask_src = f"masks/ (255 = {polarity})"
    return make_scene(
        root=root,
        fmt=variant,
        cameras=cameras,
        image_loaders=image_loaders,
        names=[p.name for p in image_files],
        depth_loaders=depth_loaders,
        mask_loaders=mask_loaders,
        eval_mask_loaders=gt_mask_loaders,
        gt_depth_loaders=gt_depth_loaders,
        split=split,
        near=near,
        far=far,
        depth_unit=depth_unit,
        mask_source=mask_src,
        eval_mask_source=f"gt_masks/ (255 = {polarity})" if gt_mask_files else mask_src,
        extras={
            "hwf": [float(v) for v in hwf],
            "principal_point_rule": mode,
            "crop_bottom": crop_bottom,
            "depth_scale": depth_scale,
            "has_scene_meta": bool(meta),
            "generator": meta.get("generator"),
        },
        validate=validate,
    )
