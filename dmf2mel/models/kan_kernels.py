"""numba kernels of a KAN layer on the CPU: the base and spline features of each token, built in one pass.

A KAN layer (:mod:`dmf2mel.models.kan`) is one matrix product over per-token *features*: ``SiLU(x_i)`` for the base
path and the ``grid_size + 3`` cubic B-spline bases ``B_k(x_i)`` for the spline path, of which at most four are
non-zero::

    y = F(x) @ W.T,   F(x)[t] = [SiLU(x[t, 0..in)), B_0(x[t, 0..in)), B_1(x[t, 0..in)), ..., B_{n-1}(x[t, 0..in))]
    W = [W_base | c * s with the basis axis before the input axis]   (out, in + n_bases * in)

Basis ``k`` of all inputs comes before basis ``k + 1`` (column ``in + k * in + i``), so that the kernels' inner loops
run over the inputs, contiguous in memory, and vectorise.

Written with torch ops, building ``F`` takes a dozen passes over ``(tokens, in, 4)`` tensors, a zero fill and a
scatter, and the backward pass gathers the four active slots again: in a training step of the small config those
passes cost more than all the matrix products of the attention (``benchmarks/profile_step.py``). Here one kernel
computes each token's row of ``F`` from ``x`` (:func:`kan_features`), and one computes the gradient with respect to
``x`` from ``dL/dF = dL/dy @ W`` (:func:`kan_input_grad`); the matrix products stay with torch (MKL).

**Every basis in closed form, without branches.** On a uniform grid with knot spacing ``h``, basis ``k`` is the
cardinal cubic B-spline ``N`` centred on knot ``t_{k+2}``: ``B_k(x) = N(u)`` with ``u = (x - t_{k+2}) / h`` and, for
``d = |u|``, ``N = ((2 - d)_+^3 - 4 (1 - d)_+^3) / 6`` (``(.)_+`` is ``max(., 0)``), which is ``2/3 - d^2 + d^3/2``
for ``d < 1``, ``(2 - d)^3 / 6`` for ``1 <= d < 2`` and 0 beyond: the same function as the recursion of
:func:`dmf2mel.models.kan.b_spline_bases_reference` on the extended grid (tests compare them). Its slope is
``sign(u) (2 (1 - d)_+^2 - (2 - d)_+^2 / 2) / h``. An ``x`` outside the extended grid is two spacings or more away
from every centre and gets no non-zero basis; a NaN gets none either (the ramp maps NaN to 0). Evaluating all
``grid_size + 3`` bases of an input, most of them zero, costs more arithmetic than locating the four non-zero ones,
but the loop has no branch, no scatter and no zero fill: at 5120 tokens x 32 inputs, grid 8 (one thread, CPU time,
best of 30) the features take 0.46 ms instead of 2.2 ms and the input gradient 0.63 ms instead of 1.55 ms with the
previous kernels, which located the interval of each input and wrote its four bases.

**Vectorised loops.** SiLU and its derivative use :func:`~dmf2mel.models.scan.fast_exp.fast_exp` (numba's ``np.exp``
is a libm call, which LLVM cannot vectorise) and the kernels are compiled with ``error_model="numpy"``: under
numba's default Python error model every float division checks its divisor for zero to raise
``ZeroDivisionError``, and that branch alone kept the SiLU loop scalar (alone, the loop ran 9x faster without it).
A zero divisor now gives inf or NaN, as in torch.
"""

from __future__ import annotations

from numba import njit, prange

from dmf2mel.models.parallel_kernels import parallel_kernel
from dmf2mel.models.scan.fast_exp import fast_exp

CUBIC_ORDER = 3


# IEEE-safe fast-math: no assumption that values are finite (a NaN input must give no bases, not garbage)
_FASTMATH = {"nsz", "arcp", "contract", "afn", "reassoc"}


@njit(inline="always")
def _ramp(value, zero):
    """``max(value, 0)``, with 0 for NaN (a NaN input must give no bases)."""
    return value if value > zero else zero


@parallel_kernel(cache=True, fastmath=_FASTMATH, error_model="numpy")
def kan_features(x, grid_size, low, step, features):
    """Fill ``features`` (tokens, in * (1 + grid_size + 3)): SiLU(x) first, then basis 0 of every input, basis 1..."""
    tokens, n_in = x.shape
    n_bases = grid_size + CUBIC_ORDER
    # constants in the data's precision, so float32 inputs are computed in float32
    zero = x.dtype.type(0.0)
    one = x.dtype.type(1.0)
    two = x.dtype.type(2.0)
    four = x.dtype.type(4.0)
    sixth = x.dtype.type(1.0 / 6.0)
    inv_step = x.dtype.type(1.0 / step)
    # basis k is centred on t_{k+2} = low + (k - 1) * step
    centre = x.dtype.type(low / step - 1.0)
    for t in prange(tokens):
        row = features[t]
        values = x[t]
        for i in range(n_in):
            row[i] = values[i] / (one + fast_exp(-values[i]))
        for k in range(n_bases):
            plane = row[n_in * (k + 1) : n_in * (k + 2)]
            shift = centre + x.dtype.type(k)
            for i in range(n_in):
                distance = abs(values[i] * inv_step - shift)
                outer = _ramp(two - distance, zero)
                inner = _ramp(one - distance, zero)
                plane[i] = (outer * outer * outer - four * inner * inner * inner) * sixth


@parallel_kernel(cache=True, fastmath=_FASTMATH, error_model="numpy")
def kan_input_grad(x, grad_features, grid_size, low, step, grad_x):
    """``grad_x[t, i] = SiLU'(x) dL/dF[t, i] + sum_k B_k'(x) dL/dF[t, basis k of i]``; the features' layout."""
    tokens, n_in = x.shape
    n_bases = grid_size + CUBIC_ORDER
    zero = x.dtype.type(0.0)
    one = x.dtype.type(1.0)
    two = x.dtype.type(2.0)
    half = x.dtype.type(0.5)
    inv_step = x.dtype.type(1.0 / step)
    centre = x.dtype.type(low / step - 1.0)
    for t in prange(tokens):
        row = grad_features[t]
        values = x[t]
        out = grad_x[t]
        for i in range(n_in):
            sigmoid = one / (one + fast_exp(-values[i]))
            out[i] = row[i] * sigmoid * (one + values[i] * (one - sigmoid))
        for k in range(n_bases):
            plane = row[n_in * (k + 1) : n_in * (k + 2)]
            shift = centre + x.dtype.type(k)
            for i in range(n_in):
                offset = values[i] * inv_step - shift
                distance = abs(offset)
                outer = _ramp(two - distance, zero)
                inner = _ramp(one - distance, zero)
                # dN/du of the cardinal cubic B-spline at u - 2 = offset, in x's units
                slope = (two * inner * inner - half * outer * outer) * inv_step
                out[i] += plane[i] * (slope if offset >= zero else -slope)


def feature_width(n_in: int, grid_size: int) -> int:
    """Columns of the feature matrix: ``n_in`` SiLU values and ``n_in * (grid_size + 3)`` bases."""
    return n_in * (1 + grid_size + CUBIC_ORDER)
