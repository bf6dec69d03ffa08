"""Bundled training presets (*.yaml), read with importlib.resources by endogs.train.config."""
