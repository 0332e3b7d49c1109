"""The dilated-convolution match-mismatch baseline (Accou et al., 2021), the ICASSP challenges' task-1 baseline.

Given an EEG segment and ``K`` candidate stimulus segments (one heard, the others not), the model scores each
candidate; a softmax over the scores gives the probability that it is the heard one.

- EEG path: a 1x1 "spatial" convolution (``n_chans -> spatial_filters``), then ``layers`` dilated convolutions
  (kernel ``kernel_size``, dilation ``kernel_size ** i``, ReLU), no padding;
- stimulus path: the same stack of dilated convolutions, its weights shared by all candidates;
- comparison: the cosine similarity over time between every EEG filter and every stimulus filter, a
  ``(dilation_filters, dilation_filters)`` matrix per candidate, read by one linear layer into one score.

The scores do not depend on the segment length, so a model trained on 5 s segments scores 3 s or 10 s ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dmf2mel.validation import check_eeg


def _dilated_stack(n_in: int, n_filters: int, layers: int, kernel_size: int) -> nn.ModuleList:
    return nn.ModuleList(
        nn.Conv1d(n_in if i == 0 else n_filters, n_filters, kernel_size, dilation=kernel_size**i) for i in range(layers)
    )


class DilatedConvMatchMismatch(nn.Module):
    """Dilated convolutional match-mismatch model.

    Parameters
    ----------
    n_chans : int, default 64
        EEG channels.
    n_features : int, default 10
        Stimulus features per time step (10 mel bands, or 1 for the envelope).
    layers : int, default 3
        Dilated convolutions per path.
    kernel_size : int, default 3
        Their kernel size; layer ``i`` has dilation ``kernel_size ** i``.
    spatial_filters : int, default 8
        Outputs of the EEG's 1x1 convolution.
    dilation_filters : int, default 16
        Filters of every dilated convolution.

    Shapes: ``forward(eeg (batch, time, n_chans), candidates (batch, K, time, n_features)) -> (batch, K)`` logits;
    the segment needs more than ``receptive_field`` samples.
    """

    def __init__(
        self,
        n_chans: int = 64,
        n_features: int = 10,
        layers: int = 3,
        kernel_size: int = 3,
        spatial_filters: int = 8,
        dilation_filters: int = 16,
    ):
        super().__init__()
        self.n_chans, self.n_features = n_chans, n_features
        self.spatial = nn.Conv1d(n_chans, spatial_filters, 1)
        self.eeg_layers = _dilated_stack(spatial_filters, dilation_filters, layers, kernel_size)
        self.stimulus_layers = _dilated_stack(n_features, dilation_filters, layers, kernel_size)
        self.score = nn.Linear(dilation_filters * dilation_filters, 1)
        self.receptive_field = 1 + sum((kernel_size - 1) * kernel_size**i for i in range(layers))

    @staticmethod
    def _encode(x: torch.Tensor, layers: nn.ModuleList) -> torch.Tensor:
        for layer in layers:
            x = F.relu(layer(x))
        return F.normalize(x, dim=-1)  # unit norm over time: dot products become cosine similarities

    def forward(self, eeg: torch.Tensor, candidates: torch.Tensor) -> torch.Tensor:
        """(batch, time, n_chans), (batch, K, time, n_features) -> (batch, K) logits."""
        check_eeg(eeg, self.n_chans, type(self).__name__)
        batch, n_candidates, n_times, n_features = candidates.shape
        if n_features != self.n_features or n_times != eeg.shape[1] or len(candidates) != len(eeg):
            raise ValueError(
                f"candidates must have shape ({len(eeg)}, K, {eeg.shape[1]}, {self.n_features}) to match the EEG, "
                f"got {tuple(candidates.shape)}"
            )
        if n_times <= self.receptive_field:
            raise ValueError(f"segments need more than {self.receptive_field} samples, got {n_times}")
        eeg_code = self._encode(self.spatial(eeg.transpose(1, 2)), self.eeg_layers)  # (batch, filters, time')
        stimuli = candidates.reshape(batch * n_candidates, n_times, n_features).transpose(1, 2)
        stimulus_code = self._encode(stimuli, self.stimulus_layers).reshape(batch, n_candidates, -1, eeg_code.shape[-1])
        similarity = torch.einsum("bft,bkgt->bkfg", eeg_code, stimulus_code)  # (batch, K, filters, filters)
        return self.score(similarity.flatten(2)).squeeze(-1)
