"""endogs.eval metrics, LPIPS, baselines and protocols against independent float64 computations."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from endogs.errors import ConfigError, DataError
from endogs.eval import io, metrics as M
from endogs.eval import lpips as L
from endogs.eval.baselines import baseline_images, nearest, neighbours, train_mean
from endogs.eval.protocol import PROTOCOLS, eval_indices, resolve_protocol


def images(h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    gt = rng.uniform(0.1, 0.9, (h, w, 3))
    gt = (gt + np.roll(gt, 1, 0) + np.roll(gt, 1, 1)) / 3  # some spatial structure
    render = np.clip(gt + rng.normal(0, 0.05, gt.shape), 0, 1)
    return render, gt


def half_mask(h=40, w=48):
    m = np.zeros((h, w), bool)
    m[:, : w // 2] = True  # tissue = left half
    return m


# ------------------------------------------------------------------------------------------ PSNR
def test_psnr_variants_match_float64_formulas_on_half_mask():
    render, gt = images()
    m = half_mask()
    render = render.copy()
    render[~m] = 1.0 - gt[~m]  # large errors in the tool half: must not count for psnr / psnr_legacy
    d2 = (render - gt) ** 2
    mse_tissue = d2[m].sum() / (3 * m.sum())
    mse_legacy = (((render * m[..., None]) - (gt * m[..., None])) ** 2).mean()
    mse_full = d2.mean()
    assert M.psnr(render, gt, m) == pytest.approx(10 * math.log10(1 / mse_tissue), abs=1e-9)
    assert M.psnr_legacy(render, gt, m) == pytest.approx(10 * math.log10(1 / mse_legacy), abs=1e-9)
    assert M.psnr_full(render, gt) == pytest.approx(10 * math.log10(1 / mse_full), abs=1e-9)
    # half the pixels are zeros in both images: legacy = true + 10 log10(2)
    assert M.psnr_legacy(render, gt, m) - M.psnr(render, gt, m) == pytest.approx(10 * math.log10(2), abs=1e-9)
    assert M.psnr_full(render, gt) < M.psnr(render, gt, m) - 5
    # torch float32 inputs give the same numbers (computed in float64)
    t = M.psnr(torch.tensor(render, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32), torch.tensor(m))
    assert t == pytest.approx(M.psnr(render.astype(np.float32), gt.astype(np.float32), m), abs=1e-9)


def test_psnr_edge_cases_and_pooling():
    render, gt = images()
    m = half_mask()
    assert M.psnr(gt, gt, m) == pytest.approx(100.0)  # MSE floor -> 100 dB cap, finite
    assert math.isnan(M.psnr(render, gt, np.zeros_like(m)))  # no tissue pixel
    assert M.psnr(render, gt, None) == pytest.approx(M.psnr_full(render, gt))
    r2, g2 = images(seed=1)
    f1, f2 = M.image_metrics(render, gt, m), M.image_metrics(r2, g2, ~m)
    pooled = M.pooled_psnr([f1, f2])
    sq = ((render - gt) ** 2)[m].sum() + ((r2 - g2) ** 2)[~m].sum()
    n = 3 * (m.sum() + (~m).sum())
    assert pooled["psnr_pooled"] == pytest.approx(10 * math.log10(n / sq), abs=1e-9)
    legacy = (((render - gt) * m[..., None]) ** 2).sum() + (((r2 - g2) * (~m)[..., None]) ** 2).sum()
    assert pooled["psnr_legacy_pooled"] == pytest.approx(10 * math.log10(2 * render.size / legacy), abs=1e-9)
    assert f1["tissue_fraction"] == pytest.approx(0.5)


# ------------------------------------------------------------------------------------------ SSIM
def ssim_map_reference(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """SSIM map by the definition (Wang et al. 2004), float64, valid window positions, channel mean."""
    from numpy.lib.stride_tricks import sliding_window_view

    k = np.arange(11) - 5.0
    g = np.exp(-(k**2) / (2 * 1.5**2))
    w = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = 0.01**2, 0.03**2
    maps = []
    for c in range(3):
        X = sliding_window_view(x[..., c], (11, 11))
        Y = sliding_window_view(y[..., c], (11, 11))
        mx, my = (X * w).sum((-1, -2)), (Y * w).sum((-1, -2))
        vx = (X**2 * w).sum((-1, -2)) - mx**2
        vy = (Y**2 * w).sum((-1, -2)) - my**2
        cxy = (X * Y * w).sum((-1, -2)) - mx * my
        maps.append(((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2)))
    return np.mean(maps, axis=0)


def test_ssim_and_ssim_masked_match_the_definition():
    from pytorch_msssim import ssim as msssim

    render, gt = images(h=36, w=44, seed=3)
    m = half_mask(36, 44)
    mm = m[..., None]
    ref = ssim_map_reference(render * mm, gt * mm)  # [H-10, W-10]
    inner = m[5:-5, 5:-5]
    # float64 computation: exact; the default float32 one (fast on CPUs) within 1e-5
    assert M.ssim(render, gt, m, dtype=torch.float64) == pytest.approx(ref.mean(), abs=1e-9)
    assert M.ssim_masked(render, gt, m, dtype=torch.float64) == pytest.approx(ref[inner].mean(), abs=1e-9)
    assert M.ssim(render, gt, m) == pytest.approx(ref.mean(), abs=1e-5)
    assert M.ssim_masked(render, gt, m) == pytest.approx(ref[inner].mean(), abs=1e-5)
    smap = M.ssim_map(render, gt, m, dtype=torch.float64).numpy()
    assert np.isnan(smap[:5]).all() and np.isnan(smap[:, -5:]).all() and np.allclose(smap[5:-5, 5:-5], ref, atol=1e-9)
    # the two maintained implementations agree (pytorch-msssim: same valid region, float32 window)
    x = torch.tensor(render * mm).permute(2, 0, 1)[None]
    y = torch.tensor(gt * mm).permute(2, 0, 1)[None]
    assert float(msssim(x, y, data_range=1.0, win_size=11, win_sigma=1.5)) == pytest.approx(ref.mean(), abs=1e-6)  # float32 window
    ref_full = ssim_map_reference(render, gt)
    assert M.ssim(render, gt, dtype=torch.float64) == pytest.approx(ref_full.mean(), abs=1e-9)
    assert M.ssim_masked(render, gt, None) == pytest.approx(ref_full.mean(), abs=1e-5)
    # the tool half scores 1 in `ssim` (zeros in both), so it exceeds `ssim_masked`
    assert M.ssim(render, gt, m) > M.ssim_masked(render, gt, m)
    assert M.ssim(gt, gt, m) == pytest.approx(1.0, abs=1e-6)
    assert M.image_metrics(render, gt, m)["ssim_masked"] == pytest.approx(ref[inner].mean(), abs=1e-5)
    assert math.isnan(M.ssim(render[:10], gt[:10]))  # window does not fit: n/a, not a number


# ------------------------------------------------------------------------------------------ depth
def test_depth_errors_float64():
    rng = np.random.default_rng(4)
    gt = rng.uniform(40, 80, (20, 24))
    gt[:3] = 0  # unknown
    pred = gt + rng.normal(0, 2, gt.shape)
    pred[10, 10] = 0  # nothing drawn: an error, not a hole
    valid = np.ones_like(gt, bool)
    valid[:, :4] = False
    sel = valid & (gt > 0)
    d = M.depth_errors(pred, gt, valid)
    assert d["n"] == sel.sum()
    assert d["rmse"] == pytest.approx(np.sqrt(((pred - gt)[sel] ** 2).mean()), rel=1e-12)
    assert d["absrel"] == pytest.approx((np.abs(pred - gt)[sel] / gt[sel]).mean(), rel=1e-12)
    assert math.isnan(M.depth_errors(pred, np.zeros_like(gt))["rmse"])


# ------------------------------------------------------------------------------------------ LPIPS
def fake_alexnet(path: Path, seed: int = 0) -> Path:
    """A torchvision-layout AlexNet state dict with random weights (the real one is not on this machine)."""
    torch.manual_seed(seed)
    feats = L.alexnet_features()
    sd = {f"features.{k}": v for k, v in feats.state_dict().items()}
    sd["classifier.1.weight"] = torch.zeros(4, 4)  # torchvision files hold the classifier too
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return path


def test_lpips_matches_torchmetrics_reference(tmp_path, monkeypatch):
    from torchmetrics.functional.image import lpips as tm

    weights = fake_alexnet(tmp_path / L.ALEXNET_FILE)
    net, status = L.load_lpips(weights)
    assert status.available and not status.backbone_verified and status.backbone_sha256
    assert "not comparable" in status.reason
    sd = torch.load(weights, weights_only=True)

    def tv_features(name, pretrained=False):  # torchmetrics' torchvision hook, fed the same weights
        f = L.alexnet_features()
        f.load_state_dict({k[9:]: v for k, v in sd.items() if k.startswith("features.")})
        return f

    monkeypatch.setattr(tm, "_get_tv_model_features", tv_features)
    ref = tm._LPIPS(pretrained=True, net="alex").double().eval()
    ours = net.double()
    render, gt = images(h=64, w=72, seed=5)
    m = half_mask(64, 72)
    a = torch.tensor(render * m[..., None]).permute(2, 0, 1)[None]
    b = torch.tensor(gt * m[..., None]).permute(2, 0, 1)[None]
    expect = float(ref(a, b, normalize=True))  # inputs [0,1] -> [-1,1]
    assert expect > 0
    assert ours.distance(render * m[..., None], gt * m[..., None]) == pytest.approx(expect, rel=1e-9, abs=1e-12)
    assert M.image_metrics(render, gt, m, lpips=ours)["lpips"] == pytest.approx(expect, rel=1e-9, abs=1e-12)
    assert ours.distance(gt, gt) == pytest.approx(0.0, abs=1e-12)


def test_lpips_weights_discovery_and_errors(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    net, status = L.load_lpips(None)
    assert net is None and not status.available
    assert status.protocol()["status"] == "unavailable" and "--lpips-weights" in status.protocol()["fix"]
    fake_alexnet(tmp_path / "th" / "hub" / "checkpoints" / L.ALEXNET_FILE)
    net, status = L.load_lpips(None, verify=False)
    assert net is not None and status.backbone_path.endswith(L.ALEXNET_FILE)
    with pytest.raises(DataError, match="nowhere"):
        L.load_lpips(tmp_path / "nowhere.pth")
    torch.save({"features.0.weight": torch.zeros(1)}, tmp_path / "bad.pth")
    with pytest.raises(DataError, match="bad.pth.*not torchvision AlexNet"):
        L.load_lpips(tmp_path / "bad.pth")


# ------------------------------------------------------------------------------------------ baselines
def test_baseline_frame_choice_and_images():
    train = [0, 2, 3, 4, 5, 6, 7, 8]
    assert neighbours(train, 1) == (0, 2) and neighbours(train, 9) == (8, None)
    assert nearest(train, 1) == 0 and nearest(train, 9) == 8  # tie -> earlier
    assert nearest(list(range(5)), 2) == 1  # the frame itself is never its own predictor
    imgs = {i: np.full((4, 5, 3), i / 10.0) for i in range(10)}
    mean = train_mean(train, imgs.__getitem__)
    assert np.allclose(mean, np.mean(train) / 10)
    b = baseline_images(1, train, imgs.__getitem__, mean)
    assert np.allclose(b["nearest_train"], 0.0) and np.allclose(b["neighbour_mean"], 0.1)
    assert np.allclose(baseline_images(9, train, imgs.__getitem__, mean)["neighbour_mean"], 0.8)


# ------------------------------------------------------------------------------------------ protocols
class _Data:
    def __init__(self, fmt="endonerf", split="every8", unit="mm"):
        self.format, self.split, self.depth_unit = fmt, split, unit


def test_protocol_resolution_and_frames():
    assert resolve_protocol("auto", _Data()).name == "endonerf"
    assert resolve_protocol("auto", _Data(split="all")).name == "endonerf-all"
    assert resolve_protocol("auto", _Data(fmt="scared")).name == "scared"
    assert resolve_protocol("auto", _Data(fmt="hamlyn", split="alternate")).name == "native"
    with pytest.raises(ConfigError, match="endonerf-all"):
        resolve_protocol("endonerf", _Data(split="all"))
    with pytest.raises(ConfigError, match="scared"):
        resolve_protocol("scared", _Data(fmt="endonerf"))
    with pytest.raises(ConfigError, match="depth unit"):
        resolve_protocol("scared", _Data(fmt="scared", unit="unknown"))
    train, test = [0, 2, 3, 4, 5, 6, 7, 8, 10], [1, 9]
    assert eval_indices(PROTOCOLS["endonerf"], "test", 11, train, test) == [1, 9]
    assert eval_indices(PROTOCOLS["endonerf-all"], "test", 5, list(range(5)), list(range(5))) == [1, 2, 3, 4]


# ------------------------------------------------------------------------------------------ files
def test_atomic_files_and_mp4(tmp_path):
    import imageio_ffmpeg

    io.write_json(tmp_path / "a.json", {"x": float("nan"), "y": np.float32(1.5), "z": [np.int64(2)]})
    assert (tmp_path / "a.json").read_text().replace(" ", "").replace("\n", "") == '{"x":null,"y":1.5,"z":[2]}'
    frames = [np.full((9, 11, 3), i / 4.0) for i in range(4)]  # odd size: padded to even
    io.write_mp4(tmp_path / "v.mp4", iter(frames), fps=5)
    reader = imageio_ffmpeg.read_frames(str(tmp_path / "v.mp4"))
    meta = next(reader)
    assert meta["size"] == (12, 10) and sum(1 for _ in reader) == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "v.mp4"]  # no temp files left
    with pytest.raises(ValueError):
        io.write_mp4(tmp_path / "empty.mp4", iter([]))
    assert not list(tmp_path.glob(".*"))
