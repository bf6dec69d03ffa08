"""Camera refinement, head light and exposure inside training and evaluation: what the optimizer
saw (training frames only, never a test image), what the run records, and native-resolution
evaluation (size and intrinsics of the full frames)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from endogs.config_io import merge
from endogs.data import load_scene
from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene
from endogs.eval import evaluate as E
from endogs.eval.pipeline import evaluate_run
from endogs.run import RunFolder
from endogs.train import trainer as T
from endogs.train.config import TrainConfig


@pytest.fixture(scope="module")
def moving_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("imaging")
    scene_dir = write_synthetic_scene(root / "scene", config=SyntheticConfig(width=64, height=48, n_frames=10, camera="moving", seed=2))
    data = load_scene(scene_dir)

    def refuse():
        raise AssertionError("a test-frame image was read during training")

    for i in data.test_indices:  # any access to a test image during training fails the test
        data.frames[i]._image.loader = refuse
    seen: list[tuple[int, bool]] = []
    real = T.render_frame

    def spy(scene, t, camera, *, frame_index=None, train=False, **kw):
        seen.append((frame_index, train))
        return real(scene, t, camera, frame_index=frame_index, train=train, **kw)

    cfg = merge(TrainConfig(), {"iterations": 40, "device": "cpu", "data": {"downscale": 2.0},
                                "imaging": {"refine_poses": None, "head_light": True, "exposure": True}})
    T.render_frame = spy
    try:
        tr = T.Trainer.create(cfg, scene_dir, root / "run", data=data)
        tr.train(progress=False)
    finally:
        T.render_frame = real
    return scene_dir, root / "run", data, tr, seen


def test_the_optimizer_saw_training_frames_only(moving_run):
    _, _, data, tr, seen = moving_run
    assert len(seen) == 40 and all(train for _, train in seen)
    assert {i for i, _ in seen} <= set(data.train_indices)
    im = tr.scene.imaging
    assert im.poses.frame_indices == [f.index for f in tr.frames] == list(data.train_indices)
    assert im.exposure.frame_indices == list(data.train_indices)
    for g in tr.imaging_opt.param_groups:  # the optimizer holds only the training-frame rows
        for p in g["params"]:
            assert p.ndim == 0 or p.shape[0] == len(data.train_indices)


def test_pose_and_exposure_rates_decay_from_the_pose_start(moving_run):
    _, _, _, tr, _ = moving_run
    im = tr.cfg.imaging
    rates = lambda: {g["name"]: g["lr"] for g in tr.imaging_opt.rows.param_groups}  # noqa: E731
    tr._set_lrs(im.pose_start)
    assert rates() == {"poses": im.pose_lr, "exposure": im.exposure_lr}
    tr._set_lrs(tr.cfg.iterations)
    end = rates()
    assert abs(end["poses"] - im.pose_lr * im.rows_lr_final) < 1e-12 and abs(end["exposure"] - im.exposure_lr * im.rows_lr_final) < 1e-12
    assert im.rows_lr_final < 1.0 and {g["name"] for g in tr.imaging_opt.dense.param_groups} == {"head_light"}


def test_auto_refinement_turns_on_for_a_moving_camera_and_is_recorded(moving_run):
    _, run, _, tr, _ = moving_run
    cfg = RunFolder(run).read_config()[1]
    assert cfg.imaging.refine_poses is True and cfg.imaging.pose_start == cfg.coarse_iterations
    d = tr.scene.imaging.poses.delta.detach()
    assert d.abs().sum() > 0  # the corrections moved after the warm-up
    assert float(tr.scene.imaging.head_light.falloff.detach()) != 0.0


def test_a_fixed_camera_scene_refines_nothing(tmp_path):
    scene_dir = write_synthetic_scene(tmp_path / "fixed", config=SyntheticConfig(width=32, height=24, n_frames=4, seed=1))
    cfg = merge(TrainConfig(), {"iterations": 2, "device": "cpu", "imaging": {"refine_poses": None}})
    tr = T.Trainer.create(cfg, scene_dir, tmp_path / "run")
    assert tr.cfg.imaging.refine_poses is False and tr.scene.imaging.poses is None and tr.imaging_opt is None


def test_imaging_survives_the_checkpoint_and_eval_states_the_pose_protocol(moving_run, tmp_path):
    scene_dir, run, data, tr, _ = moving_run
    opened = RunFolder(run).open("cpu", need_data=True)
    assert torch.equal(opened.scene.imaging.poses.delta, tr.scene.imaging.poses.delta.cpu())
    res = evaluate_run(run, E.EvalOptions(output=tmp_path / "ev", images=False, video=False, plots=False, fps_min_time=0, fps_warmup=0))
    proto = res.report["protocol"]
    assert "interpolated in time" in proto["poses"] and proto["imaging"] == {"refined_poses": True, "head_light": True, "exposure": True}
    assert proto["resolution_mode"] == "train" and proto["resolution"] == [32, 24]
    saved = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert saved["protocol"]["poses"] == proto["poses"]


def test_native_resolution_renders_the_full_frames_with_their_intrinsics(moving_run, tmp_path):
    _, run, data, _, _ = moving_run
    opened = RunFolder(run).open("cpu", need_data=True)
    src = E.FrameSource(opened.dataset, E.eval_downscale(opened.config, E.EvalOptions(resolution="native")))
    i = data.test_indices[0]
    assert src.size == (64, 48)
    assert np.array_equal(src.camera(i).K, opened.dataset.frames[i].camera.K)
    rgb, depth = E.render_numpy(opened.scene, data.frames[i].time, src.camera(i), i)
    assert rgb.shape == (48, 64, 3) and depth.shape == (48, 64)
    res = evaluate_run(run, E.EvalOptions(resolution="native", images=False, video=False, plots=False, fps_min_time=0, fps_warmup=0))
    assert res.out_dir == RunFolder(run).eval_dir("test", native=True)
    p = res.report["protocol"]
    assert p["resolution_mode"] == "native" and p["resolution"] == [64, 48] and p["trained_resolution"] == [32, 24]
    assert all(r.shape == (48, 64, 3) for r in res.renders.values())


def test_verdict_says_when_ssim_does_not_beat_a_baseline():
    summary = {"model": {"psnr": 38.3, "ssim": 0.9850}, "neighbour_mean": {"psnr": 34.7, "ssim": 0.9875},
               "nearest_train": {"psnr": 32.0, "ssim": 0.97}}
    v = E.make_verdict(summary, "test", "every8")
    assert v["psnr_beats"] is True and v["ssim_beats"] is False and v["beats_baselines"] is False
    assert "SSIM does NOT beat" in v["text"] and "neighbour_mean" in v["text"]
    summary["model"]["ssim"] = 0.99
    v = E.make_verdict(summary, "test", "every8")
    assert v["beats_baselines"] is True and "SSIM beats every trivial baseline" in v["text"]
