"""Dropout whose masks are drawn by a numba kernel: torch's maths, a fraction of its cost on a CPU.

``torch.nn.functional.dropout`` on a CPU draws every mask element with its Mersenne-Twister generator
(``aten::bernoulli_``): in a DMF2Mel training step that was about a fifth of the time, more than all the attention's
matrix products (``benchmarks/profile_step.py``). Here one numba pass draws the mask, scales the kept elements
and writes both the output and a boolean mask for the backward pass:

- **The generator** is counter based: element ``i`` of a call with seed ``s`` keeps its value when 32 bits of
  ``splitmix64(mix(s) + k * golden)`` (``k = i // 2``: one 64-bit draw serves two elements) are at least
  ``round(p * 2**32)``. So the dropped fraction is ``p`` to within 2.4e-10, every element is an independent draw,
  and the result does not depend on how many threads run the kernel.
- **The seed** of each call is drawn from torch's default generator (``torch.randint``): ``torch.manual_seed``
  makes the masks reproducible, and a checkpoint that saves torch's RNG state resumes with the same masks.
- **The maths** is torch's: ``out = x * mask / (1 - p)`` in training, ``x`` in evaluation, zeros for ``p = 1``;
  the gradient is ``grad * mask / (1 - p)``.

The same generator serves the other kernels that drop values: :func:`keep_mask` draws any run of a call's
elements, :func:`draw_call` a call's seed, threshold and scale. :func:`silu_dropout_forward` and
:func:`silu_dropout_backward` fuse SiLU with dropout for convMamba's feed-forward
(:class:`dmf2mel.models.mamba.FeedForward`), and :mod:`dmf2mel.models.attention_kernels` drops attention weights;
for the same seed, each draws exactly the mask :func:`dropout` would draw on the whole tensor.

Tensors this kernel does not handle (CUDA, half precision) go to ``torch.nn.functional.dropout``, and so does
everything when the package's numba kernels are switched off (``DMF2MEL_KERNELS=torch``, see
:mod:`dmf2mel.models.kernels`), which keeps the old path one switch away for benchmarks.
"""

from __future__ import annotations

import sys

import numpy as np
import torch
import torch.nn.functional as F
from numba import njit, prange
from torch import nn

from dmf2mel.models import kernels
from dmf2mel.models.parallel_kernels import parallel_kernel
from dmf2mel.models.scan.cpu import numba_threads
from dmf2mel.models.scan.fast_exp import fast_exp

# Elements per parallel work item (a multiple of 2: one 64-bit draw serves two elements).
_BLOCK = 8192
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
# where a uint64 is read as two uint32, the index of its low half is (pair index * 2) ^ this
_HIGH_FIRST = 0 if sys.byteorder == "little" else 1
# the fused SiLU-dropout kernels: ``contract`` allows fused multiply-adds; no assumptions about NaN or infinity
_FASTMATH = {"contract"}


@njit(inline="always")
def _splitmix(z):
    z = (z ^ (z >> np.uint64(30))) * _MIX1
    z = (z ^ (z >> np.uint64(27))) * _MIX2
    return z ^ (z >> np.uint64(31))


@njit(inline="always")
def keep_mask(keep, element0, base, threshold, pairs):
    """``keep[j]`` = whether element ``element0 + j`` of a call is kept: the generator of the module docstring.

    ``base`` is :func:`splitmix_base` of the call's seed; ``pairs`` a uint64 work array of at least
    ``keep.size // 2 + 1`` entries (:func:`pair_buffer`). One 64-bit draw serves a pair of elements (even, odd); a run
    that starts or ends inside a pair draws that pair for its one element. Shared by the dropout kernels and the
    attention kernels of :mod:`dmf2mel.models.attention_kernels`, so all draw the same masks.

    The draws go to ``pairs`` first, with the counter advanced by an addition (a vector induction for LLVM, where
    ``pair * golden`` took a third 64-bit vector multiply per draw); read as 32-bit halves, in memory order on a
    little-endian machine, they are the elements' numbers in order. Each loop vectorises: 6.5 M elements in
    2.1 ms instead of 3.0 ms (one thread), the same bits.
    """
    n = keep.size
    offset = element0 & 1
    counter = base + np.uint64(element0 >> 1) * _GOLDEN
    for pair in range((n + offset + 1) >> 1):
        pairs[pair] = _splitmix(counter)
        counter += _GOLDEN
    halves = pairs.view(np.uint32)
    for j in range(n):
        keep[j] = np.uint64(halves[(j + offset) ^ _HIGH_FIRST]) >= threshold


@njit(inline="always")
def pair_buffer(n):
    """The work array :func:`keep_mask` needs for runs of up to ``n`` elements."""
    return np.empty(n // 2 + 1, dtype=np.uint64)


@njit(cache=True)
def splitmix_base(seed):
    """The base of a call's counters: ``splitmix64(seed)``."""
    return _splitmix(np.uint64(seed))


@parallel_kernel(cache=True)
def _dropout_forward(x, out, keep, seed, threshold, scale):
    """``out = x * keep * scale`` with ``keep`` drawn from ``seed`` (see the module docstring); 1-d arrays."""
    n = x.size
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    base = splitmix_base(seed)
    for block in prange(n_blocks):
        start = block * _BLOCK
        stop = min(start + _BLOCK, n)
        keep_mask(keep[start:stop], start, base, threshold, pair_buffer(_BLOCK))
        for i in range(start, stop):
            out[i] = x[i] * (scale * keep[i])


@parallel_kernel(cache=True)
def _apply_mask(grad, keep, scale, out):
    n = grad.size
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    for block in prange(n_blocks):
        for i in range(block * _BLOCK, min((block + 1) * _BLOCK, n)):
            out[i] = grad[i] * (scale * keep[i])


@njit(inline="always")
def _row_mask(row, element0, base, threshold):
    """The mask of a row of the fused SiLU-dropout kernels, as 0/1 in the row's dtype."""
    keep = np.empty_like(row)
    keep_mask(keep, element0, base, threshold, pair_buffer(row.size))
    return keep


@parallel_kernel(cache=True, fastmath=_FASTMATH)
def silu_dropout_forward(h, element0, seed, threshold, scale):
    """``h <- dropout(silu(h))`` in place, ``h`` (rows, width) elements ``element0 ...`` of the call with ``seed``
    (see :func:`keep_mask`; ``threshold`` 0 keeps every element)."""
    rows, width = h.shape
    base = splitmix_base(seed)
    one = h.dtype.type(1.0)
    scale = h.dtype.type(scale)
    for r in prange(rows):
        row = h[r]
        keep = _row_mask(row, element0 + r * width, base, threshold)
        for j in range(width):
            row[j] = row[j] / (one + fast_exp(-row[j])) * (keep[j] * scale)


@parallel_kernel(cache=True, fastmath=_FASTMATH)
def silu_dropout_backward(h, grad, element0, seed, threshold, scale):
    """The two halves of ``dropout(silu(h))``'s backward pass, in place: ``h <- dropout(silu(h))`` (the activation
    the next layer's weight gradient needs) and ``grad <- grad * mask * scale * silu'(h)``."""
    rows, width = h.shape
    base = splitmix_base(seed)
    one = h.dtype.type(1.0)
    scale = h.dtype.type(scale)
    for r in prange(rows):
        row, grad_row = h[r], grad[r]
        keep = _row_mask(row, element0 + r * width, base, threshold)
        for j in range(width):
            x = row[j]
            sigmoid = one / (one + fast_exp(-x))
            kept = keep[j] * scale
            row[j] = x * sigmoid * kept
            grad_row[j] *= kept * sigmoid * (one + x * (one - sigmoid))


def _threshold(p: float) -> np.uint64:
    return np.uint64(min(round(p * 2.0**32), 2**32 - 1))


def draw_call(p: float) -> tuple[int, np.uint64, float]:
    """Seed, threshold and scale of one dropout call with probability ``p``, for the kernels that draw its mask.

    The seed comes from torch's default generator (``torch.manual_seed`` and a resumed RNG state apply), and only
    for ``p > 0``: ``p = 0`` leaves torch's random state alone and gives ``(0, 0, 1.0)``, a threshold that keeps
    every element. The threshold is ``round(p * 2**32)``, the scale ``1 / (1 - p)`` (0 for ``p = 1``).
    """
    if p <= 0.0:
        return 0, np.uint64(0), 1.0
    seed = int(torch.randint(0, 2**62, (1,)))
    return seed, _threshold(p), (1.0 / (1.0 - p) if p < 1.0 else 0.0)


class _NumbaDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, p):
        seed, threshold, scale = draw_call(p)
        array = x.detach().contiguous().numpy().reshape(-1)
        out = np.empty_like(array)
        keep = np.empty(array.shape, dtype=np.bool_)
        scale = array.dtype.type(scale)
        with numba_threads():
            _dropout_forward(array, out, keep, seed, threshold, scale)
        ctx.save_for_backward(torch.from_numpy(keep))
        ctx.scale = scale
        return torch.from_numpy(out).view(x.shape)

    @staticmethod
    def backward(ctx, grad):
        (keep,) = ctx.saved_tensors
        array = grad.contiguous().numpy().reshape(-1)
        out = np.empty_like(array)
        with numba_threads():
            _apply_mask(array, keep.numpy(), array.dtype.type(ctx.scale), out)
        return torch.from_numpy(out).view(grad.shape), None


def dropout(x: torch.Tensor, p: float, training: bool = True) -> torch.Tensor:
    """``torch.nn.functional.dropout(x, p, training)`` with the mask drawn by the numba kernel where it applies.

    Parameters
    ----------
    x : tensor of any shape
    p : float
        Probability of zeroing an element, in [0, 1].
    training : bool
        False: ``x`` unchanged.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout probability p={p!r}: expected a number in [0, 1]")
    if not training or p == 0.0:
        return x
    if not kernels.handles(x) or p == 1.0 or x.numel() == 0:
        return F.dropout(x, p, training)
    return _NumbaDropout.apply(x, p)


class Dropout(nn.Module):
    """Drop-in replacement of :class:`torch.nn.Dropout` using :func:`dropout`; any shape in, same shape out."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"dropout probability p={p!r}: expected a number in [0, 1]")
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
