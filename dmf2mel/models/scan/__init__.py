"""Selective-scan backends behind one function, :func:`selective_scan`.

``reference`` (a loop over time, the oracle) is always available. See the module docstrings of
each backend for its memory and speed profile.
"""

from __future__ import annotations

import torch

from dmf2mel.models.scan.reference import selective_scan_reference

BACKENDS = ("auto", "reference")


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="auto"):
    """Mamba's selective scan; shapes and semantics of ``mamba_ssm``'s ``selective_scan_fn``.

    u, delta, z: (batch, dim, length); A: (dim, d_state); B, C: (batch, d_state, length);
    D, delta_bias: (dim,). Returns (batch, dim, length).
    """
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: backend must be one of {BACKENDS}, got {backend!r}")
    return selective_scan_reference(u, delta, A, B, C, D, z, delta_bias, delta_softplus)


__all__ = ["BACKENDS", "selective_scan", "selective_scan_reference"]
