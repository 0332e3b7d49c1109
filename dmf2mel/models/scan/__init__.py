"""Mamba's selective scan behind one function, :func:`selective_scan`, with interchangeable backends.

- ``"reference"`` (:mod:`.reference`): a PyTorch loop over time; obviously correct, slow, and under autograd it
  keeps a (batch, dim, d_state) state for every step. The oracle for the tests.
- ``"cpu"`` (:mod:`.cpu`): numba forward and backward kernels that keep only the running state and recompute
  the rest in the backward pass; the default on the CPU.
- ``"cuda"`` (:mod:`.cuda`): ``mamba_ssm``'s fused kernel for tensors on a GPU (optional dependency).
- ``"auto"``: ``"cuda"`` for GPU tensors when ``mamba_ssm`` imports (else ``"reference"``, which runs anywhere,
  slowly: a warning says so once per process); ``"cpu"`` for floating-point CPU tensors; ``"reference"`` otherwise.
"""

from __future__ import annotations

import functools
import warnings

import torch

from dmf2mel.models.scan.cpu import selective_scan_cpu
from dmf2mel.models.scan.cuda import load_mamba_ssm_scan, selective_scan_cuda
from dmf2mel.models.scan.reference import selective_scan_reference

BACKENDS = ("auto", "reference", "cpu", "cuda")
_CPU_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def _check_shape(name, tensor, expected, meaning):
    if tuple(tensor.shape) != tuple(expected):
        raise ValueError(
            f"selective_scan: {name} must have shape {meaning} = {tuple(expected)}, found {tuple(tensor.shape)}"
        )


def _check_inputs(u, delta, A, B, C, D, z, delta_bias):
    """Shapes as in ``mamba_ssm``'s ``selective_scan_fn`` with variable (batch, d_state, length) B and C."""
    if u.dim() != 3:
        raise ValueError(f"selective_scan: u must have shape (batch, dim, length), found {tuple(u.shape)}")
    batch, dim, length = u.shape
    if A.dim() != 2 or A.shape[0] != dim:
        raise ValueError(f"selective_scan: A must have shape (dim, d_state) with dim = {dim}, found {tuple(A.shape)}")
    if A.is_complex():
        raise ValueError("selective_scan: A must be real; complex A is not supported")
    d_state = A.shape[1]
    _check_shape("delta", delta, (batch, dim, length), "(batch, dim, length)")
    _check_shape("B", B, (batch, d_state, length), "(batch, d_state, length)")
    _check_shape("C", C, (batch, d_state, length), "(batch, d_state, length)")
    for name, tensor in (("D", D), ("delta_bias", delta_bias)):
        if tensor is not None:
            _check_shape(name, tensor, (dim,), "(dim,)")
    if z is not None:
        _check_shape("z", z, (batch, dim, length), "(batch, dim, length)")
    devices = {t.device for t in (u, delta, A, B, C, D, z, delta_bias) if t is not None}
    if len(devices) > 1:
        raise ValueError(f"selective_scan: all tensors must be on one device, found {sorted(map(str, devices))}")


@functools.cache
def _warn_reference_on_gpu(reason: str) -> None:
    """Say once per process that GPU tensors go through the slow reference loop."""
    warnings.warn(
        "selective_scan: mamba_ssm's CUDA kernel is not available "
        f"({reason}); on the GPU the scan falls back to the slow reference loop over time. "
        "Install it with pip install 'dmf2mel[cuda]' for the fast kernel.",
        RuntimeWarning,
        stacklevel=4,
    )


def _choose_backend(u):
    if u.is_cuda:
        kernel, reason = load_mamba_ssm_scan()
        if kernel is None:
            _warn_reference_on_gpu(reason)
            return "reference"
        return "cuda"
    return "cpu" if u.dtype in _CPU_DTYPES else "reference"


def selective_scan(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="auto"):
    """Mamba's selective scan (Gu & Dao, 2023, Algorithm 2), as ``mamba_ssm``'s ``selective_scan_fn``.

    For every batch item and channel, with state h of size d_state::

        dt_t = softplus(delta_t + delta_bias)    (delta_t + delta_bias without delta_softplus)
        h_t  = exp(dt_t A) h_{t-1} + dt_t B_t u_t
        y_t  = C_t . h_t + D u_t
        out  = y * silu(z)                       (y without z)

    Parameters
    ----------
    u : (batch, dim, length)
        Input sequence.
    delta : (batch, dim, length)
        Step sizes before ``delta_bias`` and softplus.
    A : (dim, d_state), real
        State matrix (diagonal per channel); negative for a decaying state.
    B, C : (batch, d_state, length)
        Input and output projections, varying in time.
    D : (dim,), optional
        Skip connection.
    z : (batch, dim, length), optional
        Gate.
    delta_bias : (dim,), optional
        Added to ``delta`` before the softplus.
    delta_softplus : bool
        Apply softplus to ``delta + delta_bias``.
    backend : {"auto", "reference", "cpu", "cuda"}
        See the module docstring.

    Returns
    -------
    out : (batch, dim, length), the dtype of ``u``.

    Raises
    ------
    ValueError
        For an unknown backend, wrong shapes, mixed devices, or a backend that cannot take these tensors.
    RuntimeError
        For ``backend="cuda"`` when ``mamba_ssm`` does not import.
    """
    if backend not in BACKENDS:
        raise ValueError(f"selective_scan: backend must be one of {BACKENDS}, got {backend!r}")
    _check_inputs(u, delta, A, B, C, D, z, delta_bias)
    if backend == "auto":
        backend = _choose_backend(u)
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if backend == "reference":
        return selective_scan_reference(*args)
    if backend == "cpu":
        if u.device.type != "cpu":
            raise ValueError(f"selective_scan: backend='cpu' needs CPU tensors, found device {u.device}")
        if u.dtype not in _CPU_DTYPES:
            raise ValueError(f"selective_scan: backend='cpu' takes dtypes {_CPU_DTYPES}, found {u.dtype}")
        return selective_scan_cpu(*args)
    if not u.is_cuda:
        raise ValueError(f"selective_scan: backend='cuda' needs CUDA tensors, found device {u.device}")
    return selective_scan_cuda(*args)


__all__ = ["BACKENDS", "selective_scan", "selective_scan_cpu", "selective_scan_cuda", "selective_scan_reference"]
