"""``endogs batch SPEC.yaml``: many scenes x configs as Ray tasks, one comparison table (registered in endogs/cli.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import tyro

Positional = tyro.conf.Positional


def batch(
    spec: Positional[Path],
    address: Optional[str] = None,
    out: Optional[Path] = None,
    quiet: bool = False,
) -> int:
    """Prepare, train and evaluate every input x config of a SPEC as Ray tasks, retrying failures; one table.

    Each pair runs `endogs prepare` (videos), `endogs train` and `endogs eval` in OUT/<input>__<config>;
    a pair whose worker dies or fails is retried (max_retries in the SPEC) from its last checkpoint; pairs
    an earlier run finished are skipped. Ends with OUT/table.md and table.csv (the format of
    `endogs benchmark`) and OUT/batch.json. Exit status 0 when every pair finished, 1 when some failed
    (listed in the table), 2 for a bad SPEC. Needs Ray: pip install 'endogs[cluster]'.

    Args:
        spec: the batch YAML (see README, "Many scenes: endogs batch").
        address: a running Ray cluster: auto (the one started on this machine with `ray start`),
            HOST:PORT, or ray://HOST:PORT (Ray client). Default: a private local Ray instance on this
            machine's cores, bound to 127.0.0.1, shut down at the end.
        out: the output folder (default: the SPEC's `output`, else outputs/batch/<name>). On a multi-node
            cluster it must be shared storage (NFS, ...) mounted at the same path on every node.
        quiet: no progress lines, only the table.
    """
    from endogs.batch.runner import run_batch

    res = run_batch(spec, address=address, out=out, quiet=quiet)
    print(res.table_text)
    for st in res.failed:
        print(f"failed: {st.pair.input.name} / {st.pair.config_name} (input {st.pair.input.source}): {st.error}")
    print(f"report: {res.out_dir / 'table.md'}")
    return 1 if res.failed else 0


COMMANDS = {"batch": batch}

__all__ = ["batch", "COMMANDS"]
