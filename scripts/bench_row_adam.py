"""How far one frame's row of a per-frame table (pose corrections, exposures) moves per visit when
a step sees one frame: dense Adam against SparseAdam (what endogs.train.optim uses), for gradients
of a consistent sign and of a random sign (noise, as near convergence). Prints one JSON line per case.

    python scripts/bench_row_adam.py [--frames 35 --steps 1500 --lr 5e-4]
"""

from __future__ import annotations

import argparse
import json

import torch


def per_visit(kind: str, noisy: bool, frames: int, steps: int, lr: float, seed: int = 0) -> float:
    """Mean |change| of row 0 from one of its visits to the next, in units of ``lr``."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.nn.Parameter(torch.zeros(frames, 6))
    opt = torch.optim.Adam([p], lr=lr, eps=1e-15) if kind == "adam" else torch.optim.SparseAdam([p], lr=lr, eps=1e-15)
    sign = torch.randn(frames, 6, generator=gen).sign()
    at_visit = []
    for s in range(steps):
        r = s % frames
        g = torch.zeros(frames, 6)
        d = torch.randn(6, generator=gen).sign() if noisy else sign[r]
        g[r] = d * (0.5 + torch.rand(6, generator=gen))
        p.grad = g if kind == "adam" else g.to_sparse(1)
        if r == 0:
            at_visit.append(p.detach()[0].clone())
        opt.step()
    visits = torch.stack(at_visit[20:])  # past the first visits' warm-up
    return float(visits.diff(dim=0).abs().mean() / lr)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=35)
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--lr", type=float, default=5e-4)
    a = ap.parse_args()
    for kind in ("adam", "sparse_adam"):
        for noisy in (False, True):
            print(json.dumps({"optimizer": kind, "gradient": "random sign" if noisy else "consistent sign",
                              "move_per_visit_in_lr": round(per_visit(kind, noisy, a.frames, a.steps, a.lr), 2)}))


if __name__ == "__main__":
    main()
