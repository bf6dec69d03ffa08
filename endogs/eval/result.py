"""What an evaluation produces, as data: the hand-over from :mod:`endogs.eval.evaluate` (which
computes it) to :mod:`endogs.eval.report` (which writes it); neither module imports the other."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np


@dataclass
class EvalResult:
    run_dir: Path
    report: dict[str, Any]  # the content of metrics.json
    per_frame: list[dict[str, Any]]
    renders: dict[int, np.ndarray] = field(default_factory=dict)  # eval frame -> rgb [H,W,3] float32
    depths: dict[int, np.ndarray] = field(default_factory=dict)  # eval frame -> rendered depth [H,W]
    out_dir: Optional[Path] = None  # where the report was written (None: not written)

    @property
    def summary(self) -> dict[str, dict[str, Any]]:
        return self.report["metrics"]


@dataclass
class FramePanels:
    """One evaluated frame's pictures: the comparison and depth images are drawn from these."""

    index: int
    gt: np.ndarray  # [H, W, 3] float32 in [0, 1]
    render: np.ndarray  # [H, W, 3] float32 in [0, 1]
    mask: np.ndarray  # [H, W] bool, True = tissue (evaluated)
    depth: np.ndarray  # [H, W] rendered depth
    ref_depth: Optional[np.ndarray]  # [H, W] GT (or input) depth, 0 = invalid; None when the scene has none
    ref_label: str  # what ref_depth is ("GT depth", "input depth (not GT)")


@dataclass
class SequenceFrame:
    """One frame of the sequence video."""

    index: int
    gt: np.ndarray  # [H, W, 3]
    render: np.ndarray  # [H, W, 3]
    evaluated: bool  # framed in red in the video
