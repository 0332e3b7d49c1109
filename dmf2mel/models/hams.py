"""HAMS-Net: Hierarchical Attention-guided Multi-Scale network, a U-Net over time with ADAF attention blocks.

Implements DMF2Mel's HAMS-Net and its ADAF block (``book/architecture.md``). Sizes derive from the input length:
the input is padded to a multiple of 8 (three stride-2 stages) and cropped back, so any length works. The official
code hard-codes 640 / 320 / 160 and computes three sigmoid side outputs it never uses; they are left out here.

All maps inside are channel-first, ``(batch, channels, time)``; :class:`HAMSNet`'s ``forward`` is time-major.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

N_STAGES = 3  # stride-2 encoder stages: scales T/2, T/4, T/8
LENGTH_MULTIPLE = 2**N_STAGES
# Position attention is exact (one window) up to this many input samples: the training window length.
DEFAULT_POSITION_WINDOW = 640


class PositionAttention(nn.Module):
    """DANet position attention over time, optionally in non-overlapping windows.

    ``out = x + gamma * V softmax(Q^T K)^T`` with ``gamma`` initialised to zero (the block starts as the identity).
    The ``(time x time)`` map costs O(T^2) memory; with ``window`` set, time is cut into consecutive windows of
    ``window`` steps (the last one shorter) and each attends only within itself. With ``window >= time`` this is
    exactly full attention.

    Shapes: ``(batch, channels, time) -> (batch, channels, time)``.
    """

    def __init__(self, channels: int, window: int | None = None):
        super().__init__()
        self.window = window
        self.query = nn.Conv1d(channels, channels, kernel_size=1)
        self.key = nn.Conv1d(channels, channels, kernel_size=1)
        self.value = nn.Conv1d(channels, channels, kernel_size=1)
        self.gamma = nn.Parameter(torch.zeros(1))

    @staticmethod
    def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(batch, channels, time) x 3 -> (batch, channels, time), full attention within the given span."""
        weights = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (batch, time, time): row = query position
        return v @ weights.transpose(1, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.query(x), self.key(x), self.value(x)
        time = x.shape[-1]
        if self.window is None or self.window >= time:
            attended = self._attend(q, k, v)
        else:
            attended = torch.cat(
                [
                    self._attend(*(t[..., start : start + self.window] for t in (q, k, v)))
                    for start in range(0, time, self.window)
                ],
                dim=-1,
            )
        return x + self.gamma * attended


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


class ADAF(nn.Module):
    """Attention-driven adaptive fusion: position and channel attention on a channel-reduced map.

    ``ReLU( expand( sigmoid(a) * PositionAttention(r) + sigmoid(b) * ChannelSelfAttention(r) ) )``,
    ``r = reduce(x)`` with ``channels // reduction`` channels (at least one), ``a``, ``b`` learned scalars
    (initially 0, an even mix).

    Parameters
    ----------
    channels : int
    reduction : int, default 16
    position_window : int or None
        Window (in time steps of this block's input) of the position attention; ``None`` for full attention.

    Shapes
    ------
    ``(batch, channels, time) -> (batch, channels, time)``.
    """

    def __init__(self, channels: int, reduction: int = 16, position_window: int | None = None):
        super().__init__()
        reduced = max(1, channels // reduction)
        self.reduce = nn.Conv1d(channels, reduced, kernel_size=1)
        self.position_attention = PositionAttention(reduced, position_window)
        self.channel_attention = ChannelSelfAttention()
        self.mix_logits = nn.Parameter(torch.zeros(2))
        self.expand = nn.Conv1d(reduced, channels, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        reduced = self.reduce(x)
        mix = torch.sigmoid(self.mix_logits)
        fused = mix[0] * self.position_attention(reduced) + mix[1] * self.channel_attention(reduced)
        return F.relu(self.expand(fused))


def _upsample(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour doubling along time: (batch, channels, time) -> (batch, channels, 2 * time)."""
    return x.repeat_interleave(2, dim=-1)


class HAMSNet(nn.Module):
    """Multi-scale U-Net over time with ADAF blocks, any length.

    Encoder: ``e1, e2, e3 = `` three stride-2 convolutions (kernel 3, then 2, 2) with ReLU: T/2, T/4, T/8.
    Bottleneck: ``m = maxpool(e1) + maxpool(e2) + e3`` at T/8; ``b = ADAF(ADAF(ADAF(m)))``; ``b = ADAF(b + m)``.
    Decoder (coarse to fine): ``d2 = ADAF(up(b) + e2)``, ``d1 = ADAF(up(d2) + e1)``, ``d0 = ADAF(up(d1) + x)``.
    Top-down pass: ``t = d0 + up(d1 + up(d2))``, a 1x1 output convolution, and the *internal* residual
    ``out = x + conv(t)``. (The assembly's repeat loop adds its own outer residual to the branch input on top.)

    The input is zero-padded on the right to a multiple of 8 and the output cropped back to the input length: the
    result is exactly that of the zero-padded input, cropped (the padded steps take part in the convolutions and the
    attention like any other step).

    Parameters
    ----------
    d_model : int, default 64
    reduction : int, default 16
        Channel reduction inside every ADAF.
    n_bottleneck_adaf : int, default 3
        ADAF blocks in sequence at the bottleneck, before the residual and the last bottleneck ADAF.
    position_window : int or None, default None
        Window of the O(T^2) position attention, in *input* samples (at scale T/2^s each ADAF uses
        ``ceil(position_window / 2^s)`` steps). ``None`` means :data:`DEFAULT_POSITION_WINDOW` = 640: exact full
        attention for the 640-sample training windows, consecutive 640-sample windows for longer inputs (1920-sample
        challenge segments, whole recordings), so memory stays linear in T. For exact full attention at any length
        pass a window at least as long as the input.

    Shapes
    ------
    ``(batch, time, d_model) -> (batch, time, d_model)``, any ``time >= 1``.
    """

    def __init__(
        self, d_model: int = 64, reduction: int = 16, n_bottleneck_adaf: int = 3, position_window: int | None = None
    ):
        super().__init__()
        self.position_window = DEFAULT_POSITION_WINDOW if position_window is None else position_window
        if self.position_window < 1:
            raise ValueError(f"HAMSNet: position_window must be >= 1 sample, got {position_window}")

        def adaf(scale: int) -> ADAF:
            return ADAF(d_model, reduction, math.ceil(self.position_window / scale))

        # the first stage sees one step either side (kernel 3, padding 1); the next two merge adjacent pairs
        self.encoder = nn.ModuleList(
            [
                nn.Conv1d(d_model, d_model, kernel_size=3, stride=2, padding=1),
                nn.Conv1d(d_model, d_model, kernel_size=2, stride=2),
                nn.Conv1d(d_model, d_model, kernel_size=2, stride=2),
            ]
        )
        bottom = LENGTH_MULTIPLE
        self.bottleneck = nn.Sequential(*[adaf(bottom) for _ in range(n_bottleneck_adaf)])
        self.bottleneck_after_residual = adaf(bottom)
        # decoder blocks at T/4, T/2, T: finest last
        self.decoder = nn.ModuleList([adaf(4), adaf(2), adaf(1)])
        self.out_proj = nn.Conv1d(d_model, d_model, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, time, d_model) -> (batch, time, d_model)."""
        time = x.shape[1]
        padded_time = math.ceil(time / LENGTH_MULTIPLE) * LENGTH_MULTIPLE
        h = F.pad(x.transpose(1, 2), (0, padded_time - time))

        skips = []
        current = h
        for conv in self.encoder:
            current = F.relu(conv(current))
            skips.append(current)
        e1, e2, e3 = skips

        bottom_time = e3.shape[-1]
        multiscale = F.adaptive_max_pool1d(e1, bottom_time) + F.adaptive_max_pool1d(e2, bottom_time) + e3
        bottom = self.bottleneck_after_residual(self.bottleneck(multiscale) + multiscale)

        decoded = []
        current = bottom
        for block, skip in zip(self.decoder, (e2, e1, h)):
            current = block(_upsample(current) + skip)
            decoded.append(current)
        d2, d1, d0 = decoded

        top_down = d0 + _upsample(d1 + _upsample(d2))
        out = h + self.out_proj(top_down)
        return out[..., :time].transpose(1, 2)
