"""Multichannel Wiener filter (MWF) eye-artifact removal (Somers, Francart & Bertrand, 2018).

The SparrKULee preprocessing removes blinks with the MWF of Somers et al. (J. Neural Eng. 15,
036007). The idea: the EEG ``y(t)`` is the brain signal ``n(t)`` plus an artifact ``d(t)``. If we
know *when* artifacts happen, the covariance of the samples inside artifact segments, ``R_yy``,
and outside them, ``R_nn``, give the artifact covariance ``R_dd = R_yy - R_nn``, and the linear
minimum-mean-square-error estimate of the artifact is

    d_hat(t) = W^T y(t),    W = R_yy^{-1} R_dd = R_yy^{-1} (R_yy - R_nn).

``W`` is computed through the generalised eigenvalue decomposition (GEVD) of the pair
``(R_yy, R_nn)``: with ``V^T R_nn V = I`` and ``V^T R_yy V = diag(lambda)``,

    W = V diag(1 - 1 / lambda) V^{-1},     V^{-1} = V^T R_nn,

where only the generalised eigenvalues ``lambda > 1`` (directions where the artifact segments
carry more power than clean EEG) are kept: that is the low-rank approximation of ``R_dd`` that
makes the filter robust. The clean EEG is ``y(t) - d_hat(t)``.

**Time lags.** Each channel is stacked with copies of itself delayed by ``-delay .. +delay``
samples (zeros past the ends), so the filter is a short spatio-temporal FIR filter rather than a
purely spatial one; the SparrKULee pipeline uses ``delay=3`` at 1024 Hz. The stacked signal has
``channels * (2 * delay + 1)`` rows; it is never built whole here — covariances and the filter
output are accumulated over blocks of time, so memory stays at the size of the recording.

**Where the artifacts are.** :func:`artifact_mask` marks samples whose summed power over the
frontal channels exceeds 5 times its mean, widened by half a second on each side, as the
SparrKULee pipeline does.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

from dmf2mel.errors import DataError

#: Indices of the frontal channels (Fp1, AF7, AF3, Fpz, Fp2, AF8, AF4, AFz) in BioSemi-64 order.
BIOSEMI_FRONTAL = (0, 1, 2, 32, 33, 34, 35, 36)
#: Lags on each side, in samples (at 1024 Hz as in SparrKULee).
DELAY = 3
#: A sample is an artifact when the frontal power exceeds this many times its mean.
POWER_THRESHOLD = 5.0
#: Artifact detections are widened by this many seconds on each side.
PAD_S = 0.5
#: Relative ridge added to both covariances (see :func:`fit_mwf`).
RIDGE = 1e-9
#: Samples per block when accumulating covariances and applying the filter.
BLOCK = 16384


class MwfFilter(NamedTuple):
    """A fitted MWF: ``weights`` (channels * (2 * delay + 1), channels) and its ``delay``; ``rank``
    is the number of generalised eigenvalues kept (0: nothing to remove)."""

    weights: np.ndarray
    delay: int
    rank: int


def artifact_mask(
    data: np.ndarray,
    sfreq: float,
    reference_channels=BIOSEMI_FRONTAL,
    threshold: float = POWER_THRESHOLD,
    pad_s: float = PAD_S,
) -> np.ndarray:
    """Samples inside an eye artifact, (time,) bool, from the power of the frontal channels.

    ``data`` is (channels, time).
    """
    power = np.sum(np.asarray(data)[list(reference_channels)] ** 2, axis=0)
    mask = power > threshold * power.mean()
    pad = int(round(pad_s * sfreq))
    if pad and mask.any():
        # widen every detection by ``pad`` samples on both sides (a running maximum)
        counts = np.convolve(mask.astype(np.int32), np.ones(2 * pad + 1, dtype=np.int32), mode="same")
        mask = counts > 0
    return mask


def _stacked(data: np.ndarray, start: int, stop: int, delay: int) -> np.ndarray:
    """Rows ``[y(t - tau) for tau in -delay..delay]`` for t in [start, stop), zeros outside the recording."""
    n_chans, n_times = data.shape
    block = np.zeros(((2 * delay + 1) * n_chans, stop - start))
    for k, tau in enumerate(range(-delay, delay + 1)):
        lo, hi = max(start - tau, 0), min(stop - tau, n_times)
        if lo < hi:
            block[k * n_chans : (k + 1) * n_chans, lo + tau - start : hi + tau - start] = data[:, lo:hi]
    return block


def _covariances(data: np.ndarray, mask: np.ndarray, delay: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample covariances of the stacked signal inside (``R_yy``) and outside (``R_nn``) the mask."""
    size = (2 * delay + 1) * data.shape[0]
    sums = {True: np.zeros(size), False: np.zeros(size)}
    products = {True: np.zeros((size, size)), False: np.zeros((size, size))}
    for start in range(0, data.shape[1], BLOCK):
        stop = min(start + BLOCK, data.shape[1])
        block = _stacked(data, start, stop, delay)
        for inside in (True, False):
            part = block[:, mask[start:stop] == inside]
            sums[inside] += part.sum(axis=1)
            products[inside] += part @ part.T
    covariances = []
    for inside in (True, False):
        n = int(np.sum(mask == inside))
        mean = sums[inside] / n
        cov = (products[inside] - n * np.outer(mean, mean)) / (n - 1)
        covariances.append((cov + cov.T) / 2)
    return covariances[0], covariances[1]


def fit_mwf(data: np.ndarray, mask: np.ndarray, delay: int = DELAY) -> MwfFilter:
    """Fit the MWF of ``data`` (channels, time) given the artifact ``mask`` (time,).

    Raises :class:`DataError` when either class has too few samples for a covariance of the
    stacked signal (it needs more samples than ``channels * (2 * delay + 1)``).
    """
    data = np.asarray(data, dtype=np.float64)
    n_chans = data.shape[0]
    size = (2 * delay + 1) * n_chans
    n_artifact = int(mask.sum())
    if n_artifact <= size or data.shape[1] - n_artifact <= size:
        raise DataError(
            f"MWF: {n_artifact} artifact and {data.shape[1] - n_artifact} clean samples; each needs more than {size} "
            f"({n_chans} channels x {2 * delay + 1} lags)"
        )
    r_yy, r_nn = _covariances(data - data.mean(axis=1, keepdims=True), mask, delay)
    # The same tiny ridge on both: directions in which neither class has power (e.g. a dead channel
    # or a rank lost to referencing) get lambda = 1 and so no weight, instead of a singular R_nn.
    ridge = RIDGE * np.trace(r_nn) / size * np.eye(size)
    r_yy, r_nn = r_yy + ridge, r_nn + ridge
    try:
        eigenvalues, vectors = scipy.linalg.eigh(r_yy, r_nn)  # V^T R_nn V = I, V^T R_yy V = diag(lambda)
    except np.linalg.LinAlgError as err:
        raise DataError(f"MWF: the clean-EEG covariance is singular (a flat or duplicated channel?): {err}") from None
    gain = np.where(eigenvalues > 1.0, 1.0 - 1.0 / eigenvalues, 0.0)
    weights = (vectors * gain) @ (vectors.T @ r_nn)  # V diag(gain) V^{-1}
    # Only the artifact at lag 0 is subtracted: keep the columns that estimate it.
    centre = slice(delay * n_chans, (delay + 1) * n_chans)
    return MwfFilter(weights[:, centre], delay, int(np.sum(eigenvalues > 1.0)))


def artifact_estimate(data: np.ndarray, mwf: MwfFilter) -> np.ndarray:
    """The artifact ``d_hat = W^T y`` (channels, time) that ``mwf`` finds in ``data`` (channels, time)."""
    data = np.asarray(data, dtype=np.float64)
    centred = data - data.mean(axis=1, keepdims=True)
    out = np.empty_like(centred)
    for start in range(0, data.shape[1], BLOCK):
        stop = min(start + BLOCK, data.shape[1])
        out[:, start:stop] = mwf.weights.T @ _stacked(centred, start, stop, mwf.delay)
    return out


def remove_artifacts(
    data: np.ndarray, sfreq: float, delay: int = DELAY, reference_channels=BIOSEMI_FRONTAL
) -> tuple[np.ndarray, np.ndarray]:
    """MWF eye-artifact removal of one recording.

    Parameters
    ----------
    data : (channels, time) array
        EEG in microvolts, high-passed (BioSemi-64 channel order for the default reference channels).
    sfreq : float
        Sampling rate in Hz.
    delay : int
        Lags on each side of the spatio-temporal filter, in samples.

    Returns
    -------
    clean : (channels, time) float64, ``data - artifact``.
    mask : (time,) bool, the samples used as artifact segments. When there are too few artifact
        (or clean) samples to fit the filter, ``clean`` is ``data`` unchanged.
    """
    data = np.asarray(data, dtype=np.float64)
    mask = artifact_mask(data, sfreq, reference_channels)
    size = (2 * delay + 1) * data.shape[0]
    if mask.sum() <= size or (~mask).sum() <= size:
        return data.copy(), mask
    return data - artifact_estimate(data, fit_mwf(data, mask, delay)), mask


__all__ = ["BIOSEMI_FRONTAL", "MwfFilter", "artifact_estimate", "artifact_mask", "fit_mwf", "remove_artifacts"]
