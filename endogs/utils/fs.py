"""Atomic file writes: write a temporary name in the same folder, then rename over the target.

A reader (the viewer, ``make demo``, a benchmark with ``--reuse``, a resumed run) never sees a
half-written file: either the previous version or the new one.
"""

from __future__ import annotations

import contextlib
import errno
import os
from pathlib import Path
from typing import Any, Callable, Iterator, Union

from endogs.errors import EndogsError

PathLike = Union[str, Path]

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class DiskFullError(EndogsError):
    """The disk (or quota) filled up while endogs wrote a file; the previous version is kept."""


@contextlib.contextmanager
def disk_full_is_one_line(path: PathLike) -> Iterator[None]:
    """Turn an ENOSPC / EDQUOT ``OSError`` raised inside the block into a one-line :class:`DiskFullError`
    naming ``path`` (the file or folder being written); other errors pass unchanged."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in DISK_FULL:
            raise
        raise DiskFullError("no space left on the device while writing it (the previous version, if any, is kept); "
                            "free some space and run the command again", path) from None


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
        with disk_full_is_one_line(path):
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
