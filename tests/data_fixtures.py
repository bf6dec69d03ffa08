"""Tiny on-disk scenes of every supported layout, with known contents, for the data-layer tests."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import tifffile

W, H = 20, 16


def images(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, H, W, 3), dtype=np.uint8)


def tool_masks(n: int) -> np.ndarray:
    """bool [n, H, W], True = tool: a band that moves right over time (about 15 % of pixels)."""
    m = np.zeros((n, H, W), bool)
    for i in range(n):
        x0 = i % (W - 3)
        m[i, :, x0 : x0 + 3] = True
    return m


def write_rgb(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))


def write_gray(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), arr)


def endonerf(root: Path, n: int = 10, f: float = 25.0, stereomis: bool = False, with_gt_masks: bool = True) -> dict:
    """EndoNeRF layout: 8-bit depth 10 + i (0 in the top-left 2x2), tool band, identity poses."""
    imgs, tools = images(n), tool_masks(n)
    depth = np.zeros((n, H, W), np.uint8)
    for i in range(n):
        depth[i] = 10 + i
        depth[i, :2, :2] = 0
    for i in range(n):
        write_rgb(root / "images" / f"frame-{i:06d}.color.png", imgs[i])
        write_gray(root / "depth" / f"frame-{i:06d}.depth.png", depth[i])
        white = ~tools[i] if stereomis else tools[i]
        write_gray(root / "masks" / f"frame-{i:06d}.mask.png", white.astype(np.uint8) * 255)
        if with_gt_masks:
            gt = tools[i].copy()
            gt[0, 0] = True  # differs from masks/ so the tests can tell them apart
            write_gray(root / "gt_masks" / f"frame-{i:06d}.mask.png", (~gt if stereomis else gt).astype(np.uint8) * 255)
    pb = np.zeros((n, 17))
    for i in range(n):
        m = np.zeros((3, 5))
        m[:, :3] = np.eye(3)
        m[:, 4] = (H / 2 - 0.3, W / 2 + 0.7, f) if stereomis else (H, W, f)
        pb[i, :15] = m.ravel()
        pb[i, 15:] = (0.0, float(depth[i].max()))
    np.save(root / "poses_bounds.npy", pb)
    return {"images": imgs, "tools": tools, "depth": depth, "poses_bounds": pb}


def hamlyn(root: Path, n: int = 6) -> dict:
    imgs, tools = images(n, 1), tool_masks(n)
    depth = np.full((n, H, W), 500, np.uint16)
    depth[:, -1, :] = 0
    K = np.array([[30.0, 0, 9.5], [0, 31.0, 7.5], [0, 0, 1]])
    for i in range(n):
        write_rgb(root / "images" / f"{i:06d}.png", imgs[i])
        write_gray(root / "gt_masks" / f"{i:06d}.png", tools[i].astype(np.uint8) * 255)
        write_gray(root / "gt_depth" / f"{i:06d}.png", np.where(depth[i] > 0, depth[i] + i, 0).astype(np.uint16))
    np.savetxt(root / "intrinsics.txt", K)
    return {"images": imgs, "tools": tools, "depth": depth, "K": K}


def rot_z(deg: float) -> np.ndarray:
    a = np.radians(deg)
    return np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1.0]])


def scared(root: Path, n: int = 9) -> dict:
    """Preprocessed SCARED keyframe: disparity 20 px (depth = fl*bl/20), moving camera."""
    data = root / "data"
    imgs = images(n, 2)
    fl, bl, cx, cy = 40.0, 4.0, 10.3, 7.9
    Q = [[1, 0, 0, -cx], [0, 1, 0, -cy], [0, 0, 0, fl], [0, 0, 1 / bl, 0]]
    KL = [[41.0, 0, 9.0], [0, 41.0, 8.0], [0, 0, 1]]
    c2ws = []
    for i in range(n):
        c2w = np.eye(4)
        c2w[:3, :3] = rot_z(3.0 * i)
        c2w[:3, 3] = (1.0 + 0.5 * i, 2.0, -0.25 * i)
        c2ws.append(c2w)
        name = f"frame_data{i:06d}"
        write_rgb(data / "left_finalpass" / f"{name}.png", imgs[i])
        disp = np.full((H, W), 20.0, np.float32)
        disp[0, :] = 0.0  # invalid row
        disp[1, 0] = 0.1  # depth 1600 mm, beyond the valid range
        (data / "disparity").mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(data / "disparity" / f"{name}.tiff", disp)
        (data / "frame_data").mkdir(parents=True, exist_ok=True)
        calib = {"KL": KL, "KR": KL, "DL": [0] * 5, "DR": [0] * 5, "R": np.eye(3).tolist(), "T": [-bl, 0, 0]}
        (data / "frame_data" / f"{name}.json").write_text(json.dumps({"camera-calibration": calib, "camera-pose": np.linalg.inv(c2w).tolist()}))
        (data / "reprojection_data").mkdir(parents=True, exist_ok=True)
        (data / "reprojection_data" / f"{name}.json").write_text(json.dumps({"reprojection-matrix": Q}))
    return {"images": imgs, "c2w": np.stack(c2ws), "fl": fl, "bl": bl, "cx": cx, "cy": cy, "KL": np.array(KL)}


CALIB_YAML = """%YAML:1.0
---
R: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 1., 0., 0., 0., 1., 0., 0., 0., 1. ]
T: !!opencv-matrix
   rows: 3
   cols: 1
   dt: d
   data: [ -4.2, 0., 0. ]
M1: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 30., 0., 10., 0., 30., 8., 0., 0., 1. ]
D1: !!opencv-matrix
   rows: 1
   cols: 5
   dt: d
   data: [ 0.01, -0.02, 0., 0., 0.003 ]
M2: !!opencv-matrix
   rows: 3
   cols: 3
   dt: d
   data: [ 30., 0., 11., 0., 30., 8., 0., 0., 1. ]
D2: !!opencv-matrix
   rows: 1
   cols: 5
   dt: d
   data: [ 0., 0., 0., 0., 0. ]
"""


def scared_keyframe(root: Path, with_depth: bool = True) -> dict:
    root.mkdir(parents=True, exist_ok=True)
    img = images(1, 3)[0]
    write_rgb(root / "Left_Image.png", img)
    write_rgb(root / "Right_Image.png", img)
    (root / "endoscope_calibration.yaml").write_text(CALIB_YAML)
    xyz = np.zeros((H, W, 3), np.float32)
    xyz[..., 2] = 55.0
    xyz[:3, :3] = np.nan
    if with_depth:
        tifffile.imwrite(root / "left_depth_map.tiff", xyz, photometric="rgb")
    return {"image": img, "xyz": xyz}
