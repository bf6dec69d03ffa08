"""A compact description of a loaded scene: what ``endogs info`` prints."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from endogs.data.types import Scene


def _rotation_deg(R: np.ndarray) -> float:
    return math.degrees(math.acos(float(np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0))))


def summarize_scene(scene: Scene, max_frames: int = 50) -> dict[str, Any]:
    """Format, size, intrinsics, poses, depth/mask statistics and split of ``scene``.

    Pixel statistics are computed over at most ``max_frames`` evenly spaced frames (the count used
    is reported as ``stats_frames``).
    """
    n = len(scene)
    cam0 = scene.frames[0].camera
    pick = sorted(set(np.linspace(0, n - 1, min(n, max_frames)).round().astype(int).tolist()))
    t0 = cam0.c2w
    trans = [float(np.linalg.norm(f.camera.c2w[:3, 3] - t0[:3, 3])) for f in scene.frames]
    rots = [_rotation_deg(t0[:3, :3].T @ f.camera.c2w[:3, :3]) for f in scene.frames]
    out: dict[str, Any] = {
        "format": scene.format,
        "root": str(scene.root),
        "frames": n,
        "width": scene.width,
        "height": scene.height,
        "intrinsics": {"fx": cam0.fx, "fy": cam0.fy, "cx": cam0.cx, "cy": cam0.cy},
        "time_range": [scene.frames[0].time, scene.frames[-1].time],
        "poses": {
            "moving": bool(max(trans) > 1e-9 or max(rots) > 1e-9),
            "max_translation": max(trans),
            "max_rotation_deg": max(rots),
        },
        "near": scene.near,
        "far": scene.far,
        "depth_unit": scene.depth_unit,
        "split": {
            "rule": scene.split,
            "train": len(scene.train_indices),
            "test": len(scene.test_indices),
            "test_indices": list(scene.test_indices),
        },
        "mask_source": scene.mask_source,
        "eval_mask_source": scene.eval_mask_source,
        "stats_frames": len(pick),
        "extras": scene.extras,
    }
    if scene.has_depth:
        valid_frac, vals = [], []
        for i in pick:
            d = scene.frames[i].depth
            valid_frac.append(float((d > 0).mean()))
            v = d[d > 0]
            vals.append(v[:: max(1, v.size // 5000)])
        allv = np.concatenate(vals) if vals else np.zeros(0)
        out["depth"] = {
            "available": True,
            "valid_fraction_mean": float(np.mean(valid_frac)),
            "valid_fraction_min": float(np.min(valid_frac)),
            "min": float(allv.min()) if allv.size else 0.0,
            "median": float(np.median(allv)) if allv.size else 0.0,
            "max": float(allv.max()) if allv.size else 0.0,
        }
    else:
        out["depth"] = {"available": False}
    if scene.has_masks:
        tool = [1.0 - float(scene.frames[i].mask.mean()) for i in pick]
        out["masks"] = {"available": True, "tool_fraction_mean": float(np.mean(tool)), "tool_fraction_max": float(np.max(tool))}
    else:
        out["masks"] = {"available": False}
    out["gt_depth"] = {"available": scene.has_gt_depth}
    return out


def format_summary(s: dict[str, Any]) -> str:
    k = s["intrinsics"]
    lines = [
        f"scene       {s['root']}",
        f"format      {s['format']}",
        f"frames      {s['frames']}  ({s['width']}x{s['height']}, t in [{s['time_range'][0]:g}, {s['time_range'][1]:g}])",
        f"intrinsics  fx {k['fx']:.3f}  fy {k['fy']:.3f}  cx {k['cx']:.3f}  cy {k['cy']:.3f}",
    ]
    p = s["poses"]
    lines.append(
        f"poses       {'moving' if p['moving'] else 'fixed'} camera"
        + (f" (max {p['max_translation']:.3g} translation, {p['max_rotation_deg']:.3g} deg from frame 0)" if p["moving"] else "")
    )
    d = s["depth"]
    if d["available"]:
        lines.append(
            f"depth       {s['depth_unit']}: valid {100 * d['valid_fraction_mean']:.1f}% (min {100 * d['valid_fraction_min']:.1f}%),"
            f" range {d['min']:.4g}..{d['max']:.4g}, median {d['median']:.4g}; near/far {s['near']:.4g}/{s['far']:.4g}"
        )
    else:
        lines.append("depth       none")
    m = s["masks"]
    if m["available"]:
        lines.append(f"masks       {s['mask_source']}: tool {100 * m['tool_fraction_mean']:.1f}% mean, {100 * m['tool_fraction_max']:.1f}% max")
    else:
        lines.append("masks       none")
    if s["eval_mask_source"] != s["mask_source"]:
        lines.append(f"eval masks  {s['eval_mask_source']}")
    lines.append(f"gt depth    {'yes' if s['gt_depth']['available'] else 'no'}")
    sp = s["split"]
    tests = sp["test_indices"]
    shown = ", ".join(map(str, tests[:12])) + (", ..." if len(tests) > 12 else "")
    lines.append(f"split       {sp['rule']}: {sp['train']} train / {sp['test']} test (test frames: {shown})")
    lines.append(f"statistics  over {s['stats_frames']} frame(s)")
    return "\n".join(lines)
