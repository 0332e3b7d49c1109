"""numba kernels of a KAN layer on the CPU: the base and spline features of each token, built in one pass.

A KAN layer (:mod:`dmf2mel.models.kan`) is one matrix product over per-token *features*: ``SiLU(x_i)`` for the base
path and the ``grid_size + 3`` cubic B-spline bases ``B_k(x_i)`` for the spline path, of which at most four are
non-zero::

    y = F(x) @ W.T,   F(x)[t] = [SiLU(x[t, 0..in)), B_0(x[t, 0]) .. B_{n-1}(x[t, 0]), ..., B_{n-1}(x[t, in-1])]
    W = [W_base | c * s]   (out, in + in * n_bases)

Written with torch ops, building ``F`` takes a dozen passes over ``(tokens, in, 4)`` tensors, a zero fill and a
scatter, and the backward pass gathers the four active slots again: in a training step of the small config those
passes cost more than all the matrix products of the attention (``benchmarks/profile_step.py``). Here one kernel
computes each token's row of ``F`` from ``x`` (:func:`kan_features`), and one computes the gradient with respect to
``x`` from ``dL/dF = dL/dy @ W`` (:func:`kan_input_grad`); the matrix products stay with torch (MKL).

The closed forms are those of :func:`dmf2mel.models.kan.uniform_cubic_bases`: on a uniform grid with knot spacing
``h`` starting at ``t_0 = low - 3h``, ``x`` lies in interval ``j = floor((x - t_0) / h)`` at fraction ``f``; bases
``j - 3 .. j`` are non-zero, with the four cubic pieces of ``f`` as weights; an ``x`` outside the extended grid (or
NaN) has no non-zero basis.

**Vectorised loops.** SiLU and its derivative use :func:`~dmf2mel.models.scan.fast_exp.fast_exp` (numba's ``np.exp``
is a libm call, which LLVM cannot vectorise) and the kernels are compiled with ``error_model="numpy"``: under
numba's default Python error model every float division checks its divisor for zero to raise
``ZeroDivisionError``, and that branch alone kept the SiLU loop scalar (alone, the loop ran 9x faster without it).
A zero divisor now gives inf or NaN, as in torch. The input gradient first computes, for all inputs of a token, the
SiLU term, the interval and the four basis slopes (a branch-free loop), then gathers the active bases' gradients.
Measured by CPU time at 5120 tokens x 32 inputs, grid 8 (one thread, a loaded machine): features 2.8 -> 2.2-2.6 ms,
input gradient 3.1 -> 1.8-2.3 ms. Within a whole training step of the small config (about 20 KAN layers) that is a
few per cent, below what a step-time measurement on this machine resolves.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from dmf2mel.models.scan.fast_exp import fast_exp

CUBIC_ORDER = 3


# IEEE-safe fast-math: no assumption that values are finite (a NaN input must give no bases, not garbage)
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(inline="always")
def _locate(value, inv_step, offset, n_intervals):
    """Interval index of ``value`` on the extended grid and the fraction in it; index -1 outside it or for NaN.

    Branch-free, so that a loop over the inputs of a token vectorises (outside the grid the fraction is 0).
    """
    position = value * inv_step + offset
    inside = position >= 0 and position < n_intervals
    position = position if inside else position * 0  # 0 in the data's precision (NaN * 0 is NaN: outside anyway)
    interval = int(position)  # position >= 0: truncation is floor
    return (interval if inside else -1), position - interval


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def kan_features(x, grid_size, low, step, features):
    """Fill ``features`` (tokens, in * (1 + grid_size + 3)): SiLU(x) first, then the bases of every input."""
    tokens, n_in = x.shape
    n_bases = grid_size + CUBIC_ORDER
    n_intervals = grid_size + 2 * CUBIC_ORDER
    # constants in the data's precision, so float32 inputs are computed in float32
    one = x.dtype.type(1.0)
    sixth = x.dtype.type(1.0 / 6.0)
    half = x.dtype.type(0.5)
    two_thirds = x.dtype.type(2.0 / 3.0)
    inv_step = x.dtype.type(1.0 / step)
    offset = x.dtype.type(CUBIC_ORDER - low / step)
    for t in prange(tokens):
        row = features[t]
        values = x[t]
        for i in range(n_in):
            row[i] = values[i] / (one + fast_exp(-values[i]))
        row[n_in:] = 0
        for i in range(n_in):
            interval, f = _locate(values[i], inv_step, offset, n_intervals)
            if interval < 0:
                continue
            rest = one - f
            squared = f * f
            cubed = squared * f
            w0 = rest * rest * rest * sixth
            w1 = cubed * half - squared + two_thirds
            w3 = cubed * sixth
            w2 = one - w0 - w1 - w3
            start = n_in + i * n_bases
            first = interval - CUBIC_ORDER
            if first >= 0 and first + 3 < n_bases:  # away from the grid's ends: all four bases exist
                row[start + first] = w0
                row[start + first + 1] = w1
                row[start + first + 2] = w2
                row[start + first + 3] = w3
                continue
            if 0 <= first < n_bases:
                row[start + first] = w0
            if 0 <= first + 1 < n_bases:
                row[start + first + 1] = w1
            if 0 <= first + 2 < n_bases:
                row[start + first + 2] = w2
            if 0 <= first + 3 < n_bases:
                row[start + first + 3] = w3


# Tokens per parallel work item: each item owns small per-input buffers, allocated once.
_TOKENS = 64


@njit(parallel=True, cache=True, fastmath=_FASTMATH, error_model="numpy")
def kan_input_grad(x, grad_features, grid_size, low, step, grad_x):
    """``grad_x[t, i] = SiLU'(x) dL/dF[t, i] + sum_k B_k'(x) dL/dF[t, bases of i]``; same layout as the features.

    Per token, a vectorised pass computes the SiLU term, the intervals and the four basis slopes of every input;
    a second pass gathers the four gradients of each input's active bases.
    """
    tokens, n_in = x.shape
    n_bases = grid_size + CUBIC_ORDER
    n_intervals = grid_size + 2 * CUBIC_ORDER
    one = x.dtype.type(1.0)
    half = x.dtype.type(0.5)
    three_halves = x.dtype.type(1.5)
    two = x.dtype.type(2.0)
    inv_step = x.dtype.type(1.0 / step)
    offset = x.dtype.type(CUBIC_ORDER - low / step)
    for block in prange((tokens + _TOKENS - 1) // _TOKENS):
        intervals = np.empty(n_in, dtype=np.int64)
        slopes = np.empty((4, n_in), dtype=x.dtype)
        for t in range(block * _TOKENS, min((block + 1) * _TOKENS, tokens)):
            row = grad_features[t]
            out = grad_x[t]
            for i in range(n_in):
                value = x[t, i]
                sigmoid = one / (one + fast_exp(-value))
                out[i] = row[i] * sigmoid * (one + value * (one - sigmoid))
                interval, f = _locate(value, inv_step, offset, n_intervals)
                rest = one - f
                squared = f * f
                s0 = -half * rest * rest
                s1 = three_halves * squared - two * f
                s3 = half * squared
                intervals[i] = interval
                slopes[0, i] = s0 * inv_step
                slopes[1, i] = s1 * inv_step
                slopes[2, i] = -(s0 + s1 + s3) * inv_step
                slopes[3, i] = s3 * inv_step
            for i in range(n_in):
                interval = intervals[i]
                if interval < 0:
                    continue
                start = n_in + i * n_bases
                first = interval - CUBIC_ORDER
                spline = x.dtype.type(0.0)
                for k in range(4):
                    if 0 <= first + k < n_bases:
                        spline += row[start + first + k] * slopes[k, i]
                out[i] += spline


def feature_width(n_in: int, grid_size: int) -> int:
    """Columns of the feature matrix: ``n_in`` SiLU values and ``n_in * (grid_size + 3)`` bases."""
    return n_in * (1 + grid_size + CUBIC_ORDER)


def empty_features(tokens: int, n_in: int, grid_size: int, dtype) -> np.ndarray:
    return np.empty((tokens, feature_width(n_in, grid_size)), dtype=dtype)
