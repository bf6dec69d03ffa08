"""``endogs prepare`` and ``endogs reconstruct`` (typed functions; the lead registers them in endogs/cli.py).

Register with ``{"prepare": prepare, "reconstruct": reconstruct}`` (``COMMANDS``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import tyro
from typing_extensions import Annotated

from endogs.utils.device import DeviceName
from endogs.video.config import PrepareOptions

Positional = tyro.conf.Positional
Flattened = tyro.conf.arg(name="")


def _log(quiet: bool):
    return (lambda s: None) if quiet else (lambda s: print(s, file=sys.stderr, flush=True))


def prepare(
    input: Positional[Path],
    out: Path,
    options: Annotated[PrepareOptions, Flattened] = PrepareOptions(),
    quiet: bool = False,
) -> None:
    """Turn an endoscopic video into a scene folder: rectified frames, stereo depth (mm), tool masks,
    camera poses, in the EndoNeRF layout that `endogs train` reads.

    INPUT is a stereo video (top-bottom as SCARED's rgb.mp4, or side-by-side), the left video with
    --right RIGHT_VIDEO, a folder with left/right image folders (left_image/ right_image/, left/ right/),
    or a monocular video or image folder.

    Args:
        input: the video file or image folder.
        out: the scene folder to create (written atomically).
        quiet: print only the summary.
    """
    from endogs.video.prepare import prepare_scene

    result = prepare_scene(input, out, options, log=_log(quiet))
    print(result.summary())
    print(f"next: endogs train {result.root}")


def reconstruct(
    input: Positional[Path],
    out: Optional[Path] = None,
    run: Optional[Path] = None,
    options: Annotated[PrepareOptions, Flattened] = PrepareOptions(),
    preset: str = "fast",
    iterations: Optional[int] = None,
    device: DeviceName = "auto",
    eval_video: bool = False,
    quiet: bool = False,
) -> None:
    """Prepare a video, train on it and evaluate the held-out frames, in one call.

    Same INPUT and preparation options as `endogs prepare`; then `endogs train` with --preset (and
    --iterations), then `endogs eval` of the run on the test frames ((i-1) % 8 == 0). Ends with a
    summary: the metrics, the run folder and the `endogs view` command.

    Args:
        input: the video file or image folder.
        out: the scene folder; default outputs/scenes/<input name>.
        run: the run folder; default outputs/runs/<scene name>.
        preset: the training preset (configs/*.yaml or a YAML path).
        iterations: training steps (overrides the preset).
        device: where to train and evaluate; auto = CUDA when present.
        eval_video: also render the whole sequence to an mp4 in the evaluation.
        quiet: no progress output, only the summary.
    """
    from endogs.config_io import merge
    from endogs.errors import ConfigError
    from endogs.eval.evaluate import EvalOptions
    from endogs.eval.pipeline import evaluate_run
    from endogs.run import REPORT_FILE, RunFolder
    from endogs.train.config import load_preset
    from endogs.train.trainer import Trainer  # this command trains
    from endogs.video.prepare import prepare_scene

    log = _log(quiet)
    name = Path(input).stem if Path(input).is_file() else Path(input).resolve().name
    out = out or Path("outputs") / "scenes" / name
    run = run or Path("outputs") / "runs" / Path(out).name
    if RunFolder(run).has_checkpoint():
        raise ConfigError(f"{run}: a run already exists here; choose another --run (or resume it with endogs train --resume)")
    # validate the training options before the (slow) preparation
    cfg = load_preset(preset)
    overrides = {"device": device}
    if iterations is not None:
        overrides["iterations"] = iterations
    cfg = merge(cfg, overrides)

    log("== 1/3 prepare")
    prep = prepare_scene(input, out, options, log=log)
    log(prep.summary())
    log("== 2/3 train")
    tr = Trainer.create(cfg, prep.root, run)
    log(f"training on {tr.device.type}: {len(tr.frames)} train frames, {tr.scene.num_gaussians} Gaussians, "
        f"{tr.cfg.iterations} iterations -> {tr.run_dir}")
    tr.train(progress=not quiet)
    log("== 3/3 evaluate")
    result = evaluate_run(tr.run_dir, EvalOptions(device=device, video=eval_video), log=log)
    native = None
    if tuple(result.report["protocol"]["resolution"]) != (tr.data.width, tr.data.height):
        native = evaluate_run(tr.run_dir, EvalOptions(device=device, video=False, resolution="native"), log=log)
    m = result.report["metrics"].get("model", {})
    lines = [
        f"scene: {prep.root} ({prep.n_frames} frames, poses {prep.pose_report.method}"
        + (f", {len(prep.pose_report.failures)} fallback steps" if prep.pose_report.failures else "") + ")",
        f"run: {tr.run_dir}",
        f"test frames {result.report['protocol']['frames']} at the training resolution {_size(result)}: "
        f"PSNR {_fmt(m.get('psnr'))} dB (masked), SSIM {_fmt(m.get('ssim'), 4)}, LPIPS {_fmt(m.get('lpips'), 4)}",
        *([] if native is None else [
            f"the same frames at the native resolution {_size(native)}: PSNR {_fmt(native.summary['model'].get('psnr'))} dB "
            f"(masked), SSIM {_fmt(native.summary['model'].get('ssim'), 4)} (report: {native.out_dir / REPORT_FILE})"]),
        f"verdict: {result.report['verdict']['text']}",
        f"report: {result.out_dir / REPORT_FILE}",
        f"view: endogs view {tr.run_dir}",
    ]
    print("\n".join(lines))


def _size(result) -> str:
    w, h = result.report["protocol"]["resolution"]
    return f"{w}x{h}"


def _fmt(v, digits: int = 2) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


COMMANDS = {"prepare": prepare, "reconstruct": reconstruct}

__all__ = ["prepare", "reconstruct", "COMMANDS"]
