"""``endogs train``: tyro over TrainConfig, with presets (``endogs/configs/*.yaml``).

Precedence: dataclass defaults < preset YAML < command-line flags. ``--deform.kind K`` is read
before tyro sees the flags: tyro then parses the options of field K's own config class (any
registered field), so ``--deform.kind mlp --deform.width 128`` works in either order.
"""

from __future__ import annotations

import dataclasses
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
    """A bundled preset name (endogs/configs/*.yaml; see list_presets) or a YAML path; flags override it."""

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


def _flag_value(argv: list[str], flag: str) -> Optional[str]:
    """The value of the last ``flag VALUE`` / ``flag=VALUE`` in ``argv``."""
    value = None
    for i, a in enumerate(argv):
        if a == flag and i + 1 < len(argv):
            value = argv[i + 1]
        elif a.startswith(flag + "="):
            value = a.split("=", 1)[1]
    return value


def _typed_args(deform_cls: type) -> tuple[type, type]:
    """``TrainArgs`` whose ``config.deform`` is declared as ``deform_cls`` (so tyro offers its options)."""
    cfg_cls = dataclasses.make_dataclass(
        "TrainConfig", [("deform", deform_cls, field(default_factory=deform_cls))], bases=(TrainConfig,))
    cfg_cls.__doc__ = TrainConfig.__doc__
    args_cls = dataclasses.make_dataclass(
        "TrainArgs", [("config", Annotated[cfg_cls, tyro.conf.arg(name="")], field(default_factory=cfg_cls))], bases=(TrainArgs,))
    args_cls.__doc__ = TrainArgs.__doc__
    return args_cls, cfg_cls


def _plain(obj: object, cls: type) -> object:
    return cls(**{f.name: getattr(obj, f.name) for f in dataclasses.fields(cls)})


RENAMED_FLAGS = {"--strategy.refine-start": "--strategy.refine-start-iter", "--strategy.refine-stop": "--strategy.refine-stop-iter"}
"""Flags of earlier versions (the strategy config is now gsplat's option names) -> today's spelling."""


def _renamed(argv: list[str]) -> list[str]:
    """``argv`` with earlier flag spellings replaced, each replacement announced in one stderr line."""
    out = []
    for a in argv:
        name, eq, value = a.partition("=")
        if name in RENAMED_FLAGS:
            print(f"endogs train: {name} is now {RENAMED_FLAGS[name]}; using that", file=sys.stderr)
            a = RENAMED_FLAGS[name] + eq + value
        out.append(a)
    return out


def parse(argv: list[str]) -> TrainArgs:
    argv = _renamed(list(argv))
    preset = _flag_value(argv, "--preset") or "default"
    cfg = load_preset(preset) if preset != "default" or "default" in list_presets() else TrainConfig()
    kind = _flag_value(argv, "--deform.kind")
    if kind is not None:
        cfg = dataclasses.replace(cfg, deform=cfg.deform.with_kind(kind))
    typed, typed_cfg = _typed_args(type(cfg.deform))
    default = typed(preset=preset, config=typed_cfg(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(TrainConfig)}))
    parsed = tyro.cli(typed, args=argv, default=default, prog="endogs train")
    args = _plain(parsed, TrainArgs)
    args.config = _plain(parsed.config, TrainConfig)
    return args


def run(args: TrainArgs) -> Path:
    from endogs.train.trainer import Trainer

    if args.viewer:  # fail before creating a run folder
        from endogs.viewer.app import check_port_free

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
        from endogs.viewer.live import train_with_viewer

        train_with_viewer(tr, port=args.port, progress=not args.quiet)
    else:
        tr.train(progress=not args.quiet)
    print(f"run folder: {tr.run_dir}")
    return tr.run_dir
