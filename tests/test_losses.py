"""Training losses: masking, SSIM against a direct computation, depth losses' invariances."""

import numpy as np
import torch

from endogs.train.losses import inverse_depth_l1, masked_dssim, masked_dssim_autograd, masked_l1, pearson_depth, ssim_map


def test_masked_l1_ignores_masked_pixels():
    gt = torch.zeros(4, 4, 3)
    pred = gt.clone()
    pred[:, :2] = 1.0  # wrong only where the mask is 0
    w = torch.ones(4, 4)
    w[:, :2] = 0
    assert float(masked_l1(pred, gt, w)) == 0.0
    assert float(masked_l1(pred, gt)) == 0.5


def test_ssim_map_matches_direct_window_at_the_centre():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(21, 21, 3, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.rand(21, 21, 3, generator=g, dtype=torch.float64)).clamp(0, 1)
    s = ssim_map(x, y)[0, 10, 10].item()
    ax = np.arange(11) - 5
    k = np.exp(-(ax**2) / (2 * 1.5**2))
    k = np.outer(k, k)
    k /= k.sum()
    vals = []
    for c in range(3):
        a = x[5:16, 5:16, c].numpy()
        b = y[5:16, 5:16, c].numpy()
        ma, mb = (k * a).sum(), (k * b).sum()
        va, vb = (k * a * a).sum() - ma**2, (k * b * b).sum() - mb**2
        cov = (k * a * b).sum() - ma * mb
        c1, c2 = 0.01**2, 0.03**2
        vals.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma**2 + mb**2 + c1) * (va + vb + c2)))
    assert abs(s - np.mean(vals)) < 1e-10
    assert float(masked_dssim(x, x)) < 1e-12


def test_fused_dssim_equals_autograd_in_value_and_gradient():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 19, 23, 3, generator=g, dtype=torch.float64)
    x0 = (y + 0.2 * torch.rand(2, 19, 23, 3, generator=g, dtype=torch.float64) - 0.1).clamp(0, 1)
    w = (torch.rand(2, 19, 23, generator=g) > 0.3).double() * torch.rand(2, 19, 23, generator=g, dtype=torch.float64)
    grads = []
    for fn in (masked_dssim, masked_dssim_autograd):
        x = x0.clone().requires_grad_(True)
        loss = fn(x, y, w)
        loss.backward()
        grads.append((float(loss.detach()), x.grad))
    (lf, gf), (la, ga) = grads
    assert 0.01 < lf < 1 and abs(lf - la) < 1e-12
    assert float(ga.abs().max()) > 1e-4 and float((gf - ga).abs().max()) < 1e-12 * float(ga.abs().max()) * 1e3
    x = x0[:1, :9, :11].clone().requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v: masked_dssim(v, y[:1, :9, :11], w[:1, :9, :11]), (x,))
    # a single image [H, W, 3] without weights, float32 as in training
    x32 = x0[0].float().requires_grad_(True)
    masked_dssim(x32, y[0].float()).backward()
    assert x32.grad.shape == (19, 23, 3) and torch.isfinite(x32.grad).all()
    assert abs(float(masked_dssim(x0[0].float(), y[0].float())) - float(masked_dssim_autograd(x0[0].float(), y[0].float()))) < 1e-5


def test_depth_losses():
    gt = torch.full((8, 8), 50.0)
    gt[0, 0] = 0.0  # invalid
    w = torch.ones(8, 8)
    assert float(inverse_depth_l1(gt.clamp_min(50.0), gt, w)) < 1e-9
    far = inverse_depth_l1(torch.full((8, 8), 55.0), gt, w)
    assert abs(float(far) - (1 / 50 - 1 / 55) * 50) < 1e-6  # relative, unit-free
    # scale- and shift-invariant against a relative prior
    d = torch.linspace(40, 60, 64).view(8, 8)
    assert float(pearson_depth(d, 3.0 * d + 7.0, w)) < 1e-6
    assert float(pearson_depth(d, -d + 200.0, w)) > 1.9
    # no valid pixel: zero, and differentiable
    z = inverse_depth_l1(d.requires_grad_(), torch.zeros(8, 8), w)
    z.backward()
    assert float(z.detach()) == 0.0
    assert d.grad is not None and not d.grad.any()
