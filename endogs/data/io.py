"""File-level readers with validation. Every failure is a one-line ``DataError`` naming the file."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional, Sequence

import cv2
import numpy as np

from endogs.errors import DataError

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


@contextmanager
def captured_native_stderr():
    """Capture what C libraries (libpng, ffmpeg) write to fd 2; yields a callable returning the text.

    Their warnings about a damaged file are replaced by endogs' one-line error naming it."""
    text = {"s": ""}
    try:
        fd = os.dup(2)
    except OSError:  # no real stderr (unusual embedding): nothing to capture
        yield lambda: ""
        return
    with tempfile.TemporaryFile(mode="w+b") as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield lambda: text["s"]
        finally:
            os.dup2(fd, 2)
            os.close(fd)
            tmp.seek(0)
            text["s"] = tmp.read().decode("utf-8", "replace")


@contextmanager
def _quiet_tifffile():
    """tifffile logs each damaged tag to stderr; the DataError that follows says it in one line."""
    log = logging.getLogger("tifffile")
    before = log.disabled
    log.disabled = True
    try:
        yield
    finally:
        log.disabled = before


def check_inside(path: Path, root: Path) -> Path:
    """``path`` itself, refused when it resolves outside ``root`` (a symbolic link out of the scene).

    A scene folder is read as a unit: a file or folder inside it that links elsewhere (``/etc/passwd``,
    another patient's folder) is not followed. The scene folder itself may be a link.
    """
    target = path.resolve()
    if not target.is_relative_to(root.resolve()):
        raise DataError(f"is a symbolic link to {target}, outside the scene folder {root}; endogs does not follow links "
                        "out of a scene: copy the data in (cp -L) or point endogs at the real folder", path)
    return path


def require_dir(path: Path, what: str, hint: str = "") -> Path:
    if not path.is_dir():
        extra = f"; {hint}" if hint else ""
        raise DataError(f"missing {what} folder{extra}", path)
    return check_inside(path, path.parent)


def require_file(path: Path, what: str, hint: str = "") -> Path:
    if not path.is_file():
        extra = f"; {hint}" if hint else ""
        raise DataError(f"missing {what}{extra}", path)
    return check_inside(path, path.parent)


def list_files(folder: Path, exts: Sequence[str], what: str) -> list[Path]:
    """Files of ``folder`` with one of ``exts`` (case-insensitive), sorted by name; never empty.

    Entries that link out of the scene (the folder's parent) are refused (:func:`check_inside`)."""
    require_dir(folder, what)
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in exts)
    if not files:
        raise DataError(f"{what} folder is empty (expected {'/'.join(exts)} files)", folder)
    for p in files:
        check_inside(p, folder.parent)
    return files


def image_shape(path: Path) -> tuple[int, int, int]:
    """(height, width, channels) from the file header, without decoding the pixels."""
    suffix = path.suffix.lower()
    try:
        if suffix in (".tif", ".tiff"):
            import tifffile

            with _quiet_tifffile(), tifffile.TiffFile(path) as tif:
                shape = tif.pages[0].shape
        elif suffix == ".npy":
            shape = np.load(path, mmap_mode="r").shape
        else:
            from PIL import Image

            with Image.open(path) as im:
                w, h = im.size
                shape = (h, w, len(im.getbands()))
    except Exception as exc:  # any decoder failure is a corrupt or foreign file
        raise DataError(f"cannot read image header ({type(exc).__name__}); the file is corrupt or not an image", path) from None
    if not all(isinstance(v, (int, np.integer)) and v > 0 for v in shape):
        raise DataError(f"image header states the shape {str(tuple(shape))[:60]}; the file is corrupt or not an image", path)
    if len(shape) == 2:
        return int(shape[0]), int(shape[1]), 1
    if len(shape) == 3:
        return int(shape[0]), int(shape[1]), int(shape[2])
    raise DataError(f"unexpected image shape {tuple(shape)}", path)


def _imread_unchanged(path: Path) -> np.ndarray:
    suffix = path.suffix.lower()
    if suffix in (".tif", ".tiff"):
        import tifffile

        try:
            with _quiet_tifffile():
                return np.asarray(tifffile.imread(path))
        except Exception as exc:
            raise DataError(f"cannot decode TIFF ({type(exc).__name__}); the file is corrupt", path) from None
    if suffix == ".npy":
        try:
            return np.load(path)
        except Exception as exc:
            raise DataError(f"cannot read .npy ({type(exc).__name__}); the file is corrupt", path) from None
    with captured_native_stderr():
        data = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if data is None:
        if not path.exists():
            raise DataError("file disappeared after the scene was loaded", path)
        raise DataError("cannot decode image; the file is corrupt or not an image", path)
    return data


def read_rgb(path: Path, expect_hw: Optional[tuple[int, int]] = None) -> np.ndarray:
    """RGB float32 [H, W, 3] in [0, 1] (8- or 16-bit, gray or colour, alpha dropped)."""
    data = _imread_unchanged(path)
    if data.ndim == 2:
        data = np.repeat(data[..., None], 3, axis=2)
    elif data.ndim == 3 and data.shape[2] in (3, 4):
        data = cv2.cvtColor(data[..., :3], cv2.COLOR_BGR2RGB) if path.suffix.lower() not in (".tif", ".tiff", ".npy") else data[..., :3]
    else:
        raise DataError(f"expected an RGB image, got shape {data.shape}", path)
    if data.dtype == np.uint8:
        out = data.astype(np.float32) / 255.0
    elif data.dtype == np.uint16:
        out = data.astype(np.float32) / 65535.0
    elif np.issubdtype(data.dtype, np.floating):
        out = np.clip(data.astype(np.float32), 0.0, 1.0)
    else:
        raise DataError(f"unsupported image dtype {data.dtype}", path)
    _check_hw(out, expect_hw, path)
    return np.ascontiguousarray(out)


def read_mask(path: Path, tool_value_is_white: bool, expect_hw: Optional[tuple[int, int]] = None) -> np.ndarray:
    """Tissue mask bool [H, W] (True = tissue) from a binary mask file of either polarity.

    ``tool_value_is_white``: True when white (255 or 1) marks the tool (EndoNeRF, Hamlyn), False when
    white marks tissue (StereoMIS after the Deform3DGS conversion).
    """
    data = _imread_unchanged(path)
    if data.ndim == 3:
        data = data[..., 0]
    if data.ndim != 2:
        raise DataError(f"expected a single-channel mask, got shape {data.shape}", path)
    values = np.unique(data)
    if data.dtype == bool:
        white = data
    elif set(values.tolist()) <= {0, 255}:
        white = data == 255
    elif set(values.tolist()) <= {0, 1}:
        white = data == 1
    else:
        bad = [v for v in values.tolist() if v not in (0, 1, 255)][:3]
        raise DataError(f"mask is not binary (values such as {bad}); masks must hold only 0 and 255", path)
    _check_hw(white, expect_hw, path)
    return ~white if tool_value_is_white else white


def read_depth(path: Path, scale: float = 1.0, expect_hw: Optional[tuple[int, int]] = None, channel: Optional[int] = None) -> np.ndarray:
    """Depth float32 [H, W] = stored value / ``scale``; non-finite and negative values become 0 (invalid).

    ``channel`` picks one channel of a multi-channel file (e.g. 2 = Z of an XYZ TIFF); a 3-channel
    PNG with equal channels (monocular depth saved as RGB) uses channel 0.
    """
    data = _imread_unchanged(path)
    if data.ndim == 3 and channel is not None and channel >= data.shape[2]:
        raise DataError(f"expected a depth file with at least {channel + 1} channels, got shape {data.shape}", path)
    if data.ndim == 3:
        data = data[..., 0 if channel is None else channel]
    if data.ndim != 2:
        raise DataError(f"expected a single-channel depth map, got shape {data.shape}", path)
    depth = data.astype(np.float32) / np.float32(scale)
    depth[~np.isfinite(depth) | (depth < 0)] = 0.0
    _check_hw(depth, expect_hw, path)
    return depth


def read_json(path: Path) -> dict:
    try:
        with open(path) as f:
            data = json.load(f)
    except FileNotFoundError:
        raise DataError("missing JSON file", path) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"invalid JSON ({exc.__class__.__name__}: line {getattr(exc, 'lineno', '?')})", path) from None
    if not isinstance(data, dict):
        raise DataError("expected a JSON object at the top level", path)
    return data


def json_matrix(data: dict, keys: Iterable[str], shape: tuple[int, ...], path: Path) -> np.ndarray:
    """A nested-list matrix at ``data[k1][k2]...`` as float64 of ``shape``, validated."""
    node = data
    keys = list(keys)
    for k in keys:
        if not isinstance(node, dict) or k not in node:
            raise DataError(f"missing key {'.'.join(keys)}", path)
        node = node[k]
    try:
        arr = np.asarray(node, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"{'.'.join(keys)} is not a numeric matrix", path) from None
    if arr.size == int(np.prod(shape)):
        arr = arr.reshape(shape)
    if arr.shape != shape:
        raise DataError(f"{'.'.join(keys)} has shape {arr.shape}, expected {shape}", path)
    if not np.isfinite(arr).all():
        raise DataError(f"{'.'.join(keys)} contains NaN or infinite values", path)
    return arr


def _check_hw(arr: np.ndarray, expect_hw: Optional[tuple[int, int]], path: Path) -> None:
    if expect_hw is not None and tuple(arr.shape[:2]) != tuple(expect_hw):
        raise DataError(f"size {arr.shape[1]}x{arr.shape[0]} differs from the scene's {expect_hw[1]}x{expect_hw[0]}", path)


def check_pose(c2w: np.ndarray, path: Path, what: str) -> None:
    if not np.isfinite(c2w).all():
        raise DataError(f"{what} contains NaN or infinite values", path)
    R = c2w[:3, :3]
    if abs(np.linalg.det(R) - 1.0) > 1e-3 or np.abs(R @ R.T - np.eye(3)).max() > 1e-3:
        raise DataError(f"{what} is not a rigid transform (rotation not orthonormal)", path)
