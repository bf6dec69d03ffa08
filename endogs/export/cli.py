"""``endogs export`` (a typed function; the lead registers it in endogs/cli.py)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import tyro
from typing_extensions import Annotated

from endogs.export.exporter import ExportOptions

Positional = tyro.conf.Positional


def export(
    run: Positional[Path],
    options: Annotated[ExportOptions, tyro.conf.arg(name="")] = ExportOptions(),
    quiet: bool = False,
) -> None:
    """Export a trained run: Gaussian PLYs, point clouds, meshes, depth maps or videos per time.

    Writes OUT/ply/, points/, mesh/, depth/, video/ and OUT/index.json (what was written: paths,
    times, counts, units). Lengths are in the dataset's depth unit. Every field of ExportOptions is a flag.

    Args:
        run: the run folder (with run.yaml and checkpoint.pt).
        quiet: no progress; print only the index path.
    """
    from endogs.export.exporter import INDEX_FILE, export_run
    from endogs.run import RunFolder

    opt = dataclasses.replace(options, progress=options.progress and not quiet)
    index = export_run(run, opt)
    out_dir = Path(opt.out) if opt.out is not None else RunFolder(run).export_dir
    if not quiet:
        for kind in opt.what:
            entry = index["exports"][kind]
            n = sum(1 for f in entry["files"] if f.get("path") or f.get("png"))
            print(f"{kind}: {n} file(s) in {out_dir / kind}", file=sys.stderr)
    print(f"index: {out_dir / INDEX_FILE}")
