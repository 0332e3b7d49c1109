"""SplineMap attention: multi-head attention whose Q, K, V and output projections are AGKAN layers.

Implements DMF2Mel's SplineMap attention (``book/architecture.md``, "SplineMap attention and AGKAN"), used in the stem
(self-attention) and in the fusion of the HAMS-Net and DC-FAM branches (self- and cross-attention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dmf2mel.models import attention_kernels, kernels
from dmf2mel.models.dropout import Dropout, draw_call, dropout
from dmf2mel.models.kan import AGKANLinear
from dmf2mel.models.scan.cpu import numba_threads
from dmf2mel.validation import check_divides


class _RowAttention(torch.autograd.Function):
    """Attention with dropout by the numba kernels of :mod:`dmf2mel.models.attention_kernels`.

    Inputs ``(groups, time, head_size)`` q and ``(groups, source_time, head_size)`` k, v; keeps q, k, v and one
    log-sum-exp per row for the backward pass, which recomputes the weights and regenerates the dropout mask.
    """

    @staticmethod
    def forward(ctx, q, k, v, scale, p):
        arrays = [t.detach().contiguous().numpy() for t in (q, k.transpose(1, 2), v.transpose(1, 2))]
        settings = (scale, *draw_call(p), p > 0)
        with numba_threads():
            out, lse = attention_kernels.attention_forward(*arrays, *settings)
        ctx.arrays, ctx.lse, ctx.settings = arrays, lse, settings
        return torch.from_numpy(out)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        with numba_threads():
            grad_q, grad_k_t, grad_v_t = attention_kernels.attention_backward(
                grad_out.contiguous().numpy(), *ctx.arrays, ctx.lse, *ctx.settings
            )
        return (
            torch.from_numpy(grad_q),
            torch.from_numpy(grad_k_t).transpose(1, 2),
            torch.from_numpy(grad_v_t).transpose(1, 2),
            None,
            None,
        )


def attention_with_dropout(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, p: float, training: bool = True, scale: float | None = None
) -> torch.Tensor:
    """``dropout(softmax(scale * q k^T), p) v`` over the last two dimensions, any leading dimensions.

    On CPU float32/float64 tensors (with the numba kernels switched on) one numba pass per query row does it without
    forming the ``(..., time, source_time)`` weights; elsewhere torch ops do it explicitly. Both paths draw the same
    dropout mask for the same torch random state (the generator of :mod:`dmf2mel.models.dropout`).

    Parameters
    ----------
    q : (..., time, head_size)
    k, v : (..., source_time, head_size)
    p : float
        Dropout probability on the weights, in [0, 1).
    training : bool
        False: no dropout.
    scale : float, optional
        Multiplies the scores; default ``head_size ** -0.5``.

    Returns
    -------
    (..., time, head_size)
    """
    if not 0.0 <= p < 1.0:
        raise ValueError(f"attention dropout p={p!r}: expected a number in [0, 1)")
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    p = p if training else 0.0
    if kernels.handles(q):
        leading = q.shape[:-2]
        flat = [t.reshape(-1, *t.shape[-2:]) for t in (q, k, v)]
        return _RowAttention.apply(*flat, scale, p).reshape(*leading, *q.shape[-2:])
    return dropout(attention_weights(q, k, scale), p, training) @ v


def attention_weights(q: torch.Tensor, k: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """``softmax(scale * q k^T)`` over the last dimension, explicitly: (..., time, source_time), rows summing to one.

    ``scale`` defaults to ``head_size ** -0.5``.
    """
    scale = q.shape[-1] ** -0.5 if scale is None else scale
    return torch.softmax((q * scale) @ k.transpose(-2, -1), dim=-1)


@dataclass(frozen=True)
class ProjectionSpec:
    """Sizes of one AGKAN projection: grid intervals, prototypes ``S`` and initial gate bias (None: PyTorch's)."""

    grid_size: int
    n_prototypes: int
    gate_bias: float | None


# The official projection sizes and gate biases; the official code leaves the output projection's gate bias at
# PyTorch's default (uniform in +-1/sqrt(d_model)).
QUERY = ProjectionSpec(grid_size=8, n_prototypes=64, gate_bias=1.0)
KEY = ProjectionSpec(grid_size=6, n_prototypes=32, gate_bias=0.5)
VALUE = ProjectionSpec(grid_size=8, n_prototypes=64, gate_bias=2.0)
OUTPUT = ProjectionSpec(grid_size=6, n_prototypes=128, gate_bias=None)
#: Standard deviations of the official re-initialisation of the query, key and value KAN paths.
KAN_BASE_STD = 0.02
KAN_SPLINE_STD = 0.01


def _projection(d_model: int, spec: ProjectionSpec, use_splinemap: bool, checkpoint: bool) -> nn.Module:
    if use_splinemap:
        return AGKANLinear(
            d_model, d_model, spec.grid_size, spec.n_prototypes, spec.gate_bias, checkpoint_prototypes=checkpoint
        )
    return nn.Linear(d_model, d_model)


class SplineMapAttention(nn.Module):
    """Multi-head scaled dot-product attention with AGKAN projections, pre-LayerNorm and a residual.

    ``out = query + Dropout( P_out( MHA( P_q(LN(query)), P_k(LN(kv)), P_v(LN(kv)) ) ) )`` with one LayerNorm shared by
    the query and key/value inputs, attention-weight dropout ``attn_dropout`` and output dropout ``dropout``.
    The projections ``P_*`` are :class:`~dmf2mel.models.kan.AGKANLinear` layers (grid 8 / 6 / 8 / 6, prototypes
    64 / 32 / 64 / 128, gate bias 1.0 / 0.5 / 2.0 / PyTorch's default for Q / K / V / output), or ``nn.Linear`` when
    ``use_splinemap=False`` (the ablation). They are initialised as the official ``_init_agkan_weights`` does: the
    KAN paths of Q, K and V with base weights N(0, 0.02) and spline coefficients N(0, 0.01) (the output projection
    keeps efficient-KAN's initialisation), K's prototype compression Kaiming-uniform instead of orthogonal, V's
    prototype recovery Xavier-normal.

    Parameters
    ----------
    d_model : int, default 64
    n_heads : int, default 2
        Must divide ``d_model``.
    dropout : float, default 0.5
        Dropout on the projected output, before the residual.
    attn_dropout : float, default 0.1
        Dropout on the attention weights.
    use_splinemap : bool, default True
    checkpoint_weights : bool, default False
        While gradients are recorded, recompute in the backward pass instead of keeping: the AGKAN projections'
        prototype weights (``checkpoint_prototypes``), and, where the attention runs on torch ops
        (:func:`attention_with_dropout`; the numba kernels never keep them), the ``(batch, heads, time, source_time)``
        attention weights (scores, softmax, dropout mask; masks reproduced from the saved RNG state). Outputs and
        gradients are unchanged.

    Shapes
    ------
    query ``(batch, time, d_model)``, key_value ``(batch, source_time, d_model)`` or ``None`` for self-attention;
    output ``(batch, time, d_model)``. Any ``time``, ``source_time >= 1``.
    """

    def __init__(
        self,
        d_model: int = 64,
        n_heads: int = 2,
        dropout: float = 0.5,
        attn_dropout: float = 0.1,
        use_splinemap: bool = True,
        checkpoint_weights: bool = False,
    ):
        super().__init__()
        check_divides("n_heads", n_heads, "d_model", d_model, "SplineMapAttention")
        self.d_model, self.n_heads = d_model, n_heads
        self.head_size = d_model // n_heads
        self.attn_dropout = attn_dropout
        self.use_splinemap = use_splinemap
        self.checkpoint_weights = checkpoint_weights
        self.norm = nn.LayerNorm(d_model)
        self.query_proj = _projection(d_model, QUERY, use_splinemap, checkpoint_weights)
        self.key_proj = _projection(d_model, KEY, use_splinemap, checkpoint_weights)
        self.value_proj = _projection(d_model, VALUE, use_splinemap, checkpoint_weights)
        self.out_proj = _projection(d_model, OUTPUT, use_splinemap, checkpoint_weights)
        self.dropout = Dropout(dropout)
        if use_splinemap:
            self._init_projections()

    def _init_projections(self) -> None:
        """The official re-initialisation of the AGKAN projections (see the class docstring)."""
        for projection in (self.query_proj, self.key_proj, self.value_proj):
            nn.init.normal_(projection.kan.base_weight, std=KAN_BASE_STD)
            nn.init.normal_(projection.kan.spline_weight, std=KAN_SPLINE_STD)
        nn.init.kaiming_uniform_(self.key_proj.to_prototypes.weight)
        nn.init.xavier_normal_(self.value_proj.from_prototypes.weight)

    def _split_heads(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, heads, time, head_size)."""
        batch, time, _ = x.shape
        return x.view(batch, time, self.n_heads, self.head_size).transpose(1, 2)

    def forward(
        self, query: torch.Tensor, key_value: torch.Tensor | None = None, return_weights: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Attend from ``query`` to ``key_value`` (to itself when ``None``).

        Parameters
        ----------
        query : (batch, time, d_model)
        key_value : (batch, source_time, d_model) or None
        return_weights : bool
            Also return the attention weights (before attention dropout), computed explicitly with torch ops; the
            output is the same. Otherwise training uses :func:`attention_with_dropout` and evaluation
            ``scaled_dot_product_attention``.

        Returns
        -------
        out : (batch, time, d_model)
        weights : (batch, heads, time, source_time), only if ``return_weights``; each row sums to one.
        """
        normed_query = self.norm(query)
        normed_source = normed_query if key_value is None else self.norm(key_value)
        q = self._split_heads(self.query_proj(normed_query))
        k = self._split_heads(self.key_proj(normed_source))
        v = self._split_heads(self.value_proj(normed_source))
        drop = self.attn_dropout if self.training else 0.0
        if return_weights:
            weights = attention_weights(q, k)
            attended = dropout(weights, drop, self.training) @ v
        elif drop == 0.0:
            attended = F.scaled_dot_product_attention(q, k, v)
        elif self.checkpoint_weights and torch.is_grad_enabled() and not kernels.handles(q):
            # torch ops keep the (time x time) weights: recompute them in the backward pass instead (non-reentrant
            # checkpointing restores the RNG state first, so the dropout mask repeats); the numba kernels keep none
            attended = checkpoint(attention_with_dropout, q, k, v, drop, use_reentrant=False)
        else:
            attended = attention_with_dropout(q, k, v, drop)
        batch, _, time, _ = attended.shape
        merged = attended.transpose(1, 2).reshape(batch, time, self.d_model)
        out = query + self.dropout(self.out_proj(merged))
        return (out, weights) if return_weights else out
