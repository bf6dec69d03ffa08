"""``endogs train``: tyro over TrainConfig, with presets from configs/*.yaml.

Precedence: dataclass defaults < preset YAML < command-line flags.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import tyro
from typing_extensions import Annotated

from endogs.errors import ConfigError
from endogs.train.config import TrainConfig, list_presets, load_preset


@dataclass
class TrainArgs:
    """Reconstruct a scene: depth-prior init, coarse then deformable optimisation, checkpoints."""

    data: tyro.conf.Positional[Optional[Path]] = None
    """The scene folder (any format `endogs info` recognises). Not needed with --resume."""

    preset: str = "default"
    """A preset name from configs/ (or a YAML path); flags override it."""

    output: Optional[Path] = None
    """Run folder; default outputs/runs/<scene name>."""

    resume: Optional[Path] = None
    """Continue an interrupted run folder from its last checkpoint."""

    viewer: bool = False
    """Serve the live browser viewer while training."""

    port: int = 8080
    """Viewer port (with --viewer)."""

    quiet: bool = False
    """No progress bar."""

    config: Annotated[TrainConfig, tyro.conf.arg(name="")] = field(default_factory=TrainConfig)


def _preset_from_argv(argv: list[str]) -> str:
    for i, a in enumerate(argv):
        if a == "--preset" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--preset="):
            return a.split("=", 1)[1]
    return "default"


def parse(argv: list[str]) -> TrainArgs:
    preset = _preset_from_argv(argv)
    cfg = load_preset(preset) if preset != "default" or "default" in list_presets() else TrainConfig()
    return tyro.cli(TrainArgs, args=argv, default=TrainArgs(preset=preset, config=cfg), prog="endogs train")


def run(args: TrainArgs) -> Path:
    from endogs.train.trainer import Trainer

    if args.viewer:  # fail before creating a run folder
        from viewer.app import check_port_free

        check_port_free("127.0.0.1", args.port)
    if args.resume is not None:
        tr = Trainer.resume(args.resume)
    else:
        if args.data is None:
            raise ConfigError("endogs train needs a scene folder (or --resume RUN)")
        out = args.output or Path("outputs") / "runs" / Path(args.data).resolve().name
        tr = Trainer.create(args.config, args.data, out)
    print(f"training {tr.data_path} on {tr.device.type}: {len(tr.frames)} train frames, {tr.scene.num_gaussians} Gaussians, "
          f"{tr.cfg.iterations} iterations -> {tr.run_dir}", file=sys.stderr)
    if args.viewer:
        from viewer.live import train_with_viewer

        train_with_viewer(tr, port=args.port, progress=not args.quiet)
    else:
        tr.train(progress=not args.quiet)
    print(f"run folder: {tr.run_dir}")
    return tr.run_dir
