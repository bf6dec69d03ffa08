"""endogs: reconstruct deforming surgical scenes with dynamic 3D Gaussian splatting."""

__version__ = "0.1.0"
