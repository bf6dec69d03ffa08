"""The viewer without a browser: render modes, snapshot caching, resolution caps, error images,
the CLI (URL, busy port) and live training with the viewer lock."""

from __future__ import annotations

import logging
import math
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nerfview
import nerfview._renderer
import numpy as np
import pytest
import torch

from endogs.camera import Camera
from endogs.render import render
from endogs.snapshot import Snapshot
from endogs.viewer.core import (
    CPU_MAX_RES_MOVING,
    CPU_MAX_RES_STILL,
    FULL_RES,
    RENDER_MODES,
    InterruptRenderException,
    RenderSettings,
    StaticSource,
    ViewRenderer,
    capped_size,
    nearest_index,
)

REPO = Path(__file__).resolve().parents[1]
# nerfview 0.1.3 calls viser's deprecated configure_theme(control_layout=...)
pytestmark = pytest.mark.filterwarnings("ignore:`control_layout` is deprecated:DeprecationWarning")


# ------------------------------------------------------------------------------------ helpers
CamState = nerfview.CameraState  # vertical fov, OpenCV c2w


@dataclass
class Tab:
    viewer_width: int
    viewer_height: int


def cam_state(x: float = 0.0, fov_deg: float = 60.0, aspect: float = 4 / 3) -> CamState:
    c2w = np.eye(4)
    c2w[0, 3] = x
    return CamState(math.radians(fov_deg), aspect, c2w)


class FakeScene:
    """A 20x20 sheet of reddish Gaussians at z = 5, x and y in [-1.5, 1.5]; with ``deform`` its left
    half moves by -t along x (away from the static right half)."""

    def __init__(self, n_side: int = 20):
        g = torch.linspace(-1.5, 1.5, n_side)
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        self.means = torch.stack([xx.reshape(-1), yy.reshape(-1), torch.full((n_side * n_side,), 5.0)], -1)
        n = self.means.shape[0]
        self.quats = torch.tensor([[1.0, 0, 0, 0]]).repeat(n, 1)
        self.scales = torch.full((n, 3), 0.12)
        self.opac = torch.full((n,), 0.9)
        self.colors = torch.tensor([[0.8, 0.3, 0.3]]).repeat(n, 1)
        self.moving = self.means[:, 0] < 0
        self.calls: list[tuple[float, bool]] = []
        self.fail: BaseException | None = None

    def at(self, t, deform=True):
        self.calls.append((float(t), bool(deform)))
        if self.fail is not None:
            raise self.fail
        means = self.means.clone()
        if deform:
            means[self.moving, 0] -= float(t)
        return Snapshot(means=means, quats=self.quats, scales=self.scales, opacities=self.opac, colors=self.colors, time=float(t))


class Versioned:
    def __init__(self, scene):
        self.scene = scene
        self.version = 0


def renderer(scene=None, moving=False, **settings) -> ViewRenderer:
    st = RenderSettings(**settings)
    return ViewRenderer(StaticSource(scene or FakeScene()), st, is_moving=lambda: moving)


# ------------------------------------------------------------------------- render function
def test_modes_give_distinct_valid_images():
    r = renderer(time=1.0, max_res_still=160)
    imgs = {}
    for mode in RENDER_MODES:
        r.settings.mode = mode
        img = r(cam_state(), Tab(160, 120))
        assert img.dtype == np.uint8 and img.shape == (120, 160, 3), mode
        assert r.stats.errors == 0, r.stats.last_error
        imgs[mode] = img.astype(np.float32)
    c = (slice(50, 70), slice(90, 105))  # covered by the static right half of the sheet
    rgb = imgs["RGB"][c].mean((0, 1))
    assert rgb[0] > 120 and rgb[0] > rgb[1] + 50, rgb  # the reddish tissue
    assert imgs["RGB"][:3, :3].max() < 5  # black background in a corner the sheet does not reach
    alpha = imgs["Alpha"]
    assert alpha[c].mean() > 200 and np.allclose(alpha[..., 0], alpha[..., 1])  # grey, opaque centre
    depth = imgs["Depth"][c].mean((0, 1))
    assert abs(depth - rgb).max() > 30  # a colormap, not the tissue colour
    for a in RENDER_MODES:
        for b in RENDER_MODES:
            if a < b:
                assert np.abs(imgs[a] - imgs[b]).mean() > 1.0, (a, b)


def test_rgb_mode_is_the_shared_render_path():
    scene = FakeScene()
    r = renderer(scene, time=0.25, background=(0.0, 0.0, 1.0), max_res_still=96)
    img = r(cam_state(0.3), Tab(96, 72))
    cam = r.camera_from_state(cam_state(0.3), 96, 72)
    ref = render(scene.at(0.25), cam, background=(0.0, 0.0, 1.0)).rgb[0].clamp(0, 1).numpy()
    np.testing.assert_array_equal(img, (ref * 255 + 0.5).astype(np.uint8))
    assert img[0, 0, 2] == 255  # background colour honoured


def test_time_and_canonical_and_deformation_modes():
    scene = FakeScene()
    r = renderer(scene, max_res_still=128)
    tab = Tab(128, 96)
    r.settings.time = 0.0
    rgb0 = r(cam_state(), tab)
    r.settings.time = 1.0
    rgb1 = r(cam_state(), tab)
    assert np.abs(rgb1.astype(int) - rgb0).mean() > 1.0  # the deformation shows
    r.settings.mode = "Canonical"
    canon1 = r(cam_state(), tab)
    np.testing.assert_array_equal(canon1, rgb0)  # deformation off == t=0 of this scene
    r.settings.mode = "Deformation"
    r.settings.colormap = "gray"
    d1 = r(cam_state(), tab).astype(np.float32)
    # moved Gaussians (left half, displaced by 1: columns ~22-46) bright, static ones (~65-89) dark
    assert d1[40:56, 28:40].mean() > 150 and d1[40:56, 70:84].mean() < 40
    assert r.stats.deform_scale == pytest.approx(1.0, rel=1e-3)  # 99th percentile over the sequence
    r.settings.deform_max = 4.0
    d2 = r(cam_state(), tab).astype(np.float32)
    assert d2[40:56, 28:40].mean() < d1[40:56, 28:40].mean() - 50  # manual scale: 1 of 4 is darker


def test_depth_range_auto_and_manual():
    r = renderer(mode="Depth", colormap="gray", max_res_still=64)
    tab = Tab(64, 48)
    auto = r(cam_state(), tab)
    r.settings.depth_auto = False
    r.settings.depth_near, r.settings.depth_far = 0.0, 10.0  # z = 5 -> mid grey
    mid = r(cam_state(), tab)[24, 32].astype(int)
    assert abs(mid[0] - 128) < 25, mid
    r.settings.depth_near, r.settings.depth_far = 5.0, 6.0  # z = 5 is near -> the colormap's end: white
    assert r(cam_state(), tab)[24, 32, 0] > 200
    r.settings.depth_near, r.settings.depth_far = 4.0, 5.0  # z = 5 is far -> the colormap's start: black
    assert r(cam_state(), tab)[24, 32, 0] < 55
    assert auto.shape == mid.shape[:0] + (48, 64, 3)


def test_snapshot_cached_per_time_not_per_camera():
    scene = FakeScene()
    r = renderer(scene, max_res_still=48)
    tab = Tab(48, 36)
    for x in np.linspace(-0.5, 0.5, 5):  # camera moves: one deformation evaluation
        r(cam_state(x), tab)
    assert scene.calls == [(0.0, True)]
    r.settings.time = 0.5
    r(cam_state(), tab)
    r.settings.time = 0.0
    r(cam_state(0.2), tab)  # back to t=0: still cached
    assert scene.calls == [(0.0, True), (0.5, True)]
    r.settings.mode = "Canonical"
    r(cam_state(), tab)
    r(cam_state(0.1), tab)
    assert scene.calls[-1] == (0.0, False) and len(scene.calls) == 3
    assert r.cache.hits >= 6


def test_new_model_version_invalidates_cache():
    scene = FakeScene()
    src = Versioned(scene)
    r = ViewRenderer(src, RenderSettings(max_res_still=32))
    r(cam_state(), Tab(32, 24))
    r(cam_state(0.1), Tab(32, 24))
    assert len(scene.calls) == 1
    src.version = 7  # a training step happened
    r(cam_state(0.1), Tab(32, 24))
    assert len(scene.calls) == 2 and len(r.cache) == 1  # the stale entry was dropped


def test_cache_is_bounded_in_bytes():
    from endogs.viewer.core import snapshot_nbytes

    scene = FakeScene()
    per = snapshot_nbytes(scene.at(0.0))
    r = ViewRenderer(StaticSource(scene), RenderSettings(max_res_still=16), cache_bytes=3 * per + per // 2)
    for i in range(10):
        r.snapshot(i / 10)
    assert len(r.cache) == 3
    r.snapshot(0.9)
    assert len(scene.calls) == 11  # 0.9 was the newest entry: a hit


def test_resolution_capping():
    assert capped_size(2048, 1536, 640) == (640, 480)
    assert capped_size(100, 80, 640) == (100, 80)
    assert capped_size(1000, 2000, 320) == (160, 320)
    moving = {"v": False}
    r = ViewRenderer(StaticSource(FakeScene()), RenderSettings.for_device(torch.device("cpu")), is_moving=lambda: moving["v"])
    assert r(cam_state(aspect=4 / 3), Tab(2048, 1536)).shape == (480, 640, 3)  # still: 640 px cap
    assert (CPU_MAX_RES_STILL, CPU_MAX_RES_MOVING) == (640, 320)
    moving["v"] = True
    assert r(cam_state(aspect=4 / 3), Tab(2048, 1536)).shape == (240, 320, 3)  # moving: 320 px cap
    assert r(cam_state(aspect=4 / 3), Tab(200, 150)).shape == (150, 200, 3)  # never upscales a request
    cuda = RenderSettings.for_device(torch.device("cuda"))
    assert cuda.max_res_still == cuda.max_res_moving == FULL_RES  # full resolution on CUDA


def test_errors_become_an_image_and_a_log_line(caplog):
    scene = FakeScene()
    r = renderer(scene, max_res_still=80)
    scene.fail = RuntimeError("boom in the deformation field")
    with caplog.at_level(logging.ERROR, logger="endogs.viewer"):
        img = r(cam_state(), Tab(80, 60))
        img2 = r(cam_state(), Tab(80, 60))
    assert img.shape == (60, 80, 3) and img.dtype == np.uint8
    assert img[..., 0].mean() > img[..., 1].mean() + 40  # red error image (with white text)
    assert img2.shape == img.shape
    assert r.stats.errors == 2 and "boom" in r.stats.last_error
    lines = [rec for rec in caplog.records if "boom" in rec.getMessage()]
    assert len(lines) == 1  # the same error is not logged again within seconds
    # a TypeError must not leak (nerfview would switch to its legacy API)
    scene.fail = TypeError("bad argument")
    assert r(cam_state(), Tab(80, 60)).shape == (60, 80, 3)
    # a bad mode is an error image too
    scene.fail = None
    r.settings.mode = "Nope"
    assert r(cam_state(), Tab(80, 60))[..., 0].mean() > 50 and "unknown render mode" in r.stats.last_error
    # the renderer recovers
    r.settings.mode = "RGB"
    ok = r(cam_state(), Tab(80, 60))
    assert ok[30, 40, 0] > 100 and r.stats.errors == 4


def test_nerfview_interrupt_passes_through():
    scene = FakeScene()
    r = renderer(scene)
    scene.fail = InterruptRenderException()
    with pytest.raises(InterruptRenderException):
        r(cam_state(), Tab(32, 24))
    assert InterruptRenderException is nerfview._renderer.InterruptRenderException
    assert r.stats.errors == 0


def test_nearest_index():
    assert nearest_index([0.0, 0.5, 1.0], 0.7) == 1
    assert nearest_index([0.0, 0.5, 1.0], 0.8) == 2
    assert nearest_index([0.0, 1.0], 0.5) == 0


# --------------------------------------------------------------------------- a trained run
def make_tiny_run(base: Path) -> Path:
    """A 48x40, 10-frame synthetic SCARED-layout scene (moving endoscope) trained for 20 steps."""
    from endogs.config_io import merge
    from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene
    from endogs.train.config import TrainConfig
    from endogs.train.trainer import Trainer

    run = base / "run"
    if (run / "checkpoint.pt").exists():
        return run
    shutil.rmtree(base, ignore_errors=True)
    write_synthetic_scene(base / "scene", layout="scared", config=SyntheticConfig(width=48, height=40, n_frames=10, camera="moving"))
    cfg = merge(TrainConfig(), {"iterations": 20, "device": "cpu", "init": {"max_points": 1500}})
    Trainer.create(cfg, base / "scene", run).train(progress=False)
    return run


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    return make_tiny_run(tmp_path_factory.getbasetemp() / "viewer_tiny_run")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def view_cmd(run: Path, *args) -> list[str]:
    code = ("import sys; from endogs.cli import main; from endogs.viewer.cli import view; "
            "sys.exit(main(['view', *sys.argv[1:]], commands={'view': view}))")
    return [sys.executable, "-c", code, str(run), *map(str, args)]


def start_view(run: Path, *args, timeout: float = 90.0):
    """Start ``endogs view`` in a subprocess; returns (process, url) once it prints its URL."""
    proc = subprocess.Popen(view_cmd(run, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []
    found = threading.Event()

    def reader():
        for line in proc.stdout:
            lines.append(line)
            if "http://" in line:
                found.set()

    threading.Thread(target=reader, daemon=True).start()
    if not found.wait(timeout):
        proc.kill()
        out, err = proc.communicate(timeout=10)
        raise AssertionError(f"endogs view printed no URL in {timeout} s: {''.join(lines)} {err}")
    url = re.search(r"http://\S+", "".join(lines)).group(0)
    return proc, url


def test_real_run_renders_tissue_at_the_endoscope_view(tiny_run):
    from endogs.run import load_run

    loaded = load_run(tiny_run, "cpu")
    frame = loaded.data().frames[0]
    r = ViewRenderer(StaticSource(loaded.scene), RenderSettings(max_res_still=96))
    cam = frame.camera.resized(96, 80)
    img = r.render_image(cam).astype(np.float32) / 255
    ref = np.asarray(frame.image, np.float32)
    import cv2

    ref = cv2.resize(ref, (96, 80), interpolation=cv2.INTER_AREA)
    m = img[10:70, 10:86].mean((0, 1))
    assert m[0] > m[1] + 0.1 and m[0] > m[2] + 0.1, m  # reddish tissue
    assert np.abs(img - ref).mean() < 0.15  # resembles the input frame it was trained on
    for mode in RENDER_MODES:
        r.settings.mode = mode
        assert r.render_image(cam).shape == (80, 96, 3)


def test_cli_serves_url_and_refuses_a_busy_port(tiny_run):
    port = free_port()
    proc, url = start_view(tiny_run, "--port", port)
    try:
        assert url == f"http://127.0.0.1:{port}"
        with urllib.request.urlopen(url, timeout=20) as resp:
            assert resp.status == 200 and b"<html" in resp.read(2000).lower()
        # the same port again: one clear line, exit status 2
        r = subprocess.run(view_cmd(tiny_run, "--port", port), capture_output=True, text=True, timeout=120, cwd=REPO)
        assert r.returncode == 2, r.stderr
        err = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert err[-1] == (f"endogs: error: port {port} on 127.0.0.1 is already in use; "
                           "pass --port with a free port, or --next-free-port"), r.stderr
        assert "Traceback" not in r.stderr
        # ... or the next free one when asked
        proc2, url2 = start_view(tiny_run, "--port", port, "--next-free-port")
        try:
            assert url2.startswith("http://127.0.0.1:") and int(url2.rsplit(":", 1)[1]) > port
        finally:
            proc2.kill()
            proc2.wait(10)
    finally:
        proc.kill()
        proc.wait(10)


def test_missing_run_is_a_one_line_error(tmp_path):
    r = subprocess.run(view_cmd(tmp_path / "nope", "--port", free_port()), capture_output=True, text=True, timeout=120, cwd=REPO)
    assert r.returncode == 2 and r.stderr.strip().startswith("endogs: error: ") and "Traceback" not in r.stderr


def test_check_port_free():
    from endogs.viewer.app import ViewerError, check_port_free

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        with pytest.raises(ViewerError, match="already in use"):
            check_port_free("127.0.0.1", s.getsockname()[1])
    check_port_free("127.0.0.1", free_port())
    with pytest.raises(ViewerError):
        check_port_free("no-such-host.invalid", 8080)


# ------------------------------------------------------------------------- live training
def test_train_with_viewer_shares_the_lock_and_survives_pause(tiny_run, tmp_path, monkeypatch):
    import endogs.viewer.live as live
    from endogs.run import load_run
    from endogs.train.trainer import Trainer

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    tr = Trainer.resume(run)
    tr.cfg.iterations = tr.step + 6
    sessions = []

    class Recording(live.LiveSession):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            sessions.append(self)

    monkeypatch.setattr(live, "LiveSession", Recording)
    grabbed = []
    paused_at = []

    def watcher():
        # wait for the session, then take the viewer lock between steps (as a render would)
        t_end = time.time() + 120
        while not sessions and time.time() < t_end:
            time.sleep(0.01)
        s = sessions[0]
        while tr.step < 21 and time.time() < t_end:
            time.sleep(0.005)
        with s.lock:  # training cannot be mid-step here
            grabbed.append(tr.step)
            s.app.renderer.settings.time = 0.5
            img = s.app.renderer(cam_state(), Tab(48, 40))
            assert s.app.renderer.stats.errors == 0 and img.shape == (40, 48, 3)
        s.viewer.state = "paused"  # nerfview's Pause button
        time.sleep(1.0)
        before = tr.step
        time.sleep(1.0)
        paused_at.append((before, tr.step, s.viewer.state))
        s._on_disconnect(None)  # the last browser leaves: training resumes

    th = threading.Thread(target=watcher, daemon=True)
    th.start()
    live.train_with_viewer(tr, port=free_port(), progress=False, keep_serving=False)
    th.join(30)
    assert grabbed and 21 <= grabbed[0] <= 26
    assert paused_at == [(paused_at[0][0], paused_at[0][0], "paused")]  # no step while paused
    assert tr.step == 26
    loaded = load_run(run, "cpu")
    assert loaded.step == 26 and loaded.done
    assert sessions[0].viewer.state == "completed"


# ---------------------------------------------------------------------- the GUI, no browser
@dataclass
class FakeFrame:
    time: float
    camera: Camera

    @property
    def image(self):
        return np.full((self.camera.height, self.camera.width, 3), self.time, np.float32)


class FakeClient:
    class Cam:
        fov = position = wxyz = look_at = up_direction = None

    def __init__(self):
        self.camera = self.Cam()

    def atomic(self):
        import contextlib

        return contextlib.nullcontext()


def test_app_controls_drive_the_settings():
    from endogs.viewer.app import ViewerApp, start_server

    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    frames = []
    for i in range(5):
        c2w = np.eye(4)
        c2w[0, 3] = 0.1 * i
        frames.append(FakeFrame(i / 4, Camera(K, c2w, 64, 48)))
    server = start_server("127.0.0.1", free_port())
    app = ViewerApp(server, StaticSource(FakeScene()), frames, device="cpu", depth_range=(4.0, 6.0))
    try:
        st = app.settings
        assert (st.max_res_still, st.max_res_moving, st.depth_near, st.depth_far) == (640, 320, 4.0, 6.0)
        app.mode_dropdown.value = "Depth"
        app.cmap_dropdown.value = "viridis"
        app.background.value = (255, 0, 0)
        app.splat_scale.value = 1.5
        app.res_still.value = 512
        app.res_moving.value = 160
        app.deform_max.value = 2.0
        app.depth_auto.value = False
        assert (st.mode, st.colormap, st.background, st.splat_scale) == ("Depth", "viridis", (1.0, 0.0, 0.0), 1.5)
        assert (st.max_res_still, st.max_res_moving, st.deform_max, st.depth_auto) == (512, 160, 2.0, False)
        assert app.viewer.render_tab_state.viewer_res == 512 and not app.depth_near.disabled

        app.time_slider.value = 0.74  # as if dragged in the browser
        assert st.time == pytest.approx(0.74) and app._shown_frame == 3
        assert "Frame 4 / 5" in app.frame_text.content and app.frame_image.label == "Input frame 4 / 5"
        assert app.endoscope_camera().position[0] == pytest.approx(0.3)

        client = FakeClient()
        app.snap_to_endoscope([client])
        assert np.allclose(client.camera.position, [0.3, 0, 0])
        assert client.camera.fov == pytest.approx(2 * math.atan(24 / 50))
        assert np.allclose(client.camera.look_at, [0.3, 0, 5.0])  # mid-depth ahead of the endoscope

        # playback: whole frames, looping, then stopping at the end without loop
        app.speed_slider.value = 30.0
        seen = set()
        app.play()
        assert app._is_moving()
        t_end = time.time() + 10
        while not {0.0, 0.25, 0.5, 0.75, 1.0} <= seen and time.time() < t_end:
            seen.add(round(st.time, 6))
            time.sleep(0.005)
        assert {0.0, 0.25, 0.5, 0.75, 1.0} <= seen  # every frame time, wrapped around
        app.loop_checkbox.value = False
        t_end = time.time() + 10
        while app.playing and time.time() < t_end:
            time.sleep(0.01)
        assert not app.playing and st.time == 1.0 and app.play_button.visible
        app.play()  # at the end: starts again from the first frame
        assert st.time < 1.0 or app.playing
        app.pause()
        assert not app.playing and not app.pause_button.visible
    finally:
        app.close()


def test_view_without_the_dataset_shows_the_model(tiny_run, tmp_path, caplog):
    import yaml

    from endogs.viewer.cli import open_viewer

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    cfg = yaml.safe_load((run / "run.yaml").read_text())
    cfg["data"] = str(tmp_path / "moved-away")
    (run / "run.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    port = free_port()
    app = open_viewer(run, port=port, device="cpu")
    try:
        assert app.url == f"http://127.0.0.1:{port}"
        assert len(app.frames) == 2 and app.frames[0].image.shape == (512, 640, 3)
        img = app.renderer(cam_state(), Tab(64, 48))
        assert img.shape == (48, 64, 3) and app.renderer.stats.errors == 0
    finally:
        app.close()


def test_app_renders_once_before_nerfview_starts(monkeypatch):
    """The compiled kernels load in the constructor's thread, where nerfview's interrupt cannot land."""
    import endogs.viewer.app as app_mod
    from endogs.viewer.app import ViewerApp, start_server
    from endogs.viewer.core import ViewRenderer

    K = np.array([[50.0, 0, 32], [0, 50.0, 24], [0, 0, 1]])
    frames = [FakeFrame(i / 2, Camera(K, np.eye(4), 64, 48)) for i in range(3)]
    events = []
    real_render, real_make = ViewRenderer.render_image, app_mod._make_viewer_class
    monkeypatch.setattr(ViewRenderer, "render_image", lambda self, cam, st=None: events.append(("render", cam.width, cam.height)) or real_render(self, cam, st))
    monkeypatch.setattr(app_mod, "_make_viewer_class", lambda: events.append(("viewer",)) or real_make())
    app = ViewerApp(start_server("127.0.0.1", free_port()), StaticSource(FakeScene()), frames, device="cpu")
    try:
        assert events[:2] == [("render", 32, 24), ("viewer",)]
    finally:
        app.close()
