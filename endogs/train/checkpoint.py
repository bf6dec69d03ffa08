"""Resumable checkpoints: atomic writes, loadable with ``torch.load(weights_only=True)``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from endogs.errors import DataError

CHECKPOINT_VERSION = 1


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary name in the same folder, then rename over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: Path, text: str) -> None:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_checkpoint(path: Path, map_location: Any = "cpu") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise DataError("no checkpoint here; train first (endogs train) or point at a run folder", path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read checkpoint ({type(exc).__name__}); the file is corrupt or not an endogs checkpoint", path) from None
    if not isinstance(ckpt, dict) or "version" not in ckpt:
        raise DataError("not an endogs checkpoint", path)
    if ckpt["version"] != CHECKPOINT_VERSION:
        raise DataError(
            f"checkpoint version {ckpt['version']} is not supported by this endogs (expects {CHECKPOINT_VERSION}); retrain with this version",
            path,
        )
    return ckpt
