"""``DynamicScene``: canonical Gaussians + a deformation field -> a ``Snapshot`` at any time."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, Mapping, Optional, Union

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from endogs.init.pointcloud import PointCloud
from endogs.model.config import DeformConfig, HexPlaneConfig, LearningRates
from endogs.model.deformation import DeformationField, Deltas, TimeLike, make_deformation
from endogs.model.gaussians import GaussianModel
from endogs.model.imaging import Imaging
from endogs.snapshot import Snapshot

CHECKPOINT_FORMAT = 1


@dataclass
class SceneOptimizers:
    """The scene's optimizers: one Adam per per-Gaussian tensor (gsplat's strategy contract) and
    one Adam over the field's own parameters (None when it has none)."""

    gaussians: dict[str, torch.optim.Adam]
    deform: Optional[torch.optim.Adam] = None

    def __iter__(self) -> Iterator[torch.optim.Optimizer]:
        yield from self.gaussians.values()
        if self.deform is not None:
            yield self.deform

    def step(self) -> None:
        for opt in self:
            opt.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for opt in self:
            opt.zero_grad(set_to_none=set_to_none)


class DynamicScene(nn.Module):
    """Canonical ``GaussianModel`` plus a ``DeformationField``.

    ``at(t)`` is pure (no caches or counters) and differentiable w.r.t. every parameter.
    """

    def __init__(self, gaussians: GaussianModel, deform: DeformationField, deform_cfg: DeformConfig, n_frames: int):
        """Prefer :meth:`build` / :meth:`from_point_cloud`; ``deform`` must have been made for ``gaussians``."""
        super().__init__()
        self.gaussians = gaussians
        self.deform = deform
        self.deform_cfg = deform_cfg
        self.n_frames = int(n_frames)
        # Kept out of the module tree (and so out of state_dict, which holds the Gaussians and the
        # field only); saved by to_checkpoint under "imaging".
        self.__dict__["imaging"] = Imaging()

    # ----------------------------------------------------------------------------------- building
    @classmethod
    def build(
        cls,
        gaussians: GaussianModel,
        cfg: Optional[DeformConfig] = None,
        n_frames: int = 2,
        aabb: Optional[Union[Tensor, np.ndarray]] = None,
    ) -> "DynamicScene":
        """Attach the configured field to ``gaussians`` (see :func:`make_deformation`)."""
        cfg = cfg or HexPlaneConfig()
        return cls(gaussians, make_deformation(cfg, gaussians, aabb, n_frames), cfg, n_frames)

    @classmethod
    def from_point_cloud(
        cls,
        pc: PointCloud,
        cfg: Optional[DeformConfig] = None,
        n_frames: int = 2,
        sh_degree: int = 3,
        init_opacity: float = 0.1,
        init_scale: float = 1.0,
        device: Optional[Union[str, torch.device]] = None,
    ) -> "DynamicScene":
        """Gaussians seeded from ``pc`` with a field whose AABB is the cloud's."""
        g = GaussianModel.from_point_cloud(pc, sh_degree, init_opacity, init_scale, device=device)
        return cls.build(g, cfg, n_frames, aabb=pc.aabb)

    @property
    def imaging(self) -> Imaging:
        """The endoscope's imaging terms (refined poses, head light, exposure; see endogs.view)."""
        return self.__dict__["imaging"]

    def set_imaging(self, imaging: Imaging) -> None:
        self.__dict__["imaging"] = imaging

    # --------------------------------------------------------------------------------- properties
    @property
    def params(self) -> nn.ParameterDict:
        """The per-Gaussian parameters (what gsplat's strategy resizes)."""
        return self.gaussians.params

    def __len__(self) -> int:
        return len(self.gaussians)

    @property
    def num_gaussians(self) -> int:
        return len(self.gaussians)

    @property
    def max_sh_degree(self) -> int:
        return self.gaussians.max_sh_degree

    @property
    def device(self) -> torch.device:
        return self.gaussians.device

    # ---------------------------------------------------------------------------------- evaluation
    def deltas(self, t: TimeLike) -> Deltas:
        """The field's offsets at ``t``."""
        return self.deform(self.gaussians, t)

    def at(self, t: TimeLike, sh_degree: Optional[int] = None, deform: bool = True) -> Snapshot:
        """The activated scene at time ``t`` in [0, 1].

        Args:
            t: normalised time (float or 0-dim tensor).
            sh_degree: SH degree of the returned colours (default: the maximum); colours hold exactly
                (sh_degree + 1) ** 2 coefficients.
            deform: False returns the canonical scene (with ``time`` set).

        Returns:
            Snapshot with means + d_means, normalised (quats + d_quats), exp(log_scales + d_scales),
            sigmoid(logit + d_opacity) and SH colours whose DC term is shifted by d_color.
        """
        p = self.gaussians.params
        d = self.deltas(t) if deform else Deltas()
        means = p["means"] if d.d_means is None else p["means"] + d.d_means  # [N, 3]
        quats = p["quats"] if d.d_quats is None else p["quats"] + d.d_quats  # [N, 4]
        scales = p["scales"] if d.d_scales is None else p["scales"] + d.d_scales  # [N, 3]
        opac = p["opacities"] if d.d_opacity is None else p["opacities"] + d.d_opacity  # [N]
        colors, degree = self.gaussians.colors(sh_degree, d.d_color)  # [N, K, 3]
        return Snapshot(
            means=means,
            quats=F.normalize(quats, dim=-1),
            scales=torch.exp(scales),
            opacities=torch.sigmoid(opac),
            colors=colors,
            sh_degree=degree,
            time=float(t),
        )

    def canonical(self, sh_degree: Optional[int] = None) -> Snapshot:
        """The undeformed scene."""
        return self.gaussians.canonical(sh_degree)

    # -------------------------------------------------------------------------------- optimizers
    def make_optimizers(
        self, lrs: Optional[LearningRates] = None, scene_scale: float = 1.0, batch_size: int = 1
    ) -> SceneOptimizers:
        """Per-Gaussian Adams (``GaussianModel.make_optimizers``; the field's per-Gaussian tensors at its
        config's rates) plus one Adam with the field's named param groups (``deform_grid``,
        ``deform_network``, at its config's rates)."""
        lrs = lrs or LearningRates()
        groups = self.deform.param_groups()
        deform = torch.optim.Adam(groups, eps=lrs.eps) if groups else None
        return SceneOptimizers(self.gaussians.make_optimizers(lrs, scene_scale, batch_size, self.deform.gaussian_lrs()), deform)

    # ------------------------------------------------------------------------------- checkpoints
    def to_checkpoint(self) -> dict[str, Any]:
        """Everything needed to rebuild the scene: format, config, frame count, state dict."""
        return {
            "format": CHECKPOINT_FORMAT,
            "deform_cfg": self.deform_cfg.to_dict(),
            "n_frames": self.n_frames,
            "state_dict": self.state_dict(),
            "imaging": self.imaging.to_checkpoint(),
        }

    @classmethod
    def from_checkpoint(cls, ckpt: Mapping[str, Any], device: Optional[Union[str, torch.device]] = None) -> "DynamicScene":
        """Rebuild a scene saved with :meth:`to_checkpoint` (sizes come from the checkpoint)."""
        if ckpt.get("format") != CHECKPOINT_FORMAT:
            raise ValueError(f"unsupported scene checkpoint format {ckpt.get('format')!r} (expected {CHECKPOINT_FORMAT})")
        cfg = DeformConfig.from_dict(ckpt["deform_cfg"])
        scene = cls.from_state_dict(ckpt["state_dict"], cfg, int(ckpt["n_frames"]), device=device)
        scene.set_imaging(Imaging.from_checkpoint(ckpt.get("imaging"), device=scene.device))
        return scene

    @classmethod
    def from_state_dict(
        cls,
        state_dict: Mapping[str, Tensor],
        cfg: DeformConfig,
        n_frames: int,
        device: Optional[Union[str, torch.device]] = None,
    ) -> "DynamicScene":
        """A scene sized from ``state_dict`` (any number of Gaussians) with its values loaded.

        Args:
            state_dict: from ``DynamicScene.state_dict()``.
            cfg: the deformation config the scene was built with.
            n_frames: the frame count it was built with.
            device: where to put the scene (default: where the tensors are).
        """
        prefix = "gaussians.params."
        shapes = {k[len(prefix):]: tuple(v.shape) for k, v in state_dict.items() if k.startswith(prefix)}
        if "means" not in shapes or "shN" not in shapes:
            raise ValueError("state_dict has no gaussians.params.means / shN: not a DynamicScene state dict")
        n = shapes["means"][0]
        k = shapes["shN"][1] + 1
        degree = int(round(k**0.5)) - 1
        extra = {name: s[1:] for name, s in shapes.items() if name not in ("means", "scales", "quats", "opacities", "sh0", "shN")}
        if device is None:
            device = state_dict[prefix + "means"].device
        g = GaussianModel.empty(n, degree, extra, device=device)
        scene = cls.build(g, cfg, n_frames, aabb=torch.tensor([[-1.0] * 3, [1.0] * 3]))
        scene.load_state_dict(state_dict)
        return scene
