"""Evaluation protocols: which frames are evaluated, with which masks, in which units.

The split itself is decided at training time (``TrainConfig.data.split``) and recorded in the run
log; a protocol names the published convention the run must follow and checks that it does:

* ``endonerf`` - EndoSurf / EndoGaussian / Deform3DGS: test frames are ``(i - 1) % 8 == 0``, trained
  on the others; tool masks from ``gt_masks/`` when present, else ``masks/``.
* ``endonerf-all`` - EndoNeRF's original protocol (also EndoGS, ForPlane): train on every frame and
  evaluate every frame from index 1 (``eval_rgb.py``'s ``start_index = 1``); a reconstruction score,
  not novel-view synthesis.
* ``scared`` - EndoSurf / EndoGaussian on SCARED: test frames ``(i - 1) % 8 == 0``; no tool masks, the
  evaluation mask is depth validity; depth metrics in millimetres.
* ``native`` - any other dataset: the run's own split and the dataset's evaluation masks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional, Sequence, get_args

from endogs.data.types import Scene
from endogs.errors import ConfigError

ProtocolName = Literal["auto", "endonerf", "endonerf-all", "scared", "native"]
"""The evaluation protocols: the one definition (CLI choices and configs use this type; code reads
:data:`PROTOCOL_NAMES`); each name but "auto" has its :data:`PROTOCOLS` entry."""
PROTOCOL_NAMES: tuple[str, ...] = get_args(ProtocolName)
EvalSplit = Literal["test", "train", "all"]
"""Which frames ``endogs eval`` scores."""
EVAL_SPLITS: tuple[str, ...] = get_args(EvalSplit)
SPLIT_RULES = {
    "every8": "test = {i : (i - 1) % 8 == 0} (1, 9, 17, ...), train = all other frames",
    "all": "train = every frame; evaluation on the training frames (reconstruction)",
    "alternate": "train = even frames, test = odd frames",
}


@dataclass(frozen=True)
class Protocol:
    name: str
    description: str
    required_split: Optional[str] = None  # the run's split must be this one (None: any)
    start_index: int = 0  # frames before this index are not evaluated
    depth_unit: Optional[str] = None  # depth metrics need this unit (None: whatever the scene has)
    formats: Optional[tuple[str, ...]] = None  # dataset formats this protocol applies to

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "required_split": self.required_split,
                "start_index": self.start_index, "depth_unit": self.depth_unit}


PROTOCOLS = {
    "endonerf": Protocol(
        "endonerf",
        "EndoSurf/EndoGaussian/Deform3DGS: test frames (i-1)%8==0 never trained on; tool masks from gt_masks/ "
        "when present, else masks/",
        required_split="every8",
    ),
    "endonerf-all": Protocol(
        "endonerf-all",
        "EndoNeRF's original protocol: train on all frames, evaluate every frame from index 1 "
        "(eval_rgb.py start_index=1); a reconstruction score, not novel-view synthesis",
        required_split="all",
        start_index=1,
    ),
    "scared": Protocol(
        "scared",
        "EndoSurf/EndoGaussian on SCARED: test frames (i-1)%8==0; no tool masks, the evaluation mask is depth "
        "validity; depth metrics in mm",
        required_split="every8",
        depth_unit="mm",
        formats=("scared", "scared-keyframe"),
    ),
    "native": Protocol("native", "the dataset's own split and evaluation masks"),
}
if set(PROTOCOLS) != set(PROTOCOL_NAMES) - {"auto"}:  # pragma: no cover - a protocol added to one list only
    raise ImportError(f"endogs.eval.protocol: PROTOCOLS {sorted(PROTOCOLS)} differ from ProtocolName {PROTOCOL_NAMES}")


def resolve_protocol(name: str, data: Scene) -> Protocol:
    """The protocol ``name`` ("auto" picks by format and split) after checking the run follows it."""
    if name not in PROTOCOL_NAMES:
        raise ConfigError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOL_NAMES)}")
    if name == "auto":
        if data.format in ("scared", "scared-keyframe") and data.split == "every8":
            name = "scared"
        elif data.format == "endonerf" and data.split == "every8":
            name = "endonerf"
        elif data.format == "endonerf" and data.split == "all":
            name = "endonerf-all"
        else:
            name = "native"
    p = PROTOCOLS[name]
    if p.required_split is not None and data.split != p.required_split:
        fix = "retrain with --data.split " + p.required_split
        if data.split == "all":
            fix += " or use --protocol endonerf-all"
        elif data.split == "every8":
            fix += " or use --protocol endonerf"
        raise ConfigError(f"protocol {name} needs a run trained with split {p.required_split!r}, but this run used "
                          f"{data.split!r}; {fix}")
    if p.formats is not None and data.format not in p.formats:
        raise ConfigError(f"protocol {name} applies to {'/'.join(p.formats)} scenes, not {data.format}; use --protocol auto")
    if p.depth_unit is not None and data.depth_unit != p.depth_unit:
        raise ConfigError(f"protocol {name} reports depth in {p.depth_unit}, but the scene's depth unit is "
                          f"{data.depth_unit!r}; use --protocol native")
    return p


def eval_indices(protocol: Protocol, split: str, n_frames: int, train: Sequence[int], test: Sequence[int]) -> list[int]:
    """Frames to evaluate: ``split`` "test" (the protocol's test frames), "train" or "all"."""
    if split not in EVAL_SPLITS:
        raise ConfigError(f"unknown split {split!r}; choose {', '.join(EVAL_SPLITS)}")
    idx = {"test": list(test), "train": list(train), "all": list(range(n_frames))}[split]
    return sorted(i for i in idx if i >= protocol.start_index)
