"""Calibration checks and stereo rectification (OpenCV ``stereoRectify``, alpha 0).

Conventions: calibration matrices are OpenCV's (pixel centres at integer coordinates); the scene
written by ``endogs prepare`` uses endogs' convention (centres at +0.5), so its principal point is
P1's plus 0.5 px. Rectified images are paired with the rectified intrinsics (P1), never with the raw
M1 (a known EndoGaussian mistake, shared VIDEO_NOTES.md).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from endogs.data.calib import StereoCalibration, read_stereo_calibration
from endogs.errors import ConfigError, DataError

CALIB_NAMES = ("endoscope_calibration.yaml", "calibration.yaml", "calibration.json", "stereo_calib.json",
               "endoscope_calibration.json", "calib.yaml", "calib.json")


def find_calibration(input_path: Path, right: Optional[Path] = None) -> Optional[Path]:
    """A calibration file beside the input (in it, when it is a folder), or None."""
    input_path = Path(input_path)
    places = [input_path] if input_path.is_dir() else []
    places.append(input_path.parent)
    if right is not None:
        places.append(Path(right).parent)
    for folder in places:
        for name in CALIB_NAMES:
            if (folder / name).is_file():
                return folder / name
    return None


def scale_intrinsics(K: np.ndarray, from_size: tuple[int, int], to_size: tuple[int, int]) -> np.ndarray:
    """OpenCV intrinsics of an image resampled from ``from_size`` to ``to_size`` (W, H)."""
    sx, sy = to_size[0] / from_size[0], to_size[1] / from_size[1]
    K = np.array(K, np.float64)
    K[0, 0] *= sx
    K[0, 1] *= sx
    K[1, 1] *= sy
    K[0, 2] = (K[0, 2] + 0.5) * sx - 0.5
    K[1, 2] = (K[1, 2] + 0.5) * sy - 0.5
    return K


def load_calibration(path: Path, frame_size: tuple[int, int], calib_size: Optional[tuple[int, int]] = None,
                     input_size: Optional[tuple[int, int]] = None) -> StereoCalibration:
    """Read and validate a stereo calibration for views of ``frame_size`` (W, H), in mm.

    ``input_size`` is the size of the input views before --resize (default ``frame_size``): the
    calibration must fit it (or ``calib_size``), and is then scaled to ``frame_size``.
    """
    path = Path(path)
    calib = read_stereo_calibration(path)
    input_size = tuple(input_size or frame_size)
    unit = (calib.unit or "mm").lower()
    if unit in ("m", "meter", "metre", "meters", "metres"):
        calib = replace(calib, T=calib.T * 1000.0, unit="mm")
    elif unit in ("cm",):
        calib = replace(calib, T=calib.T * 10.0, unit="mm")
    elif unit not in ("mm", "millimeter", "millimetre", "millimeters", "millimetres"):
        raise DataError(f"unknown calibration unit {calib.unit!r}; use mm or m", path)
    if calib_size is not None:
        src = tuple(int(v) for v in calib_size)
    elif calib.image_size is not None:
        src = tuple(calib.image_size)
        if src != input_size:
            raise DataError(
                f"calibration is for {src[0]}x{src[1]} images but the input views are {input_size[0]}x{input_size[1]}; "
                f"pass --calib-size {src[0]} {src[1]} to scale it to the views, or use the calibration of these "
                "frames", path)
    else:
        src = input_size
    K1 = scale_intrinsics(calib.K1, src, frame_size)
    K2 = scale_intrinsics(calib.K2, src, frame_size)
    W, H = frame_size
    for name, K in (("M1/K1", K1), ("M2/K2", K2)):
        if not (K[0, 0] > 0 and K[1, 1] > 0):
            raise DataError(f"{name} has a non-positive focal length", path)
        cx, cy = K[0, 2], K[1, 2]
        if not (0.3 * W <= cx <= 0.7 * W and 0.3 * H <= cy <= 0.7 * H):
            guess = f"~{2 * (cx + 0.5) * input_size[0] / W:.0f}x{2 * (cy + 0.5) * input_size[1] / H:.0f}"
            raise DataError(
                f"{name} principal point ({cx:.1f}, {cy:.1f}) is far from the centre of the {W}x{H} views: the "
                f"calibration looks made for {guess} images; pass --calib-size WIDTH HEIGHT (the size it was "
                "made for) to scale it, or use the calibration of these frames", path)
    T = np.asarray(calib.T, np.float64).reshape(3)
    if not np.linalg.norm(T) > 0:
        raise DataError("T (the stereo baseline) is zero", path)
    if abs(T[0]) < 2 * max(abs(T[1]), abs(T[2])):
        raise DataError(f"T = {np.round(T, 4).tolist()} is not a horizontal baseline; only side-by-side stereo "
                        "cameras (baseline along x) are supported", path)
    if T[0] > 0:
        raise DataError(f"T = {np.round(T, 4).tolist()} puts camera 2 to the left of camera 1; camera 1 (M1) must be "
                        "the left one: swap M1/D1 with M2/D2 (and invert R, T) or check the file", path)
    R = np.asarray(calib.R, np.float64)
    if abs(np.linalg.det(R) - 1) > 1e-3 or np.abs(R @ R.T - np.eye(3)).max() > 1e-3:
        raise DataError("R is not a rotation matrix", path)
    return replace(calib, K1=K1, K2=K2, T=T, image_size=tuple(frame_size))


@dataclass
class Rectifier:
    """Undistortion + rectification maps of one stereo (or monocular) camera."""

    size: tuple[int, int]  # (W, H) of the input views (after --resize)
    K: np.ndarray  # rectified intrinsics (OpenCV convention), P1[:3, :3]
    R1: np.ndarray  # rotation raw-left -> rectified-left camera coordinates
    P1: np.ndarray
    P2: Optional[np.ndarray]
    Q: Optional[np.ndarray]
    baseline: float  # mm (0 for monocular)
    maps_left: tuple[np.ndarray, np.ndarray]
    maps_right: Optional[tuple[np.ndarray, np.ndarray]]

    @property
    def stereo(self) -> bool:
        return self.maps_right is not None

    @property
    def K_endogs(self) -> np.ndarray:
        """Rectified intrinsics with pixel centres at +0.5 (endogs.camera convention)."""
        K = self.K.copy()
        K[0, 2] += 0.5
        K[1, 2] += 0.5
        return K

    def left(self, img: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        return cv2.remap(img, *self.maps_left, interpolation, borderMode=cv2.BORDER_CONSTANT)

    def right(self, img: np.ndarray) -> np.ndarray:
        return cv2.remap(img, *self.maps_right, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

    def to_dict(self) -> dict:
        out = {"R1": self.R1.tolist(), "P1": self.P1.tolist(), "baseline_mm": self.baseline}
        if self.stereo:
            out.update({"P2": self.P2.tolist(), "Q": self.Q.tolist()})
        return out


def stereo_rectifier(calib: StereoCalibration, size: tuple[int, int]) -> Rectifier:
    W, H = size
    R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(
        calib.K1, calib.D1, calib.K2, calib.D2, (W, H), calib.R, calib.T.reshape(3, 1),
        flags=cv2.CALIB_ZERO_DISPARITY, alpha=0, newImageSize=(W, H))
    if abs(P2[1, 3]) > abs(P2[0, 3]):
        raise DataError("the calibration rectifies to a vertical stereo pair; only horizontal stereo is supported")
    baseline = float(-P2[0, 3] / P2[0, 0])
    m1 = cv2.initUndistortRectifyMap(calib.K1, calib.D1, R1, P1, (W, H), cv2.CV_32FC1)
    m2 = cv2.initUndistortRectifyMap(calib.K2, calib.D2, R2, P2, (W, H), cv2.CV_32FC1)
    return Rectifier((W, H), P1[:3, :3].copy(), R1, P1, P2, Q, baseline, m1, m2)


def mono_rectifier(K: np.ndarray, D: Optional[np.ndarray], size: tuple[int, int]) -> Rectifier:
    """Undistortion only (alpha 0: no black border); identity maps without distortion."""
    W, H = size
    K = np.asarray(K, np.float64)
    if D is not None and np.any(D):
        Knew, _ = cv2.getOptimalNewCameraMatrix(K, D, (W, H), 0, (W, H))
    else:
        Knew, D = K.copy(), np.zeros(5)
    maps = cv2.initUndistortRectifyMap(K, D, np.eye(3), Knew, (W, H), cv2.CV_32FC1)
    P1 = np.zeros((3, 4))
    P1[:3, :3] = Knew
    return Rectifier((W, H), Knew, np.eye(3), P1, None, None, 0.0, maps, None)


def mono_intrinsics(focal: Optional[float], size: tuple[int, int]) -> np.ndarray:
    if focal is None:
        raise ConfigError("monocular input needs intrinsics: pass --calib FILE (its left camera is used) or --focal PIXELS")
    if not focal > 0:
        raise ConfigError(f"--focal must be positive, got {focal}")
    W, H = size
    return np.array([[focal, 0, W / 2 - 0.5], [0, focal, H / 2 - 0.5], [0, 0, 1.0]])
