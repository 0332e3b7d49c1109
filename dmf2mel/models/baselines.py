"""Baselines for EEG → mel reconstruction, with DMF2Mel's call signature.

- ``linear``: :class:`~dmf2mel.models.linear.LinearDecoder`, ridge regression on time-lagged EEG.
- ``cnn``: :class:`CNNBaseline`, the ICASSP-2024 challenge's linear baseline (one Conv1d).
- ``vlaai``: :class:`VLAAI`, Accou et al. (2023), "Decoding of the speech envelope from EEG using
  the VLAAI deep neural network", Scientific Reports 13:812, in PyTorch with ``n_mels`` outputs.

Every model maps ``eeg (batch, time, n_chans)`` (and an ignored ``subject``) to
``(batch, time, n_mels)``, for any length.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dmf2mel.errors import DataError
from dmf2mel.models.linear import LinearDecoder
from dmf2mel.validation import check_eeg

#: Keras' defaults, which the published VLAAI uses: LeakyReLU slope and LayerNormalization epsilon.
KERAS_LEAKY_RELU_SLOPE = 0.3
KERAS_LAYER_NORM_EPS = 1e-3


def lagged_conv1d(x: torch.Tensor, conv: nn.Conv1d) -> torch.Tensor:
    """Apply ``conv`` so that output ``t`` sees inputs ``t .. t + kernel - 1`` (zeros past the end).

    The brain responds after the sound, so the stimulus at ``t`` is decoded from the EEG that follows
    it — the 0–250 ms lags of the linear decoder. ``(batch, channels, time) -> (batch, out, time)``.
    """
    return conv(F.pad(x, (0, conv.kernel_size[0] - 1)))


class CNNBaseline(nn.Module):
    """The ICASSP-2024 auditory-EEG challenge's linear baseline: one Conv1d over the 64 channels.

    ``mel_hat[t] = b + sum_{l < kernel_size} W_l eeg[t + l]`` — a linear backward model with
    ``kernel_size`` lags (16 samples = 250 ms at 64 Hz), trained end to end (with the Pearson loss
    in the challenge) instead of fitted in closed form like ``LinearDecoder``. The output keeps the
    input length: samples past the end are taken as zero.

    Parameters
    ----------
    n_chans : int, default 64
    n_mels : int, default 10
    kernel_size : int, default 16
        Number of EEG lags (samples).

    Shapes: ``eeg (batch, time, n_chans) -> (batch, time, n_mels)``; ``subject`` is ignored.
    """

    def __init__(self, n_chans: int = 64, n_mels: int = 10, kernel_size: int = 16):
        super().__init__()
        self.n_chans, self.n_mels = n_chans, n_mels
        self.conv = nn.Conv1d(n_chans, n_mels, kernel_size)

    def forward(self, eeg: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, time, n_chans) -> (batch, time, n_mels)."""
        check_eeg(eeg, self.n_chans, type(self).__name__)
        return lagged_conv1d(eeg.transpose(1, 2), self.conv).transpose(1, 2)


class ConvNormAct(nn.Module):
    """Conv1d + LayerNorm over channels + LeakyReLU, on ``(batch, channels, time)``, length kept.

    VLAAI's two ways to keep the length: the extractor pads its *output* on the right ("valid"
    convolution, then zeros; ``pad_input=False``), the output-context layer pads its *input* on the
    left (causal; ``pad_input=True``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, pad_input: bool):
        super().__init__()
        self.pad_input = pad_input
        self.conv = nn.Conv1d(in_channels, out_channels, kernel_size)
        self.norm = nn.LayerNorm(out_channels, eps=KERAS_LAYER_NORM_EPS)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, in_channels, time) -> (batch, out_channels, time)."""
        trim = self.conv.kernel_size[0] - 1
        if self.pad_input:  # causal: output t sees inputs t - trim .. t
            x = F.pad(x, (trim, 0))
        y = self.conv(x)
        y = F.leaky_relu(self.norm(y.transpose(1, 2)).transpose(1, 2), KERAS_LEAKY_RELU_SLOPE)
        if not self.pad_input:  # output t sees inputs t .. t + trim; the last ones see zeros
            y = F.pad(y, (0, trim))
        return y


class VLAAI(nn.Module):
    """VLAAI (Accou et al., 2023): stacked convolutional blocks with skip connections to the EEG.

    One *extractor* (5 × [Conv1d, LayerNorm, LeakyReLU], filters 256, 256, 256, 128, 128, kernel 8),
    a per-block linear layer back to ``n_chans`` and one *output context* layer (causal Conv1d
    kernel 32, LayerNorm, LeakyReLU). The extractor and the output context are shared by all
    blocks, as in the published model; each block's input is the EEG plus the previous block's
    output. A final linear layer gives ``n_mels`` outputs (the original predicts one envelope).

    Parameters
    ----------
    n_chans : int, default 64
    n_mels : int, default 10
    n_blocks : int, default 4
    extractor_filters : tuple of int, default (256, 256, 256, 128, 128)
    extractor_kernel_size : int, default 8
    context_kernel_size : int, default 32

    Shapes: ``eeg (batch, time, n_chans) -> (batch, time, n_mels)``; ``subject`` is ignored.
    """

    def __init__(
        self,
        n_chans: int = 64,
        n_mels: int = 10,
        n_blocks: int = 4,
        extractor_filters: tuple[int, ...] = (256, 256, 256, 128, 128),
        extractor_kernel_size: int = 8,
        context_kernel_size: int = 32,
    ):
        super().__init__()
        self.n_chans, self.n_mels = n_chans, n_mels
        self.extractor_kernel_size = extractor_kernel_size
        widths = (n_chans, *extractor_filters)
        self.extractor = nn.Sequential(
            *(
                ConvNormAct(widths[i], widths[i + 1], extractor_kernel_size, pad_input=False)
                for i in range(len(extractor_filters))
            )
        )
        self.block_projections = nn.ModuleList(nn.Linear(widths[-1], n_chans) for _ in range(n_blocks))
        self.output_context = ConvNormAct(n_chans, n_chans, context_kernel_size, pad_input=True)
        self.head = nn.Linear(n_chans, n_mels)

    def forward(self, eeg: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, time, n_chans) -> (batch, time, n_mels)."""
        check_eeg(eeg, self.n_chans, type(self).__name__)
        if eeg.shape[1] < self.extractor_kernel_size:  # the extractor's "valid" convolutions need one full kernel
            raise DataError(
                f"VLAAI: eeg needs at least {self.extractor_kernel_size} time samples, got shape {tuple(eeg.shape)}"
            )
        eeg = eeg.transpose(1, 2)  # (batch, n_chans, time)
        x = torch.zeros_like(eeg)
        for projection in self.block_projections:
            x = self.extractor(eeg + x)
            x = projection(x.transpose(1, 2)).transpose(1, 2)
            x = self.output_context(x)
        return self.head(x.transpose(1, 2))


def __getattr__(name: str) -> Any:
    """``MODELS`` and ``build_model`` moved to :mod:`dmf2mel.models.registry`; the old names still work."""
    if name in ("MODELS", "build_model"):
        from dmf2mel.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# MODELS and build_model are served by __getattr__ above (old names), not exported
__all__ = ["CNNBaseline", "LinearDecoder", "VLAAI", "check_eeg", "lagged_conv1d"]
