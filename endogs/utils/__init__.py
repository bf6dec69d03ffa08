"""Small helpers shared by training, evaluation, export, video and the viewer.

* :mod:`endogs.utils.fs` - atomic writes (temporary name in the same folder, then rename).
* :mod:`endogs.utils.image` - to_uint8, PNG encoding, the one depth colourmap (near red, far blue),
  (down)scaled sizes and resampling.
* :mod:`endogs.utils.mp4` - H.264 mp4 writing (atomic).
* :mod:`endogs.utils.geometry` - quaternion to rotation matrix.
* :mod:`endogs.utils.progress` - one progress helper for every long command.

Each module imports nothing of endogs above it, so any layer can use it.
"""
