"""LPIPS (Zhang et al. 2018, "lin" v0.1) with the AlexNet backbone, offline.

No package on PyPI ships the AlexNet ImageNet weights (STACK.md §6), and torchvision is not a
dependency. So the backbone is AlexNet's ``features`` written out here (same layer indices as
torchvision, so torchvision's state dict loads as is) and its weights come from the file
``alexnet-owt-7be5be79.pth`` that torchvision downloads: a path the user gives, or the local torch hub
cache (``$TORCH_HOME/hub/checkpoints``). The five linear heads of LPIPS v0.1 ship inside torchmetrics
(``torchmetrics/functional/image/lpips_models/alex.pth``).

Without the backbone weights LPIPS is *unavailable* and reported so; it is never estimated with a
random backbone.

Inputs are RGB in [0, 1], mapped to [-1, 1] (``2x - 1``) before LPIPS' own scaling layer, as the
``lpips`` package with ``normalize=True`` and EndoGaussian/Deform3DGS do.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Union

import torch
from torch import nn

from endogs.errors import DataError

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_SHA256_PREFIX = "7be5be79"
ALEXNET_URL = "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"
BACKBONE = "alex"
INPUT_RANGE = "[-1, 1]"
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_CHANNELS = (64, 192, 384, 256, 256)
_TAPS = (1, 4, 7, 9, 11)  # ReLU outputs used by LPIPS (torchvision ``features`` indices)


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` (indices 0..12), without torchvision."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def lin_heads_path() -> Optional[Path]:
    """The LPIPS v0.1 AlexNet linear heads bundled with torchmetrics, or None."""
    try:
        import torchmetrics
    except ImportError:
        return None
    p = Path(torchmetrics.__file__).parent / "functional" / "image" / "lpips_models" / "alex.pth"
    return p if p.is_file() else None


def cache_dirs() -> list[Path]:
    """Where torchvision would have cached the AlexNet weights."""
    dirs = [Path(torch.hub.get_dir()) / "checkpoints"]
    home = Path(os.path.expanduser("~")) / ".cache" / "torch" / "hub" / "checkpoints"
    if home not in dirs:
        dirs.append(home)
    return dirs


@dataclass
class LPIPSStatus:
    """Whether LPIPS can be computed, and the facts a report must state about it."""

    available: bool
    reason: str = ""
    backbone_path: Optional[str] = None
    backbone_sha256: Optional[str] = None
    backbone_verified: bool = False
    heads_path: Optional[str] = None
    searched: list[str] = field(default_factory=list)

    def protocol(self) -> dict:
        if not self.available:
            return {"status": "unavailable", "reason": self.reason, "searched": self.searched,
                    "backbone": "AlexNet (torchvision alexnet-owt-7be5be79)", "fix": _FIX}
        return {
            "status": "computed",
            "backbone": "AlexNet (torchvision ImageNet weights) + LPIPS v0.1 linear heads",
            "input_range": INPUT_RANGE,
            "images": "mask-multiplied (tool pixels 0 in both), as for ssim",
            "backbone_file": self.backbone_path,
            "backbone_sha256": self.backbone_sha256,
            "backbone_verified": self.backbone_verified,
            "heads_file": self.heads_path,
        }


_FIX = (f"put {ALEXNET_FILE} (from {ALEXNET_URL}) in $TORCH_HOME/hub/checkpoints/ or pass "
        f"--lpips-weights PATH")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def find_backbone(path: Optional[Union[str, Path]] = None) -> tuple[Optional[Path], list[str]]:
    """The AlexNet weights file: ``path`` (a file, or a folder holding ``alexnet-owt-7be5be79.pth``)
    when given, else the torch hub cache. Returns (file or None, places searched).

    Raises:
        DataError: ``path`` is given but holds no such file.
    """
    if path is not None:
        p = Path(path).expanduser()
        if p.is_dir():
            p = p / ALEXNET_FILE
        if not p.is_file():
            raise DataError(f"no AlexNet weights file here; {_FIX}", p)
        return p, [str(p)]
    searched = []
    for d in cache_dirs():
        searched.append(str(d / ALEXNET_FILE))
        if (d / ALEXNET_FILE).is_file():
            return d / ALEXNET_FILE, searched
    return None, searched


class LPIPS(nn.Module):
    """LPIPS-Alex distance. Build with :func:`load_lpips` (or from explicit state dicts)."""

    def __init__(self, features_state: dict, heads_state: dict):
        super().__init__()
        self.features = alexnet_features()
        self.features.load_state_dict(features_state, strict=True)
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS)
        for k, lin in enumerate(self.lins):
            lin.weight.data.copy_(heads_state[f"lin{k}.model.1.weight"])
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.eval().requires_grad_(False)

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in _TAPS:
                out.append(x)
            if i == _TAPS[-1]:
                break
        return out

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """Distance per image of [B, 3, H, W] batches with values in [0, 1]."""
        x0 = ((2 * x0 - 1) - self.shift) / self.scale
        x1 = ((2 * x1 - 1) - self.shift) / self.scale
        total = 0
        for lin, f0, f1 in zip(self.lins, self._taps(x0), self._taps(x1)):
            n0 = f0 / torch.sqrt((f0**2).sum(1, keepdim=True) + 1e-8)
            n1 = f1 / torch.sqrt((f1**2).sum(1, keepdim=True) + 1e-8)
            total = total + lin((n0 - n1) ** 2).mean((2, 3))
        return total.view(-1)

    @torch.no_grad()
    def distance(self, a, b) -> float:
        """LPIPS of two [H, W, 3] images in [0, 1] (numpy or torch)."""
        dev = self.shift.device
        dt = self.shift.dtype
        ta = torch.as_tensor(a).to(dev, dt).permute(2, 0, 1)[None]
        tb = torch.as_tensor(b).to(dev, dt).permute(2, 0, 1)[None]
        return float(self(ta, tb)[0])


def _features_state(raw: dict, path: Path) -> dict:
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise DataError("not a state dict of torchvision's AlexNet", path)
    feats = {k[len("features."):]: v for k, v in raw.items() if isinstance(k, str) and k.startswith("features.")}
    want = {f"{i}.{p}" for i in (0, 3, 6, 8, 10) for p in ("weight", "bias")}
    if set(feats) != want:
        raise DataError(f"not torchvision AlexNet weights (expected keys features.{{0,3,6,8,10}}.{{weight,bias}}, "
                        f"found {len(feats)} features.* keys); {_FIX}", path)
    return feats


def load_lpips(path: Optional[Union[str, Path]] = None, device: Union[str, torch.device] = "cpu",
               verify: bool = True) -> tuple[Optional[LPIPS], LPIPSStatus]:
    """LPIPS-Alex from local weights, or (None, status saying why it is unavailable).

    Args:
        path: the AlexNet weights file (or its folder); None searches the torch hub cache.
        device: where to run the network.
        verify: compute the file's SHA-256 and check it against torchvision's published prefix.

    Raises:
        DataError: ``path`` was given but is missing or is not AlexNet weights.
    """
    backbone, searched = find_backbone(path)
    heads = lin_heads_path()
    if backbone is None:
        return None, LPIPSStatus(False, f"AlexNet weights {ALEXNET_FILE} not found locally", searched=searched)
    if heads is None:
        return None, LPIPSStatus(False, "torchmetrics' LPIPS linear heads (lpips_models/alex.pth) not found",
                                 searched=searched)
    try:
        raw = torch.load(backbone, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"cannot read AlexNet weights ({type(exc).__name__}); {_FIX}", backbone) from None
    feats = _features_state(raw, backbone)
    heads_state = torch.load(heads, map_location="cpu", weights_only=True)
    try:
        net = LPIPS(feats, heads_state)
    except RuntimeError as exc:
        raise DataError(f"AlexNet weights have the wrong shapes ({str(exc).splitlines()[0]}); {_FIX}", backbone) from None
    sha = _sha256(backbone) if verify else None
    status = LPIPSStatus(True, backbone_path=str(backbone), backbone_sha256=sha,
                         backbone_verified=bool(sha and sha.startswith(ALEXNET_SHA256_PREFIX)),
                         heads_path=str(heads), searched=searched)
    if not status.backbone_verified:
        status.reason = ("backbone file is not torchvision's published alexnet-owt-7be5be79 (SHA-256 differs): "
                         "values are not comparable with published LPIPS")
    return net.to(device), status


def min_size_ok(height: int, width: int) -> bool:
    """AlexNet needs at least ~31 px per side (conv 11/4 then two 3/2 max-pools)."""
    return min(height, width) >= 31


__all__ = ["LPIPS", "LPIPSStatus", "load_lpips", "find_backbone", "alexnet_features", "lin_heads_path"]
