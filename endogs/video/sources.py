"""Reading the input: videos (one or two, stacked or not) and image folders, with frame selection.

Everything here yields RGB ``uint8`` arrays [H, W, 3]. Failures are one-line ``DataError``s naming
the file and the fix.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import cv2
import numpy as np

from endogs.data.io import IMAGE_EXTS
from endogs.data.io import captured_native_stderr as _captured_stderr
from endogs.errors import ConfigError, DataError

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv", ".ogv")
STEREO_SUBFOLDERS = (
    ("left_image", "right_image"),
    ("left_images", "right_images"),
    ("left", "right"),
    ("image_left", "image_right"),
    ("left_finalpass", "right_finalpass"),
)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines:
        return ""
    ln = lines[-1]
    if "] " in ln and ln.startswith("["):  # "[mov,mp4 @ 0x...] moov atom not found"
        ln = ln.split("] ", 1)[1]
    return ln[:120]


class FrameReader:
    """Frames of one video file or one image folder, by 0-based position."""

    def __init__(self, path: Path, what: str = "input"):
        self.path = Path(path)
        self.what = what
        self.fps: Optional[float] = None
        self.count: int = 0
        if self.path.is_dir():
            self.kind = "folder"
            self.files = sorted(p for p in self.path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
            if not self.files:
                videos = [p.name for p in self.path.iterdir() if p.suffix.lower() in VIDEO_EXTS]
                hint = f"; it holds the video {videos[0]}: pass that file" if videos else ""
                raise DataError(f"{what} folder has no image files ({'/'.join(IMAGE_EXTS)}){hint}", self.path)
            self.count = len(self.files)
            first = self._read_file(self.files[0])
            self.size = (first.shape[1], first.shape[0])
        elif self.path.is_file():
            if self.path.suffix.lower() not in VIDEO_EXTS:
                raise DataError(f"not a video ({'/'.join(VIDEO_EXTS)}) or an image folder", self.path)
            self.kind = "video"
            self.files = []
            with _captured_stderr() as err:
                cap = cv2.VideoCapture(str(self.path))
                ok = cap.isOpened()
                ok_frame, frame = cap.read() if ok else (False, None)
                cap.release()
            if not ok or not ok_frame or frame is None:
                msg = _first_line(err())
                raise DataError(
                    f"cannot read video{f' (ffmpeg: {msg})' if msg else ''}; the file is corrupt, empty or in an "
                    "unsupported codec: re-encode it (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) or extract its frames "
                    "to a folder",
                    self.path,
                )
            self.size = (frame.shape[1], frame.shape[0])
            with _captured_stderr():
                cap = cv2.VideoCapture(str(self.path))
                fps = cap.get(cv2.CAP_PROP_FPS)
                n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
                cap.release()
                if n <= 0:  # the container does not state its length: count by decoding once
                    cap = cv2.VideoCapture(str(self.path))
                    n = 0
                    while cap.grab():
                        n += 1
                    cap.release()
            self.fps = float(fps) if fps and np.isfinite(fps) and fps > 0 else None
            self.count = n
        else:
            raise DataError(f"missing {what} (expected a video file or an image folder)", self.path)

    def _read_file(self, path: Path) -> np.ndarray:
        with _captured_stderr():
            data = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if data is None:
            raise DataError("cannot decode image; the file is corrupt or not an image", path)
        return np.ascontiguousarray(data[..., ::-1])

    def name(self, index: int) -> str:
        return self.files[index].name if self.kind == "folder" else f"{self.path.name}#{index}"

    def frames(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray]]:
        """(index, RGB uint8) for each index (ascending); a video may end early."""
        if self.kind == "folder":
            for i in indices:
                img = self._read_file(self.files[i])
                if (img.shape[1], img.shape[0]) != self.size:
                    raise DataError(
                        f"image size {img.shape[1]}x{img.shape[0]} differs from {self.files[0].name} "
                        f"({self.size[0]}x{self.size[1]}); all frames must share one size", self.files[i])
                yield i, img
            return
        wanted = set(indices)
        last = max(indices) if indices else -1
        with _captured_stderr():
            cap = cv2.VideoCapture(str(self.path))
        try:
            pos = 0
            while pos <= last:
                with _captured_stderr():  # ffmpeg's complaints about a damaged frame are not endogs' output
                    ok, frame = cap.read() if pos in wanted else (cap.grab(), None)
                if not ok:
                    return
                if pos in wanted:
                    yield pos, np.ascontiguousarray(frame[..., ::-1])
                pos += 1
        finally:
            with _captured_stderr():
                cap.release()


@dataclass
class StereoInput:
    """The opened input: one or two readers and how to split their frames into views."""

    left: FrameReader
    right: Optional[FrameReader]
    layout: str  # "top-bottom" | "side-by-side" | "two" | "mono"
    swap: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def stereo(self) -> bool:
        return self.layout != "mono"

    @property
    def view_size(self) -> tuple[int, int]:
        w, h = self.left.size
        if self.layout == "top-bottom":
            return w, h // 2
        if self.layout == "side-by-side":
            return w // 2, h
        return w, h

    @property
    def fps(self) -> Optional[float]:
        return self.left.fps

    @property
    def count(self) -> int:
        if self.right is not None:
            return min(self.left.count, self.right.count)
        return self.left.count

    def describe(self) -> str:
        if self.layout == "two":
            return f"stereo {self.left.kind}s {self.left.path} + {self.right.path}"
        if self.layout == "mono":
            return f"monocular {self.left.kind} {self.left.path}"
        return f"stereo {self.left.kind} {self.left.path} ({self.layout}{', swapped' if self.swap else ''})"

    def pairs(self, indices: list[int]) -> Iterator[tuple[int, np.ndarray, Optional[np.ndarray]]]:
        """(index, left RGB, right RGB or None) for the selected input frames."""
        if self.layout == "two":
            it_r = self.right.frames(indices)
            for (i, left), (j, right) in zip(self.left.frames(indices), it_r):
                assert i == j
                yield (i, right, left) if self.swap else (i, left, right)
            return
        for i, frame in self.left.frames(indices):
            if self.layout == "mono":
                yield i, frame, None
                continue
            if self.layout == "top-bottom":
                h = frame.shape[0] // 2
                a, b = frame[:h], frame[h : 2 * h]
            else:
                w = frame.shape[1] // 2
                a, b = frame[:, :w], frame[:, w : 2 * w]
            a, b = np.ascontiguousarray(a), np.ascontiguousarray(b)
            yield (i, b, a) if self.swap else (i, a, b)


def open_input(path: Path, right: Optional[Path], layout: str, has_calib: bool, swap: bool = False) -> StereoInput:
    """Open INPUT (and --right) and decide the layout (see ``PrepareOptions.layout``)."""
    path = Path(path)
    if not path.exists():
        raise DataError("missing input (expected a video file, an image folder, or a folder with left/right image folders)", path)
    if right is not None:
        if layout not in ("auto", "mono"):
            # a stacked layout with a separate right view makes no sense
            raise ConfigError(f"--layout {layout} describes a single stacked input; drop it when passing --right")
        if layout == "mono":
            raise ConfigError("--layout mono contradicts --right; drop one of them")
        left_r, right_r = FrameReader(path, "left input"), FrameReader(Path(right), "right input")
        _check_pair(left_r, right_r)
        return StereoInput(left_r, right_r, "two", swap)
    if path.is_dir():
        for ln, rn in STEREO_SUBFOLDERS:
            if (path / ln).is_dir() and (path / rn).is_dir():
                if layout in ("top-bottom", "side-by-side"):
                    raise ConfigError(f"{path} holds {ln}/ and {rn}/ folders; --layout {layout} applies to a stacked input only")
                left_r, right_r = FrameReader(path / ln, "left input"), FrameReader(path / rn, "right input")
                if layout == "mono":
                    return StereoInput(left_r, None, "mono", swap, [f"using {ln}/ only (--layout mono)"])
                _check_pair(left_r, right_r)
                return StereoInput(left_r, right_r, "two", swap)
    reader = FrameReader(path)
    w, h = reader.size
    if layout == "auto":
        if has_calib and h > w:
            layout = "top-bottom"
        elif has_calib and w > 2 * h:
            layout = "side-by-side"
        else:
            layout = "mono"
            if h > w or w > 2 * h:
                kind = "stacked top-bottom" if h > w else "side-by-side"
                raise ConfigError(
                    f"{path}: the {w}x{h} frames look like a {kind} stereo video but no calibration was found: "
                    f"pass --calib FILE, or --layout mono to use the frames as they are")
    if layout == "top-bottom" and h % 2:
        raise DataError(f"a top-bottom stereo frame needs an even height, got {w}x{h}; is the layout right?", path)
    if layout == "side-by-side" and w % 2:
        raise DataError(f"a side-by-side stereo frame needs an even width, got {w}x{h}; is the layout right?", path)
    if swap and layout == "mono":
        raise ConfigError("--swap needs a stereo input")
    return StereoInput(reader, None, layout, swap)


def _check_pair(left: FrameReader, right: FrameReader) -> None:
    if left.size != right.size:
        raise DataError(
            f"right view is {right.size[0]}x{right.size[1]} but the left is {left.size[0]}x{left.size[1]}; "
            "both views must come from the same stereo camera at the same size", right.path)
    if left.kind == "folder" and right.kind == "folder" and left.count != right.count:
        raise DataError(
            f"right folder has {right.count} images but the left ({left.path}) has {left.count}; every left frame "
            "needs its right frame", right.path)


def select_frames(inp: StereoInput, start: int, end: Optional[int], stride: int, fps: Optional[float]) -> tuple[list[int], int]:
    """The input frame indices to use, and the stride applied."""
    if fps is not None:
        if inp.fps is None:
            raise ConfigError(f"{inp.left.path}: --fps needs a video with a known frame rate; use --stride for image folders")
        stride = max(1, int(round(inp.fps / fps)))
    count = inp.count
    stop = count if end is None else min(end, count)
    indices = list(range(start, stop, stride))
    if not indices:
        raise DataError(
            f"no frame in the range start={start}, end={end} (the input has {count} frames); choose --start below {count}",
            inp.left.path)
    return indices, stride
