"""The tissue: a deforming height field with a material-attached texture (the scene model)."""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from endogs.data.synthetic.config import SyntheticConfig, _CHUNK
from endogs.utils.geometry import rotvec_to_matrix

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
        # auto-exposure: three seeded sinusoids (own stream: the geometry draws above are unchanged)
        ex = np.random.default_rng([cfg.seed, 7])
        self.expo_f = np.array([0.6, 1.3, 2.1]) * ex.uniform(0.8, 1.2, 3)
        self.expo_phi = ex.uniform(0, 2 * np.pi, 3)
        self.expo_a = np.array([0.6, 0.3, 0.1])

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

    def exposure_gain(self, t: float) -> float:
        """Brightness gain at time t: exp(exposure_drift * u(t)), u(0) = 0, |u| <= 1."""
        if self.cfg.exposure_drift == 0:
            return 1.0
        u = float(np.sum(self.expo_a * (np.sin(2 * np.pi * self.expo_f * t + self.expo_phi) - np.sin(self.expo_phi)))) / 2.0
        return float(np.exp(self.cfg.exposure_drift * u))

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
        if self.cfg.tilt != 0.0:
            h += self.cfg.tilt * x
        if grad:
            hx = -g * dx / self.dome_sigma**2 + self.cfg.tilt
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
            m[:3, :3] = rotvec_to_matrix(w)
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
