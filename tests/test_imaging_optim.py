"""The imaging optimizer: per-frame rows (pose corrections, exposures) change only at their own
frame's steps, unlike dense Adam; the head-light scalars are plain Adam; the state round-trips."""

from __future__ import annotations

import io

import pytest
import torch

from endogs.model.appearance import Exposure, HeadLight
from endogs.model.imaging import Imaging, ImagingConfig
from endogs.model.pose import PoseCorrections
from endogs.train.optim import ImagingOptimizer


def _imaging() -> Imaging:
    return Imaging(PoseCorrections([0, 2, 3, 5], [0.0, 0.3, 0.6, 1.0], scene_scale=2.0), HeadLight(1.0),
                   Exposure([0, 2, 3, 5], [0.0, 0.3, 0.6, 1.0]))


def _visit(im: Imaging, opt, frame: int) -> None:
    """One step that sees ``frame``: a loss on its rows, its regularisers and the head light."""
    target = torch.tensor([0.01, -0.02, 0.03, 0.0, 0.01, -0.01])
    loss = (im.poses.of(frame) - target).square().sum() + (im.exposure.of(frame) - 0.1).square().sum()
    loss = loss + 0.1 * im.poses.regularizer(frame) + 0.1 * im.exposure.regularizer(frame)
    loss = loss + (im.head_light.falloff - 2.0).square()
    opt.zero_grad()
    loss.backward()
    opt.step()


def test_rows_change_only_at_their_own_steps():
    im = _imaging()
    opt = ImagingOptimizer(im.param_groups(ImagingConfig(pose_lr=1e-2, exposure_lr=1e-2, light_lr=1e-2)))
    _visit(im, opt, 2)
    before_p, before_e = im.poses.delta.detach().clone(), im.exposure.params.detach().clone()
    assert before_p[1].abs().sum() > 0 and before_e[1].abs().sum() > 0  # frame 2 is row 1
    f0 = float(im.head_light.falloff.detach())
    for _ in range(5):
        _visit(im, opt, 5)  # row 3 only
    after_p, after_e = im.poses.delta.detach(), im.exposure.params.detach()
    assert torch.equal(after_p[:3], before_p[:3]) and torch.equal(after_e[:3], before_e[:3])
    assert not torch.equal(after_p[3], before_p[3])
    assert float(im.head_light.falloff.detach()) > f0  # the global scalars step every time

    # dense Adam, the earlier optimizer, keeps moving row 1 on its momentum: what this one avoids
    im2 = _imaging()
    dense = torch.optim.Adam([im2.poses.delta, im2.exposure.params, *im2.head_light.parameters()], lr=1e-2, eps=1e-15)
    _visit(im2, dense, 2)
    row = im2.poses.delta.detach()[1].clone()
    _visit(im2, dense, 5)
    assert not torch.equal(im2.poses.delta.detach()[1], row)


def test_regularisers_of_one_frame_touch_its_row_only():
    im = _imaging()
    with torch.no_grad():
        im.poses.delta.fill_(0.1)
        im.exposure.params.fill_(0.2)
    (im.poses.regularizer(3) + im.exposure.regularizer(3)).backward()
    g, ge = im.poses.delta.grad, im.exposure.params.grad
    assert torch.allclose(g[2], torch.full((6,), 0.2)) and g[[0, 1, 3]].abs().sum() == 0
    assert torch.allclose(ge[2], torch.full((6,), 0.4)) and ge[[0, 1, 3]].abs().sum() == 0
    assert abs(float(im.poses.regularizer().detach()) - 0.06) < 1e-6  # the mean over frames, for reports


def test_state_round_trip_continues_identically():
    cfg = ImagingConfig(pose_lr=1e-2, exposure_lr=1e-2, light_lr=1e-2)
    a = _imaging()
    oa = ImagingOptimizer(a.param_groups(cfg))
    for f in (0, 2, 3):
        _visit(a, oa, f)
    b = Imaging.from_checkpoint(a.to_checkpoint())
    ob = ImagingOptimizer(b.param_groups(cfg))
    buf = io.BytesIO()  # through bytes, as a checkpoint file is (a loaded state would share tensors)
    torch.save(oa.state_dict(), buf)
    buf.seek(0)
    ob.load_state_dict(torch.load(buf))
    for f in (5, 0, 2):
        _visit(a, oa, f)
        _visit(b, ob, f)
    assert torch.equal(a.poses.delta, b.poses.delta) and torch.equal(a.exposure.params, b.exposure.params)
    assert torch.equal(a.head_light.falloff, b.head_light.falloff)


def test_an_earlier_single_adam_state_restarts_the_moments_with_a_warning():
    im = _imaging()
    old = torch.optim.Adam([im.poses.delta, im.exposure.params, *im.head_light.parameters()], lr=1e-2).state_dict()
    opt = ImagingOptimizer(im.param_groups(ImagingConfig()))
    with pytest.warns(UserWarning, match="moments restart"):
        opt.load_state_dict(old)
    assert opt.rows.state_dict()["state"] == {}
