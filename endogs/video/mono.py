"""Monocular depth from a local model folder (relative depth; nothing is ever downloaded).

A Depth-Anything-style checkpoint in Hugging Face ``transformers`` format (a folder with
config.json, the weights and preprocessor_config.json) predicts relative inverse depth
(larger = closer, unknown scale and shift). It is turned into a positive, depth-like map
``median_depth * median(inv) / inv`` (so larger = farther, as every depth map of a scene) and written
with ``depth_unit: "relative"``: the trainer then uses a scale-invariant depth loss.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from endogs.errors import ConfigError

NO_MODEL_HELP = (
    "monocular input has no stereo depth, and no --depth-model was given. Options: (1) pass the right view "
    "(--right VIDEO_OR_FOLDER, or --layout top-bottom/side-by-side for a stacked video) with --calib "
    "CALIBRATION for metric stereo depth; (2) pass --depth-model DIR, a local monocular depth model in "
    "transformers format (e.g. fetch depth-anything/Depth-Anything-V2-Small-hf once with "
    "`huggingface-cli download depth-anything/Depth-Anything-V2-Small-hf --local-dir DIR`; needs "
    "`pip install transformers`). Nothing is downloaded by endogs"
)

NOMINAL_MEDIAN_DEPTH = 50.0  # the relative depth map's median (a typical endoscopic working distance, mm)


def load_depth_model(path: Path, device: str = "cpu") -> Callable[[np.ndarray], np.ndarray]:
    """A function RGB uint8 [H,W,3] -> relative inverse depth [H,W] (float32, larger = closer)."""
    path = Path(path)
    if not path.is_dir() or not (path / "config.json").is_file():
        raise ConfigError(f"{path}: --depth-model must be a local model folder with config.json (transformers "
                          "format, e.g. Depth-Anything-V2-Small-hf)")
    try:
        import torch
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation
    except ImportError:
        raise ConfigError("--depth-model needs the transformers package: pip install transformers") from None
    try:
        processor = AutoImageProcessor.from_pretrained(str(path), local_files_only=True)
        model = AutoModelForDepthEstimation.from_pretrained(str(path), local_files_only=True).to(device).eval()
    except Exception as exc:  # a broken or foreign folder
        raise ConfigError(f"{path}: cannot load a depth model from this folder ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120]})") from None

    def predict(rgb: np.ndarray) -> np.ndarray:
        import torch.nn.functional as F

        inputs = processor(images=rgb, return_tensors="pt").to(device)
        with torch.no_grad():
            out = model(**inputs).predicted_depth
        out = F.interpolate(out[:, None], size=rgb.shape[:2], mode="bicubic", align_corners=False)[0, 0]
        return out.cpu().numpy().astype(np.float32)

    return predict


def relative_depth(inv: np.ndarray, median_depth: float = NOMINAL_MEDIAN_DEPTH) -> np.ndarray:
    """Depth-like map (larger = farther) from relative inverse depth; 0 where the model gives <= 0."""
    inv = np.asarray(inv, np.float64)
    pos = inv > 0
    if not pos.any():
        return np.zeros(inv.shape, np.float32)
    lo = np.percentile(inv[pos], 1)
    inv = np.where(pos, np.maximum(inv, lo), 0.0)  # tiny values would explode into huge depths
    med = float(np.median(inv[pos]))
    with np.errstate(divide="ignore"):
        d = np.where(pos, np.minimum(median_depth * med / inv, 20.0 * median_depth), 0.0)
    return d.astype(np.float32)
