"""Gaussians as a standard 3DGS PLY (the INRIA layout every splat viewer reads).

One ``vertex`` element, float32 properties in this order::

    x y z  nx ny nz  f_dc_0..2  f_rest_0..3(K-1)-1  opacity  scale_0..2  rot_0..3

``nx ny nz`` are zeros (the reference code writes them; viewers ignore them), ``f_dc`` is the SH DC
term, ``f_rest`` the higher bands channel-major (all R coefficients, then G, then B: the reference
``features_rest.transpose(1, 2)`` flattening), ``opacity`` a logit, ``scale_*`` log standard
deviations and ``rot_*`` a normalised quaternion (w, x, y, z). This is gsplat's ``export_splats``
layout plus the three normal columns (the tests check that the payloads match byte for byte; ours is
written here because gsplat's PLY lacks the normals and fails for SH degree 0). gsplat's SuperSplat
``ply_compressed`` and antimatter15 ``splat`` formats are available through :func:`export_splats_format`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Union

import numpy as np
import torch
from torch import Tensor

from endogs.errors import DataError
from endogs.init.gaussians import SH_C0
from endogs.snapshot import Snapshot

# Opacities are clamped into [EPS, 1 - EPS] before the logit so that a saturated float32 sigmoid
# (exactly 0 or 1) stays finite; the renderer clamps alpha at 0.999 anyway.
OPACITY_EPS = 1e-7
SCALE_MIN = 1e-30


@dataclass
class RawGaussians:
    """Gaussians in gsplat's storage convention (what ``export_splats`` and the PLY hold).

    Attributes:
        means: [N, 3] positions.
        scales: [N, 3] log standard deviations.
        quats: [N, 4] normalised (w, x, y, z).
        opacities: [N] logits.
        sh0: [N, 1, 3] SH DC coefficients.
        shN: [N, K-1, 3] higher SH bands (K = 1 for degree 0).
    """

    means: Tensor
    scales: Tensor
    quats: Tensor
    opacities: Tensor
    sh0: Tensor
    shN: Tensor

    def __len__(self) -> int:
        return self.means.shape[0]

    @property
    def sh_degree(self) -> int:
        return int(round((self.shN.shape[1] + 1) ** 0.5)) - 1


def snapshot_to_raw(snapshot: Snapshot) -> RawGaussians:
    """Invert a snapshot's activations: log scales, logit opacities, normalised quaternions, SH.

    RGB colours (``sh_degree`` None) become a degree-0 DC term ``(rgb - 0.5) / SH_C0``. The inversion
    runs in float64 and the result is float32 on the CPU.
    """
    s = snapshot.detach().to(device="cpu", dtype=torch.float64)
    n = len(s)
    quats = s.quats / s.quats.norm(dim=-1, keepdim=True).clamp_min(1e-30)  # [N, 4]
    op = s.opacities.clamp(OPACITY_EPS, 1.0 - OPACITY_EPS)  # [N]
    logit = torch.log(op) - torch.log1p(-op)  # [N]
    if s.sh_degree is None:
        sh0 = ((s.colors - 0.5) / SH_C0)[:, None, :]  # [N, 1, 3]
        shN = s.colors.new_zeros(n, 0, 3)
    else:
        k = (s.sh_degree + 1) ** 2
        sh0, shN = s.colors[:, :1], s.colors[:, 1:k]  # [N, 1, 3], [N, K-1, 3]
    f = torch.float32
    return RawGaussians(
        means=s.means.to(f),
        scales=torch.log(s.scales.clamp_min(SCALE_MIN)).to(f),
        quats=quats.to(f),
        opacities=logit.to(f),
        sh0=sh0.to(f).contiguous(),
        shN=shN.to(f).contiguous(),
    )


def raw_to_snapshot(raw: RawGaussians, time: Union[float, None] = None) -> Snapshot:
    """Activate raw Gaussians (exp scales, sigmoid opacities, normalised quaternions)."""
    return Snapshot(
        means=raw.means,
        quats=raw.quats / raw.quats.norm(dim=-1, keepdim=True).clamp_min(1e-30),
        scales=torch.exp(raw.scales),
        opacities=torch.sigmoid(raw.opacities),
        colors=torch.cat([raw.sh0, raw.shN], dim=1),
        sh_degree=raw.sh_degree,
        time=time,
    )


def ply_property_names(sh_degree: int) -> list[str]:
    """The vertex property names of the INRIA layout for SH degree ``sh_degree``."""
    k = (sh_degree + 1) ** 2
    return (
        ["x", "y", "z", "nx", "ny", "nz", "f_dc_0", "f_dc_1", "f_dc_2"]
        + [f"f_rest_{i}" for i in range(3 * (k - 1))]
        + ["opacity", "scale_0", "scale_1", "scale_2", "rot_0", "rot_1", "rot_2", "rot_3"]
    )


def finite_rows(raw: RawGaussians) -> Tensor:
    """[N] bool: Gaussians whose every value is finite (the ones written)."""
    parts = [raw.means, raw.scales, raw.quats, raw.opacities[:, None], raw.sh0.flatten(1), raw.shN.flatten(1)]
    return torch.stack([torch.isfinite(p).all(dim=1) for p in parts]).all(dim=0)  # [N]


def raw_table(raw: RawGaussians) -> np.ndarray:
    """[N, P] float32 rows in :func:`ply_property_names` order (non-finite Gaussians dropped)."""
    keep = finite_rows(raw)
    n = int(keep.sum())
    shN = raw.shN[keep].permute(0, 2, 1).reshape(n, -1)  # [N, 3(K-1)] channel-major
    cols = [
        raw.means[keep],
        torch.zeros(n, 3),
        raw.sh0[keep].reshape(n, 3),
        shN,
        raw.opacities[keep][:, None],
        raw.scales[keep],
        raw.quats[keep],
    ]
    return torch.cat([c.to(torch.float32).cpu() for c in cols], dim=1).numpy()


def gaussian_ply_bytes(raw: RawGaussians) -> bytes:
    """The binary little-endian PLY file of ``raw`` in the INRIA layout (non-finite rows dropped)."""
    table = raw_table(raw)
    names = ply_property_names(raw.sh_degree)
    assert table.shape[1] == len(names), (table.shape, len(names))
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {table.shape[0]}"]
    header += [f"property float {name}" for name in names]
    header.append("end_header")
    body = np.ascontiguousarray(table, dtype="<f4").tobytes()
    return ("\n".join(header) + "\n").encode("ascii") + body


def export_splats_format(raw: RawGaussians, format: str) -> bytes:
    """gsplat's exporter in its ``"ply_compressed"`` (SuperSplat) or ``"splat"`` (antimatter15) format
    (non-finite Gaussians dropped)."""
    from gsplat import export_splats

    if format not in ("ply_compressed", "splat"):
        raise ValueError(f"format must be ply_compressed or splat, got {format!r}")
    keep = finite_rows(raw)
    return export_splats(raw.means[keep], raw.scales[keep], raw.quats[keep], raw.opacities[keep], raw.sh0[keep],
                         raw.shN[keep], format=format)


def read_gaussian_ply(path: Union[str, Path], device: Union[str, torch.device] = "cpu") -> RawGaussians:
    """Read a 3DGS PLY (INRIA layout, with or without normals; any SH degree 0..3) with plyfile.

    Raises:
        DataError: the file is missing, not a PLY, or lacks a 3DGS property.
    """
    from plyfile import PlyData

    path = Path(path)
    if not path.is_file():
        raise DataError("no such PLY file", path)
    try:
        ply = PlyData.read(str(path))
        v = ply["vertex"]
    except Exception as exc:  # plyfile raises several types for malformed files
        raise DataError(f"not a readable PLY file ({type(exc).__name__})", path) from None
    names = set(v.data.dtype.names or ())
    required = ["x", "y", "z", "f_dc_0", "f_dc_1", "f_dc_2", "opacity", "scale_0", "scale_1", "scale_2",
                "rot_0", "rot_1", "rot_2", "rot_3"]
    missing = [n for n in required if n not in names]
    if missing:
        raise DataError(f"not a 3D Gaussian splat PLY (missing {', '.join(missing)})", path)
    n_rest = sum(1 for n in names if n.startswith("f_rest_"))
    if n_rest % 3 or round(((n_rest // 3) + 1) ** 0.5) ** 2 != n_rest // 3 + 1:
        raise DataError(f"{n_rest} f_rest properties do not match an SH degree", path)

    def cols(keys: list[str]) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(v[k], dtype=np.float32) for k in keys], axis=1)).to(device)

    n = len(v.data)
    kr = n_rest // 3
    rest = cols([f"f_rest_{i}" for i in range(n_rest)]) if n_rest else torch.zeros(n, 0, device=device)
    return RawGaussians(
        means=cols(["x", "y", "z"]),
        scales=cols(["scale_0", "scale_1", "scale_2"]),
        quats=cols(["rot_0", "rot_1", "rot_2", "rot_3"]),
        opacities=cols(["opacity"])[:, 0],
        sh0=cols(["f_dc_0", "f_dc_1", "f_dc_2"])[:, None, :],
        shN=rest.reshape(n, 3, kr).permute(0, 2, 1).contiguous(),  # channel-major -> [N, K-1, 3]
    )
