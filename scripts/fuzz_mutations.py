"""The mutations of scripts/fuzz_inputs.py: byte-level (truncation, bit flips, zero runs, garbage) and
structured (YAML/JSON trees with wrong types or keys, NaN/inf or non-rigid poses, depth of the wrong dtype
or all invalid, masks of the wrong size or polarity, absurd calibration values). Every function takes a
seeded ``numpy.random.Generator`` and mutates one file or value in place; each returns a short label of
what it did (the case's description).
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml

import data_fixtures as fx  # the tests' tiny scenes (tests/ is on sys.path, see fuzz_inputs.py)


# ---------------------------------------------------------------- byte mutations
def truncate(rng, data: bytes) -> bytes:
    return data[: int(rng.integers(0, max(1, len(data))))]


def bitflip(rng, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(int(rng.integers(1, 9))):
        i = int(rng.integers(0, len(b)))
        b[i] ^= 1 << int(rng.integers(0, 8))
    return bytes(b)


def zero_run(rng, data: bytes) -> bytes:
    b = bytearray(data)
    i = int(rng.integers(0, len(b)))
    n = int(rng.integers(1, 64))
    b[i : i + n] = bytes(len(b[i : i + n]))
    return bytes(b)


def garbage(rng, data: bytes) -> bytes:
    return bytes(rng.integers(0, 256, int(rng.integers(0, 200)), dtype=np.uint8))


BYTE_OPS = (truncate, bitflip, bitflip, zero_run, garbage)


def mutate_file(rng, path: Path) -> str:
    op = BYTE_OPS[int(rng.integers(0, len(BYTE_OPS)))]
    path.write_bytes(op(rng, path.read_bytes()))
    return op.__name__


def pick(rng, folder: Path, pattern: str = "*") -> Path:
    files = sorted(p for p in folder.glob(pattern) if p.is_file())
    return files[int(rng.integers(0, len(files)))]


# ---------------------------------------------------------------- structured mutations
WEIRD = [None, "abc", "", -1, 0, 1e308, float("nan"), float("inf"), [], [1, 2], {"a": 1}, True, [[1, "x"]], "1e9"]


def weird(rng):
    return WEIRD[int(rng.integers(0, len(WEIRD)))]


def yaml_weird(rng):
    v = weird(rng)
    return None if isinstance(v, float) and not np.isfinite(v) else v


def mutate_tree(rng, node, depth: int = 0):
    """A copy of a JSON/YAML tree with one value replaced, one key dropped or one unknown key added."""
    if isinstance(node, dict) and node and (depth == 0 or rng.random() < 0.7):
        keys = sorted(node, key=str)
        k = keys[int(rng.integers(0, len(keys)))]
        out = dict(node)
        r = rng.random()
        if r < 0.15:
            out.pop(k)
        elif r < 0.25:
            out["no_such_key"] = 1
        elif r < 0.55 and isinstance(node[k], (dict, list)) and node[k]:
            out[k] = mutate_tree(rng, node[k], depth + 1)
        else:
            out[k] = yaml_weird(rng)
        return out
    if isinstance(node, list) and node:
        out = list(node)
        i = int(rng.integers(0, len(out)))
        if isinstance(out[i], (dict, list)) and out[i] and rng.random() < 0.6:
            out[i] = mutate_tree(rng, out[i], depth + 1)
        elif rng.random() < 0.2:
            out.pop(i)
        else:
            out[i] = yaml_weird(rng)
        return out
    return yaml_weird(rng)


def bad_rotation(rng) -> np.ndarray:
    kind = int(rng.integers(0, 4))
    R = fx.rot_z(float(rng.uniform(0, 360)))
    if kind == 0:
        return R * float(rng.choice([0.0, 0.5, 2.0, -1.0]))  # scaled / reflected
    if kind == 1:
        R[0, 1] += float(rng.uniform(0.01, 1.0))  # shear
        return R
    if kind == 2:
        R[int(rng.integers(0, 3)), int(rng.integers(0, 3))] = float(rng.choice([np.nan, np.inf, -np.inf]))
        return R
    return np.diag([1.0, 1.0, -1.0]) @ R  # a reflection (det -1)


def mutate_poses_bounds(rng, path: Path) -> str:
    pb = np.load(path)
    r = int(rng.integers(0, 6))
    i = int(rng.integers(0, pb.shape[0]))
    if r == 0:
        pb[i, int(rng.integers(0, 17))] = float(rng.choice([np.nan, np.inf, -np.inf]))
    elif r == 1:
        m = pb[i, :15].reshape(3, 5)
        m[:, :3] = bad_rotation(rng)
        pb[i, :15] = m.ravel()
    elif r == 2:
        pb = pb[:, : int(rng.integers(0, 17))]
    elif r == 3:
        pb = pb[: int(rng.integers(0, pb.shape[0]))]
    elif r == 4:
        m = pb[i, :15].reshape(3, 5)
        m[:, 4] = float(rng.choice([0.0, -5.0, 1e12, 3.0]))  # hwf / focal absurd
        pb[:, :15] = np.tile(m.ravel(), (pb.shape[0], 1))
    else:
        np.save(path, pb.astype(rng.choice(["int8", "float16", "complex64", "U3"])))
        return "poses-dtype"
    np.save(path, pb)
    return f"poses-{r}"


def mutate_depth_png(rng, folder: Path) -> str:
    p = pick(rng, folder)
    h, w = fx.H, fx.W
    r = int(rng.integers(0, 6))
    if r == 0:
        fx.write_gray(p, np.zeros((h, w), np.uint8))  # all invalid
        return "depth-all-zero"
    if r == 1:
        fx.write_gray(p, rng.integers(0, 65535, (h, w), dtype=np.uint16))  # 16-bit
        return "depth-16bit"
    if r == 2:
        cv2.imwrite(str(p), rng.integers(0, 255, (h, w, 3), dtype=np.uint8))  # 3 channels, unequal
        return "depth-rgb"
    if r == 3:
        for q in folder.iterdir():
            fx.write_gray(q, np.zeros((h, w), np.uint8))
        return "depth-all-frames-zero"
    if r == 4:
        p.unlink()
        np.save(p.with_suffix(".npy"), rng.standard_normal((h, w)).astype(rng.choice(["float32", "float64", "int64", "bool"])))
        return "depth-npy-dtype"
    fx.write_gray(p, np.zeros((h + 1, w), np.uint8) + 9)
    return "depth-size"


def mutate_masks(rng, folder: Path) -> str:
    p = pick(rng, folder)
    r = int(rng.integers(0, 5))
    if r == 0:
        fx.write_gray(p, np.full((fx.H + int(rng.integers(1, 5)), fx.W), 255, np.uint8))
        return "mask-size"
    if r == 1:
        for q in folder.iterdir():
            m = cv2.imread(str(q), cv2.IMREAD_UNCHANGED)
            fx.write_gray(q, 255 - m)
        return "mask-polarity"
    if r == 2:
        fx.write_gray(p, rng.integers(0, 256, (fx.H, fx.W), dtype=np.uint8))
        return "mask-nonbinary"
    if r == 3:
        fx.write_gray(p, np.full((fx.H, fx.W), 255, np.uint8))
        return "mask-all-tool"
    cv2.imwrite(str(p), rng.integers(0, 2, (fx.H, fx.W, 3), dtype=np.uint8) * 255)
    return "mask-rgb"


def mutate_json_file(rng, path: Path) -> str:
    if rng.random() < 0.2:
        return mutate_file(rng, path)
    data = json.loads(path.read_text())
    path.write_text(json.dumps(mutate_tree(rng, data)))
    return "json-tree"


def mutate_yaml_file(rng, path: Path) -> str:
    if rng.random() < 0.2:
        return mutate_file(rng, path)
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump(mutate_tree(rng, data)))
    return "yaml-tree"


SCENE_META_BASE = {"generator": "fuzz", "fx": 25.0, "fy": 25.0, "principal_point": [10.0, 8.0],
                   "depth_png_scale": 1.0, "depth_unit": "mm", "mask_polarity": "tool"}


def write_opencv_calib(path: Path, mats: dict) -> None:
    lines = ["%YAML:1.0", "---"]
    for k, v in mats.items():
        a = np.atleast_2d(np.asarray(v, dtype=np.float64))
        data = ", ".join(repr(float(x)) for x in a.ravel())
        lines += [f"{k}: !!opencv-matrix", f"   rows: {a.shape[0]}", f"   cols: {a.shape[1]}", "   dt: d", f"   data: [ {data} ]"]
    path.write_text("\n".join(lines) + "\n")


CALIB_BASE = {"M1": [[30.0, 0, 10], [0, 30, 8], [0, 0, 1]], "D1": [[0.01, -0.02, 0, 0, 0.003]],
              "M2": [[30.0, 0, 11], [0, 30, 8], [0, 0, 1]], "D2": [[0.0] * 5], "R": np.eye(3).tolist(), "T": [[-4.2], [0], [0]]}


def mutate_calib_values(rng) -> dict:
    mats = {k: np.array(v, dtype=np.float64) for k, v in CALIB_BASE.items()}
    r = int(rng.integers(0, 6))
    if r == 0:
        mats.pop(sorted(mats)[int(rng.integers(0, len(mats)))])
    elif r == 1:
        k = sorted(mats)[int(rng.integers(0, len(mats)))]
        mats[k].flat[int(rng.integers(0, mats[k].size))] = float(rng.choice([0.0, -30.0, 1e30, -1e30, 1e-30, np.nan, np.inf]))
    elif r == 2:
        mats["T"] = np.array(rng.choice([[[0.0], [0], [0]], [[0.0], [4.2], [0]], [[4.2], [0], [0]], [[-4.2], [0], [50.0]]]))
    elif r == 3:
        mats["R"] = bad_rotation(rng)
    elif r == 4:
        k = sorted(mats)[int(rng.integers(0, len(mats)))]
        mats[k] = mats[k].ravel()[: int(rng.integers(0, mats[k].size))] if mats[k].size > 1 else np.zeros((2, 2))
        if mats[k].size == 0:
            mats[k] = np.zeros((1, 1))
    else:
        mats["M1"] = mats["M1"] * float(rng.choice([1e-6, 1e6, -1.0]))
    return mats
