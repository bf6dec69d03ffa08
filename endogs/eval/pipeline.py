"""``endogs eval`` for a run folder: open the run, evaluate (:func:`endogs.eval.evaluate.evaluate`),
write the report (:func:`endogs.eval.report.write_report`).

>>> result = evaluate_run("outputs/runs/pulling", EvalOptions(split="test"))
>>> result.summary["model"]["psnr"], result.out_dir
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional

from endogs.eval import evaluate as E
from endogs.eval import report as R
from endogs.eval.result import EvalResult
from endogs.run import RunFolder


def evaluate_run(run_dir: Path, options: Optional[E.EvalOptions] = None,
                 log: Callable[[str], None] = lambda s: None) -> EvalResult:
    """Evaluate a run and write its report folder (``RUN/eval_<split>`` unless ``options.output``)."""
    opt = options or E.EvalOptions()
    E.check_options(opt)
    folder = RunFolder(run_dir)
    run = folder.open(opt.device, data=opt.data, need_data=True)
    result = E.evaluate(run, run.dataset, opt, log)
    out = Path(opt.output) if opt.output is not None else folder.eval_dir(opt.split, native=opt.resolution == "native")
    out.mkdir(parents=True, exist_ok=True)
    src = E.FrameSource(run.dataset, E.eval_downscale(run.config, opt))
    R.write_report(out, result.report, result.per_frame, run.log(),
                   panels=E.frame_panels(result, src) if opt.images else None,
                   sequence=E.sequence_frames(result, src, run.scene, run.config.background) if opt.video else None,
                   plots=opt.plots, video_fps=opt.video_fps, log=log)
    result.out_dir = out
    return result
