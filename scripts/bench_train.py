"""Time to quality: train a scene once, keep a snapshot of the run at fixed wall-clock marks, evaluate
every snapshot afterwards on the held-out frames, print one JSON line per mark and draw the curve.

    .venv/bin/python scripts/bench_train.py SCENE --out DIR --marks 30,60,120,240 [--label NAME] \\
        [--compare OTHER/curve.jsonl ...] [-- extra endogs train flags]

e.g. the CPU acceptance scene (320x256, 40 frames) with today's defaults:

    .venv/bin/python -m endogs synthetic outputs/big --width 320 --height 256 --n-frames 40
    .venv/bin/python scripts/bench_train.py outputs/big --out outputs/ttq --marks 60,120,240,480,900

The clock starts before the scene is loaded (the same work as the `endogs train` process, less the
Python imports, which the first line reports) and pauses while a snapshot is written. Training stops
after the last mark, or earlier when it reaches its iterations (then a last row, mark "end").
The test frames are rendered only by the evaluation of the snapshots, after training has ended: they
never reach the optimizer, the schedule or a stopping decision.

Output: DIR/curve.jsonl (one object per mark: label, mark_s, seconds, step, psnr_masked, ssim_masked,
psnr_full, gaussians, best_baseline_psnr), DIR/curve.png (masked test PSNR against seconds, with the
--compare curves beside it), and DIR/marks/<mark>/ (each a run folder that `endogs eval` or the viewer
open). Exit 2 with one line for a missing scene or bad marks.
"""

from __future__ import annotations

import time

_T_IMPORT = time.perf_counter()

import json  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Optional  # noqa: E402

from endogs.errors import EndogsError  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file or imported as scripts.NAME
from train_flags import no_scene, scene_parser, split_flags  # noqa: E402


def parse_marks(text: str) -> list[float]:
    try:
        marks = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise SystemExit(f"bench_train: --marks {text!r}: expected comma-separated seconds, e.g. 30,60,120")
    if not marks or any(m <= 0 for m in marks) or marks != sorted(set(marks)):
        raise SystemExit(f"bench_train: --marks {text!r}: expected increasing positive seconds, e.g. 30,60,120")
    return marks


class Snapshots:
    """The on_step hook: copies the run folder at each wall-clock mark (the clock pauses meanwhile)."""

    def __init__(self, out: Path, marks: list[float], t0: float):
        self.out, self.marks, self.t0 = out, list(marks), t0
        self.paused = 0.0
        self.taken: list[dict] = []

    def clock(self) -> float:
        return time.perf_counter() - self.t0 - self.paused

    def take(self, tr, label: str) -> None:
        seconds = self.clock()
        p0 = time.perf_counter()
        tr.save()
        dst = self.out / "marks" / label
        if dst.exists():
            shutil.rmtree(dst)
        shutil.copytree(tr.run_dir, dst)
        self.taken.append({"mark": label, "seconds": round(seconds, 2), "step": tr.step, "gaussians": tr.scene.num_gaussians,
                           "path": dst})
        self.paused += time.perf_counter() - p0

    def __call__(self, tr, terms: dict) -> None:
        while self.marks and self.clock() >= self.marks[0]:
            self.take(tr, f"{self.marks.pop(0):g}s")
        if not self.marks:
            tr.stop_requested = True


def evaluate_snapshot(path: Path) -> dict:
    from endogs.eval.evaluate import EvalOptions
    from endogs.eval.pipeline import evaluate_run

    res = evaluate_run(path, EvalOptions(images=False, video=False, plots=False, fps_min_time=0.0, fps_warmup=0))
    m = res.summary
    return {"psnr_masked": m["model"]["psnr"], "ssim_masked": m["model"]["ssim_masked"], "psnr_full": m["model"]["psnr_full"],
            "best_baseline_psnr": max(v["psnr"] for k, v in m.items() if k != "model")}


def plot(out: Path, rows: list[dict], compare: list[Path]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    curves = [rows] + [[json.loads(x) for x in p.read_text().splitlines() if x.strip()] for p in compare]
    for curve in curves:
        ax.plot([r["seconds"] for r in curve], [r["psnr_masked"] for r in curve], "o-", label=curve[0]["label"])
    ax.set_xlabel("wall-clock seconds of training (init included)")
    ax.set_ylabel("masked test PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    png = out / "curve.png"
    tmp = out / ".curve.png.tmp"
    fig.savefig(tmp, format="png")
    plt.close(fig)
    tmp.replace(png)
    return png


def main(argv: Optional[list[str]] = None) -> int:
    argv, extra = split_flags(argv)
    ap = scene_parser(__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--marks", default="60,120,240", help="comma-separated wall-clock seconds")
    ap.add_argument("--label", default=None, help="name of this curve in the plot (default: the train flags)")
    ap.add_argument("--compare", type=Path, nargs="*", default=[], help="curve.jsonl files of earlier runs to draw beside")
    a = ap.parse_args(argv)
    try:
        marks = parse_marks(a.marks)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 2
    if no_scene("bench_train", a.scene):
        return 2
    for p in a.compare:
        if not p.is_file():
            print(f"bench_train: {p}: no such curve file; pass the curve.jsonl of an earlier bench_train run", file=sys.stderr)
            return 2
    from endogs.train.cli import parse
    from endogs.train.trainer import Trainer

    label = a.label or (" ".join(extra) if extra else "defaults")
    run_dir = a.out / "run"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    a.out.mkdir(parents=True, exist_ok=True)
    try:
        cfg = parse([str(a.scene), *extra]).config
        t0 = time.perf_counter()
        snaps = Snapshots(a.out, marks, t0)
        tr = Trainer.create(cfg, a.scene, run_dir)
        print(json.dumps({"label": label, "imports_s": round(t0 - _T_IMPORT, 2), "init_s": round(snaps.clock(), 2),
                          "iterations": tr.cfg.iterations, "train_frames": len(tr.frames)}), flush=True)
        tr.train(progress=False, on_step=snaps)
        if snaps.marks:  # reached its iterations before the last mark
            snaps.take(tr, "end")
        rows = []
        for s in snaps.taken:
            row = {"label": label, "mark_s": s["mark"], "seconds": s["seconds"], "step": s["step"], **evaluate_snapshot(s["path"]),
                   "gaussians": s["gaussians"]}
            rows.append(row)
            print(json.dumps(row), flush=True)
    except EndogsError as e:
        print(f"bench_train: {e}", file=sys.stderr)
        return 2
    curve = a.out / "curve.jsonl"
    tmp = a.out / ".curve.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tmp.replace(curve)
    print(json.dumps({"curve": str(curve), "plot": str(plot(a.out, rows, a.compare))}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
