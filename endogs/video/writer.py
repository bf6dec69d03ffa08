"""Writing a prepared scene in the EndoNeRF layout that ``endogs.data.load_scene`` reads, plus a preview.

```
scene/
  images/frame-%06d.color.png   rectified left RGB, 8-bit
  depth/frame-%06d.depth.png    uint16 = round(depth_mm * depth_png_scale), 0 = invalid
  masks/frame-%06d.mask.png     255 = tool, 0 = tissue (all zero without masks)
  poses_bounds.npy              (N, 17): c2w 3x4 (OpenCV axes, mm, frame 0 = identity) | (H, W, fx); near, far
  endogs_scene.json             exact fx, fy, principal point (+0.5 pixel-centre convention), depth unit and
                                scale, mask polarity, source frames, rectification, stereo settings, pose report
  preview.png                   frames | depth | masks, and the camera trajectory
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from endogs.utils.image import colorize_depth


def depth_png_scale(depth_max_mm: float) -> float:
    """256 (1/256 mm steps) when depths up to ``depth_max_mm`` fit in uint16, else the largest integer that does."""
    return 256.0 if depth_max_mm * 256.0 <= 65535 else float(max(1, int(65535 // depth_max_mm)))


def poses_bounds_rows(c2w: np.ndarray, hw: tuple[int, int], fx: float, depths_q: list[np.ndarray]) -> np.ndarray:
    N = len(c2w)
    out = np.zeros((N, 17), np.float64)
    hwf = np.array([hw[0], hw[1], fx], np.float64)
    for i in range(N):
        out[i, :15] = np.concatenate([c2w[i, :3, :4], hwf[:, None]], axis=1).reshape(-1)
        v = depths_q[i][depths_q[i] > 0]
        out[i, 15:] = (float(v.min()), float(v.max())) if v.size else (0.0, 0.0)
    return out


def write_scene_files(d: Path, images: list[np.ndarray], depths: list[np.ndarray], tool_masks: list[np.ndarray],
                      c2w: np.ndarray, fx: float, meta: dict, preview: Optional[np.ndarray]) -> None:
    """Fill folder ``d`` (the temporary folder of an atomic write)."""
    for sub in ("images", "depth", "masks"):
        (d / sub).mkdir()
    scale = float(meta["depth_png_scale"])
    quantised = []
    for i, (img, dep, m) in enumerate(zip(images, depths, tool_masks)):
        name = f"frame-{i:06d}"
        _imwrite(d / "images" / f"{name}.color.png", img[..., ::-1])
        q = np.clip(np.round(dep.astype(np.float64) * scale), 0, 65535).astype(np.uint16)
        _imwrite(d / "depth" / f"{name}.depth.png", q)
        quantised.append(q.astype(np.float64) / scale)
        _imwrite(d / "masks" / f"{name}.mask.png", m.astype(np.uint8) * 255)
    H, W = images[0].shape[:2]
    np.save(d / "poses_bounds.npy", poses_bounds_rows(c2w, (H, W), fx, quantised))
    (d / "endogs_scene.json").write_text(json.dumps(meta, indent=2) + "\n")
    if preview is not None:
        _imwrite(d / "preview.png", preview[..., ::-1])


def _imwrite(path: Path, arr: np.ndarray) -> None:
    if not cv2.imwrite(str(path), np.ascontiguousarray(arr), [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"cv2.imwrite failed for {path}")


# ------------------------------------------------------------------------------------------- preview
def _label(img: np.ndarray, text: str) -> np.ndarray:
    img = img.copy()
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(img, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
    return img


def _trajectory_panel(c2w: np.ndarray, width: int, height: int, failures: list[int]) -> np.ndarray:
    """Camera centres seen from above (x right, z up the panel) and from the front (x, -y)."""
    panel = np.full((height, width, 3), 255, np.uint8)
    pos = c2w[:, :3, 3]
    half = width // 2
    for k, (a, b, name) in enumerate(((0, 2, "top view: x (right) / z (forward)"), (0, 1, "front view: x / y (down)"))):
        x0 = k * half
        box = (x0 + 30, 25, half - 45, height - 45)
        cv2.rectangle(panel, (box[0], box[1]), (box[0] + box[2], box[1] + box[3]), (200, 200, 200), 1)
        cv2.putText(panel, name, (x0 + 30, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        p = pos[:, [a, b]].copy()
        span = max(float(np.ptp(p, axis=0).max()), 1e-3)
        centre = (p.max(0) + p.min(0)) / 2
        s = 0.9 * min(box[2], box[3]) / span
        pix = np.empty_like(p)
        pix[:, 0] = box[0] + box[2] / 2 + (p[:, 0] - centre[0]) * s
        pix[:, 1] = box[1] + box[3] / 2 + (p[:, 1] - centre[1]) * s * (-1 if b == 2 else 1)
        pts = np.round(pix).astype(np.int32)
        cv2.polylines(panel, [pts.reshape(-1, 1, 2)], False, (40, 90, 200), 1, cv2.LINE_AA)
        for i, q in enumerate(pts):
            colour = (220, 30, 30) if i in failures else ((0, 160, 0) if i == 0 else (40, 90, 200))
            cv2.circle(panel, tuple(int(v) for v in q), 3 if i in failures or i == 0 else 2, colour, -1, cv2.LINE_AA)
        cv2.putText(panel, f"extent {span:.2f} mm", (box[0], box[1] + box[3] + 15), cv2.FONT_HERSHEY_SIMPLEX, 0.4,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return panel


def make_preview(images: list[np.ndarray], depths: list[np.ndarray], tool_masks: list[np.ndarray], c2w: np.ndarray,
                 labels: list[int], depth_unit: str, failures: list[int], tile_width: int = 320) -> np.ndarray:
    """RGB uint8 preview: up to 4 evenly spaced frames (image, depth, tool overlay) and the trajectory."""
    N = len(images)
    picks = sorted(set(np.linspace(0, N - 1, min(4, N)).round().astype(int).tolist()))
    H, W = images[0].shape[:2]
    th = int(round(H * tile_width / W))
    vals = np.concatenate([d[d > 0][:: max(1, d.size // 5000)] for d in depths if (d > 0).any()] or [np.zeros(1)])
    lo, hi = (np.percentile(vals, 2), np.percentile(vals, 98)) if vals.size > 1 else (0.0, 1.0)
    rows = []
    for i in picks:
        img = images[i]
        ov = img.copy()
        m = tool_masks[i]
        ov[m] = (0.5 * ov[m] + np.array([0, 0, 127])).astype(np.uint8)
        tiles = [_label(img, f"frame {i} (input {labels[i]})"), _label(colorize_depth(depths[i], lo, hi),
                 f"depth {lo:.0f}-{hi:.0f} {depth_unit}, valid {100 * (depths[i] > 0).mean():.0f}%"),
                 _label(ov, f"tool mask {100 * m.mean():.1f}%")]
        rows.append(np.concatenate([cv2.resize(t, (tile_width, th), interpolation=cv2.INTER_AREA) for t in tiles], 1))
    grid = np.concatenate(rows, 0)
    traj = _trajectory_panel(c2w, grid.shape[1], 260, failures)
    return np.concatenate([grid, traj], 0)
