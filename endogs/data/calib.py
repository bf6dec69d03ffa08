"""Stereo calibration files: OpenCV FileStorage YAML (SCARED's ``endoscope_calibration.yaml``) or JSON."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from endogs.data.io import json_matrix, read_json
from endogs.errors import DataError

DISTORTION_SIZES = (4, 5, 8, 12, 14)


@dataclass(frozen=True)
class StereoCalibration:
    """Intrinsics and distortion of both cameras and the right-from-left extrinsics.

    ``R``, ``T`` map left-camera coordinates to right-camera coordinates (OpenCV ``stereoCalibrate``):
    x_right = R @ x_left + T. ``T`` is in the calibration's unit (mm for SCARED).
    """

    K1: np.ndarray  # [3, 3]
    D1: np.ndarray  # [5] (or more) OpenCV distortion
    K2: np.ndarray  # [3, 3]
    D2: np.ndarray
    R: np.ndarray  # [3, 3]
    T: np.ndarray  # [3]
    image_size: Optional[tuple[int, int]] = None  # (width, height) when the file states it
    unit: str = "mm"

    @property
    def baseline(self) -> float:
        return float(np.linalg.norm(self.T))


def read_stereo_calibration(path: Path) -> StereoCalibration:
    """Read an OpenCV FileStorage YAML (keys M1 D1 M2 D2 R T, or K1 K2) or a JSON calibration."""
    path = Path(path)
    if not path.is_file():
        raise DataError("missing calibration file", path)
    if path.suffix.lower() == ".json":
        return _read_json(path)
    return _read_filestorage(path)


def _read_filestorage(path: Path) -> StereoCalibration:
    import cv2

    try:
        fs = cv2.FileStorage(str(path), cv2.FILE_STORAGE_READ)
    except (cv2.error, SystemError):  # OpenCV's parser raises either on a malformed file
        raise DataError("not a readable OpenCV FileStorage file (expected '%YAML:1.0' with M1 D1 M2 D2 R T)", path) from None
    if not fs.isOpened():
        raise DataError("not a readable OpenCV FileStorage file (expected '%YAML:1.0' with M1 D1 M2 D2 R T)", path)
    try:

        def mat(*names: str, shape: tuple[int, ...]) -> np.ndarray:
            for name in names:
                node = fs.getNode(name)
                if not node.empty():
                    try:
                        m = node.mat()
                    except (cv2.error, SystemError):
                        raise DataError(f"key {name} is not a valid !!opencv-matrix (rows, cols, dt, data)", path) from None
                    if m is None:
                        raise DataError(f"key {name} is not a matrix", path)
                    m = np.asarray(m, dtype=np.float64)
                    if m.size != int(np.prod(shape)) and shape != (-1,):
                        raise DataError(f"key {name} has {m.size} values, expected {int(np.prod(shape))}", path)
                    m = m.reshape(shape)
                    if not np.isfinite(m).all():
                        raise DataError(f"key {name} contains NaN or infinite values", path)
                    return m
            raise DataError(f"missing key {' or '.join(names)}", path)

        calib = StereoCalibration(
            K1=mat("M1", "K1", shape=(3, 3)),
            D1=mat("D1", shape=(-1,)),
            K2=mat("M2", "K2", shape=(3, 3)),
            D2=mat("D2", shape=(-1,)),
            R=mat("R", shape=(3, 3)),
            T=mat("T", shape=(3,)),
        )
    finally:
        fs.release()
    for name, d in (("D1", calib.D1), ("D2", calib.D2)):
        if d.size not in DISTORTION_SIZES:
            raise DataError(f"key {name} has {d.size} values; OpenCV distortion has 4, 5, 8, 12 or 14", path)
    return calib


def _distortion(node: object, key: str, where: str, path: Path) -> np.ndarray:
    value = node.get(key, [0] * 5) if isinstance(node, dict) else None
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise DataError(f"{where} is not a list of numbers", path) from None
    if arr.size not in DISTORTION_SIZES or not np.isfinite(arr).all():
        raise DataError(f"{where} must hold 4, 5, 8, 12 or 14 finite distortion coefficients, got {value!r}", path)
    return arr


def _read_json(path: Path) -> StereoCalibration:
    data = read_json(path)
    size = data.get("image_size")
    if "left" in data:  # {"left": {"K", "distortion"}, "right": {...}, "stereo": {"R", "T"}}
        K1 = json_matrix(data, ["left", "K"], (3, 3), path)
        K2 = json_matrix(data, ["right", "K"], (3, 3), path)
        D1 = _distortion(data["left"], "distortion", "left.distortion", path)
        D2 = _distortion(data["right"], "distortion", "right.distortion", path)
        R = json_matrix(data, ["stereo", "R"], (3, 3), path)
        T = json_matrix(data, ["stereo", "T"], (3,), path)
    else:  # SCARED frame_data "camera-calibration" style: KL KR DL DR R T
        node = data.get("camera-calibration", data)
        K1 = json_matrix(node, ["KL"], (3, 3), path)
        K2 = json_matrix(node, ["KR"], (3, 3), path)
        D1 = _distortion(node, "DL", "DL", path)
        D2 = _distortion(node, "DR", "DR", path)
        R = json_matrix(node, ["R"], (3, 3), path)
        T = json_matrix(node, ["T"], (3,), path)
    image_size = None
    if size is not None:
        ok = isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size)
        if not ok:
            raise DataError(f"image_size must be [width, height] in pixels, got {size!r}", path)
        image_size = (int(size[0]), int(size[1]))
    unit = data.get("unit", "mm")
    if not isinstance(unit, str):
        raise DataError(f"unit must be a string (mm or m), got {unit!r}", path)
    return StereoCalibration(K1, D1, K2, D2, R, T, image_size, unit)
