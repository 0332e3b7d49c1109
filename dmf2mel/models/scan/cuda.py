"""The ``"cuda"`` backend: ``mamba_ssm``'s fused CUDA kernel, imported lazily.

``mamba_ssm`` is an optional extra (``pip install dmf2mel[cuda]``): it needs its compiled CUDA extension even to
import, so a CPU-only machine never imports it.
"""

from __future__ import annotations

import functools


@functools.cache
def load_mamba_ssm_scan():
    """``mamba_ssm``'s ``selective_scan_fn``, or the reason it cannot be imported.

    Returns
    -------
    (function or None, str): the function and an empty string, or None and why the import failed.
    """
    try:
        from mamba_ssm.ops.selective_scan_interface import selective_scan_fn
    except (ImportError, OSError) as error:  # OSError: the extension exists but its CUDA libraries do not load
        return None, f"{type(error).__name__}: {error}"
    return selective_scan_fn, ""


def selective_scan_cuda(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan by ``mamba_ssm``'s CUDA kernel; arguments as :func:`dmf2mel.models.scan.selective_scan`.

    Parameters
    ----------
    u, delta, z : (batch, dim, length) CUDA tensors
    A : (dim, d_state)
    B, C : (batch, d_state, length)
    D, delta_bias : (dim,)
    delta_softplus : bool

    Returns
    -------
    out : (batch, dim, length)
    """
    selective_scan_fn, reason = load_mamba_ssm_scan()
    if selective_scan_fn is None:
        raise RuntimeError(
            "selective_scan: backend='cuda' needs mamba_ssm with its CUDA extension "
            f"(pip install 'dmf2mel[cuda]' on a GPU machine); importing it failed with {reason}"
        )
    return selective_scan_fn(u, delta, A, B, C, D=D, z=z, delta_bias=delta_bias, delta_softplus=delta_softplus)
