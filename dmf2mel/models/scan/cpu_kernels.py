"""numba kernels of the selective scan on the CPU: a forward pass and a fused backward pass.

The recurrence (see :mod:`dmf2mel.models.scan.reference`), for one batch item b and one channel d:

    dt_t = softplus(delta_t + bias)   (or delta_t + bias)      a_t = exp(dt_t A)     (N,)
    h_t  = a_t * h_{t-1} + dt_t u_t B_t                          (N,)
    y_t  = C_t . h_t + D u_t,     out_t = y_t * silu(z_t)

Each (b, d) pair is independent, so both kernels run in parallel over them and keep only the running state
``h`` (N,) per pair: no (batch, dim, N, length) tensor is ever formed. The backward kernel first recomputes
one pair's states h_1..h_L and decays a_1..a_L into two (L, N) scratch buffers per thread, then runs the
adjoint recurrence backwards in time,

    g_t = a_{t+1} * g_{t+1} + gy_t C_t                  (gy_t = dL/dy_t, g_t = dL/dh_t)
    dL/dB_t += g_t dt_t u_t        dL/dC_t += gy_t h_t          dL/dA += g_t * a_t * h_{t-1} * dt_t
    dL/ddt_t = sum_n g_t * a_t * h_{t-1} * A + u_t sum_n g_t B_t
    dL/du_t  = gy_t D + dt_t sum_n g_t B_t

B and C (and their gradients) are shared by all channels, so the backward kernel splits the channels into
chunks, one per thread, each summing its dB and dC into its own (batch, L, N) partial buffer; the caller adds
the partials. Extra memory: two (L, N) buffers per thread and ``n_chunks`` (batch, L, N) partials.

The inner loops run over the state dimension N, contiguous in memory (B and C are passed time-major,
(batch, L, N)), with :func:`fast_exp` so that LLVM vectorises them; exp(dt A) is evaluated once per element
per pass. ``reassoc`` lets LLVM vectorise the sums over N (float32 sums of N terms in a different order:
rounding-level differences); ``contract`` allows fused multiply-adds.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dmf2mel.models.scan.fast_exp import fast_exp

# torch.nn.functional.softplus's default: above it, softplus(x) == x to working precision.
SOFTPLUS_THRESHOLD = 20.0
_FASTMATH = {"reassoc", "contract"}


@njit(cache=True)
def _step_size(raw, softplus):
    """dt from delta + bias (float64 scalar), and d dt / d raw."""
    if not softplus:
        return raw, 1.0
    if raw > SOFTPLUS_THRESHOLD:
        return raw, 1.0
    return math.log1p(math.exp(raw)), 1.0 / (1.0 + math.exp(-raw))


@njit(cache=True)
def _gate(z_value):
    """silu(z) and d silu / d z, float64 scalars."""
    sigmoid = 1.0 / (1.0 + math.exp(-z_value))
    return z_value * sigmoid, sigmoid * (1.0 + z_value * (1.0 - sigmoid))


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def scan_forward(u, delta, A, B_t, C_t, D, z, delta_bias, softplus, has_D, has_z, has_bias):
    """Selective scan forward pass.

    Parameters
    ----------
    u, delta : (batch, dim, length) float32 or float64, C-contiguous
    A : (dim, d_state)
    B_t, C_t : (batch, length, d_state), B and C time-major
    D, delta_bias : (dim,) or empty when absent (``has_D``, ``has_bias``)
    z : (batch, dim, length) or empty when absent (``has_z``)
    softplus : bool, apply softplus to delta + delta_bias

    Returns
    -------
    out : (batch, dim, length), the dtype of ``u``
    """
    batch, dim, length = u.shape
    d_state = A.shape[1]
    out = np.empty_like(u)
    for pair in prange(batch * dim):
        b = pair // dim
        d = pair % dim
        a_row = A[d]
        state = np.zeros(d_state, dtype=u.dtype)
        bias = np.float64(delta_bias[d]) if has_bias else 0.0
        skip = np.float64(D[d]) if has_D else 0.0
        for t in range(length):
            dt, _ = _step_size(np.float64(delta[b, d, t]) + bias, softplus)
            dt_c = u.dtype.type(dt)
            drive = u.dtype.type(dt * u[b, d, t])
            b_row = B_t[b, t]
            c_row = C_t[b, t]
            acc = u.dtype.type(0.0)
            for n in range(d_state):
                h = fast_exp(dt_c * a_row[n]) * state[n] + drive * b_row[n]
                state[n] = h
                acc += h * c_row[n]
            y = acc + skip * u[b, d, t]
            if has_z:
                y = y * _gate(np.float64(z[b, d, t]))[0]
            out[b, d, t] = y
    return out


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def scan_backward(grad_out, u, delta, A, B_t, C_t, D, z, delta_bias, softplus, has_D, has_z, has_bias, n_chunks):
    """Gradients of the selective scan, recomputing the states (see the module docstring).

    Parameters
    ----------
    grad_out : (batch, dim, length), dL/d out
    u, delta, A, B_t, C_t, D, z, delta_bias, softplus, has_D, has_z, has_bias : as in :func:`scan_forward`
    n_chunks : int, number of channel chunks (parallel tasks), 1 <= n_chunks <= dim

    Returns
    -------
    du, ddelta, dz : (batch, dim, length) (dz all zero without z); ddelta is with respect to the raw delta
    dA : (dim, d_state)
    dB_partial, dC_partial : (n_chunks, batch, length, d_state), to be summed over the first axis
    dD, dbias : (dim,) float64
    """
    batch, dim, length = u.shape
    d_state = A.shape[1]
    dtype = u.dtype
    du = np.empty_like(u)
    ddelta = np.empty_like(u)
    dz = np.zeros_like(u)
    dA = np.zeros_like(A)
    dD = np.zeros(dim)
    dbias = np.zeros(dim)
    dB_partial = np.zeros((n_chunks, batch, length, d_state), dtype=dtype)
    dC_partial = np.zeros((n_chunks, batch, length, d_state), dtype=dtype)
    for chunk in prange(n_chunks):
        d_start = chunk * dim // n_chunks
        d_stop = (chunk + 1) * dim // n_chunks
        # Row t + 1 holds h_t and a_t; row 0 holds h_0 = 0, and decays row length + 1 is a_{L+1} = 0
        # (nothing flows back from beyond the end).
        states = np.zeros((length + 1, d_state), dtype=dtype)
        decays = np.zeros((length + 2, d_state), dtype=dtype)
        step = np.empty(length)
        step_grad = np.empty(length)
        y_pre_gate = np.empty(length)
        adjoint = np.empty(d_state, dtype=dtype)
        dA_row = np.empty(d_state, dtype=dtype)
        for d in range(d_start, d_stop):
            bias = np.float64(delta_bias[d]) if has_bias else 0.0
            skip = np.float64(D[d]) if has_D else 0.0
            dA_row[:] = 0.0
            for b in range(batch):
                # Recompute the forward pass of (b, d), keeping every state and decay.
                for t in range(length):
                    dt, dt_grad = _step_size(np.float64(delta[b, d, t]) + bias, softplus)
                    step[t] = dt
                    step_grad[t] = dt_grad
                    dt_c = dtype.type(dt)
                    drive = dtype.type(dt * u[b, d, t])
                    for n in range(d_state):
                        decays[t + 1, n] = fast_exp(dt_c * A[d, n])
                    acc = dtype.type(0.0)
                    for n in range(d_state):
                        h = decays[t + 1, n] * states[t, n] + drive * B_t[b, t, n]
                        states[t + 1, n] = h
                        acc += h * C_t[b, t, n]
                    y_pre_gate[t] = acc + skip * u[b, d, t]
                # The adjoint recurrence, backwards in time.
                adjoint[:] = 0.0
                for t in range(length - 1, -1, -1):
                    grad_y = grad_out[b, d, t]
                    if has_z:
                        silu, silu_grad = _gate(np.float64(z[b, d, t]))
                        dz[b, d, t] = grad_y * y_pre_gate[t] * silu_grad
                        grad_y = grad_y * silu
                    dt = step[t]
                    u_t = u[b, d, t]
                    gy = dtype.type(grad_y)
                    dt_c = dtype.type(dt)
                    drive = dtype.type(dt * u_t)
                    for n in range(d_state):
                        adjoint[n] = adjoint[n] * decays[t + 2, n] + gy * C_t[b, t, n]
                    for n in range(d_state):
                        dB_partial[chunk, b, t, n] += adjoint[n] * drive
                    for n in range(d_state):
                        dC_partial[chunk, b, t, n] += gy * states[t + 1, n]
                    sum_decay = dtype.type(0.0)
                    sum_input = dtype.type(0.0)
                    for n in range(d_state):
                        carried = adjoint[n] * decays[t + 1, n] * states[t, n]
                        dA_row[n] += carried * dt_c
                        sum_decay += carried * A[d, n]
                        sum_input += adjoint[n] * B_t[b, t, n]
                    grad_dt = sum_decay + u_t * sum_input
                    ddelta[b, d, t] = grad_dt * step_grad[t]
                    du[b, d, t] = grad_y * skip + dt * sum_input
                    dD[d] += grad_y * u_t
                    dbias[d] += grad_dt * step_grad[t]
            dA[d] = dA_row
    return du, ddelta, dz, dA, dB_partial, dC_partial, dD, dbias
