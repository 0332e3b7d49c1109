"""SplineMap attention: multi-head attention whose Q, K, V and output projections are AGKAN layers.

Implements DMF2Mel's SplineMap attention (``book/architecture.md``, "SplineMap attention and AGKAN"), used in the stem
(self-attention) and in the fusion of the HAMS-Net and DC-FAM branches (self- and cross-attention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dmf2mel.models.kan import AGKANLinear
from dmf2mel.validation import check_divides


@dataclass(frozen=True)
class ProjectionSpec:
    """Sizes of one AGKAN projection: grid intervals, prototypes ``S`` and initial gate bias."""

    grid_size: int
    n_prototypes: int
    gate_bias: float


# The paper's projection sizes. The official code's value for the output gate is not given in the design; 1.0 leans
# to the KAN path like the query projection (sigmoid(1) = 0.73) without the value projection's strong 2.0.
QUERY = ProjectionSpec(grid_size=8, n_prototypes=64, gate_bias=1.0)
KEY = ProjectionSpec(grid_size=6, n_prototypes=32, gate_bias=0.5)
VALUE = ProjectionSpec(grid_size=8, n_prototypes=64, gate_bias=2.0)
OUTPUT = ProjectionSpec(grid_size=6, n_prototypes=128, gate_bias=1.0)


def _projection(d_model: int, spec: ProjectionSpec, use_splinemap: bool) -> nn.Module:
    if use_splinemap:
        return AGKANLinear(d_model, d_model, spec.grid_size, spec.n_prototypes, spec.gate_bias)
    return nn.Linear(d_model, d_model)


class SplineMapAttention(nn.Module):
    """Multi-head scaled dot-product attention with AGKAN projections, pre-LayerNorm and a residual.

    ``out = query + Dropout( P_out( MHA( P_q(LN(query)), P_k(LN(kv)), P_v(LN(kv)) ) ) )`` with one LayerNorm shared by
    the query and key/value inputs, attention-weight dropout ``attn_dropout`` and output dropout ``dropout``.
    The projections ``P_*`` are :class:`~dmf2mel.models.kan.AGKANLinear` layers (grid 8 / 6 / 8 / 6, prototypes
    64 / 32 / 64 / 128, gate bias 1.0 / 0.5 / 2.0 / 1.0 for Q / K / V / output), or ``nn.Linear`` when
    ``use_splinemap=False`` (the ablation).

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
    ):
        super().__init__()
        check_divides("n_heads", n_heads, "d_model", d_model, "SplineMapAttention")
        self.d_model, self.n_heads = d_model, n_heads
        self.head_size = d_model // n_heads
        self.attn_dropout = attn_dropout
        self.use_splinemap = use_splinemap
        self.norm = nn.LayerNorm(d_model)
        self.query_proj = _projection(d_model, QUERY, use_splinemap)
        self.key_proj = _projection(d_model, KEY, use_splinemap)
        self.value_proj = _projection(d_model, VALUE, use_splinemap)
        self.out_proj = _projection(d_model, OUTPUT, use_splinemap)
        self.dropout = nn.Dropout(dropout)

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
            Also return the attention weights (before attention dropout). Computes attention explicitly instead of
            with the fused ``scaled_dot_product_attention``; the output is the same.

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
            weights = torch.softmax(q @ k.transpose(-2, -1) / self.head_size**0.5, dim=-1)
            attended = F.dropout(weights, drop, self.training) @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v, dropout_p=drop)
        batch, _, time, _ = attended.shape
        merged = attended.transpose(1, 2).reshape(batch, time, self.d_model)
        out = query + self.dropout(self.out_proj(merged))
        return (out, weights) if return_weights else out
