"""Mamba (v1), its bidirectional wrapper and DMF2Mel's convMamba block.

:class:`Mamba` follows Gu & Dao (2023), "Mamba: Linear-Time Sequence Modeling with Selective State
Spaces", and uses the parameter names and shapes of ``mamba_ssm.modules.mamba_simple.Mamba``, so a
state dict loads in either direction (see ``tests/models/test_mamba_ssm_compat.py``). The selective
scan itself lives in :mod:`dmf2mel.models.scan` (a reference loop, a fused CPU kernel, mamba_ssm's
CUDA kernel), chosen by ``scan_backend``.

:class:`BiMamba` runs one Mamba forwards and one over the time-reversed sequence, as DMF2Mel's
convMamba does. :class:`ConvMamba` is the last stage of DMF2Mel (``book/architecture.md``, "Fusion,
convMamba and the selective scan").

All modules take and return time-major tensors ``(batch, time, d_model)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable
from torch.utils.checkpoint import checkpoint

from dmf2mel.models import kernels
from dmf2mel.models.dropout import Dropout, draw_call, silu_dropout_backward, silu_dropout_forward
from dmf2mel.models.scan.cpu import numba_threads
from dmf2mel.models.scan import BACKENDS, selective_scan

#: dt_rank="auto" gives ceil(d_model / DT_RANK_DIVISOR), as mamba_ssm does.
DT_RANK_DIVISOR = 16
#: Lower clamp of the initial step sizes dt (mamba_ssm's ``dt_init_floor``).
DT_INIT_FLOOR = 1e-4


def _at_least_float32(tensor: torch.Tensor) -> torch.Tensor:
    """The SSM parameters stay in float32 under half precision (as in mamba_ssm), float64 in float64."""
    return tensor.to(torch.promote_types(tensor.dtype, torch.float32))


class Mamba(nn.Module):
    """Mamba v1 block (selective state-space model), ``mamba_ssm``-compatible parameters.

    Parameters
    ----------
    d_model : int
        Feature size of input and output.
    d_state : int, default 128
        State size N per inner channel (DMF2Mel uses 128; mamba_ssm's default is 16).
    d_conv : int, default 4
        Kernel size of the causal depthwise convolution.
    expand : int, default 2
        Inner width E: the scan runs over ``E * d_model`` channels.
    dt_rank : int or "auto", default "auto"
        Rank of the step-size projection; "auto" is ``ceil(d_model / 16)``.
    dt_min, dt_max : float, default 1e-3, 1e-1
        Initial step sizes are log-uniform in [dt_min, dt_max].
    scan_backend : str, default "auto"
        Backend of :func:`dmf2mel.models.scan.selective_scan`.

    Notes
    -----
    Parameters (E·d = ``d_inner``, R = ``dt_rank``, N = ``d_state``), as in mamba_ssm:
    ``in_proj.weight`` (2·E·d, d), ``conv1d.weight`` (E·d, 1, d_conv), ``conv1d.bias`` (E·d),
    ``x_proj.weight`` (R + 2N, E·d), ``dt_proj.weight`` (E·d, R), ``dt_proj.bias`` (E·d),
    ``A_log`` (E·d, N), ``D`` (E·d), ``out_proj.weight`` (d, E·d).

    Shapes: ``(batch, time, d_model) -> (batch, time, d_model)``. Causal: output at t depends on
    inputs up to t only.
    """

    def __init__(
        self,
        d_model: int,
        d_state: int = 128,
        d_conv: int = 4,
        expand: int = 2,
        dt_rank: int | str = "auto",
        dt_min: float = 1e-3,
        dt_max: float = 1e-1,
        scan_backend: str = "auto",
    ):
        super().__init__()
        if scan_backend not in BACKENDS:
            raise ValueError(f"Mamba: scan_backend must be one of {BACKENDS}, got {scan_backend!r}")
        if dt_rank != "auto" and not (isinstance(dt_rank, int) and dt_rank > 0):
            raise ValueError(f"Mamba: dt_rank must be 'auto' or a positive int, got {dt_rank!r}")
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"Mamba: need 0 < dt_min <= dt_max, got dt_min={dt_min}, dt_max={dt_max}")
        self.d_model = d_model
        self.d_state = d_state
        self.d_conv = d_conv
        self.expand = expand
        self.d_inner = expand * d_model
        self.dt_rank = math.ceil(d_model / DT_RANK_DIVISOR) if dt_rank == "auto" else dt_rank
        self.scan_backend = scan_backend

        # x (the scanned signal) and z (the gate) in one projection.
        self.in_proj = nn.Linear(d_model, 2 * self.d_inner, bias=False)
        # Padding d_conv - 1 on both sides, then keeping the first T outputs, makes it causal.
        self.conv1d = nn.Conv1d(self.d_inner, self.d_inner, kernel_size=d_conv, groups=self.d_inner, padding=d_conv - 1)
        # Input-dependent step size (low rank), B and C: what makes the scan "selective".
        self.x_proj = nn.Linear(self.d_inner, self.dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.dt_rank, self.d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(self.d_inner, d_state))
        self.D = nn.Parameter(torch.empty(self.d_inner))
        self.out_proj = nn.Linear(self.d_inner, d_model, bias=False)
        self._init_ssm(dt_min, dt_max)

    @torch.no_grad()
    def _init_ssm(self, dt_min: float, dt_max: float) -> None:
        """mamba_ssm's initialisation of the step sizes, A and D."""
        # Keeps the variance of dt_proj's output independent of dt_rank.
        dt_init_std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -dt_init_std, dt_init_std)
        # Initial step sizes log-uniform in [dt_min, dt_max]; the bias is their inverse softplus,
        # because the scan applies softplus(dt + bias).
        log_dt = torch.rand(self.d_inner) * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min)
        dt = torch.exp(log_dt).clamp(min=DT_INIT_FLOOR)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))
        # S4D-real: A = -(1, 2, ..., N) for every channel, stored as log so that A stays negative.
        state_index = torch.arange(1, self.d_state + 1, dtype=torch.float32)
        self.A_log.copy_(torch.log(state_index).expand(self.d_inner, -1))
        self.D.fill_(1.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block.

        Parameters
        ----------
        x : (batch, time, d_model)

        Returns
        -------
        (batch, time, d_model)
        """
        length = x.shape[1]
        xz = self.in_proj(x).transpose(1, 2)  # (batch, 2 * d_inner, time)
        u, z = xz.chunk(2, dim=1)
        u = F.silu(self.conv1d(u)[..., :length])
        x_dbl = self.x_proj(u.transpose(1, 2))  # (batch, time, dt_rank + 2 * d_state)
        dt, B, C = torch.split(x_dbl, [self.dt_rank, self.d_state, self.d_state], dim=-1)
        # The bias is added inside the scan (delta_bias), as mamba_ssm does.
        # dt is a narrow slice of x_dbl: a copy, so that what autograd keeps for dt_proj does not hold all of x_dbl
        delta = F.linear(dt.contiguous(), self.dt_proj.weight).transpose(1, 2)  # (batch, d_inner, time)
        A = -torch.exp(_at_least_float32(self.A_log))
        y = selective_scan(
            u,
            delta,
            A,
            B.transpose(1, 2).contiguous(),
            C.transpose(1, 2).contiguous(),
            D=_at_least_float32(self.D),
            z=z,
            delta_bias=_at_least_float32(self.dt_proj.bias),
            delta_softplus=True,
            backend=self.scan_backend,
        )
        return self.out_proj(y.transpose(1, 2))


class BiMamba(nn.Module):
    """Bidirectional Mamba: a forward and a time-reversed Mamba with separate weights.

    Both outputs are concatenated (2 · d_model features) and projected back to d_model, so every
    output step sees the whole sequence.

    Parameters
    ----------
    d_model : int
        Feature size of input and output.
    **mamba_kwargs
        Passed to both :class:`Mamba` blocks (d_state, d_conv, expand, dt_rank, dt_min, dt_max,
        scan_backend).

    Shapes: ``(batch, time, d_model) -> (batch, time, d_model)``.
    """

    def __init__(self, d_model: int, **mamba_kwargs):
        super().__init__()
        self.forward_mamba = Mamba(d_model, **mamba_kwargs)
        self.backward_mamba = Mamba(d_model, **mamba_kwargs)
        self.proj = nn.Linear(2 * d_model, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)."""
        forwards = self.forward_mamba(x)
        backwards = self.backward_mamba(x.flip(1)).flip(1)
        return self.proj(torch.cat([forwards, backwards], dim=-1))


class ConvBNReLU(nn.Module):
    """Conv1d over time ('same' length) + BatchNorm + ReLU, on time-major tensors.

    Shapes: ``(batch, time, d_model) -> (batch, time, d_model)``.
    """

    def __init__(self, d_model: int, kernel_size: int):
        super().__init__()
        self.conv = nn.Conv1d(d_model, d_model, kernel_size, padding="same")
        self.norm = nn.BatchNorm1d(d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)."""
        return F.relu(self.norm(self.conv(x.transpose(1, 2)))).transpose(1, 2)


#: Rows of the feed-forward's hidden layer the fused path forms at once: about this many elements per chunk.
FEED_FORWARD_CHUNK_ELEMENTS = 2**19


class _FusedFeedForward(torch.autograd.Function):
    """``dropout(silu(x W1^T + b1), p) W2^T + b2`` over ``(rows, d_model)`` in chunks of rows, keeping only ``x``.

    Rows are independent, so the ``(rows, d_ff)`` hidden layer is formed a chunk at a time (about
    :data:`FEED_FORWARD_CHUNK_ELEMENTS` elements) in the forward pass and again in the backward pass: the memory
    of activation checkpointing without its extra forward pass, and never more than two chunks of ``d_ff`` values
    alive. The SiLU and the dropout are one numba pass (:func:`~dmf2mel.models.dropout.silu_dropout_forward`); the
    mask is the one :func:`~dmf2mel.models.dropout.dropout` draws on the whole hidden layer for the same seed,
    regenerated in the backward pass.
    """

    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, p):
        settings = draw_call(p)
        out = x.new_empty(x.shape[0], w2.shape[0])
        with numba_threads():
            for rows in _row_chunks(x.shape[0], w1.shape[0]):
                hidden = torch.addmm(b1, x[rows], w1.t())
                silu_dropout_forward(hidden.numpy(), rows.start * w1.shape[0], *settings)
                torch.addmm(b2, hidden, w2.t(), out=out[rows])
        ctx.save_for_backward(x, w1, b1, w2)
        ctx.settings = settings
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, w1, b1, w2 = ctx.saved_tensors
        grad_out = grad_out.contiguous()
        grad_x = torch.empty_like(x)
        grad_w1, grad_b1, grad_w2 = torch.zeros_like(w1), torch.zeros_like(b1), torch.zeros_like(w2)
        with numba_threads():
            for rows in _row_chunks(x.shape[0], w1.shape[0]):
                hidden = torch.addmm(b1, x[rows], w1.t())
                grad_hidden = grad_out[rows] @ w2
                silu_dropout_backward(hidden.numpy(), grad_hidden.numpy(), rows.start * w1.shape[0], *ctx.settings)
                grad_w2.addmm_(grad_out[rows].t(), hidden)
                grad_w1.addmm_(grad_hidden.t(), x[rows])
                grad_b1 += grad_hidden.sum(0)
                torch.mm(grad_hidden, w1, out=grad_x[rows])
        return grad_x, grad_w1, grad_b1, grad_w2, grad_out.sum(0), None


def _row_chunks(n_rows: int, width: int) -> list[slice]:
    step = max(1, FEED_FORWARD_CHUNK_ELEMENTS // width)
    return [slice(start, min(start + step, n_rows)) for start in range(0, n_rows, step)]


class FeedForward(nn.Module):
    """Pre-LayerNorm feed-forward: LN, d_model → d_ff, SiLU, dropout, d_ff → d_model, dropout.

    Both dropouts take the same probability, as in the official code; ``output_dropout=False`` leaves the second out
    (what this package did before, kept to measure its effect).

    In training on CPU float tensors (with the package's numba kernels on, :mod:`dmf2mel.models.kernels`) the part
    after the LayerNorm runs as one fused, chunked function that keeps no ``(tokens, d_ff)`` activation (see
    :meth:`fused`); elsewhere as torch ops. The maths and the dropout masks are the same.

    Shapes: ``(batch, time, d_model) -> (batch, time, d_model)`` (no residual; the caller adds it).
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float, output_dropout: bool = True):
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.expand = nn.Linear(d_model, d_ff)
        self.dropout = Dropout(dropout)
        self.contract = nn.Linear(d_ff, d_model)
        self.output_dropout = Dropout(dropout) if output_dropout else nn.Identity()

    def fused(self, x: torch.Tensor) -> bool:
        """Whether ``forward(x)`` takes the fused path (training mode, a tensor the numba kernels handle)."""
        return self.training and kernels.handles(x) and self.dropout.p < 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)."""
        normed = self.norm(x)
        if self.fused(x):
            weights = (self.expand.weight, self.expand.bias, self.contract.weight, self.contract.bias)
            flat = _FusedFeedForward.apply(normed.reshape(-1, normed.shape[-1]).contiguous(), *weights, self.dropout.p)
            return self.output_dropout(flat.view(*x.shape[:-1], -1))
        return self.output_dropout(self.contract(self.dropout(F.silu(self.expand(normed)))))


class ConvMamba(nn.Module):
    """DMF2Mel's convMamba block: local convolution, bidirectional Mamba, half-step feed-forwards.

    ``x = ConvBNReLU(x); x = BiMamba(x); x = x + ½·FFN(x); x = x + ConvBNReLU(x); x = x + ½·FFN(x)``

    As in the official code the second convolution and feed-forward are the *same* modules as the
    first (shared weights). The caller (DMF2Mel) adds the block's input to its output on every pass but the last.

    Parameters
    ----------
    d_model : int
        Feature size of input and output.
    d_ff : int, default 2048
        Hidden size of the feed-forward.
    dropout : float, default 0.1
        Dropout inside the feed-forward, after its SiLU and after its output.
    output_dropout : bool, default True
        The feed-forward's second dropout (official); False leaves it out.
    kernel_size : int, default 7
        Kernel of the time convolution.
    use_mamba : bool, default True
        False drops the BiMamba (the ablation "without Mamba"); the rest is unchanged.
    checkpoint_feed_forward : bool, default False
        Recompute each feed-forward in the backward pass instead of keeping its ``(batch, time, d_ff)``
        activations (activation checkpointing, with the dropout masks reproduced from the saved RNG state). The
        results and gradients are the same; at d_ff = 2048 this saves three ``(tokens, 2048)`` float tensors per
        call for one extra pass of the two ``d_model x d_ff`` matrix products. Only while gradients are recorded,
        and only on the torch-op path: the fused feed-forward (:meth:`FeedForward.fused`) keeps no such activation.
    **mamba_kwargs
        Passed to :class:`BiMamba` (d_state, d_conv, expand, dt_rank, scan_backend, ...).

    Shapes: ``(batch, time, d_model) -> (batch, time, d_model)``.
    """

    #: Weight of each feed-forward residual (Macaron-style half steps, as in Conformer).
    FFN_RESIDUAL_WEIGHT = 0.5

    def __init__(
        self,
        d_model: int,
        d_ff: int = 2048,
        dropout: float = 0.1,
        kernel_size: int = 7,
        use_mamba: bool = True,
        checkpoint_feed_forward: bool = False,
        output_dropout: bool = True,
        **mamba_kwargs,
    ):
        super().__init__()
        self.checkpoint_feed_forward = checkpoint_feed_forward
        self.conv = ConvBNReLU(d_model, kernel_size)
        self.bimamba = BiMamba(d_model, **mamba_kwargs) if use_mamba else None
        self.ffn = FeedForward(d_model, d_ff, dropout, output_dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)."""
        x = self.conv(x)
        if self.bimamba is not None:
            x = self.bimamba(x)
        x = x + self.FFN_RESIDUAL_WEIGHT * self._feed_forward(x)
        # (the convolution is not checkpointed: recomputing its BatchNorm would update the running statistics twice)
        x = x + self.conv(x)
        return x + self.FFN_RESIDUAL_WEIGHT * self._feed_forward(x)

    def _feed_forward(self, x: torch.Tensor) -> torch.Tensor:
        # the fused path keeps no (tokens, d_ff) activation: nothing to checkpoint
        if self.checkpoint_feed_forward and torch.is_grad_enabled() and not self.ffn.fused(x):
            return checkpoint(self.ffn, x, use_reentrant=False)
        return self.ffn(x)


__all__ = ["BiMamba", "ConvBNReLU", "ConvMamba", "FeedForward", "Mamba"]
