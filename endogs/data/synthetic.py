"""Deterministic synthetic endoscopic scene with exact ground truth.

The scene is the bundled sample of ``make demo`` and the fixture of many tests. It is a textured,
deforming tissue surface seen by a pinhole endoscope with a head light, partly occluded by a grey
surgical tool, with stereo-like noisy depth and exact tissue depth. :func:`generate` builds it in memory;
:func:`write_endonerf` and :func:`write_scared` write it in the two on-disk layouts the loaders read
(see the shared FORMATS.md §1 and §2.3, and the layout in each writer's docstring).

Geometry (all lengths in mm, OpenCV axes: x right, y down, z forward):

* World frame = camera frame of frame 0. The tissue is the height field ``z = distance + h(x, y, t)``
  (:func:`surface_z`), defined everywhere (it spans far beyond the view), with gentle slopes
  (|grad h| < 0.49 + 0.29 * deformation) so that every pixel ray meets it exactly once; the hit is
  found by Newton iterations and is exact to float32 precision.
* ``h`` = a static dome and folds (seeded) + breathing (a slow global rise and fall, with a small
  lateral expansion) + a "pulled" bump that rises up to ~4 mm towards the camera and slides ~5 mm
  while the tool holds it. All motion is zero at t = 0 and smooth in t.
* The albedo is a function of material coordinates ``(X, Y) = (x, y) - u(x, y, t)`` (u = the lateral
  displacement, zero at t = 0), so the texture moves with the tissue.
* Shading: point light at the camera centre; Lambert with 1/r² falloff normalised to 1 at r = distance,
  plus a white Blinn-Phong highlight (the half vector equals the light direction for a head light).
  A faint material-attached bump map breaks highlights into wet-looking speckles.
* Tool: a union of capsules (shaft + two jaws) in world space whose jaw tips hold the bump; ray-cast
  exactly, so the tool mask is exact per pixel centre and the noisy depth contains the tool's depth.
* Noisy depth: visible depth + spatially correlated noise with std ``depth_noise * (z / 60)^2``;
  holes (0): a strip at the left border, pixels the right camera cannot see (left of the tool's
  edges), pixels near specular highlights and a few random blobs.

Frame ``i`` has time ``t = i / (N - 1)`` (0 for a single frame). Same config → same arrays and the same
bytes on disk.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional, Union

import cv2
import numpy as np

from endogs.camera import Camera
from endogs.errors import EndogsError

__all__ = [
    "SyntheticConfig",
    "SyntheticScene",
    "SceneExistsError",
    "generate",
    "render_view",
    "SyntheticView",
    "surface_z",
    "material_coords",
    "tissue_points",
    "write_endonerf",
    "write_scared",
    "write_synthetic_scene",
    "poses_bounds",
    "depth_to_png16",
    "reprojection_matrix",
    "FORMAT_VERSION",
    "DEPTH_PNG_SCALE",
]

FORMAT_VERSION = 1
DEPTH_PNG_SCALE = 256.0
_GENERATOR = "endogs.data.synthetic"
_CHUNK = 32768  # points per vectorised step: keeps numpy temporaries in cache (2-3x faster)


class SceneExistsError(EndogsError, FileExistsError):
    """The output folder already holds files and ``overwrite`` was not requested."""


# ---------------------------------------------------------------------------------------------------
# Configuration and result types


@dataclass
class SyntheticConfig:
    """Synthetic endoscopic scene: tissue, head light, tool, noisy stereo-like depth."""

    width: int = 160
    """Image width in pixels."""
    height: int = 128
    """Image height in pixels."""
    n_frames: int = 24
    """Number of frames; frame i has time t = i / (n_frames - 1)."""
    seed: int = 0
    """Seed of the texture, the tissue folds and the depth noise."""
    camera: Literal["fixed", "moving"] = "fixed"
    """'fixed': identity camera-to-world for every frame (EndoNeRF protocol); 'moving': a smooth motion of
    a few mm and a few degrees, identity at frame 0."""
    specular: bool = True
    """Add white specular highlights (and depth holes around them)."""
    tool: bool = True
    """Add the surgical tool (in images, noisy depth and tool masks)."""
    depth_noise: float = 0.3
    """Std (mm) of the noisy depth at 60 mm; it grows with depth squared, as for stereo."""
    focal_factor: float = 0.9
    """Focal length fx = fy = focal_factor * width, in pixels; the principal point is (W/2, H/2)."""
    distance: float = 60.0
    """Mean distance (mm) of the tissue from the first camera."""
    deformation: float = 1.0
    """Scale of all tissue motion (breathing and the pulled bump); 0 gives a static surface."""
    camera_motion: float = 1.0
    """Scale of the camera trajectory in 'moving' mode."""
    baseline: float = 4.2
    """Stereo baseline (mm) used for disparity and for the occlusion holes of the noisy depth."""
    left_strip: float = 0.08
    """Fraction of the width, at the left border, that has no depth (unseen by the right camera)."""
    holes: bool = True
    """Punch holes into the noisy depth: occlusions, around highlights and random blobs (the left strip
    is always applied)."""
    image_noise: float = 0.0
    """Std of Gaussian sensor noise added to the images (in [0,1] units)."""

    def __post_init__(self) -> None:
        for name in ("width", "height", "n_frames", "seed"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise ValueError(f"SyntheticConfig.{name} must be an integer, got {v!r}")
        if not 16 <= self.width <= 8192 or not 16 <= self.height <= 8192:
            raise ValueError(f"image size must be within 16..8192 px, got {self.width}x{self.height}")
        if not 1 <= self.n_frames <= 100_000:
            raise ValueError(f"n_frames must be >= 1, got {self.n_frames}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.camera not in ("fixed", "moving"):
            raise ValueError(f"camera must be 'fixed' or 'moving', got {self.camera!r}")
        for name in ("specular", "tool", "holes"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise ValueError(f"SyntheticConfig.{name} must be a bool, got {getattr(self, name)!r}")
        checks = {
            "depth_noise": (0.0, 10.0),
            "focal_factor": (0.3, 5.0),
            "distance": (20.0, 200.0),
            "deformation": (0.0, 2.0),
            "camera_motion": (0.0, 3.0),
            "baseline": (0.5, 50.0),
            "left_strip": (0.0, 0.5),
            "image_noise": (0.0, 0.5),
        }
        for name, (lo, hi) in checks.items():
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)):
                raise ValueError(f"SyntheticConfig.{name} must be a number, got {v!r}")
            if not (np.isfinite(v) and lo <= v <= hi):
                raise ValueError(f"SyntheticConfig.{name} must be within [{lo}, {hi}], got {v!r}")

    @property
    def fx(self) -> float:
        return float(self.focal_factor * self.width)

    @property
    def K(self) -> np.ndarray:
        """3x3 intrinsics (pixel centres at +0.5, principal point at the image centre)."""
        f = self.fx
        return np.array([[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]])

    def times(self) -> np.ndarray:
        n = self.n_frames
        return np.zeros(1) if n == 1 else np.arange(n, dtype=np.float64) / (n - 1)


def _max_slope(deformation: float) -> float:
    """Upper bound of |grad h| over space and time (mirrors the amplitudes in :class:`_SceneModel`).

    dome 7/32·e^-½ + folds 2π(0.8/38 + 0.45/24 + 0.25/15) + bump 4/10·e^-½·def + breathing
    1.5·0.25·2π/55·def (all lengths scale together with the distance, so slopes do not).
    """
    e = np.exp(-0.5)
    folds = 2 * np.pi * (0.8 / 38 + 0.45 / 24 + 0.25 / 15)
    return 7.0 / 32.0 * e + folds + (0.4 * e + 1.5 * 0.25 * 2 * np.pi / 55.0) * deformation


@dataclass
class SyntheticScene:
    """A generated scene in memory. Arrays are indexed by frame first."""

    config: SyntheticConfig
    images: np.ndarray
    """[N,H,W,3] float32 in [0,1], quantised to multiples of 1/255 (exactly what the PNGs hold)."""
    tool_masks: np.ndarray
    """[N,H,W] bool, True = tool (exact at pixel centres)."""
    depth: np.ndarray
    """[N,H,W] float32 mm, noisy visible depth (tool included), 0 = invalid."""
    gt_depth: np.ndarray
    """[N,H,W] float32 mm, exact depth of the tissue surface everywhere (also behind the tool)."""
    K: np.ndarray
    """[3,3] float64 intrinsics."""
    c2w: np.ndarray
    """[N,4,4] float64 camera-to-world, OpenCV axes; frame 0 is the identity."""
    times: np.ndarray
    """[N] float64, t = i / (N-1)."""
    albedo: np.ndarray
    """[N,H,W,3] float32 tissue albedo seen at each pixel (behind the tool too)."""
    normals: np.ndarray
    """[N,H,W,3] float32 world-space unit normals of the tissue (pointing towards the camera)."""
    specular_masks: np.ndarray
    """[N,H,W] bool, pixels whose specular term exceeds 0.25 (highlights)."""
    tool_depth: np.ndarray
    """[N,H,W] float32 mm, exact tool depth, 0 where there is no tool."""
    _model: "_SceneModel" = field(repr=False, compare=False, default=None)  # type: ignore[assignment]

    @property
    def n_frames(self) -> int:
        return int(self.images.shape[0])

    @property
    def width(self) -> int:
        return int(self.images.shape[2])

    @property
    def height(self) -> int:
        return int(self.images.shape[1])

    def camera(self, i: int) -> Camera:
        """The :class:`endogs.camera.Camera` of frame ``i``."""
        return Camera(self.K, self.c2w[i], self.width, self.height)

    @property
    def visible_depth(self) -> np.ndarray:
        """[N,H,W] exact depth of what each pixel sees (tool where the tool is)."""
        return np.where(self.tool_masks, self.tool_depth, self.gt_depth)


# ---------------------------------------------------------------------------------------------------
# The analytic scene model


def _smoothstep(t):
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _sincos(ph):
    """sin and cos via float32 (SIMD, ~25x faster than float64; abs error ~1e-6, far below 1 um)."""
    p32 = np.asarray(ph, np.float32)
    return np.sin(p32).astype(np.float64), np.cos(p32).astype(np.float64)


def _normals_from_grad(hx, hy) -> np.ndarray:
    """Unit normals [3,...] of z = h(x, y) from its gradient, pointing towards -z (the camera side)."""
    inv = 1.0 / np.sqrt(hx * hx + hy * hy + 1.0)
    return np.stack([hx * inv, hy * inv, -inv])


def _rodrigues(w: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(w))
    if th < 1e-15:
        return np.eye(3)
    k = w / th
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(th) * Kx + (1 - np.cos(th)) * (Kx @ Kx)


class _Noise:
    """Smooth 2D noise: a seeded random lattice sampled with bicubic interpolation (cv2.remap)."""

    def __init__(self, rng: np.random.Generator, spacing: float, extent: float):
        """Lattice over [-extent, extent]^2 mm (mirrored beyond) with nodes every ``spacing`` mm."""
        n = int(np.ceil(2 * extent / spacing)) + 4
        self.spacing = spacing
        self.extent = extent
        self.lattice = rng.standard_normal((n, n)).astype(np.float32)

    def __call__(self, X: np.ndarray, Y: np.ndarray) -> np.ndarray:
        X, Y = np.broadcast_arrays(np.asarray(X), np.asarray(Y))
        mx = ((X + self.extent) / self.spacing + 1.0).astype(np.float32).reshape(-1)
        my = ((Y + self.extent) / self.spacing + 1.0).astype(np.float32).reshape(-1)
        return _remap_points(self.lattice, mx, my).reshape(X.shape)


def _remap_points(src: np.ndarray, mx: np.ndarray, my: np.ndarray) -> np.ndarray:
    """Bicubic samples of ``src`` [h,w(,c)] at float32 pixel coordinates mx, my [M] → [M(,c)]."""
    w = 4096  # lay the points out as rows of 4096: cv2.remap needs map sides < 32767
    n = mx.size
    rows = -(-n // w)
    pad = rows * w - n
    mx2 = np.concatenate([mx, np.zeros(pad, np.float32)]).reshape(rows, w)
    my2 = np.concatenate([my, np.zeros(pad, np.float32)]).reshape(rows, w)
    out = np.empty((rows, w) + src.shape[2:], np.float32)
    for r in range(0, rows, 8192):
        out[r : r + 8192] = cv2.remap(
            src, mx2[r : r + 8192], my2[r : r + 8192], cv2.INTER_CUBIC,
            borderMode=cv2.BORDER_REFLECT_101,
        ).reshape(out[r : r + 8192].shape)
    return out.reshape((rows * w,) + src.shape[2:])[:n]


class _SceneModel:
    """Everything analytic about a scene (deterministic function of the config)."""

    def __init__(self, cfg: SyntheticConfig):
        self.cfg = cfg
        self.z0 = float(cfg.distance)
        s = cfg.distance / 60.0  # lateral sizes scale with the distance so the view looks alike
        self.s = s
        geo = np.random.default_rng([cfg.seed, 1])
        # static dome + folds (random directions and phases; fixed amplitudes so slopes stay gentle)
        self.dome_c = np.array([5.0, -3.0]) * s
        self.dome_a, self.dome_sigma = -7.0 * s, 32.0 * s
        amps = np.array([0.8, 0.45, 0.25]) * s
        waves = np.array([38.0, 24.0, 15.0]) * s
        ang = geo.uniform(0, np.pi, 3)
        self.fold_k = np.stack([np.cos(ang), np.sin(ang)], 1) * (2 * np.pi / waves)[:, None]
        self.fold_a = amps
        self.fold_phi = geo.uniform(0, 2 * np.pi, 3)
        # breathing
        self.breath_a = 1.5 * s * cfg.deformation
        self.breath_expand = 0.015 * cfg.deformation
        self.breath_cycles = 2.0
        self.breath_k = 2 * np.pi / (55.0 * s)
        self.breath_phi = geo.uniform(0, 2 * np.pi)
        # pulled bump (towards the camera = negative h), held by the tool
        self.bump_c0 = np.array([2.0, 1.0]) * s
        self.bump_dir = np.array([0.8, 0.6])
        self.bump_travel = 5.0 * s * cfg.deformation
        self.bump_a = -4.0 * s * cfg.deformation
        self.bump_sigma = 10.0 * s
        self.drag = 0.8  # fraction of the bump travel the tissue under the tool follows
        # texture noise (material-attached)
        tex = np.random.default_rng([cfg.seed, 2])
        ext = 150.0 * s  # far beyond any view (the texture mirrors beyond)
        self.n_low = _Noise(tex, 16.0 * s, ext)
        self.n_mid = _Noise(tex, 6.0 * s, ext)
        self.n_fine = _Noise(tex, 1.6 * s, ext)
        self.n_fine2 = _Noise(tex, 0.8 * s, ext)
        self.n_vein = _Noise(tex, 9.0 * s, ext)
        self.n_vein_w = _Noise(tex, 3.0 * s, ext)
        self.n_cap = _Noise(tex, 4.0 * s, ext)
        self.n_cap_w = _Noise(tex, 1.3 * s, ext)
        self.n_fat = _Noise(tex, 12.0 * s, ext)
        self.n_bump = _Noise(tex, 1.2 * s, ext)
        self.bump_scale = 0.05 * s  # bump-map height (mm) per unit of n_bump
        self.n_mod = _Noise(tex, 7.0 * s, ext)
        self.n_mod2 = _Noise(tex, 5.0 * s, ext)

    # -- deformation (t is a scalar time) -------------------------------------------------------
    def _bump_center(self, t: float) -> np.ndarray:
        return self.bump_c0 + self.bump_dir * (self.bump_travel * float(_smoothstep(t)))

    def _breath(self, t: float) -> float:
        return float(0.5 - 0.5 * np.cos(2 * np.pi * self.breath_cycles * t))

    def height(self, x, y, t: float, grad: bool = False):
        """h(x, y, t) in mm (z = distance + h); with ``grad`` also returns (dh/dx, dh/dy)."""
        dx, dy = x - self.dome_c[0], y - self.dome_c[1]
        g = self.dome_a * np.exp(-(dx * dx + dy * dy) * (0.5 / self.dome_sigma**2))
        h = g.copy()
        if grad:
            hx = -g * dx / self.dome_sigma**2
            hy = -g * dy / self.dome_sigma**2
        for k, a, p in zip(self.fold_k, self.fold_a, self.fold_phi):
            sn, cs = _sincos(k[0] * x + k[1] * y + p)
            h += a * sn
            if grad:
                c = a * cs
                hx += c * k[0]
                hy += c * k[1]
        b = self.breath_a * self._breath(t)
        if b != 0.0:
            sn, cs = _sincos(self.breath_k * x + self.breath_phi)
            h += b * (1.0 + 0.25 * sn)
            if grad:
                hx += b * 0.25 * self.breath_k * cs
        amp = self.bump_a * float(_smoothstep(1.6 * t))
        if amp != 0.0:
            c = self._bump_center(t)
            bx, by = x - c[0], y - c[1]
            g = amp * np.exp(-(bx * bx + by * by) * (0.5 / self.bump_sigma**2))
            h += g
            if grad:
                hx -= g * bx / self.bump_sigma**2
                hy -= g * by / self.bump_sigma**2
        return (h, hx, hy) if grad else h

    def displacement(self, x, y, t: float):
        """Lateral displacement u(x, y, t) (Eulerian, world coordinates) of the tissue since t = 0."""
        b = self._breath(t) * self.breath_expand
        ux, uy = b * x, b * y
        d = self.bump_travel * float(_smoothstep(t)) * self.drag
        if d != 0.0:
            c = self._bump_center(t)
            bx, by = x - c[0], y - c[1]
            g = np.exp(-(bx * bx + by * by) * (0.5 / (1.2 * self.bump_sigma) ** 2)) * d
            ux = ux + g * self.bump_dir[0]
            uy = uy + g * self.bump_dir[1]
        return ux, uy

    def normals(self, x, y, t: float) -> np.ndarray:
        """Unit normals [3,...] of the surface, pointing towards -z (the camera side)."""
        _, hx, hy = self.height(x, y, t, grad=True)
        return _normals_from_grad(hx, hy)

    def intersect(
        self,
        o: np.ndarray,
        d: np.ndarray,
        t: float,
        s0: Optional[np.ndarray] = None,
        tol: float = 2e-3,
        max_iter: int = 50,
    ):
        """Where the rays o + s d (o [3], d [3,M] channel-first) meet the surface at time t (Newton).

        Returns (s, dh/dx, dh/dy), each [M]: the ray parameter (the camera depth when d is a camera
        direction of z = 1 rotated to world) and the height-field gradient at the hit (evaluated at the
        last iterate, within ``tol``: exact to ~1e-6 for normals). ``s0`` is an optional starting guess
        (e.g. the previous frame's depth). Newton converges quadratically: with curvatures below
        ~0.1/mm the error after a step δ is below 0.1 δ², so stopping once every step is below ``tol``
        = 2e-3 mm leaves errors below ~1e-6 mm (the float32 trig noise level).
        """
        o = np.asarray(o, np.float64)
        m = d.shape[1]
        if m > _CHUNK:
            parts = [
                self.intersect(o, d[:, c : c + _CHUNK], t, None if s0 is None else
                               np.asarray(s0).reshape(-1)[c : c + _CHUNK], tol, max_iter)
                for c in range(0, m, _CHUNK)
            ]
            return tuple(np.concatenate([p[k] for p in parts]) for k in range(3))
        dx, dy, dz = (np.ascontiguousarray(d[k], dtype=np.float64) for k in range(3))
        s = (self.z0 - o[2]) / dz if s0 is None else np.array(s0, np.float64).reshape(-1)
        gx, gy = np.zeros_like(s), np.zeros_like(s)
        idx = np.arange(s.size)
        sa = s.copy()
        for _ in range(max_iter):
            x = o[0] + sa * dx
            y = o[1] + sa * dy
            h, hx, hy = self.height(x, y, t, grad=True)
            step = (self.z0 + h - o[2] - sa * dz) / (hx * dx + hy * dy - dz)
            sa = sa - step
            s[idx], gx[idx], gy[idx] = sa, hx, hy
            keep = np.abs(step) > tol
            if not keep.any():
                break
            idx, dx, dy, dz, sa = idx[keep], dx[keep], dy[keep], dz[keep], sa[keep]
        else:  # pragma: no cover - slopes are bounded, so this does not happen
            raise RuntimeError("ray/height-field intersection did not converge")
        return s, gx, gy

    # -- texture -------------------------------------------------------------------------------
    def albedo(self, X, Y) -> list:
        """Tissue albedo at material coordinates: [r, g, b], float32 arrays shaped like X."""
        X, Y = np.broadcast_arrays(np.asarray(X), np.asarray(Y))
        if X.size > _CHUNK:
            x, y = X.reshape(-1), Y.reshape(-1)
            parts = [self._albedo(x[c : c + _CHUNK], y[c : c + _CHUNK]) for c in range(0, x.size, _CHUNK)]
            return [np.concatenate([p[k] for p in parts]).reshape(X.shape) for k in range(3)]
        return self._albedo(X, Y)

    def _albedo(self, X, Y) -> list:
        low = self.n_low(X, Y)
        mid = self.n_mid(X, Y)
        fine = 1.0 + 0.07 * (0.6 * self.n_fine(X, Y) + 0.4 * self.n_fine2(X, Y))
        w = 1.0 / (1.0 + np.exp(-(1.3 * low + 0.6 * mid)))  # pink ... deep red
        fat = np.clip((self.n_fat(X, Y) - 1.0) * 1.5, 0.0, 1.0) * 0.55  # pale yellowish fat/fascia
        blot = np.clip((mid - 1.1) * 1.2, 0.0, 0.6)  # darker, bruise-like blotches
        # vessels: zero crossings of warped noise (veins) and finer capillaries; their strength is
        # modulated by slow noise so that the closed contours break into branching segments
        vein = self.n_vein(X, Y) + 0.35 * self.n_vein_w(X, Y)
        wv = np.exp(-((vein / 0.09) ** 2)) * 0.85 * np.clip(0.35 + 0.8 * self.n_mod(X, Y), 0.0, 1.0)
        cap = self.n_cap(X, Y) + 0.3 * self.n_cap_w(X, Y)
        wc = np.exp(-((cap / 0.08) ** 2)) * 0.35 * np.clip(0.2 + self.n_mod2(X, Y), 0.0, 1.0)
        out = []
        for pink, deep, fat_c, blot_c, vein_c, cap_c in zip(
            (0.93, 0.52, 0.50), (0.72, 0.22, 0.22), (0.95, 0.78, 0.55), (0.25, 0.45, 0.35),
            (0.45, 0.07, 0.14), (0.58, 0.12, 0.17),
        ):
            c = pink + (deep - pink) * w
            c = c + (fat_c - c) * fat
            c = c * (1.0 - blot * blot_c) * fine
            c = c + (vein_c - c) * wv
            c = c + (cap_c - c) * wc
            out.append(np.clip(c, 0.0, 1.0).astype(np.float32))
        return out

    # -- camera --------------------------------------------------------------------------------
    def c2w(self, t: float) -> np.ndarray:
        m = np.eye(4)
        if self.cfg.camera == "moving":
            a = self.cfg.camera_motion
            s = self.s
            tr = np.array([3.5 * t, -2.0 * np.sin(np.pi * t), 2.5 * t * t]) * s * a
            w = np.deg2rad(np.array([2.5 * np.sin(np.pi * t), -3.0 * t, 2.0 * t * t])) * a
            m[:3, :3] = _rodrigues(w)
            m[:3, 3] = tr
        return m

    # -- tool ----------------------------------------------------------------------------------
    def tool_capsules(self, t: float) -> list[tuple[np.ndarray, np.ndarray, float]]:
        """Capsules (a, b, radius) in world space: shaft, then the two jaws, at time t."""
        s = self.s
        c = self._bump_center(t)
        clearance = 1.2 * s
        tip_z = self.z0 + float(self.height(np.float64(c[0]), np.float64(c[1]), t)) - clearance
        sway = np.deg2rad(8.0) * np.sin(2 * np.pi * 0.75 * t)
        az = np.arctan2(0.6, 0.8) + sway
        elev = np.deg2rad(38.0 + 6.0 * np.sin(2 * np.pi * 0.5 * t))
        axis = np.array([np.cos(az) * np.cos(elev), np.sin(az) * np.cos(elev), -np.sin(elev)])
        tip = np.array([c[0], c[1], tip_z])
        jaw_len = 7.0 * s
        wrist = tip + axis * jaw_len
        shaft_end = wrist + axis * (self.z0 * 1.5)
        side = np.cross(axis, [0.0, 0.0, 1.0])
        side /= np.linalg.norm(side)
        up = np.cross(side, axis)  # towards the camera, mostly
        opening = (1.0 + 1.4 * (0.5 - 0.5 * np.cos(2 * np.pi * 1.5 * t))) * s
        jaw1 = tip + side * opening - up * 0.4 * s
        jaw2 = tip - side * opening - up * 0.4 * s
        return [
            (wrist, shaft_end, 2.6 * s),
            (wrist, jaw1, 0.75 * s),
            (wrist, jaw2, 0.75 * s),
        ]


class _Texture:
    """Albedo and bump-map gradient at material coordinates, for shading.

    With a ``box`` the procedural texture is tabulated once on a texel grid over that material box
    (texel = ``texel`` mm, half the finest pixel footprint) and resampled bicubically per frame, which
    is several times cheaper than evaluating it per pixel when many frames see the same tissue.
    Without, it is evaluated per pixel.
    """

    MAX_SIDE = 6000

    def __init__(self, model: "_SceneModel", box=None, texel: float = 0.0):
        self.model = model
        self.atlas = box is not None
        if not self.atlas:
            return
        xmin, xmax, ymin, ymax = box
        texel = max(texel, (xmax - xmin) / (self.MAX_SIDE - 16), (ymax - ymin) / (self.MAX_SIDE - 16))
        self.texel = texel
        self.x0 = (np.floor(xmin / texel) - 6) * texel
        self.y0 = (np.floor(ymin / texel) - 6) * texel
        nx = int(np.ceil((xmax - self.x0) / texel)) + 7
        ny = int(np.ceil((ymax - self.y0) / texel)) + 7
        X, Y = np.meshgrid(self.x0 + texel * np.arange(nx), self.y0 + texel * np.arange(ny))
        self.albedo = np.stack(model.albedo(X, Y), -1)  # [ny, nx, 3] float32
        gy, gx = np.gradient(model.n_bump(X, Y), texel)
        self.bump_grad = (np.stack([gx, gy], -1) * model.bump_scale).astype(np.float32)

    @staticmethod
    def n_texels(box, texel: float) -> int:
        return int((box[1] - box[0]) / texel + 13) * int((box[3] - box[2]) / texel + 13)

    def sample(self, X: np.ndarray, Y: np.ndarray):
        """Albedo [3,M] and bump gradient [2,M] at material points X, Y [M]."""
        if not self.atlas:
            m = self.model
            e = 0.25 * m.s
            gx = (m.n_bump(X + e, Y) - m.n_bump(X - e, Y)) * (m.bump_scale / (2 * e))
            gy = (m.n_bump(X, Y + e) - m.n_bump(X, Y - e)) * (m.bump_scale / (2 * e))
            return np.stack(m.albedo(X, Y)), np.stack([gx, gy])
        mx = ((X - self.x0) / self.texel).astype(np.float32).reshape(-1)
        my = ((Y - self.y0) / self.texel).astype(np.float32).reshape(-1)
        alb = np.clip(_remap_points(self.albedo, mx, my), 0.0, 1.0)
        grad = _remap_points(self.bump_grad, mx, my)
        return np.ascontiguousarray(alb.T), np.ascontiguousarray(grad.T)


def _ray_capsule(o, d, a, b, r):
    """Ray parameter of the first hit of rays o + s d (o [3], d [3,M]) with a capsule; inf if none."""
    ba = b - a
    oa = o - a
    baba = ba @ ba
    bard = ba @ d
    baoa = oa @ ba
    rdoa = oa @ d
    oaoa = oa @ oa
    rdrd = np.einsum("ij,ij->j", d, d)
    qa = baba * rdrd - bard * bard
    qb = baba * rdoa - baoa * bard
    qc = baba * oaoa - baoa * baoa - r * r * baba
    disc = qb * qb - qa * qc
    with np.errstate(invalid="ignore", divide="ignore"):
        sc = (-qb - np.sqrt(np.maximum(disc, 0))) / qa
        y = baoa + sc * bard
        body = (disc >= 0) & (qa > 0) & (y > 0) & (y < baba) & (sc > 0)
        s = np.where(body, sc, np.inf)
        for cen in (a, b):  # spherical caps
            oc = o - cen
            cb = oc @ d
            cd = cb * cb - rdrd * (oc @ oc - r * r)
            ss = (-cb - np.sqrt(np.maximum(cd, 0))) / rdrd
            s = np.where((cd >= 0) & (ss > 0) & (ss < s), ss, s)
    return s


def _capsule_pixel_box(a, b, r, c2w, cfg: SyntheticConfig):
    """Pixel window (v0, v1, u0, u1) outside which no pixel-centre ray can hit the capsule.

    None if no ray can hit it. Conservative: the segment is clipped to the view frustum expanded by
    ``r`` and each sphere of the capsule is bounded by its projected radius bound
    ``f r (1 + |x/z|) / (z - r)``; falls back to the whole image when the capsule comes near the camera.
    """
    W, H, f = cfg.width, cfg.height, cfg.fx
    R, C = c2w[:3, :3], c2w[:3, 3]
    A, B = (a - C) @ R, (b - C) @ R  # camera coordinates
    full = (0, H, 0, W)
    lo, hi = 0.0, 1.0
    planes = []
    for axis, n_pix, c0 in ((0, W, W / 2.0), (1, H, H / 2.0)):
        tmin, tmax = (0.5 - c0) / f, (n_pix - 0.5 - c0) / f
        # inside: (P_axis - tmin P_z) / |.| >= -r and (tmax P_z - P_axis) / |.| >= -r
        planes.append((np.eye(3)[axis] - tmin * np.eye(3)[2], np.hypot(1.0, tmin)))
        planes.append((tmax * np.eye(3)[2] - np.eye(3)[axis], np.hypot(1.0, tmax)))
    for nv, norm in planes:
        fa, fb = nv @ A / norm + r, nv @ B / norm + r  # >= 0 inside
        if fa < 0 and fb < 0:
            return None
        if fa < 0 or fb < 0:
            tau = fa / (fa - fb)
            if fa < 0:
                lo = max(lo, tau)
            else:
                hi = min(hi, tau)
    if lo > hi:
        return None
    P0, P1 = A + lo * (B - A), A + hi * (B - A)
    zmin = min(P0[2], P1[2])
    if zmin <= r + 0.5:
        return full
    box = []
    for axis, n_pix, c0 in ((1, H, H / 2.0), (0, W, W / 2.0)):
        q = np.array([P0[axis] / P0[2], P1[axis] / P1[2]])
        rad = r * (1.0 + np.abs(q).max()) / (zmin - r)
        pmin, pmax = f * (q.min() - rad) + c0, f * (q.max() + rad) + c0
        i0 = int(np.clip(np.floor(pmin - 0.5), 0, n_pix))
        i1 = int(np.clip(np.ceil(pmax - 0.5) + 1, 0, n_pix))
        box += [i0, i1]
    if box[0] >= box[1] or box[2] >= box[3]:
        return None
    return tuple(box)


def _closest_on_segment(p, a, b):
    """Closest points [3,M] on segment ab to points p [3,M]."""
    ba = b - a
    tau = np.clip((ba @ (p - a[:, None])) / (ba @ ba), 0.0, 1.0)
    return a[:, None] + tau * ba[:, None]


# ---------------------------------------------------------------------------------------------------
# Generation


def _pixel_rays(cfg: SyntheticConfig) -> np.ndarray:
    """Camera-space ray directions [3,H*W] (row-major pixels) with z = 1, so ray parameter = depth."""
    f = cfg.fx
    u = (np.arange(cfg.width) + 0.5 - cfg.width / 2.0) / f
    v = (np.arange(cfg.height) + 0.5 - cfg.height / 2.0) / f
    uu, vv = np.meshgrid(u, v)
    return np.stack([uu.ravel(), vv.ravel(), np.ones(uu.size)])


def _check_single_hit(model: "_SceneModel", rays_cam: np.ndarray, c2w: np.ndarray) -> None:
    """Raise ValueError unless every pixel ray meets the height field exactly once.

    That holds when |grad h| * tan(angle of the ray to the world z axis) < 1 (then depth minus surface
    is strictly monotone along the ray). The analytic slope bound settles it for usual views; for very
    wide or tilted views the actual slopes are sampled over the region seen.
    """
    cfg = model.cfg
    w, h = cfg.width, cfg.height
    corner_idx = [0, w - 1, (h - 1) * w, h * w - 1]
    # the steepest ray is a corner one (the sub-level sets of the angle are convex cones)
    d = np.einsum("nij,jk->nik", c2w[:, :3, :3], rays_cam[:, corner_idx])  # [N,3,4]
    tan_max = float((np.hypot(d[:, 0], d[:, 1]) / d[:, 2]).max()) if (d[:, 2] > 0).all() else np.inf
    if _max_slope(cfg.deformation) * tan_max < 0.97:
        return
    slope = np.inf
    if np.isfinite(tan_max):
        reach = (model.z0 + 20 * model.s) * tan_max + np.abs(c2w[:, :2, 3]).max() + 5 * model.s
        n = int(min(2 * reach / (0.5 * model.s), 300)) + 1
        x, y = np.meshgrid(*(2 * [np.linspace(-reach, reach, n)]))
        slope = 0.0
        for t in np.linspace(0.0, 1.0, 7):
            _, hx, hy = model.height(x, y, float(t), grad=True)
            slope = max(slope, float(np.hypot(hx, hy).max()))
        # sampling margin: curvatures are < 0.1/mm (space) and slopes change slowly in time
        slope += 0.1 * (2 * reach / (n - 1)) + 0.02
    if slope * tan_max >= 0.97:
        raise ValueError(
            f"the view is too wide (focal_factor={cfg.focal_factor}, {w}x{h}, camera={cfg.camera}) for "
            f"deformation={cfg.deformation}: rays would graze the tissue folds; raise focal_factor or "
            "lower deformation / camera_motion"
        )


def _gauss_blur_unit(noise: np.ndarray, sigma: float) -> np.ndarray:
    """Blur white noise and rescale it back to unit std."""
    k = cv2.getGaussianKernel(int(2 * np.ceil(3 * sigma) + 1), sigma).astype(np.float64)
    out = cv2.sepFilter2D(noise, -1, k, k, borderType=cv2.BORDER_REFLECT_101)
    return out / float(np.sum(k**2))  # std of separable blur of unit white noise = sum(k^2)


def _render_frames(model: "_SceneModel", times: np.ndarray, c2w: np.ndarray, rays_cam: np.ndarray,
                   width: int, height: int, focal: float, pixel_box, img_rng: np.random.Generator) -> dict:
    """Shade frames of one camera (head light at its centre): images, geometry and tool, as arrays.

    ``rays_cam`` [3, H*W] are camera-space pixel rays with z = 1 (so the ray parameter is the depth),
    ``pixel_box(a, b, radius, c2w_i)`` bounds the pixels a tool capsule can cover (None = none),
    ``focal`` sets the texel size of the texture atlas.
    """
    cfg = model.cfg
    N, H, W = len(times), height, width
    images = np.empty((N, H, W, 3), np.float32)
    albedo_all = np.empty((N, H, W, 3), np.float32)
    normals_all = np.empty((N, H, W, 3), np.float32)
    gt_depth = np.empty((N, H, W), np.float32)
    tool_masks = np.zeros((N, H, W), bool)
    tool_depth = np.zeros((N, H, W), np.float32)
    spec_masks = np.zeros((N, H, W), bool)

    # pass 1: geometry (ray/surface hits, normals, material coordinates)
    mat = np.empty((N, 2, H * W), np.float32)
    for i, t in enumerate(times):
        R, C = c2w[i, :3, :3], c2w[i, :3, 3]
        d = R @ rays_cam  # world directions; camera depth = ray parameter
        s0 = None if i == 0 else gt_depth[i - 1].ravel()
        s, hx, hy = model.intersect(C, d, float(t), s0=s0)
        x, y = C[0] + s * d[0], C[1] + s * d[1]
        ux, uy = model.displacement(x, y, float(t))
        mat[i, 0], mat[i, 1] = x - ux, y - uy
        gt_depth[i] = s.reshape(H, W)
        normals_all[i] = _normals_from_grad(hx, hy).T.reshape(H, W, 3)

    # pass 2: the texture, tabulated over the material region seen (texel = half the finest pixel
    # footprint) when that is cheaper than evaluating it per pixel
    texel = 0.5 * float(gt_depth.min()) / focal
    box = (float(mat[:, 0].min()), float(mat[:, 0].max()), float(mat[:, 1].min()), float(mat[:, 1].max()))
    use_atlas = _Texture.n_texels(box, texel) < 0.6 * N * H * W
    texture = _Texture(model, box if use_atlas else None, texel)

    # pass 3: shading and tool
    for i, t in enumerate(times):
        t = float(t)
        R, C = c2w[i, :3, :3], c2w[i, :3, 3]
        d = R @ rays_cam
        s = gt_depth[i].ravel().astype(np.float64)
        alb, bgrad = texture.sample(mat[i, 0], mat[i, 1])
        # shading normal = geometric normal tilted by the bump map
        ns = np.ascontiguousarray(normals_all[i].reshape(-1, 3).T, dtype=np.float64)
        ns[:2] += bgrad
        ns /= np.sqrt(np.einsum("ij,ij->j", ns, ns))
        # head light at C: L = -d/|d| (the hit point is C + s d), r = s |d|
        dn = np.sqrt(np.einsum("ij,ij->j", d, d))
        ndl = np.clip(-np.einsum("ij,ij->j", ns, d) / dn, 0.0, 1.0)
        fall = (model.z0 / (s * dn)) ** 2
        rgb = alb * (0.06 + 0.98 * ndl * fall)
        spec = (0.9 * ndl**180 * fall) if cfg.specular else np.zeros_like(ndl)
        spec_mask = spec > 0.25

        if cfg.tool:
            caps = model.tool_capsules(t)
            st = np.full((H, W), np.inf)
            which = np.full((H, W), -1)
            d_img = d.reshape(3, H, W)
            for k, (a, b, rad) in enumerate(caps):
                box = pixel_box(a, b, rad, c2w[i])
                if box is None:
                    continue
                v0, v1, u0, u1 = box
                sk = _ray_capsule(C, d_img[:, v0:v1, u0:u1].reshape(3, -1), a, b, rad)
                sk = sk.reshape(v1 - v0, u1 - u0)
                win, wwin = st[v0:v1, u0:u1], which[v0:v1, u0:u1]
                closer = sk < win
                win[closer] = sk[closer]
                wwin[closer] = k
            st, which = st.ravel(), which.ravel()
            idx = np.nonzero(np.isfinite(st) & (st < s))[0]
            if idx.size:
                dt = d[:, idx]
                Pt = C[:, None] + st[idx] * dt
                nt = np.empty_like(Pt)
                for k, (a, b, rad) in enumerate(caps):
                    sel = which[idx] == k
                    if sel.any():
                        nt[:, sel] = (Pt[:, sel] - _closest_on_segment(Pt[:, sel], a, b)) / rad
                dtn = np.sqrt(np.einsum("ij,ij->j", dt, dt))
                cos_t = np.clip(-np.einsum("ij,ij->j", nt, dt) / dtn, 0.0, 1.0)
                ft = (model.z0 / (st[idx] * dtn)) ** 2
                grey = np.where(which[idx] == 0, 0.36, 0.30) * (0.08 + 0.55 * cos_t * ft)
                rgb[:, idx] = np.array([[0.97], [1.0], [1.04]]) * grey
                spec[idx] = (0.7 * cos_t**25 * ft) if cfg.specular else 0.0
                spec_mask[idx] = spec[idx] > 0.25
                tool_masks[i].ravel()[idx] = True
                tool_depth[i].ravel()[idx] = st[idx]

        img = rgb + spec
        if cfg.image_noise > 0:
            img = img + img_rng.standard_normal(img.shape) * cfg.image_noise
        images[i] = (np.round(np.clip(img, 0.0, 1.0) * 255.0) / 255.0).T.reshape(H, W, 3)
        albedo_all[i] = alb.T.reshape(H, W, 3)
        spec_masks[i] = spec_mask.reshape(H, W)
    return {"images": images, "albedo": albedo_all, "normals": normals_all, "gt_depth": gt_depth,
            "tool_masks": tool_masks, "tool_depth": tool_depth, "specular_masks": spec_masks}


def generate(config: Optional[SyntheticConfig] = None) -> SyntheticScene:
    """Generate the scene described by ``config`` (default: 160x128, 24 frames, fixed camera)."""
    cfg = SyntheticConfig() if config is None else config
    cfg.__post_init__()  # re-validate in case fields were changed after construction
    model = _SceneModel(cfg)
    N, H, W = cfg.n_frames, cfg.height, cfg.width
    f = cfg.fx
    times = cfg.times()
    c2w = np.stack([model.c2w(float(t)) for t in times])
    rays_cam = _pixel_rays(cfg)
    _check_single_hit(model, rays_cam, c2w)

    noise_rng = np.random.default_rng([cfg.seed, 3])
    hole_rng = np.random.default_rng([cfg.seed, 4])
    img_rng = np.random.default_rng([cfg.seed, 5])
    px = W / 160.0  # pixel scale relative to the default size
    strip = int(round(cfg.left_strip * W))

    views = _render_frames(model, times, c2w, rays_cam, W, H, f,
                           lambda a, b, r, m: _capsule_pixel_box(a, b, r, m, cfg), img_rng)
    gt_depth, tool_masks, tool_depth = views["gt_depth"], views["tool_masks"], views["tool_depth"]
    spec_masks = views["specular_masks"]

    # noisy stereo-like depth
    depth = np.empty((N, H, W), np.float32)
    for i in range(N):
        vis = np.where(tool_masks[i], tool_depth[i], gt_depth[i]).astype(np.float64)
        eps = _gauss_blur_unit(noise_rng.standard_normal((H, W)), 0.8 * px)
        noisy = vis + eps * cfg.depth_noise * (vis / 60.0) ** 2
        invalid = np.zeros((H, W), bool)
        invalid[:, :strip] = True
        if cfg.holes:
            # pixels hidden from the right camera (ordering violations of right-image columns)
            xr = (np.arange(W) + 0.5)[None, :] - f * cfg.baseline / vis
            right_min = np.minimum.accumulate(xr[:, ::-1], axis=1)[:, ::-1]
            right_min = np.concatenate([right_min[:, 1:], np.full((H, 1), np.inf)], axis=1)
            invalid |= xr > right_min - 0.5
            if spec_masks[i].any():
                rad = max(1, int(round(2 * px)))
                ker = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * rad + 1, 2 * rad + 1))
                invalid |= cv2.dilate(spec_masks[i].astype(np.uint8), ker) > 0
            blobs = np.zeros((H, W), np.uint8)
            for _ in range(int(hole_rng.poisson(4))):
                cxb = int(hole_rng.uniform(0, W))
                cyb = int(hole_rng.uniform(0, H))
                ax = (max(1, int(round(hole_rng.uniform(1.5, 4.5) * px))),
                      max(1, int(round(hole_rng.uniform(1.5, 4.5) * px))))
                cv2.ellipse(blobs, (cxb, cyb), ax, float(hole_rng.uniform(0, 180)), 0, 360, 1, -1)
            invalid |= blobs > 0
        invalid |= noisy <= 0
        depth[i] = np.where(invalid, 0.0, noisy).astype(np.float32)

    return SyntheticScene(
        config=cfg,
        images=views["images"],
        tool_masks=tool_masks,
        depth=depth,
        gt_depth=gt_depth,
        K=cfg.K,
        c2w=c2w,
        times=times,
        albedo=views["albedo"],
        normals=views["normals"],
        specular_masks=spec_masks,
        tool_depth=tool_depth,
        _model=model,
    )


@dataclass
class SyntheticView:
    """One extra camera's view of a generated scene (:func:`render_view`). Indexed by frame first."""

    images: np.ndarray
    """[N,H,W,3] float32 in [0,1], quantised to multiples of 1/255."""
    gt_depth: np.ndarray
    """[N,H,W] float32 mm: exact tissue depth along the camera's z axis (also behind the tool)."""
    tool_masks: np.ndarray
    """[N,H,W] bool, True = tool."""
    tool_depth: np.ndarray
    """[N,H,W] float32 mm, tool depth, 0 where there is no tool."""
    specular_masks: np.ndarray
    """[N,H,W] bool, highlights."""
    K: np.ndarray
    """[3,3] intrinsics (pixel centres at +0.5)."""
    c2w: np.ndarray
    """[N,4,4] camera-to-world of this view."""

    @property
    def visible_depth(self) -> np.ndarray:
        return np.where(self.tool_masks, self.tool_depth, self.gt_depth)


def render_view(
    scene: SyntheticScene,
    K: np.ndarray,
    c2w: np.ndarray,
    width: Optional[int] = None,
    height: Optional[int] = None,
    dist: Optional[np.ndarray] = None,
    frames: Optional[np.ndarray] = None,
    noise_stream: int = 6,
) -> SyntheticView:
    """Render the scene's tissue and tool from another camera (e.g. the right camera of a stereo rig).

    Args:
        K: 3x3 intrinsics with pixel centres at +0.5 (endogs convention; OpenCV's principal point is
            0.5 px smaller).
        c2w: [N,4,4] (or one [4,4]) camera-to-world per rendered frame (OpenCV axes).
        width, height: image size; default the scene's.
        dist: OpenCV distortion (k1, k2, p1, p2[, k3]) of this camera: pixel (u, v) shows the ray of the
            undistorted point, as a real lens with that calibration would.
        frames: which frames (times) to render; default all, matched one-to-one with ``c2w``.
        noise_stream: seed stream of the image noise (only with ``config.image_noise`` > 0).

    The head light sits at this camera's centre (a light per optical channel); shading, highlights
    and the tool follow the same model as :func:`generate`, so a view with the scene's own K and c2w
    reproduces ``scene.images``.
    """
    cfg = scene.config
    model = _model_of(scene)
    W = cfg.width if width is None else int(width)
    H = cfg.height if height is None else int(height)
    frames = np.arange(scene.n_frames) if frames is None else np.asarray(frames, int).reshape(-1)
    c2w = np.asarray(c2w, np.float64)
    if c2w.shape == (4, 4):
        c2w = np.repeat(c2w[None], len(frames), axis=0)
    if c2w.shape != (len(frames), 4, 4):
        raise ValueError(f"c2w must be [{len(frames)},4,4] (one per frame), got {c2w.shape}")
    K = np.asarray(K, np.float64)
    u, v = np.meshgrid(np.arange(W, dtype=np.float64), np.arange(H, dtype=np.float64))  # OpenCV pixel coords
    if dist is None or not np.any(dist):
        x = (u + 0.5 - K[0, 2]) / K[0, 0]
        y = (v + 0.5 - K[1, 2]) / K[1, 1]
    else:
        Kcv = K.copy()
        Kcv[:2, 2] -= 0.5
        pts = np.stack([u.ravel(), v.ravel()], -1).reshape(-1, 1, 2)
        crit = (cv2.TERM_CRITERIA_COUNT | cv2.TERM_CRITERIA_EPS, 50, 1e-12)
        und = cv2.undistortPoints(pts, Kcv, np.asarray(dist, np.float64).reshape(-1), R=None, P=None, criteria=crit)
        x, y = und[:, 0, 0], und[:, 0, 1]
    rays_cam = np.stack([np.ravel(x), np.ravel(y), np.ones(H * W)])
    if (W, H) == (cfg.width, cfg.height):  # the check's corner rays assume the scene's image size
        _check_single_hit(model, rays_cam, c2w)
    full = (0, H, 0, W)
    out = _render_frames(model, scene.times[frames], c2w, rays_cam, W, H, float(K[0, 0]),
                         lambda a, b, r, m: full, np.random.default_rng([cfg.seed, noise_stream]))
    return SyntheticView(images=out["images"], gt_depth=out["gt_depth"], tool_masks=out["tool_masks"],
                         tool_depth=out["tool_depth"], specular_masks=out["specular_masks"], K=K, c2w=c2w)


def _model_of(scene_or_config: Union[SyntheticScene, SyntheticConfig]) -> _SceneModel:
    if isinstance(scene_or_config, SyntheticScene):
        if scene_or_config._model is None:
            scene_or_config._model = _SceneModel(scene_or_config.config)
        return scene_or_config._model
    return _SceneModel(scene_or_config)


def surface_z(scene: Union[SyntheticScene, SyntheticConfig], x, y, t: float) -> np.ndarray:
    """World z (mm) of the true tissue surface above world (x, y) at time t: z = distance + h(x, y, t)."""
    m = _model_of(scene)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    return m.z0 + m.height(x, y, float(t))


def material_coords(scene: Union[SyntheticScene, SyntheticConfig], x, y, t: float):
    """Material coordinates (X, Y) of the tissue at world (x, y) at time t; equal to (x, y) at t = 0.

    The texture is a function of (X, Y): a tissue point keeps its material coordinates over time.
    """
    m = _model_of(scene)
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    ux, uy = m.displacement(x, y, float(t))
    return x - ux, y - uy


def tissue_points(
    scene: SyntheticScene,
    t: float,
    stride: int = 1,
    frame: Optional[int] = None,
    margin: float = 0.0,
) -> np.ndarray:
    """World points [M,3] (float64, mm) of the true tissue surface at time ``t``.

    The points are where the rays of a pixel grid (every ``stride``-th pixel centre) of a frame's camera
    meet the surface at time ``t``, i.e. a grid over the visible region (including behind the tool).
    ``frame`` defaults to the frame whose time is closest to ``t``. ``margin`` > 0 widens the grid by that
    fraction of the image on each side (to cover the surface just outside the view).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    cfg = scene.config
    m = _model_of(scene)
    if frame is None:
        frame = int(np.argmin(np.abs(scene.times - t)))
    c2w = scene.c2w[frame]
    lo_u, hi_u = -margin * cfg.width, (1 + margin) * cfg.width
    lo_v, hi_v = -margin * cfg.height, (1 + margin) * cfg.height
    u = np.arange(lo_u + 0.5, hi_u, stride)
    v = np.arange(lo_v + 0.5, hi_v, stride)
    uu, vv = np.meshgrid(u, v)
    d = np.stack([(uu.ravel() - cfg.width / 2) / cfg.fx, (vv.ravel() - cfg.height / 2) / cfg.fx,
                  np.ones(uu.size)])
    d = c2w[:3, :3] @ d
    s, _, _ = m.intersect(c2w[:3, 3], d, float(t))
    return (c2w[:3, 3, None] + s * d).T


# ---------------------------------------------------------------------------------------------------
# Writing


def _metadata(scene: SyntheticScene, layout: str) -> dict:
    cfg = scene.config
    return {
        "format_version": FORMAT_VERSION,
        "generator": _GENERATOR,
        "layout": layout,
        "depth_unit": "mm",
        "depth_png_scale": DEPTH_PNG_SCALE,
        "mask_polarity": "tool",
        "camera": cfg.camera,
        "principal_point": [float(scene.K[0, 2]), float(scene.K[1, 2])],
        "fx": float(scene.K[0, 0]),
        "fy": float(scene.K[1, 1]),
        "width": scene.width,
        "height": scene.height,
        "n_frames": scene.n_frames,
        "time_convention": "i/(N-1)",
        "config": {
            k: (v.item() if isinstance(v, np.generic) else v) for k, v in dataclasses.asdict(cfg).items()
        },
    }


def _write_json(path: Path, obj, indent: Optional[int] = 2) -> None:
    path.write_text(json.dumps(obj, indent=indent) + "\n")


def _imwrite(path: Path, arr: np.ndarray) -> None:
    if not cv2.imwrite(str(path), arr, [cv2.IMWRITE_PNG_COMPRESSION, 3]):
        raise OSError(f"cv2.imwrite failed for {path}")


def _to_bgr8(img: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.round(np.clip(img, 0, 1) * 255.0).astype(np.uint8)[..., ::-1])


def depth_to_png16(depth: np.ndarray) -> np.ndarray:
    """uint16 depth PNG values: round(depth_mm * 256), 0 = invalid (and clipped to 65535)."""
    return np.clip(np.round(np.asarray(depth, np.float64) * DEPTH_PNG_SCALE), 0, 65535).astype(np.uint16)


def _atomic_dir(root: Union[str, Path], overwrite: bool, fill) -> Path:
    """Run ``fill(tmp_dir)`` then move tmp_dir to ``root`` in one rename."""
    root = Path(root).absolute()
    if root.exists():
        if not root.is_dir():
            raise SceneExistsError("exists and is not a folder; choose another output path", root)
        if any(root.iterdir()) and not overwrite:
            raise SceneExistsError("already exists and is not empty; pass overwrite=True (--overwrite)", root)
    root.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp = root.parent / f".{root.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        fill(tmp)
        old = None
        if root.exists():
            old = root.parent / f".{root.name}.old-{tag}"
            os.rename(root, old)
        try:
            os.rename(tmp, root)
        except BaseException:
            if old is not None:
                os.rename(old, root)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def poses_bounds(scene: SyntheticScene) -> np.ndarray:
    """The (N,17) float64 ``poses_bounds.npy`` rows: [c2w 3x4 | hwf] row-major, then near, far.

    near/far are the min/max of the valid noisy depth as stored in the depth PNG (0 if none is valid).
    """
    N = scene.n_frames
    out = np.zeros((N, 17), np.float64)
    hwf = np.array([scene.height, scene.width, scene.K[0, 0]], np.float64)
    q = depth_to_png16(scene.depth).astype(np.float64) / DEPTH_PNG_SCALE
    for i in range(N):
        m = np.concatenate([scene.c2w[i, :3, :4], hwf[:, None]], axis=1)
        valid = q[i][q[i] > 0]
        near, far = (float(valid.min()), float(valid.max())) if valid.size else (0.0, 0.0)
        out[i, :15] = m.reshape(-1)
        out[i, 15:] = (near, far)
    return out


def write_endonerf(scene: SyntheticScene, root: Union[str, Path], overwrite: bool = False) -> Path:
    """Write ``scene`` in the EndoNeRF layout (atomically) and return ``root``.

    Layout::

        images/frame-%06d.color.png   RGB 8-bit
        depth/frame-%06d.depth.png    uint16, round(depth_mm * 256), 0 = invalid
        masks/frame-%06d.mask.png     uint8, 255 = tool, 0 = tissue
        gt_masks/frame-%06d.mask.png  same (evaluation masks)
        gt_depth/frame-%06d.depth.npy float32 [H,W] exact tissue depth (mm)
        poses_bounds.npy              (N,17) float64, c2w in OpenCV axes (no LLFF swap) + hwf, near, far
        endogs_scene.json             metadata
    """

    def fill(d: Path) -> None:
        for sub in ("images", "depth", "masks", "gt_masks", "gt_depth"):
            (d / sub).mkdir()
        png16 = depth_to_png16(scene.depth)
        for i in range(scene.n_frames):
            name = f"frame-{i:06d}"
            _imwrite(d / "images" / f"{name}.color.png", _to_bgr8(scene.images[i]))
            _imwrite(d / "depth" / f"{name}.depth.png", png16[i])
            mask = scene.tool_masks[i].astype(np.uint8) * 255
            _imwrite(d / "masks" / f"{name}.mask.png", mask)
            _imwrite(d / "gt_masks" / f"{name}.mask.png", mask)
            np.save(d / "gt_depth" / f"{name}.depth.npy", scene.gt_depth[i].astype(np.float32))
        np.save(d / "poses_bounds.npy", poses_bounds(scene))
        _write_json(d / "endogs_scene.json", _metadata(scene, "endonerf"))

    return _atomic_dir(root, overwrite, fill)


def reprojection_matrix(fx: float, cx: float, cy: float, baseline: float) -> np.ndarray:
    """Rectified-stereo Q: fl = Q[2,3], bl = 1/Q[3,2], disparity = fl*bl/depth."""
    return np.array(
        [[1.0, 0, 0, -cx], [0, 1.0, 0, -cy], [0, 0, 0, fx], [0, 0, 1.0 / baseline, 0]], np.float64
    )


def write_scared(scene: SyntheticScene, root: Union[str, Path], overwrite: bool = False) -> Path:
    """Write ``scene`` as a SCARED keyframe folder, MICCAI_challenge_preprocess style; return ``root``.

    Layout::

        data/left_finalpass/frame_data%06d.png      RGB 8-bit
        data/disparity/frame_data%06d.tiff          float32 disparity px = fl*bl/depth_mm, 0 = invalid
        data/frame_data/frame_data%06d.json         {"camera-calibration": {KL, KR, DL, DR, R, T=[-bl,0,0]},
                                                     "camera-pose": 4x4 world-to-camera (mm)}
        data/reprojection_data/frame_data%06d.json  {"reprojection-matrix": Q}
        data/gt_depth/frame_data%06d.npy            float32 exact tissue depth (mm)
        endogs_scene.json                           metadata + "baseline_mm"

    There are no tool masks (as in SCARED), though the tool is in the images and the depth.
    """
    import tifffile

    bl = float(scene.config.baseline)
    fl = float(scene.K[0, 0])
    Q = reprojection_matrix(fl, float(scene.K[0, 2]), float(scene.K[1, 2]), bl)
    K = scene.K.tolist()
    calib = {
        "KL": K,
        "KR": K,
        "DL": [0.0] * 5,
        "DR": [0.0] * 5,
        "R": np.eye(3).tolist(),
        "T": [-bl, 0.0, 0.0],
    }

    def fill(d: Path) -> None:
        data = d / "data"
        subs = ("left_finalpass", "disparity", "frame_data", "reprojection_data", "gt_depth")
        for sub in subs:
            (data / sub).mkdir(parents=True)
        for i in range(scene.n_frames):
            name = f"frame_data{i:06d}"
            _imwrite(data / "left_finalpass" / f"{name}.png", _to_bgr8(scene.images[i]))
            dep = scene.depth[i].astype(np.float64)
            with np.errstate(divide="ignore"):
                disp = np.where(dep > 0, fl * bl / dep, 0.0).astype(np.float32)
            tifffile.imwrite(data / "disparity" / f"{name}.tiff", disp)
            w2c = np.linalg.inv(scene.c2w[i])
            _write_json(data / "frame_data" / f"{name}.json",
                        {"camera-calibration": calib, "camera-pose": w2c.tolist()}, indent=None)
            _write_json(data / "reprojection_data" / f"{name}.json", {"reprojection-matrix": Q.tolist()},
                        indent=None)
            np.save(data / "gt_depth" / f"{name}.npy", scene.gt_depth[i].astype(np.float32))
        meta = _metadata(scene, "scared")
        meta["baseline_mm"] = bl
        _write_json(d / "endogs_scene.json", meta)

    return _atomic_dir(root, overwrite, fill)


def write_synthetic_scene(
    root: Union[str, Path],
    layout: Literal["endonerf", "scared"] = "endonerf",
    config: Optional[SyntheticConfig] = None,
    overwrite: bool = False,
) -> Path:
    """Generate a scene and write it to ``root`` in ``layout``; returns ``root``.

    The default config for the SCARED layout uses the moving camera (SCARED sequences move).
    """
    if layout not in ("endonerf", "scared"):
        raise ValueError(f"layout must be 'endonerf' or 'scared', got {layout!r}")
    if config is None:
        config = SyntheticConfig(camera="moving" if layout == "scared" else "fixed")
    scene = generate(config)
    writer = write_endonerf if layout == "endonerf" else write_scared
    return writer(scene, root, overwrite=overwrite)
