"""Depth maps as 16-bit PNG and videos (imageio-ffmpeg), written atomically."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

PNG_MAX = 65535


def auto_depth_scale(max_depth: float) -> float:
    """The largest power of two ``s`` with ``max_depth * s <= 65535`` (PNG value = depth * s)."""
    if not np.isfinite(max_depth) or max_depth <= 0:
        return 1.0
    return float(2.0 ** math.floor(math.log2(PNG_MAX / max_depth)))


def depth_to_png16(depth: np.ndarray, scale: float) -> tuple[np.ndarray, int]:
    """uint16 ``round(depth * scale)`` (0 stays 0 = invalid) and the number of pixels clipped at 65535."""
    v = np.round(np.asarray(depth, np.float64) * scale)
    clipped = int((v > PNG_MAX).sum())
    return np.clip(v, 0, PNG_MAX).astype(np.uint16), clipped


def encode_png(img: np.ndarray) -> bytes:
    """PNG bytes of a uint16/uint8 grey image or an RGB uint8 image."""
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - cv2 failure
        raise RuntimeError("PNG encoding failed")
    return buf.tobytes()


def colorize_depth(depth: np.ndarray, valid: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """uint8 RGB [H, W, 3]: near = bright (turbo colour map over [lo, hi]), invalid = black."""
    x = (hi - np.asarray(depth, np.float64)) / max(hi - lo, 1e-12)
    x = (np.clip(x, 0, 1) * 255 + 0.5).astype(np.uint8)
    rgb = cv2.cvtColor(cv2.applyColorMap(x, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[~valid] = 0
    return rgb


def to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    return (np.clip(np.nan_to_num(img, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


class Mp4Writer:
    """H.264 mp4 through imageio-ffmpeg, written to a temporary name and renamed on :meth:`close`.

    Odd frame sizes are padded to even (yuv420p needs it); ``size`` reports the padded size.
    :meth:`abort` (or an exception inside a ``with`` block) removes the temporary file.
    """

    def __init__(self, path: Path, fps: float = 10.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.stem}.tmp-{os.getpid()}{self.path.suffix}")
        self.fps = float(fps)
        self.frames = 0
        self.size: Optional[tuple[int, int]] = None  # (width, height)
        self._gen = None

    def write(self, frame: np.ndarray) -> None:
        import imageio_ffmpeg

        fr = to_uint8(np.asarray(frame))
        h, w = fr.shape[:2]
        fr = np.pad(fr, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge") if (h % 2 or w % 2) else fr
        if self._gen is None:
            self.size = (fr.shape[1], fr.shape[0])
            self._gen = imageio_ffmpeg.write_frames(
                str(self.tmp), self.size, fps=self.fps, codec="libx264", pix_fmt_out="yuv420p", quality=8,
                macro_block_size=1, ffmpeg_log_level="error", output_params=["-movflags", "+faststart"],
            )
            self._gen.send(None)
        elif (fr.shape[1], fr.shape[0]) != self.size:
            raise ValueError(f"frame size {fr.shape[1]}x{fr.shape[0]} differs from the first {self.size}")
        self._gen.send(np.ascontiguousarray(fr))
        self.frames += 1

    def close(self) -> Path:
        if self._gen is None:
            raise ValueError(f"{self.path}: no frames written")
        self._gen.close()
        self._gen = None
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        if self._gen is not None:
            try:
                self._gen.close()
            except Exception:
                pass
            self._gen = None
        if self.tmp.exists():
            self.tmp.unlink()

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.abort()
