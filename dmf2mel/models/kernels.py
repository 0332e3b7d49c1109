"""One switch for the package's numba CPU kernels outside the selective scan.

Four parts of a DMF2Mel training step have numba kernels that replace chains of torch ops on CPU float32/float64
tensors, with the same maths (tests compare both paths):

- dropout masks (:mod:`dmf2mel.models.dropout`),
- KAN layers' base and spline features (:mod:`dmf2mel.models.kan_kernels`),
- attention with dropout, one query row at a time (:mod:`dmf2mel.models.attention_kernels`),
- convMamba's feed-forward, SiLU and dropout fused and chunked over rows (:class:`dmf2mel.models.mamba.FeedForward`).

``"numba"`` (the default) uses them; ``"torch"`` uses torch ops only, the code path before the kernels (for
benchmarks, ``benchmarks/train_speed.py --kernels torch``, and to rule the kernels out when debugging). Set it with
``DMF2MEL_KERNELS=torch`` in the environment or :func:`set_backend`. Other devices and dtypes always take torch ops.
(The selective scan has its own choice, ``scan_backend``, see :mod:`dmf2mel.models.scan`.)
"""

from __future__ import annotations

import os

import torch

BACKENDS = ("numba", "torch")
ENV_VAR = "DMF2MEL_KERNELS"


def _check(backend: str, where: str) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"{where}={backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend


_backend = _check(os.environ.get(ENV_VAR, "numba"), ENV_VAR)


def set_backend(backend: str) -> None:
    """``"numba"`` (default) or ``"torch"``: who computes dropout, KAN features, attention and the feed-forward on a CPU."""
    global _backend
    _backend = _check(backend, "kernels backend")


def backend() -> str:
    """The current choice, ``"numba"`` or ``"torch"``."""
    return _backend


def enabled() -> bool:
    """True when the numba kernels are switched on."""
    return _backend == "numba"


def handles(x: torch.Tensor) -> bool:
    """Whether the numba kernels take ``x``: switched on, and ``x`` a CPU float32 or float64 tensor."""
    return _backend == "numba" and x.device.type == "cpu" and x.dtype in (torch.float32, torch.float64)
