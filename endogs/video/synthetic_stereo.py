"""Synthetic stereo endoscope video with exact ground truth, to test ``endogs prepare`` end to end.

:func:`write_stereo_video` renders the left and right views of a :mod:`endogs.data.synthetic` scene
through a realistic, imperfect stereo rig (:class:`StereoRig`: distorted lenses, different
intrinsics, a slightly rotated right camera, principal points 4 % of the width apart as on SCARED)
and writes what a user has: a stereo video (or image folders) plus ``endoscope_calibration.yaml``;
and, in ``gt/``, what the user never has: the true poses and depth.

Layout written::

    rgb.mp4                      top-bottom stack (top = left), as SCARED's data/rgb.mp4   [layout "top-bottom"]
    rgb.mp4                      left | right                                            [layout "side-by-side"]
    left.mp4, right.mp4                                                                  [layout "two-videos"]
    left_image/frame_%05d.png, right_image/frame_%05d.png (from 00001)                    [layout "folders"]
    endoscope_calibration.yaml   OpenCV FileStorage: M1 D1 M2 D2 R T (mm), OpenCV pixel convention
    gt/c2w.npy                   [N,4,4] float64 camera-to-world of the raw left camera (mm, OpenCV axes)
    gt/depth.npy                 [N,H,W] float32 exact tissue z-depth (mm) in the raw left camera
    gt/tool_masks/frame_%05d.png 255 = tool, raw left camera (a mask folder for --masks)
    gt/frame_data/frame_data%06d.json  SCARED style: {"camera-pose": world-to-camera 4x4 (mm)}
    gt/poses.csv                 one c2w per frame: 16 values row-major, with a header
    stereo.json                  rig, scene config, fps, layout

:func:`rectified_ground_truth` gives the exact depth and poses of the *rectified* left camera that a
prepared scene describes (from the R1 and P1 that ``endogs prepare`` records).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional, Union

import cv2
import numpy as np

from endogs.data.synthetic import SyntheticScene, SyntheticView, _atomic_dir, render_view

StereoLayout = Literal["top-bottom", "side-by-side", "two-videos", "folders"]


@dataclass
class StereoRig:
    """A stereo endoscope in OpenCV conventions (integer pixel centres); x_right = R x_left + T (mm)."""

    K1: np.ndarray
    D1: np.ndarray
    K2: np.ndarray
    D2: np.ndarray
    R: np.ndarray
    T: np.ndarray

    def to_dict(self) -> dict:
        return {k: np.asarray(getattr(self, k)).tolist() for k in ("K1", "D1", "K2", "D2", "R", "T")}

    @property
    def right_from_left(self) -> np.ndarray:
        E = np.eye(4)
        E[:3, :3] = self.R
        E[:3, 3] = self.T
        return E


def default_rig(scene: SyntheticScene, distortion: bool = True) -> StereoRig:
    """The scene's camera on the left (K as generated, OpenCV convention) and an imperfect right camera."""
    W, H = scene.width, scene.height
    K1 = scene.K.copy()
    K1[:2, 2] -= 0.5  # endogs (+0.5 centres) -> OpenCV
    K2 = K1.copy()
    K2[0, 0] *= 1.006
    K2[1, 1] *= 1.004
    K2[0, 2] += 0.04 * W
    K2[1, 2] -= 0.008 * H
    if distortion:
        D1 = np.array([-0.06, 0.03, 0.0006, -0.0004, 0.0])
        D2 = np.array([-0.05, 0.02, -0.0005, 0.0003, 0.0])
    else:
        D1 = np.zeros(5)
        D2 = np.zeros(5)
    R = cv2.Rodrigues(np.array([0.003, -0.005, 0.002]))[0]
    b = float(scene.config.baseline)
    T = np.array([-b, 0.012 * b, 0.004 * b])
    return StereoRig(K1, D1, K2, D2, R, T)


def _endogs_K(K_cv: np.ndarray) -> np.ndarray:
    K = np.array(K_cv, np.float64)
    K[:2, 2] += 0.5
    return K


@dataclass
class StereoVideo:
    root: Path
    layout: str
    calibration: Path
    inputs: list[Path]  # what to pass to endogs prepare (INPUT[, --right])
    rig: StereoRig
    left: SyntheticView
    right: SyntheticView
    fps: float


def render_stereo(scene: SyntheticScene, rig: Optional[StereoRig] = None) -> tuple[StereoRig, SyntheticView, SyntheticView]:
    rig = rig or default_rig(scene)
    left = render_view(scene, _endogs_K(rig.K1), scene.c2w, dist=rig.D1, noise_stream=6)
    c2w_r = scene.c2w @ np.linalg.inv(rig.right_from_left)
    right = render_view(scene, _endogs_K(rig.K2), c2w_r, dist=rig.D2, noise_stream=7)
    return rig, left, right


def _u8(images: np.ndarray) -> np.ndarray:
    return np.round(np.clip(images, 0, 1) * 255).astype(np.uint8)


def write_video(path: Path, frames: np.ndarray, fps: float, crf: int = 12) -> None:
    """H.264 mp4 (yuv420p) of RGB uint8 frames [N,H,W,3] (even sizes) via imageio-ffmpeg."""
    import imageio_ffmpeg

    n, h, w = frames.shape[:3]
    writer = imageio_ffmpeg.write_frames(str(path), (w, h), fps=fps, quality=None, codec="libx264",
                                         macro_block_size=1, output_params=["-crf", str(crf)], ffmpeg_log_level="error")
    writer.send(None)
    for f in frames:
        writer.send(np.ascontiguousarray(f))
    writer.close()


def write_calibration_yaml(path: Path, rig: StereoRig) -> None:
    fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_WRITE)
    for name, value in (("R", rig.R), ("T", rig.T.reshape(1, 3)), ("M1", rig.K1), ("D1", rig.D1.reshape(1, -1)),
                        ("M2", rig.K2), ("D2", rig.D2.reshape(1, -1))):
        fs.write(name, np.asarray(value, np.float64))
    fs.release()


def write_stereo_video(scene: SyntheticScene, root: Union[str, Path], layout: StereoLayout = "top-bottom",
                       rig: Optional[StereoRig] = None, fps: float = 5.0, crf: int = 12,
                       overwrite: bool = False) -> StereoVideo:
    """Render ``scene`` through a stereo rig and write it as a user's stereo recording (module docstring)."""
    if layout not in ("top-bottom", "side-by-side", "two-videos", "folders"):
        raise ValueError(f"unknown layout {layout!r}")
    rig, left, right = render_stereo(scene, rig)
    L, R = _u8(left.images), _u8(right.images)
    N = scene.n_frames
    gt_mask_dir = "gt/tool_masks"

    def fill(d: Path) -> None:
        (d / "gt" / "tool_masks").mkdir(parents=True)
        (d / "gt" / "frame_data").mkdir()
        if layout == "top-bottom":
            write_video(d / "rgb.mp4", np.concatenate([L, R], axis=1), fps, crf)
        elif layout == "side-by-side":
            write_video(d / "rgb.mp4", np.concatenate([L, R], axis=2), fps, crf)
        elif layout == "two-videos":
            write_video(d / "left.mp4", L, fps, crf)
            write_video(d / "right.mp4", R, fps, crf)
        else:
            (d / "left_image").mkdir()
            (d / "right_image").mkdir()
            for i in range(N):
                cv2.imwrite(str(d / "left_image" / f"frame_{i + 1:05d}.png"), L[i][..., ::-1])
                cv2.imwrite(str(d / "right_image" / f"frame_{i + 1:05d}.png"), R[i][..., ::-1])
        write_calibration_yaml(d / "endoscope_calibration.yaml", rig)
        np.save(d / "gt" / "c2w.npy", scene.c2w)
        np.save(d / "gt" / "depth.npy", left.gt_depth.astype(np.float32))
        for i in range(N):
            cv2.imwrite(str(d / gt_mask_dir / f"frame_{i + 1:05d}.png"), left.tool_masks[i].astype(np.uint8) * 255)
            w2c = np.linalg.inv(scene.c2w[i])
            (d / "gt" / "frame_data" / f"frame_data{i:06d}.json").write_text(json.dumps({"camera-pose": w2c.tolist()}))
        with open(d / "gt" / "poses.csv", "w") as f:
            f.write(",".join(f"m{r}{c}" for r in range(4) for c in range(4)) + "\n")
            for i in range(N):
                f.write(",".join(f"{v:.12g}" for v in scene.c2w[i].ravel()) + "\n")
        cfg = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in dataclasses.asdict(scene.config).items()}
        (d / "stereo.json").write_text(json.dumps({"layout": layout, "fps": fps, "crf": crf, "n_frames": N,
                                                   "rig": rig.to_dict(), "scene_config": cfg}, indent=2) + "\n")

    root = _atomic_dir(root, overwrite, fill)
    if layout in ("top-bottom", "side-by-side"):
        inputs = [root / "rgb.mp4"]
    elif layout == "two-videos":
        inputs = [root / "left.mp4", root / "right.mp4"]
    else:
        inputs = [root]
    return StereoVideo(root, layout, root / "endoscope_calibration.yaml", inputs, rig, left, right, fps)


def rectified_ground_truth(scene: SyntheticScene, meta: dict, frames: Optional[list[int]] = None) -> tuple[SyntheticView, np.ndarray]:
    """Exact (view, relative c2w [N,4,4]) of the rectified left camera described by a prepared scene's
    ``endogs_scene.json`` (its ``rectification.R1``, intrinsics and ``source_frames``)."""
    R1 = np.asarray(meta["rectification"]["R1"], np.float64)
    frames = list(meta["source_frames"]) if frames is None else list(frames)
    K = np.array([[meta["fx"], 0, meta["principal_point"][0]], [0, meta["fy"], meta["principal_point"][1]], [0, 0, 1.0]])
    Rr = np.eye(4)
    Rr[:3, :3] = R1.T
    c2w_rect = scene.c2w[frames] @ Rr
    view = render_view(scene, K, c2w_rect, width=meta["width"], height=meta["height"], frames=np.array(frames))
    rel = np.linalg.inv(c2w_rect[0]) @ c2w_rect
    return view, rel
