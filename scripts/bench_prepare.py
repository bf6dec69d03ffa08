#!/usr/bin/env python
"""Measure ``endogs prepare`` on the real SCARED stereo video (../shared/data/scared_640).

Runs prepare (stereo depth + odometry poses) on a frame window (default: frames 1-40, i.e. input
positions 0..39) and prints:

* rectified intrinsics and baseline;
* stereo depth per frame: valid fraction, median, 5th and 95th percentile (mm);
* odometry: per consecutive pair, the PSNR of warping frame i into frame i+1 with frame i's depth
  and (a) no motion, (b) the prepared poses, (c) an independent ORB+PnP estimate, over the pixels
  that land inside frame i+1 (tool-free, valid depth); step sizes, fallbacks, pose-graph edges;
* wall times.

With ``--synthetic`` it instead measures the synthetic stereo video of tests/test_prepare.py against
its exact ground truth (stereo depth error, RPE/ATE of odometry and of identity poses, auto-mask IoU).

Usage:
    .venv/bin/python scripts/bench_prepare.py [--input ../shared/data/scared_640] [--start 0] [--end 40]
        [--out OUT] [--keep]
    .venv/bin/python scripts/bench_prepare.py --synthetic
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--input", type=Path, default=ROOT.parent / "shared" / "data" / "scared_640")
    ap.add_argument("--start", type=int, default=0)
    ap.add_argument("--end", type=int, default=40)
    ap.add_argument("--out", type=Path, default=None, help="scene folder (default: a temporary folder)")
    ap.add_argument("--keep", action="store_true", help="keep the temporary scene folder")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    ap.add_argument("--synthetic", action="store_true", help="measure the synthetic stereo video of the tests instead")
    args = ap.parse_args()
    if args.synthetic:
        return synthetic()
    if not args.input.exists():
        print(f"input {args.input} not found", file=sys.stderr)
        return 1

    from endogs.data import load_scene
    from endogs.video import PrepareOptions, prepare_scene
    from endogs.video.poses import orb_pnp, rotation_deg, warp_psnr

    tmp = None
    out = args.out
    if out is None:
        tmp = Path(tempfile.mkdtemp(prefix="bench_prepare_"))
        out = tmp / "scene"
    t0 = time.perf_counter()
    res = prepare_scene(args.input, out, PrepareOptions(start=args.start, end=args.end, overwrite=True),
                        log=lambda s: print(s, file=sys.stderr))
    wall = time.perf_counter() - t0
    meta = res.meta
    scene = load_scene(out)
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    print(f"input: {args.input}, frames {args.start + 1}-{args.end} (positions {args.start}..{args.end - 1}), "
          f"{res.n_frames} frames {meta['width']}x{meta['height']}")
    print(f"rectified intrinsics: fx {meta['fx']:.2f} fy {meta['fy']:.2f} principal point "
          f"({meta['principal_point'][0]:.2f}, {meta['principal_point'][1]:.2f}) [+0.5 px convention], "
          f"baseline {meta['rectification']['baseline_mm']:.4f} mm, f*b {meta['fx'] * meta['rectification']['baseline_mm']:.1f}")
    print(f"loaded back with load_scene: format {scene.format}, {len(scene)} frames, K[0,0] {scene.frames[0].camera.fx:.2f}, "
          f"depth unit {scene.depth_unit}")

    # ---- depth
    print("\nstereo depth per frame (mm): frame  valid%  median  p5  p95")
    med, vf = [], []
    for i, f in enumerate(scene.frames):
        d = f.depth
        v = d[d > 0]
        med.append(float(np.median(v)))
        vf.append(float((d > 0).mean()))
        if i % 5 == 0 or i == len(scene) - 1:
            print(f"  {meta['source_frames'][i] + 1:4d}  {100 * vf[-1]:5.1f}  {med[-1]:6.1f}  {np.percentile(v, 5):5.1f}  "
                  f"{np.percentile(v, 95):5.1f}")
    print(f"valid fraction mean {np.mean(vf):.3f} (min {np.min(vf):.3f}); per-frame median {np.min(med):.1f}-{np.max(med):.1f} mm")

    # ---- odometry
    K = np.array(meta["rectification"]["P1"])[:3, :3]  # OpenCV convention
    c2w = np.stack([f.camera.c2w for f in scene.frames])
    rows = []
    for i in range(len(scene) - 1):
        a, b = scene.frames[i], scene.frames[i + 1]
        img_a = np.round(a.image * 255).astype(np.uint8)
        img_b = np.round(b.image * 255).astype(np.uint8)
        dep = a.depth * a.mask
        T = np.linalg.inv(c2w[i + 1]) @ c2w[i]
        T_pnp, _ = orb_pnp(img_a, dep, img_b, K)
        rows.append({
            "pair": (meta["source_frames"][i] + 1, meta["source_frames"][i + 1] + 1),
            "identity": warp_psnr(img_a, dep, img_b, K, np.eye(4)),
            "prepared": warp_psnr(img_a, dep, img_b, K, T),
            "orb_pnp": warp_psnr(img_a, dep, img_b, K, T_pnp) if T_pnp is not None else float("nan"),
            "t_mm": float(np.linalg.norm(T[:3, 3])), "r_deg": rotation_deg(T),
        })
    ident = np.array([r["identity"] for r in rows])
    prep = np.array([r["prepared"] for r in rows])
    pnp = np.array([r["orb_pnp"] for r in rows])
    print("\nwarp PSNR (dB) of frame i into frame i+1 with depth_i: pair  identity  prepared poses  ORB+PnP  step mm  step deg")
    for k, r in enumerate(rows):
        if k % 5 == 0 or k == len(rows) - 1:
            print(f"  {r['pair'][0]:3d}->{r['pair'][1]:3d}  {r['identity']:6.2f}  {r['prepared']:6.2f}  {r['orb_pnp']:6.2f}  "
                  f"{r['t_mm']:5.2f}  {r['r_deg']:5.2f}")
    print(f"mean warp PSNR: identity {np.nanmean(ident):.2f}, prepared poses {np.nanmean(prep):.2f}, ORB+PnP {np.nanmean(pnp):.2f}; "
          f"prepared beats identity on {int((prep > ident).sum())}/{len(rows)} pairs")
    steps = np.array([[r["t_mm"], r["r_deg"]] for r in rows])
    rep = meta["poses"]
    print(f"steps: median {np.median(steps[:, 0]):.2f} mm, {np.median(steps[:, 1]):.2f} deg (max {steps[:, 0].max():.2f} mm); "
          f"fallback steps {len(rep['failures'])} {[f['frame'] for f in rep['failures']]}; pose graph "
          f"{rep['keyframe_edges']} keyframe edges ({rep['keyframe_edges_rejected']} rejected)")
    print(f"path length {np.linalg.norm(np.diff(c2w[:, :3, 3], axis=0), axis=1).sum():.1f} mm")
    print("\ntime: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.seconds.items()) + f" (wall {wall:.1f}s)")
    if args.json:
        args.json.write_text(json.dumps({"valid_fraction": vf, "median_depth": med, "pairs": rows,
                                         "seconds": res.seconds, "pose_report": rep}, indent=2))
    if tmp is not None and not args.keep:
        shutil.rmtree(tmp, ignore_errors=True)
    elif tmp is not None:
        print(f"scene kept: {out}")
    return 0


def synthetic() -> int:
    """The acceptance figures of tests/test_prepare.py: prepared scene vs exact ground truth."""
    from endogs.data import load_scene
    from endogs.data.synthetic import SyntheticConfig, generate
    from endogs.video import PrepareOptions, prepare_scene
    from endogs.video.poses import rotation_deg
    from endogs.video.synthetic_stereo import rectified_ground_truth, write_stereo_video

    cfg = SyntheticConfig(width=256, height=208, n_frames=8, camera="moving", deformation=0.3, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        scene = generate(cfg)
        video = write_stereo_video(scene, Path(tmp) / "rec")
        t0 = time.perf_counter()
        res = prepare_scene(video.inputs[0], Path(tmp) / "scene", PrepareOptions(masks="auto"))
        wall = time.perf_counter() - t0
        gt_view, gt = rectified_ground_truth(scene, res.meta)
        s = load_scene(res.root)
        errs, vf, iou = [], [], []
        for i, f in enumerate(s.frames):
            m = f.depth > 0
            g = gt_view.visible_depth[i]
            errs.append(float(np.median(np.abs(f.depth[m] - g[m]) / g[m])))
            vf.append(float(m.mean()))
            tool, gtm = ~f.mask, gt_view.tool_masks[i]
            iou.append(float((tool & gtm).sum() / max(1, (tool | gtm).sum())))
        est = np.stack([f.camera.c2w for f in s.frames])
    print(f"synthetic: {cfg}")
    print(f"stereo depth median abs. rel. error per frame: mean {np.mean(errs):.4f}, max {np.max(errs):.4f}; "
          f"valid fraction mean {np.mean(vf):.3f} (min {np.min(vf):.3f})")
    path = np.linalg.norm(np.diff(gt[:, :3, 3], axis=0), axis=1).sum()
    for name, E in (("odometry", est), ("identity", np.tile(np.eye(4), (len(est), 1, 1)))):
        t, r = [], []
        for i in range(len(E) - 1):
            g = np.linalg.inv(gt[i]) @ gt[i + 1]
            e = np.linalg.inv(g) @ (np.linalg.inv(E[i]) @ E[i + 1])
            t.append(np.linalg.norm(e[:3, 3]))
            r.append(rotation_deg(e))
        ate = np.linalg.norm(E[:, :3, 3] - gt[:, :3, 3], axis=1)
        print(f"{name} poses: RPE translation mean {np.mean(t):.3f} max {np.max(t):.3f} mm, rotation mean {np.mean(r):.3f} "
              f"max {np.max(r):.3f} deg; ATE RMSE {np.sqrt(np.mean(ate ** 2)):.3f} max {ate.max():.3f} mm (path {path:.2f} mm)")
    print(f"fallback steps {len(res.pose_report.failures)}; auto tool-mask IoU {min(iou):.3f}-{max(iou):.3f}")
    print("time: " + ", ".join(f"{k} {v:.1f}s" for k, v in res.seconds.items()) + f" (wall {wall:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
