"""The SPEC of ``endogs batch`` and the plan made from it: inputs x configs, validated before anything runs.

SPEC (YAML, strict keys; paths and globs relative to the working directory, peers files relative to
the SPEC)::

    name: sweep                         # table title; default: the SPEC file name
    output: /mnt/nfs/endogs/sweep       # the shared output folder (--out overrides it); default outputs/batch/<name>
    max_retries: 2                      # further attempts of a pair whose worker died or raised (0 = none)
    cpus_per_task: 1                    # CPU cores each pair reserves, and its torch threads
    overrides: {iterations: 600}        # TrainConfig overrides of every pair
    eval: {split: test, protocol: auto, lpips_weights: null, images: true, video: false, fps_min_time: 2.0, fps_warmup: 3}
    peers: [peers_endonerf.yaml]        # optional published numbers for the table (as endogs benchmark)
    inputs:
      - scene: data/endonerf/pulling    # a scene folder (any layout endogs info recognises)
        name: pulling                   # optional; default: the folder name
        protocol: endonerf              # optional evaluation protocol of this input
        overrides: {data: {split: every8}}   # optional TrainConfig overrides of this input
      - scene: data/hamlyn/*            # a glob (*, ?, [...]): every matching folder, named by its folder
      - video: recordings/case1.mp4     # a video or image folder, prepared as by `endogs prepare`
        prepare: {calib: recordings/calib.yaml, poses: odometry, masks: auto, stride: 2}
      - video: recordings/*.mp4         # a glob of videos, each named by its file stem
        prepare: {poses: identity}
    configs:                            # default: one config "default" (preset default)
      - {name: fast, preset: fast}
      - {name: mlp, preset: default, overrides: {deform: {kind: mlp}}}

Every input meets every config (a sweep): the pair ``<input>__<config>`` trains with preset < the
SPEC's ``overrides`` < the input's < the config's, in its own folder ``OUTPUT/<input>__<config>``;
prepared videos go to ``OUTPUT/scenes/<input>``. :func:`plan_batch` turns a SPEC into resolved pairs
(absolute paths, complete TrainConfigs) and refuses, with one line naming the SPEC and the fix, unknown
keys, missing inputs, globs that match nothing, clashing names, bad overrides, and output folders
that hold a run of a different config.
"""

from __future__ import annotations

import dataclasses
import glob
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

from endogs.config_io import from_dict, load_yaml, merge, to_dict
from endogs.errors import ConfigError
from endogs.eval.benchmark import _NAME_CHARS, EvalSettings, _diff_keys, _resolve_peers, load_peers
from endogs.eval.protocol import ProtocolName

PAIR_SEP = "__"
SCENES_DIR = "scenes"
PREPARED_SUFFIX = ".prepare.json"  # OUTPUT/scenes/<input>.prepare.json: what the scene was prepared from
GLOB_CHARS = set("*?[")


@dataclass
class InputEntry:
    scene: Optional[str] = None
    video: Optional[str] = None
    name: Optional[str] = None
    prepare: dict[str, Any] = field(default_factory=dict)
    protocol: Optional[ProtocolName] = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class ConfigEntry:
    name: Optional[str] = None
    preset: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class BatchSpec:
    inputs: list[dict[str, Any]]  # InputEntry mappings, converted one by one (errors name the entry)
    configs: list[dict[str, Any]] = field(default_factory=lambda: [{"name": "default"}])
    name: Optional[str] = None
    output: Optional[str] = None
    max_retries: int = 2
    cpus_per_task: float = 1.0
    overrides: dict[str, Any] = field(default_factory=dict)
    eval: EvalSettings = field(default_factory=EvalSettings)
    peers: list[str] = field(default_factory=list)


@dataclass
class BatchInput:
    """One input, resolved: a scene folder, or a video and where its prepared scene goes."""

    name: str
    kind: Literal["scene", "video"]
    source: Path  # absolute: the scene folder or the video
    data: Path  # absolute: the scene folder training reads (OUTPUT/scenes/<name> for a video)
    prepare: Optional[dict[str, Any]]  # PrepareOptions as a plain dict (videos)
    protocol: Optional[str]
    overrides: dict[str, Any]

    @property
    def prepared_marker(self) -> Path:
        return self.data.with_name(self.data.name + PREPARED_SUFFIX)

    def prepared_record(self) -> dict[str, Any]:
        """What the marker beside a prepared scene holds; a scene is ready when it matches."""
        return json.loads(json.dumps({"input": str(self.source), "prepare": self.prepare}))

    def scene_ready(self) -> bool:
        if self.kind == "scene":
            return True
        m = self.prepared_marker
        try:
            return self.data.is_dir() and json.loads(m.read_text()) == self.prepared_record()
        except (OSError, json.JSONDecodeError):
            return False


@dataclass
class Pair:
    """One (input, config) pair: the unit of work of a Ray task."""

    input: BatchInput
    config_name: str
    config: Any  # TrainConfig (preset + overrides, unresolved: device-dependent fields stay None)
    run_dir: Path  # OUTPUT/<input>__<config>
    finished: Optional[dict[str, Any]] = None  # the matching done.json of an earlier run

    @property
    def key(self) -> str:
        return f"{self.input.name}{PAIR_SEP}{self.config_name}"


@dataclass
class BatchPlan:
    spec_path: Path
    spec: BatchSpec
    name: str
    out_dir: Path
    inputs: list[BatchInput]
    config_names: list[str]
    pairs: list[Pair]
    peers: list[tuple[Path, Any]]

    def eval_record(self, pair: Pair) -> dict[str, Any]:
        """The evaluation a pair's done.json must have been made with."""
        return {**dataclasses.asdict(self.spec.eval), "protocol_override": pair.input.protocol}


def _err(spec: Path, msg: str) -> ConfigError:
    return ConfigError(msg, spec)


def load_spec(path: Union[str, Path]) -> BatchSpec:
    path = Path(path)
    if not path.is_file():
        raise ConfigError("no such SPEC file; give the path of a batch YAML (see README, 'Many scenes: endogs batch')", path)
    raw = load_yaml(path)
    if not raw.get("inputs"):
        raise _err(path, "needs a non-empty 'inputs' list (scene folders, videos or globs)")
    if "configs" in raw and not raw["configs"]:
        raise _err(path, "'configs' is empty; list at least one {name, preset, overrides} or drop the key")
    if isinstance(raw.get("peers"), str):
        raw["peers"] = [raw["peers"]]
    for key in ("inputs", "configs"):
        if key in raw and (not isinstance(raw[key], list) or not all(isinstance(x, dict) for x in raw[key])):
            raise _err(path, f"'{key}' must be a list of mappings")
    spec = from_dict(BatchSpec, raw, where=str(path))
    if spec.eval.lpips_weights is not None:  # tasks run in other working directories
        spec.eval.lpips_weights = str(_resolve_path(spec.eval.lpips_weights))
    if spec.max_retries < 0:
        raise _err(path, f"max_retries must be >= 0, got {spec.max_retries}")
    if not spec.cpus_per_task > 0:
        raise _err(path, f"cpus_per_task must be > 0, got {spec.cpus_per_task}")
    return spec


def _is_glob(s: str) -> bool:
    return bool(set(s) & GLOB_CHARS)


def _check_name(spec: Path, what: str, name: str, fix: str) -> None:
    if not name or set(name) - _NAME_CHARS or PAIR_SEP in name or name.startswith("."):
        # names become folder names under OUTPUT: '.', '..' or a hidden name would escape or hide it
        raise _err(spec, f"{what} name {name!r} may use only letters, digits, '-', '_' and '.' (not first, and no "
                         f"'{PAIR_SEP}'); {fix}")


def _resolve_path(value: Union[str, Path]) -> Path:
    return Path(value).expanduser().resolve()


def _prepare_options(spec: Path, where: str, opts: dict[str, Any]) -> dict[str, Any]:
    """Strict PrepareOptions from the SPEC, with file arguments made absolute and checked."""
    from endogs.video.config import PrepareOptions

    if "overwrite" in opts:
        raise _err(spec, f"{where}.prepare: 'overwrite' is managed by endogs batch; remove it")
    po = from_dict(PrepareOptions, opts, where=f"{spec}: {where}.prepare")
    changes: dict[str, Any] = {}
    for key in ("right", "calib", "depth_model"):
        v = getattr(po, key)
        if v is not None:
            changes[key] = _resolve_path(v)
    if po.masks not in ("none", "auto"):
        changes["masks"] = str(_resolve_path(po.masks))
    if po.poses not in ("identity", "odometry"):
        changes["poses"] = str(_resolve_path(po.poses))
    po = dataclasses.replace(po, **changes)
    for key in ("right", "calib", "depth_model", "masks", "poses"):
        v = changes.get(key)
        if v is not None and not Path(v).exists():
            raise _err(spec, f"{where}.prepare.{key}: no such file or folder {v}; fix the path (relative paths are "
                             "relative to the working directory)")
    try:
        po.validate()
    except ConfigError as exc:
        raise _err(spec, f"{where}.prepare: {exc}") from None
    return to_dict(po)


def expand_inputs(spec_path: Path, spec: BatchSpec, out_dir: Path) -> list[BatchInput]:
    out: list[BatchInput] = []
    for i, raw in enumerate(spec.inputs):
        where = f"inputs[{i}]"
        entry = from_dict(InputEntry, raw, where=f"{spec_path}: {where}")
        if (entry.scene is None) == (entry.video is None):
            raise _err(spec_path, f"{where}: give exactly one of 'scene' (a scene folder) or 'video' (a video or image folder)")
        kind = "scene" if entry.scene is not None else "video"
        pattern = entry.scene if kind == "scene" else entry.video
        if kind == "scene" and entry.prepare:
            raise _err(spec_path, f"{where}: 'prepare' options apply to videos only; remove them or use 'video:'")
        prepare = _prepare_options(spec_path, where, entry.prepare) if kind == "video" else None
        if _is_glob(pattern):
            if entry.name is not None:
                raise _err(spec_path, f"{where}: 'name' cannot be used with the glob {pattern!r} (each match is named by "
                                      "its file or folder); list the input on its own to name it")
            matches = sorted(Path(p) for p in glob.glob(str(Path(pattern).expanduser())))
            if kind == "scene":
                matches = [m for m in matches if m.is_dir()]
            if not matches:
                raise _err(spec_path, f"{where}: the glob {pattern!r} matches no {'folder' if kind == 'scene' else 'file or folder'}; "
                                      "fix the pattern (relative to the working directory)")
        else:
            p = Path(pattern).expanduser()
            if kind == "scene" and not p.is_dir():
                raise _err(spec_path, f"{where}: no such scene folder {p.absolute()}; fix 'scene' (relative paths are relative "
                                      "to the working directory)")
            if kind == "video" and not p.exists():
                raise _err(spec_path, f"{where}: no such video or image folder {p.absolute()}; fix 'video' (relative paths "
                                      "are relative to the working directory)")
            matches = [p]
        for m in matches:
            name = entry.name or (m.stem if (kind == "video" and m.is_file()) else m.absolute().name)
            m = _resolve_path(m)
            _check_name(spec_path, f"{where}: input", name, "set 'name:' on the input")
            data = m if kind == "scene" else out_dir / SCENES_DIR / name
            out.append(BatchInput(name, kind, m, data, prepare, entry.protocol, entry.overrides))
    seen: dict[str, Path] = {}
    for inp in out:
        if inp.name in seen:
            raise _err(spec_path, f"two inputs are both named {inp.name!r} ({seen[inp.name]} and {inp.source}); "
                                  "list them separately with distinct 'name:'s")
        seen[inp.name] = inp.source
    return out


def plan_batch(spec_path: Union[str, Path], out: Optional[Union[str, Path]] = None) -> BatchPlan:
    """Validate the SPEC and make the plan; raises a one-line ConfigError before any work is done."""
    from endogs.train.config import load_preset
    from endogs.run import RunFolder

    spec_path = Path(spec_path)
    spec = load_spec(spec_path)
    name = spec.name or spec_path.stem
    _check_name(spec_path, "batch", name, "set 'name:' in the SPEC")
    out_dir = _resolve_path(out or spec.output or Path("outputs") / "batch" / name)
    if out_dir.exists() and not out_dir.is_dir():
        raise _err(spec_path, f"the output {out_dir} is a file; choose another 'output' or --out")
    peers = [(p, load_peers(p)) for p in (_resolve_peers(spec_path, x) for x in spec.peers)]
    inputs = expand_inputs(spec_path, spec, out_dir)

    configs: list[tuple[str, ConfigEntry]] = []
    for j, raw in enumerate(spec.configs):
        where = f"configs[{j}]"
        entry = from_dict(ConfigEntry, raw, where=f"{spec_path}: {where}")
        cname = entry.name or Path(entry.preset).stem
        _check_name(spec_path, f"{where}: config", cname, "set 'name:' on the config")
        configs.append((cname, entry))
    cnames = [c for c, _ in configs]
    if len(set(cnames)) != len(cnames):
        raise _err(spec_path, f"config names must be unique, got {cnames}; set distinct 'name:'s")

    pairs: list[Pair] = []
    base = {}
    for cname, entry in configs:
        try:
            base[cname] = load_preset(entry.preset)
        except ConfigError as exc:
            raise _err(spec_path, f"config {cname!r}: {exc}") from None
    for inp in inputs:
        for cname, entry in configs:
            where = f"{spec_path}: pair {inp.name}{PAIR_SEP}{cname}"
            cfg = base[cname]
            for ov in (spec.overrides, inp.overrides, entry.overrides):
                if ov:
                    cfg = merge(cfg, ov, where=where)
            pairs.append(Pair(inp, cname, cfg, out_dir / f"{inp.name}{PAIR_SEP}{cname}"))

    plan = BatchPlan(spec_path, spec, name, out_dir, inputs, cnames, pairs, peers)
    # what an earlier run left: prepared scenes, runs, completion markers
    for inp in inputs:
        if inp.kind == "video" and inp.prepared_marker.is_file() and not inp.scene_ready():
            raise _err(spec_path, f"{inp.data} was prepared from another input or with other options than input "
                                  f"{inp.name!r} now asks for; delete it, its {inp.prepared_marker.name} and the runs "
                                  f"{inp.name}{PAIR_SEP}*, or give the input another name")
    for pair in pairs:
        if not RunFolder(pair.run_dir).is_run():
            continue
        old_data, old_cfg = RunFolder(pair.run_dir).read_config()
        diff = _diff_keys(to_dict(pair.config), to_dict(old_cfg))
        if diff or Path(old_data).resolve() != pair.input.data:
            what = ", ".join(diff[:6]) if diff else f"data {old_data}"
            raise _err(spec_path, f"{pair.run_dir} holds a run that differs from pair {pair.key} ({what}); delete that "
                                  "folder or rename the input or config")
        pair.finished = finished_record(plan, pair)
    return plan


def finished_record(plan: BatchPlan, pair: Pair) -> Optional[dict[str, Any]]:
    """The pair's done.json when it records this very pair (input, resolved config, evaluation) and its
    metrics file is there; else None (the pair runs, reusing whatever is finished)."""
    from endogs.run import RunFolder

    path = RunFolder(pair.run_dir).done_file
    try:
        done = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if not isinstance(done, dict) or done.get("pair") != pair.key or done.get("data") != str(pair.input.data):
        return None
    if done.get("eval") != json.loads(json.dumps(plan.eval_record(pair))):
        return None
    if not isinstance(done.get("config"), dict) or _diff_keys(to_dict(pair.config), done["config"]):
        return None
    metrics = Path(done.get("metrics_file", ""))
    return done if metrics.is_file() else None
