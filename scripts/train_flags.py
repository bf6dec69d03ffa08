"""What the training benchmarks share: ``SCRIPT SCENE [own options] [-- endogs train flags]``.

Used by bench_doubling.py, bench_train.py and profile_step.py.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional


def split_flags(argv: Optional[list[str]]) -> tuple[list[str], list[str]]:
    """(the script's own arguments, the ``endogs train`` flags after ``--``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        return argv, []
    cut = argv.index("--")
    return argv[:cut], argv[cut + 1:]


def scene_parser(doc: str) -> argparse.ArgumentParser:
    """A parser whose first argument is the scene folder (its description: the doc's first line)."""
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("scene", type=Path)
    return ap


def no_scene(prog: str, scene: Path) -> bool:
    """Print the one-line error and return True when ``scene`` is not a folder."""
    if scene.is_dir():
        return False
    print(f"{prog}: {scene}: no such scene folder; make one with `endogs synthetic` or `endogs prepare`", file=sys.stderr)
    return True
