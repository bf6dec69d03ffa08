"""Which CPU rasterizer draws a render: the compiled numba kernels or the pure-PyTorch reference.

``render(..., cpu_backend=...)`` or the environment variable ``ENDOGS_CPU_BACKEND`` chooses:

* ``"auto"`` (the default): numba for CPU tensors; the PyTorch rasterizer on any other device.
  If numba cannot be imported, the PyTorch rasterizer is used and a ``RuntimeWarning`` says so
  (Python shows it once per process);
* ``"numba"``: the compiled kernels; CPU tensors only, and an error (one line) if numba is
  missing or broken;
* ``"torch"``: the pure-PyTorch rasterizer (:mod:`endogs.render.cpu`), on any device.

The keyword wins over the environment variable.
"""

from __future__ import annotations

import os
import warnings
from typing import Optional

import torch

from ..errors import EndogsError

CPU_BACKENDS = ("auto", "numba", "torch")
ENV_VAR = "ENDOGS_CPU_BACKEND"


class CpuBackendError(EndogsError, ValueError):
    """A bad or unavailable ``cpu_backend`` choice (one-line message)."""


def _numba_import_error() -> Optional[str]:
    try:
        from . import cpu_numba  # noqa: F401
    except Exception as exc:  # ImportError, or a broken llvmlite/numba install
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    return None


def choose_cpu_backend(requested: Optional[str], device: torch.device) -> str:
    """``"numba"`` or ``"torch"`` for a render on ``device`` (see the module docstring)."""
    source = "cpu_backend"
    if requested is None:
        requested, source = os.environ.get(ENV_VAR, "auto").strip().lower() or "auto", ENV_VAR
    if requested not in CPU_BACKENDS:
        raise CpuBackendError(f"render: {source} must be 'auto', 'numba' or 'torch', got {requested!r}")
    if requested == "torch":
        return "torch"
    if requested == "numba":
        if device.type != "cpu":
            raise CpuBackendError(
                f"render: {source}='numba' needs CPU tensors but the snapshot is on {device}; use 'torch' or 'auto'"
            )
        err = _numba_import_error()
        if err is not None:
            raise CpuBackendError(
                f"render: {source}='numba' but numba cannot be used ({err}); pip install numba==0.68.1 or use 'torch'"
            )
        return "numba"
    if device.type != "cpu":
        return "torch"
    err = _numba_import_error()
    if err is not None:
        warnings.warn(
            f"endogs.render: numba unavailable ({err}); using the slower PyTorch CPU rasterizer",
            RuntimeWarning,
            stacklevel=3,
        )
        return "torch"
    return "numba"
