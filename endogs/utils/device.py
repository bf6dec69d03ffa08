"""The device choice of every command: the one ``DeviceName`` type and how it maps to a torch device."""

from __future__ import annotations

from typing import Literal, get_args

import torch

from endogs.errors import ConfigError

DeviceName = Literal["auto", "cpu", "cuda"]
"""Where to train or render: ``auto`` = CUDA when present."""

DEVICES: tuple[str, ...] = get_args(DeviceName)


def pick_device(requested: str) -> torch.device:
    """``auto`` = CUDA when present; ``cuda`` without a GPU is a :class:`ConfigError`."""
    if requested not in DEVICES:
        raise ConfigError(f"unknown device {requested!r}; choose one of {', '.join(DEVICES)}")
    if requested == "cuda" or (requested == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but no CUDA GPU is available; use --device cpu or auto")
        return torch.device("cuda")
    return torch.device("cpu")
