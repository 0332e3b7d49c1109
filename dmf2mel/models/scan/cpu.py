"""The ``"cpu"`` backend: the numba kernels of :mod:`dmf2mel.models.scan.cpu_kernels` as an autograd function.

Memory: the forward pass saves its inputs and the state before every SEGMENT-step segment (SEGMENT = 32),
O(batch·dim·d_state·length / SEGMENT); the backward pass recomputes the states from them, with extra memory
O(batch·dim·length + threads·batch·d_state·length). Never O(batch·dim·d_state·length) as a loop over time under
autograd (which keeps every state) or a materialising parallel scan.

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
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from dmf2mel.models.scan.cpu_kernels import scan_backward, scan_forward

#: torch.nn.functional.softplus's default: above it, softplus(x) == x to working precision.
SOFTPLUS_THRESHOLD = 20.0
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


def _kernel_inputs(u, dt, A, B, C, D):
    """numpy arrays in the layout the kernels expect: B and C time-major, an absent D empty."""
    dtype = _compute_dtype(u)
    return (
        _as_array(u, dtype, ()),
        _as_array(dt, dtype, ()),
        _as_array(A, dtype, ()),
        _as_array(B.transpose(1, 2), dtype, ()),
        _as_array(C.transpose(1, 2), dtype, ()),
        _as_array(D, dtype, (0,)),
    )


def _step_sizes(delta, delta_bias, softplus):
    """``(dt, d dt / d delta)``: ``softplus(delta + delta_bias)`` (or ``delta + delta_bias``) in the compute dtype,
    by torch's vectorised ops; the derivative is None without softplus (it is 1)."""
    raw = delta.detach().to(_compute_dtype(delta))
    if delta_bias is not None:
        raw = raw + delta_bias.detach().to(raw.dtype)[:, None]
    if not softplus:
        return raw, None
    # torch's softplus and its gradient: x itself, and slope 1, above the threshold
    slope = torch.where(raw > SOFTPLUS_THRESHOLD, 1.0, torch.sigmoid(raw))
    return F.softplus(raw, threshold=SOFTPLUS_THRESHOLD), slope


def _gate(z, dtype):
    """``silu(z)`` and its derivative, in ``dtype``."""
    z = z.detach().to(dtype)
    sigmoid = torch.sigmoid(z)
    return z * sigmoid, sigmoid * (1.0 + z * (1.0 - sigmoid))


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
    """Selective scan with numba forward and backward kernels (see the module docstring).

    The step sizes (bias, softplus) and the gate ``y * silu(z)`` are elementwise: torch computes them, in the
    forward pass and again in the backward pass. The function keeps its inputs and, while gradients are needed,
    the state before every segment of the recurrence (see :mod:`dmf2mel.models.scan.cpu_kernels`).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, delta_softplus):
        dt, _ = _step_sizes(delta, delta_bias, delta_softplus)
        keep = any(ctx.needs_input_grad)
        with _NumbaThreads():
            y, checkpoints = scan_forward(*_kernel_inputs(u, dt, A, B, C, D), D is not None, keep)
        y = torch.from_numpy(y)
        if z is not None:
            y = y * F.silu(z.detach().to(y.dtype))  # the derivative only in the backward pass
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, torch.from_numpy(checkpoints))
        ctx.softplus = bool(delta_softplus)
        return y.to(u.dtype)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        u, delta, A, B, C, D, z, delta_bias, checkpoints = ctx.saved_tensors
        dt, slope = _step_sizes(delta, delta_bias, ctx.softplus)
        grad_y = grad_out.to(dt.dtype)
        if z is not None:
            silu, silu_grad = _gate(z, dt.dtype)
            grad_y = grad_y * silu
        with _NumbaThreads():
            # One chunk of channels per thread: each chunk owns a (batch, length, d_state) partial of dB and dC.
            n_chunks = max(1, min(u.shape[1], numba.get_num_threads()))
            du, ddt, dA, dB_partial, dC_partial, dD, y = scan_backward(
                _as_array(grad_y, dt.dtype, ()),
                *_kernel_inputs(u, dt, A, B, C, D),
                checkpoints.numpy(),
                D is not None,
                z is not None and ctx.needs_input_grad[6],
                n_chunks,
            )
        ddelta = torch.from_numpy(ddt) if slope is None else torch.from_numpy(ddt) * slope
        grads = {
            "u": du,
            "delta": ddelta,
            "A": dA,
            "B": torch.from_numpy(dB_partial).sum(0).transpose(1, 2),
            "C": torch.from_numpy(dC_partial).sum(0).transpose(1, 2),
            "D": dD,
            "z": (lambda: grad_out.to(dt.dtype) * torch.from_numpy(y) * silu_grad) if y.size else None,
            "delta_bias": lambda: ddelta.sum((0, 2)),
        }
        result = []
        for needed, grad, tensor in zip(ctx.needs_input_grad, grads.values(), ctx.saved_tensors):
            if not needed or tensor is None:
                result.append(None)
                continue
            grad = grad() if callable(grad) else grad
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
