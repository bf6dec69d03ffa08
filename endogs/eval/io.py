"""The files of reports, written atomically (:mod:`endogs.utils.fs`): JSON (strict: NaN -> null), CSV,
PNG and mp4. A reader (the viewer, ``make demo``, a benchmark with ``--reuse``) never sees a
half-written file: either the previous version or the new one.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from endogs.utils.fs import PathLike, atomic_write, write_bytes, write_text
from endogs.utils.image import encode_png, to_uint8
from endogs.utils.mp4 import write_mp4

__all__ = ["atomic_write", "write_bytes", "write_text", "write_json", "write_csv", "write_png", "write_mp4", "to_uint8"]


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
    return write_bytes(path, encode_png(rgb))
