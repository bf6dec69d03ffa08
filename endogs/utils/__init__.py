"""Small helpers shared by training, evaluation, export, video and the viewer.

* :mod:`endogs.utils.fs` - atomic writes (temporary name in the same folder, then rename).

Each module imports nothing of endogs above it, so any layer can use it.
"""
