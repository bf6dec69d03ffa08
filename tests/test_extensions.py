"""Extension points: a deformation field and a loss term registered from outside the package train
end to end; old config layouts load (migrated) or fail with one line; ``--deform.kind`` picks the
field whose options tyro then offers."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Literal, Optional

import pytest
import torch
from torch import Tensor, nn

from endogs.config_io import from_dict, merge
from endogs.data.synthetic import SyntheticConfig, write_synthetic_scene
from endogs.errors import ConfigError
from endogs.model import FIELDS, BasisConfig, DeformConfig, HexPlaneConfig, MLPConfig, register_field
from endogs.model.deformation import Deltas, NormalizedField
from endogs.train import TrainConfig, Trainer
from endogs.train.cli import parse
from endogs.train.terms import LOSS_TERMS, LossInputs, register_loss

FAST = {"log_every": 2, "checkpoint_every": 1000, "sh_degree": 0, "device": "cpu", "iterations": 6,
        "coarse_iterations": 2, "init": {"max_points": 300}, "strategy": {"enabled": False, "max_gaussians": 600}}


class ToyField(NormalizedField):
    """Every Gaussian moves by one learned, time-scaled vector."""

    def __init__(self, cfg: "ToyConfig", aabb: Tensor):
        super().__init__(cfg, aabb)
        self.velocity = nn.Parameter(torch.zeros(3))

    def forward(self, model, t) -> Deltas:
        means = model.params["means"]
        return self.to_deltas({"means": (float(t) * self.velocity).expand_as(means)})


@dataclass
class ToyConfig(DeformConfig):
    kind: Literal["toy"] = "toy"
    rotation: bool = False
    scale: bool = False
    color: bool = False
    network_lr: float = 0.05
    """Adam rate of the velocity."""

    def build(self, model, aabb, n_frames):
        return ToyField(self, aabb)


def _toy_loss(x: LossInputs) -> Optional[Tensor]:
    if not x.fine:
        return None
    return x.scene.deform.velocity.square().sum() if hasattr(x.scene.deform, "velocity") else None


@pytest.fixture(scope="module")
def registered():
    register_field(ToyConfig)
    register_loss("toy_velocity")(_toy_loss)
    yield
    del FIELDS["toy"], LOSS_TERMS["toy_velocity"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("scene") / "tiny"
    write_synthetic_scene(root, config=SyntheticConfig(width=32, height=24, n_frames=6))
    return root


def test_a_registered_field_and_loss_train_and_are_logged(registered, tiny, tmp_path):
    cfg = merge(TrainConfig(), {**FAST, "deform": {"kind": "toy"}, "loss": {"terms": {"toy_velocity": 0.5}}})
    assert isinstance(cfg.deform, ToyConfig) and cfg.deform.attributes == ("means",)
    tr = Trainer.create(cfg, tiny, tmp_path / "run")
    tr.train(progress=False)
    groups = tr.optimizers.deform.param_groups
    assert [(g["name"], len(g["params"])) for g in groups] == [("deform_network", 1)]
    assert float(tr.scene.deform.velocity.detach().abs().sum()) > 0  # the field learned
    steps = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    steps = [r for r in steps if "step" in r and "stage" in r]
    assert [r["step"] for r in steps] == [2, 4, 6]
    assert "toy_velocity" not in steps[0]  # coarse stage: the term does not apply
    assert steps[-1]["toy_velocity"] > 0 and {"l1", "dssim", "depth", "loss"} <= set(steps[-1])
    # the run folder reloads the field by kind
    assert isinstance(Trainer.resume(tmp_path / "run").cfg.deform, ToyConfig)


def test_unknown_loss_term_is_one_line(registered, tiny, tmp_path):
    with pytest.raises(ConfigError, match=r"^loss.terms: unknown term\(s\) nope; registered: l1, dssim, depth, tv, time_smooth, time_l1, offset_bound"):
        Trainer.create(merge(TrainConfig(), {**FAST, "loss": {"terms": {"nope": 1.0}}}), tiny, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_time_l1_is_a_term_with_weight_zero():
    assert TrainConfig().loss.time_l1 == 0.0 and "time_l1" in LOSS_TERMS


def test_kind_changes_keep_the_shared_options():
    base = merge(TrainConfig(), {"deform": {"opacity": True, "feature_dim": 8}})
    m = merge(base, {"deform": {"kind": "mlp", "width": 16}})
    assert isinstance(m.deform, MLPConfig) and m.deform.opacity and m.deform.width == 16
    with pytest.raises(ConfigError, match="unknown key feature_dim"):
        merge(base, {"deform": {"kind": "mlp", "feature_dim": 8}})
    with pytest.raises(ConfigError, match=r"^config.deform.kind: 'foo' is not one of 'hexplane', 'mlp', 'basis', 'none'"):
        from_dict(TrainConfig, {"deform": {"kind": "foo"}})


def test_old_layout_migrates():
    """run.yaml files written before per-field classes: nested options, field rates in lr,
    refine_start/refine_stop."""
    old = {"deform": {"kind": "basis", "position": True, "hexplane": {"feature_dim": 3}, "mlp": {"width": 9},
                      "basis": {"num_rbf": 5, "rbf_width": 1.0, "num_fourier": 0}},
           "lr": {"means": 8e-4, "grid": 3e-2, "network": 3e-3, "mlp": 1e-3, "basis": 2e-4},
           "strategy": {"refine_start": 7, "refine_stop": 70}}
    cfg = from_dict(TrainConfig, old)
    assert cfg.deform == BasisConfig(num_rbf=5, coef_lr=2e-4)
    assert cfg.strategy.refine_start_iter == 7 and cfg.strategy.refine_stop_iter == 70
    with pytest.raises(ConfigError, match=r"lr.network is now deform.network_lr of kind hexplane \(deform.kind is 'basis'\)"):
        from_dict(TrainConfig, {"deform": {"kind": "basis"}, "lr": {"network": 1.0}})


def test_cli_kind_flag_offers_that_fields_options():
    a = parse(["scene", "--deform.width", "32", "--deform.kind", "mlp", "--iterations", "5"])
    assert type(a.config) is TrainConfig and a.config.deform == MLPConfig(width=32) and a.config.iterations == 5
    a = parse(["scene", "--preset", "demo", "--deform.kind=basis", "--deform.coef-lr", "1e-3"])
    assert a.config.deform == BasisConfig(coef_lr=1e-3) and a.config.iterations == 750
    assert parse(["scene"]).config.deform == HexPlaneConfig()
    with pytest.raises(SystemExit):  # a hexplane option without choosing hexplane
        parse(["scene", "--deform.kind", "basis", "--deform.feature-dim", "4"])


def test_renamed_strategy_flags_still_parse_and_say_so(capsys):
    a = parse(["scene", "--strategy.refine-stop", "2400", "--strategy.refine-start=50", "--iterations", "3000"])
    assert a.config.strategy.refine_stop_iter == 2400 and a.config.strategy.refine_start_iter == 50
    err = capsys.readouterr().err.splitlines()
    assert err == ["endogs train: --strategy.refine-stop is now --strategy.refine-stop-iter; using that",
                   "endogs train: --strategy.refine-start is now --strategy.refine-start-iter; using that"]
    assert parse(["scene", "--strategy.refine-stop-iter", "9"]).config.strategy.refine_stop_iter == 9
    assert capsys.readouterr().err == ""
