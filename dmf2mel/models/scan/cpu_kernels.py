"""numba kernels of the selective scan on the CPU: a forward pass and a fused backward pass.

The recurrence (see :mod:`dmf2mel.models.scan.reference`), for one batch item b and one channel d, given the
step sizes dt (the caller, :mod:`dmf2mel.models.scan.cpu`, applies the bias, the softplus and the gate
``y * silu(z)`` with torch's vectorised elementwise ops: evaluated here, one scalar at a time inside the serial loop
over time, they took three quarters of the forward pass at 16 states and half of it at 128):

    a_t = exp(dt_t A)     (N,)
    h_t = a_t * h_{t-1} + dt_t u_t B_t                           (N,)
    y_t = C_t . h_t + D u_t

Each (b, d) pair is independent, so both kernels run in parallel over channels and keep only the running
state ``h`` (N,) per pair: no (batch, dim, N, length) tensor is ever formed. The forward kernel also keeps the
state at the start of every SEGMENT-step segment, (batch, dim, L / SEGMENT, N): 1/SEGMENT of the states, as much
memory as N / SEGMENT (batch, dim, L) arrays. The backward kernel, for each segment from the last to the first,
recomputes that segment's states and decays a_t from its checkpoint into two (SEGMENT + 1, N) buffers that stay in
the L1 cache (and y, which the gate's gradient needs, when asked for), and runs the adjoint recurrence back
through it,

    g_t = a_{t+1} * g_{t+1} + gy_t C_t                  (gy_t = dL/dy_t, g_t = dL/dh_t)
    dL/dB_t += g_t dt_t u_t        dL/dC_t += gy_t h_t          dL/dA += g_t * a_t * h_{t-1} * dt_t
    dL/ddt_t = sum_n g_t * a_t * h_{t-1} * A + u_t sum_n g_t B_t
    dL/du_t  = gy_t D + dt_t sum_n g_t B_t

so exp(dt A) is evaluated once per element in each pass. (Recomputing the checkpoints in the backward pass
instead, one more forward recurrence, keeps 21 MB less per call at the paper's batch 16 and costs about a quarter
of the backward pass.) Within a segment all channels of a chunk are processed before moving on, so the segment's
rows of B, C, dB and dC are reused from cache. (Keeping all L states of a channel instead, (L, N) buffers, was 2.2x slower: memory-bound.)

B and C (and their gradients) are shared by all channels, so the backward kernel splits the channels into
chunks, one per thread, each summing its dB and dC into its own (batch, L, N) partial buffer; the caller adds
the partials. Extra memory of the backward pass: ``n_chunks`` (batch, L, N) partials of dB and of dC.

The inner loops run over the state dimension N, contiguous in memory (B and C are passed time-major,
(batch, L, N)), with :func:`fast_exp` so that LLVM vectorises them. ``reassoc`` lets LLVM vectorise the sums over
N (float32 sums of N terms in a different order: rounding-level differences); ``contract`` allows fused
multiply-adds.
"""

from __future__ import annotations

import numpy as np
from numba import prange

from dmf2mel.models.parallel_kernels import parallel_kernel
from dmf2mel.models.scan.fast_exp import fast_exp

_FASTMATH = {"reassoc", "contract"}
# Time steps the backward pass recomputes at once: a (SEGMENT + 1, d_state) buffer of states and one of decays
# stay in the L1 cache (2 x 33 x 128 x 4 bytes in float32 at N = 128).
SEGMENT = 32


@parallel_kernel(cache=True, fastmath=_FASTMATH)
def scan_forward(u, dt, A, B_t, C_t, D, has_D, keep_checkpoints):
    """Selective scan forward pass, before the gate.

    Parameters
    ----------
    u, dt : (batch, dim, length) float32 or float64, C-contiguous; ``dt`` the step sizes (after bias and softplus)
    A : (dim, d_state)
    B_t, C_t : (batch, length, d_state), B and C time-major
    D : (dim,), or empty when absent (``has_D``)
    keep_checkpoints : bool, also return the state before every SEGMENT-step segment (for the backward pass)

    Returns
    -------
    y : (batch, dim, length), ``C_t . h_t + D u_t``, the dtype of ``u``
    checkpoints : (batch, dim, ceil(length / SEGMENT), d_state), or empty without ``keep_checkpoints``
    """
    batch, dim, length = u.shape
    d_state = A.shape[1]
    y = np.empty_like(u)
    n_segments = (length + SEGMENT - 1) // SEGMENT if keep_checkpoints else 0
    checkpoints = np.empty((batch, dim, n_segments, d_state), dtype=u.dtype)
    for pair in prange(batch * dim):
        b = pair // dim
        d = pair % dim
        a_row = A[d]
        state = np.zeros(d_state, dtype=u.dtype)
        skip = D[d] if has_D else u.dtype.type(0.0)
        for t in range(length):
            if keep_checkpoints and t % SEGMENT == 0:
                checkpoints[b, d, t // SEGMENT] = state
            dt_t = dt[b, d, t]
            drive = dt_t * u[b, d, t]
            b_row = B_t[b, t]
            c_row = C_t[b, t]
            acc = u.dtype.type(0.0)
            for n in range(d_state):
                h = fast_exp(dt_t * a_row[n]) * state[n] + drive * b_row[n]
                state[n] = h
                acc += h * c_row[n]
            y[b, d, t] = acc + skip * u[b, d, t]
    return y, checkpoints


@parallel_kernel(cache=True, fastmath=_FASTMATH)
def scan_backward(grad_y, u, dt, A, B_t, C_t, D, checkpoints, has_D, want_y, n_chunks):
    """Gradients of the selective scan before the gate, recomputing the states (see the module docstring).

    Parameters
    ----------
    grad_y : (batch, dim, length), dL/dy (the gate already applied)
    u, dt, A, B_t, C_t, D, has_D : as in :func:`scan_forward`
    checkpoints : the forward pass's states before every segment
    want_y : bool, also return y (recomputed on the way: the gate's gradient needs it)
    n_chunks : int, number of channel chunks (parallel tasks), 1 <= n_chunks <= dim

    Returns
    -------
    du, ddt : (batch, dim, length)
    dA : (dim, d_state)
    dB_partial, dC_partial : (n_chunks, batch, length, d_state), to be summed over the first axis
    dD : (dim,) float64
    y : (batch, dim, length) if ``want_y``, else empty
    """
    batch, dim, length = u.shape
    d_state = A.shape[1]
    dtype = u.dtype
    n_segments = (length + SEGMENT - 1) // SEGMENT
    du = np.empty_like(u)
    ddt = np.empty_like(u)
    y = np.empty_like(u) if want_y else np.empty((0, 0, 0), dtype=dtype)
    dA = np.zeros_like(A)
    dD = np.zeros(dim)
    dB_partial = np.zeros((n_chunks, batch, length, d_state), dtype=dtype)
    dC_partial = np.zeros((n_chunks, batch, length, d_state), dtype=dtype)
    for chunk in prange(n_chunks):
        d_start = chunk * dim // n_chunks
        n_local = (chunk + 1) * dim // n_chunks - d_start
        adjoint = np.empty((n_local, d_state), dtype=dtype)
        # The decay at the first step of the segment after the current one (0 after the end).
        decay_after = np.empty((n_local, d_state), dtype=dtype)
        dA_local = np.zeros((n_local, d_state), dtype=dtype)
        # One segment's states (row k + 1 = after step k, row 0 = the checkpoint) and decays (row k = step k,
        # row seg_len = decay_after): small enough to stay in the L1 cache.
        states = np.empty((SEGMENT + 1, d_state), dtype=dtype)
        decays = np.empty((SEGMENT + 1, d_state), dtype=dtype)
        for b in range(batch):
            adjoint[:, :] = 0.0
            decay_after[:, :] = 0.0
            # Segments from last to first: recompute the segment's states (and y), then run the adjoint back.
            for segment in range(n_segments - 1, -1, -1):
                t0 = segment * SEGMENT
                seg_len = min(SEGMENT, length - t0)
                for i in range(n_local):
                    d = d_start + i
                    skip = np.float64(D[d]) if has_D else 0.0
                    states[0] = checkpoints[b, d, segment]
                    for k in range(seg_len):
                        t = t0 + k
                        dt_t = dt[b, d, t]
                        drive = dt_t * u[b, d, t]
                        for n in range(d_state):
                            decays[k, n] = fast_exp(dt_t * A[d, n])
                        for n in range(d_state):
                            states[k + 1, n] = decays[k, n] * states[k, n] + drive * B_t[b, t, n]
                        if want_y:
                            acc = dtype.type(0.0)
                            for n in range(d_state):
                                acc += states[k + 1, n] * C_t[b, t, n]
                            y[b, d, t] = acc + (D[d] * u[b, d, t] if has_D else dtype.type(0.0))
                    decays[seg_len] = decay_after[i]
                    for k in range(seg_len - 1, -1, -1):
                        t = t0 + k
                        gy = grad_y[b, d, t]
                        dt_t = dt[b, d, t]
                        u_t = u[b, d, t]
                        drive = dt_t * u_t
                        for n in range(d_state):
                            adjoint[i, n] = adjoint[i, n] * decays[k + 1, n] + gy * C_t[b, t, n]
                        for n in range(d_state):
                            dB_partial[chunk, b, t, n] += adjoint[i, n] * drive
                        for n in range(d_state):
                            dC_partial[chunk, b, t, n] += gy * states[k + 1, n]
                        sum_decay = dtype.type(0.0)
                        sum_input = dtype.type(0.0)
                        for n in range(d_state):
                            carried = adjoint[i, n] * decays[k, n] * states[k, n]
                            dA_local[i, n] += carried * dt_t
                            sum_decay += carried * A[d, n]
                            sum_input += adjoint[i, n] * B_t[b, t, n]
                        ddt[b, d, t] = sum_decay + u_t * sum_input
                        du[b, d, t] = gy * skip + dt_t * sum_input
                        dD[d] += np.float64(gy) * np.float64(u_t)
                    decay_after[i] = decays[0]
        for i in range(n_local):
            dA[d_start + i] = dA_local[i]
    return du, ddt, dA, dB_partial, dC_partial, dD, y
