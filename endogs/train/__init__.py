"""Per-scene optimisation: config, losses, densification, the training loop and checkpoints."""

from endogs.train.config import TrainConfig, list_presets, load_preset
from endogs.train.trainer import LoadedRun, Trainer, load_run, read_run

__all__ = ["TrainConfig", "Trainer", "LoadedRun", "load_run", "read_run", "list_presets", "load_preset"]
