"""endogs.utils: image conversion, the depth colourmap's direction, resampling, quaternions, atomic writes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from endogs.utils import fs
from endogs.utils.geometry import quat_to_rotmat
from endogs.utils.image import colorize_depth, depth_unit, downscaled_size, encode_png, resample, to_uint8
from endogs.utils.mp4 import write_mp4


def test_to_uint8_rounds_clips_and_zeroes_nan():
    x = np.array([-1.0, 0.0, 0.5, 1.0, 2.0, np.nan], np.float32)
    assert to_uint8(x).tolist() == [0, 0, 128, 255, 255, 0]
    u = np.arange(5, dtype=np.uint8)
    assert to_uint8(u) is u


def test_depth_colours_near_red_far_blue_invalid_black():
    d = np.array([[1.0, 2.0, 3.0, 0.0]])
    assert depth_unit(d, 1.0, 3.0).tolist() == [[1.0, 0.5, 0.0, 1.0]]
    rgb = colorize_depth(d, 1.0, 3.0)
    assert rgb[0, 3].tolist() == [0, 0, 0]  # depth 0: nothing there
    near, far = colorize_depth(np.array([[1.3, 2.7]]), 1.0, 3.0).astype(int)[0]
    assert near[0] > near[2] + 60 and far[2] > far[0] + 60, (near, far)  # near red, far blue
    valid = np.array([[True, False, True, True]])
    assert colorize_depth(d, 1.0, 3.0, valid)[0, 1].tolist() == [0, 0, 0]


def test_resample_and_downscaled_size():
    assert downscaled_size(640, 512, 2.0) == (320, 256) and downscaled_size(81, 65, 2.0) == (40, 32)
    assert downscaled_size(81, 65, 1.0) == (81, 65)
    img = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert resample(img, (2, 2), "area").tolist() == [[2.5, 4.5], [10.5, 12.5]]  # block means
    assert resample(img, (4, 4), "area") is img
    m = np.eye(4, dtype=bool)
    out = resample(m, (2, 2), "nearest")
    assert out.dtype == bool and out.shape == (2, 2)


def test_quat_to_rotmat_both_layouts():
    a = math.pi / 2  # 90 degrees about z, not normalised on input
    q = torch.tensor([[math.cos(a / 2), 0, 0, math.sin(a / 2)], [2.0, 0, 0, 0]], dtype=torch.float64) * 3
    R = quat_to_rotmat(q)
    torch.testing.assert_close(R[0], torch.tensor([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]], dtype=torch.float64))
    torch.testing.assert_close(R[1], torch.eye(3, dtype=torch.float64))
    assert torch.equal(quat_to_rotmat(q, gaussian_axis_last=True), R.permute(1, 2, 0))


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    p = tmp_path / "a.txt"
    fs.write_text(p, "old")

    def boom(tmp):
        tmp.write_text("half")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        fs.atomic_write(p, boom, fsync=True)
    assert p.read_text() == "old" and sorted(x.name for x in tmp_path.iterdir()) == ["a.txt"]


def test_png_and_mp4(tmp_path):
    import cv2

    img = np.zeros((3, 4, 3), np.float32)
    img[..., 0] = 1.0  # red
    back = cv2.imdecode(np.frombuffer(encode_png(img), np.uint8), cv2.IMREAD_COLOR)
    assert back[0, 0].tolist() == [0, 0, 255]  # BGR on disk
    with pytest.raises(ValueError):
        write_mp4(tmp_path / "e.mp4", iter([]))
    assert list(tmp_path.iterdir()) == []
