"""A vectorisable ``exp`` for numba kernels.

numba's ``math.exp`` is a call into libm, so a loop that calls it cannot be vectorised (the pip build of
llvmlite ships no SVML). The selective scan evaluates ``exp(delta * A)`` once per (batch, dim, time, state)
element, and that call dominates its cost. :func:`fast_exp` is plain arithmetic instead, which LLVM
vectorises across the state dimension:

    exp(x) = 2**k * exp(r),   k = round(x / ln 2),   r = x - k ln 2 in [-ln(2)/2, ln(2)/2]

with ``k ln 2`` subtracted in two parts (Cody & Waite) so that ``r`` is exact to working precision, ``exp(r)``
a polynomial (Cephes' ``expf`` minimax for float32, the Taylor series to degree 13 for float64), and
``2**k`` built directly from its IEEE-754 bits. Accuracy where the result is a normal number: within 3 ulp
of ``np.exp`` in float32 and 1 ulp in float64 (tests allow 3 and 2). Differences from libm, all far outside what a decay ``exp(delta * A)`` produces:
results below the smallest normal number flush to 0, and float32 overflows to ``inf`` from x ≈ 88.38 on
(libm: 88.72).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload

from dmf2mel.models.vector_width import prefer_wide_vectors

# every kernel module imports this one: set the vector width before numba compiles any of them
prefer_wide_vectors()


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32 as the float32 with the same bits (no conversion)."""
    signature = types.float32(types.int32)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.FloatType())

    return signature, codegen


@intrinsic
def _float64_from_bits(typingctx, bits):
    """Reinterpret an int64 as the float64 with the same bits (no conversion)."""
    signature = types.float64(types.int64)

    def codegen(context, builder, sig, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return signature, codegen


# IEEE-754 layouts: exponent bias and mantissa width.
_F32_BIAS, _F32_MANTISSA_BITS = 127, 23
_F64_BIAS, _F64_MANTISSA_BITS = 1023, 52
# Inputs outside [ln(smallest normal), ln(largest finite)] give 0 or inf.
_F32_LOWEST, _F32_HIGHEST = np.float32(-87.33654), np.float32(88.72283)
_F64_LOWEST, _F64_HIGHEST = -708.3964185322641, 709.782712893384
_F32_LOG2E = np.float32(1.4426950408889634)
_F64_LOG2E = 1.4426950408889634
# ln 2 split into a part with few mantissa bits (k * hi is exact) and the rest (Cephes' C1, C2).
_F32_LN2_HI, _F32_LN2_LO = np.float32(0.693359375), np.float32(-2.12194440e-4)
_F64_LN2_HI, _F64_LN2_LO = 6.93145751953125e-1, 1.42860682030941723212e-6
# Cephes expf: exp(r) ~ 1 + r + r**2 * P(r) on |r| <= ln(2)/2.
_F32_POLY = tuple(
    np.float32(c)
    for c in (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3, 4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
)
_F32_ONE, _F32_HALF, _F32_ZERO, _F32_INF = np.float32(1.0), np.float32(0.5), np.float32(0.0), np.float32(np.inf)


# fastmath=False, explicitly: reassociation would fold the two-part reduction x - k*hi - k*lo into x - k*ln2. An
# unset option would be inherited from the first kernel that compiles these functions (numba passes a caller's
# fastmath on to callees that do not set their own), and that version would then serve every caller of the process:
# the accuracy, and the last bits of every result, would depend on which kernel ran first.
@njit(cache=True, fastmath=False)
def exp_float32(x):
    """exp of a float32 scalar by range reduction and a polynomial; vectorisable."""
    clipped = _F32_LOWEST if x < _F32_LOWEST else x  # NaN compares false and passes through
    clipped = _F32_HIGHEST if clipped > _F32_HIGHEST else clipped
    k = np.floor(clipped * _F32_LOG2E + _F32_HALF)
    r = clipped - k * _F32_LN2_HI
    r = r - k * _F32_LN2_LO
    p = _F32_POLY[0]
    p = p * r + _F32_POLY[1]
    p = p * r + _F32_POLY[2]
    p = p * r + _F32_POLY[3]
    p = p * r + _F32_POLY[4]
    p = p * r + _F32_POLY[5]
    p = p * r * r + r + _F32_ONE
    scale = _float32_from_bits(np.int32((np.int32(k) + _F32_BIAS) << _F32_MANTISSA_BITS))
    result = p * scale
    result = _F32_ZERO if x < _F32_LOWEST else result
    return _F32_INF if x > _F32_HIGHEST else result


@njit(cache=True, fastmath=False)
def exp_float64(x):
    """exp of a float64 scalar by range reduction and a degree-13 Taylor polynomial; vectorisable."""
    clipped = _F64_LOWEST if x < _F64_LOWEST else x
    clipped = _F64_HIGHEST if clipped > _F64_HIGHEST else clipped
    k = np.floor(clipped * _F64_LOG2E + 0.5)
    r = clipped - k * _F64_LN2_HI
    r = r - k * _F64_LN2_LO
    # Horner on 1/n!, n = 13 .. 0; the truncation error on |r| <= ln(2)/2 is below 1e-17 relative.
    p = 1.0 / 6227020800.0
    p = p * r + 1.0 / 479001600.0
    p = p * r + 1.0 / 39916800.0
    p = p * r + 1.0 / 3628800.0
    p = p * r + 1.0 / 362880.0
    p = p * r + 1.0 / 40320.0
    p = p * r + 1.0 / 5040.0
    p = p * r + 1.0 / 720.0
    p = p * r + 1.0 / 120.0
    p = p * r + 1.0 / 24.0
    p = p * r + 1.0 / 6.0
    p = p * r + 0.5
    p = p * r + 1.0
    p = p * r + 1.0
    scale = _float64_from_bits(np.int64((np.int64(k) + _F64_BIAS) << _F64_MANTISSA_BITS))
    result = p * scale
    result = 0.0 if x < _F64_LOWEST else result
    return np.inf if x > _F64_HIGHEST else result


def fast_exp(x):
    """exp(x) for a float32 or float64 scalar; inside numba kernels, the vectorisable version above."""
    return np.exp(x)


@overload(fast_exp)
def _fast_exp_overload(x):
    if x == types.float32:
        return lambda x: exp_float32(x)
    if x == types.float64:
        return lambda x: exp_float64(x)
    return None


@njit(cache=True)
def fast_exp_array(x):
    """Elementwise :func:`fast_exp` of a 1-D float32 or float64 array (for tests and the docs).

    Parameters
    ----------
    x : (n,) float32 or float64

    Returns
    -------
    (n,) same dtype
    """
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = fast_exp(x[i])
    return out
