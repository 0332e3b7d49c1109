"""HAMS-Net: Hierarchical Attention-guided Multi-Scale network, a U-Net over time with ADAF attention blocks.

Implements DMF2Mel's HAMS-Net and its ADAF block as the official code builds them (``HAMSnet`` and ``ADAF`` in the
authors' ``models/DMF2Mel.py``), with two changes, both listed in the book's comparison page:

* any length: the input is padded to a multiple of 8 (three stride-2 stages) and cropped back, where the official code
  hard-codes 640 / 320 / 160 (it also computes three sigmoid side outputs it never uses, and builds an ADAF
  "feedback" convolution it never calls: both are left out);
* one identity path per repeat: the official module adds its input twice (a full-scale skip and a final residual) and
  its caller adds the branch input a third time, so activations grow about tenfold per repeat at initialisation. Here
  the module returns the U-Net's output *without* a residual, through a 1x1 convolution that starts at zero, and the
  caller adds the branch input once per repeat (see :class:`~dmf2mel.models.dmf2mel.DMF2Mel`).

All maps inside are channel-first, ``(batch, channels, time)``; :class:`HAMSNet`'s ``forward`` is time-major.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from dmf2mel.models import kernels
from dmf2mel.models.attention import attention_with_dropout

N_STAGES = 3  # stride-2 encoder stages: scales T/2, T/4, T/8
LENGTH_MULTIPLE = 2**N_STAGES
# Position attention is exact (one window) up to this many input samples: the training window length.
DEFAULT_POSITION_WINDOW = 640
#: ADAF's channel dropout (the official ``Dropout2d(0.05)`` on a 1 x T map drops whole channels).
ADAF_DROPOUT = 0.05
#: Initial logits of ADAF's two mixing weights: sigmoid(1) = 0.73 each, as the official ``torch.ones(2)``.
ADAF_MIX_INIT = 1.0
#: Scales (as divisors of the padded length) of the decoder's ADAF applications, coarsest first.
DECODER_SCALES = (8, 4, 2, 1)
#: With checkpointing, the decoder's ADAF uses at this scale and finer (T, T/2, T/4) are recomputed in backward.
CHECKPOINT_SCALE = 4


class SeparableConv1d(nn.Module):
    """Depthwise convolution over time followed by a pointwise (1x1) convolution, no biases.

    The official ``DepthWiseConv2d`` on a ``1 x T`` map: its ``k x k`` depthwise kernel sees only its middle row
    (the rows above and below fall on zero padding), so it is a ``k``-tap convolution along time.

    The two are applied as one dense convolution with kernel ``pointwise[o, i] * depthwise[i, j]`` (the same linear
    map): on a CPU one small dense convolution costs less than a grouped one followed by a 1x1 one, whose grouped
    backward pass runs channel by channel. The parameters are the two factors, as in the official module.

    Shapes: ``(batch, in_channels, time) -> (batch, out_channels, time)``.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1):
        super().__init__()
        self.depthwise = nn.Conv1d(
            in_channels, in_channels, kernel_size, padding=kernel_size // 2, groups=in_channels, bias=False
        )
        self.pointwise = nn.Conv1d(in_channels, out_channels, kernel_size=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (out, in, 1) * (1, in, k) -> (out, in, k)
        kernel = self.pointwise.weight * self.depthwise.weight.transpose(0, 1)
        return F.conv1d(x, kernel, padding=self.depthwise.padding)


class PositionAttention(nn.Module):
    """DANet position attention over time, optionally in non-overlapping windows.

    ``out = x + gamma * V softmax(Q^T K)^T`` with ``Q, K, V`` :class:`SeparableConv1d` 1x1 projections and ``gamma``
    initialised to zero (the block starts as the identity). The scores are not scaled (DANet, the official code), so
    they grow with the square of the activations, which nothing in HAMS-Net normalises; with ``qk_norm`` each time
    step's ``Q`` and ``K`` are layer-normalised over the channels and the scores scaled by ``1/sqrt(channels)``
    (QK-norm, as large vision transformers use against the same growth), which bounds them whatever the activations.
    The ``(time x time)`` map costs O(T^2) memory; with ``window`` given, time is cut into consecutive windows of
    ``window`` steps (the last one shorter) and each attends only within itself. With ``window >= time`` this is
    exactly full attention.

    With ``checkpoint_weights``, while gradients are recorded only q, k and v are kept and the ``(time x time)``
    weights are recomputed in the backward pass (the same gradients; the weights are by far the largest activation of
    HAMS-Net at full scale). This matters only on torch ops: the numba row kernels never keep the weights.

    Shapes: ``(batch, channels, time) -> (batch, channels, time)``.
    """

    def __init__(self, channels: int, checkpoint_weights: bool = False, qk_norm: bool = False):
        super().__init__()
        self.checkpoint_weights = checkpoint_weights
        self.query = SeparableConv1d(channels, channels)
        self.key = SeparableConv1d(channels, channels)
        self.value = SeparableConv1d(channels, channels)
        self.gamma = nn.Parameter(torch.zeros(1))
        # QK-norm: each time step's query and key standardised over the channels (with a learned gain and bias), and
        # the scores scaled by 1/sqrt(channels), so that they no longer grow with the square of the activations
        self.query_norm = nn.LayerNorm(channels) if qk_norm else None
        self.key_norm = nn.LayerNorm(channels) if qk_norm else None
        self.scale = channels**-0.5 if qk_norm else 1.0

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(batch, channels, time) x 3 -> (batch, channels, time), full attention within the given span.

        ``weights = softmax(scale * q^T k)`` (row = query position; ``scale`` 1 as in DANet, ``1/sqrt(channels)``
        with QK-norm) applied to ``v``: attention over time with the channels as features, computed by
        :func:`~dmf2mel.models.attention.attention_with_dropout` (without dropout).
        """
        as_rows = [t.transpose(1, 2) for t in (q, k, v)]  # (batch, time, channels)
        return attention_with_dropout(*as_rows, 0.0, scale=self.scale).transpose(1, 2)

    def queries_and_keys(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(q, k)`` as the scores use them, each ``(batch, channels, time)``: layer-normalised over the channels
        with QK-norm, the projections themselves without."""
        q, k = self.query(x), self.key(x)
        if self.query_norm is None:
            return q, k
        return self.query_norm(q.transpose(1, 2)).transpose(1, 2), self.key_norm(k.transpose(1, 2)).transpose(1, 2)

    def forward(self, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
        (q, k), v = self.queries_and_keys(x), self.value(x)
        if self.checkpoint_weights and torch.is_grad_enabled() and not kernels.handles(x):
            attended = checkpoint(self._attend_windows, q, k, v, window, use_reentrant=False)
        else:
            attended = self._attend_windows(q, k, v, window)
        return x + self.gamma * attended

    def _attend_windows(self, q, k, v, window: int | None) -> torch.Tensor:
        time = q.shape[-1]
        if window is None or window >= time:
            return self._attend(q, k, v)
        return torch.cat(
            [self._attend(*(t[..., start : start + window] for t in (q, k, v))) for start in range(0, time, window)],
            dim=-1,
        )


class ChannelSelfAttention(nn.Module):
    """DANet channel attention: ``out = x + gamma * softmax(max(E) - E) x`` with ``E = x x^T``, ``gamma`` zero-init.

    (``max(E) - E`` is DANet's trick: it attends most to the least similar channels, and keeps the softmax stable.)

    Shapes: ``(batch, channels, time) -> (batch, channels, time)``; the map is ``(channels x channels)``.
    """

    def __init__(self):
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        energy = x @ x.transpose(1, 2)
        energy = energy.amax(dim=-1, keepdim=True) - energy
        return x + self.gamma * (torch.softmax(energy, dim=-1) @ x)


def _conv_relu(in_channels: int, out_channels: int, kernel_size: int, dropout: float = 0.0) -> nn.Sequential:
    """``[Dropout1d] -> SeparableConv1d -> ReLU``, the official ADAF's building block."""
    layers = [nn.Dropout1d(dropout)] if dropout else []
    return nn.Sequential(*layers, SeparableConv1d(in_channels, out_channels, kernel_size), nn.ReLU())


class ADAF(nn.Module):
    """Attention-driven adaptive fusion: position and channel attention on two channel-reduced maps.

    Two paths, each ``channels -> channels // reduction`` (at least one) by its own 3-tap separable convolution with
    ReLU, an attention, and a 3-tap refinement with ReLU; weighted by ``sigmoid(a)`` and ``sigmoid(b)`` (``a, b``
    learned, initially 1: 0.73 each); expanded back by a 1x1 convolution with ReLU each; summed; one more 1x1
    convolution with ReLU. Every 1x1 expansion is preceded by channel dropout (``dropout``)::

        p = sigmoid(a) * refine_p(PositionAttention(reduce_p(x)))
        c = sigmoid(b) * refine_c(ChannelSelfAttention(reduce_c(x)))
        out = fuse(expand_p(p) + expand_c(c))

    The output is non-negative (a ReLU) and has no residual: callers add it to their input.

    Parameters
    ----------
    channels : int
    reduction : int, default 16
    dropout : float, default 0.05
    checkpoint_weights : bool, default False
        Recompute the position attention's weights in the backward pass (see :class:`PositionAttention`).
    qk_norm : bool, default False
        QK-norm in the position attention (see :class:`PositionAttention`); off in the official code.

    Shapes
    ------
    ``(batch, channels, time) -> (batch, channels, time)``; ``forward(x, window)`` passes ``window`` (time steps of
    this input, or ``None`` for full attention) to the position attention.
    """

    def __init__(
        self,
        channels: int,
        reduction: int = 16,
        dropout: float = ADAF_DROPOUT,
        checkpoint_weights: bool = False,
        qk_norm: bool = False,
    ):
        super().__init__()
        reduced = max(1, channels // reduction)
        self.reduce_position = _conv_relu(channels, reduced, 3)
        self.reduce_channel = _conv_relu(channels, reduced, 3)
        self.position_attention = PositionAttention(reduced, checkpoint_weights, qk_norm)
        self.channel_attention = ChannelSelfAttention()
        self.refine_position = _conv_relu(reduced, reduced, 3)
        self.refine_channel = _conv_relu(reduced, reduced, 3)
        self.mix_logits = nn.Parameter(torch.full((2,), ADAF_MIX_INIT))
        self.expand_position = _conv_relu(reduced, channels, 1, dropout)
        self.expand_channel = _conv_relu(reduced, channels, 1, dropout)
        self.fuse = _conv_relu(channels, channels, 1, dropout)

    def forward(self, x: torch.Tensor, window: int | None = None) -> torch.Tensor:
        mix = torch.sigmoid(self.mix_logits)
        position = mix[0] * self.refine_position(self.position_attention(self.reduce_position(x), window))
        channel = mix[1] * self.refine_channel(self.channel_attention(self.reduce_channel(x)))
        return self.fuse(self.expand_position(position) + self.expand_channel(channel))


def _upsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """Nearest-neighbour upsampling along time: (batch, channels, time) -> (batch, channels, factor * time)."""
    return x.repeat_interleave(factor, dim=-1)


class HAMSNet(nn.Module):
    """Multi-scale U-Net over time with ADAF blocks, any length; returns the branch update (no residual).

    On the padded, channel-first input ``x`` (``A`` is an ADAF block, ``up_f``/``pool_f`` nearest upsampling and max
    pooling by ``f``)::

        e1, e2, e3 = conv_k3s2(x), conv_k2s2(e1), conv_k2s2(e2)          # T/2, T/4, T/8; no activation
        m = pool_8(x) + pool_4(e1) + pool_2(e2) + e3                      # multi-scale sum at T/8
        b = A(...A(m)) + m                                                 # n_bottleneck_adaf blocks, residual
        c = b + A(b)
        d8, d4, d2, d1 = e3 + c, e2 + up_2(c), e1 + up_4(c), x + up_8(c)  # the bottleneck to every scale, skips
        d_s = d_s + A(d_s)                                                 # at each of the four scales
        t = d1 + up_2(d2 + up_2(d4 + up_2(d8)))                            # top-down pass
        out = out_proj(t)

    ``out_proj`` is a 1x1 convolution initialised to zero, so an untrained HAMS-Net contributes nothing and the
    repeated branch starts as its input (the official code has no projection and returns ``t + x``; see the module
    docstring). With ``share_adaf`` (the official code) one ADAF instance serves all ``n_bottleneck_adaf + 5`` uses.

    The input is zero-padded on the right to a multiple of 8 and the output cropped back to the input length: the
    result is exactly that of the zero-padded input, cropped.

    Parameters
    ----------
    d_model : int, default 64
    reduction : int, default 16
        Channel reduction inside every ADAF.
    n_bottleneck_adaf : int, default 3
        ADAF blocks in sequence at the bottleneck, before its residual.
    position_window : int or None, default None
        Window of the O(T^2) position attention, in *input* samples (at scale T/2^s each ADAF use attends within
        ``ceil(position_window / 2^s)`` steps). ``None`` means :data:`DEFAULT_POSITION_WINDOW` = 640: exact full
        attention for the 640-sample training windows, consecutive 640-sample windows for longer inputs (1920-sample
        challenge segments, whole recordings), so memory stays linear in T. For exact full attention at any length
        pass a window at least as long as the input.
    share_adaf : bool, default True
        One ADAF instance for every use (official); False builds one per use.
    checkpoint_weights : bool, default False
        While gradients are recorded, recompute in the backward pass instead of keeping: the position attentions'
        ``time x time`` weights where they run on torch ops, and the decoder's ADAF uses at the three finest scales (the
        pass's largest activations; :data:`CHECKPOINT_SCALE`). The same results.
    qk_norm : bool, default False
        QK-norm in every ADAF's position attention (:class:`PositionAttention`); off in the official code.

    Shapes
    ------
    ``(batch, time, d_model) -> (batch, time, d_model)``, any ``time >= 1``.
    """

    def __init__(
        self,
        d_model: int = 64,
        reduction: int = 16,
        n_bottleneck_adaf: int = 3,
        position_window: int | None = None,
        share_adaf: bool = True,
        checkpoint_weights: bool = False,
        qk_norm: bool = False,
    ):
        super().__init__()
        self.checkpoint_weights = checkpoint_weights
        self.position_window = DEFAULT_POSITION_WINDOW if position_window is None else position_window
        if self.position_window < 1:
            raise ValueError(f"HAMSNet: position_window must be >= 1 sample, got {position_window}")
        self.n_bottleneck_adaf = n_bottleneck_adaf
        # the first stage sees one step either side (kernel 3, padding 1); the next two merge adjacent pairs
        self.encoder = nn.ModuleList(
            [
                nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1),
                nn.Conv1d(d_model, d_model, kernel_size=2, stride=2),
                nn.Conv1d(d_model, d_model, kernel_size=2, stride=2),
            ]
        )
        # uses in call order: the bottleneck chain, the one after its residual, the decoder's four scales
        n_uses = n_bottleneck_adaf + 1 + len(DECODER_SCALES)
        make = lambda: ADAF(d_model, reduction, checkpoint_weights=checkpoint_weights, qk_norm=qk_norm)  # noqa: E731
        self.adaf = nn.ModuleList([make()] * n_uses if share_adaf else [make() for _ in range(n_uses)])
        self.out_proj = nn.Conv1d(d_model, d_model, kernel_size=1)
        nn.init.zeros_(self.out_proj.weight)
        nn.init.zeros_(self.out_proj.bias)

    def _window(self, scale: int) -> int:
        """Position-attention window (steps) of an ADAF use at ``time / scale``."""
        return math.ceil(self.position_window / scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)."""
        time = x.shape[1]
        padded_time = math.ceil(time / LENGTH_MULTIPLE) * LENGTH_MULTIPLE
        h = F.pad(x.transpose(1, 2), (0, padded_time - time))
        uses = iter(self.adaf)
        bottom = self._window(LENGTH_MULTIPLE)

        e1 = self.encoder[0](h)
        e2 = self.encoder[1](e1)
        e3 = self.encoder[2](e2)
        multiscale = F.max_pool1d(h, 8) + F.max_pool1d(e1, 4) + F.max_pool1d(e2, 2) + e3

        bottleneck = multiscale
        for _ in range(self.n_bottleneck_adaf):
            bottleneck = next(uses)(bottleneck, bottom)
        bottleneck = bottleneck + multiscale
        bottleneck = bottleneck + next(uses)(bottleneck, bottom)

        top_down = None
        for scale, skip in zip(DECODER_SCALES, (e3, e2, e1, h)):
            decoded = skip + _upsample(bottleneck, LENGTH_MULTIPLE // scale)
            adaf = next(uses)
            if scale <= CHECKPOINT_SCALE and self.checkpoint_weights and torch.is_grad_enabled():
                # the finest ADAF uses hold most activations of the pass: recompute them (Dropout1d masks repeat)
                decoded = decoded + checkpoint(adaf, decoded, self._window(scale), use_reentrant=False)
            else:
                decoded = decoded + adaf(decoded, self._window(scale))
            top_down = decoded if top_down is None else decoded + _upsample(top_down, 2)
        return self.out_proj(top_down)[..., :time].transpose(1, 2)
