"""``endogs train --viewer``: the browser viewer live during training.

The trainer's own loop (:meth:`Trainer.train`: logging, checkpoints, the final save) runs
unchanged; every training step runs while holding nerfview's ``VIEWER_LOCK``, which is released
between steps through the ``on_step`` callback. Renders therefore always see a consistent scene,
and their snapshot cache is keyed by ``trainer.step``, so the picture follows the Gaussians as they
change. nerfview's training folder pauses and resumes training; training resumes by itself when
the last browser disconnects while paused, so closing the tab never stalls a run.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Optional

#: After releasing the lock between steps, wait this long so a waiting render can take it.
YIELD_S = 0.002


class TrainerSource:
    """The trainer's scene, versioned by its step (for :class:`endogs.viewer.core.ViewRenderer`)."""

    def __init__(self, trainer: Any):
        self.trainer = trainer

    @property
    def scene(self) -> Any:
        return self.trainer.scene

    @property
    def version(self) -> int:
        return int(self.trainer.step)


class LiveSession:
    """The viewer attached to a trainer; :meth:`on_step` is the trainer's ``on_step`` callback.

    The caller holds ``self.lock`` while the trainer runs; ``on_step`` releases it for the time
    between two steps (rendering, pausing) and takes it back before returning.
    """

    def __init__(self, trainer: Any, app: Any):
        import viser

        self.trainer = trainer
        self.app = app
        self.viewer = app.viewer
        self.lock = self.viewer.lock
        cam = trainer.frames[0].camera
        self.rays_per_step = int(cam.width * cam.height)
        self._step_started = time.perf_counter()
        with self.viewer._training_folder:
            self.stop_button = app.server.gui.add_button(
                "Stop and save", icon=viser.Icon.PLAYER_STOP, color="red",
                hint="End training now: the checkpoint is saved and can be resumed with endogs train --resume.",
            )

        @self.stop_button.on_click
        def _(_: Any) -> None:
            self.trainer.stop_requested = True
            self.stop_button.disabled = True
            self.resume()

        app.server.on_client_disconnect(self._on_disconnect)

    # ------------------------------------------------------------------------ pause / resume
    @property
    def paused(self) -> bool:
        return self.viewer.state == "paused"

    def resume(self) -> None:
        """Leave the paused state (as nerfview's Resume button does)."""
        if self.viewer.state == "paused":
            self.viewer.state = "training"
            h = self.viewer._training_tab_handles
            h["pause_train_button"].visible = True
            h["resume_train_button"].visible = False

    def _on_disconnect(self, _client: Any) -> None:
        # nerfview's own disconnect handler (registered first) has dropped the client's renderer.
        if not self.viewer._renderers and self.paused:
            self.resume()
            print("endogs viewer: last browser disconnected; training resumes", file=sys.stderr)

    # ------------------------------------------------------------------------- the callback
    def on_step(self, trainer: Any, terms: dict) -> None:
        """Called by ``Trainer.train`` after each step, with ``self.lock`` held."""
        dt = max(time.perf_counter() - self._step_started, 1e-6)
        self.viewer.render_tab_state.num_train_rays_per_sec = self.rays_per_step / dt
        self.lock.release()
        try:
            self.viewer.update(trainer.step, self.rays_per_step)  # may wait while the camera moves
            while self.paused and not trainer.stop_requested:
                time.sleep(0.05)
            time.sleep(YIELD_S)
        finally:
            self.lock.acquire()
            self._step_started = time.perf_counter()


def train_with_viewer(
    trainer: Any,
    port: int = 8080,
    host: str = "127.0.0.1",
    progress: bool = True,
    next_free_port: bool = False,
    keep_serving: Optional[bool] = None,
) -> None:
    """Train ``trainer`` (exactly as ``trainer.train`` does) with the viewer live in the browser.

    Args:
        trainer: an ``endogs.train.trainer.Trainer`` (new or resumed).
        port: port to serve on; a busy port raises ``ViewerError`` unless ``next_free_port``.
        host: address to bind (127.0.0.1: this machine only).
        progress: show the progress bar.
        next_free_port: take the next free port if ``port`` is busy.
        keep_serving: after training, keep the viewer up until Ctrl+C. None = only when stdin is a
            terminal (an interactive session), so scripts and CI never hang.
    """
    from .app import ViewerApp, start_server, viewer_url
    from .cli import _setup_logging

    _setup_logging()
    server = start_server(host, port, next_free_port)
    app = None
    try:
        data = trainer.data
        app = ViewerApp(server, TrainerSource(trainer), list(data.frames), device=trainer.device, mode="training",
                        depth_range=(float(data.near), float(data.far)), title=f"endogs: training {trainer.run_dir.name}")
        session = LiveSession(trainer, app)
        url = viewer_url(host, server.get_port())
        print(f"endogs viewer: {url}  (live training; pause or stop it from the browser)", file=sys.stderr, flush=True)
        lock = session.lock
        lock.acquire()
        try:
            session._step_started = time.perf_counter()
            trainer.train(progress=progress, on_step=session.on_step)
        finally:
            lock.release()
        session.viewer.complete()
        session.stop_button.disabled = True
        session.viewer.rerender()
        if keep_serving is None:
            keep_serving = sys.stdin is not None and sys.stdin.isatty()
        if keep_serving:
            print(f"endogs viewer: training finished; the viewer stays up at {url}; Ctrl+C to exit", file=sys.stderr, flush=True)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
    finally:
        if app is not None:
            app.close()
        else:
            server.stop()


__all__ = ["train_with_viewer", "LiveSession", "TrainerSource"]

