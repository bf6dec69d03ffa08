"""Does longer training ever lower held-out quality? Train a scene for N and for 2N iterations with the
same flags (the densification stop scaled with the schedule, at the same fraction), evaluate both on the
held-out test frames, print one JSON line per run and a last line with the difference.

    .venv/bin/python scripts/bench_doubling.py SCENE --out DIR --iterations 1500 [-- extra train flags]

e.g. the real-video check (SCARED frames 1-40 at a quarter of the pixels):

    .venv/bin/python scripts/bench_doubling.py scenes/scared_1_40 --out dbl --iterations 1500 --refine-stop 0.8 \\
        -- --preset fast --data.downscale 4 --strategy.max-gaussians 15000

Exits 1 when the longer run's masked test PSNR is lower by more than ``--tolerance`` dB (default 0).
The test frames are used only by the evaluation after each training has ended.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Optional

from endogs.run import RunFolder
sys.path.insert(0, str(Path(__file__).resolve().parent))  # run as a file or imported as scripts.NAME
from train_flags import no_scene, scene_parser, split_flags  # noqa: E402


def cli(args: list[str]) -> int:
    from endogs.cli import main
    from endogs.eval.cli import eval_run

    return main(args, commands={"eval": eval_run} if args[0] == "eval" else None)


def train_and_eval(scene: Path, run: Path, iterations: int, refine_stop: Optional[float], extra: list[str]) -> dict:
    args = ["train", str(scene), "--output", str(run), "--iterations", str(iterations), "--quiet", *extra]
    if refine_stop is not None:
        args += ["--strategy.refine-stop-iter", str(int(round(refine_stop * iterations)))]
    t0 = time.perf_counter()
    if cli(args) != 0:
        raise SystemExit(f"bench_doubling: training failed: endogs {' '.join(args)}")
    train_s = time.perf_counter() - t0
    if cli(["eval", str(run), "--no-video", "--no-plots", "--fps-min-time", "0", "--quiet"]) != 0:
        raise SystemExit(f"bench_doubling: evaluation of {run} failed")
    m = json.loads(RunFolder(run).metrics_file("test").read_text())["metrics"]
    model = m["model"]  # "psnr" is the masked PSNR, "psnr_full" over every pixel
    return {"iterations": iterations, "train_s": round(train_s, 1), "psnr_masked": model["psnr"],
            "ssim_masked": model["ssim_masked"], "psnr_full": model["psnr_full"],
            "best_baseline_psnr": max(v["psnr"] for k, v in m.items() if k != "model")}


def main(argv: Optional[list[str]] = None) -> int:
    argv, extra = split_flags(argv)
    ap = scene_parser(__doc__)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--iterations", type=int, default=1500, help="N: the runs train N and 2N iterations")
    ap.add_argument("--refine-stop", type=float, default=None,
                    help="densification stops at this fraction of each run's iterations (default: the preset's)")
    ap.add_argument("--tolerance", type=float, default=0.0, help="dB the longer run may lose before exit 1")
    a = ap.parse_args(argv)
    if no_scene("bench_doubling", a.scene):
        return 2
    rows = []
    for n in (a.iterations, 2 * a.iterations):
        row = train_and_eval(a.scene, a.out / f"it{n}", n, a.refine_stop, extra)
        rows.append(row)
        print(json.dumps(row), flush=True)
    gain = rows[1]["psnr_masked"] - rows[0]["psnr_masked"]
    verdict = {"psnr_masked_gain_db": round(gain, 3), "ssim_masked_gain": round(rows[1]["ssim_masked"] - rows[0]["ssim_masked"], 4),
               "longer_is_not_worse": gain >= -a.tolerance}
    print(json.dumps(verdict), flush=True)
    return 0 if verdict["longer_is_not_worse"] else 1


if __name__ == "__main__":
    sys.exit(main())
