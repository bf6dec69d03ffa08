"""The browser viewer: a viser server, a nerfview ``Viewer`` and the endogs controls.

:class:`ViewerApp` wires a :class:`~endogs.viewer.core.ViewRenderer` to a GUI (time slider with play/pause,
speed and loop; endoscope snapping; render modes; depth range; background; splat scale;
resolution caps; the input frame nearest to the current time) and a playback thread. It serves a
finished run (``endogs view``) and a run in training (``endogs train --viewer``, see
:mod:`endogs.viewer.live`).
"""

from __future__ import annotations

import errno
import math
import socket
import threading
import time
from typing import Any, Optional, Sequence

import cv2
import numpy as np
import torch

from endogs import view
from endogs.camera import Camera
from endogs.errors import EndogsError

from .core import COLORMAPS, RENDER_MODES, RenderSettings, SceneSource, ViewRenderer, log, nearest_index

#: A camera counts as moving for this long after its last update (seconds).
MOVE_HOLD_S = 0.3
#: Width of the input-frame thumbnail in the GUI panel.
THUMB_WIDTH = 320


class ViewerError(EndogsError):
    """The viewer cannot start (busy port, bad host)."""


# ------------------------------------------------------------------------------------ server
def check_port_free(host: str, port: int) -> None:
    """Raise :class:`ViewerError` if ``host:port`` cannot be bound (the way the server binds it)."""
    if not 0 <= int(port) <= 65535:
        raise ViewerError(f"port {port} is out of range (0-65535)")
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ViewerError(f"cannot bind host {host!r}: {exc.strerror}; use an address such as 127.0.0.1") from None
    for family, kind, proto, _, addr in infos:
        with socket.socket(family, kind, proto) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as asyncio's server does
            try:
                s.bind(addr)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise ViewerError(
                        f"port {port} on {host} is already in use; pass --port with a free port, or --next-free-port"
                    ) from None
                if exc.errno == errno.EACCES:
                    raise ViewerError(f"no permission to bind port {port} on {host}; use a port above 1023") from None
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise ViewerError(f"host {host} is not an address of this machine; use 127.0.0.1 or 0.0.0.0") from None
                raise ViewerError(f"cannot bind {host}:{port}: {exc.strerror}") from None


def start_server(host: str = "127.0.0.1", port: int = 8080, next_free_port: bool = False):
    """A started ``viser.ViserServer`` on ``host:port``.

    With ``next_free_port`` False a busy port raises :class:`ViewerError`; with it True the next
    free port above ``port`` is used (``server.get_port()`` tells which).
    """
    import viser

    if not next_free_port:
        check_port_free(host, port)
    server = viser.ViserServer(host=host, port=port, verbose=False)
    if not next_free_port and server.get_port() != port:  # lost a race for the port
        server.stop()
        raise ViewerError(f"port {port} on {host} is already in use; pass --port with a free port, or --next-free-port")
    return server


def viewer_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "", "localhost") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


# --------------------------------------------------------------------------------- the viewer
def _make_viewer_class():
    import nerfview

    class EndogsViewer(nerfview.Viewer):
        """nerfview's Viewer without its camera-path render tab (the app adds its own controls)."""

        def _init_rendering_tab(self) -> None:
            self.render_tab_state = nerfview.RenderTabState()
            self._rendering_tab_handles = {}
            self._rendering_folder = None

        def _populate_rendering_tab(self) -> None:
            pass

        def _after_render(self) -> None:
            cb = getattr(self, "after_render_cb", None)
            if cb is not None:
                cb()

        def rerender(self, _: Any = None) -> None:
            from nerfview._renderer import RenderTask

            for client_id, client in self.server.get_clients().items():
                renderer = self._renderers.get(client_id)
                if renderer is None:  # connected to viser, not yet to nerfview
                    continue
                try:
                    renderer.submit(RenderTask("rerender", self.get_camera_state(client)))
                except AssertionError:  # camera not reported yet
                    continue

    return EndogsViewer


class ViewerApp:
    """Serve ``source`` on ``server`` with the endogs controls.

    Args:
        server: a started ``viser.ViserServer``.
        source: the scene and its version (see :class:`endogs.viewer.core.SceneSource`).
        frames: the input video frames (objects with ``time``, ``camera`` and ``image`` float
            [H, W, 3]), for endoscope snapping and the comparison image.
        device: where the scene lives (sets the resolution-cap defaults).
        mode: nerfview mode: ``"rendering"`` (a finished run) or ``"training"`` (adds nerfview's
            training folder: step, pause/resume, train util).
        depth_range: initial manual depth range (e.g. the dataset's near/far).
        title: the panel label.
    """

    def __init__(
        self,
        server: Any,
        source: SceneSource,
        frames: Sequence[Any],
        device: torch.device | str = "cpu",
        mode: str = "rendering",
        depth_range: Optional[tuple[float, float]] = None,
        title: str = "endogs",
    ):
        if not frames:
            raise ViewerError("the run's dataset has no frames to show")
        self.server = server
        self.frames = list(frames)
        self.times = [float(f.time) for f in self.frames]
        self.n_frames = len(self.frames)
        settings = RenderSettings.for_device(torch.device(device))
        self.look_distance = 1.0  # orbit distance in front of the endoscope after snapping
        if depth_range is not None and all(math.isfinite(v) for v in depth_range) and depth_range[1] > depth_range[0] >= 0:
            settings.depth_near, settings.depth_far = float(depth_range[0]), float(depth_range[1])
            self.look_distance = 0.5 * (settings.depth_near + settings.depth_far)
        self.playing = False
        self._thumbs: dict[int, np.ndarray] = {}
        self._shown_frame = -1
        self._stop = threading.Event()
        self.renderer = ViewRenderer(source, settings, is_moving=self._is_moving)
        self.settings = settings
        self._warm_up()
        self.viewer = _make_viewer_class()(server, self.renderer, mode=mode)
        self.viewer.after_render_cb = self._after_render
        server.gui.set_panel_label(title)
        first = self.frames[0].camera
        server.scene.set_up_direction(tuple(float(v) for v in -first.c2w[:3, 1]))
        self._build_gui()
        server.on_client_connect(self._on_connect)
        self._player = threading.Thread(target=self._play_loop, name="endogs-viewer-playback", daemon=True)
        self._player.start()

    def _warm_up(self) -> None:
        """One small render here, before nerfview's render thread exists: the compiled CPU kernels
        (rasterizer, SH colour, HexPlane sampling) load or compile now. nerfview cancels a stale render by
        raising inside the render thread, and an exception landing inside numba's first load of a kernel
        left its type registry half-written ("duplicate registration"), failing every later render."""
        cam = self.frames[0].camera
        w = min(32, cam.width)
        try:
            self.renderer.render_image(cam.resized(w, max(1, round(w * cam.height / cam.width))))
        except Exception as exc:  # the first real render shows the error image and logs it
            log.warning("viewer warm-up render failed: %s", exc)

    # ------------------------------------------------------------------------------- GUI
    def _build_gui(self) -> None:
        import viser

        gui, st = self.server.gui, self.settings
        step = 1.0 / max(1, self.n_frames - 1)
        with gui.add_folder("Time"):
            self.time_slider = gui.add_slider("Time", min=0.0, max=1.0, step=0.001, initial_value=0.0,
                                              hint="Normalised time of the video: 0 = first frame, 1 = last.")
            self.play_button = gui.add_button("Play", icon=viser.Icon.PLAYER_PLAY, hint="Play the deformation.")
            self.pause_button = gui.add_button("Pause", icon=viser.Icon.PLAYER_PAUSE, visible=False, hint="Pause playback.")
            self.speed_slider = gui.add_slider("Speed (frames/s)", min=0.5, max=30.0, step=0.5, initial_value=5.0,
                                               hint="Playback speed in video frames per second.")
            self.loop_checkbox = gui.add_checkbox("Loop", True, hint="Start again at the end; otherwise stop.")
            self.frame_text = gui.add_markdown(self._frame_caption(0))
            self.snap_button = gui.add_button("Endoscope view", icon=viser.Icon.CAMERA,
                                              hint="Move the camera to the endoscope's pose at this time (the view of the input video).")
            self.follow_checkbox = gui.add_checkbox("Follow endoscope", False,
                                                    hint="Keep the camera on the endoscope's pose while the time changes.")
        with gui.add_folder("Display"):
            self.mode_dropdown = gui.add_dropdown("Mode", RENDER_MODES, initial_value=st.mode,
                                                  hint="RGB; depth (colormap); alpha (accumulated opacity); deformation "
                                                       "(displacement from the canonical scene); canonical (deformation off).")
            self.cmap_dropdown = gui.add_dropdown("Colormap", COLORMAPS, initial_value=st.colormap)
            self.depth_auto = gui.add_checkbox("Auto depth range", st.depth_auto,
                                               hint="Colour range from the 2nd-98th percentile of the visible depth.")
            self.depth_near = gui.add_number("Depth near", initial_value=float(st.depth_near), step=0.01, disabled=st.depth_auto)
            self.depth_far = gui.add_number("Depth far", initial_value=float(st.depth_far), step=0.01, disabled=st.depth_auto)
            self.deform_max = gui.add_number("Deformation max", initial_value=0.0, min=0.0, step=0.01,
                                             hint="Displacement at the colormap's end (scene units); 0 = automatic.")
            self.background = gui.add_rgb("Background", (0, 0, 0))
            self.splat_scale = gui.add_slider("Splat scale", min=0.1, max=3.0, step=0.05, initial_value=1.0,
                                              hint="Multiplies every Gaussian's size (point size).")
        with gui.add_folder("Resolution"):
            self.res_still = gui.add_slider("Max res (still)", min=64, max=2048, step=16, initial_value=int(st.max_res_still),
                                            hint="Longest side of the rendered image when the view is still.")
            self.res_moving = gui.add_slider("Max res (moving)", min=32, max=2048, step=16, initial_value=int(st.max_res_moving),
                                             hint="Longest side while the camera moves or playback runs.")
            self.stats_text = gui.add_markdown("waiting for the first frame")
        with gui.add_folder("Input frame"):
            self.frame_image = gui.add_image(self._thumb(0), label=self._frame_label(0), format="jpeg", jpeg_quality=85)
        self._shown_frame = 0
        self.viewer.render_tab_state.viewer_res = int(st.max_res_still)

        self.time_slider.on_update(lambda _: self.set_time(float(self.time_slider.value)))
        self.play_button.on_click(lambda _: self.play())
        self.pause_button.on_click(lambda _: self.pause())
        self.snap_button.on_click(lambda ev: self.snap_to_endoscope([ev.client] if ev.client is not None else None))

        def bind(handle: Any, attr: str, conv: Any = None) -> None:
            def _(_: Any) -> None:
                v = handle.value
                setattr(st, attr, conv(v) if conv else v)
                self.viewer.rerender()

            handle.on_update(_)

        bind(self.mode_dropdown, "mode")
        bind(self.cmap_dropdown, "colormap")
        bind(self.depth_near, "depth_near", float)
        bind(self.depth_far, "depth_far", float)
        bind(self.deform_max, "deform_max", float)
        bind(self.background, "background", lambda v: tuple(c / 255.0 for c in v))
        bind(self.splat_scale, "splat_scale", float)
        bind(self.res_moving, "max_res_moving", int)

        @self.depth_auto.on_update
        def _(_: Any) -> None:
            st.depth_auto = bool(self.depth_auto.value)
            self.depth_near.disabled = self.depth_far.disabled = st.depth_auto
            self.viewer.rerender()

        @self.res_still.on_update
        def _(_: Any) -> None:
            st.max_res_still = int(self.res_still.value)
            self.viewer.render_tab_state.viewer_res = st.max_res_still
            self.viewer.rerender()

    def _frame_caption(self, i: int) -> str:
        return f"Frame {i + 1} / {self.n_frames} (t = {self.times[i]:.3f})"

    def _frame_label(self, i: int) -> str:
        return f"Input frame {i + 1} / {self.n_frames}"

    def _thumb(self, i: int) -> np.ndarray:
        if i not in self._thumbs:
            try:
                img = np.asarray(self.frames[i].image, np.float32)
                h, w = img.shape[:2]
                if w != THUMB_WIDTH:
                    interp = cv2.INTER_AREA if w > THUMB_WIDTH else cv2.INTER_LINEAR
                    img = cv2.resize(img, (THUMB_WIDTH, max(1, round(h * THUMB_WIDTH / w))), interpolation=interp)
                thumb = (np.clip(img[..., :3], 0, 1) * 255 + 0.5).astype(np.uint8)
            except Exception as exc:  # noqa: BLE001 - a missing image must not stop the viewer
                from .core import error_image

                cam = self.frames[i].camera
                thumb = error_image(THUMB_WIDTH, max(1, round(cam.height * THUMB_WIDTH / cam.width)), str(exc))
            self._thumbs[i] = thumb
        return self._thumbs[i]

    def _after_render(self) -> None:
        s = self.renderer.stats
        text = f"{s.width}x{s.height} px, {s.seconds * 1000:.0f} ms ({1.0 / max(s.seconds, 1e-6):.1f} FPS), {s.mode}"
        if s.mode == "Deformation":
            text += f", scale {s.deform_scale:.3g}"
        if s.errors:
            text += f"; {s.errors} render errors, last: {s.last_error[:120]}"
        try:
            self.stats_text.content = text
        except Exception:  # noqa: BLE001
            pass

    # ---------------------------------------------------------------------- time & playback
    def set_time(self, t: float) -> None:
        """Show time ``t`` (the slider calls this; so can code)."""
        t = min(1.0, max(0.0, float(t)))
        self.settings.time = t
        if abs(float(self.time_slider.value) - t) > 1e-9:
            self.time_slider.value = t  # calls set_time again with the same t
            return
        i = nearest_index(self.times, t)
        if i != self._shown_frame:
            self._shown_frame = i
            self.frame_image.image = self._thumb(i)
            self.frame_image.label = self._frame_label(i)
            self.frame_text.content = self._frame_caption(i)
        if self.follow_checkbox.value:
            self.snap_to_endoscope()
        self.viewer.rerender()

    def play(self) -> None:
        if self.settings.time >= 1.0 - 1e-9:
            self.set_time(0.0)
        self.playing = True
        self.play_button.visible, self.pause_button.visible = False, True

    def pause(self) -> None:
        self.playing = False
        self.play_button.visible, self.pause_button.visible = True, False
        self.viewer.rerender()  # refine at the still resolution

    def _play_loop(self) -> None:
        """Advance whole video frames at the chosen speed, so that after one loop every frame's
        snapshot is cached and playback only pays for rendering."""
        last = time.perf_counter()
        acc = 0.0
        while not self._stop.wait(0.03):
            now = time.perf_counter()
            dt, last = now - last, now
            if not self.playing:
                acc = 0.0
                continue
            try:
                acc += dt * float(self.speed_slider.value)
                steps = int(acc)
                if steps < 1:
                    continue
                acc -= steps
                k = nearest_index(self.times, self.settings.time) + steps
                if k > self.n_frames - 1:
                    if self.loop_checkbox.value:
                        k = k % self.n_frames
                    else:
                        k = self.n_frames - 1
                        self.playing = False
                        self.play_button.visible, self.pause_button.visible = True, False
                self.set_time(self.times[k])
            except Exception:  # noqa: BLE001 - e.g. the server stopped under us
                if self._stop.is_set():
                    return

    def _is_moving(self) -> bool:
        return self.playing or (time.time() - self.viewer._last_move_time) < MOVE_HOLD_S

    # ----------------------------------------------------------------------------- cameras
    def endoscope_camera(self, t: Optional[float] = None) -> Camera:
        """The camera of the frame nearest to ``t`` (default: the current time), at its refined pose
        when the run refined poses."""
        i = nearest_index(self.times, self.settings.time if t is None else t)
        f = self.frames[i]
        scene = getattr(self.renderer.source, "scene", None)
        return f.camera.with_pose(view.frame_pose(scene, getattr(f, "index", i), f.time, f.camera.c2w))

    def snap_to_endoscope(self, clients: Optional[Sequence[Any]] = None) -> None:
        """Put the browser camera(s) on the endoscope pose at the current time."""
        import viser.transforms as vtf

        cam = self.endoscope_camera()
        R, pos = cam.c2w[:3, :3], cam.c2w[:3, 3]
        fov = 2.0 * math.atan(cam.height / (2.0 * cam.fy))
        look = self.look_distance
        for client in clients if clients is not None else list(self.server.get_clients().values()):
            try:
                with client.atomic():
                    client.camera.fov = fov
                    client.camera.position = pos
                    client.camera.wxyz = vtf.SO3.from_matrix(R).wxyz
                    client.camera.look_at = pos + R[:, 2] * look
                    client.camera.up_direction = -R[:, 1]
            except Exception:  # noqa: BLE001 - client gone or not ready
                continue

    def _on_connect(self, client: Any) -> None:
        self.snap_to_endoscope([client])

    # ---------------------------------------------------------------------------- shutdown
    def close(self) -> None:
        self._stop.set()
        self.playing = False
        try:
            self.server.stop()
        except Exception:  # noqa: BLE001
            pass
