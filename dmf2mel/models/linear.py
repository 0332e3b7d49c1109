"""The linear backward model: ridge regression from time-lagged EEG to the mel spectrogram.

The classic stimulus-reconstruction decoder of auditory EEG (Crosse et al., 2016, the mTRF
toolbox; the linear baseline of the ICASSP auditory-EEG challenges). The brain responds *after*
the sound, so the mel frame at time ``t`` is predicted from the EEG samples ``t .. t + L``
(``L`` = 250 ms, 16 samples at 64 Hz)::

    mel_hat[t, m] = b[m] + sum_{l=0..L} sum_c W[l, c, m] * eeg[t + l, c]

Samples past the end of a recording are taken as zero (the EEG is z-scored, so zero is its mean).
The weights come in closed form, ``W = (X'X + alpha I)^-1 X'Y`` on centred data, with ``alpha``
chosen from a grid by the mean Pearson r on the validation recordings.

:class:`LinearDecoder` is also an :class:`torch.nn.Module` whose ``forward(eeg (batch, time, 64),
subject=None) -> (batch, time, 10)`` runs the same weights as a ``Conv1d``, so it plugs into the
evaluation code like every other model.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn

N_CHANS = 64
N_MELS = 10
SFREQ = 64.0
MAX_LAG_S = 0.25
# Ridge strengths relative to the mean eigenvalue of X'X (trace / dimension): scale-free.
ALPHA_GRID = tuple(10.0 ** np.arange(-4, 3.5, 0.5))
_ROWS_PER_CHUNK = 8192  # lag matrices are built this many samples at a time to bound memory


def lag_matrix(eeg: np.ndarray, n_lags: int) -> np.ndarray:
    """Time-lagged copies of ``eeg`` side by side.

    Parameters
    ----------
    eeg : (time, channels) array
    n_lags : int
        Number of lags ``0 .. n_lags - 1`` (in samples, into the future).

    Returns
    -------
    (time, n_lags * channels) array, column ``l * channels + c`` holding ``eeg[t + l, c]`` (zero past
    the end).
    """
    n_times, n_chans = eeg.shape
    padded = np.concatenate([eeg, np.zeros((n_lags - 1, n_chans), dtype=eeg.dtype)])
    windows = sliding_window_view(padded, n_lags, axis=0)  # (time, channels, n_lags), a view
    return windows.transpose(0, 2, 1).reshape(n_times, n_lags * n_chans)


def _pearson(prediction: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Pearson r per column of two (time, k) arrays."""
    p = prediction - prediction.mean(axis=0)
    t = target - target.mean(axis=0)
    return (p * t).sum(axis=0) / (np.sqrt((p * p).sum(axis=0) * (t * t).sum(axis=0)) + 1e-12)


def mean_pearson(predict, pairs) -> float:
    """Pearson r of ``predict(eeg)`` with the target, per band over each whole recording, averaged over bands and
    recordings of ``pairs`` (``(eeg, mel)`` tuples): the score :meth:`LinearDecoder.fit` picks its alpha by."""
    return float(np.mean([_pearson(predict(eeg), np.asarray(mel)).mean() for eeg, mel in pairs]))


class RidgeFit(NamedTuple):
    """One closed-form solution of :meth:`LinearDecoder.path`; calling it predicts ``(time, n_mels)``."""

    decoder: "LinearDecoder"
    weights: np.ndarray
    bias: np.ndarray

    def __call__(self, eeg: np.ndarray) -> np.ndarray:
        return self.decoder._predict_with(eeg, self.weights, self.bias)


def ridge_path(xx: np.ndarray, xy: np.ndarray, alphas: Sequence[float]):
    """Closed-form ridge solutions ``W = (X'X + alpha * s * I)^-1 X'Y`` for every ``alpha``.

    ``alpha`` is *relative*: it multiplies ``s = trace(X'X) / dim``, the mean eigenvalue of ``X'X`` (the
    mean variance of a column times the number of samples), so the same grid suits any data scale,
    number of samples and number of lags. One eigendecomposition of ``X'X`` serves the whole grid.

    Parameters
    ----------
    xx : (dim, dim) array
        ``X'X`` of the (centred) design matrix.
    xy : (dim, n_outputs) array
        ``X'Y``.
    alphas : sequence of float
        Relative ridge strengths.

    Yields
    ------
    (alpha, weights) with weights (dim, n_outputs), in the order of ``alphas``.
    """
    scale = np.trace(xx) / len(xx)
    eigval, eigvec = np.linalg.eigh(xx)
    projected = eigvec.T @ xy
    for alpha in alphas:
        yield alpha, eigvec @ (projected / (eigval + alpha * scale)[:, None])


class LinearDecoder(nn.Module):
    """Ridge regression from lagged EEG to the mel spectrogram (backward model).

    Parameters
    ----------
    n_chans : int, default 64
        EEG channels.
    n_mels : int, default 10
        Mel bands predicted.
    sfreq : float, default 64
        Sampling rate in Hz of EEG and mel.
    max_lag_s : float, default 0.25
        The EEG from ``t`` to ``t + max_lag_s`` predicts the mel frame at ``t``.
    alphas : sequence of float
        Candidate ridge strengths, relative to the mean eigenvalue of ``X'X``.

    Attributes
    ----------
    alpha_ : float
        The relative ridge strength picked on validation data (after :meth:`fit`).
    val_r_ : dict
        Mean validation Pearson r per candidate alpha.
    conv : torch.nn.Conv1d
        The fitted weights as a convolution over time (``kernel_size = n_lags``).

    Shapes: ``predict``: (time, n_chans) -> (time, n_mels); ``forward``: (batch, time, n_chans) ->
    (batch, time, n_mels).
    """

    def __init__(
        self,
        n_chans: int = N_CHANS,
        n_mels: int = N_MELS,
        sfreq: float = SFREQ,
        max_lag_s: float = MAX_LAG_S,
        alphas: Sequence[float] = ALPHA_GRID,
    ):
        super().__init__()
        self.n_chans = n_chans
        self.n_mels = n_mels
        self.sfreq = sfreq
        self.n_lags = int(round(max_lag_s * sfreq)) + 1
        self.alphas = tuple(alphas)
        self.conv = nn.Conv1d(n_chans, n_mels, kernel_size=self.n_lags)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.alpha_: float | None = None
        self.val_r_: dict[float, float] = {}

    # ---- fitting (numpy, float64) -------------------------------------------------------------

    def _check(self, eeg: np.ndarray, name: str = "eeg") -> np.ndarray:
        eeg = np.asarray(eeg)
        if eeg.ndim != 2 or eeg.shape[1] != self.n_chans:
            raise ValueError(f"{name} must have shape (time, {self.n_chans}), got {eeg.shape}")
        return eeg

    def _moments(self, pairs):
        """Sums over all pairs: n, sum x, sum y, X'X, X'Y (lagged EEG x, target y), chunked in time."""
        dim = self.n_lags * self.n_chans
        n, sx, sy = 0, np.zeros(dim), np.zeros(self.n_mels)
        xx, xy = np.zeros((dim, dim)), np.zeros((dim, self.n_mels))
        for eeg, mel in pairs:
            eeg = self._check(eeg)
            lagged = lag_matrix(eeg.astype(np.float64), self.n_lags)
            mel = np.asarray(mel, dtype=np.float64).reshape(len(eeg), self.n_mels)
            for start in range(0, len(eeg), _ROWS_PER_CHUNK):
                x = np.ascontiguousarray(lagged[start : start + _ROWS_PER_CHUNK])
                y = mel[start : start + _ROWS_PER_CHUNK]
                n += len(x)
                sx += x.sum(axis=0)
                sy += y.sum(axis=0)
                xx += x.T @ x
                xy += x.T @ y
        return n, sx, sy, xx, xy

    def path(self, train_pairs, alphas: Sequence[float] | None = None):
        """The closed-form fit on ``train_pairs`` at every ridge strength of ``alphas`` (default: the grid).

        Yields
        ------
        (alpha, predict) with ``predict(eeg (time, n_chans)) -> (time, n_mels)`` the fit at that strength (float64).
        The module's own weights do not change: :meth:`fit` keeps the one validation picks.
        """
        n, sx, sy, xx, xy = self._moments(train_pairs)
        if n == 0:
            raise ValueError("fit needs at least one (eeg, mel) training pair")
        mean_x, mean_y = sx / n, sy / n
        cxx = xx - n * np.outer(mean_x, mean_x)  # centred moments: the intercept is not penalised
        cxy = xy - n * np.outer(mean_x, mean_y)
        for alpha, weights in ridge_path(cxx, cxy, self.alphas if alphas is None else alphas):
            bias = mean_y - mean_x @ weights
            yield alpha, RidgeFit(self, weights, bias)

    def fit(self, train_pairs, val_pairs=None) -> "LinearDecoder":
        """Fit on ``train_pairs`` and pick the ridge strength on ``val_pairs``.

        Parameters
        ----------
        train_pairs, val_pairs : list of (eeg (time, n_chans), mel (time, n_mels)) tuples
            Without ``val_pairs`` the middle of the alpha grid is used.

        Returns
        -------
        self
        """
        alphas = self.alphas if val_pairs else (self.alphas[len(self.alphas) // 2],)
        best = None
        self.val_r_ = {}
        for alpha, fitted in self.path(train_pairs, alphas):
            score = mean_pearson(fitted, val_pairs) if val_pairs else 0.0
            if val_pairs:
                self.val_r_[alpha] = score
            if best is None or score > best[0]:
                best = (score, alpha, fitted)
        _, self.alpha_, fitted = best
        self._set_weights(fitted.weights, fitted.bias)
        return self

    def _predict_with(self, eeg: np.ndarray, weights: np.ndarray, bias: np.ndarray) -> np.ndarray:
        lagged = lag_matrix(self._check(eeg).astype(np.float64), self.n_lags)
        return lagged @ weights + bias

    def _set_weights(self, weights: np.ndarray, bias: np.ndarray) -> None:
        # weights rows are ordered (lag, channel); Conv1d wants (n_mels, channels, lag).
        kernel = weights.reshape(self.n_lags, self.n_chans, self.n_mels).transpose(2, 1, 0)
        with torch.no_grad():
            self.conv.weight.copy_(torch.from_numpy(np.ascontiguousarray(kernel)))
            self.conv.bias.copy_(torch.from_numpy(bias))

    @property
    def weights(self) -> np.ndarray:
        """The fitted weights as (n_lags, n_chans, n_mels) float64: ``W[l, c, m]``."""
        return self.conv.weight.detach().double().numpy().transpose(2, 1, 0).copy()

    def predict(self, eeg: np.ndarray) -> np.ndarray:
        """Reconstruct the mel spectrogram: (time, n_chans) -> (time, n_mels) float32."""
        weights = self.weights.reshape(self.n_lags * self.n_chans, self.n_mels)
        bias = self.conv.bias.detach().double().numpy()
        return self._predict_with(eeg, weights, bias).astype(np.float32)

    def score(self, pairs) -> float:
        """Mean over pairs and bands of the Pearson r between prediction and target."""
        return float(np.mean([_pearson(self.predict(eeg), np.asarray(mel)).mean() for eeg, mel in pairs]))

    # ---- the torch interface shared with the other models ----------------------------------------

    def forward(self, eeg: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, time, n_chans) -> (batch, time, n_mels); ``subject`` is ignored (one model for all)."""
        if eeg.ndim != 3 or eeg.shape[-1] != self.n_chans:
            raise ValueError(f"eeg must have shape (batch, time, {self.n_chans}), got {tuple(eeg.shape)}")
        x = eeg.transpose(1, 2).to(self.conv.weight.dtype)
        x = F.pad(x, (0, self.n_lags - 1))  # the last frames see zeros past the end, as in predict
        return self.conv(x).transpose(1, 2)
