"""The ``"cpu"`` backend: the numba kernels of :mod:`dmf2mel.models.scan.cpu_kernels` as an autograd function.

Memory: the forward pass saves only its inputs; the backward pass recomputes the states, so the extra memory
is O(batch·dim·length + threads·batch·d_state·length + dim·d_state·length / SEGMENT) (SEGMENT = 32: state
checkpoints, shared by the batch items), never O(batch·dim·d_state·length) as a loop over time under autograd
(which keeps every state) or a materialising parallel scan.

Precision: float64 inputs are computed in float64, everything else (float32, float16, bfloat16) in float32, as
``mamba_ssm``'s CUDA kernel does; outputs and gradients come back in the inputs' dtypes.

numba's threading layer. numba picks one threading layer per process, at its first parallel loop. Its OpenMP
layer leaves the workers spinning after every loop, where they take the cores PyTorch's own OpenMP threads need
(on 2 cores this backend's tests took 54 s instead of 7 s); the ``workqueue`` layer lets them sleep. So the first
time one of the package's numba kernels runs (this backend, or the dropout masks of :mod:`dmf2mel.models.dropout`)
-- not when the package is imported -- :func:`prefer_workqueue_layer` selects ``workqueue``, unless the choice is
already made: ``NUMBA_THREADING_LAYER`` is set, ``numba.config.THREADING_LAYER`` was changed, or a numba parallel
loop ran before. The layer then applies to the whole process, including the user's own numba code run later.
"""

from __future__ import annotations

import functools
import os

import numba
import numpy as np
import torch
from torch.autograd.function import once_differentiable

from dmf2mel.models.scan.cpu_kernels import scan_backward, scan_forward

#: The threading layer this backend selects at its first run (see the module docstring).
PREFERRED_THREADING_LAYER = "workqueue"


def _numba_threads_started() -> bool:
    parallel = getattr(getattr(numba, "np", None), "ufunc", None)
    return bool(getattr(getattr(parallel, "parallel", None), "_is_initialized", False))


@functools.cache
def prefer_workqueue_layer() -> str:
    """Select numba's ``workqueue`` threading layer unless the user or earlier numba code chose one; once.

    Returns the layer numba was configured with after the call (``numba.config.THREADING_LAYER``).
    """
    chosen = "NUMBA_THREADING_LAYER" in os.environ or numba.config.THREADING_LAYER != "default"
    if not chosen and not _numba_threads_started():
        numba.config.THREADING_LAYER = PREFERRED_THREADING_LAYER
    return numba.config.THREADING_LAYER


def _compute_dtype(u: torch.Tensor) -> torch.dtype:
    return torch.float64 if u.dtype == torch.float64 else torch.float32


def _as_array(tensor: torch.Tensor | None, dtype: torch.dtype, empty_shape: tuple[int, ...]) -> np.ndarray:
    """A C-contiguous numpy view (or copy) of ``tensor`` in ``dtype``; an empty array stands in for None."""
    if tensor is None:
        return np.empty(empty_shape, dtype=torch.empty(0, dtype=dtype).numpy().dtype)
    return tensor.detach().to(dtype).contiguous().numpy()


def _kernel_inputs(u, delta, A, B, C, D, z, delta_bias):
    """numpy arrays in the layout the kernels expect: B and C time-major, absent inputs empty."""
    dtype = _compute_dtype(u)
    return (
        _as_array(u, dtype, ()),
        _as_array(delta, dtype, ()),
        _as_array(A, dtype, ()),
        _as_array(B.transpose(1, 2), dtype, ()),
        _as_array(C.transpose(1, 2), dtype, ()),
        _as_array(D, dtype, (0,)),
        _as_array(z, dtype, (0, 0, 0)),
        _as_array(delta_bias, dtype, (0,)),
    )


class _NumbaThreads:
    """Run numba's parallel loops on as many threads as torch uses (torch.set_num_threads is the one knob)."""

    def __enter__(self):
        prefer_workqueue_layer()  # before numba starts its threads
        self.previous = numba.get_num_threads()
        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        return self

    def __exit__(self, *exc):
        numba.set_num_threads(self.previous)


def numba_threads() -> _NumbaThreads:
    """A context in which numba's parallel loops run on as many threads as torch uses (shared by the numba kernels
    of the package: this scan and :mod:`dmf2mel.models.dropout`)."""
    return _NumbaThreads()


class SelectiveScanCPU(torch.autograd.Function):
    """Selective scan with numba forward and backward kernels (see the module docstring)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        arrays = _kernel_inputs(u, delta, A, B, C, D, z, delta_bias)
        flags = (bool(delta_softplus), D is not None, z is not None, delta_bias is not None)
        with _NumbaThreads():
            out = scan_forward(*arrays, *flags)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias)
        ctx.flags = flags
        return torch.from_numpy(out).to(u.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        u, delta, A, B, C, D, z, delta_bias = ctx.saved_tensors
        arrays = _kernel_inputs(u, delta, A, B, C, D, z, delta_bias)
        grad_array = _as_array(grad_out, _compute_dtype(u), ())
        with _NumbaThreads():
            # One chunk of channels per thread: each chunk owns a (batch, length, d_state) partial of dB and dC.
            n_chunks = max(1, min(u.shape[1], numba.get_num_threads()))
            du, ddelta, dz, dA, dB_partial, dC_partial, dD, dbias = scan_backward(
                grad_array, *arrays, *ctx.flags, n_chunks
            )
        dB = torch.from_numpy(dB_partial).sum(0).transpose(1, 2)
        dC = torch.from_numpy(dC_partial).sum(0).transpose(1, 2)
        grads = (du, ddelta, dA, dB, dC, dD, dz, dbias)
        inputs = (u, delta, A, B, C, D, z, delta_bias)
        result = []
        for needed, grad, tensor in zip(ctx.needs_input_grad, grads, inputs):
            if not needed or tensor is None:
                result.append(None)
                continue
            grad = torch.as_tensor(grad) if isinstance(grad, np.ndarray) else grad
            result.append(grad.to(tensor.dtype).contiguous())
        return (*result, None)


def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """Selective scan by the numba kernels; arguments as :func:`dmf2mel.models.scan.selective_scan`.

    Parameters
    ----------
    u, delta, z : (batch, dim, length) CPU tensors
    A : (dim, d_state)
    B, C : (batch, d_state, length)
    D, delta_bias : (dim,)
    delta_softplus : bool

    Returns
    -------
    out : (batch, dim, length), the dtype of ``u``
    """
    return SelectiveScanCPU.apply(u, delta, A, B, C, D, z, delta_bias, delta_softplus)
