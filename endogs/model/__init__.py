"""Model layer: canonical Gaussians, deformation fields and the dynamic scene."""

from endogs.model.basis import TemporalBasisField
from endogs.model.config import (
    FIELDS,
    BasisConfig,
    DeformConfig,
    HexPlaneConfig,
    LearningRates,
    MLPConfig,
    StaticConfig,
    field_kinds,
    field_type,
    register_field,
)
from endogs.model.deformation import Deltas, DeformationField, NoDeformation, make_deformation
from endogs.model.gaussians import GaussianModel
from endogs.model.hexplane import HexPlaneField
from endogs.model.mlp import MLPField, positional_encoding
from endogs.model.scene import DynamicScene, SceneOptimizers

__all__ = [
    "FIELDS",
    "BasisConfig",
    "DeformConfig",
    "Deltas",
    "DeformationField",
    "DynamicScene",
    "GaussianModel",
    "HexPlaneConfig",
    "HexPlaneField",
    "LearningRates",
    "MLPConfig",
    "MLPField",
    "NoDeformation",
    "SceneOptimizers",
    "StaticConfig",
    "TemporalBasisField",
    "field_kinds",
    "field_type",
    "make_deformation",
    "positional_encoding",
    "register_field",
]
