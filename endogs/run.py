"""The run folder: the one place that knows its file names and formats.

A run folder (``endogs train ... --output RUN``) holds::

    run.yaml              data path + resolved TrainConfig (human-readable, strict on reload)
    log.jsonl             one JSON object per logged step, then {"event": "done", ...}
    checkpoint.pt         the latest resumable state (versioned, atomic writes, torch.load(weights_only=True))
    eval_<split>/         ``endogs eval``: metrics.json (written last: marks a complete evaluation), report.md, ...
    export/               ``endogs export`` (default output folder)
    done.json             ``endogs batch``: written after the pair's evaluation
    task.log              ``endogs batch``: the pair's task output, every attempt

Everything that reads or writes a run goes through :class:`RunFolder`; :meth:`RunFolder.open` loads
a trained model for evaluation, export or viewing and turns every failure into one
:class:`~endogs.errors.EndogsError` line that names the file and the fix.

>>> run = RunFolder("outputs/runs/pulling").open(device="cpu", need_data=True)
>>> run.scene.num_gaussians, run.dataset.width
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import torch

from endogs.errors import ConfigError, DataError, EndogsError
from endogs.utils import fs
from endogs.utils.device import DeviceName, pick_device

if TYPE_CHECKING:  # the model and the dataset are imported when a run is opened
    from endogs.data import Scene
    from endogs.model.scene import DynamicScene
    from endogs.train.config import TrainConfig

RUN_FILE = "run.yaml"
LOG_FILE = "log.jsonl"
CHECKPOINT_FILE = "checkpoint.pt"
DONE_FILE = "done.json"
TASK_LOG_FILE = "task.log"
EXPORT_DIR = "export"
EVAL_PREFIX = "eval_"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"

CHECKPOINT_VERSION = 1  # bump when the checkpoint layout changes; older files then fail with a one-line error

TRAIN_FIRST = "train one first (endogs train DATA --output RUN)"




def load_data(path: Path, cfg: "TrainConfig") -> "Scene":
    """The dataset of a run, read as its config says (format, split, crop)."""
    from endogs.data import load_scene

    opts = {}
    if cfg.data.crop_bottom:
        opts["crop_bottom"] = cfg.data.crop_bottom
    return load_scene(path, format=cfg.data.format, split=cfg.data.split, **opts)


def _torch_save(obj: Any, path: Path) -> None:
    """torch.save through a Python file: a full disk then raises OSError(ENOSPC), not a bare RuntimeError."""
    try:
        with open(path, "wb") as f:
            torch.save(obj, f)
    except RuntimeError as exc:  # torch's zip writer masks the write's OSError with its own error
        if isinstance(exc.__context__, OSError):
            raise exc.__context__ from None
        raise


@dataclass(frozen=True)
class RunFolder:
    """The files of one run folder (nothing is read until asked)."""

    path: Path

    def __init__(self, path: Union[str, Path]):
        object.__setattr__(self, "path", Path(path))

    # ------------------------------------------------------------------------------ file names
    @property
    def run_file(self) -> Path:
        return self.path / RUN_FILE

    @property
    def log_file(self) -> Path:
        return self.path / LOG_FILE

    @property
    def checkpoint_file(self) -> Path:
        return self.path / CHECKPOINT_FILE

    @property
    def done_file(self) -> Path:
        return self.path / DONE_FILE

    @property
    def task_log(self) -> Path:
        return self.path / TASK_LOG_FILE

    @property
    def export_dir(self) -> Path:
        return self.path / EXPORT_DIR

    def eval_dir(self, split: str, native: bool = False) -> Path:
        """``eval_<split>`` (training resolution) or ``eval_<split>_native`` (full frame size)."""
        return self.path / f"{EVAL_PREFIX}{split}{'_native' if native else ''}"

    def metrics_file(self, split: str) -> Path:
        return self.eval_dir(split) / METRICS_FILE

    def has_checkpoint(self) -> bool:
        return self.checkpoint_file.is_file()

    def is_run(self) -> bool:
        return self.run_file.is_file()

    # ------------------------------------------------------------------------------ run.yaml
    def write_config(self, data_path: Path, cfg: "TrainConfig") -> None:
        import yaml

        from endogs.config_io import to_dict

        self.path.mkdir(parents=True, exist_ok=True)
        text = yaml.safe_dump({"data": str(Path(data_path).resolve()), "config": to_dict(cfg)}, sort_keys=False)
        fs.write_text(self.run_file, text)

    def read_config(self) -> tuple[Path, "TrainConfig"]:
        """(data path, resolved TrainConfig) from run.yaml; one-line errors for a missing, corrupt or
        incompatible file."""
        from endogs import __version__
        from endogs.config_io import from_dict, load_yaml
        from endogs.train.config import TrainConfig

        self._check_folder()
        if not self.run_file.is_file():
            raise DataError(f"not an endogs run folder (no {RUN_FILE}); {TRAIN_FIRST}", self.path)
        try:
            raw = load_yaml(self.run_file)
        except ConfigError:
            raise DataError(f"{RUN_FILE} is not valid YAML; restore it or retrain the run", self.run_file) from None
        if "data" not in raw or "config" not in raw:
            raise DataError(f"{RUN_FILE} lacks 'data' or 'config'; restore it or retrain the run", self.run_file)
        try:
            cfg = from_dict(TrainConfig, raw["config"], where=RUN_FILE)
        except ConfigError as exc:
            raise DataError(f"{RUN_FILE} does not match this endogs {__version__} ({exc}); retrain the run with this "
                            "version or use the version that wrote it", self.run_file) from None
        return Path(raw["data"]), cfg

    def _check_folder(self) -> None:
        if not self.path.exists():
            raise DataError(f"no such run folder; {TRAIN_FIRST}", self.path)
        if not self.path.is_dir():
            raise DataError(f"expected a run folder (with {RUN_FILE} and {CHECKPOINT_FILE}), got a file", self.path)

    # ------------------------------------------------------------------------------ log.jsonl
    def start_log(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.log_file.write_text("")

    def append_log(self, record: dict[str, Any]) -> None:
        with fs.disk_full_is_one_line(self.log_file), open(self.log_file, "a") as f:
            f.write(json.dumps(record) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        """Every record of log.jsonl ([] when there is none). A last line cut short by an interrupted
        write is skipped; any other line that is not a JSON object is a :class:`DataError`."""
        if not self.log_file.is_file():
            return []
        text = self.log_file.read_text()
        lines = text.split("\n")
        out = []
        for n, line in enumerate(lines, 1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                if n == len(lines):  # no newline after it: the write was interrupted
                    continue
                raise DataError(f"line {n} of {LOG_FILE} is not JSON; restore the file or retrain the run", self.log_file) from None
            if not isinstance(rec, dict):
                raise DataError(f"line {n} of {LOG_FILE} is not a JSON object; restore the file or retrain the run", self.log_file)
            out.append(rec)
        return out

    def finished(self) -> bool:
        """Whether the log records the end of training."""
        return any(r.get("event") == "done" for r in self.read_log())

    # ------------------------------------------------------------------------------ checkpoint.pt
    def save_checkpoint(self, state: dict[str, Any]) -> Path:
        """Write ``state`` (plus the format version) atomically: torch.save to a temporary name, fsync, rename."""
        ckpt = {"version": CHECKPOINT_VERSION, **state}
        return fs.atomic_write(self.checkpoint_file, lambda p: _torch_save(ckpt, p), fsync=True)

    def load_checkpoint(self) -> dict[str, Any]:
        """The checkpoint's content on the CPU (whatever device saved it); one-line errors for a missing,
        corrupt or other-version file."""
        from endogs import __version__

        self._check_folder()
        path = self.checkpoint_file
        if not path.is_file():
            raise DataError(f"no {CHECKPOINT_FILE}: this run never saved a checkpoint; resume it (endogs train --resume "
                            f"{self.path}) or train again", self.path)
        try:
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
        except Exception:  # torch raises many types for a damaged or foreign file  # noqa: BLE001
            ckpt = None
        if not isinstance(ckpt, dict) or "version" not in ckpt:
            raise DataError("checkpoint is corrupt or not an endogs checkpoint; resume (endogs train --resume RUN) "
                            "or retrain", path)
        if ckpt["version"] != CHECKPOINT_VERSION:
            raise DataError(f"checkpoint format version {ckpt['version']!r} is incompatible with endogs {__version__} "
                            f"(reads version {CHECKPOINT_VERSION}); retrain the run with this version or use the endogs "
                            "version that wrote it", path)
        return ckpt

    # ------------------------------------------------------------------------------ opening
    def open(self, device: str = "auto", data: Optional[Path] = None, need_data: bool = False) -> "LoadedRun":
        """Load the trained model (and, with ``need_data``, its dataset from ``data`` or the recorded path).

        Every failure - no folder, not a run, corrupt or incompatible run.yaml / log.jsonl /
        checkpoint.pt, an unavailable device, a moved or different dataset - is one EndogsError line."""
        from endogs import __version__
        from endogs.model.scene import DynamicScene

        data_path, cfg = self.read_config()
        ckpt = self.load_checkpoint()
        log = self.read_log()
        dev = pick_device(device or "auto")
        try:
            scene = DynamicScene.from_checkpoint(ckpt["scene"], device=dev)
            step, done = int(ckpt["step"]), bool(ckpt["done"])
        except (ValueError, KeyError, RuntimeError, TypeError) as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise DataError(f"checkpoint is incompatible with endogs {__version__} ({first}); retrain the run with this "
                            "version or use the endogs version that wrote it", self.checkpoint_file) from None
        scene.eval()
        run = LoadedRun(self, data_path, cfg, scene, step, done, dev, log)
        if need_data:
            run.dataset = run.data(data)
        return run


@dataclass
class LoadedRun:
    """A trained run ready to render: the model, its config, its log and (when loaded) its dataset."""

    folder: RunFolder
    data_path: Path
    config: "TrainConfig"
    scene: "DynamicScene"
    step: int
    done: bool
    device: torch.device
    records: list[dict[str, Any]] = field(default_factory=list)
    dataset: Optional["Scene"] = None

    @property
    def run_dir(self) -> Path:
        return self.folder.path

    def log(self) -> list[dict[str, Any]]:
        return self.records

    def data(self, path: Optional[Path] = None) -> "Scene":
        """The run's dataset (from ``path`` when it moved), checked to have the frames the model was trained on."""
        p = Path(path) if path is not None else self.data_path
        if not p.exists():
            if path is None:
                raise DataError(f"the run's scene folder is gone (recorded in {self.folder.run_file}); pass --data "
                                "NEW_PATH, move it back or edit 'data' there", p)
            raise DataError("no such scene folder", p)
        data = load_data(p, self.config)
        n_model = int(getattr(self.scene, "n_frames", len(data)))
        if len(data) != n_model:
            raise DataError(f"the scene has {len(data)} frames but the run was trained on {n_model}; point --data at "
                            "the scene this run was trained on", p)
        return data

    def try_data(self, path: Optional[Path] = None) -> Optional["Scene"]:
        """:meth:`data`, or None when the dataset is unavailable (for uses that only need it as a hint)."""
        try:
            return self.data(path)
        except EndogsError:
            return None


def load_run(run_dir: Union[str, Path], device: Optional[str] = None) -> LoadedRun:
    """Load a run folder's model for evaluation, export or viewing (see :meth:`RunFolder.open`)."""
    return RunFolder(run_dir).open(device or "auto")


__all__ = ["RunFolder", "LoadedRun", "DeviceName", "load_run", "load_data", "pick_device", "CHECKPOINT_VERSION"]
