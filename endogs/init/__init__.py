"""Depth-prior initialisation: frames -> point cloud -> initial Gaussian parameters."""

from endogs.init.gaussians import SH_C0, gaussians_from_point_cloud, knn_mean_distance, rgb_to_sh, sh_to_rgb
from endogs.init.pointcloud import InitConfig, PointCloud, point_cloud_from_frames, select_frames

__all__ = [
    "SH_C0",
    "InitConfig",
    "PointCloud",
    "gaussians_from_point_cloud",
    "knn_mean_distance",
    "point_cloud_from_frames",
    "rgb_to_sh",
    "select_frames",
    "sh_to_rgb",
]
