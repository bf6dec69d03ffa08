"""Per-scene optimisation: config, losses, densification and the training loop.

``Trainer`` is imported on first use, so reading a config (``endogs.train.config``) does not import
the training loop (nor gsplat). The run folder itself is :mod:`endogs.run`'s.
"""

from endogs.train.config import TrainConfig, list_presets, load_preset

__all__ = ["TrainConfig", "Trainer", "LoadedRun", "load_run", "list_presets", "load_preset"]


def __getattr__(name: str):
    if name == "Trainer":
        from endogs.train.trainer import Trainer

        return Trainer
    if name in ("LoadedRun", "load_run"):
        import endogs.run

        return getattr(endogs.run, name)
    raise AttributeError(f"module 'endogs.train' has no attribute {name!r}")
