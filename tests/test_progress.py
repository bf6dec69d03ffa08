"""endogs.utils.progress: lines every ~10 % off a terminal, a bar with the numbers on one."""

from __future__ import annotations

import io
import re

from endogs.utils.progress import Progress


def test_lines_every_tenth_with_numbers_and_eta():
    lines = []
    p = Progress(60, "train", write=lines.append)
    for k in range(60):
        p.update(1, loss=0.5 - k / 1000, psnr=20.0 + k / 10)
    p.close()
    assert len(lines) == 10
    assert lines[0].startswith("train  10% 6/60  loss 0.4950  psnr 20.50  elapsed ")
    assert "ETA" in lines[0] and "ETA" not in lines[-1] and lines[-1].startswith("train 100% 60/60")


def test_uneven_totals_resume_and_silence():
    lines = []
    p = Progress(7, "eval", write=lines.append, initial=2)  # resumed at 2 of 7
    for _ in range(5):
        p.update(1)
    assert [re.match(r"eval +(\d+)%", s).group(1) for s in lines] == ["42", "57", "71", "85", "100"]
    quiet = []
    q = Progress(10, "x", enabled=False, write=quiet.append)
    q.update(10)
    q.line("hello")
    assert quiet == []


def test_not_a_terminal_prints_lines_on_the_stream():
    buf = io.StringIO()  # isatty() is False
    p = Progress(4, "export ply", stream=buf)
    p.line("a message")
    for _ in range(4):
        p.update(1)
    out = buf.getvalue().splitlines()
    assert p.bar is None and out[0] == "a message" and len(out) == 5 and out[-1].startswith("export ply 100% 4/4")


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_terminal_bar_shows_loss_and_psnr_from_the_first_step():
    buf = Tty()
    p = Progress(100, "train", stream=buf)
    p.update(1, loss=0.25, psnr=18.5)
    p.bar.refresh()
    assert p.bar is not None and "loss=0.2500" in buf.getvalue() and "psnr=18.50" in buf.getvalue()
    p.close()
