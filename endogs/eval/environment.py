"""The machine and library versions an evaluation ran with (recorded in metrics.json)."""

from __future__ import annotations

import platform
import sys
from typing import Any, Optional

import cv2
import numpy as np


def environment(device) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    import endogs

    def ver(name: str) -> Optional[str]:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    dev = {"type": device.type}
    if device.type == "cuda":
        dev["name"] = torch.cuda.get_device_name(device)
    else:
        dev["name"] = platform.processor() or platform.machine()
        dev["threads"] = torch.get_num_threads()
    return {
        "device": dev,
        "versions": {
            "endogs": endogs.__version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "torchmetrics": ver("torchmetrics"), "pytorch-msssim": ver("pytorch-msssim"),
            "opencv": cv2.__version__, "imageio-ffmpeg": ver("imageio-ffmpeg"), "gsplat": ver("gsplat"),
        },
        "platform": platform.platform(),
    }
