"""Kolmogorov–Arnold layers: KANLinear and the adaptive gated AGKANLinear of SplineMap attention.

Implements the projections of DMF2Mel's SplineMap attention (``book/architecture.md``, "SplineMap attention and AGKAN").

A KAN layer (efficient-KAN formulation) maps ``x (..., in)`` to

    y_o = sum_i SiLU(x_i) * W_base[o, i]  +  sum_i sum_k c[o, i, k] * s[o, i] * B_k(x_i)

where ``B_k`` are the ``grid_size + spline_order`` B-spline bases of order ``spline_order`` on a uniform grid over
``grid_range`` with ``grid_size`` intervals, extended by ``spline_order`` knots on each side.

Memory. The paper-size model holds 28 such layers (36 applications per forward pass) over batch x time tokens. The textbook Cox–de Boor recursion keeps several
``(tokens, in, grid_size + 3)`` intermediates per layer alive for the backward pass, which at batch 16 x 640 runs to
gigabytes. On a uniform grid only four cubic bases are non-zero at any ``x``, with closed-form polynomial weights of
the fractional position (:func:`uniform_cubic_bases`). :class:`KANLinear` evaluates those four and keeps only its
input for the backward pass; the dense basis matrix exists only transiently, inside one forward or backward call.
:func:`b_spline_bases_reference` is the full recursion, kept as the oracle for the tests.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dmf2mel.memory import scratch
from dmf2mel.models import kan_kernels, kernels
from dmf2mel.models.scan.cpu import numba_threads

CUBIC_ORDER = kan_kernels.CUBIC_ORDER
ACTIVE_CUBIC_BASES = CUBIC_ORDER + 1  # a cubic B-spline basis spans four knot intervals


@torch.no_grad()
def orthogonal_(weight: torch.Tensor) -> torch.Tensor:
    """``nn.init.orthogonal_`` (gain 1), reproducible across thread counts and CPUs: the same normal draws from
    torch's generator, but the QR decomposition in float64, rounded once to the weight's dtype.

    torch's own version decomposes in the weight's dtype, float32 here, with LAPACK (MKL on x86), whose rounding
    depends on how many threads split the work and on the CPU's vector instructions: a 128-row matrix came out
    3e-7 apart (relative) between one and two threads, and between an AVX2 and an AVX-512 machine. Training then
    started from slightly different weights on different machines. In float64 that rounding is ~1e-16, far under
    float32's half-step (~6e-8), so rounding to float32 erases it (bit-identical at one and two threads, tested;
    equal to torch's result up to float32 rounding).
    """
    rows = weight.shape[0]
    draws = weight.new_empty((rows, weight.numel() // rows)).normal_(0, 1)
    tall = draws if rows >= draws.shape[1] else draws.T
    q, r = torch.linalg.qr(tall.double())
    q = q * torch.diagonal(r).sign()  # the unique QR with a positive diagonal of R: Haar-distributed q
    weight.copy_((q if rows >= draws.shape[1] else q.T).reshape(weight.shape))
    return weight


def uniform_knots(grid_size: int, spline_order: int = CUBIC_ORDER, grid_range=(-1.0, 1.0), **tensor_kwargs):
    """Knots of a uniform grid over ``grid_range``, extended by ``spline_order`` knots on each side.

    Returns
    -------
    knots : (grid_size + 2 * spline_order + 1,)
    """
    low, high = grid_range
    step = (high - low) / grid_size
    positions = torch.arange(-spline_order, grid_size + spline_order + 1, **tensor_kwargs)
    return low + step * positions


def b_spline_bases_reference(x: torch.Tensor, grid: torch.Tensor, spline_order: int = CUBIC_ORDER) -> torch.Tensor:
    """All B-spline bases by the full Cox–de Boor recursion (slow and memory-hungry: the oracle for tests).

    Parameters
    ----------
    x : (..., in)
    grid : (n_knots,) or (in, n_knots)
        Knots, ascending. Order-0 bases use half-open intervals ``[t_j, t_{j+1})``, so an ``x`` outside
        ``[t_0, t_last)`` gets all-zero bases.
    spline_order : int

    Returns
    -------
    bases : (..., in, n_knots - 1 - spline_order)
    """
    x = x.unsqueeze(-1)
    bases = ((x >= grid[..., :-1]) & (x < grid[..., 1:])).to(x.dtype)
    for order in range(1, spline_order + 1):
        left = (x - grid[..., : -(order + 1)]) / (grid[..., order:-1] - grid[..., : -(order + 1)])
        right = (grid[..., order + 1 :] - x) / (grid[..., order + 1 :] - grid[..., 1:-order])
        bases = left * bases[..., :-1] + right * bases[..., 1:]
    return bases


def _cubic_pieces(fraction: torch.Tensor) -> torch.Tensor:
    """The four uniform cubic B-spline pieces at ``fraction`` in [0, 1): (...,) -> (..., 4).

    ``[(1-f)^3, 3f^3 - 6f^2 + 4, -3f^3 + 3f^2 + 3f + 1, f^3] / 6``; the third is computed as one minus the others
    (the pieces are a partition of unity), which saves passes over the (tokens, in) tensors.
    """
    pieces = fraction.new_empty(*fraction.shape, ACTIVE_CUBIC_BASES)
    rest = 1 - fraction
    squared = fraction * fraction
    cubed = squared * fraction
    pieces[..., 0] = rest * rest * rest / 6
    pieces[..., 1] = cubed / 2 - squared + 2 / 3
    pieces[..., 3] = cubed / 6
    pieces[..., 2] = 1 - pieces[..., 0] - pieces[..., 1] - pieces[..., 3]
    return pieces


def _cubic_piece_slopes(fraction: torch.Tensor) -> torch.Tensor:
    """Derivatives of :func:`_cubic_pieces` with respect to ``fraction``: (...,) -> (..., 4). They sum to zero."""
    slopes = fraction.new_empty(*fraction.shape, ACTIVE_CUBIC_BASES)
    rest = 1 - fraction
    squared = fraction * fraction
    slopes[..., 0] = rest * rest / -2
    slopes[..., 1] = 1.5 * squared - 2 * fraction
    slopes[..., 3] = squared / 2
    slopes[..., 2] = -(slopes[..., 0] + slopes[..., 1] + slopes[..., 3])
    return slopes


def _locate(x: torch.Tensor, grid_size: int, grid_range) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Knot interval of each ``x`` on the extended uniform grid.

    Returns the interval index ``j`` (the ``x`` lies in ``[t_j, t_{j+1})``), the fractional position in it, a mask of
    the ``x`` inside the extended grid, and the knot spacing.
    """
    low, high = grid_range
    step = (high - low) / grid_size
    n_intervals = grid_size + 2 * CUBIC_ORDER
    # in units of knot spacing, counted from the first knot t_0 = low - 3 * step
    position = x * (1 / step) + (CUBIC_ORDER - low / step)
    interval = torch.floor(position)
    inside = (interval >= 0) & (interval < n_intervals)
    fraction = position - interval
    return interval.long(), fraction, inside, step


def uniform_cubic_bases(x: torch.Tensor, grid_size: int, grid_range=(-1.0, 1.0)) -> tuple[torch.Tensor, torch.Tensor]:
    """The four non-zero cubic B-spline bases at each ``x`` on a uniform grid, in closed form (exact).

    Basis ``k`` (``0 <= k < grid_size + 3``) is the one :func:`b_spline_bases_reference` returns at index ``k`` for
    :func:`uniform_knots`. At ``x`` only bases ``first, ..., first + 3`` can be non-zero, with the returned weights.
    Indices outside ``[0, grid_size + 3)`` name bases that do not exist; their weights must be ignored (this happens
    within three knots of the grid's ends). An ``x`` outside the extended grid gets all-zero weights, as in the
    recursion.

    Differentiable with respect to ``x`` through the weights.

    Parameters
    ----------
    x : (..., in)
    grid_size : int
        Number of intervals over ``grid_range``.
    grid_range : (float, float)

    Returns
    -------
    weights : (..., in, 4)
    first : (..., in), int64, in ``[-3, grid_size + 2]``
    """
    interval, fraction, inside, _ = _locate(x, grid_size, grid_range)
    weights = _cubic_pieces(fraction) * inside.unsqueeze(-1)
    first = torch.where(inside, interval - CUBIC_ORDER, torch.zeros_like(interval))
    return weights, first


def local_to_dense(weights: torch.Tensor, first: torch.Tensor, n_bases: int) -> torch.Tensor:
    """Scatter the four local bases of :func:`uniform_cubic_bases` into the full basis vector.

    Parameters
    ----------
    weights : (..., in, 4)
    first : (..., in)
    n_bases : int
        ``grid_size + 3``.

    Returns
    -------
    bases : (..., in, n_bases)
    """
    padded = weights.new_zeros(*weights.shape[:-1], n_bases + 2 * CUBIC_ORDER)
    index = (first + CUBIC_ORDER).unsqueeze(-1) + torch.arange(ACTIVE_CUBIC_BASES, device=first.device)
    padded = padded.scatter(-1, index, weights)
    return padded[..., CUBIC_ORDER : CUBIC_ORDER + n_bases]


class _LocalSplineContraction(torch.autograd.Function):
    """``y[t, o] = sum_i sum_k coeff[o, i, k] * B_k(x[t, i])`` keeping only ``x`` and ``coeff`` for backward.

    ``coeff`` is padded with ``CUBIC_ORDER`` zero slots on each side of the basis axis, so the four active slots
    ``first + 3 .. first + 6`` are always valid indices. The dense ``(tokens, in * (n_bases + 6))`` basis matrix is
    built transiently in forward and rebuilt in backward (recomputation instead of storage).
    """

    @staticmethod
    def forward(ctx, x, coeff_padded, grid_size, grid_range):
        ctx.save_for_backward(x, coeff_padded)
        ctx.grid_size, ctx.grid_range = grid_size, grid_range
        weights, slots, _, _, _ = _active_slots(x, grid_size, grid_range)
        basis_matrix = _scatter_bases(weights, slots, coeff_padded.shape[-1])
        return basis_matrix @ coeff_padded.reshape(coeff_padded.shape[0], -1).t()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, coeff_padded = ctx.saved_tensors
        n_out, n_in, n_slots = coeff_padded.shape
        weights, slots, fraction, inside, step = _active_slots(x, ctx.grid_size, ctx.grid_range)
        grad_x = grad_coeff = None
        if ctx.needs_input_grad[1]:
            basis_matrix = _scatter_bases(weights, slots, n_slots)
            grad_coeff = (grad_out.t() @ basis_matrix).view(n_out, n_in, n_slots)
            del basis_matrix
        if ctx.needs_input_grad[0]:
            slopes = _cubic_piece_slopes(fraction) * (inside.unsqueeze(-1) / step)
            # d y / d basis for every slot, then pick the four active slots of each input
            grad_bases = (grad_out @ coeff_padded.reshape(n_out, -1)).view(-1, n_in, n_slots)
            grad_x = (grad_bases.gather(-1, slots) * slopes).sum(-1)
        return grad_x, grad_coeff, None, None


#: Tokens per chunk of the feature matrix: at 32 inputs and grid 8 a chunk's features take 1.5 MB, so they are read
#: back from the L2 cache. A (5120, 32) layer's features, forward product and weight gradient, one thread, cold
#: caches: 2.97 ms in one piece, 2.43 ms in chunks of 512 or 1024 tokens, 2.61 ms in chunks of 2048.
FEATURE_CHUNK_TOKENS = 1024


class _FeatureKAN(torch.autograd.Function):
    """``y = F(x) @ W.T`` with the features ``F`` of :mod:`dmf2mel.models.kan_kernels`, built by numba.

    ``W`` is ``[W_base | c * s]`` with the columns in the features' order, ``(out, in * (1 + n_bases))``. Only ``x``
    and ``W`` are kept: the backward pass rebuilds ``F`` for ``dL/dW = dL/dy.T @ F`` (and needs ``x`` for ``dL/dx``,
    from ``dL/dy @ W``). Keeping ``F`` instead (``tokens x in x (1 + n_bases)`` numbers per layer) was no faster: a
    fresh feature matrix of the small config is 8 MB, above the mmap threshold, and faulting its pages in cost as
    much as building it again in memory already mapped (small config, batch 8, one process alternating: 0.85 s per
    step keeping, 0.84 s rebuilding, fastest of 8). Both passes go through the tokens in chunks of
    :data:`FEATURE_CHUNK_TOKENS`, with ``F`` and then ``dL/dF`` of a chunk in the reused
    :func:`~dmf2mel.memory.scratch` buffer.
    """

    @staticmethod
    def forward(ctx, x, weight, grid_size, grid_range):
        ctx.save_for_backward(x, weight)
        ctx.grid_size, ctx.grid_range = grid_size, grid_range
        out = x.new_empty(x.shape[0], weight.shape[0])
        with numba_threads():
            for chunk in _chunks(x.shape[0]):
                torch.mm(_features(x[chunk], grid_size, grid_range), weight.t(), out=out[chunk])
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        x, weight = ctx.saved_tensors
        grid_size, (low, high) = ctx.grid_size, ctx.grid_range
        grad_out = grad_out.contiguous()
        grad_weight = torch.zeros_like(weight) if ctx.needs_input_grad[1] else None
        grad_x = torch.empty_like(x) if ctx.needs_input_grad[0] else None
        with numba_threads():
            for chunk in _chunks(x.shape[0]):
                grad_chunk = grad_out[chunk]
                if grad_weight is not None:
                    grad_weight.addmm_(grad_chunk.t(), _features(x[chunk], grid_size, ctx.grid_range))
                if grad_x is not None:
                    # into the scratch buffer the features used: they are dead now
                    buffer = scratch(grad_chunk.shape[0], weight.shape[1], weight.dtype)
                    grad_features = torch.mm(grad_chunk, weight, out=buffer).numpy()
                    kan_kernels.kan_input_grad(
                        x[chunk].numpy(), grad_features, grid_size, low, (high - low) / grid_size, grad_x[chunk].numpy()
                    )
        return grad_x, grad_weight, None, None


def _chunks(tokens: int) -> list[slice]:
    return [slice(start, min(start + FEATURE_CHUNK_TOKENS, tokens)) for start in range(0, tokens, FEATURE_CHUNK_TOKENS)]


def _features(x: torch.Tensor, grid_size: int, grid_range) -> torch.Tensor:
    """The feature matrix ``(tokens, in * (1 + grid_size + 3))`` of a contiguous ``(tokens, in)`` CPU tensor, in
    the :func:`~dmf2mel.memory.scratch` buffer: dead before the next call to it."""
    low, high = grid_range
    array = x.detach().numpy()
    features = scratch(array.shape[0], kan_kernels.feature_width(array.shape[1], grid_size), x.dtype).numpy()
    kan_kernels.kan_features(array, grid_size, low, (high - low) / grid_size, features)
    return torch.from_numpy(features)


def _active_slots(x: torch.Tensor, grid_size: int, grid_range):
    """Weights ``(tokens, in, 4)`` of the active bases and their slots ``(tokens, in, 4)`` in the padded basis axis.

    Also returns the fractional positions, the inside-the-grid mask and the knot spacing for the backward pass.
    Slot ``s`` holds basis ``s - CUBIC_ORDER``; outside the grid the weights are zero and the slots 0..3.
    """
    interval, fraction, inside, step = _locate(x, grid_size, grid_range)
    weights = _cubic_pieces(fraction) * inside.unsqueeze(-1)
    first_slot = torch.where(inside, interval, torch.zeros_like(interval))
    slots = first_slot.unsqueeze(-1) + torch.arange(ACTIVE_CUBIC_BASES, device=x.device)
    return weights, slots, fraction, inside, step


def _scatter_bases(weights: torch.Tensor, slots: torch.Tensor, n_slots: int) -> torch.Tensor:
    """(tokens, in, 4) weights at their slots -> the dense padded basis matrix (tokens, in * n_slots)."""
    dense = weights.new_zeros(*weights.shape[:-1], n_slots).scatter_(-1, slots, weights)
    return dense.view(weights.shape[0], -1)


class KANLinear(nn.Module):
    """Kolmogorov–Arnold layer with cubic B-spline edges (efficient-KAN formulation, memory-light).

    ``y = SiLU(x) @ W_base.T + sum_{i,k} c[o, i, k] * s[o, i] * B_k(x_i)``, see the module docstring.

    Parameters
    ----------
    in_features, out_features : int
    grid_size : int, default 5
        Intervals of the uniform grid over ``grid_range``; there are ``grid_size + 3`` bases per input.
    spline_order : int, default 3
        Only cubic splines (3) have the fast closed-form path.
    grid_range : (float, float), default (-1, 1)
        Inputs beyond the grid extended by three knots each side get no spline contribution (only the SiLU path).

    Shapes
    ------
    ``(..., in_features) -> (..., out_features)``, any leading shape.

    Parameter names follow efficient-KAN (``base_weight``, ``spline_weight``, ``spline_scaler``).
    """

    # efficient-KAN's defaults: spline coefficients start as small random curves
    SPLINE_NOISE = 0.1

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int = 5,
        spline_order: int = CUBIC_ORDER,
        grid_range: tuple[float, float] = (-1.0, 1.0),
    ):
        super().__init__()
        if spline_order != CUBIC_ORDER:
            raise ValueError(f"KANLinear: spline_order must be {CUBIC_ORDER} (cubic), got {spline_order}")
        if grid_size < 1:
            raise ValueError(f"KANLinear: grid_size must be >= 1, got {grid_size}")
        self.in_features, self.out_features = in_features, out_features
        self.grid_size, self.spline_order = grid_size, spline_order
        self.grid_range = (float(grid_range[0]), float(grid_range[1]))
        self.n_bases = grid_size + spline_order
        self.base_weight = nn.Parameter(torch.empty(out_features, in_features))
        self.spline_weight = nn.Parameter(torch.empty(out_features, in_features, self.n_bases))
        self.spline_scaler = nn.Parameter(torch.empty(out_features, in_features))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """efficient-KAN's initialisation (the official code's): Kaiming-uniform base weights and scales; spline
        coefficients of the (minimum-norm, least-squares) spline through uniform noise of half-width
        ``SPLINE_NOISE / (2 * grid_size)`` at the ``grid_size + 1`` grid points of ``grid_range``."""
        nn.init.kaiming_uniform_(self.base_weight, a=math.sqrt(5))
        nn.init.kaiming_uniform_(self.spline_scaler, a=math.sqrt(5))
        with torch.no_grad():
            points = torch.linspace(*self.grid_range, self.grid_size + 1, dtype=torch.float64)
            noise = (torch.rand(self.grid_size + 1, self.in_features, self.out_features) - 0.5).double()
            noise *= self.SPLINE_NOISE / self.grid_size
            bases = b_spline_bases_reference(points[:, None], self.knots().double())  # (points, 1, n_bases)
            design = bases[:, 0].expand(self.in_features, -1, -1)  # (in, points, n_bases), the same for every input
            solution = torch.linalg.lstsq(design, noise.transpose(0, 1), driver="gelsd").solution  # (in, n_bases, out)
            self.spline_weight.copy_(solution.permute(2, 0, 1))

    def knots(self) -> torch.Tensor:
        """The extended uniform grid, ``(grid_size + 7,)``."""
        return uniform_knots(
            self.grid_size,
            self.spline_order,
            self.grid_range,
            dtype=self.base_weight.dtype,
            device=self.base_weight.device,
        )

    def scaled_spline_weight(self) -> torch.Tensor:
        """``c[o, i, k] * s[o, i]``: (out_features, in_features, grid_size + 3)."""
        return self.spline_weight * self.spline_scaler.unsqueeze(-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features)."""
        leading = x.shape[:-1]
        tokens = x.reshape(-1, self.in_features)
        if kernels.handles(tokens):
            # the features put basis k of every input together: columns in + k * in + i
            spline = self.scaled_spline_weight().transpose(1, 2).flatten(1)
            weight = torch.cat([self.base_weight, spline], dim=1)
            out = _FeatureKAN.apply(tokens.contiguous(), weight.to(tokens.dtype), self.grid_size, self.grid_range)
            return out.reshape(*leading, self.out_features)
        base = F.linear(F.silu(tokens), self.base_weight)
        coeff_padded = F.pad(self.scaled_spline_weight(), (CUBIC_ORDER, CUBIC_ORDER))
        spline = _LocalSplineContraction.apply(tokens, coeff_padded, self.grid_size, self.grid_range)
        return (base + spline).reshape(*leading, self.out_features)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, grid_size={self.grid_size}"


class AGKANLinear(nn.Module):
    """Adaptive gated KAN layer: a per-token gate between a KAN and a prototype (soft codebook) path.

    ``y = LayerNorm( g * KAN(x) + (1 - g) * W_r softmax_S(W_c x) )``, ``g = sigmoid(w_g . x + b_g)`` one scalar per
    token (``book/architecture.md``, "SplineMap attention and AGKAN").

    Parameters
    ----------
    in_features, out_features : int
    grid_size : int
        Grid intervals of the KAN path (8 for Q and V, 6 for K and the output projection of SplineMap attention).
    n_prototypes : int
        ``S``, the size of the soft codebook (64 Q/V, 32 K, 128 output).
    gate_bias : float or None
        Initial ``b_g``; positive values lean towards the KAN path at initialisation (sigmoid(1) = 0.73). ``None``
        keeps PyTorch's default initialisation of the gate's bias.
    checkpoint_prototypes : bool, default False
        While gradients are recorded, recompute the prototype weights ``softmax_S(W_c x)`` (``S`` numbers per token)
        in the backward pass instead of keeping them (activation checkpointing; the same results). The KAN path
        keeps only its input either way.

    Notes
    -----
    Initialisation as the official ``AGKANLinear``: ``W_c`` orthogonal, ``W_r`` Kaiming-uniform (gain for ReLU), the
    KAN path as efficient-KAN. :class:`~dmf2mel.models.attention.SplineMapAttention` overrides some of these for its
    query, key and value projections, as the official code does.

    Shapes
    ------
    ``(..., in_features) -> (..., out_features)``.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        grid_size: int,
        n_prototypes: int,
        gate_bias: float | None,
        checkpoint_prototypes: bool = False,
    ):
        super().__init__()
        self.checkpoint_prototypes = checkpoint_prototypes
        self.kan = KANLinear(in_features, out_features, grid_size=grid_size)
        self.gate = nn.Linear(in_features, 1)
        if gate_bias is not None:
            nn.init.constant_(self.gate.bias, gate_bias)
        self.to_prototypes = nn.Linear(in_features, n_prototypes, bias=False)  # W_c
        self.from_prototypes = nn.Linear(n_prototypes, out_features, bias=False)  # W_r
        orthogonal_(self.to_prototypes.weight)
        nn.init.kaiming_uniform_(self.from_prototypes.weight)
        self.norm = nn.LayerNorm(out_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(..., in_features) -> (..., out_features)."""
        gate = torch.sigmoid(self.gate(x))
        if self.checkpoint_prototypes and torch.is_grad_enabled():
            prototypes = checkpoint(self._prototypes, x, use_reentrant=False)
        else:
            prototypes = self._prototypes(x)
        # g * kan + (1 - g) * prototypes, written so that autograd keeps one (tokens, out) difference, not both paths
        return self.norm(prototypes + gate * (self.kan(x) - prototypes))

    def _prototypes(self, x: torch.Tensor) -> torch.Tensor:
        """``W_r softmax_S(W_c x)``: (..., in_features) -> (..., out_features)."""
        return self.from_prototypes(torch.softmax(self.to_prototypes(x), dim=-1))
