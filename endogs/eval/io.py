"""Atomic file writes for reports: write a temporary name in the same folder, then rename.

A reader (the viewer, ``make demo``, a benchmark with ``--reuse``) never sees a half-written file:
either the previous version or the new one.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence, Union

import numpy as np

PathLike = Union[str, Path]


def _tmp_name(path: Path) -> Path:
    # keep the suffix: ffmpeg and matplotlib pick the format from it
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def atomic_write(path: PathLike, write: Callable[[Path], Any]) -> Path:
    """Call ``write(tmp_path)`` and rename the result over ``path`` (same folder, same suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(path)
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))


def _json_safe(v: Any) -> Any:
    """NaN/inf become None (strict JSON); numpy scalars become Python numbers."""
    if isinstance(v, Mapping):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating, float)):
        f = float(v)
        return f if math.isfinite(f) else None
    if isinstance(v, np.ndarray):
        return _json_safe(v.tolist())
    if isinstance(v, np.bool_):
        return bool(v)
    if isinstance(v, Path):
        return str(v)
    return v


def write_json(path: PathLike, obj: Any) -> Path:
    return write_text(path, json.dumps(_json_safe(obj), indent=2, allow_nan=False) + "\n")


def write_csv(path: PathLike, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: _fmt_cell(r.get(k)) for k in columns})
    return write_text(path, buf.getvalue())


def _fmt_cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, (float, np.floating)):
        f = float(v)
        return "" if not math.isfinite(f) else repr(round(f, 6))
    return v


def write_png(path: PathLike, rgb: np.ndarray) -> Path:
    """Write an RGB (float in [0,1] or uint8) [H,W,3] or grey [H,W] image as PNG."""
    import cv2

    img = to_uint8(rgb)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", img)
    if not ok:  # pragma: no cover - cv2 failure
        raise RuntimeError(f"could not encode {path}")
    return write_bytes(path, buf.tobytes())


def to_uint8(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint8:
        return img
    return (np.clip(np.nan_to_num(img, nan=0.0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_mp4(path: PathLike, frames: Iterable[np.ndarray], fps: float = 10.0) -> Path:
    """Encode RGB frames ([H,W,3], float in [0,1] or uint8, all the same size) as H.264 mp4
    with imageio-ffmpeg; odd sizes are padded to even (yuv420p needs it)."""
    import imageio_ffmpeg

    def write(tmp: Path) -> None:
        gen = None
        try:
            for fr in frames:
                fr = to_uint8(np.asarray(fr))
                h, w = fr.shape[:2]
                ph, pw = h % 2, w % 2
                if ph or pw:
                    fr = np.pad(fr, ((0, ph), (0, pw), (0, 0)), mode="edge")
                if gen is None:
                    gen = imageio_ffmpeg.write_frames(
                        str(tmp), (fr.shape[1], fr.shape[0]), fps=fps, codec="libx264",
                        pix_fmt_out="yuv420p", quality=8, macro_block_size=1,
                        ffmpeg_log_level="error", output_params=["-movflags", "+faststart"],
                    )
                    gen.send(None)
                gen.send(np.ascontiguousarray(fr))
        finally:
            if gen is not None:
                gen.close()
        if gen is None:
            raise ValueError("write_mp4: no frames")

    return atomic_write(path, write)
