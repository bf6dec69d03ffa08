"""The surgical tool: capsules ray-cast exactly, and the per-pixel camera rays."""

from __future__ import annotations

import numpy as np

from endogs.data.synthetic.config import SyntheticConfig, _max_slope

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
    if _max_slope(cfg.deformation, cfg.tilt) * tan_max < 0.97:
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
            f"deformation={cfg.deformation}, tilt={cfg.tilt}: rays would graze the tissue folds; raise focal_factor or "
            "lower deformation / tilt / camera_motion"
        )
