"""One progress helper for every long command (train, prepare, eval, export, batch).

On a terminal: a tqdm bar whose postfix shows the latest numbers (loss, PSNR, ...) from the first
step. Elsewhere (logs, notebooks, CI): one line every ~10 % of the work, with the numbers, the
elapsed time and an ETA, e.g. ``train  30% 18/60  loss 0.0516  psnr 27.32  elapsed 0:05  ETA 0:12``.
"""

from __future__ import annotations

import sys
import time
from typing import IO, Any, Callable, Optional


def _clock(seconds: float) -> str:
    s = int(round(max(0.0, seconds)))
    h, rem = divmod(s, 3600)
    return f"{h}:{rem // 60:02d}:{rem % 60:02d}" if h else f"{rem // 60}:{rem % 60:02d}"


def _num(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"
    return str(v)


class Progress:
    """Progress over ``total`` units of work.

    Args:
        total: units of work (steps, frames, pairs).
        desc: what is progressing ("train", "eval").
        enabled: False = silent.
        initial: units already done (a resumed run).
        stream: where the bar or lines go (default stderr); a bar only when it is a terminal.
        write: send the lines to this function instead (never a bar), e.g. a command's log.
        fraction: the interval of the lines, as a fraction of ``total``.
    """

    def __init__(self, total: int, desc: str, enabled: bool = True, initial: int = 0, stream: Optional[IO] = None,
                 write: Optional[Callable[[str], None]] = None, fraction: float = 0.1, unit: str = "it"):
        self.total, self.desc, self.enabled = max(0, int(total)), desc, enabled
        self.n = self.start = int(initial)
        self.stats: dict[str, Any] = {}
        self.stream = stream if stream is not None else sys.stderr
        self.step = max(1, round(self.total * fraction))
        self.next = (self.n // self.step + 1) * self.step
        self.t0 = time.perf_counter()
        self.bar = None
        if enabled and write is None and getattr(self.stream, "isatty", lambda: False)():
            from tqdm import tqdm

            self.bar = tqdm(total=self.total, initial=self.n, desc=desc, file=self.stream, unit=unit,
                            dynamic_ncols=True, mininterval=0.5, leave=False)
        self._write = write or (lambda s: print(s, file=self.stream, flush=True))

    def update(self, n: int = 1, **stats: Any) -> None:
        """``n`` more units done; ``stats`` (e.g. loss=..., psnr=...) replace the shown numbers."""
        self.n += n
        self.stats.update(stats)
        if not self.enabled:
            return
        if self.bar is not None:
            if self.stats:
                self.bar.set_postfix({k: _num(v) for k, v in self.stats.items()}, refresh=False)
            self.bar.update(n)
            return
        if self.n >= self.next or (self.n >= self.total and self.next - self.step < self.total):
            self._write(self.text())
            self.next = (self.n // self.step + 1) * self.step

    def text(self) -> str:
        """The progress line for the current state."""
        elapsed = time.perf_counter() - self.t0
        done = self.n - self.start
        pct = 100 * self.n // self.total if self.total else 100
        parts = [f"{self.desc} {pct:3d}% {self.n}/{self.total}"]
        parts += [f"{k} {_num(v)}" for k, v in self.stats.items()]
        parts.append(f"elapsed {_clock(elapsed)}")
        if 0 < done and self.n < self.total:
            parts.append(f"ETA {_clock(elapsed / done * (self.total - self.n))}")
        return "  ".join(parts)

    def line(self, text: str) -> None:
        """A message that does not break the bar."""
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.write(text, file=self.stream)
        else:
            self._write(text)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
