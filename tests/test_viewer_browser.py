"""``endogs view`` in headless Chromium (Debian's /usr/bin/chromium driven by Playwright).

Starts the viewer on a tiny trained run (a moving endoscope), waits for the first frame, checks
that it shows tissue, moves the time slider (with "Follow endoscope" on, so the view and the input
frame change), then switches to depth mode. Screenshots are written to the test's tmp folder (and
copied to $ENDOGS_VIEWER_SHOTS when that is set).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from test_viewer import free_port, make_tiny_run, start_view

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


def _missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not found (apt-get install -y chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright; no browser download needed)"
    try:
        import PIL  # noqa: F401
    except ImportError:
        return "pillow is not installed"
    return None


pytestmark = [pytest.mark.browser, pytest.mark.skipif(_missing() is not None, reason=str(_missing()))]


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.getbasetemp() / "viewer_tiny_run")


@pytest.fixture
def server(tiny_run):
    proc, url = start_view(tiny_run, "--port", free_port(), "--device", "cpu")
    try:
        yield proc, url
    finally:
        proc.kill()
        proc.wait(10)


class Page:
    """Screenshots of the viewport region of the viewer page, with bounded waits."""

    def __init__(self, page, shots: Path):
        self.page = page
        self.shots = shots
        self.box = None

    def grab(self, name: str | None = None) -> np.ndarray:
        from PIL import Image

        png = self.page.screenshot()
        if name:
            (self.shots / f"{name}.png").write_bytes(png)
        img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), np.float32)
        if self.box is None:
            b = self.page.locator("canvas").first.bounding_box()
            # the canvas spans the page and the control panel floats over its right ~30 %: keep to
            # the viewport left of the panel, below the "software WebGL" notice
            self.box = (int(b["y"] + 0.25 * b["height"]), int(b["y"] + 0.9 * b["height"]),
                        int(b["x"] + 0.1 * b["width"]), int(b["x"] + 0.65 * b["width"]))
        y0, y1, x0, x1 = self.box
        return img[y0:y1, x0:x1]

    def thumb(self) -> np.ndarray:
        from PIL import Image

        img = self.page.locator("img[src^='blob:']").last
        return np.asarray(Image.open(io.BytesIO(img.screenshot())).convert("RGB"), np.float32)

    def stats(self) -> str:
        loc = self.page.get_by_text(re.compile(r"\d+x\d+ px, \d+ ms"))
        return loc.first.inner_text() if loc.count() else ""

    def wait(self, pred, timeout: float, what: str):
        end = time.monotonic() + timeout
        while True:
            value = pred()
            if value is not None and value is not False:
                return value
            if time.monotonic() > end:
                raise AssertionError(f"timed out after {timeout} s waiting for {what}; stats: {self.stats()!r}")
            time.sleep(0.4)

    def settled(self, ref: np.ndarray | None, timeout: float, what: str, min_change: float = 2.0) -> np.ndarray:
        """The viewport once it shows a still (640 px) render that has stopped changing and, if
        ``ref`` is given, differs from ``ref``.

        A passing difference (a dropdown fading out, a low-resolution preview) is not enough: the
        picture must differ from ``ref`` once it is still, or the wait goes on until the timeout.
        """

        def still():
            m = re.search(r"(\d+)x(\d+) px", self.stats())
            return m is not None and max(int(m.group(1)), int(m.group(2))) == 640

        prev = self.grab()

        def stable():
            nonlocal prev
            time.sleep(0.8)
            cur = self.grab()
            same = np.abs(cur - prev).mean() < 0.5
            prev = cur
            changed = ref is None or np.abs(cur - ref).mean() > min_change
            return cur if same and changed and still() else None

        return self.wait(stable, timeout, f"{what}: a still full-resolution picture"
                         + ("" if ref is None else " that differs from the one before"))


@pytest.mark.timeout(720)
def test_view_in_chromium(server, tmp_path):
    from playwright.sync_api import sync_playwright

    proc, url = server
    shots = tmp_path / "shots"
    shots.mkdir()
    t0 = time.monotonic()
    with sync_playwright() as pw:
        ctx = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
            chromium_sandbox=False, viewport={"width": 1100, "height": 800},
        )
        try:
            ctx.set_default_timeout(30_000)
            page = ctx.new_page()
            page.goto(url, wait_until="domcontentloaded")
            v = Page(page, shots)

            # 1. the first frame shows the tissue
            v.wait(lambda: v.stats() or None, 150, "the first rendered frame")
            first = v.settled(None, 60, "first frame")
            v.grab("1_first_frame")
            mean, std = first.mean((0, 1)), first.std()
            assert std > 4, "the viewport is blank"
            assert mean[0] > 80 and mean[0] > mean[1] + 25 and mean[0] > mean[2] + 25, f"not tissue-coloured: {mean}"
            thumb0 = v.thumb()

            # 2. the time slider: with the camera following the endoscope, t = 1 is another view
            page.get_by_label("Follow endoscope").check()
            slider = page.get_by_role("slider").first
            slider.focus()
            slider.press("End")
            v.wait(lambda: slider.get_attribute("aria-valuenow") == "1", 10, "the time slider to reach 1")
            moved = v.settled(first, 60, "time 1")
            v.grab("2_time_1")
            assert np.abs(moved - first).mean() > 3
            assert page.get_by_text(re.compile(r"^Frame 10 / 10")).count() == 1  # the caption follows
            assert np.abs(v.thumb() - thumb0).mean() > 2  # the input frame follows the time
            m = moved.mean((0, 1))
            assert m[0] > m[1] + 25, f"not tissue-coloured at t = 1: {m}"

            # 3. depth mode: a colormap instead of the tissue colours
            page.get_by_role("combobox", name="Mode").click()
            page.get_by_role("option", name="Depth").click()
            v.wait(lambda: re.search(r", Depth($|;)", v.stats()), 60, "a render in depth mode")
            depth = v.settled(moved, 60, "depth mode")
            v.grab("3_depth")
            assert np.abs(depth - moved).mean() > 15
            greenish = (depth[..., 1] > depth[..., 0]).mean() + (depth[..., 2] > depth[..., 0]).mean()
            assert greenish > 0.3, "depth mode still looks like RGB"
            assert "render errors" not in v.stats()
            assert proc.poll() is None, "the viewer process died"
        finally:
            ctx.close()
            out = os.environ.get("ENDOGS_VIEWER_SHOTS")
            if out:
                shutil.copytree(shots, out, dirs_exist_ok=True)
    assert time.monotonic() - t0 < 240


LIVE = """
import sys, time
from endogs.train.trainer import Trainer
from endogs.viewer.live import train_with_viewer
_step = Trainer.train_step
def paced_step(self):  # at least 0.1 s a step, so a fast machine cannot finish before the browser pauses it
    t0 = time.perf_counter(); out = _step(self); time.sleep(max(0.0, 0.1 - (time.perf_counter() - t0))); return out
Trainer.train_step = paced_step
tr = Trainer.resume(sys.argv[1])
tr.cfg.iterations = tr.step + int(sys.argv[3])
train_with_viewer(tr, port=int(sys.argv[2]), progress=False, keep_serving=False)
print("finished at step", tr.step, flush=True)
"""


@pytest.mark.timeout(720)
def test_live_training_pause_and_disconnect(tiny_run, tmp_path):
    import subprocess
    import sys
    import threading

    from playwright.sync_api import sync_playwright

    from endogs.run import load_run

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    start = load_run(run, "cpu").step
    extra = 200
    proc = subprocess.Popen([sys.executable, "-c", LIVE, str(run), str(free_port()), str(extra)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    err: list[str] = []
    got_url = threading.Event()

    def reader():
        for line in proc.stderr:
            err.append(line)
            if "http://" in line:
                got_url.set()

    threading.Thread(target=reader, daemon=True).start()
    try:
        assert got_url.wait(90), "".join(err)
        url = re.search(r"http://[\d.:]+", "".join(err)).group(0)
        with sync_playwright() as pw:
            ctx = pw.chromium.launch_persistent_context(
                str(tmp_path / "chromium-profile"), executable_path=CHROMIUM, headless=True, args=FLAGS,
                chromium_sandbox=False, viewport={"width": 1100, "height": 800},
            )
            try:
                ctx.set_default_timeout(30_000)
                page = ctx.new_page()
                page.goto(url, wait_until="domcontentloaded")
                v = Page(page, tmp_path)
                v.wait(lambda: v.stats() or None, 150, "the first rendered frame")
                step_box = page.get_by_label("Step")

                def step() -> int:
                    return int(float(step_box.input_value() or 0))

                s0 = v.wait(lambda: step() or None, 150, "the step counter")
                v.wait(lambda: step() > s0, 180, "training to advance while the page is open")
                v.grab("live_training")
                page.get_by_role("button", name="Pause").click()
                time.sleep(2.0)
                s1 = step()
                time.sleep(2.0)
                assert step() == s1 < start + extra, "training went on while paused"
                assert proc.poll() is None
            finally:
                ctx.close()  # the only browser leaves while training is paused
        out, _ = proc.communicate(timeout=300)  # training resumes by itself and finishes
        assert proc.returncode == 0, "".join(err)
        assert f"finished at step {start + extra}" in out
        assert "training resumes" in "".join(err)
        assert load_run(run, "cpu").step == start + extra
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
