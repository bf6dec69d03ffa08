"""Head-light shading and per-frame exposure: identity at start, the physical formula, gradients,
interpolation for frames not trained on."""

import math

import torch

from endogs.model.appearance import Exposure, HeadLight, gaussian_normals
from endogs.model.pose import quat_of_rotvec


def _flat_gaussians(n=5):
    means = torch.stack([torch.zeros(n), torch.zeros(n), torch.linspace(20.0, 60.0, n)], dim=-1)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    scales = torch.tensor([[1.0, 1.0, 0.01]]).repeat(n, 1)  # flat in xy: normal along z
    return means, quats, scales


def test_normals_are_the_smallest_axis():
    _, _, scales = _flat_gaussians(3)
    q = quat_of_rotvec(torch.tensor([[math.pi / 2, 0.0, 0.0]] * 3))  # rotate z onto -y
    n = gaussian_normals(q, scales)
    assert torch.allclose(n, torch.tensor([[0.0, -1.0, 0.0]] * 3), atol=1e-6)


def test_head_light_starts_as_identity_and_follows_the_formula():
    means, quats, scales = _flat_gaussians()
    hl = HeadLight(reference_distance=40.0)
    center = torch.zeros(3)
    assert torch.equal(hl.shading(means, quats, scales, center), torch.ones(5))
    with torch.no_grad():
        hl.falloff.fill_(2.0)
    d = means[:, 2]
    assert torch.allclose(hl.shading(means, quats, scales, center), (40.0 / d) ** 2, rtol=1e-5)
    # Lambertian term: a camera off to the side sees the flat Gaussians at an angle
    with torch.no_grad():
        hl.falloff.fill_(0.0)
        hl.lambert_raw.fill_(1.0)
    side = torch.tensor([30.0, 0.0, 40.0])
    ray = means - side
    cos = ray[:, 2].abs() / ray.norm(dim=-1)
    assert torch.allclose(hl.shading(means, quats, scales, side), cos, rtol=1e-5)


def test_head_light_learns_inverse_square_falloff():
    g = torch.Generator().manual_seed(0)
    n = 400
    means = torch.cat([torch.randn(n, 2, generator=g) * 5, torch.rand(n, 1, generator=g) * 40 + 20], dim=-1)
    quats = torch.tensor([[1.0, 0.0, 0.0, 0.0]]).repeat(n, 1)
    scales = torch.tensor([[1.0, 1.0, 0.01]]).repeat(n, 1)
    albedo = torch.rand(n, 3, generator=g) * 0.5 + 0.2
    center = torch.zeros(3)
    target = albedo * ((40.0 / means.norm(dim=-1)) ** 2)[:, None]
    hl = HeadLight(40.0)
    opt = torch.optim.Adam(hl.parameters(), lr=0.05)
    for _ in range(300):
        loss = (albedo * hl.shading(means, quats, scales, center)[:, None] - target).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(float(hl.falloff.detach()) - 2.0) < 0.05
    assert float(hl.lambert.detach()) < 0.05
    back = HeadLight.from_checkpoint(hl.to_checkpoint())
    assert torch.equal(back.shading(means, quats, scales, center), hl.shading(means, quats, scales, center))


def test_exposure_identity_apply_and_interpolation():
    ex = Exposure([0, 2, 4], [0.0, 0.5, 1.0])
    img = torch.rand(4, 5, 3)
    assert torch.equal(Exposure.apply(img, ex.of(2)), img)
    with torch.no_grad():
        ex.params[0] = torch.tensor([0.0, 0.0, 0.0, 0.1, 0.1, 0.1])
        ex.params[1] = torch.tensor([math.log(2.0), 0.0, 0.0, 0.0, 0.0, 0.0])
    p = ex.for_frame(1, 0.25)  # halfway between rows 0 and 1
    assert torch.allclose(p, torch.tensor([math.log(2.0) / 2, 0, 0, 0.05, 0.05, 0.05]))
    out = Exposure.apply(img, ex.of(2))
    assert torch.allclose(out[..., 0], img[..., 0] * 2.0) and torch.equal(out[..., 1], img[..., 1])
    loss = Exposure.apply(img, ex.of(4)).sum()
    loss.backward()
    assert ex.params.grad[2].abs().sum() > 0 and ex.params.grad[:2].abs().sum() == 0
    assert float(ex.regularizer().detach()) > 0
    back = Exposure.from_checkpoint(ex.to_checkpoint())
    assert torch.equal(back.params, ex.params)
