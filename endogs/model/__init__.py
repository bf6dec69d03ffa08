"""Model layer: canonical Gaussians, deformation fields and the dynamic scene."""

from endogs.model.basis import TemporalBasisField
from endogs.model.config import BasisConfig, DeformConfig, HexPlaneConfig, LearningRates, MLPConfig
from endogs.model.deformation import Deltas, DeformationField, NoDeformation, make_deformation
from endogs.model.gaussians import GaussianModel
from endogs.model.hexplane import HexPlaneField
from endogs.model.mlp import MLPField, positional_encoding
from endogs.model.scene import DynamicScene, SceneOptimizers

__all__ = [
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
    "TemporalBasisField",
    "make_deformation",
    "positional_encoding",
]
