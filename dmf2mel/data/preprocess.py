"""The EEG preprocessing chain, with MNE-Python, from a raw 64-channel BioSemi recording to 64 Hz.

The steps follow what auditory-EEG decoding studies (and the SparrKULee ``split_data`` release)
do before a model sees the data, kept cheap so the built-in corpus generates in seconds:

1. **notch** at the power-line frequency (and its harmonics below Nyquist);
2. **band-pass** 0.5–32 Hz (zero-phase FIR): removes drifts, muscle activity above 32 Hz and keeps
   the band where cortical tracking of speech lives;
3. **blink removal** by signal-space projection: samples where the frontal channels show a
   blink are found with a robust threshold, the dominant spatial pattern of those samples is
   estimated (first principal component) and projected out of every sample. This is what MNE's
   EOG projectors do, without needing an EOG channel;
4. **clipping** of what is left beyond a robust limit per channel (muscle bursts, movement);
5. **common-average reference**;
6. **resampling** to 64 Hz.

:func:`make_raw` wraps a ``(time, 64)`` array as an :class:`mne.io.RawArray` with the BioSemi-64
montage; :func:`preprocess` runs the chain and returns ``(time, 64)`` float32 in microvolts.
"""

from __future__ import annotations

import numpy as np

import mne

MONTAGE = "biosemi64"
TARGET_SFREQ = 64.0
LINE_FREQ = 50.0
L_FREQ = 0.5
H_FREQ = 32.0
VOLTS_TO_MICROVOLTS = 1e6
FRONTAL_CHANNELS = ("Fp1", "Fpz", "Fp2", "AF7", "AF3", "AFz", "AF4", "AF8")
BLINK_THRESHOLD_MAD = 5.0  # a blink is this many robust SDs above the frontal median
BLINK_PAD_S = 0.1  # extend each detected blink on both sides
MIN_BLINK_SHARE = 0.002  # fewer blink samples than this share: nothing to project out
CLIP_MAD = 8.0  # after blink removal, clip each channel at this many robust SDs
CLIP_STAT_SAMPLES = 4096  # samples per channel used to estimate the clipping limits
MAD_TO_SD = 1.4826  # median absolute deviation of a Gaussian times this is its SD


def biosemi_info(sfreq: float) -> mne.Info:
    """An :class:`mne.Info` with the 64 BioSemi channels (EEG, standard 10-20 names) and montage."""
    montage = mne.channels.make_standard_montage(MONTAGE)
    info = mne.create_info(montage.ch_names, sfreq, ch_types="eeg", verbose=False)
    info.set_montage(montage, verbose=False)
    return info


def make_raw(data: np.ndarray, sfreq: float) -> mne.io.RawArray:
    """Wrap EEG samples as a raw recording with the BioSemi-64 montage.

    Parameters
    ----------
    data : (time, 64) array
        EEG in volts (MNE's unit), time-major like the ``split_data`` files.
    sfreq : float
        Sampling rate in Hz.

    Returns
    -------
    raw : mne.io.RawArray with 64 EEG channels.
    """
    data = np.asarray(data, dtype=np.float64)
    info = biosemi_info(sfreq)
    if data.ndim != 2 or data.shape[1] != len(info.ch_names):
        raise ValueError(f"data must have shape (time, {len(info.ch_names)}), got {data.shape}")
    return mne.io.RawArray(data.T, info, verbose=False)


def _robust_sd(x: np.ndarray, axis: int = -1) -> np.ndarray:
    median = np.median(x, axis=axis, keepdims=True)
    return MAD_TO_SD * np.median(np.abs(x - median), axis=axis, keepdims=True)


def blink_samples(data: np.ndarray, ch_names: list[str], sfreq: float) -> np.ndarray:
    """Boolean mask (time,) of samples inside a blink, from the mean of the frontal channels.

    ``data`` is (channels, time), already band-passed.
    """
    frontal = [ch_names.index(name) for name in FRONTAL_CHANNELS if name in ch_names]
    trace = data[frontal].mean(axis=0)
    median = np.median(trace)
    sd = _robust_sd(trace).item()
    mask = np.abs(trace - median) > BLINK_THRESHOLD_MAD * sd
    pad = int(BLINK_PAD_S * sfreq)
    if pad and mask.any():  # widen each detection: the blink's flanks are artifact too
        mask = np.convolve(mask.astype(float), np.ones(2 * pad + 1), mode="same") > 0
    return mask


def remove_blinks(raw: mne.io.BaseRaw) -> int:
    """Project the blink spatial pattern out of ``raw`` (in place); returns the number of blink samples.

    The pattern is the first principal component of the blink samples (an SSP vector); nothing is
    changed when fewer than 0.2 % of the samples look like blinks.
    """
    data = raw.get_data()
    mask = blink_samples(data, raw.ch_names, raw.info["sfreq"])
    if mask.mean() < MIN_BLINK_SHARE:
        return 0
    blinks = data[:, mask]
    blinks = blinks - blinks.mean(axis=1, keepdims=True)
    # First principal component from the (channels, channels) covariance: cheaper than an SVD of the samples.
    pattern = np.linalg.eigh(blinks @ blinks.T)[1][:, -1]
    cleaned = data - np.outer(pattern, pattern @ data)
    raw._data[:] = cleaned  # same shape and channels: cheaper than building a new RawArray
    return int(mask.sum())


def clip_outliers(raw: mne.io.BaseRaw, n_mad: float = CLIP_MAD) -> None:
    """Clip each channel of ``raw`` (in place) at ``n_mad`` robust SDs around its median."""
    data = raw._data
    # Robust statistics from every few samples: as good for a threshold, several times cheaper.
    subsample = data[:, :: max(1, data.shape[1] // CLIP_STAT_SAMPLES)]
    median = np.median(subsample, axis=1, keepdims=True)
    limit = n_mad * _robust_sd(subsample, axis=1)
    np.clip(data, median - limit, median + limit, out=data)


def preprocess(
    raw: mne.io.BaseRaw,
    line_freq: float | None = LINE_FREQ,
    l_freq: float = L_FREQ,
    h_freq: float = H_FREQ,
    target_sfreq: float = TARGET_SFREQ,
    artifacts: bool = True,
) -> np.ndarray:
    """Run the preprocessing chain on a copy of ``raw``.

    Parameters
    ----------
    raw : mne.io.BaseRaw
        EEG in volts with the BioSemi-64 channels (see :func:`make_raw`); not modified.
    line_freq : float or None
        Power-line frequency in Hz (50 in Europe, 60 in the Americas); None skips the notch.
    l_freq, h_freq : float
        Band-pass edges in Hz.
    target_sfreq : float
        Output sampling rate in Hz.
    artifacts : bool
        Whether to remove blinks and clip outliers (steps 3 and 4). Off for noise-free signals,
        so they go through exactly the same linear filters and nothing else.

    Returns
    -------
    eeg : (time, 64) float32 array in microvolts at ``target_sfreq``, common-average referenced.
    """
    raw = raw.copy().load_data(verbose=False)
    sfreq = raw.info["sfreq"]
    if line_freq is not None and line_freq < sfreq / 2:
        harmonics = np.arange(line_freq, sfreq / 2, line_freq)
        raw.notch_filter(harmonics, n_jobs=1, verbose=False)
    raw.filter(l_freq, h_freq, n_jobs=1, verbose=False)
    if artifacts:
        remove_blinks(raw)
        clip_outliers(raw)
    # Common-average reference. (``raw.set_eeg_reference("average")`` does the same through a
    # (channels x channels) matrix product; subtracting the mean is several times cheaper.)
    raw.apply_function(lambda data: data - data.mean(axis=0), channel_wise=False, verbose=False)
    if target_sfreq != sfreq:
        raw.resample(target_sfreq, method="polyphase", n_jobs=1, verbose=False)
    return np.ascontiguousarray(raw.get_data().T * VOLTS_TO_MICROVOLTS, dtype=np.float32)
