"""DC-FAM: Dynamic Contrastive Feature Aggregation Module (foreground / background separation).

Implements DMF2Mel's DC-FAM (``book/architecture.md``). A local convolutional view ("foreground": speech-related
features) and a global channel-attention view ("background": noise) each predict, per time step and head, weights
over a small neighbourhood of the values in time; both weightings are applied to the values and added.

Channels are the ``d_model`` features and the neighbourhood runs along time, so any length works. (The official code
treats the 640 time steps as channels and the 64 features as an image, which ties it to exactly 640 samples; and it
does not normalise the neighbourhood weights — ``normalise_weights=False`` reproduces that.)

All maps inside are channel-first, ``(batch, channels, time)``; the public ``forward`` is time-major.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmf2mel.models.dropout import Dropout
from dmf2mel.validation import check_divides

# The dynamic feature adjustment starts by damping its branch to a tenth, so both branches begin as small corrections.
ADJUSTMENT_SCALE_INIT = 0.1
QKV_DEPTHWISE_TAPS = 3  # as Restormer: each of q, k, v sees one step either side before the branches


class DynamicFeatureAdjustment(nn.Module):
    """LayerNorm over channels times a learnable per-channel scale (initialised to 0.1).

    Shapes: ``(batch, channels, time) -> (batch, channels, time)``.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = nn.LayerNorm(channels)
        self.scale = nn.Parameter(torch.full((channels,), ADJUSTMENT_SCALE_INIT))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x.transpose(1, 2)).transpose(1, 2) * self.scale[:, None]


class LocalMixer(nn.Module):
    """Light convolutional mixer of q, k and v (a 1-D version of ACmix's convolution path).

    For each channel of a head, a 1x1 "fully connected" layer mixes the ``3 * n_heads`` maps (q, k, v of every head)
    into ``kernel_size`` maps; a grouped convolution over time (one group per head channel) turns those into the
    ``d_model`` output channels.

    Shapes: q, k, v ``(batch, d_model, time)`` each -> ``(batch, d_model, time)``.
    """

    def __init__(self, d_model: int, n_heads: int, kernel_size: int):
        super().__init__()
        self.n_heads, self.head_size = n_heads, d_model // n_heads
        self.kernel_size = kernel_size
        self.mix_heads = nn.Conv2d(3 * n_heads, kernel_size, kernel_size=1)
        self.shift_conv = nn.Conv1d(
            kernel_size * self.head_size, d_model, kernel_size, padding=kernel_size // 2, groups=self.head_size
        )

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        batch, _, time = q.shape
        maps = torch.cat([t.view(batch, self.n_heads, self.head_size, time) for t in (q, k, v)], dim=1)
        mixed = self.mix_heads(maps)  # (batch, kernel_size, head_size, time)
        grouped = mixed.transpose(1, 2).reshape(batch, self.head_size * self.kernel_size, time)
        return self.shift_conv(grouped)


class ChannelAttention(nn.Module):
    """Restormer-style transposed attention: a ``(head_size x head_size)`` map per head, cost linear in time.

    q and k are L2-normalised along time; ``softmax(temperature * q k^T)`` mixes the channels of v; then a 1x1
    projection without bias.

    Shapes: q, k, v ``(batch, d_model, time)`` -> ``(batch, d_model, time)``; the attention map is
    ``(batch, n_heads, head_size, head_size)``, independent of time.
    """

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads, self.head_size = n_heads, d_model // n_heads
        self.temperature = nn.Parameter(torch.ones(n_heads, 1, 1))
        self.proj = nn.Conv1d(d_model, d_model, kernel_size=1, bias=False)  # no bias, as the official project_out

    def attention_map(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """(batch, d_model, time) x 2 -> (batch, n_heads, head_size, head_size)."""
        q, k = (F.normalize(self._heads(t), dim=-1) for t in (q, k))
        return torch.softmax(q @ k.transpose(-2, -1) * self.temperature, dim=-1)

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        attended = self.attention_map(q, k) @ self._heads(v)
        return self.proj(attended.flatten(1, 2))

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, _, time = x.shape
        return x.view(batch, self.n_heads, self.head_size, time)


class DCFAM(nn.Module):
    """Dynamic Contrastive Feature Aggregation Module over time, any length.

    1. ``q, k, v = depthwise_conv3(pointwise_conv(x))`` (d -> 3d).
    2. Foreground (local) branch: :class:`LocalMixer` of q, k, v, then :class:`DynamicFeatureAdjustment`.
    3. Background (global) branch: :class:`ChannelAttention`, then :class:`DynamicFeatureAdjustment`.
    4. Contrast-driven aggregation: the values are a linear projection of the foreground features (the official
       ``self.v(out_conv)``). From each branch a 1x1 conv predicts, per time step and head, weights over the
       ``kernel_size`` neighbouring time steps of the values (zero-padded at the ends), softmax-normalised over the
       neighbourhood, with dropout ``attn_dropout`` on the weights in training; both weighted sums are added.
    5. Output = aggregation + foreground, no residual: the caller adds the branch input.

    Parameters
    ----------
    d_model : int, default 64
    n_heads : int, default 8
        Heads of the channel attention and of the aggregation weights (the official DC-FAM has 8); must divide
        ``d_model``.
    kernel_size : int, default 3
        Odd neighbourhood size in time steps.
    normalise_weights : bool, default True
        Softmax over the neighbourhood. ``False`` reproduces the official code, which applies the raw predictions.
    attn_dropout : float, default 0.1
        Dropout on the neighbourhood weights (official).

    Shapes
    ------
    ``(batch, time, d_model) -> (batch, time, d_model)``, any ``time >= 1``.
    """

    def __init__(
        self,
        d_model: int = 64,
        n_heads: int = 8,
        kernel_size: int = 3,
        normalise_weights: bool = True,
        attn_dropout: float = 0.1,
    ):
        super().__init__()
        check_divides("n_heads", n_heads, "d_model", d_model, "DCFAM")
        if kernel_size % 2 == 0:
            raise ValueError(f"DCFAM: kernel_size must be odd, got {kernel_size}")
        self.d_model, self.n_heads, self.head_size = d_model, n_heads, d_model // n_heads
        self.kernel_size, self.normalise_weights = kernel_size, normalise_weights
        self.to_qkv = nn.Conv1d(d_model, 3 * d_model, kernel_size=1, bias=False)
        self.qkv_depthwise = nn.Conv1d(
            3 * d_model,
            3 * d_model,
            QKV_DEPTHWISE_TAPS,
            padding=QKV_DEPTHWISE_TAPS // 2,
            groups=3 * d_model,
            bias=False,
        )
        self.local_mixer = LocalMixer(d_model, n_heads, kernel_size)
        self.foreground_adjust = DynamicFeatureAdjustment(d_model)
        self.channel_attention = ChannelAttention(d_model, n_heads)
        self.background_adjust = DynamicFeatureAdjustment(d_model)
        self.foreground_weights = nn.Conv1d(d_model, n_heads * kernel_size, kernel_size=1)
        self.background_weights = nn.Conv1d(d_model, n_heads * kernel_size, kernel_size=1)
        self.value_proj = nn.Conv1d(d_model, d_model, kernel_size=1)
        self.weight_dropout = Dropout(attn_dropout)

    def neighbourhood_weights(self, predictor: nn.Conv1d, features: torch.Tensor) -> torch.Tensor:
        """(batch, d_model, time) -> (batch, n_heads, kernel_size, time) weights over each step's neighbourhood."""
        batch, _, time = features.shape
        logits = predictor(features).view(batch, self.n_heads, self.kernel_size, time)
        return torch.softmax(logits, dim=2) if self.normalise_weights else logits

    def _neighbourhoods(self, v: torch.Tensor) -> torch.Tensor:
        """(batch, d_model, time) -> (batch, n_heads, head_size, kernel_size, time), zero-padded at the ends."""
        batch, _, time = v.shape
        padded = F.pad(v, (self.kernel_size // 2, self.kernel_size // 2))
        windows = padded.unfold(-1, self.kernel_size, 1)  # (batch, d_model, time, kernel_size)
        return windows.view(batch, self.n_heads, self.head_size, time, self.kernel_size).transpose(-2, -1)

    def forward(self, x: torch.Tensor, return_weights: bool = False):
        """(batch, time, d_model) -> (batch, time, d_model).

        With ``return_weights=True`` also returns a dict of the ``"foreground"`` and ``"background"`` neighbourhood
        weights ``(batch, n_heads, kernel_size, time)`` and the ``"channel"`` attention map
        ``(batch, n_heads, head_size, head_size)``.
        """
        # the 1x1 projection then the depthwise taps, as one dense convolution: kernel[o, i, j] = to_qkv[o, i] * taps[o, j]
        kernel = self.to_qkv.weight * self.qkv_depthwise.weight
        q, k, v = F.conv1d(x.transpose(1, 2), kernel, padding=QKV_DEPTHWISE_TAPS // 2).chunk(3, dim=1)
        foreground = self.foreground_adjust(self.local_mixer(q, k, v))
        background = self.background_adjust(self.channel_attention(q, k, v))
        weights_fg = self.neighbourhood_weights(self.foreground_weights, foreground)
        weights_bg = self.neighbourhood_weights(self.background_weights, background)
        # both weightings share the values, so sum them first: one pass over the unfolded values
        combined = (self.weight_dropout(weights_fg) + self.weight_dropout(weights_bg)).unsqueeze(2)  # (b, h, 1, k, t)
        values = self.value_proj(foreground)
        aggregated = (self._neighbourhoods(values) * combined).sum(dim=3).flatten(1, 2)
        out = (aggregated + foreground).transpose(1, 2)
        if not return_weights:
            return out
        channel = self.channel_attention.attention_map(q, k)
        return out, {"foreground": weights_fg, "background": weights_bg, "channel": channel}
