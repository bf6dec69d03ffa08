"""Real SCARED stereo frames and calibration (research data kept outside the repository)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from endogs.data.calib import read_stereo_calibration
from endogs.data.io import image_shape, read_rgb


def test_real_calibration_yaml(scared_640):
    calib = read_stereo_calibration(scared_640 / "endoscope_calibration.yaml")
    assert calib.K1[0, 0] == pytest.approx(511.71155, rel=1e-6)
    assert calib.K2[0, 2] == pytest.approx(342.927643, rel=1e-6)
    assert calib.D1.shape == (5,) and calib.T.shape == (3,)
    assert calib.baseline == pytest.approx(4.1326, abs=1e-3)
    np.testing.assert_allclose(calib.R @ calib.R.T, np.eye(3), atol=1e-6)
    # The JSON copy of the same calibration agrees.
    js = read_stereo_calibration(scared_640 / "calibration.json")
    np.testing.assert_allclose(js.K1, calib.K1, rtol=1e-6)
    np.testing.assert_allclose(js.T, calib.T, rtol=1e-6)
    assert js.image_size == (640, 512)


def test_real_frames_rectify_to_shared_principal_point(scared_640):
    calib = read_stereo_calibration(scared_640 / "endoscope_calibration.yaml")
    lefts = sorted((scared_640 / "left_image").glob("*.jpg"))[:3]
    rights = sorted((scared_640 / "right_image").glob("*.jpg"))[:3]
    assert len(lefts) == 3 and len(rights) == 3
    for p in lefts + rights:
        assert image_shape(p)[:2] == (512, 640)
    img = read_rgb(lefts[0])
    assert img.shape == (512, 640, 3) and img.dtype == np.float32
    assert 0.05 < img.mean() < 0.95 and img.std() > 0.02  # a real, non-blank image
    R1, R2, P1, P2, Q, _, _ = cv2.stereoRectify(calib.K1, calib.D1, calib.K2, calib.D2, (640, 512), calib.R, calib.T.reshape(3, 1), alpha=0)
    assert P1[0, 0] == pytest.approx(555.21, abs=0.05)
    assert P1[0, 2] == pytest.approx(320.06, abs=0.05) and P1[1, 2] == pytest.approx(255.54, abs=0.05)
    assert P2[0, 2] == pytest.approx(P1[0, 2])
    assert abs(1.0 / Q[3, 2]) == pytest.approx(4.1326, abs=1e-3)
