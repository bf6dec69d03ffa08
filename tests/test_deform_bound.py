"""Position offsets of the deformation fields are bounded: max_offset * tanh(raw / max_offset),
in units of the AABB half-extent (a long run once flung Gaussians metres away without it)."""

import numpy as np
import pytest
import torch

from endogs.init.pointcloud import PointCloud
from endogs.model.config import HexPlaneConfig, field_type
from endogs.model.scene import DynamicScene


def _scene(kind, max_offset):
    rng = np.random.default_rng(0)
    torch.manual_seed(0)
    pc = PointCloud(rng.random((100, 3)), rng.random((100, 3)))
    return DynamicScene.from_point_cloud(pc, field_type(kind)(max_offset=max_offset), n_frames=8, sh_degree=0)


@pytest.mark.parametrize("kind", ["hexplane", "mlp", "basis"])
def test_position_offsets_are_bounded(kind):
    scene = _scene(kind, 0.5)
    field = scene.deform
    with torch.no_grad():  # make the raw position output enormous
        for name, p in list(field.named_parameters()) + [(k, v) for k, v in scene.params.items() if k.startswith("deform_")]:
            if "means" in name or kind == "hexplane":
                p.add_(torch.randn_like(p) * 50.0)
        d = (scene.at(0.4).means - scene.at(0.4, deform=False).means).abs()
    limit = 0.5 * float(field.motion_scale)
    assert float(d.max()) <= limit * (1 + 1e-5)
    assert float(d.max()) > 0.5 * limit  # the raw output really was large


def test_bound_is_the_identity_for_small_motion_and_can_be_switched_off():
    out = torch.tensor([[0.01, -0.02, 0.0]])
    bounded = _scene("hexplane", 0.5).deform.to_deltas({"means": out}).d_means
    free = _scene("hexplane", 0.0).deform.to_deltas({"means": out}).d_means
    assert torch.allclose(bounded, free, rtol=2e-3)
    big = torch.tensor([[100.0, 0.0, 0.0]])
    free_field = _scene("hexplane", 0.0).deform
    assert float(free_field.to_deltas({"means": big}).d_means[0, 0]) == pytest.approx(100.0 * float(free_field.motion_scale))
    with pytest.raises(Exception, match="max_offset"):
        HexPlaneConfig(max_offset=-1.0)
