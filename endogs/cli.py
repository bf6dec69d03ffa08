"""The ``endogs`` command line: one subcommand per task (tyro).

User errors (:class:`endogs.errors.EndogsError`) print one line and exit with status 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import tyro
from typing_extensions import Annotated

from endogs.data import FormatName, SplitName
from endogs.data.synthetic.config import CameraMotion, SyntheticLayout
from endogs.errors import EndogsError

Positional = tyro.conf.Positional


def info(
    path: Positional[Path],
    format: Optional[FormatName] = None,
    split: Optional[SplitName] = None,
    json_: Annotated[bool, tyro.conf.arg(name="json")] = False,
    max_frames: int = 50,
) -> None:
    """Describe a scene folder: format, frames, resolution, intrinsics, poses, depth and masks, split.

    Args:
        path: the scene folder.
        format: the dataset layout; detected when not given.
        split: the train/test rule; the format's usual one when not given.
        json_: print one JSON object instead of text.
        max_frames: pixel statistics use at most this many evenly spaced frames.
    """
    from endogs.data import load_scene
    from endogs.data.summary import format_summary, summarize_scene

    scene = load_scene(path, format=format, split=split)
    summary = summarize_scene(scene, max_frames=max_frames)
    print(json.dumps(summary, indent=2) if json_ else format_summary(summary))


def synthetic(
    out: Positional[Path],
    layout: SyntheticLayout = "endonerf",
    width: int = 160,
    height: int = 128,
    n_frames: int = 24,
    seed: int = 0,
    camera: Optional[CameraMotion] = None,
    exposure_drift: float = 0.0,
    tilt: float = 0.0,
    deformation: float = 1.0,
    overwrite: bool = False,
) -> None:
    """Write the deterministic synthetic sample scene (with exact ground truth) to a folder.

    Args:
        out: the scene folder to create.
        layout: on-disk layout, EndoNeRF or SCARED (preprocessed keyframe).
        width: image width in pixels.
        height: image height in pixels.
        n_frames: number of frames.
        seed: random seed (same seed, same bytes).
        camera: fixed or moving endoscope; default fixed for EndoNeRF, moving for SCARED.
        exposure_drift: auto-exposure drift, 0..1: frame i is multiplied by exp(drift * u(t_i)), u smooth,
            u(0) = 0, |u| <= 1 (the exact gains are written to endogs_scene.json as exposure_gain).
        tilt: slope dz/dx of the tissue's mean plane, -0.8..0.8 (0.5: an oblique view whose depth varies
            ~1.6x across the image, as in SCARED).
        deformation: scale of the tissue motion, 0..2 (0: rigid tissue).
        overwrite: replace an existing scene folder.
    """
    from endogs.data.synthetic import SyntheticConfig, generate, write_endonerf, write_scared

    cam = camera or ("fixed" if layout == "endonerf" else "moving")
    try:
        cfg = SyntheticConfig(width=width, height=height, n_frames=n_frames, seed=seed, camera=cam, exposure_drift=exposure_drift,
                              tilt=tilt, deformation=deformation)
        scene = generate(cfg)  # also refuses views that would graze the tissue
    except ValueError as exc:
        raise EndogsError(str(exc)) from None
    writer = write_endonerf if layout == "endonerf" else write_scared
    path = writer(scene, out, overwrite=overwrite)
    print(f"wrote {layout} scene: {path} ({n_frames} frames, {width}x{height}, {cam} camera)")


# Commands parsed with their own pre-processing (presets) before tyro sees the flags.
SPECIAL = {"train": ("endogs.train.cli", "parse", "run")}

def _registry() -> dict:
    from endogs.batch.cli import batch
    from endogs.eval.cli import benchmark, eval_run
    from endogs.export.cli import export
    from endogs.train.cli import TrainArgs
    from endogs.video.cli import prepare, reconstruct
    from endogs.viewer.cli import view

    return {
        "info": info,
        "synthetic": synthetic,
        "train": TrainArgs,
        "eval": eval_run,
        "benchmark": benchmark,
        "batch": batch,
        "view": view,
        "export": export,
        "prepare": prepare,
        "reconstruct": reconstruct,
    }



def main(argv: Optional[list[str]] = None, commands: Optional[dict] = None) -> int:
    """Run the CLI; ``commands`` (name -> function) replaces the registry, e.g. in tests. A command may
    return an int: the exit status (``endogs batch`` returns 1 when some pairs failed)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        if commands is None and argv and argv[0] in SPECIAL:
            import importlib

            module, parse_name, run_name = SPECIAL[argv[0]]
            mod = importlib.import_module(module)
            getattr(mod, run_name)(getattr(mod, parse_name)(argv[1:]))
            return 0
        registry = commands or _registry()
        status = tyro.extras.subcommand_cli_from_dict(
            registry, prog="endogs", args=argv, description="Dynamic Gaussian splatting for endoscopic video."
        )
        if isinstance(status, int) and not isinstance(status, bool):
            return status
    except EndogsError as exc:
        print(f"endogs: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("endogs: interrupted", file=sys.stderr)
        return 130
    return 0


def entry() -> None:  # console_script
    sys.exit(main())


if __name__ == "__main__":
    entry()
