"""H.264 mp4 through imageio-ffmpeg, written atomically (temporary name, then rename)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Optional, Union

import numpy as np

from endogs.utils.fs import temporary_name
from endogs.utils.image import to_uint8


class Mp4Writer:
    """H.264 mp4 through imageio-ffmpeg, written to a temporary name and renamed on :meth:`close`.

    Odd frame sizes are padded to even (yuv420p needs it); ``size`` reports the padded size.
    :meth:`abort` (or an exception inside a ``with`` block) removes the temporary file.
    """

    def __init__(self, path: Path, fps: float = 10.0):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = temporary_name(self.path)
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
        self.tmp.replace(self.path)
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


def write_mp4(path: Union[str, Path], frames: Iterable[np.ndarray], fps: float = 10.0) -> Path:
    """Encode RGB frames ([H,W,3], float in [0,1] or uint8, all the same size); odd sizes are padded
    to even (yuv420p needs it). No frame is a ValueError and leaves no file."""
    with Mp4Writer(Path(path), fps=fps) as w:
        for fr in frames:
            w.write(fr)
        return w.close()
