"""Evaluate a trained model: render the chosen frames, compute every metric variant, time rendering,
compare with trivial baselines. :func:`evaluate` is a function of (model, frames, protocol options) to an
:class:`~endogs.eval.result.EvalResult`; it writes nothing. :mod:`endogs.eval.report` writes the files,
:func:`endogs.eval.pipeline.evaluate_run` does both for a run folder.

>>> result = evaluate(RunFolder(run).open(), data, EvalOptions(split="test"))
>>> result.summary["model"]["psnr"]
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, Optional

import numpy as np
import torch

from endogs.data import Scene
from endogs.errors import ConfigError, DataError
from endogs import view
from endogs.eval import metrics as M
from endogs.eval.baselines import BASELINES, BEAT_MARGIN_DB, baseline_images, nearest, neighbours, train_mean
from endogs.eval.environment import environment
from endogs.eval.lpips import LPIPSStatus, load_lpips, min_size_ok
from endogs.eval.protocol import EVAL_SPLITS, SPLIT_RULES, EvalSplit, Protocol, ProtocolName, eval_indices, resolve_protocol
from endogs.eval.result import EvalResult, FramePanels, SequenceFrame
from endogs.run import LOG_FILE, DeviceName, LoadedRun, RunFolder
from endogs.utils.image import Resample, downscaled_size, resample
from endogs.utils.progress import Progress

ALIGNED = "model_pose_aligned"
METHODS = ("model", ALIGNED) + tuple(BASELINES)
Resolution = Literal["train", "native"]
FRAME_METRICS = ("psnr", "psnr_legacy", "psnr_full", "ssim", "ssim_masked", "lpips")
EVAL_FORMAT_VERSION = 1

PSNR_VARIANTS = {
    "psnr": "true masked PSNR: MSE over tissue pixels only, sum(m*(r-g)^2)/(3*sum(m)), per frame, then averaged "
            "(EndoSurf, EndoGS, EndoGaussian PSNR*)",
    "psnr_legacy": "PSNR of mask-multiplied images over all pixels, tool pixels count as zero error, per frame, then "
                   "averaged (EndoGaussian PSNR, Deform3DGS, SurgicalGaussian, Endo-4DGS; inflated by about "
                   "10*log10(1/tissue fraction) dB)",
    "psnr_full": "PSNR over all pixels of the unmasked images",
    "psnr_pooled": "one tissue-pixel MSE pooled over all evaluated frames (EndoGS eval_rgb.py)",
    "psnr_legacy_pooled": "one MSE over all pixels of all mask-multiplied frames (EndoNeRF eval_rgb.py)",
}
SSIM_PROTOCOL = {
    "ssim": "mean SSIM map of the mask-multiplied images (torchmetrics, float32; 11x11 Gaussian window, sigma 1.5, "
            "K=(0.01, 0.03), data range 1) over the valid region (window inside the image, as pytorch-msssim), per frame, "
            "then averaged; tool pixels score 1",
    "ssim_masked": "the same SSIM map averaged over tissue pixels of the valid region only",
}


@dataclass
class EvalOptions:
    """What to evaluate and what to write; ``endogs eval`` offers every field as a flag."""

    split: EvalSplit = "test"
    """Frames to evaluate: the protocol's test frames, the training frames, or all frames."""
    protocol: ProtocolName = "auto"
    """endonerf (test = (i-1)%8==0, gt_masks), endonerf-all (EndoNeRF: all frames from 1), scared
    (depth-validity masks, depth in mm), native (the dataset's own split); auto picks by format and split."""
    lpips_weights: Optional[Path] = None
    """torchvision's alexnet-owt-7be5be79.pth (or its folder); default: the torch hub cache. Without it
    LPIPS is reported as unavailable."""
    device: DeviceName = "auto"
    """Where to render; auto = CUDA when present."""
    data: Optional[Path] = None
    """The scene folder, when it moved since training."""
    output: Optional[Path] = None
    """The report folder; default RUN/eval_<split>."""
    images: bool = True
    """Write renders, GT | render | error and depth comparison images."""
    video: bool = True
    """Write sequence.mp4 (renders every frame of the sequence)."""
    plots: bool = True
    """Write training_curves.png and per_frame_psnr.png."""
    fps_warmup: int = 3
    """Untimed renders before the FPS measurement."""
    fps_min_time: float = 2.0
    """Seconds of timed rendering for the FPS measurement (after warm-up)."""
    fps_max_renders: int = 2000
    """Stop the FPS measurement after this many renders even before fps_min_time."""
    video_fps: float = 10.0
    """Frame rate of sequence.mp4."""
    resolution: Resolution = "train"
    """train: evaluate at the training resolution (the run's downscale); native: render the model at
    the dataset's full frame size even when it was trained downscaled (report folder eval_<split>_native)."""
    pose_alignment: bool = False
    """Also report the protocol of pose-free NeRF papers, labelled model_pose_aligned: each evaluated
    frame's camera pose is fitted to that frame's image with the model frozen. This FITS TO TEST
    FRAMES; the model row never uses it."""
    pose_alignment_steps: int = 100
    """Adam steps of the test-time pose alignment per frame."""






def trained_split(log: list[dict], data, run_dir: Path) -> tuple[list[int], list[int]]:
    """The (train, test) frames the run's log says it used, checked against the dataset's split."""
    init = next((r for r in log if r.get("event") == "init"), None)
    if init is None or "train_indices" not in init:
        raise DataError(f"{LOG_FILE} has no init record listing the training frames, so the evaluation cannot verify "
                        "that test frames were never trained on; retrain the run with this endogs version",
                        RunFolder(run_dir).log_file)
    train, test = [int(i) for i in init["train_indices"]], [int(i) for i in init.get("test_indices", [])]
    if sorted(train) != sorted(data.train_indices) or sorted(test) != sorted(data.test_indices):
        raise DataError(f"the scene's split (train {len(data.train_indices)} / test {len(data.test_indices)} frames) differs "
                        f"from the one the run trained with ({len(train)} / {len(test)}); evaluate against the scene and "
                        "split the run was trained on", data.root)
    if data.split != "all" and set(train) & set(test):
        raise DataError(f"the run trained on test frames {sorted(set(train) & set(test))}", RunFolder(run_dir).log_file)
    return train, test


# ------------------------------------------------------------------------------------ frame access
class FrameSource:
    """Dataset frames at the evaluation resolution (the training resolution: ``data.downscale``)."""

    def __init__(self, data, downscale: float = 1.0):
        self.data = data
        self.downscale = float(downscale)
        cam = data.frames[0].camera
        self.size = downscaled_size(cam.width, cam.height, self.downscale)
        self.image = lru_cache(maxsize=24)(self._image)

    def _resize(self, a: Optional[np.ndarray], how: Resample) -> Optional[np.ndarray]:
        if a is None or self.downscale <= 1:
            return a
        return resample(a, self.size, how)

    def camera(self, i: int):
        cam = self.data.frames[i].camera
        return cam.resized(*self.size) if self.downscale > 1 else cam

    def _image(self, i: int) -> np.ndarray:
        img = self.data.frames[i].image
        return np.ascontiguousarray(self._resize(img, "area"), dtype=np.float32)

    def mask(self, i: int) -> np.ndarray:
        m = self.data.frames[i].eval_mask
        if m is None:
            return np.ones(self.size[::-1], bool)
        return self._resize(m.astype(bool), "nearest")

    def gt_depth(self, i: int) -> Optional[np.ndarray]:
        f = self.data.frames[i]
        return self._resize(f.gt_depth, "nearest") if f.has_gt_depth else None

    def input_depth(self, i: int) -> Optional[np.ndarray]:
        f = self.data.frames[i]
        return self._resize(f.depth, "nearest") if f.has_depth else None


# ------------------------------------------------------------------------------------ rendering
def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def render_numpy(scene, t: float, camera, frame_index: Optional[int] = None, background=None) -> tuple[np.ndarray, np.ndarray]:
    """(rgb [H,W,3] float32 clipped to [0,1], expected depth [H,W] float32) of the model at time t, as
    dataset frame ``frame_index`` was seen (refined pose, head light, exposure: endogs.view)."""
    out = view.render_frame(scene, t, camera, frame_index=frame_index, background=background)
    rgb = out.rgb[0].clamp(0, 1).float().cpu().numpy()
    depth = out.depth[0, ..., 0].float().cpu().numpy()
    return rgb, depth


def pose_scale(scene) -> float:
    """Length unit of a pose correction's translation: the refined poses' scene scale, or the spread
    of the Gaussians when the scene refines none (what :func:`align_pose` uses)."""
    if scene.imaging.poses is not None:
        return float(scene.imaging.poses.scene_scale)
    return float(np.linalg.norm(scene.params["means"].detach().std(0).cpu().numpy()))


def align_pose(scene, t: float, camera, target: np.ndarray, mask: np.ndarray, steps: int, background=None) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Test-time pose alignment: the model frozen, a camera-frame SE(3) correction fitted to ``target``
    by Adam on the masked L1 (starting from the frame's own pose). Returns the aligned render, its
    depth and the correction (omega rad, rho in scene units)."""
    from endogs.model.pose import move_gaussians, refined_c2w

    dev = scene.device
    gt = torch.as_tensor(target, device=dev)
    w = torch.as_tensor(mask.astype(np.float32), device=dev)
    scale = pose_scale(scene)
    delta = torch.zeros(6, device=dev, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=1e-3)
    with torch.no_grad():
        snap = scene.at(t)
    for _ in range(max(0, steps)):
        m, q = move_gaussians(snap.means, snap.quats, camera.c2w, delta, scale)
        out = view.render(snap.with_(means=m, quats=q), camera, background=background)
        loss = ((out.rgb[0] - gt).abs().mean(-1) * w).sum() / w.sum().clamp_min(1.0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    rgb, depth = render_numpy(scene, t, camera.with_pose(refined_c2w(camera.c2w, delta.detach(), scale)), None, background)
    return rgb, depth, [round(float(v), 6) for v in delta.detach().cpu()]


@torch.no_grad()
def measure_fps(scene, jobs: list[tuple[float, Any]], device: torch.device, background=None, warmup: int = 3,
                min_time: float = 2.0, max_renders: int = 2000) -> dict[str, Any]:
    """Rendering speed of the deforming model: ``scene.at(t)`` + rasterization per frame, device
    synchronised before and after, warm-up renders excluded, cycling over ``jobs`` (time, camera)
    until ``min_time`` seconds (or ``max_renders``) have passed."""
    if not jobs:
        return {"fps": None, "renders": 0}
    for k in range(max(0, warmup)):
        t, cam = jobs[k % len(jobs)][:2]
        view.render_frame(scene, t, cam)
    sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        for t, cam, *idx in jobs:
            out = view.render_frame(scene, t, cam, frame_index=idx[0] if idx else None, background=background)
            n += 1
        sync(device)
        elapsed = time.perf_counter() - t0
        if elapsed >= min_time or n >= max_renders:
            break
    del out
    return {"fps": n / elapsed, "renders": n, "seconds": elapsed, "warmup_renders": max(0, warmup),
            "includes": "deformation (scene.at(t)) + rasterization; excludes metric computation and copies to host",
            "synchronised": device.type == "cuda", "device": device.type}


# ------------------------------------------------------------------------------------ the evaluation
def check_options(opt: EvalOptions) -> None:
    if opt.split not in EVAL_SPLITS:
        raise ConfigError(f"unknown split {opt.split!r}; choose {', '.join(EVAL_SPLITS)}")
    if opt.fps_min_time < 0 or opt.fps_warmup < 0:
        raise ConfigError("fps_min_time and fps_warmup must be >= 0")


def evaluate(run: LoadedRun, data: Scene, opt: EvalOptions, log: Callable[[str], None] = lambda s: None) -> EvalResult:
    """The evaluation as a function: the trained model, the dataset's frames and the protocol in, the
    metrics, timing and verdict out (an :class:`EvalResult`, the content of metrics.json in ``report``).
    Renders and measures; writes nothing (:func:`endogs.eval.pipeline.evaluate_run` writes the report)."""
    check_options(opt)
    run_dir = run.run_dir
    records = run.log()
    train, test = trained_split(records, data, run_dir)
    protocol = resolve_protocol(opt.protocol, data)
    frames = eval_indices(protocol, opt.split, len(data), train, test)
    if not frames:
        raise ConfigError(f"split {opt.split!r} under protocol {protocol.name} leaves no frame to evaluate", run_dir)
    if opt.split == "test" and data.split != "all":
        assert set(frames) == set(test) - set(range(protocol.start_index)) and not set(frames) & set(train)

    cfg = run.config
    src = FrameSource(data, eval_downscale(cfg, opt))  # the run.yaml holds the resolved (training) downscale
    W, H = src.size
    lpips_net, lpips_status = load_lpips(opt.lpips_weights, run.device)
    if lpips_net is not None and not min_size_ok(H, W):
        lpips_net, lpips_status = None, LPIPSStatus(False, f"images of {W}x{H} px are too small for AlexNet (>= 31 px)")
    background = cfg.background
    depth_kind = "gt" if data.has_gt_depth else None

    log(f"evaluating {len(frames)} {opt.split} frames of {run_dir} ({protocol.name}, {W}x{H}, {run.device.type})")
    means_train = train_mean([j for j in train], src.image)
    per_frame: list[dict[str, Any]] = []
    renders: dict[int, np.ndarray] = {}
    depths: dict[int, np.ndarray] = {}
    bar = Progress(len(frames), "eval", write=log)  # a line every ~10 % of the frames
    for i in frames:
        f = data.frames[i]
        gt, mask = src.image(i), src.mask(i)
        rgb, depth = render_numpy(run.scene, f.time, src.camera(i), i, background)
        renders[i], depths[i] = rgb, depth
        base = {"frame": i, "name": f.name, "time": round(f.time, 6)}
        rec = {"method": "model", **base, **M.image_metrics(rgb, gt, mask, lpips_net, run.device)}
        if opt.pose_alignment:
            a_rgb, _, a_delta = align_pose(run.scene, f.time, view_camera(run.scene, src.camera(i), i, f.time), gt, mask,
                                           opt.pose_alignment_steps, background)
            per_frame.append({"method": ALIGNED, **base, "pose_correction": a_delta,
                              **M.image_metrics(a_rgb, gt, mask, lpips_net, run.device)})
        gtd = src.gt_depth(i)
        if gtd is not None:
            d = M.depth_errors(depth, gtd, mask)
            rec.update(depth_rmse=d["rmse"], depth_absrel=d["absrel"], depth_pixels=d["n"])
        ind = src.input_depth(i)
        if ind is not None:
            d = M.depth_errors(depth, ind, mask)
            rec.update(input_depth_rmse=d["rmse"], input_depth_absrel=d["absrel"])
        per_frame.append(rec)
        bar.update(1, psnr=float(np.mean([r["psnr"] for r in per_frame if r["method"] == "model"])))
        nb, na = neighbours(train, i)
        sources = {"nearest_train": str(nearest(train, i)), "neighbour_mean": "+".join(str(j) for j in (nb, na) if j is not None),
                   "train_mean": f"{len(train)} frames"}
        for name, img in baseline_images(i, train, src.image, means_train).items():
            if img is None:
                continue
            per_frame.append({"method": name, **base, "source_frames": sources[name],
                              **M.image_metrics(img.astype(np.float32), gt, mask, lpips_net, run.device)})

    summary = summarize(per_frame)
    timing = measure_fps(run.scene, [(data.frames[i].time, src.camera(i), i) for i in frames], run.device, background,
                         opt.fps_warmup, opt.fps_min_time, opt.fps_max_renders)
    timing["resolution"] = [W, H]
    timing["num_gaussians"] = run.scene.num_gaussians
    done = next((r for r in reversed(records) if r.get("event") == "done"), None)
    training = {
        "finished": bool(run.done),
        "step": run.step,
        "iterations": cfg.iterations,
        "train_time_s": None if done is None else done.get("train_time_s"),
        "train_time_includes": "initialisation (data loading, depth-prior point cloud) + optimisation, wall clock",
        "peak_memory_mb": None if done is None else done.get("peak_memory_mb"),
        "peak_memory_kind": None if done is None else ("CUDA max allocated" if done.get("device") == "cuda" else "process max RSS"),
        "num_gaussians": run.scene.num_gaussians,
        "device": None if done is None else done.get("device"),
    }
    verdict = make_verdict(summary, opt.split, data.split)
    report = {
        "endogs_eval_format": EVAL_FORMAT_VERSION,
        "run": str(run_dir.resolve()),
        "data": str(Path(data.root).resolve()),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "protocol": {**protocol_record(protocol, data, opt.split, frames, train, test, cfg, src, lpips_status, depth_kind),
                     **resolution_record(opt, data, cfg, src), **imaging_record(run.scene, opt)},
        "metrics": summary,
        "depth": depth_summary(per_frame, data, depth_kind),
        "timing": {"render": timing, "training": training},
        "verdict": verdict,
        "environment": environment(run.device),
    }
    return EvalResult(run_dir, report, per_frame, renders, depths)


def summarize(per_frame: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per method: mean over frames of every per-frame metric, the pooled PSNRs and the frame count."""
    out: dict[str, dict[str, Any]] = {}
    for method in METHODS:
        rows = [r for r in per_frame if r["method"] == method]
        if not rows:
            continue
        s: dict[str, Any] = {"frames": len(rows)}
        for k in FRAME_METRICS + ("depth_rmse", "depth_absrel", "input_depth_rmse", "input_depth_absrel", "tissue_fraction"):
            vals = [r[k] for r in rows if r.get(k) is not None and math.isfinite(r[k])]
            if vals or k in FRAME_METRICS:
                s[k] = float(np.mean(vals)) if vals else None
        s.update(M.pooled_psnr(rows))
        out[method] = s
    return out


def depth_summary(per_frame: list[dict], data, kind: Optional[str]) -> dict[str, Any]:
    rows = [r for r in per_frame if r["method"] == "model"]
    unit = data.depth_unit
    out: dict[str, Any] = {"unit": unit}
    if kind == "gt":
        v = [r for r in rows if r.get("depth_rmse") is not None and math.isfinite(r["depth_rmse"])]
        out.update(available=True, reference="ground-truth depth", pixels="gt depth > 0 and evaluation mask (tissue); "
                   "rendered depth 0 (nothing drawn) counts as error",
                   rmse=float(np.mean([r["depth_rmse"] for r in v])) if v else None,
                   absrel=float(np.mean([r["depth_absrel"] for r in v])) if v else None,
                   aggregation="per frame, then averaged")
    else:
        out.update(available=False, reason="the dataset has no ground-truth depth")
    v = [r for r in rows if r.get("input_depth_rmse") is not None and math.isfinite(r["input_depth_rmse"])]
    if v:
        out["vs_input_depth"] = {"reference": "the dataset's input depth (a stereo/sensor estimate, NOT ground truth), "
                                 "over its valid tissue pixels",
                                 "rmse": float(np.mean([r["input_depth_rmse"] for r in v])),
                                 "absrel": float(np.mean([r["input_depth_absrel"] for r in v]))}
    return out


def make_verdict(summary: dict, split: str, data_split: str) -> dict[str, Any]:
    """Does the model beat the trivial baselines? PSNR (by ``BEAT_MARGIN_DB``) and SSIM (strictly)
    are judged separately, and the text says plainly which one does not."""
    model = summary.get("model", {}).get("psnr")
    base = {k: summary[k]["psnr"] for k in BASELINES if k in summary and summary[k].get("psnr") is not None}
    if model is None or not base:
        return {"beats_baselines": None, "text": "no baseline could be computed (too few training frames)"}
    best = max(base, key=base.get)
    margin = model - base[best]
    psnr_ok = margin >= BEAT_MARGIN_DB
    m_ssim = summary.get("model", {}).get("ssim")
    base_ssim = {k: summary[k]["ssim"] for k in base if summary[k].get("ssim") is not None}
    best_s = max(base_ssim, key=base_ssim.get) if base_ssim else None
    ssim_ok = None if (m_ssim is None or best_s is None) else m_ssim > base_ssim[best_s]
    if psnr_ok:
        text = (f"PSNR beats every trivial baseline: {model:.2f} dB vs {base[best]:.2f} dB for the best one "
                f"({best}), +{margin:.2f} dB (masked PSNR)")
    elif margin > 0:
        text = (f"PSNR does NOT clearly beat the trivial baselines: {model:.2f} dB vs {base[best]:.2f} dB for {best} "
                f"(+{margin:.2f} dB < {BEAT_MARGIN_DB:.1f} dB)")
    else:
        text = f"PSNR does NOT beat the trivial baselines: {model:.2f} dB vs {base[best]:.2f} dB for {best} ({margin:+.2f} dB)"
    if ssim_ok is True:
        text += f"; SSIM beats every trivial baseline: {m_ssim:.4f} vs {base_ssim[best_s]:.4f} ({best_s})"
    elif ssim_ok is False:
        text += f"; SSIM does NOT beat the trivial baselines: {m_ssim:.4f} vs {base_ssim[best_s]:.4f} for {best_s}"
    if not (psnr_ok and ssim_ok is not False):
        text += "; the model has not shown that it learned the scene better than copying frames"
    if split != "test" or data_split == "all":
        text += ". Note: these frames were trained on, so this measures fitting, not novel-view synthesis"
    clearly = bool(psnr_ok and ssim_ok is not False)
    return {"beats_baselines": clearly, "psnr_beats": psnr_ok, "ssim_beats": ssim_ok, "margin_db": margin,
            "best_baseline": best, "best_baseline_psnr": base[best], "model_psnr": model,
            "model_ssim": m_ssim, "best_ssim_baseline": best_s, "best_baseline_ssim": None if best_s is None else base_ssim[best_s],
            "threshold_db": BEAT_MARGIN_DB, "metric": "psnr (true masked) and ssim", "text": text}


def eval_downscale(cfg, opt: EvalOptions) -> float:
    """The downscale the evaluation renders at: the training one, or 1 (native)."""
    return 1.0 if opt.resolution == "native" else float(cfg.data.downscale or 1.0)


def view_camera(scene, camera, frame_index: int, t: float):
    """``camera`` at the frame's refined pose (its own or interpolated; the input pose without refinement)."""
    return camera.with_pose(view.frame_pose(scene, frame_index, t, camera.c2w))


def resolution_record(opt: EvalOptions, data, cfg, src: FrameSource) -> dict[str, Any]:
    train_size = list(downscaled_size(data.width, data.height, float(cfg.data.downscale or 1.0)))
    return {"resolution_mode": opt.resolution, "trained_resolution": train_size, "native_resolution": [data.width, data.height],
            "resolution_note": ("rendered at the dataset's full frame size (intrinsics of the full frames), model trained at "
                                f"{train_size[0]}x{train_size[1]}") if opt.resolution == "native" else
                               "rendered at the training resolution (frames and intrinsics downscaled as in training)"}


def imaging_record(scene, opt: EvalOptions) -> dict[str, Any]:
    im = scene.imaging
    poses = ("input poses refined during training for the training frames; evaluated frames not trained on use their "
             "input pose plus the corrections of the two neighbouring training frames interpolated in time (SE(3) "
             "geodesic); their images never touch any parameter") if im.poses is not None else "input poses (not refined)"
    rec = {"poses": poses, "imaging": im.describe()}
    if im.exposure is not None:
        rec["exposure"] = "per-frame affine colour of the training frames; evaluated frames get it interpolated in time"
    if opt.pose_alignment:
        rec["pose_alignment"] = (f"{ALIGNED}: test-time pose alignment, {opt.pose_alignment_steps} Adam steps per frame on "
                                 "the masked L1 of the evaluated frame with the model frozen; it FITS the camera pose to "
                                 "the evaluated frame's image (pose-free NeRF protocol) and is reported beside, never in place of, model")
    return rec


def protocol_record(protocol: Protocol, data, split: str, frames: list[int], train: list[int], test: list[int], cfg,
                    src: FrameSource, lpips_status: LPIPSStatus, depth_kind: Optional[str]) -> dict[str, Any]:
    return {
        **protocol.to_dict(),
        "split": split,
        "dataset_split": data.split,
        "split_rule": SPLIT_RULES.get(data.split, data.split),
        "frames": frames,
        "n_frames": len(data),
        "train_frames": train,
        "test_frames": test,
        "train_frames_source": f"{LOG_FILE} init record (the frames the optimiser saw)",
        "eval_frames_trained_on": sorted(set(frames) & set(train)),
        "format": data.format,
        "mask_source": data.eval_mask_source if data.eval_mask_source != "none" else "none (every pixel counts)",
        "mask_polarity": "True/1 = tissue (counted); tool or invalid pixels excluded",
        "resolution": list(src.size),
        "downscale": cfg.data.downscale or 1.0,
        "crop_bottom": cfg.data.crop_bottom,
        "image_range": "RGB in [0, 1]; renders clipped to [0, 1]",
        "background": list(cfg.background),
        "psnr_variants": PSNR_VARIANTS,
        "psnr_cap_db": M.mse_to_psnr(0.0),
        "ssim": SSIM_PROTOCOL,
        "lpips": lpips_status.protocol(),
        "depth": {"reference": "ground truth" if depth_kind == "gt" else "none", "unit": data.depth_unit},
        "baselines": {**BASELINES, "threshold_db": BEAT_MARGIN_DB,
                      "note": "same frames, masks and metrics as the model; the evaluated frame is never its own "
                              "nearest/neighbour frame"},
        "aggregation": "mean over frames of per-frame values (except *_pooled)",
    }


def frame_panels(result: EvalResult, src: FrameSource) -> Iterator[FramePanels]:
    """The pictures of every evaluated frame (for the report's images), read lazily."""
    gt_ref = bool(result.report["depth"].get("available"))
    for i in result.report["protocol"]["frames"]:
        ref = src.gt_depth(i) if gt_ref else src.input_depth(i)
        yield FramePanels(i, src.image(i), result.renders[i], src.mask(i), result.depths[i], ref,
                          "GT depth" if gt_ref else "input depth (not GT)")


def sequence_frames(result: EvalResult, src: FrameSource, scene, background=None) -> Iterator[SequenceFrame]:
    """Every frame of the sequence (gt, render), reusing the evaluation renders, rendering the others."""
    for i, f in enumerate(src.data.frames):
        rgb = result.renders.get(i)
        if rgb is None:
            rgb, _ = render_numpy(scene, f.time, src.camera(i), i, background)
        yield SequenceFrame(i, src.image(i), rgb, i in result.renders)
