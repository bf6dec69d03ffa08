"""The files of an evaluation folder, and the tables printed on stdout.

``RUN/eval_<split>/``::

    metrics.json          protocol spelled out + averaged metrics + timing + verdict + environment
    per_frame.csv         one row per (method, frame): model and the trivial baselines
    report.md             markdown: protocol, metrics table, verdict, links to the images
    renders/NNNNNN.png    the rendered evaluation frames
    compare/NNNNNN.png    GT | render | error map (tool pixels greyed)
    depth/NNNNNN.png      GT depth | rendered depth | abs error (input depth when there is no GT, labelled)
    sequence.mp4          GT | render for the whole sequence (evaluated frames framed in red)
    training_curves.png   loss, train PSNR and #Gaussians from log.jsonl
    per_frame_psnr.png    per-frame masked PSNR of the model and baselines

Every file is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import math
import platform
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import cv2
import numpy as np

from endogs.eval import io
from endogs.eval.baselines import BASELINES
from endogs.run import LOG_FILE, METRICS_FILE, REPORT_FILE

CSV_COLUMNS = ["method", "frame", "name", "time", "psnr", "psnr_legacy", "psnr_full", "ssim", "ssim_masked", "lpips",
               "tissue_fraction", "depth_rmse", "depth_absrel", "depth_pixels", "input_depth_rmse", "input_depth_absrel",
               "source_frames"]
LABELS = {"model": "model", "nearest_train": "nearest train frame", "neighbour_mean": "neighbour mean",
          "train_mean": "train mean"}
ERROR_MAP_MAX = 0.25  # |render - gt| (channel mean) shown at full colour


def environment(device) -> dict[str, Any]:
    import importlib.metadata as md

    import torch

    import endogs

    def ver(name: str) -> Optional[str]:
        try:
            return md.version(name)
        except md.PackageNotFoundError:
            return None

    dev = {"type": device.type}
    if device.type == "cuda":
        dev["name"] = torch.cuda.get_device_name(device)
    else:
        dev["name"] = platform.processor() or platform.machine()
        dev["threads"] = torch.get_num_threads()
    return {
        "device": dev,
        "versions": {
            "endogs": endogs.__version__, "python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "torchmetrics": ver("torchmetrics"), "pytorch-msssim": ver("pytorch-msssim"),
            "opencv": cv2.__version__, "imageio-ffmpeg": ver("imageio-ffmpeg"), "gsplat": ver("gsplat"),
        },
        "platform": platform.platform(),
    }


# ------------------------------------------------------------------------------------ formatting
def fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def fmt_rate(v: Any) -> str:
    """FPS-like numbers: 2 decimals below 10 (EndoNeRF renders at 0.03 FPS), else 1."""
    if isinstance(v, (int, float)) and math.isfinite(v):
        return f"{v:.2f}" if abs(v) < 10 else f"{v:.1f}"
    return fmt(v)


def metric_rows(report: dict) -> list[list[str]]:
    rows = []
    for m, s in report["metrics"].items():
        rows.append([LABELS.get(m, m), fmt(s.get("psnr")), fmt(s.get("psnr_legacy")), fmt(s.get("psnr_full")),
                     fmt(s.get("ssim"), 4), fmt(s.get("ssim_masked"), 4), fmt(s.get("lpips"), 4)])
    return rows


METRIC_HEADER = ["method", "PSNR", "PSNR legacy", "PSNR full", "SSIM", "SSIM masked", "LPIPS"]


def text_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    """Plain-text table; the first ``left`` columns are left-aligned, the others right-aligned."""
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]

    def line(r: list) -> str:
        return "  ".join(str(x).ljust(w) if j < left else str(x).rjust(w) for j, (x, w) in enumerate(zip(r, widths))).rstrip()

    return "\n".join([line(header), "  ".join("-" * w for w in widths)] + [line(r) for r in rows])


def markdown_table(header: list[str], rows: list[list[str]], left: int = 1) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" if j < left else "---:" for j in range(len(header))) + "|"]
    out += ["| " + " | ".join(str(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


def _extras_line(report: dict) -> str:
    d, t = report["depth"], report["timing"]
    parts = []
    if d.get("available"):
        parts.append(f"depth RMSE {fmt(d.get('rmse'), 3)} {d['unit']}, AbsRel {fmt(d.get('absrel'), 4)}")
    r, tr = t["render"], t["training"]
    parts.append(f"render {fmt_rate(r.get('fps'))} FPS ({r.get('device')}, {r['resolution'][0]}x{r['resolution'][1]})")
    parts.append(f"train {fmt(tr.get('train_time_s'), 1)} s")
    parts.append(f"peak mem {fmt(tr.get('peak_memory_mb'), 0)} MB")
    parts.append(f"{tr['num_gaussians']} Gaussians")
    return " | ".join(parts)


def stdout_summary(report: dict, path: Path) -> str:
    """The concise text printed by ``endogs eval`` (ends with ``report: PATH``)."""
    p = report["protocol"]
    lp = p["lpips"]
    head = (f"endogs eval: {len(p['frames'])} {p['split']} frames, protocol {p['name']}, masks: {p['mask_source']}, "
            f"LPIPS: {'alex [-1,1]' if lp['status'] == 'computed' else 'unavailable'}")
    lines = [head, text_table(METRIC_HEADER, metric_rows(report)), _extras_line(report), "verdict: " + report["verdict"]["text"]]
    if not report["timing"]["training"]["finished"]:
        lines.append(f"warning: the run is unfinished (step {report['timing']['training']['step']} of "
                     f"{report['timing']['training']['iterations']})")
    lines.append(f"report: {path}")
    return "\n".join(lines)


def markdown_report(report: dict, files: dict[str, Any]) -> str:
    p, t = report["protocol"], report["timing"]
    lp = p["lpips"]
    lines = [
        f"# Evaluation of `{Path(report['run']).name}`",
        "",
        f"- run: `{report['run']}`",
        f"- data: `{report['data']}` ({p['format']}, {p['n_frames']} frames)",
        f"- protocol: **{p['name']}** - {p['description']}",
        f"- split: {p['split']} ({len(p['frames'])} frames: {', '.join(map(str, p['frames'][:40]))}"
        f"{' ...' if len(p['frames']) > 40 else ''}); dataset split `{p['dataset_split']}`: {p['split_rule']}",
        f"- frames trained on among the evaluated ones: {p['eval_frames_trained_on'] or 'none'}",
        f"- evaluation mask: {p['mask_source']} (True = tissue); resolution {p['resolution'][0]}x{p['resolution'][1]} "
        f"(downscale {p['downscale']})",
        f"- LPIPS: " + (f"AlexNet, inputs in {lp['input_range']}, {lp['images']}" + ("" if lp.get("backbone_verified") else
                        " - **backbone file not verified as torchvision's; not comparable with published values**")
                        if lp["status"] == "computed" else f"unavailable ({lp['reason']}); {lp['fix']}"),
        f"- device: {report['environment']['device']['type']} ({report['environment']['device'].get('name')}), "
        f"endogs {report['environment']['versions']['endogs']}, torch {report['environment']['versions']['torch']}",
        "",
        "## Metrics (mean over frames)",
        "",
        markdown_table(METRIC_HEADER, metric_rows(report)),
        "",
        f"**Verdict:** {report['verdict']['text']}.",
        "",
        "Pooled PSNR (one MSE over all frames): " + ", ".join(
            f"{LABELS.get(m, m)} {fmt(s.get('psnr_pooled'))} / legacy {fmt(s.get('psnr_legacy_pooled'))}"
            for m, s in report["metrics"].items()) + ".",
        "",
        "## Depth, speed, cost",
        "",
    ]
    d = report["depth"]
    if d.get("available"):
        lines.append(f"- depth vs ground truth: RMSE {fmt(d['rmse'], 3)} {d['unit']}, AbsRel {fmt(d['absrel'], 4)} ({d['pixels']})")
    else:
        lines.append(f"- depth vs ground truth: n/a ({d.get('reason')})")
    if "vs_input_depth" in d:
        v = d["vs_input_depth"]
        lines.append(f"- depth vs input depth (not ground truth): RMSE {fmt(v['rmse'], 3)} {d['unit']}, AbsRel {fmt(v['absrel'], 4)}")
    r, tr = t["render"], t["training"]
    lines += [
        f"- rendering: {fmt_rate(r.get('fps'))} FPS over {r.get('renders')} renders after {r.get('warmup_renders')} warm-up "
        f"({r.get('includes')}; device {'synchronised' if r.get('synchronised') else 'CPU'}), {r['num_gaussians']} Gaussians",
        f"- training: {fmt(tr.get('train_time_s'), 1)} s ({tr['train_time_includes']}), peak memory "
        f"{fmt(tr.get('peak_memory_mb'), 0)} MB ({tr.get('peak_memory_kind')}), {tr['step']}/{tr['iterations']} steps "
        f"on {tr.get('device')}" + ("" if tr["finished"] else " - **unfinished run**"),
        "",
        "## Metric definitions",
        "",
    ]
    lines += [f"- `{k}`: {v}" for k, v in p["psnr_variants"].items()]
    lines += [f"- `{k}`: {v}" for k, v in p["ssim"].items()]
    lines += [f"- baseline `{k}`: {v}" for k, v in BASELINES.items()]
    lines += ["", "## Files", ""]
    lines += [f"- {k}: `{v}`" for k, v in files.items() if isinstance(v, str)]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------ images
def _label(img: np.ndarray, text: str) -> np.ndarray:
    if img.shape[1] < 96:
        return img
    out = img.copy()
    scale = max(0.35, img.shape[1] / 700)
    cv2.putText(out, text, (4, int(14 * scale / 0.35 * 0.9)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def _colormap(x: np.ndarray, lo: float, hi: float, cmap: int = cv2.COLORMAP_INFERNO) -> np.ndarray:
    u = np.clip((x - lo) / max(hi - lo, 1e-12), 0, 1)
    return cv2.applyColorMap((u * 255).astype(np.uint8), cmap)[..., ::-1]  # RGB uint8


def error_panel(render: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    err = np.abs(render.astype(np.float64) - gt).mean(-1)
    img = _colormap(err, 0.0, ERROR_MAP_MAX).astype(np.float32)
    img[~mask] = img[~mask] * 0.25 + 64  # tool / invalid pixels: dim grey
    return img.astype(np.uint8)


def compare_image(gt: np.ndarray, render: np.ndarray, mask: np.ndarray) -> np.ndarray:
    panels = [_label(io.to_uint8(gt), "GT"), _label(io.to_uint8(render), "render"),
              _label(error_panel(render, gt, mask), f"|error| 0-{ERROR_MAP_MAX}")]
    return np.concatenate(panels, axis=1)


def depth_image(ref: Optional[np.ndarray], pred: np.ndarray, valid: np.ndarray, ref_label: str) -> np.ndarray:
    good = valid & (ref > 0) if ref is not None else valid
    src = ref[good] if ref is not None and good.any() else pred[pred > 0]
    lo, hi = (np.percentile(src, 1), np.percentile(src, 99)) if src.size else (0.0, 1.0)
    panels = []
    if ref is not None:
        r = _colormap(ref, lo, hi, cv2.COLORMAP_TURBO)
        r[ref <= 0] = 0
        panels.append(_label(r, ref_label))
    panels.append(_label(_colormap(pred, lo, hi, cv2.COLORMAP_TURBO), "rendered depth"))
    if ref is not None:
        err = np.where(good, np.abs(pred - ref), 0.0)
        e = _colormap(err, 0.0, max(float(np.percentile(err[good], 99)) if good.any() else 1.0, 1e-6))
        e[~good] = 40
        panels.append(_label(e, "|error|"))
    return np.concatenate(panels, axis=1)


# ------------------------------------------------------------------------------------ plots
def _savefig(fig, path: Path) -> None:
    import io as _io

    buf = _io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    io.write_bytes(path, buf.getvalue())


def plot_training_curves(log: list[dict], path: Path) -> Optional[Path]:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    recs = [r for r in log if "step" in r and "event" not in r]
    if not recs:
        return None
    steps = [r["step"] for r in recs]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    for ax, key, title in zip(axes, ("loss", "psnr", "num_gaussians"), ("loss", "train PSNR (masked, dB)", "#Gaussians")):
        ys = [r.get(key) for r in recs]
        if any(y is not None for y in ys):
            ax.plot(steps, [np.nan if y is None else y for y in ys], lw=1.2)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        fine = [r["step"] for r in recs if r.get("stage") == "fine"]
        if fine:
            ax.axvline(min(fine), color="grey", ls=":", lw=1)
    fig.suptitle(f"training (from {LOG_FILE}; dotted line: deformation switched on)", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    _savefig(fig, path)
    plt.close(fig)
    return path


def plot_per_frame(per_frame: list[dict], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 3.2))
    for method, style in (("model", "o-"), ("nearest_train", "x--"), ("neighbour_mean", "s--"), ("train_mean", "^:")):
        rows = sorted((r for r in per_frame if r["method"] == method), key=lambda r: r["frame"])
        if rows:
            ax.plot([r["frame"] for r in rows], [r["psnr"] for r in rows], style, ms=4, lw=1.2, label=LABELS[method])
    rows = sorted((r for r in per_frame if r["method"] == "model"), key=lambda r: r["frame"])
    ax.plot([r["frame"] for r in rows], [r["psnr_legacy"] for r in rows], ".", color="grey", label="model (psnr_legacy)")
    ax.set_xlabel("frame")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title("per-frame masked PSNR (tissue pixels only)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    _savefig(fig, path)
    plt.close(fig)
    return path


# ------------------------------------------------------------------------------------ everything
def write_report(result, src, records: list[dict], opt, sequence: Iterable[tuple[int, np.ndarray, np.ndarray]],
                 log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Write every file of ``result.out_dir``; returns the file map (also stored in the report).

    ``records`` is the run's log (training curves); ``sequence`` yields (frame, gt, render) for the video."""
    out = result.out_dir
    files: dict[str, Any] = {}
    frames = result.report["protocol"]["frames"]
    depth_ref = result.report["depth"].get("available")
    if opt.images:
        for i in frames:
            gt, mask, rgb = src.image(i), src.mask(i), result.renders[i]
            io.write_png(out / "renders" / f"{i:06d}.png", rgb)
            io.write_png(out / "compare" / f"{i:06d}.png", compare_image(gt, rgb, mask))
            ref = src.gt_depth(i) if depth_ref else src.input_depth(i)
            label = "GT depth" if depth_ref else "input depth (not GT)"
            io.write_png(out / "depth" / f"{i:06d}.png", depth_image(ref, result.depths[i], mask, label))
        files.update(renders="renders/", compare="compare/", depth="depth/")
    if opt.video:
        log("rendering the sequence video")

        def frames_iter():
            for i, gt, rgb in sequence:
                r = io.to_uint8(rgb).copy()
                if i in result.renders and len(r) > 8:
                    r[:2], r[-2:], r[:, :2], r[:, -2:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
                yield np.concatenate([io.to_uint8(gt), r], axis=1)

        io.write_mp4(out / "sequence.mp4", frames_iter(), fps=opt.video_fps)
        files["video"] = "sequence.mp4"
    if opt.plots:
        if plot_training_curves(records, out / "training_curves.png"):
            files["training_curves"] = "training_curves.png"
        plot_per_frame(result.per_frame, out / "per_frame_psnr.png")
        files["per_frame_plot"] = "per_frame_psnr.png"
    io.write_csv(out / "per_frame.csv", result.per_frame, CSV_COLUMNS)
    files["per_frame"] = "per_frame.csv"
    files["markdown"] = REPORT_FILE
    files["metrics"] = METRICS_FILE
    result.report["files"] = files
    io.write_text(out / REPORT_FILE, markdown_report(result.report, files))
    io.write_json(out / METRICS_FILE, result.report)  # last: its presence marks a complete evaluation
    return files
