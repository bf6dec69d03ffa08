"""The training loss as named, weighted terms.

Every step, each registered term with a non-zero weight is evaluated on the step's
:class:`LossInputs`; the loss is the weighted sum, and each term's (unweighted) value is logged
under its name in ``log.jsonl``. A term returns None when it does not apply to this step (no depth
for the frame, the coarse stage, a field without that regulariser).

Weights come from ``TrainConfig.loss``: the field of the term's name (``loss.l1``, ``loss.tv``, ...)
or, for terms registered elsewhere, ``loss.terms[name]``. Adding a loss::

    @register_loss("my_term")
    def my_term(x: LossInputs) -> Optional[Tensor]:
        return ...

and train with ``loss.terms: {my_term: 0.1}`` (``--loss.terms my_term 0.1``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Optional

from torch import Tensor

from endogs.errors import ConfigError
from endogs.train.losses import inverse_depth_l1, masked_dssim, masked_l1, pearson_depth

if TYPE_CHECKING:
    from endogs.model.scene import DynamicScene
    from endogs.train.config import LossConfig


@dataclass
class LossInputs:
    """What a term sees at one step."""

    step: int
    fine: bool
    """True in the deformable stage (after the coarse warm-up)."""
    rgb: Tensor  # [H, W, 3] the render
    depth: Tensor  # [H, W] the rendered expected depth
    frame: Any  # the TrainFrame: image [H, W, 3], weight [H, W], depth [H, W] or None, time, camera
    scene: "DynamicScene"
    depth_kind: str  # "inverse_l1" | "pearson"


LossTerm = Callable[[LossInputs], Optional[Tensor]]

LOSS_TERMS: dict[str, LossTerm] = {}
"""name -> term, in the order the terms are summed."""


def register_loss(name: str) -> Callable[[LossTerm], LossTerm]:
    """Decorator: add ``fn`` to the loss under ``name``."""

    def deco(fn: LossTerm) -> LossTerm:
        LOSS_TERMS[name] = fn
        return fn

    return deco


def term_weights(cfg: "LossConfig") -> dict[str, float]:
    """The weight of every registered term (0 when unset); unknown ``loss.terms`` names are errors."""
    unknown = sorted(set(cfg.terms) - set(LOSS_TERMS))
    if unknown:
        raise ConfigError(f"loss.terms: unknown term(s) {', '.join(unknown)}; registered: {', '.join(LOSS_TERMS)}")
    return {name: float(getattr(cfg, name)) if hasattr(cfg, name) else float(cfg.terms.get(name, 0.0)) for name in LOSS_TERMS}


def total_loss(x: LossInputs, weights: dict[str, float]) -> tuple[Tensor, dict[str, float]]:
    """The weighted sum of the applicable terms, and each one's value by name. ``l1`` is always
    evaluated (it starts the sum); other terms only with a non-zero weight."""
    total: Optional[Tensor] = None
    values: dict[str, float] = {}
    for name, term in LOSS_TERMS.items():
        w = weights[name]
        if w == 0 and name != "l1":
            continue
        value = term(x)
        if value is None:
            continue
        values[name] = float(value.detach())
        total = w * value if total is None else total + w * value
    if total is None:
        raise ConfigError("loss: no term applies; give loss.l1 or another term a weight")
    return total, values


@register_loss("l1")
def _l1(x: LossInputs) -> Tensor:
    return masked_l1(x.rgb, x.frame.image, x.frame.weight)


@register_loss("dssim")
def _dssim(x: LossInputs) -> Tensor:
    return masked_dssim(x.rgb, x.frame.image, x.frame.weight)


@register_loss("depth")
def _depth(x: LossInputs) -> Optional[Tensor]:
    if x.frame.depth is None:
        return None
    fn = inverse_depth_l1 if x.depth_kind == "inverse_l1" else pearson_depth
    return fn(x.depth, x.frame.depth, x.frame.weight)


def _field_regulariser(method: str) -> LossTerm:
    def term(x: LossInputs) -> Optional[Tensor]:
        if not x.fine:
            return None
        value = getattr(x.scene.deform, method)()
        return value if value.requires_grad else None  # the field has no such regulariser

    return term


register_loss("tv")(_field_regulariser("tv_loss"))
register_loss("time_smooth")(_field_regulariser("time_smoothness_loss"))
register_loss("time_l1")(_field_regulariser("time_l1_loss"))
register_loss("offset_bound")(_field_regulariser("offset_bound_loss"))
register_loss("mean_offset")(_field_regulariser("mean_offset_loss"))


@register_loss("pose_reg")
def _pose_reg(x: LossInputs) -> Optional[Tensor]:
    poses = x.scene.imaging.poses
    return None if poses is None or not poses.has(x.frame.index) else poses.regularizer(x.frame.index)


@register_loss("exposure_reg")
def _exposure_reg(x: LossInputs) -> Optional[Tensor]:
    expo = x.scene.imaging.exposure
    return None if expo is None or not expo.has(x.frame.index) else expo.regularizer(x.frame.index)
