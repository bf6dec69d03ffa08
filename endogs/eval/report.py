"""The files of an evaluation folder, and the tables printed on stdout.

``RUN/eval_<split>/``::

    metrics.json          protocol spelled out + averaged metrics + timing + verdict + environment
    per_frame.csv         one row per (method, frame): model and the trivial baselines
    report.md             markdown: protocol, metrics table, verdict, links to the images
    renders/NNNNNN.png    the rendered evaluation frames
    compare/NNNNNN.png    GT | render | error map (tool pixels greyed)
    depth/NNNNNN.png      GT depth | rendered depth | abs error (input depth when there is no GT, labelled);
                          depth in endogs.utils.image's colours (near red, far blue)
    sequence.mp4          GT | render for the whole sequence (evaluated frames framed in red)
    training_curves.png   loss, train PSNR and #Gaussians from log.jsonl
    per_frame_psnr.png    per-frame masked PSNR of the model and baselines

Every file is written atomically (temporary name, then rename).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import cv2
import numpy as np

from endogs.eval import io
from endogs.eval.baselines import BASELINES
from endogs.eval.result import FramePanels, SequenceFrame
from endogs.run import LOG_FILE, METRICS_FILE, REPORT_FILE
from endogs.utils.image import colorize_depth

CSV_COLUMNS = ["method", "frame", "name", "time", "psnr", "psnr_legacy", "psnr_full", "ssim", "ssim_masked", "lpips",
               "tissue_fraction", "depth_rmse", "depth_absrel", "depth_pixels", "input_depth_rmse", "input_depth_absrel",
               "source_frames"]
LABELS = {"model": "model", "model_pose_aligned": "model, test-time pose alignment (fits test frames)",
          "nearest_train": "nearest train frame", "neighbour_mean": "neighbour mean",
          "train_mean": "train mean"}
ERROR_MAP_MAX = 0.25  # |render - gt| (channel mean) shown at full colour




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


def _error_colors(x: np.ndarray, hi: float) -> np.ndarray:
    """RGB uint8 of an error map: inferno from 0 (black) to ``hi`` (bright yellow)."""
    u = np.clip(x / max(hi, 1e-12), 0, 1)
    return cv2.applyColorMap((u * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)[..., ::-1]


def error_panel(render: np.ndarray, gt: np.ndarray, mask: np.ndarray) -> np.ndarray:
    err = np.abs(render.astype(np.float64) - gt).mean(-1)
    img = _error_colors(err, ERROR_MAP_MAX).astype(np.float32)
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
        panels.append(_label(colorize_depth(ref, lo, hi), ref_label))  # near red, far blue, no depth black
    panels.append(_label(colorize_depth(pred, lo, hi), "rendered depth"))
    if ref is not None:
        err = np.where(good, np.abs(pred - ref), 0.0)
        e = _error_colors(err, max(float(np.percentile(err[good], 99)) if good.any() else 1.0, 1e-6))
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
def write_report(out: Path, report: dict[str, Any], per_frame: list[dict[str, Any]], records: list[dict],
                 panels: Optional[Iterable[FramePanels]] = None, sequence: Optional[Iterable[SequenceFrame]] = None,
                 plots: bool = True, video_fps: float = 10.0, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Write every file of the report folder ``out`` from data: the report (metrics.json's content), the
    per-frame rows, the run's log records (training curves), the evaluated frames' pictures (None: no
    images) and the sequence (None: no video). Returns the file map (also stored in ``report["files"]``)."""
    files: dict[str, Any] = {}
    if panels is not None:
        for p in panels:
            io.write_png(out / "renders" / f"{p.index:06d}.png", p.render)
            io.write_png(out / "compare" / f"{p.index:06d}.png", compare_image(p.gt, p.render, p.mask))
            io.write_png(out / "depth" / f"{p.index:06d}.png", depth_image(p.ref_depth, p.depth, p.mask, p.ref_label))
        files.update(renders="renders/", compare="compare/", depth="depth/")
    if sequence is not None:
        log("rendering the sequence video")

        def frames_iter():
            for f in sequence:
                r = io.to_uint8(f.render).copy()
                if f.evaluated and len(r) > 8:
                    r[:2], r[-2:], r[:, :2], r[:, -2:] = (255, 0, 0), (255, 0, 0), (255, 0, 0), (255, 0, 0)
                yield np.concatenate([io.to_uint8(f.gt), r], axis=1)

        io.write_mp4(out / "sequence.mp4", frames_iter(), fps=video_fps)
        files["video"] = "sequence.mp4"
    if plots:
        if plot_training_curves(records, out / "training_curves.png"):
            files["training_curves"] = "training_curves.png"
        plot_per_frame(per_frame, out / "per_frame_psnr.png")
        files["per_frame_plot"] = "per_frame_psnr.png"
    io.write_csv(out / "per_frame.csv", per_frame, CSV_COLUMNS)
    files["per_frame"] = "per_frame.csv"
    files["markdown"] = REPORT_FILE
    files["metrics"] = METRICS_FILE
    report["files"] = files
    io.write_text(out / REPORT_FILE, markdown_report(report, files))
    io.write_json(out / METRICS_FILE, report)  # last: its presence marks a complete evaluation
    return files


def markdown_from_metrics(path: Path) -> str:
    """report.md rebuilt from a saved metrics.json (the markdown depends on nothing else)."""
    report = json.loads(Path(path).read_text())
    return markdown_report(report, report.get("files", {}))
