"""Raw endoscopic video → scene folder (``endogs prepare``), and prepare + train + eval (``endogs reconstruct``).

Pipeline (:func:`prepare_scene`): read frames (:mod:`.sources`: one stacked video, two videos, left/right
image folders, or monocular) → resize → undistort and rectify with the stereo calibration, using the
rectified intrinsics P1 (:mod:`.rectify`) → StereoSGBM depth in mm with left padding, left-right check,
range filter and highlight masking (:mod:`.stereo`; monocular: a local depth model, :mod:`.mono`) →
tool masks (:mod:`.masks`) → camera poses: identity, checked RGB-D odometry with fallbacks and a keyframe
pose graph, or a pose file (:mod:`.poses`) → an EndoNeRF-layout scene with ``endogs_scene.json`` and
preview.png, written atomically (:mod:`.writer`). :mod:`.synthetic_stereo` writes synthetic stereo videos
with exact ground truth for tests.
"""

from endogs.video.config import PrepareOptions
from endogs.video.prepare import PrepareResult, prepare_scene

__all__ = ["PrepareOptions", "PrepareResult", "prepare_scene"]
