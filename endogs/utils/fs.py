"""Atomic file writes: write a temporary name in the same folder, then rename over the target.

A reader (the viewer, ``make demo``, a benchmark with ``--reuse``, a resumed run) never sees a
half-written file: either the previous version or the new one.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Union

PathLike = Union[str, Path]


def temporary_name(path: Path) -> Path:
    """A hidden sibling of ``path`` that keeps its suffix (ffmpeg, matplotlib and cv2 pick the format from it)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def atomic_write(path: PathLike, write: Callable[[Path], Any], fsync: bool = False) -> Path:
    """Call ``write(tmp_path)`` and rename the result over ``path``; the temporary file never survives.

    ``fsync=True`` flushes the file to disk before the rename (checkpoints: a crash right after
    the rename still leaves a complete file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        write(tmp)
        if fsync:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def write_bytes(path: PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda p: p.write_bytes(data))


def write_text(path: PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text))
