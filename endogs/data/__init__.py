"""The data layer: one entry point, :func:`load_scene`, for every supported dataset layout.

>>> scene = load_scene("data/pulling_soft_tissues")            # format detected from the layout
>>> scene = load_scene("data/stereo_P3", format="stereomis")    # or stated
>>> frame = scene.frames[0]; frame.image.shape, frame.camera.K
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Literal, Optional, Union, get_args

from endogs.camera import Camera
from endogs.data.common import VALIDATE_LEVELS, check_validate
from endogs.data.endonerf import load_endonerf, looks_like_stereomis
from endogs.data.hamlyn import load_hamlyn
from endogs.data.scared import load_scared, load_scared_keyframe, scared_data_dir
from endogs.data.split import SPLITS, SplitName, frame_times, split_indices
from endogs.data.types import Frame, Scene
from endogs.errors import ConfigError, DataError

__all__ = [
    "Camera",
    "Frame",
    "Scene",
    "FORMATS",
    "FormatName",
    "SPLITS",
    "SplitName",
    "detect_format",
    "load_scene",
    "split_indices",
    "frame_times",
]


def _stereomis(root: Path, **kw) -> Scene:
    return load_endonerf(root, variant="stereomis", **kw)


FormatName = Literal["endonerf", "stereomis", "scared", "scared-keyframe", "hamlyn"]
"""The dataset layouts: the one definition (CLI choices and configs use this type, code reads
:data:`FORMATS`). A new format adds its name here and its loader to ``_LOADERS``."""
FORMATS: tuple[str, ...] = get_args(FormatName)

_LOADERS = {
    "endonerf": load_endonerf,
    "stereomis": _stereomis,
    "scared": load_scared,
    "scared-keyframe": load_scared_keyframe,
    "hamlyn": load_hamlyn,
}
if tuple(_LOADERS) != FORMATS:  # pragma: no cover - a format added to one list only
    raise ImportError(f"endogs.data: loaders {tuple(_LOADERS)} differ from FormatName {FORMATS}")

_LAYOUTS = (
    "EndoNeRF/StereoMIS (images/ depth/ masks/ poses_bounds.npy), "
    "SCARED (data/left_finalpass data/disparity data/frame_data data/reprojection_data), "
    "SCARED keyframe (Left_Image.png endoscope_calibration.yaml), "
    "Hamlyn (images/ gt_masks/ gt_depth/ intrinsics.txt)"
)


def detect_format(path: Union[str, Path]) -> str:
    """Name of the layout found at ``path``; a ``DataError`` when none matches."""
    root = Path(path)
    if not root.exists():
        raise DataError("no such folder", root)
    if not root.is_dir():
        raise DataError("expected a scene folder, got a file", root)
    if scared_data_dir(root) is not None:
        return "scared"
    if (root / "Left_Image.png").is_file() and (root / "endoscope_calibration.yaml").is_file():
        return "scared-keyframe"
    has = {name for name in ("images", "depth", "masks") if (root / name).is_dir()}
    if (root / "poses_bounds.npy").is_file() or has == {"images", "depth", "masks"}:
        stereomis = looks_like_stereomis(root)
        if stereomis or (stereomis is None and root.name.startswith("stereo_")):
            return "stereomis"
        return "endonerf"  # the loader names whatever is missing
    if (root / "intrinsics.txt").is_file() and (root / "images").is_dir():
        return "hamlyn"
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())[:8]
    what = ", ".join(found) if found else "nothing"
    raise DataError(f"unknown scene layout (found {what}); expected one of: {_LAYOUTS}; or pass format=", root)


def load_scene(
    path: Union[str, Path],
    format: Optional[str] = None,
    split: Optional[str] = None,
    validate: str = "standard",
    **options,
) -> Scene:
    """Load a scene folder, validating its layout, counts, headers and poses before returning.

    Args:
        path: the scene folder.
        format: one of :data:`FORMATS`; detected from the layout when None.
        split: "every8" (test = (i-1) % 8 == 0), "all" or "alternate"; the format's usual rule
            when None (every8, except Hamlyn: alternate; a single keyframe: all).
        validate: "fast" (headers only), "standard" (also decodes depth and masks: non-binary
            masks, all-zero depth, inverted polarity) or "full" (also decodes every image).
        **options: format-specific options (see the loader functions), e.g. ``principal_point``,
            ``crop_bottom`` and ``mask_polarity`` for EndoNeRF, ``skip`` and ``depth_range`` for SCARED.
    """
    root = Path(path)
    fmt = detect_format(root) if format is None else format
    if fmt not in _LOADERS:
        raise ConfigError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if not root.is_dir():
        raise DataError("no such folder" if not root.exists() else "expected a scene folder, got a file", root)
    check_validate(validate)
    if split is not None and split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
    loader = _LOADERS[fmt]
    target = load_endonerf if fmt == "stereomis" else loader
    allowed = [p for p in inspect.signature(target).parameters if p not in ("root", "split", "validate", "variant")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)} for format {fmt}; valid: {', '.join(allowed)}")
    kwargs = dict(options)
    if split is not None:
        kwargs["split"] = split
    return loader(root, validate=validate, **kwargs)
