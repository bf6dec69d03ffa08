"""Export a reconstruction outside endogs: Gaussian PLYs, point clouds, meshes, depth maps, videos.

>>> from endogs.export import ExportOptions, export_run
>>> index = export_run("outputs/runs/pulling", ExportOptions(what=("ply", "mesh"), times=(0.0, 1.0)))

The CLI is ``endogs export RUN --what ply|points|mesh|depth|video|all`` (:func:`endogs.export.cli.export`).
"""

from endogs.export.exporter import WHAT, ExportOptions, Exporter, check_times, export_run, parse_what, read_index
from endogs.export.ply import (
    RawGaussians,
    gaussian_ply_bytes,
    ply_property_names,
    raw_to_snapshot,
    read_gaussian_ply,
    snapshot_to_raw,
)

__all__ = [
    "WHAT",
    "ExportOptions",
    "Exporter",
    "export_run",
    "parse_what",
    "check_times",
    "read_index",
    "RawGaussians",
    "snapshot_to_raw",
    "raw_to_snapshot",
    "gaussian_ply_bytes",
    "read_gaussian_ply",
    "ply_property_names",
]
