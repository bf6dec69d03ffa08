"""The viewer's render function: camera + settings -> image, through ``endogs.render.render``.

Nothing here imports viser; :class:`ViewRenderer` is callable the way nerfview 0.1.x calls a
render function (``render_fn(camera_state, render_tab_state) -> uint8 [H, W, 3]``) and is unit-tested
without a browser.

* The snapshot (the deformed Gaussians at time t) is cached per (time, deformation on/off, model
  version) in a small byte-bounded LRU, so camera moves never re-evaluate the deformation field.
* The render size is the size nerfview asks for, capped by ``max_res_moving`` while the camera (or
  playback) moves and by ``max_res_still`` when it stops; on CUDA both caps default to 2048 (full
  resolution).
* An exception becomes an error image and a log line; nerfview's own
  ``InterruptRenderException`` (its way of cancelling a stale render) passes through.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Callable, Literal, Optional, Protocol, Sequence

import numpy as np
import torch

from endogs.camera import Camera
from endogs.render import render
from endogs.snapshot import Snapshot
from endogs.utils.image import depth_unit
from endogs.view import lit_snapshot

log = logging.getLogger("endogs.viewer")

RenderMode = Literal["RGB", "Depth", "Alpha", "Deformation", "Canonical"]
RENDER_MODES: tuple[str, ...] = ("RGB", "Depth", "Alpha", "Deformation", "Canonical")
COLORMAPS: tuple[str, ...] = ("turbo", "viridis", "magma", "inferno", "gray")

#: Resolution caps (longest image side, pixels) when rendering on the CPU.
CPU_MAX_RES_MOVING = 320
CPU_MAX_RES_STILL = 640
#: nerfview's largest request ("Viewer Res" in nerfview); used as the cap on CUDA.
FULL_RES = 2048

try:  # nerfview's interrupt must never be swallowed by the error-image path
    from nerfview._renderer import InterruptRenderException as _Interrupt
except Exception:  # pragma: no cover - nerfview missing: nothing can interrupt us

    class _Interrupt(Exception):  # type: ignore[no-redef]
        pass


InterruptRenderException = _Interrupt


class SceneSource(Protocol):
    """What the renderer draws: a scene with ``at(t, deform=...)`` and a version that changes
    whenever the scene's parameters do (the training step, or 0 for a finished run)."""

    @property
    def scene(self) -> Any: ...

    @property
    def version(self) -> int: ...


@dataclass
class StaticSource:
    """A scene that never changes (a loaded checkpoint)."""

    scene: Any
    version: int = 0


@dataclass
class RenderSettings:
    """Everything the GUI controls that changes the picture."""

    time: float = 0.0
    """Normalised time in [0, 1]."""
    mode: str = "RGB"
    """One of ``RENDER_MODES``."""
    colormap: str = "turbo"
    """Colormap of depth and deformation modes (one of ``COLORMAPS``)."""
    depth_auto: bool = True
    """Depth colour range from the 2nd/98th percentiles of the visible depth of each image."""
    depth_near: float = 0.0
    """Depth mapped to the colormap's end (warm in turbo) when ``depth_auto`` is off (scene units); near is
    warm, far is cold everywhere in endogs (:mod:`endogs.utils.image`)."""
    depth_far: float = 1.0
    """Depth mapped to the colormap's start (cold in turbo) when ``depth_auto`` is off."""
    deform_max: float = 0.0
    """Displacement mapped to the colormap's end in deformation mode; 0 = automatic (the 99th
    percentile of the displacement over the sequence)."""
    background: tuple[float, float, float] = (0.0, 0.0, 0.0)
    """Background colour, RGB in [0, 1]."""
    splat_scale: float = 1.0
    """Multiplier of every Gaussian's scales (the "point size")."""
    max_res_still: int = CPU_MAX_RES_STILL
    """Longest image side when the view is still."""
    max_res_moving: int = CPU_MAX_RES_MOVING
    """Longest image side while the camera moves or the deformation plays."""
    near: float = 0.01
    """Near clipping plane passed to ``render`` (scene units)."""

    @classmethod
    def for_device(cls, device: torch.device, **kw: Any) -> "RenderSettings":
        """Defaults for ``device``: capped resolution on CPU, full resolution on CUDA."""
        if torch.device(device).type == "cuda":
            kw.setdefault("max_res_still", FULL_RES)
            kw.setdefault("max_res_moving", FULL_RES)
        return cls(**kw)


def capped_size(width: int, height: int, cap: int) -> tuple[int, int]:
    """``(width, height)`` scaled down (aspect kept) so that the longest side is at most ``cap``."""
    width, height = max(1, int(width)), max(1, int(height))
    s = min(1.0, max(1, int(cap)) / max(width, height))
    return max(1, int(round(width * s))), max(1, int(round(height * s)))


_LUTS: dict[str, np.ndarray] = {}


def colormap_lut(name: str) -> np.ndarray:
    """A [256, 3] float32 lookup table of a matplotlib colormap (``gray`` is a ramp)."""
    if name not in _LUTS:
        if name == "gray":
            lut = np.repeat(np.linspace(0, 1, 256, dtype=np.float32)[:, None], 3, axis=1)
        else:
            import matplotlib

            lut = matplotlib.colormaps[name](np.linspace(0, 1, 256))[:, :3].astype(np.float32)
        _LUTS[name] = lut
    return _LUTS[name]


def apply_colormap(values: np.ndarray, name: str) -> np.ndarray:
    """Values in [0, 1] (any shape) -> float32 RGB (shape + (3,))."""
    idx = np.clip(np.nan_to_num(values, nan=0.0) * 255.0 + 0.5, 0, 255).astype(np.int64)
    return colormap_lut(name)[idx]


def error_image(width: int, height: int, message: str) -> np.ndarray:
    """A dark-red uint8 [H, W, 3] image with ``message`` written on it."""
    img = np.zeros((max(1, height), max(1, width), 3), np.uint8)
    img[...] = (90, 0, 0)
    try:
        import cv2

        scale = max(0.3, min(width, height) / 600.0)
        per_line = max(8, int(width / (10 * scale)) - 2)
        text = "render error: " + message
        lines = [text[i : i + per_line] for i in range(0, min(len(text), per_line * 6), per_line)]
        y = int(24 * scale) + 4
        for line in lines:
            cv2.putText(img, line, (4, y), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * scale, (255, 255, 255), 1, cv2.LINE_AA)
            y += int(22 * scale) + 2
    except Exception:  # the plain red image is still an answer
        pass
    return img


def snapshot_nbytes(s: Snapshot) -> int:
    return sum(t.numel() * t.element_size() for t in (s.means, s.quats, s.scales, s.opacities, s.colors))


class SnapshotCache:
    """A small LRU of snapshots keyed by (time, deform, version), bounded in bytes.

    Entries of an older model version are dropped as soon as a newer version is stored. The
    byte count is recomputed from the entries rather than kept as a counter, so an interrupted
    update (nerfview raises inside any Python line of the render thread) cannot corrupt it.
    """

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = int(max_bytes)
        self._items: "OrderedDict[tuple, Snapshot]" = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: tuple, compute: Callable[[], Snapshot]) -> Snapshot:
        snap = self._items.get(key)
        if snap is not None:
            self._items.move_to_end(key)
            self.hits += 1
            return snap
        self.misses += 1
        snap = compute()
        version = key[-1]
        for k in [k for k in self._items if k[-1] != version]:
            self._items.pop(k, None)
        self._items[key] = snap
        while len(self._items) > 1 and sum(snapshot_nbytes(s) for s in self._items.values()) > self.max_bytes:
            self._items.popitem(last=False)
        return snap

    def clear(self) -> None:
        self._items.clear()


def time_key(t: float) -> float:
    """Times closer than 1e-6 share a cache entry."""
    return round(min(1.0, max(0.0, float(t))), 6)


@dataclass
class RenderStats:
    width: int = 0
    height: int = 0
    seconds: float = 0.0
    mode: str = ""
    renders: int = 0
    errors: int = 0
    last_error: str = ""
    deform_scale: float = 0.0


class ViewRenderer:
    """Render a scene for the viewer.

    Args:
        source: the scene and its version (:class:`StaticSource` for a finished run; the live
            viewer passes the trainer).
        settings: the GUI state (read on every render; the GUI writes its attributes).
        is_moving: returns True while the camera moves or playback runs (lower resolution cap).
        cache_bytes: memory bound of the snapshot cache.
    """

    def __init__(
        self,
        source: SceneSource,
        settings: Optional[RenderSettings] = None,
        is_moving: Optional[Callable[[], bool]] = None,
        cache_bytes: int = 256 << 20,
    ):
        self.source = source
        self.settings = settings or RenderSettings()
        self.is_moving = is_moving or (lambda: False)
        self.cache = SnapshotCache(cache_bytes)
        self.stats = RenderStats()
        self._deform_scale: Optional[tuple[int, float]] = None  # (version, scale)
        self._logged: dict[str, float] = {}
        self._log_lock = threading.Lock()

    # ----------------------------------------------------------------------------- snapshots
    def snapshot(self, t: float, deform: bool = True) -> Snapshot:
        """The (cached) detached snapshot of the scene at ``t``."""
        version = int(self.source.version)
        key = (time_key(t), bool(deform), version)

        def compute() -> Snapshot:
            with torch.no_grad():
                return self.source.scene.at(key[0], deform=bool(deform)).detach()

        return self.cache.get(key, compute)

    def deformation_scale(self) -> float:
        """The displacement shown at the colormap's end in automatic mode: the 99th percentile of
        the per-Gaussian displacement over five times of the sequence (cached per version)."""
        version = int(self.source.version)
        if self._deform_scale is not None and self._deform_scale[0] == version:
            return self._deform_scale[1]
        canon = self.snapshot(0.0, deform=False).means
        mags = []
        for t in (0.0, 0.25, 0.5, 0.75, 1.0):
            with torch.no_grad():
                m = self.source.scene.at(t, deform=True).means
            mags.append((m - canon).norm(dim=-1).float())
        mag = torch.cat(mags)
        if mag.numel() > 1_000_000:
            mag = mag[torch.randperm(mag.numel(), device=mag.device)[:1_000_000]]
        scale = float(torch.quantile(mag, 0.99)) if mag.numel() else 0.0
        if not math.isfinite(scale) or scale <= 1e-12:
            scale = 1e-6
        self._deform_scale = (version, scale)
        return scale

    # -------------------------------------------------------------------------------- render
    def render_image(self, camera: Camera, settings: Optional[RenderSettings] = None) -> np.ndarray:
        """Render ``camera`` (at its own size) in the current mode; uint8 [H, W, 3]. Raises on errors."""
        st = settings or self.settings
        mode = st.mode
        if mode not in RENDER_MODES:
            raise ValueError(f"unknown render mode {mode!r}; expected one of {', '.join(RENDER_MODES)}")
        snap = self.snapshot(st.time, deform=mode != "Canonical")
        bg = tuple(float(c) for c in st.background)
        if mode == "Deformation":
            canon = self.snapshot(st.time, deform=False)
            scale = st.deform_max if st.deform_max > 0 else self.deformation_scale()
            self.stats.deform_scale = float(scale)
            mag = ((snap.means - canon.means).norm(dim=-1) / scale).clamp(0, 1)  # [N]
            lut = torch.as_tensor(colormap_lut(st.colormap), dtype=snap.means.dtype, device=snap.device)
            colors = lut[(mag * 255 + 0.5).long().clamp(0, 255)]  # [N, 3]
            snap = snap.with_(colors=colors, sh_degree=None)
        light = getattr(getattr(self.source.scene, "imaging", None), "head_light", None)
        if light is not None and mode in ("RGB", "Canonical"):  # the endoscope's light sits at the viewing camera
            centre = torch.as_tensor(camera.c2w[:3, 3], dtype=snap.means.dtype, device=snap.device)
            with torch.no_grad():
                snap = lit_snapshot(snap, centre, light)
        if st.splat_scale != 1.0:
            snap = snap.with_(scales=snap.scales * float(st.splat_scale))
        with torch.no_grad():
            out = render(snap, camera, background=bg if mode not in ("Depth", "Alpha") else None, near=st.near)
        if mode in ("RGB", "Canonical", "Deformation"):
            img = out.rgb[0].clamp(0, 1).float().cpu().numpy()
        else:
            alpha = out.alpha[0, ..., 0].float().cpu().numpy()  # [H, W]
            bgc = np.asarray(bg, np.float32)
            if mode == "Alpha":
                img = apply_colormap(alpha, "gray")
            else:
                depth = out.depth[0, ..., 0].float().cpu().numpy()  # [H, W]
                near, far = self._depth_range(depth, alpha, st)
                img = apply_colormap(depth_unit(depth, near, far), st.colormap)  # near = the colormap's end
                img = img * alpha[..., None] + bgc * (1.0 - alpha[..., None])
        return (np.clip(img, 0, 1) * 255.0 + 0.5).astype(np.uint8)

    @staticmethod
    def _depth_range(depth: np.ndarray, alpha: np.ndarray, st: RenderSettings) -> tuple[float, float]:
        if not st.depth_auto:
            return float(st.depth_near), float(st.depth_far)
        valid = depth[alpha > 0.5]
        if valid.size < 2:
            return float(st.depth_near), float(st.depth_far)
        lo, hi = np.percentile(valid, [2.0, 98.0])
        if hi - lo < 1e-9:
            hi = lo + 1e-3
        return float(lo), float(hi)

    def render_size(self, width: int, height: int) -> tuple[int, int]:
        """The size actually rendered for a request of ``width`` x ``height``."""
        st = self.settings
        cap = st.max_res_moving if self.is_moving() else st.max_res_still
        return capped_size(width, height, cap)

    def camera_from_state(self, camera_state: Any, width: int, height: int) -> Camera:
        """An endogs camera from a nerfview ``CameraState`` (vertical fov, OpenCV c2w)."""
        K = np.asarray(camera_state.get_K((width, height)), np.float64)
        return Camera(K, np.asarray(camera_state.c2w, np.float64), width, height)

    def __call__(self, camera_state: Any, render_tab_state: Any) -> np.ndarray:
        """nerfview 0.1.x render function. Never raises except nerfview's interrupt."""
        w, h = 64, 48
        try:
            w, h = self.render_size(render_tab_state.viewer_width, render_tab_state.viewer_height)
            tic = time.perf_counter()
            cam = self.camera_from_state(camera_state, w, h)
            img = self.render_image(cam)
            self.stats.seconds = time.perf_counter() - tic
            self.stats.width, self.stats.height, self.stats.mode = w, h, self.settings.mode
            self.stats.renders += 1
            return img
        except InterruptRenderException:
            raise
        except Exception as exc:  # noqa: BLE001 - anything else must not kill the process
            return self._error(exc, w, h)

    def _error(self, exc: BaseException, w: int, h: int) -> np.ndarray:
        msg = f"{type(exc).__name__}: {exc}".replace("\n", " ")
        self.stats.errors += 1
        self.stats.last_error = msg
        now = time.monotonic()
        with self._log_lock:
            first = msg not in self._logged
            if first or now - self._logged[msg] > 10.0:
                self._logged[msg] = now
                log.error("render failed: %s", msg, exc_info=exc if first else None)
        return error_image(w, h, msg)


def nearest_index(times: Sequence[float], t: float) -> int:
    """Index of the time closest to ``t`` (the first on ties)."""
    arr = np.asarray(times, np.float64)
    if arr.size == 0:
        raise ValueError("no frames")
    return int(np.argmin(np.abs(arr - float(t))))
