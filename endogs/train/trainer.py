"""The per-scene optimizer: depth-prior init, coarse (static) then fine (deformable) stages,
densification, checkpoints that resume exactly. The run folder it writes is :mod:`endogs.run`'s.
"""

from __future__ import annotations

import dataclasses
import math
import resource
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from endogs.camera import Camera, cameras_move
from endogs.config_io import dump_yaml, merge
from endogs.data import Scene
from endogs.errors import ConfigError, DataError, EndogsError
from endogs.init import point_cloud_from_frames
from endogs.model.gaussians import DEFORM_PREFIX
from endogs.model.scene import DynamicScene, SceneOptimizers
from endogs.model.imaging import build_imaging
from endogs.render.api import RenderInputError
from endogs.train.optim import ImagingOptimizer
from endogs.view import render_frame
from endogs.run import RunFolder, load_data, pick_device
from endogs.train.config import TrainConfig
from endogs.train.losses import psnr
from endogs.train.strategy import CappedStrategy
from endogs.train.terms import LossInputs, term_weights, total_loss
from endogs.utils.image import downscaled_size, resample
from endogs.utils.malloc import keep_freed_memory
from endogs.utils.progress import Progress

class TrainingDiverged(EndogsError):
    """Training met ``max_nonfinite_steps`` non-finite steps in a row."""


@dataclass
class TrainFrame:
    """A training frame as tensors on the training device."""

    index: int
    time: float
    camera: Camera
    image: torch.Tensor  # [H, W, 3]
    weight: torch.Tensor  # [H, W] 1 = supervised tissue
    depth: Optional[torch.Tensor]  # [H, W] 0 = invalid


def frame_tensors(scene: Scene, indices: list[int], device: torch.device, downscale: float = 1.0, use_masks: bool = True) -> list[TrainFrame]:
    out = []
    for i in indices:
        f = scene.frames[i]
        img, depth, mask = f.image, f.depth, f.mask
        cam = f.camera
        if downscale > 1:
            size = downscaled_size(cam.width, cam.height, downscale)
            img = resample(img, size, "area")
            depth = None if depth is None else resample(depth, size, "nearest")
            mask = None if mask is None else resample(mask.astype(bool), size, "nearest")
            cam = cam.resized(*size)
        weight = np.ones(img.shape[:2], np.float32) if (mask is None or not use_masks) else mask.astype(np.float32)
        out.append(
            TrainFrame(
                index=i,
                time=f.time,
                camera=cam,
                image=torch.from_numpy(np.ascontiguousarray(img)).to(device),
                weight=torch.from_numpy(weight).to(device),
                depth=None if depth is None else torch.from_numpy(np.ascontiguousarray(depth)).to(device),
            )
        )
    return out


def frame_order(seed: int, epoch: int, n: int) -> list[int]:
    """The (stateless, reproducible) order of the training frames in ``epoch``."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class Trainer:
    """Optimise a ``DynamicScene`` on the training frames of a dataset.

    Build with :meth:`create` (a new run) or :meth:`resume` (continue a run folder), then call
    :meth:`train`.
    """

    def __init__(self, cfg: TrainConfig, data_path: Path, run_dir: Path, data: Optional[Scene] = None):
        self.device = pick_device(cfg.device)
        if self.device.type == "cpu":
            keep_freed_memory()  # no page-fault storm from the step's large transient tensors (endogs.utils.malloc)
        self.data_path = Path(data_path)
        self.run_dir = Path(run_dir)
        self.folder = RunFolder(self.run_dir)
        self.data = data if data is not None else load_data(self.data_path, cfg)
        cfg = cfg.resolved(self.device.type, self.data.width, self.data.height)
        im = cfg.imaging  # record the automatic choices in run.yaml
        refine = im.refine_poses if im.refine_poses is not None else cameras_move([self.data.frames[i].camera.c2w for i in self.data.train_indices])
        start = im.pose_start if im.pose_start is not None else cfg.coarse_iterations
        self.cfg = merge(cfg, {"imaging": {"refine_poses": bool(refine), "pose_start": int(start)}})
        self.frames = frame_tensors(self.data, self.data.train_indices, self.device, self.cfg.data.downscale, self.cfg.loss.use_masks)
        if not self.frames:
            raise DataError("the split leaves no training frame", self.data_path)
        kind = self.cfg.loss.depth_kind
        if kind == "auto":
            kind = "pearson" if self.data.depth_unit == "relative" else "inverse_l1"
        self.depth_kind = kind
        self.loss_weights = term_weights(self.cfg.loss)
        self.step = 0
        self.elapsed = 0.0
        self.scene: Optional[DynamicScene] = None
        self.optimizers: Optional[SceneOptimizers] = None
        self.strategy: Optional[CappedStrategy] = None
        self.strategy_state: dict[str, Any] = {}
        self.scene_scale = 1.0
        self.stop_requested = False
        self.skipped_nonfinite = 0  # steps skipped for a non-finite loss or gradient, in all
        self.nonfinite_streak = 0  # ... in a row, up to the last step
        self.imaging_opt: Optional[ImagingOptimizer] = None

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def create(cls, cfg: TrainConfig, data_path: Path, run_dir: Path, data: Optional[Scene] = None) -> "Trainer":
        t0 = time.perf_counter()
        run_dir = Path(run_dir)
        if RunFolder(run_dir).has_checkpoint():
            raise ConfigError(f"{run_dir}: a run already exists here; resume it with --resume {run_dir} or choose another --output")
        tr = cls(cfg, data_path, run_dir, data)
        if tr.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(tr.device)
        torch.manual_seed(tr.cfg.seed)
        # The initial cloud leaves room to densify: at most half of strategy.max_gaussians.
        init_cfg = merge(tr.cfg.init, {"max_points": min(tr.cfg.init.max_points, max(1, tr.cfg.strategy.max_gaussians // 2))})
        pc = point_cloud_from_frames(tr.data.train_frames, init_cfg)
        tr.scene_scale = float(pc.scale_hint)
        tr.scene = DynamicScene.from_point_cloud(
            pc, tr.cfg.deform, n_frames=len(tr.data), sh_degree=tr.cfg.sh_degree,
            init_opacity=tr.cfg.init_opacity, init_scale=tr.cfg.init_scale, device=tr.device,
        )
        centre = tr.frames[0].camera.c2w[:3, 3]
        ref_dist = float(np.median(np.linalg.norm(pc.xyz - centre[None].astype(np.float32), axis=1))) if len(pc) else 1.0
        tr.scene.set_imaging(build_imaging(
            tr.cfg.imaging, [f.index for f in tr.frames], [f.time for f in tr.frames], [f.camera.c2w for f in tr.frames],
            tr.scene_scale, max(ref_dist, 1e-6), device=tr.device))
        tr._build_optim()
        tr.folder.write_config(tr.data_path, tr.cfg)
        tr.folder.start_log()
        tr.elapsed = time.perf_counter() - t0
        tr._log({"event": "init", "num_points": len(pc), "scene_scale": tr.scene_scale, "num_gaussians": tr.scene.num_gaussians,
                 "device": tr.device.type, "train_frames": len(tr.frames), "init_s": tr.elapsed,
                 "train_indices": list(tr.data.train_indices), "test_indices": list(tr.data.test_indices)})
        return tr

    @classmethod
    def resume(cls, run_dir: Path, data: Optional[Scene] = None, overrides: Optional[dict] = None) -> "Trainer":
        folder = RunFolder(run_dir)
        data_path, cfg = folder.read_config()
        ckpt = folder.load_checkpoint()
        tr = cls(cfg, data_path, run_dir, data)
        tr.scene = DynamicScene.from_checkpoint(ckpt["scene"], device=tr.device)
        tr.scene_scale = float(ckpt["scene_scale"])
        tr._build_optim()
        for name, opt in tr.optimizers.gaussians.items():
            opt.load_state_dict(ckpt["optimizers"]["gaussians"][name])
        if tr.optimizers.deform is not None:
            tr.optimizers.deform.load_state_dict(ckpt["optimizers"]["deform"])
        if tr.imaging_opt is not None:
            tr.imaging_opt.load_state_dict(ckpt["optimizers"]["imaging"])
        tr.strategy_state = {k: (v.to(tr.device) if isinstance(v, torch.Tensor) else v) for k, v in ckpt["strategy_state"].items()}
        tr.step = int(ckpt["step"])
        tr.elapsed = float(ckpt["elapsed_s"])
        tr.skipped_nonfinite = int(ckpt.get("skipped_nonfinite", 0))
        torch.set_rng_state(ckpt["rng"]["torch"])
        if tr.device.type == "cuda" and "cuda" in ckpt["rng"]:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        tr._log({"event": "resume", "step": tr.step})
        return tr

    def _build_optim(self) -> None:
        cfg = self.cfg
        self.optimizers = self.scene.make_optimizers(cfg.lr, scene_scale=self.scene_scale)
        groups = self.scene.imaging.param_groups(cfg.imaging)
        self.imaging_opt = ImagingOptimizer(groups) if groups else None
        self.strategy = dataclasses.replace(cfg.strategy)  # the config is the strategy; a copy keeps cfg unmutated
        self.strategy.check_sanity(self.scene.params, self.optimizers.gaussians)
        self.strategy_state = self.strategy.initialize_state(scene_scale=self.scene_scale)
        self._base_lrs = {name: [g["lr"] for g in opt.param_groups] for name, opt in self.optimizers.gaussians.items()}
        self._base_rows = [] if self.imaging_opt is None or self.imaging_opt.rows is None else [g["lr"] for g in self.imaging_opt.rows.param_groups]
        self._base_deform = None if self.optimizers.deform is None else [g["lr"] for g in self.optimizers.deform.param_groups]

    # ---------------------------------------------------------------------------------- the loop
    def _set_lrs(self, step: int) -> None:
        frac = step / max(1, self.cfg.iterations)
        m = self.cfg.means_lr_final**frac
        for g, lr in zip(self.optimizers.gaussians["means"].param_groups, self._base_lrs["means"]):
            g["lr"] = lr * m
        fine = max(0.0, (step - self.cfg.coarse_iterations) / max(1, self.cfg.iterations - self.cfg.coarse_iterations))
        d = self.cfg.deform_lr_final**fine
        if self.optimizers.deform is not None:
            for g, lr in zip(self.optimizers.deform.param_groups, self._base_deform):
                g["lr"] = lr * d
        if self.imaging_opt is not None and self.imaging_opt.rows is not None:  # per-frame poses and exposures
            im = self.cfg.imaging
            span = max(1, self.cfg.iterations - im.pose_start)
            r = im.rows_lr_final ** min(1.0, max(0.0, (step - im.pose_start) / span))
            for g, lr in zip(self.imaging_opt.rows.param_groups, self._base_rows):
                g["lr"] = lr * r
        for name, opt in self.optimizers.gaussians.items():  # per-Gaussian temporal-basis coefficients
            if name.startswith(DEFORM_PREFIX):
                for g, lr in zip(opt.param_groups, self._base_lrs[name]):
                    g["lr"] = lr * d

    def frame_for_step(self, step: int) -> TrainFrame:
        n = len(self.frames)
        return self.frames[frame_order(self.cfg.seed, step // n, n)[step % n]]

    def train_step(self) -> dict[str, float]:
        cfg, step = self.cfg, self.step
        self._set_lrs(step)
        fr = self.frame_for_step(step)
        fine = step >= cfg.coarse_iterations
        sh = min(step // cfg.sh_degree_interval, cfg.sh_degree)
        try:
            out = render_frame(self.scene, fr.time, fr.camera, frame_index=fr.index, train=True, sh_degree=sh, deform=fine,
                               optimize_poses=step >= cfg.imaging.pose_start, background=cfg.background, absgrad=cfg.strategy.absgrad)
        except RenderInputError:
            if self.params_finite():
                raise
            return self._skip_step()  # the renderer refuses a NaN / inf parameter: a non-finite step
        if cfg.strategy.enabled:
            self.strategy.step_pre_backward(self.scene.params, self.optimizers.gaussians, self.strategy_state, step, out.info)
        rgb = out.rgb[0]
        inputs = LossInputs(step=step, fine=fine, rgb=rgb, depth=out.depth[0, ..., 0], frame=fr, scene=self.scene, depth_kind=self.depth_kind)
        loss, terms = total_loss(inputs, self.loss_weights)
        loss.backward()
        finite = self._finite(loss)
        if finite:
            self.optimizers.step()
            if self.imaging_opt is not None:
                self.imaging_opt.step()
            self.nonfinite_streak = 0
        else:  # never an optimizer step (or densification statistics) on NaN / inf
            self._count_skip()
        self.optimizers.zero_grad(set_to_none=True)
        if self.imaging_opt is not None:
            self.imaging_opt.zero_grad(set_to_none=True)
        if cfg.strategy.enabled and finite:
            self.strategy.step_post_backward(self.scene.params, self.optimizers.gaussians, self.strategy_state, step, out.info, packed=False)
        self.step += 1
        terms["skipped_nonfinite"] = self.skipped_nonfinite
        terms["loss"] = float(loss.detach())
        terms["psnr"] = psnr(rgb.detach(), fr.image, fr.weight)
        return terms

    def _count_skip(self) -> None:
        self.skipped_nonfinite += 1
        self.nonfinite_streak += 1

    def _skip_step(self) -> dict[str, float]:
        self._count_skip()
        self.optimizers.zero_grad(set_to_none=True)
        if self.imaging_opt is not None:
            self.imaging_opt.zero_grad(set_to_none=True)
        self.step += 1
        return {"loss": math.nan, "psnr": math.nan, "skipped_nonfinite": self.skipped_nonfinite}

    def _optimized(self) -> list[torch.Tensor]:
        opts = [*self.optimizers.gaussians.values(), *([self.optimizers.deform] if self.optimizers.deform is not None else []),
                *([self.imaging_opt] if self.imaging_opt is not None else [])]
        return [p for o in opts for g in o.param_groups for p in g["params"]]

    def _finite(self, loss: torch.Tensor) -> bool:
        """Whether the loss and every gradient are finite (one device sync).

        A sum over a tensor is finite only if all its elements are (IEEE: NaN and inf propagate), so the
        sums decide in one pass; only when a sum is not finite (a NaN / inf element, or an overflow of
        the sum of finite elements) does the element-wise test decide."""
        grads = [p.grad for p in self._optimized() if p.grad is not None]
        if bool(torch.isfinite(torch.stack([loss.detach().sum(), *(g.sum() for g in grads)])).all()):
            return True
        checks = [torch.isfinite(loss).all()] + [torch.isfinite(g).all() for g in grads]
        return bool(torch.stack(checks).all())

    def params_finite(self) -> bool:
        return bool(torch.stack([torch.isfinite(p.detach()).all() for p in self._optimized()]).all())

    def train(self, progress: bool = True, on_step: Optional[Callable[["Trainer", dict], None]] = None, stop_at: Optional[int] = None) -> None:
        """Run to ``cfg.iterations`` (or ``stop_at``), logging and checkpointing on the way; ``progress``:
        a bar on a terminal, else a line every ~10 % (loss, PSNR, #Gaussians, ETA)."""
        cfg = self.cfg
        end = cfg.iterations if stop_at is None else min(stop_at, cfg.iterations)
        bar = Progress(cfg.iterations, "train", enabled=progress, initial=self.step)
        t_start = time.perf_counter()
        elapsed0 = self.elapsed
        while self.step < end and not self.stop_requested:
            terms = self.train_step()
            self.elapsed = elapsed0 + time.perf_counter() - t_start
            bar.update(1, loss=terms["loss"], psnr=terms["psnr"], gs=self.scene.num_gaussians)
            if self.step % cfg.log_every == 0 or self.step == cfg.iterations:
                rec = {"step": self.step, **{k: round(v, 6) for k, v in terms.items()}, "num_gaussians": self.scene.num_gaussians,
                       "stage": "fine" if self.step > cfg.coarse_iterations else "coarse", "elapsed_s": round(self.elapsed, 3)}
                self._log(rec)
            if on_step is not None:
                on_step(self, terms)
            if self.nonfinite_streak >= cfg.max_nonfinite_steps:
                bar.close()
                self._diverged()
            if self.step % cfg.checkpoint_every == 0 and self.step < cfg.iterations:
                self.save()
        bar.close()
        if self.step >= cfg.iterations:
            self.save(done=True)
            self._log({"event": "done", "step": self.step, "train_time_s": round(self.elapsed, 3), "num_gaussians": self.scene.num_gaussians,
                       "peak_memory_mb": round(peak_memory_mb(self.device), 1), "device": self.device.type})
        else:
            self.save()

    def _diverged(self) -> None:
        self._log({"event": "nonfinite_stop", "step": self.step, "skipped_nonfinite": self.skipped_nonfinite})
        raise TrainingDiverged(f"training turned non-finite: {self.nonfinite_streak} steps in a row (to step {self.step}) had a NaN "
                               f"or infinite loss, gradient or parameter and were skipped; the last good checkpoint is kept; lower the "
                               f"learning rates (--lr.*, --deform.*) or the new loss weights and resume (endogs train --resume "
                               f"{self.run_dir}) or retrain", self.folder.checkpoint_file)

    # ------------------------------------------------------------------------------ persistence
    def save(self, done: bool = False) -> Optional[Path]:
        """Write checkpoint.pt; withheld (None) while a parameter is non-finite, so the last good one stays."""
        if not self.params_finite():
            return None
        rng = {"torch": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state()
        ckpt = {
            "step": self.step,
            "done": done,
            "elapsed_s": self.elapsed,
            "skipped_nonfinite": self.skipped_nonfinite,
            "scene_scale": self.scene_scale,
            "config": dump_yaml(self.cfg),
            "scene": self.scene.to_checkpoint(),
            "optimizers": {
                "gaussians": {k: o.state_dict() for k, o in self.optimizers.gaussians.items()},
                "deform": None if self.optimizers.deform is None else self.optimizers.deform.state_dict(),
                "imaging": None if self.imaging_opt is None else self.imaging_opt.state_dict(),
            },
            "strategy_state": {k: v for k, v in self.strategy_state.items() if v is None or isinstance(v, (torch.Tensor, int, float, tuple))},
            "rng": rng,
        }
        return self.folder.save_checkpoint(ckpt)

    def _log(self, rec: dict) -> None:
        self.folder.append_log(rec)
