"""Camera poses of the prepared frames: identity, RGB-D odometry (+ keyframe pose graph), or a file.

All poses here are 4x4 camera-to-world matrices in OpenCV axes (x right, y down, z forward) with
translations in mm; frame 0 of the prepared scene is the world frame. A relative motion
``T_ji`` maps camera-i coordinates into camera-j coordinates (x_j = T_ji x_i), so
``c2w_j = c2w_i @ inv(T_ji)``.

Odometry (``odometry_poses``): open3d's RGB-D odometry (hybrid photometric + geometric term) between
consecutive frames, with depth given in **metres** (depth_scale 1000 on mm depth, depth_diff_max
5 mm): in millimetres its depth term swamps the image term and it reports success with identity
steps (shared VIDEO_NOTES.md). Invalid depth, specular highlights and tool pixels are zeroed in the
depth so that they take no part (open3d skips pixels without depth). Each step is checked:

* open3d must report success, the step must stay below ``max_step_mm`` / ``max_step_deg``, and
  the photometric residual after warping frame i into frame i+1 with its depth and the step must
  not be worse than with no motion (``step_residual``);
* an independent ORB features + PnP estimate (``orb_pnp``, ~10x cheaper) is computed too: a step whose
  residual is much worse than PnP's (> 1.15x + 0.5) counts as failed;
* a failed step uses the ORB+PnP motion when that passes the checks, else the previous step's motion
  (constant velocity; identity for the first step). Every fallback is reported with
  its frame index (``PoseReport.failures``) and logged; nothing is silently replaced.

Keyframes every ``keyframe_every`` frames are linked to the next keyframe by a direct odometry
estimate (initialised with the chained motion, accepted only if it passes the same checks); the
chain and these edges are refined together by open3d's pose-graph optimisation
(Levenberg-Marquardt, line process pruning of bad keyframe edges).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import cv2
import numpy as np

from endogs.data.io import read_json
from endogs.errors import ConfigError, DataError


# ------------------------------------------------------------------------------------------- helpers
def import_open3d():
    """``import open3d`` with its OpenMP runtime (the system libgomp) told to sleep, not spin, while idle.

    libgomp reads OMP_WAIT_POLICY once, when it loads; its default busy-waiting makes open3d's odometry
    5-10x slower on a machine whose cores are shared (measured 1.5 s vs 0.13 s per 256x208 step at load
    average 6 on 2 cores). The variable is restored right after, so runtimes loaded later (torch's own
    libgomp) keep their defaults. No effect if open3d was imported before.
    """
    if "open3d" in sys.modules:
        return sys.modules["open3d"]
    had = "OMP_WAIT_POLICY" in os.environ
    if not had:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        import open3d
    finally:
        if not had:
            os.environ.pop("OMP_WAIT_POLICY", None)
    return open3d


def rotation_deg(T: np.ndarray) -> float:
    c = (np.trace(T[:3, :3]) - 1.0) / 2.0
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))))


def _gray(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32) if img.ndim == 3 else img.astype(np.float32)


def warp_into(src_img: np.ndarray, src_depth: np.ndarray, tgt_img: np.ndarray, K: np.ndarray, T: np.ndarray,
              src_valid: Optional[np.ndarray] = None):
    """Sample the target image at where each source pixel lands (src depth, motion ``T`` = T_tgt,src).

    Returns (src values, sampled target values, bool mask of source pixels that land inside). ``K``
    uses OpenCV's pixel convention. Images may be RGB or gray; arrays are float32.
    """
    H, W = src_depth.shape
    v, u = np.mgrid[0:H, 0:W].astype(np.float64)
    z = src_depth.astype(np.float64)
    valid = z > 0
    if src_valid is not None:
        valid &= src_valid
    x = (u - K[0, 2]) / K[0, 0] * z
    y = (v - K[1, 2]) / K[1, 1] * z
    P = np.stack([x, y, z], -1) @ T[:3, :3].T + T[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        ut = K[0, 0] * P[..., 0] / P[..., 2] + K[0, 2]
        vt = K[1, 1] * P[..., 1] / P[..., 2] + K[1, 2]
    inside = valid & (P[..., 2] > 0) & (ut >= 0) & (ut <= W - 1) & (vt >= 0) & (vt <= H - 1)
    mx = np.where(inside, ut, -1).astype(np.float32)
    my = np.where(inside, vt, -1).astype(np.float32)
    tgt = tgt_img.astype(np.float32)
    sampled = cv2.remap(tgt, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    return src_img.astype(np.float32), sampled, inside


def warp_psnr(src_img: np.ndarray, src_depth: np.ndarray, tgt_img: np.ndarray, K: np.ndarray, T: np.ndarray,
              src_valid: Optional[np.ndarray] = None) -> float:
    """PSNR (dB, 8-bit RGB) between source pixels and the target sampled where they land."""
    a, b, m = warp_into(src_img, src_depth, tgt_img, K, T, src_valid)
    if m.sum() < 100:
        return float("nan")
    mse = float(((a[m] - b[m]) ** 2).mean())
    return float(10 * np.log10(255.0**2 / max(mse, 1e-10)))


def step_residual(src_img, src_depth, tgt_img, K, T, src_valid=None, min_coverage: float = 0.2) -> float:
    """Mean absolute gray difference (0..255) of the warp; inf when too few pixels overlap."""
    a, b, m = warp_into(_gray(src_img), src_depth, _gray(tgt_img), K, T, src_valid)
    n_valid = int((src_depth > 0).sum()) if src_valid is None else int(((src_depth > 0) & src_valid).sum())
    if m.sum() < max(100, min_coverage * n_valid):
        return float("inf")
    return float(np.abs(a[m] - b[m]).mean())


# ------------------------------------------------------------------------------------------- report
@dataclass
class PoseReport:
    method: str
    steps: list[dict] = field(default_factory=list)  # per step i -> i+1: method used, motion, residuals
    failures: list[dict] = field(default_factory=list)  # {"frame", "source_frame", "reason", "fallback"}
    keyframe_edges: int = 0
    keyframe_edges_rejected: int = 0
    pose_graph: bool = False
    pose_graph_max_correction_mm: float = 0.0

    def to_dict(self) -> dict:
        return {"method": self.method, "pose_graph": self.pose_graph, "keyframe_edges": self.keyframe_edges,
                "pose_graph_max_correction_mm": self.pose_graph_max_correction_mm,
                "keyframe_edges_rejected": self.keyframe_edges_rejected, "failures": self.failures,
                "steps": self.steps}


# ------------------------------------------------------------------------------------------- ORB + PnP
def orb_pnp(src_img: np.ndarray, src_depth: np.ndarray, tgt_img: np.ndarray, K: np.ndarray,
            src_valid: Optional[np.ndarray] = None, tgt_valid: Optional[np.ndarray] = None,
            min_inliers: int = 20) -> tuple[Optional[np.ndarray], str]:
    """T_tgt,src from ORB matches: 3D points of the source (its depth) against target pixels, RANSAC PnP
    (2 px) refined with Levenberg-Marquardt on the inliers. (None, reason) on failure."""
    H, W = src_depth.shape
    n = int(np.clip(H * W / 100, 500, 1500))
    orb = cv2.ORB_create(nfeatures=n, fastThreshold=7, edgeThreshold=15, patchSize=15)
    g1 = cv2.cvtColor(src_img, cv2.COLOR_RGB2GRAY)
    g2 = cv2.cvtColor(tgt_img, cv2.COLOR_RGB2GRAY)
    m1 = ((src_depth > 0) & (src_valid if src_valid is not None else True)).astype(np.uint8) * 255
    m2 = None if tgt_valid is None else tgt_valid.astype(np.uint8) * 255
    k1, d1 = orb.detectAndCompute(g1, m1)
    k2, d2 = orb.detectAndCompute(g2, m2)
    if d1 is None or d2 is None or len(k1) < min_inliers or len(k2) < min_inliers:
        return None, "too few ORB features"
    matches = cv2.BFMatcher(cv2.NORM_HAMMING, crossCheck=True).match(d1, d2)
    if len(matches) < min_inliers:
        return None, f"only {len(matches)} ORB matches"
    p1 = np.array([k1[m.queryIdx].pt for m in matches])
    p2 = np.array([k2[m.trainIdx].pt for m in matches])
    ui = np.clip(np.round(p1).astype(int), 0, [W - 1, H - 1])
    z = src_depth[ui[:, 1], ui[:, 0]].astype(np.float64)
    ok = z > 0
    if ok.sum() < min_inliers:
        return None, "too few ORB matches with depth"
    X = np.stack([(p1[ok, 0] - K[0, 2]) / K[0, 0] * z[ok], (p1[ok, 1] - K[1, 2]) / K[1, 1] * z[ok], z[ok]], -1)
    found, rvec, tvec, inl = cv2.solvePnPRansac(X, p2[ok], K, None, iterationsCount=300, reprojectionError=2.0,
                                                confidence=0.999, flags=cv2.SOLVEPNP_EPNP)
    if not found or inl is None or len(inl) < min_inliers:
        return None, f"PnP found {0 if inl is None else len(inl)} inliers (< {min_inliers})"
    inl = inl.ravel()
    rvec, tvec = cv2.solvePnPRefineLM(X[inl], p2[ok][inl], K, None, rvec, tvec)
    T = np.eye(4)
    T[:3, :3] = cv2.Rodrigues(rvec)[0]
    T[:3, 3] = tvec.ravel()
    return T, f"{len(inl)} inliers"


# ------------------------------------------------------------------------------------------- odometry
class Odometry:
    """open3d RGB-D odometry in metres on masked depth (see the module docstring)."""

    def __init__(self, K: np.ndarray, size: tuple[int, int], depth_max_mm: float):
        o3d = import_open3d()
        self.o3d = o3d
        self.K = np.asarray(K, np.float64)
        W, H = size
        self.intr = o3d.camera.PinholeCameraIntrinsic(W, H, self.K[0, 0], self.K[1, 1], self.K[0, 2], self.K[1, 2])
        self.depth_max_m = depth_max_mm / 1000.0
        self.option = o3d.pipelines.odometry.OdometryOption(
            iteration_number_per_pyramid_level=o3d.utility.IntVector([20, 10, 5]),
            depth_diff_max=0.005, depth_min=0.001, depth_max=self.depth_max_m)
        self.jacobian = o3d.pipelines.odometry.RGBDOdometryJacobianFromHybridTerm()

    def rgbd(self, img: np.ndarray, depth_mm: np.ndarray):
        o3d = self.o3d
        return o3d.geometry.RGBDImage.create_from_color_and_depth(
            o3d.geometry.Image(np.ascontiguousarray(img)), o3d.geometry.Image(np.ascontiguousarray(depth_mm, np.float32)),
            depth_scale=1000.0, depth_trunc=self.depth_max_m + 1e-3, convert_rgb_to_intensity=True)

    def estimate(self, src, tgt, init_mm: np.ndarray) -> tuple[bool, np.ndarray, np.ndarray]:
        """(success, T_tgt,src in mm, 6x6 information in metres) for two RGBD images."""
        init = np.array(init_mm, np.float64)
        init[:3, 3] /= 1000.0
        ok, T, info = self.o3d.pipelines.odometry.compute_rgbd_odometry(src, tgt, self.intr, init, self.jacobian, self.option)
        T = np.array(T)
        T[:3, 3] *= 1000.0
        return bool(ok), T, np.array(info)


Estimator = Callable[[int, int, np.ndarray], tuple[bool, np.ndarray, np.ndarray]]


def odometry_poses(images: list[np.ndarray], depths: list[np.ndarray], valid: list[np.ndarray], K: np.ndarray,
                   *, depth_max_mm: float = 250.0, max_step_mm: float = 8.0, max_step_deg: float = 15.0,
                   keyframe_every: int = 5, frame_labels: Optional[list[int]] = None,
                   log: Callable[[str], None] = lambda s: None) -> tuple[np.ndarray, PoseReport]:
    """c2w [N,4,4] (mm) of the frames from chained, checked RGB-D odometry and a keyframe pose graph.

    ``valid`` marks pixels whose depth may be used (valid depth, no tool, no highlight); ``K`` is in
    OpenCV's pixel convention. ``frame_labels`` name the frames in messages (input frame numbers).
    """
    N = len(images)
    H, W = depths[0].shape
    labels = list(range(N)) if frame_labels is None else list(frame_labels)
    odo = Odometry(K, (W, H), depth_max_mm)
    masked = [np.where(v, d, 0.0).astype(np.float32) for d, v in zip(depths, valid)]
    rgbds = [odo.rgbd(im, d) for im, d in zip(images, masked)]
    report = PoseReport("odometry")
    steps: list[np.ndarray] = []
    infos: list[Optional[np.ndarray]] = []
    c2w = [np.eye(4)]
    prev = np.eye(4)
    for i in range(N - 1):
        j = i + 1
        r_id = step_residual(images[i], masked[i], images[j], K, np.eye(4))
        ok, T, info = odo.estimate(rgbds[i], rgbds[j], prev if i > 0 else np.eye(4))
        reason = _check_step(ok, T, max_step_mm, max_step_deg)
        r_T = step_residual(images[i], masked[i], images[j], K, T) if reason is None else float("inf")
        if reason is None and not r_T <= r_id * 1.02 + 1e-6:
            reason = f"photometric residual {r_T:.2f} is worse than without motion ({r_id:.2f})"
        # an independent estimate (ORB + PnP, ~10x cheaper) checks the odometry and replaces a failed step
        T_pnp, why = orb_pnp(images[i], masked[i], images[j], K, tgt_valid=valid[j])
        check = None if T_pnp is None else _check_step(True, T_pnp, max_step_mm, max_step_deg)
        r_pnp = step_residual(images[i], masked[i], images[j], K, T_pnp) if T_pnp is not None and check is None else float("inf")
        if reason is None and r_T > 1.15 * r_pnp + 0.5:
            reason = f"photometric residual {r_T:.2f} is much worse than ORB+PnP's ({r_pnp:.2f})"
        method = "odometry"
        if reason is not None:
            if r_pnp <= r_id * 1.02 + 1e-6:
                T, method, r_T, info = T_pnp, "orb-pnp", r_pnp, None
            else:
                T = prev.copy() if i > 0 else np.eye(4)
                method = "constant-velocity" if i > 0 else "identity"
                r_T = step_residual(images[i], masked[i], images[j], K, T)
                info = None
                why = why if T_pnp is None else (check or f"residual {r_pnp:.2f} > {r_id:.2f} without motion")
                reason = f"{reason}; ORB+PnP failed too ({why})"
            msg = (f"pose step {labels[i]}->{labels[j]} (frame {j}): odometry failed ({reason}); using {method}")
            log("warning: " + msg)
            report.failures.append({"frame": j, "source_frame": labels[j], "reason": reason, "fallback": method})
        steps.append(T)
        infos.append(info)
        prev = T
        c2w.append(c2w[-1] @ np.linalg.inv(T))
        report.steps.append({"frame": j, "method": method, "translation_mm": float(np.linalg.norm(T[:3, 3])),
                             "rotation_deg": rotation_deg(T), "residual": _finite(r_T), "residual_identity": _finite(r_id)})
    c2w_arr = np.stack(c2w)
    if keyframe_every > 0 and N > keyframe_every:
        c2w_arr = _pose_graph(odo, rgbds, images, masked, K, c2w_arr, steps, infos, keyframe_every,
                              max_step_mm, max_step_deg, report, log)
    return c2w_arr, report


def _finite(x: float) -> Optional[float]:
    return float(x) if np.isfinite(x) else None


def _check_step(ok: bool, T: np.ndarray, max_mm: float, max_deg: float) -> Optional[str]:
    if not ok:
        return "open3d reported no convergence"
    if not np.isfinite(T).all():
        return "non-finite motion"
    t = float(np.linalg.norm(T[:3, 3]))
    if t > max_mm:
        return f"step of {t:.1f} mm exceeds --max-step-mm {max_mm:g}"
    r = rotation_deg(T)
    if r > max_deg:
        return f"rotation of {r:.1f} deg exceeds --max-step-deg {max_deg:g}"
    return None


def _pose_graph(odo: Odometry, rgbds, images, masked, K, c2w, steps, infos, every, max_mm, max_deg,
                report: PoseReport, log) -> np.ndarray:
    o3d = odo.o3d
    reg = o3d.pipelines.registration
    N = len(c2w)

    def metres(T):
        T = np.array(T, np.float64)
        T[:3, 3] /= 1000.0
        return T

    weak = np.eye(6) * 1e2  # information of a fallback step: keeps the chain, lets keyframe edges correct it
    graph = reg.PoseGraph()
    for k in range(N):
        graph.nodes.append(reg.PoseGraphNode(metres(c2w[k])))
    for i, (T, info) in enumerate(zip(steps, infos)):
        graph.edges.append(reg.PoseGraphEdge(i, i + 1, metres(T), weak if info is None else info, uncertain=False))
    keys = list(range(0, N, every))
    if keys[-1] != N - 1:
        keys.append(N - 1)
    for a, b in zip(keys[:-1], keys[1:]):
        if b - a < 2:
            continue
        init = np.linalg.inv(c2w[b]) @ c2w[a]  # chained T_b,a
        ok, T, info = odo.estimate(rgbds[a], rgbds[b], init)
        reason = _check_step(ok, T, max_mm * (b - a), max_deg * (b - a))
        if reason is None:
            r_T = step_residual(images[a], masked[a], images[b], K, T)
            r_init = step_residual(images[a], masked[a], images[b], K, init)
            if not r_T <= r_init * 1.05 + 1e-6:
                reason = f"residual {r_T:.2f} > chained {r_init:.2f}"
        if reason is not None:
            report.keyframe_edges_rejected += 1
            continue
        graph.edges.append(reg.PoseGraphEdge(a, b, metres(T), info, uncertain=True))
        report.keyframe_edges += 1
    if report.keyframe_edges == 0:
        return c2w
    opt = reg.GlobalOptimizationOption(max_correspondence_distance=0.005, edge_prune_threshold=0.25,
                                       preference_loop_closure=1.0, reference_node=0)
    with o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Error):
        reg.global_optimization(graph, reg.GlobalOptimizationLevenbergMarquardt(),
                                reg.GlobalOptimizationConvergenceCriteria(), opt)
    out = np.stack([np.array(n.pose) for n in graph.nodes])
    out[:, :3, 3] *= 1000.0
    out = np.linalg.inv(out[0]) @ out  # frame 0 stays the world frame
    shift = np.linalg.norm(out[:, :3, 3] - c2w[:, :3, 3], axis=1).max()
    report.pose_graph = True
    report.pose_graph_max_correction_mm = float(shift)
    log(f"pose graph: {report.keyframe_edges} keyframe edges ({report.keyframe_edges_rejected} rejected), "
        f"largest correction {shift:.2f} mm")
    return out


# ------------------------------------------------------------------------------------------- pose files
def _quat_to_R(q: np.ndarray) -> np.ndarray:
    """Rotation of a pose file's (x, y, z, w) quaternion."""
    import torch

    from endogs.utils.geometry import quat_to_rotmat

    x, y, z, w = np.asarray(q, np.float64)
    return quat_to_rotmat(torch.tensor([w, x, y, z], dtype=torch.float64)).numpy()


def _rows_to_poses(rows: np.ndarray, path: Path) -> tuple[Optional[np.ndarray], np.ndarray]:
    """(frame numbers or None, [M,4,4]) from numeric rows of 7/12/16 values, optionally after a frame column."""
    ncol = rows.shape[1]
    frames = None
    if ncol in (8, 13, 17):
        frames = rows[:, 0]
        if not np.allclose(frames, np.round(frames)):
            raise DataError("the first column of an 8/13/17-column pose file must be the frame number", path)
        frames = np.round(frames).astype(int)
        rows = rows[:, 1:]
        ncol -= 1
    M = len(rows)
    T = np.tile(np.eye(4), (M, 1, 1))
    if ncol == 7:  # tx ty tz qx qy qz qw
        for k in range(M):
            T[k, :3, :3] = _quat_to_R(rows[k, 3:7])
            T[k, :3, 3] = rows[k, :3]
    elif ncol == 12:
        T[:, :3, :] = rows.reshape(M, 3, 4)
    elif ncol == 16:
        T[:] = rows.reshape(M, 4, 4)
    else:
        raise DataError(f"pose rows have {rows.shape[1]} values; expected 7 (tx ty tz qx qy qz qw), 12 (3x4) or 16 "
                        "(4x4, row-major), optionally after a frame number", path)
    return frames, T


def read_pose_file(path: Path, indices: list[int], convention: str = "auto", unit: str = "mm") -> np.ndarray:
    """c2w [len(indices),4,4] in mm of the given input frames, from a pose file or folder."""
    path = Path(path)
    if not path.exists():
        raise DataError("missing pose file (expected a folder of SCARED frame_data*.json or a CSV/TXT of poses)", path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".json")
        if not files:
            raise DataError("pose folder has no .json files (SCARED frame_data%06d.json with camera-pose)", path)
        if max(indices) >= len(files):
            raise DataError(f"pose folder has {len(files)} files but frame {max(indices)} is needed; one JSON per "
                            "input frame (paired by sorted order)", path)
        poses = []
        for i in indices:
            data = read_json(files[i])
            if "camera-pose" not in data:
                raise DataError("missing key camera-pose (a 4x4 matrix)", files[i])
            try:
                P = np.asarray(data["camera-pose"], np.float64).reshape(4, 4)
            except (TypeError, ValueError):
                raise DataError("camera-pose is not a 4x4 numeric matrix", files[i]) from None
            poses.append(P)
        poses = np.stack(poses)
        conv = "w2c" if convention == "auto" else convention
    else:
        if path.suffix.lower() == ".json":
            data = read_json(path)
            if "poses" not in data:
                raise DataError('expected {"poses": [4x4, ...]} with one pose per input frame', path)
            try:
                arr = np.asarray(data["poses"], np.float64).reshape(-1, 16)
            except (TypeError, ValueError):
                raise DataError("poses must be a list of 4x4 numeric matrices", path) from None
            frames, allp = None, arr.reshape(-1, 4, 4)
            conv = "c2w" if convention == "auto" else convention
        else:
            rows = _read_numeric_rows(path)
            frames, allp = _rows_to_poses(rows, path)
            conv = "c2w" if convention == "auto" else convention
        if frames is None:
            if max(indices) >= len(allp):
                raise DataError(f"has {len(allp)} poses but input frame {max(indices)} is needed; one pose per input "
                                "frame, or a leading frame-number column", path)
            poses = allp[indices]
        else:
            lookup = {int(f): k for k, f in enumerate(frames)}
            missing = [i for i in indices if i not in lookup]
            if missing:
                raise DataError(f"has no pose for input frame {missing[0]} ({len(missing)} missing)", path)
            poses = allp[[lookup[i] for i in indices]]
    if not np.isfinite(poses).all():
        raise DataError("poses contain NaN or infinite values", path)
    for k, P in enumerate(poses):
        R = P[:3, :3]
        if abs(np.linalg.det(R) - 1) > 1e-3 or np.abs(R @ R.T - np.eye(3)).max() > 1e-3:
            raise DataError(f"pose of input frame {indices[k]} is not a rigid transform", path)
    if conv == "w2c":
        poses = np.linalg.inv(poses)
    elif conv != "c2w":
        raise ConfigError(f"unknown pose convention {convention!r}; choose auto, c2w or w2c")
    if unit == "m":
        poses = poses.copy()
        poses[:, :3, 3] *= 1000.0
    return poses


def _read_numeric_rows(path: Path) -> np.ndarray:
    rows = []
    with open(path) as f:
        for ln, line in enumerate(f, 1):
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            parts = [p for p in s.replace(",", " ").replace(";", " ").split() if p]
            try:
                rows.append([float(p) for p in parts])
            except ValueError:
                if not rows:  # a header line
                    continue
                raise DataError(f"line {ln} is not numeric", path) from None
    if not rows:
        raise DataError("no pose rows", path)
    if len({len(r) for r in rows}) != 1:
        raise DataError("pose rows have different numbers of values", path)
    return np.asarray(rows, np.float64)


def to_rectified(c2w_raw: np.ndarray, R1: np.ndarray) -> np.ndarray:
    """Poses of the raw left camera → poses of the rectified left camera, relative to the first frame."""
    Rr = np.eye(4)
    Rr[:3, :3] = np.asarray(R1).T
    c = c2w_raw @ Rr
    return np.linalg.inv(c[0]) @ c
