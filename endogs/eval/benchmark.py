"""``endogs benchmark CONFIG.yaml``: train and evaluate scenes x variants, write one comparison table.

Config (strict keys; see ``configs/benchmark/example.yaml``)::

    name: example                      # table title; default output outputs/benchmark/<name>
    output: outputs/benchmark/example  # relative to the working directory
    preset: default                    # TrainConfig preset of every variant (configs/<preset>.yaml)
    overrides: {iterations: 300}       # nested TrainConfig overrides for every run
    eval: {split: test, protocol: auto, lpips_weights: null, images: true, video: false, fps_min_time: 2.0, fps_warmup: 3}
    scenes:
      - name: synthetic
        data: outputs/demo/sample_scene   # relative to the working directory
        synthetic: {width: 160, height: 128, n_frames: 24}   # optional: write the synthetic scene if missing
        overrides: {data: {split: every8}}                   # optional, per scene
        protocol: endonerf                                   # optional, per scene
    variants:                          # optional; default one variant "default"
      - {name: hexplane, overrides: {deform: {kind: hexplane}}}
      - {name: mlp, preset: default, overrides: {deform: {kind: mlp}}}
    peers: [peers_endonerf.yaml]       # published numbers; relative to this config file

Overrides apply in the order preset < global ``overrides`` < scene < variant (``endogs.config_io.merge``).
Runs live in ``OUTPUT/runs/<scene>__<variant>``; training goes through :class:`endogs.train.Trainer`,
the code path of ``endogs train``. With ``reuse`` a finished run (its log has the "done" record, its
config equals the requested one) is not retrained, an unfinished one is resumed, and an evaluation
newer than the checkpoint is read back instead of recomputed.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal, Optional, Union

from endogs.config_io import from_dict, load_yaml, merge, to_dict
from endogs.errors import ConfigError, DataError
from endogs.eval import io
from endogs.eval.report import LABELS, fmt, fmt_rate, markdown_table, text_table
from endogs.eval.protocol import EvalSplit, ProtocolName
from endogs.run import RunFolder

TABLE_COLUMNS = ["scene", "method", "source", "psnr", "psnr_legacy", "ssim", "ssim_masked", "lpips", "train_time_s", "fps",
                 "peak_memory_mb", "num_gaussians", "device", "protocol", "note"]
TABLE_HEADER = ["scene", "method", "source", "PSNR", "PSNR legacy", "SSIM", "SSIM masked", "LPIPS", "train s", "FPS",
                "peak MB", "#Gaussians", "device"]
MEASURED = "measured here"
BASELINE = "baseline, measured here"
REPORTED = "reported"


@dataclass
class EvalSettings:
    split: EvalSplit = "test"
    protocol: ProtocolName = "auto"
    lpips_weights: Optional[str] = None
    images: bool = True
    video: bool = False
    fps_min_time: float = 2.0
    fps_warmup: int = 3


@dataclass
class SceneEntry:
    name: str
    data: str
    overrides: dict[str, Any] = field(default_factory=dict)
    protocol: Optional[ProtocolName] = None
    synthetic: Optional[dict[str, Any]] = None


@dataclass
class VariantEntry:
    name: str = "default"
    preset: Optional[str] = None
    overrides: dict[str, Any] = field(default_factory=dict)


@dataclass
class BenchmarkConfig:
    scenes: list[SceneEntry]
    name: str = "benchmark"
    output: Optional[str] = None
    preset: str = "default"
    overrides: dict[str, Any] = field(default_factory=dict)
    eval: EvalSettings = field(default_factory=EvalSettings)
    variants: list[VariantEntry] = field(default_factory=lambda: [VariantEntry()])
    peers: list[str] = field(default_factory=list)


@dataclass
class PeerEntry:
    method: str
    scene: str
    source: str
    protocol: str
    psnr: Optional[float] = None
    psnr_legacy: Optional[float] = None
    ssim: Optional[float] = None
    ssim_masked: Optional[float] = None
    lpips: Optional[float] = None
    train_time_s: Union[float, str, None] = None
    fps: Optional[float] = None
    peak_memory_mb: Union[float, str, None] = None
    num_gaussians: Optional[int] = None
    device: Optional[str] = None
    note: Optional[str] = None


@dataclass
class PeersFile:
    entries: list[PeerEntry]
    dataset: str = ""
    description: str = ""
    columns: dict[str, str] = field(default_factory=dict)


@dataclass
class BenchmarkResult:
    out_dir: Path
    rows: list[dict[str, Any]]
    table_text: str
    runs: list[dict[str, Any]]


_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def load_benchmark_config(path: Union[str, Path]) -> BenchmarkConfig:
    path = Path(path)
    raw = load_yaml(path)
    if isinstance(raw.get("peers"), str):
        raw["peers"] = [raw["peers"]]
    if "scenes" not in raw or not raw["scenes"]:
        raise ConfigError(f"{path}: needs a non-empty 'scenes' list")
    cfg = from_dict(BenchmarkConfig, raw, where=path.name)
    names = [s.name for s in cfg.scenes]
    vnames = [v.name for v in cfg.variants]
    for kind, ns in (("scene", names), ("variant", vnames)):
        if len(set(ns)) != len(ns):
            raise ConfigError(f"{path}: {kind} names must be unique, got {ns}")
        bad = [n for n in ns if not n or set(n) - _NAME_CHARS]
        if bad:
            raise ConfigError(f"{path}: {kind} names may use letters, digits, '-', '_' and '.', got {bad}")
    return cfg


def load_peers(path: Union[str, Path]) -> PeersFile:
    path = Path(path)
    raw = load_yaml(path)
    return from_dict(PeersFile, raw, where=path.name)


def _resolve_peers(cfg_path: Path, name: str) -> Path:
    p = Path(name)
    for cand in ([p] if p.is_absolute() else [cfg_path.parent / p, p]):
        if cand.is_file():
            return cand
    raise ConfigError(f"{cfg_path}: peers file {name} not found (looked beside the config and in the working directory)")


def run_config(bench: BenchmarkConfig, scene: SceneEntry, variant: VariantEntry, device: str):
    from endogs.train.config import load_preset

    cfg = load_preset(variant.preset or bench.preset)
    where = f"benchmark {scene.name}/{variant.name}"
    for ov in (bench.overrides, scene.overrides, variant.overrides):
        if ov:
            cfg = merge(cfg, ov, where=where)
    if device != "auto":
        cfg = merge(cfg, {"device": device}, where=where)
    return cfg


def _ensure_scene(scene: SceneEntry, log: Callable[[str], None]) -> Path:
    data = Path(scene.data)
    if data.exists() or scene.synthetic is None:
        if not data.exists():
            raise DataError(f"scene {scene.name!r}: no such folder; fix 'data' in the benchmark config or add a "
                            "'synthetic:' entry to generate it", data)
        return data
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene

    opts = dict(scene.synthetic)
    layout = opts.pop("layout", "endonerf")
    try:
        syn = SyntheticConfig(**opts)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"scene {scene.name!r}: bad synthetic options ({exc})") from None
    log(f"writing synthetic scene {data}")
    return write_synthetic_scene(data, layout=layout, config=syn)


def _diff_keys(requested: Any, stored: Any, prefix: str = "") -> list[str]:
    """Keys where a run's stored (resolved) config contradicts the requested one. Requested ``None``
    leaves ("pick by device") and ``device: auto`` match whatever the trainer resolved them to."""
    if isinstance(requested, dict):
        if not isinstance(stored, dict):
            return [prefix.rstrip(".") or "config"]
        out = []
        for k in sorted(requested):
            out += _diff_keys(requested[k], stored.get(k), f"{prefix}{k}.")
        return out
    key = prefix.rstrip(".")
    if requested is None or (key == "device" and requested == "auto"):
        return []
    if isinstance(requested, (list, tuple)) and isinstance(stored, (list, tuple)):
        return [] if list(requested) == list(stored) else [key]
    return [] if requested == stored else [key]


def _reset_peak_memory() -> None:
    """Each run's CUDA peak is its own (the trainer logs torch.cuda.max_memory_allocated)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()


def train_or_reuse(cfg, data_path: Path, run_dir: Path, reuse: bool, log: Callable[[str], None],
                   on_step: Optional[Callable[[Any, dict], None]] = None) -> str:
    """Train ``run_dir`` (new), resume it, or skip it; returns "trained", "resumed" or "reused".

    ``on_step(trainer, terms)`` is passed to :meth:`Trainer.train` (called after every step)."""
    from endogs.train.trainer import Trainer  # the benchmark trains: the one place in eval that imports the loop

    folder = RunFolder(run_dir)
    if not folder.has_checkpoint():
        _reset_peak_memory()
        tr = Trainer.create(cfg, data_path, run_dir)
        log(f"training {run_dir.name}: {len(tr.frames)} frames, {tr.cfg.iterations} iterations on {tr.device.type}")
        tr.train(progress=False, on_step=on_step)
        return "trained"
    if not reuse:
        raise ConfigError(f"{run_dir}: a run already exists here; pass --reuse to skip finished runs (and resume "
                          "unfinished ones), or delete the folder")
    old_data, old_cfg = folder.read_config()
    diff = _diff_keys(to_dict(cfg), to_dict(old_cfg))
    if diff or Path(old_data).resolve() != Path(data_path).resolve():
        what = ", ".join(diff[:6]) if diff else f"data {old_data}"
        raise ConfigError(f"{run_dir}: the existing run differs from the benchmark entry ({what}); delete the folder "
                          "or rename the scene/variant")
    if folder.finished():
        log(f"reusing finished run {run_dir.name}")
        return "reused"
    log(f"resuming unfinished run {run_dir.name}")
    _reset_peak_memory()
    Trainer.resume(run_dir).train(progress=False, on_step=on_step)
    return "resumed"


def evaluate_or_reuse(run_dir: Path, settings: EvalSettings, protocol: Optional[str], device: str, reuse: bool,
                      log: Callable[[str], None]) -> tuple[dict, str]:
    from endogs.eval.evaluate import EvalOptions
    from endogs.eval.pipeline import evaluate_run

    folder = RunFolder(run_dir)
    out_dir = folder.eval_dir(settings.split)
    mfile = folder.metrics_file(settings.split)
    proto = protocol or settings.protocol
    if reuse and mfile.is_file() and mfile.stat().st_mtime >= folder.checkpoint_file.stat().st_mtime:
        try:
            report = json.loads(mfile.read_text())
            if report.get("protocol", {}).get("split") == settings.split and proto in ("auto", report["protocol"]["name"]):
                return report, "reused"
        except (json.JSONDecodeError, KeyError):
            pass
    opts = EvalOptions(split=settings.split, protocol=proto,
                       lpips_weights=None if settings.lpips_weights is None else Path(settings.lpips_weights),
                       device=device, output=out_dir, images=settings.images, video=settings.video,
                       fps_min_time=settings.fps_min_time, fps_warmup=settings.fps_warmup)
    res = evaluate_run(run_dir, opts, log=log)
    return res.report, "evaluated"


def _row(scene: str, method: str, source: str, s: dict, report: dict, note: str = "") -> dict[str, Any]:
    tr = report["timing"]["training"]
    return {"scene": scene, "method": method, "source": source, "psnr": s.get("psnr"), "psnr_legacy": s.get("psnr_legacy"),
            "ssim": s.get("ssim"), "ssim_masked": s.get("ssim_masked"), "lpips": s.get("lpips"),
            "train_time_s": tr.get("train_time_s") if source == MEASURED else None,
            "fps": report["timing"]["render"].get("fps") if source == MEASURED else None,
            "peak_memory_mb": tr.get("peak_memory_mb") if source == MEASURED else None,
            "num_gaussians": tr.get("num_gaussians") if source == MEASURED else None,
            "device": report["environment"]["device"]["type"],
            "protocol": f"{report['protocol']['name']}, {report['protocol']['split']} frames {len(report['protocol']['frames'])}, "
                        f"masks {report['protocol']['mask_source']}, LPIPS {report['protocol']['lpips']['status']}",
            "note": note}


def measured_rows(scene: str, method: str, report: dict, baselines: bool) -> list[dict[str, Any]]:
    """The table row of a trained run (its metrics.json ``report``), then the scene's trivial baselines."""
    rows = [_row(scene, method, MEASURED, report["metrics"]["model"], report, report["verdict"]["text"])]
    if baselines:
        for b in ("nearest_train", "neighbour_mean", "train_mean"):
            if b in report["metrics"]:
                rows.append(_row(scene, LABELS[b], BASELINE, report["metrics"][b], report))
    return rows


def peer_rows(peers: list[tuple[Path, PeersFile]]) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows of published numbers ("reported (FILE)") and one source/protocol note per entry."""
    rows, notes = [], []
    for p, pf in peers:
        for e in pf.entries:
            row = {k: getattr(e, k) for k in ("psnr", "psnr_legacy", "ssim", "ssim_masked", "lpips", "train_time_s", "fps",
                                              "peak_memory_mb", "num_gaussians", "device", "protocol", "note")}
            rows.append({"scene": e.scene, "method": e.method, "source": f"{REPORTED} ({p.name})", **row})
            notes.append(f"{e.method} / {e.scene}: {e.source}. Protocol: {e.protocol}" + (f" Note: {e.note}" if e.note else ""))
    return rows, notes


def write_table(out_dir: Path, title: str, by: str, rows: list[dict[str, Any]], settings: EvalSettings,
                sections: list[tuple[str, list[str]]]) -> str:
    """Write the comparison table of ``endogs benchmark`` and ``endogs batch``: OUT/table.md (title, how to
    read it, the table, then one bulleted list per section) and OUT/table.csv (``TABLE_COLUMNS``);
    returns the plain-text table. ``by`` names what measured the rows ("this benchmark")."""
    table_rows = [[r["scene"], r["method"], r["source"], fmt(r["psnr"]), fmt(r["psnr_legacy"]), fmt(r["ssim"], 4),
                   fmt(r["ssim_masked"], 4), fmt(r["lpips"], 3), fmt(r["train_time_s"], 1), fmt_rate(r["fps"]),
                   fmt(r["peak_memory_mb"], 0), fmt(r["num_gaussians"]), fmt(r["device"])] for r in rows]
    text = text_table(TABLE_HEADER, table_rows, left=3)
    md = [f"# {title}", "",
          f"Rows marked *measured here* were trained and evaluated by {by}; *baseline* rows are trivial "
          "predictors on the same frames and masks; *reported* rows are published numbers copied from the peers "
          "file, under their own protocols (datasets, splits, PSNR variants, LPIPS backbones and GPUs differ), and "
          "are not reproduced here.", "",
          "- PSNR: true masked PSNR (MSE over tissue pixels only). PSNR legacy: PSNR of mask-multiplied images over "
          "all pixels (what EndoNeRF/EndoGaussian/Deform3DGS print; inflated). A reported value sits in the column "
          "of the variant its code computes.",
          f"- evaluation: split {settings.split}, protocol {settings.protocol} (per-scene overrides apply); "
          "LPIPS is AlexNet with inputs in [-1, 1] when its weights are available, else n/a.", "",
          markdown_table(TABLE_HEADER, table_rows, left=3), ""]
    cpu_runs = [r for r in rows if r["source"] == MEASURED and r["device"] == "cpu"]
    if len(cpu_runs) > 1:
        md += ["Note: on CPU the trainer logs the process's maximum RSS, which never decreases, so the peak memory "
               "of a run trained after another in the same process is an upper bound.", ""]
    for heading, items in sections:
        md += [f"## {heading}", ""] + [f"- {x}" for x in items] + [""]
    io.write_csv(out_dir / "table.csv", rows, TABLE_COLUMNS)
    io.write_text(out_dir / "table.md", "\n".join(md))
    return text


def run_benchmark(config: Union[str, Path], reuse: bool = False, output: Optional[Union[str, Path]] = None,
                  device: str = "auto", log: Callable[[str], None] = lambda s: None) -> BenchmarkResult:
    """Train and evaluate every scene x variant of ``config``; write table.md, table.csv, benchmark.json."""
    cfg_path = Path(config)
    bench = load_benchmark_config(cfg_path)
    peers = [(_resolve_peers(cfg_path, p), None) for p in bench.peers]
    peers = [(p, load_peers(p)) for p, _ in peers]  # fail on a bad peers file before training anything
    out_dir = Path(output or bench.output or Path("outputs") / "benchmark" / bench.name)
    # build every config first: a typo in the last entry must not surface after hours of training
    plan = []
    for scene in bench.scenes:
        for variant in bench.variants:
            plan.append((scene, variant, run_config(bench, scene, variant, device)))
    rows: list[dict[str, Any]] = []
    runs: list[dict[str, Any]] = []
    baselines_done: set[str] = set()
    for scene, variant, cfg in plan:
        data_path = _ensure_scene(scene, log)
        run_dir = out_dir / "runs" / f"{scene.name}__{variant.name}"
        train_status = train_or_reuse(cfg, data_path, run_dir, reuse, log)
        report, eval_status = evaluate_or_reuse(run_dir, bench.eval, scene.protocol, device, reuse, log)
        single = len(bench.variants) == 1 and variant.name == "default"
        method = "endogs" if single else f"endogs ({variant.name})"
        rows += measured_rows(scene.name, method, report, baselines=scene.name not in baselines_done)
        baselines_done.add(scene.name)
        runs.append({"scene": scene.name, "variant": variant.name, "run": str(run_dir), "data": str(data_path),
                     "train": train_status, "eval": eval_status, "metrics": str(RunFolder(run_dir).metrics_file(bench.eval.split)),
                     "verdict": report["verdict"]})
    order = {s.name: k for k, s in enumerate(bench.scenes)}
    rows.sort(key=lambda r: (order[r["scene"]], r["source"] != MEASURED))  # stable: measured, then baselines
    reported, peer_notes = peer_rows(peers)
    sections = [("Verdicts", [f"{r['scene']} / {r['variant']}: {r['verdict']['text']}" for r in runs])]
    if peer_notes:
        sections.append(("Reported numbers: sources and protocols", peer_notes))
    sections.append(("Runs", [f"{r['scene']} / {r['variant']}: `{r['run']}` (train: {r['train']}, eval: {r['eval']})"
                              for r in runs]))
    rows += reported
    text = write_table(out_dir, f"Benchmark: {bench.name}", "this benchmark", rows, bench.eval, sections)
    io.write_json(out_dir / "benchmark.json", {"name": bench.name, "config": str(cfg_path.resolve()),
                                               "benchmark": dataclasses.asdict(bench), "rows": rows, "runs": runs})
    return BenchmarkResult(out_dir, rows, text, runs)
