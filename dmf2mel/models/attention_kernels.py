"""numba kernels of scaled dot-product attention with dropout on the CPU, one query row at a time.

``out = dropout(softmax(scale * q k^T)) v`` written with torch ops on a CPU makes and keeps several
``(batch, heads, time, source_time)`` tensors: the scores, the weights (kept for the softmax's backward pass), the
dropout mask and the dropped weights (kept for the product's backward pass), each read and written a few times. For
DMF2Mel's short heads (16 or 32 features) those passes over memory cost more than the arithmetic: in a training step
of the small config the attention's matrix products, softmax and dropout took about 45 % of the time
(``benchmarks/profile_step.py``). These kernels do the work of one query row in a few ``source_time``-long buffers
that stay in the cache, and keep only the row's log-sum-exp for the backward pass, which recomputes the row's scores
(the FlashAttention recipe, Dao et al. 2022, one row per block):

forward, for each query row ``i``::

    s_j = scale * q_i . k_j            m = max_j s_j       l = sum_j exp(s_j - m)      lse_i = m + log(l)
    o_i = sum_j exp(s_j - lse_i) * keep_ij / (1 - p) * v_j

backward, with ``P_j = exp(s_j - lse_i)`` and ``dP_j = keep_ij / (1 - p) * dO_i . v_j``::

    dS_j = P_j * (dP_j - sum_k P_k dP_k)
    dq_i = scale * sum_j dS_j k_j      dk_j += scale * dS_j q_i      dv_j += P_j keep_ij / (1 - p) * dO_i

**The dropout mask** is the generator of :mod:`dmf2mel.models.dropout`: element ``e`` of the
``(batch * heads, time, source_time)`` weights (row-major) keeps its value when 32 bits of
``splitmix64(splitmix64(seed) + (e // 2) * golden)`` (the low half for even ``e``, the high half for odd) reach
``round(p * 2**32)``. So for the same seed the masks are exactly those that :func:`dmf2mel.models.dropout.dropout`
draws on the explicit weights; the backward pass regenerates them instead of storing them.

Keys and values are passed transposed, ``(batch * heads, head_size, source_time)``, so that every inner loop runs
along ``source_time`` (contiguous; vectorised by LLVM, with :func:`~dmf2mel.models.scan.fast_exp.fast_exp`) whatever
the head size. Work is split over ``batch * heads``: each parallel task owns its rows of dk and dv.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from dmf2mel.models.dropout import keep_mask, pair_buffer, splitmix_base
from dmf2mel.models.parallel_kernels import parallel_kernel
from dmf2mel.models.scan.fast_exp import fast_exp

# ``reassoc`` lets LLVM vectorise the sums over source_time (float sums in another order: rounding-level differences);
# ``contract`` allows fused multiply-adds. No assumptions about NaN or infinity.
_FASTMATH = {"reassoc", "contract"}
# Query rows per block of the backward pass (the unrolled case of _outer_add).
ROWS = 4
#: Largest sum of a row's exponentials shifted by its first score that the forward pass keeps (2**60, ~1e18): every
#: exponential, and every product of one with a value of v up to ~1e19 in magnitude, stays far below float32's largest
#: number (~3.4e38). Above it the row is shifted by its maximum instead, so its exponentials are at most 1.
SHIFTED_SUM_LIMIT = 2.0**60


@njit(inline="always")
def _combine_rows(target, rows, coefficients, scale):
    """``target[j] += scale * sum_d coefficients[d] * rows[d, j]``, four rows per pass over ``target``."""
    n_rows = coefficients.size
    blocked = n_rows - n_rows % 4
    for d in range(0, blocked, 4):
        c0, c1 = coefficients[d] * scale, coefficients[d + 1] * scale
        c2, c3 = coefficients[d + 2] * scale, coefficients[d + 3] * scale
        r0, r1, r2, r3 = rows[d], rows[d + 1], rows[d + 2], rows[d + 3]
        for j in range(target.size):
            target[j] += c0 * r0[j] + c1 * r1[j] + c2 * r2[j] + c3 * r3[j]
    for d in range(blocked, n_rows):
        c, row = coefficients[d] * scale, rows[d]
        for j in range(target.size):
            target[j] += c * row[j]


@njit(inline="always")
def _coefficients(m, row, column, scale):
    """The 4 x 4 block ``scale * m[row + r, column + e]`` as 16 scalars, row by row (for :func:`_add_combinations`)."""
    return (
        m[row, column] * scale,
        m[row, column + 1] * scale,
        m[row, column + 2] * scale,
        m[row, column + 3] * scale,
        m[row + 1, column] * scale,
        m[row + 1, column + 1] * scale,
        m[row + 1, column + 2] * scale,
        m[row + 1, column + 3] * scale,
        m[row + 2, column] * scale,
        m[row + 2, column + 1] * scale,
        m[row + 2, column + 2] * scale,
        m[row + 2, column + 3] * scale,
        m[row + 3, column] * scale,
        m[row + 3, column + 1] * scale,
        m[row + 3, column + 2] * scale,
        m[row + 3, column + 3] * scale,
    )


@njit(inline="always")
def _add_combinations(targets, sources, c):
    """``targets[r][j] += sum_e c[4 r + e] * sources[e][j]`` for four target and four source rows, in one pass over
    ``j``: 4 loads of the sources and 4 loads and stores of the targets for 16 products."""
    t0, t1, t2, t3 = targets
    r0, r1, r2, r3 = sources
    c00, c01, c02, c03, c10, c11, c12, c13, c20, c21, c22, c23, c30, c31, c32, c33 = c
    for j in range(t0.size):
        x0, x1, x2, x3 = r0[j], r1[j], r2[j], r3[j]
        t0[j] += c00 * x0 + c01 * x1 + c02 * x2 + c03 * x3
        t1[j] += c10 * x0 + c11 * x1 + c12 * x2 + c13 * x3
        t2[j] += c20 * x0 + c21 * x1 + c22 * x2 + c23 * x3
        t3[j] += c30 * x0 + c31 * x1 + c32 * x2 + c33 * x3


@njit(inline="always")
def _scores_block(scores, k_t, queries, n_rows, scale):
    """``scores[r, j] = scale * queries[r] . k_t[:, j]`` for ``r < n_rows``; a full block of :data:`ROWS` rows
    reads each stretch of ``k_t`` once for all of them."""
    head_size, source = k_t.shape
    if n_rows != 4 or head_size % 4 != 0:
        for r in range(n_rows):
            scores[r, :] = 0
            _combine_rows(scores[r], k_t, queries[r], scale)
        return
    scores[:n_rows] = 0
    for d in range(0, head_size, 4):
        _add_combinations(
            (scores[0], scores[1], scores[2], scores[3]),
            (k_t[d], k_t[d + 1], k_t[d + 2], k_t[d + 3]),
            _coefficients(queries, 0, d, scale),
        )


@njit(inline="always")
def _dot_rows(out, weights, rows):
    """``out[d] = sum_j weights[j] * rows[d, j]``, four rows per pass over ``weights``."""
    n_rows = out.size
    blocked = n_rows - n_rows % 4
    zero = weights.dtype.type(0.0)
    for d in range(0, blocked, 4):
        r0, r1, r2, r3 = rows[d], rows[d + 1], rows[d + 2], rows[d + 3]
        a0 = a1 = a2 = a3 = zero
        for j in range(weights.size):
            w = weights[j]
            a0 += w * r0[j]
            a1 += w * r1[j]
            a2 += w * r2[j]
            a3 += w * r3[j]
        out[d], out[d + 1], out[d + 2], out[d + 3] = a0, a1, a2, a3
    for d in range(blocked, n_rows):
        row = rows[d]
        acc = zero
        for j in range(weights.size):
            acc += weights[j] * row[j]
        out[d] = acc


@njit(inline="always")
def _dot_rows_block(out, weights, rows, n_rows):
    """``out[r, d] = sum_j weights[r, j] * rows[d, j]`` for ``r < n_rows``; a full block of :data:`ROWS` rows takes
    four of ``rows`` at a time, so each pass over ``source_time`` loads 8 values for 16 products (one row at a time:
    5 for 4)."""
    n_out = rows.shape[0]
    if n_rows != 4 or n_out % 4 != 0:
        for r in range(n_rows):
            _dot_rows(out[r], weights[r], rows)
        return
    zero = weights.dtype.type(0.0)
    w0, w1, w2, w3 = weights[0], weights[1], weights[2], weights[3]
    for d in range(0, n_out, 4):
        r0, r1, r2, r3 = rows[d], rows[d + 1], rows[d + 2], rows[d + 3]
        a00 = a01 = a02 = a03 = a10 = a11 = a12 = a13 = zero
        a20 = a21 = a22 = a23 = a30 = a31 = a32 = a33 = zero
        for j in range(w0.size):
            x0, x1, x2, x3 = r0[j], r1[j], r2[j], r3[j]
            v0, v1, v2, v3 = w0[j], w1[j], w2[j], w3[j]
            a00 += v0 * x0
            a01 += v0 * x1
            a02 += v0 * x2
            a03 += v0 * x3
            a10 += v1 * x0
            a11 += v1 * x1
            a12 += v1 * x2
            a13 += v1 * x3
            a20 += v2 * x0
            a21 += v2 * x1
            a22 += v2 * x2
            a23 += v2 * x3
            a30 += v3 * x0
            a31 += v3 * x1
            a32 += v3 * x2
            a33 += v3 * x3
        out[0, d], out[0, d + 1], out[0, d + 2], out[0, d + 3] = a00, a01, a02, a03
        out[1, d], out[1, d + 1], out[1, d + 2], out[1, d + 3] = a10, a11, a12, a13
        out[2, d], out[2, d + 1], out[2, d + 2], out[2, d + 3] = a20, a21, a22, a23
        out[3, d], out[3, d + 1], out[3, d + 2], out[3, d + 3] = a30, a31, a32, a33


@njit(inline="always")
def _outer_add(rows, coefficients, weights, n_terms):
    """``rows[d, j] += sum_r coefficients[r, d] * weights[r, j]`` over ``r < n_terms`` (at most :data:`ROWS`); with
    :data:`ROWS` terms, four of ``rows`` per pass over ``source_time`` (8 loads and 4 stores for 16 products)."""
    n_rows = rows.shape[0]
    blocked = n_rows - n_rows % 4 if n_terms == 4 else 0
    one = rows.dtype.type(1.0)
    by_row = coefficients.T  # by_row[d, r] = coefficients[r, d]
    for d in range(0, blocked, 4):
        _add_combinations(
            (rows[d], rows[d + 1], rows[d + 2], rows[d + 3]),
            (weights[0], weights[1], weights[2], weights[3]),
            _coefficients(by_row, d, 0, one),
        )
    for d in range(blocked, n_rows):
        _combine_rows(rows[d], weights[:n_terms], by_row[d, :n_terms], one)


@njit(inline="always")
def _exp_sum(scores, shift, keep):
    """``scores[j] = exp(scores[j] - shift) * keep[j]`` in place; returns the sum of the exponentials (before
    ``keep``)."""
    total = scores.dtype.type(0.0)
    for j in range(scores.size):
        value = fast_exp(scores[j] - shift)
        scores[j] = value * keep[j]
        total += value
    return total


@parallel_kernel(cache=True, fastmath=_FASTMATH)
def attention_forward(q, k_t, v_t, scale, seed, threshold, drop_scale, has_dropout):
    """Forward pass.

    Parameters
    ----------
    q : (groups, time, head_size)
    k_t, v_t : (groups, head_size, source_time)
    scale : float, multiplies the scores
    seed : int, the dropout call's seed (ignored without dropout)
    threshold : uint64, ``round(p * 2**32)``
    drop_scale : float, ``1 / (1 - p)``
    has_dropout : bool

    Returns
    -------
    out : (groups, time, head_size)
    lse : (groups, time), the log-sum-exp of each row's scores
    """
    groups, time, head_size = q.shape
    source = k_t.shape[2]
    dtype = q.dtype
    out = np.empty_like(q)
    lse = np.empty((groups, time), dtype=dtype)
    base = splitmix_base(seed)
    scale = dtype.type(scale)
    drop_scale = dtype.type(drop_scale)
    for g in prange(groups):
        block = np.empty((ROWS, source), dtype=dtype)
        keep = np.ones(source, dtype=dtype)
        pairs = pair_buffer(source)
        norms = np.empty(ROWS, dtype=dtype)
        for first in range(0, time, ROWS):
            n_rows = min(ROWS, time - first)
            _scores_block(block, k_t[g], q[g, first : first + n_rows], n_rows, scale)
            for r in range(n_rows):
                i = first + r
                scores = block[r]
                if has_dropout:
                    keep_mask(keep, (g * time + i) * source, base, threshold, pairs)
                # shifted by the first score, so the sum is at least 1; the maximum (a slow, unvectorised pass) is
                # needed only when a score exceeds the first by more than ln(SHIFTED_SUM_LIMIT). Checking the sum for
                # overflow alone is not enough: a sum just below float32's largest number (a score ~88 above the
                # first) leaves exponentials whose products with v overflow in the dot product below, and inf - inf
                # is NaN
                peak = scores[0]
                total = _exp_sum(scores, peak, keep)
                if not total <= SHIFTED_SUM_LIMIT:
                    scores[:] = 0
                    _combine_rows(scores, k_t[g], q[g, i], scale)
                    peak = scores.max()
                    total = _exp_sum(scores, peak, keep)
                lse[g, i] = peak + math.log(total)
                norms[r] = drop_scale / total if has_dropout else dtype.type(1.0) / total
            # the rows hold exp(s_j - peak) keep_ij: normalised after the product, on head_size numbers per row
            rows = out[g, first : first + n_rows]
            _dot_rows_block(rows, block, v_t[g], n_rows)
            for r in range(n_rows):
                for d in range(head_size):
                    rows[r, d] *= norms[r]
    return out, lse


@parallel_kernel(cache=True, fastmath=_FASTMATH)
def attention_backward(grad_out, q, k_t, v_t, lse, scale, seed, threshold, drop_scale, has_dropout):
    """Backward pass: gradients with respect to q, k_t and v_t (shapes as the inputs).

    Parameters as :func:`attention_forward`, plus ``grad_out`` (groups, time, head_size) and its ``lse``.
    """
    groups, time, head_size = q.shape
    source = k_t.shape[2]
    dtype = q.dtype
    grad_q = np.empty_like(q)
    grad_k_t = np.zeros_like(k_t)
    grad_v_t = np.zeros_like(v_t)
    base = splitmix_base(seed)
    scale = dtype.type(scale)
    drop_scale = dtype.type(drop_scale if has_dropout else 1.0)
    for g in prange(groups):
        # a block of ROWS query rows at a time, so that the rank-one updates of dk and dv pass over them once per block
        weights = np.empty((ROWS, source), dtype=dtype)  # P_j
        dropped = np.empty((ROWS, source), dtype=dtype)  # P_j keep_ij / (1 - p)
        grad_weights = np.empty((ROWS, source), dtype=dtype)  # dP_j, then dS_j
        keep = np.ones(source, dtype=dtype)
        pairs = pair_buffer(source)
        one = dtype.type(1.0)
        for first in range(0, time, ROWS):
            n_rows = min(ROWS, time - first)
            # the block's scores again, and dO . v for each of its rows
            _scores_block(weights, k_t[g], q[g, first : first + n_rows], n_rows, scale)
            _scores_block(grad_weights, v_t[g], grad_out[g, first : first + n_rows], n_rows, one)
            for r in range(n_rows):
                i = first + r
                row_weights, row_grad = weights[r], grad_weights[r]
                row_lse = lse[g, i]
                row_dropped = dropped[r]
                if has_dropout:
                    keep_mask(keep, (g * time + i) * source, base, threshold, pairs)
                # P_j, then P_j keep_ij / (1 - p), dP_j and sum_j P_j dP_j in the same pass
                centre = dtype.type(0.0)
                for j in range(source):
                    weight = fast_exp(row_weights[j] - row_lse)
                    factor = keep[j] * drop_scale
                    grad = row_grad[j] * factor
                    row_weights[j] = weight
                    row_dropped[j] = weight * factor
                    row_grad[j] = grad
                    centre += weight * grad
                for j in range(source):
                    row_grad[j] = row_weights[j] * (row_grad[j] - centre) * scale
            _dot_rows_block(grad_q[g, first : first + n_rows], grad_weights, k_t[g], n_rows)
            # dv += (P keep / (1 - p)) dO_i and dk += dS q_i, for the block's rows
            _outer_add(grad_v_t[g], grad_out[g, first : first + n_rows], dropped, n_rows)
            _outer_add(grad_k_t[g], q[g, first : first + n_rows], grad_weights, n_rows)
    return grad_q, grad_k_t, grad_v_t
