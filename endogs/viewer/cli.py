"""``endogs view RUN``: serve a trained run in the browser (nerfview/viser)."""

from __future__ import annotations

import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import tyro

from endogs.camera import Camera
from endogs.errors import EndogsError
from endogs.utils.device import DeviceName

Positional = tyro.conf.Positional


@dataclass
class _ModelOnlyFrame:
    """Stands in for the input video when the run's dataset cannot be read."""

    time: float
    camera: Camera

    @property
    def image(self) -> np.ndarray:
        return np.full((self.camera.height, self.camera.width, 3), 0.2, np.float32)


def _setup_logging() -> None:
    log = logging.getLogger("endogs.viewer")
    if not log.handlers and not logging.getLogger().handlers:  # leave configured logging alone
        h = logging.StreamHandler(sys.stderr)
        h.setFormatter(logging.Formatter("endogs viewer: %(message)s"))
        log.addHandler(h)
        log.setLevel(logging.INFO)
        log.propagate = False


def open_viewer(
    run: Path,
    host: str = "127.0.0.1",
    port: int = 8080,
    next_free_port: bool = False,
    device: DeviceName = "auto",
):
    """Load ``run`` and start serving it; returns the :class:`endogs.viewer.app.ViewerApp` (call ``close()``)."""
    from endogs.run import RunFolder

    from .app import ViewerApp, start_server, viewer_url
    from .core import StaticSource

    _setup_logging()
    loaded = RunFolder(run).open(device)
    depth_range = None
    try:
        data = loaded.data()
        frames = list(data.frames)
        depth_range = (float(data.near), float(data.far))
    except EndogsError as exc:
        logging.getLogger("endogs.viewer").warning("input frames unavailable (%s); showing the model only", exc)
        K = np.array([[554.3, 0, 320.0], [0, 554.3, 256.0], [0, 0, 1.0]])
        frames = [_ModelOnlyFrame(0.0, Camera(K, np.eye(4), 640, 512)), _ModelOnlyFrame(1.0, Camera(K, np.eye(4), 640, 512))]
    server = start_server(host, port, next_free_port)
    try:
        app = ViewerApp(server, StaticSource(loaded.scene), frames, device=loaded.device, depth_range=depth_range,
                        title=f"endogs: {Path(run).name}")
    except BaseException:
        server.stop()
        raise
    app.url = viewer_url(host, server.get_port())
    app.loaded = loaded
    return app


def view(
    run: Positional[Path],
    host: str = "127.0.0.1",
    port: int = 8080,
    next_free_port: bool = False,
    device: DeviceName = "auto",
) -> None:
    """Open a trained run in the browser: move around the tissue, scrub or play its deformation.

    Serves a nerfview/viser viewer until Ctrl+C. Controls: time slider with play/pause, speed and
    loop; snap to the endoscope camera; RGB, depth, alpha, deformation-magnitude and canonical
    modes; the nearest input frame for comparison; background, splat scale and resolution caps.

    Args:
        run: the run folder written by `endogs train` (run.yaml + checkpoint.pt).
        host: address to bind; 127.0.0.1 keeps the viewer on this machine, 0.0.0.0 opens it to the network (patient data: trusted networks only).
        port: port to serve on.
        next_free_port: if the port is busy, use the next free one instead of failing.
        device: where to render; auto = CUDA when present (full resolution), else the CPU (resolution capped while the view moves).
    """
    app = open_viewer(run, host=host, port=port, next_free_port=next_free_port, device=device)
    loaded = app.loaded
    if host in ("0.0.0.0", "::", ""):
        print(f"endogs view: listening on all interfaces ({host}); anyone on the network can open it", file=sys.stderr)
    print(f"endogs viewer: {app.url}  ({loaded.run_dir}, step {loaded.step}, {loaded.scene.num_gaussians} Gaussians, "
          f"{loaded.device.type}); Ctrl+C to stop", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        print("endogs viewer: stopped", file=sys.stderr)
    finally:
        app.close()
