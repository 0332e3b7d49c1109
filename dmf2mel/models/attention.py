"""SplineMap attention: multi-head attention whose Q, K, V and output projections are AGKAN layers.

Implements DMF2Mel's SplineMap attention (``book/architecture.md``, "SplineMap attention and AGKAN"), used in the stem
(self-attention) and in the fusion of the HAMS-Net and DC-FAM branches (self- and cross-attention).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dmf2mel.models.dropout import Dropout, dropout
from dmf2mel.models.kan import AGKANLinear
from dmf2mel.validation import check_divides


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


def _projection(d_model: int, spec: ProjectionSpec, use_splinemap: bool) -> nn.Module:
    if use_splinemap:
        return AGKANLinear(d_model, d_model, spec.grid_size, spec.n_prototypes, spec.gate_bias)
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
            Also return the attention weights (before attention dropout). Attention is computed explicitly (as it
            is anyway while training with attention dropout) instead of with the fused
            ``scaled_dot_product_attention``; the output is the same.

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
        if return_weights or drop > 0.0:
            # explicit, as scaled_dot_product_attention computes it on a CPU when it drops weights, but with the
            # cheaper masks of dmf2mel.models.dropout
            weights = torch.softmax((q * self.head_size**-0.5) @ k.transpose(-2, -1), dim=-1)
            attended = dropout(weights, drop, self.training) @ v
        else:
            attended = F.scaled_dot_product_attention(q, k, v)
        batch, _, time, _ = attended.shape
        merged = attended.transpose(1, 2).reshape(batch, time, self.d_model)
        out = query + self.dropout(self.out_proj(merged))
        return (out, weights) if return_weights else out
