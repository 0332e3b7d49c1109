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
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

CUBIC_ORDER = 3


# IEEE-safe fast-math: no assumption that values are finite (a NaN input must give no bases, not garbage)
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(inline="always")
def _interval(position, n_intervals):
    """Interval index of a grid position (in knot spacings from the first knot) and the fraction in it.

    Returns index -1 outside the extended grid ``[0, n_intervals)`` or for NaN.
    """
    if not (position >= 0 and position < n_intervals):
        return -1, position
    interval = int(position)  # position >= 0: truncation is floor
    return interval, position - interval


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
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
            row[i] = values[i] / (one + np.exp(-values[i]))
        row[n_in:] = 0
        for i in range(n_in):
            interval, f = _interval(values[i] * inv_step + offset, n_intervals)
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


@njit(parallel=True, cache=True, fastmath=_FASTMATH)
def kan_input_grad(x, grad_features, grid_size, low, step, grad_x):
    """``grad_x[t, i] = SiLU'(x) dL/dF[t, i] + sum_k B_k'(x) dL/dF[t, bases of i]``; same layout as the features."""
    tokens, n_in = x.shape
    n_bases = grid_size + CUBIC_ORDER
    n_intervals = grid_size + 2 * CUBIC_ORDER
    one = x.dtype.type(1.0)
    half = x.dtype.type(0.5)
    inv_step = x.dtype.type(1.0 / step)
    offset = x.dtype.type(CUBIC_ORDER - low / step)
    for t in prange(tokens):
        row = grad_features[t]
        for i in range(n_in):
            value = x[t, i]
            sigmoid = one / (one + np.exp(-value))
            total = row[i] * sigmoid * (one + value * (one - sigmoid))
            interval, f = _interval(value * inv_step + offset, n_intervals)
            if interval >= 0:
                rest = one - f
                squared = f * f
                s0 = -half * rest * rest
                s1 = x.dtype.type(1.5) * squared - x.dtype.type(2.0) * f
                s3 = half * squared
                s2 = -(s0 + s1 + s3)
                start = n_in + i * n_bases
                first = interval - CUBIC_ORDER
                spline = 0.0
                if 0 <= first < n_bases:
                    spline += row[start + first] * s0
                if 0 <= first + 1 < n_bases:
                    spline += row[start + first + 1] * s1
                if 0 <= first + 2 < n_bases:
                    spline += row[start + first + 2] * s2
                if 0 <= first + 3 < n_bases:
                    spline += row[start + first + 3] * s3
                total += spline * inv_step
            grad_x[t, i] = total


def feature_width(n_in: int, grid_size: int) -> int:
    """Columns of the feature matrix: ``n_in`` SiLU values and ``n_in * (grid_size + 3)`` bases."""
    return n_in * (1 + grid_size + CUBIC_ORDER)


def empty_features(tokens: int, n_in: int, grid_size: int, dtype) -> np.ndarray:
    return np.empty((tokens, feature_width(n_in, grid_size)), dtype=dtype)
