"""The renderer: shaded images, tool masks, noisy and exact depth for every frame; queries of the
ground-truth surface."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Union

import cv2
import numpy as np

from endogs.data.synthetic.config import SyntheticConfig, SyntheticScene
from endogs.data.synthetic.surface import _SceneModel, _Texture, _normals_from_grad
from endogs.data.synthetic.tool import _capsule_pixel_box, _check_single_hit, _closest_on_segment, _pixel_rays, _ray_capsule

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

        img = (rgb + spec) * model.exposure_gain(t) if cfg.exposure_drift else rgb + spec
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
        exposure=np.array([model.exposure_gain(float(t)) for t in times]),
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
