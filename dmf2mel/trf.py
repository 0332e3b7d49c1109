"""Linear encoding and decoding models: temporal response functions (TRFs) fitted by ridge regression.

The classic linear analysis of auditory EEG, as the mTRF toolbox does it (Crosse et al., 2016, 2021) and as
MNE's :class:`mne.decoding.ReceptiveField` with :class:`mne.decoding.TimeDelayingRidge` computes it:

- the **design matrix** holds time-delayed copies of the input, column ``d * n_features + f`` holding
  ``x[t - delays[d], f]`` (zero outside the recording);
- the model is ``y[t, o] = b[o] + sum_d sum_f w[d, f, o] * x[t - delays[d], f]``, fitted in closed form,
  ``W = (X'X + alpha * s * I)^-1 X'Y`` on centred data, where ``s = trace(X'X) / dim`` is the mean eigenvalue of
  ``X'X``: ``alpha`` is a *relative* ridge strength, the same grid suits any data (:func:`.linear.ridge_path`);
- ``alpha`` is chosen by k-fold cross-validation (mean Pearson r of the held-out folds).

A **forward model** (encoding model, the TRF proper) maps the stimulus to every EEG channel with positive delays
(the brain answers after the sound, ``tmin = 0``, ``tmax = 0.4`` s); a **backward model** (decoder, stimulus
reconstruction) maps the EEG to the stimulus with negative delays (``tmin = -0.25``, ``tmax = 0``: the EEG from
``t`` to ``t + 250 ms`` reconstructs the stimulus at ``t``). :class:`dmf2mel.models.linear.LinearDecoder` is that
backward model with the ridge strength chosen on the validation recordings instead of by folds.

Backward weights are not interpretable as brain activity (they also cancel noise); :meth:`TRF.patterns` turns
them into activation patterns (Haufe et al., 2014), ``A = cov(X) W cov(Y_hat)^-1``.

For the built-in corpus, :func:`simulated_truth` recovers what the simulation did: each subject's true response
kernels and the neural drive they were convolved with, so an estimated TRF can be compared with the truth.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Sequence

import numpy as np
import scipy.signal

from dmf2mel.errors import UserError
from dmf2mel.models.linear import ALPHA_GRID, _pearson, lag_matrix, ridge_path
from dmf2mel.validation import check_int

SFREQ = 64.0
N_FOLDS = 5


def delay_samples(sfreq: float, tmin: float, tmax: float) -> np.ndarray:
    """The delays in samples from ``tmin`` to ``tmax`` seconds (MNE's rounding), ascending."""
    if not tmin <= tmax:
        raise UserError(f"tmin must be <= tmax, got tmin={tmin} and tmax={tmax}", parameter="tmin")
    return np.arange(int(np.round(tmin * sfreq)), int(np.round(tmax * sfreq)) + 1)


def delay_matrix(x: np.ndarray, delays: np.ndarray) -> np.ndarray:
    """Time-delayed copies of ``x`` side by side: the design matrix of a TRF.

    Parameters
    ----------
    x : (time, n_features) array
    delays : (n_delays,) int array, ascending
        Delays in samples; a positive delay looks into the past, a negative one into the future.

    Returns
    -------
    (time, n_delays * n_features) array, column ``d * n_features + f`` holding ``x[t - delays[d], f]``, zero where
    ``t - delays[d]`` falls outside the recording.
    """
    x = np.asarray(x)
    n_times, n_features = x.shape
    first, last = int(delays[0]), int(delays[-1])
    # shifted[t] = x[t - last]; lag_matrix's column block l then holds shifted[t + l] = x[t - (last - l)]
    if last >= 0:
        shifted = np.concatenate([np.zeros((last, n_features), x.dtype), x])
    else:
        shifted = x[-last:]
    lagged = lag_matrix(shifted, last - first + 1)[:n_times]
    if len(lagged) < n_times:  # all delays in the future: the last rows see only zeros
        lagged = np.concatenate([lagged, np.zeros((n_times - len(lagged), lagged.shape[1]), x.dtype)])
    blocks = lagged.reshape(n_times, last - first + 1, n_features)[:, ::-1]  # ascending delays
    return blocks[:, delays - first].reshape(n_times, len(delays) * n_features)


def _as_list(arrays, name: str) -> list[np.ndarray]:
    """One (time, k) array or a list of them -> list of 2-D float64 arrays."""
    if isinstance(arrays, np.ndarray):
        arrays = [arrays]
    out = []
    for i, array in enumerate(arrays):
        array = np.asarray(array, dtype=np.float64)
        if array.ndim == 1:
            array = array[:, None]
        if array.ndim != 2:
            raise UserError(f"{name}[{i}] must be a (time, features) array, got shape {array.shape}", parameter=name)
        if not np.isfinite(array).all():
            raise UserError(f"{name}[{i}] holds NaN or infinite values", parameter=name)
        out.append(array)
    if not out:
        raise UserError(f"{name} is empty: give at least one recording", parameter=name)
    return out


def fold_segments(n_times: Sequence[int], n_folds: int) -> list[list[tuple[int, slice]]]:
    """Split recordings into ``n_folds`` folds of contiguous segments for cross-validation.

    With at least ``n_folds`` recordings each fold holds whole recordings (consecutive ones); with fewer, every
    recording is cut into enough contiguous pieces.

    Returns
    -------
    list (one per fold) of lists of (recording index, slice of its samples)
    """
    n_folds = check_int("n_folds", n_folds, minimum=2)
    pieces = -(-n_folds // len(n_times))  # ceil: pieces per recording
    segments = [
        (i, slice(int(b[0]), int(b[-1]) + 1))
        for i, n in enumerate(n_times)
        for b in np.array_split(np.arange(n), pieces)
    ]
    if len(segments) < n_folds:
        raise UserError(f"too little data for {n_folds} folds: {list(n_times)} samples", parameter="n_folds")
    return [list(group) for group in np.array_split(np.array(segments, dtype=object), n_folds)]


class TRF:
    """A temporal response function: ridge regression on time-delayed inputs (forward or backward model).

    Parameters
    ----------
    tmin, tmax : float
        Delays in seconds: ``y[t]`` is predicted from ``x[t - tmax] .. x[t - tmin]``. Forward model (stimulus ->
        EEG): ``0, 0.4``; backward model (EEG -> stimulus): ``-0.25, 0``.
    sfreq : float, default 64
        Sampling rate in Hz of inputs and outputs.
    alphas : sequence of float
        Candidate ridge strengths, relative to the mean eigenvalue of ``X'X`` (one value: no cross-validation).
    n_folds : int, default 5
        Folds of the cross-validation that picks ``alpha``.

    Attributes (after :meth:`fit`)
    ----------
    delays_ : (n_delays,) int array, times_ : (n_delays,) float array (seconds)
    weights_ : (n_delays, n_inputs, n_outputs) array, ``w[d, f, o]``
    intercept_ : (n_outputs,) array
    alpha_ : float, the chosen relative ridge strength
    cv_r_ : dict alpha -> mean Pearson r over held-out folds and outputs (empty with one alpha)

    Shapes: inputs (time, n_inputs) -> outputs (time, n_outputs); 1-D arrays count as one feature.
    """

    def __init__(
        self,
        tmin: float = 0.0,
        tmax: float = 0.4,
        sfreq: float = SFREQ,
        alphas: Sequence[float] = ALPHA_GRID,
        n_folds: int = N_FOLDS,
    ):
        self.tmin, self.tmax, self.sfreq = float(tmin), float(tmax), float(sfreq)
        self.alphas = tuple(float(a) for a in np.atleast_1d(alphas))
        if not self.alphas or min(self.alphas) < 0:
            raise UserError(f"alphas must be non-negative numbers, got {alphas}", parameter="alphas")
        self.n_folds = check_int("n_folds", n_folds, minimum=2)
        self.delays_ = delay_samples(self.sfreq, self.tmin, self.tmax)
        self.times_ = self.delays_ / self.sfreq
        self.cv_r_: dict[float, float] = {}

    def _moments(self, inputs, outputs, parts):
        """X'X and X'Y of the centred, delayed inputs over ``parts`` [(recording, slice)]."""
        dim = len(self.delays_) * inputs[0].shape[1]
        xx, xy, n = np.zeros((dim, dim)), np.zeros((dim, outputs[0].shape[1])), 0
        for i, part in parts:
            x = delay_matrix(inputs[i][part] - self.input_mean_, self.delays_)
            xx += x.T @ x
            xy += x.T @ (outputs[i][part] - self.output_mean_)
            n += len(x)
        return xx, xy, n

    def fit(self, inputs, outputs) -> "TRF":
        """Fit on recordings; ``inputs`` and ``outputs`` are (time, k) arrays or lists of them, paired.

        Inputs and outputs are centred by their means over all recordings before they are delayed (as MNE's
        ``TimeDelayingRidge(fit_intercept=True)`` does); the cross-validation folds share these means.
        """
        inputs, outputs = _as_list(inputs, "inputs"), _as_list(outputs, "outputs")
        if len(inputs) != len(outputs):
            raise UserError(f"{len(inputs)} input recordings but {len(outputs)} outputs", parameter="outputs")
        for i, (x, y) in enumerate(zip(inputs, outputs)):
            if len(x) != len(y) or x.shape[1] != inputs[0].shape[1] or y.shape[1] != outputs[0].shape[1]:
                raise UserError(
                    f"recording {i}: inputs {x.shape} and outputs {y.shape} must have the same length and the "
                    f"feature counts of recording 0 ({inputs[0].shape[1]} and {outputs[0].shape[1]})",
                    parameter="inputs",
                )
        self.input_mean_ = np.concatenate(inputs).mean(axis=0)
        self.output_mean_ = np.concatenate(outputs).mean(axis=0)
        self.cv_r_ = self._cross_validate(inputs, outputs) if len(self.alphas) > 1 else {}
        self.alpha_ = max(self.cv_r_, key=self.cv_r_.get) if self.cv_r_ else self.alphas[0]
        whole = [(i, slice(None)) for i in range(len(inputs))]
        self.xx_, xy, self.n_samples_ = self._moments(inputs, outputs, whole)
        (_, weights), *_ = ridge_path(self.xx_, xy, (self.alpha_,))
        n_in, n_out = inputs[0].shape[1], outputs[0].shape[1]
        self.weights_ = weights.reshape(len(self.delays_), n_in, n_out)
        self.intercept_ = self.output_mean_ - self.input_mean_ @ self.weights_.sum(axis=0)
        return self

    def _cross_validate(self, inputs, outputs) -> dict[float, float]:
        folds = fold_segments([len(x) for x in inputs], self.n_folds)
        moments = [self._moments(inputs, outputs, fold) for fold in folds]
        total_xx, total_xy = sum(m[0] for m in moments), sum(m[1] for m in moments)
        scores = {alpha: [] for alpha in self.alphas}
        for fold, (xx, xy, _) in zip(folds, moments):
            for alpha, weights in ridge_path(total_xx - xx, total_xy - xy, self.alphas):
                for i, part in fold:
                    x = delay_matrix(inputs[i][part] - self.input_mean_, self.delays_)
                    scores[alpha].append(np.nanmean(_pearson(x @ weights, outputs[i][part])))
        return {alpha: float(np.mean(values)) for alpha, values in scores.items()}

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """(time, n_inputs) -> (time, n_outputs)."""
        (x,) = _as_list([inputs], "inputs")
        if x.shape[1] != self.weights_.shape[1]:
            raise UserError(f"inputs must have {self.weights_.shape[1]} features, got {x.shape[1]}", parameter="inputs")
        weights = self.weights_.reshape(-1, self.weights_.shape[2])
        return delay_matrix(x - self.input_mean_, self.delays_) @ weights + self.output_mean_

    def score(self, inputs, outputs) -> np.ndarray:
        """Pearson r per output, (n_outputs,), averaged over the given recordings."""
        inputs, outputs = _as_list(inputs, "inputs"), _as_list(outputs, "outputs")
        return np.mean([_pearson(self.predict(x), y) for x, y in zip(inputs, outputs)], axis=0)

    def patterns(self) -> np.ndarray:
        """Activation patterns of the weights (Haufe et al., 2014): ``cov(X) W cov(X W)^-1``.

        For a backward model these say how each output (e.g. a reconstructed mel band) shows in the EEG at each
        channel and delay, unlike the weights, which also suppress noise. MNE's ``ReceptiveField(patterns=True)``
        divides by the covariance of the true outputs instead of the reconstructed ones; for a single output the
        two differ only by a positive factor.

        Returns
        -------
        (n_delays, n_inputs, n_outputs) array
        """
        weights = self.weights_.reshape(-1, self.weights_.shape[2])
        cov_x = self.xx_ / (self.n_samples_ - 1)
        cov_x_w = cov_x @ weights
        return (cov_x_w @ np.linalg.pinv(weights.T @ cov_x_w)).reshape(self.weights_.shape)


# ---------------------------------------------------------------------------------------------------------------
# The simulation's truth
# ---------------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class SimulatedTruth:
    """What the simulation did for one subject and story of the built-in corpus.

    Attributes
    ----------
    kernels : (2, n_kernel) array
        The true response kernel of the left and right auditory cortex, sampled at ``sfreq``.
    times : (n_kernel,) array
        Their time axis in seconds.
    drive : (time, 2) array
        The neural drive of each cortex (the nonlinear function of the mel bands the kernels are convolved with),
        at ``sfreq``, aligned with the whole recording (cut it with :func:`dmf2mel.data.sparrkulee.split_bounds`).
    pattern : (64, 2) array
        How each cortex shows at the electrodes after the common-average reference (arbitrary units).
    sfreq : float
    """

    kernels: np.ndarray
    times: np.ndarray
    drive: np.ndarray
    pattern: np.ndarray
    sfreq: float

    def expected_trf(self) -> np.ndarray:
        """The forward TRF from ``drive`` to the noise-free EEG up to one factor per cortex: (n_kernel, 2, 64)."""
        return np.einsum("hk,ch->khc", self.kernels, self.pattern)

    def agreement(self, weights: np.ndarray) -> np.ndarray:
        """Pearson r between an estimated forward TRF from ``drive`` and :meth:`expected_trf`, per cortex: (2,).

        ``weights`` is a :class:`TRF`'s ``weights_`` (n_delays, 2, 64) with delays 0, 1, ... samples; the shorter
        of the two is compared.
        """
        expected = self.expected_trf()
        n = min(len(expected), len(weights))
        return np.array([np.corrcoef(weights[:n, h].ravel(), expected[:n, h].ravel())[0, 1] for h in range(2)])


def neural_drive(subject, sustained: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """The drive of each auditory cortex, (time, 2), as :func:`dmf2mel.data.simulate.neural_sources` computes it
    before the convolution with the kernels (z-scored sustained plus z-scored onset part)."""

    def zscore(x):
        return (x - x.mean()) / (x.std() + 1e-12)

    return np.stack(
        [
            zscore(sustained @ subject.sustained_weights[h]) + zscore(onsets @ subject.onset_weights[h])
            for h in range(2)
        ],
        axis=1,
    )


def simulated_truth(folder: str | Path, subject: str, stimulus: str) -> SimulatedTruth:
    """The true kernels, drive and scalp pattern of ``subject`` listening to ``stimulus`` in a simulated corpus.

    Parameters
    ----------
    folder : path
        A corpus written by :func:`dmf2mel.data.corpus.simulate_corpus` from synthetic speech (e.g.
        ``corpus.default_corpus("teaching")``).
    subject, stimulus : str
        As in its file names, e.g. ``"sub-001"``, ``"audiobook_1"``.
    """
    from dmf2mel.data import simulate, sparrkulee

    meta = sparrkulee.read_metadata(folder)
    if not meta or meta.get("generator") != "dmf2mel.data.simulate":
        raise UserError(f"{folder}: not a simulated corpus (no dmf2mel_corpus.json from the simulation)", "folder")
    if meta.get("stimuli_source") != "synthetic speech":
        raise UserError(f"{folder}: the truth is known for synthetic stories only", parameter="folder")
    for name, value, known in (("subject", subject, meta["subjects"]), ("stimulus", stimulus, meta["stimuli"])):
        if value not in known:
            raise UserError(f"{name} {value!r} is not in {folder}; it has {known}", parameter=name)
    params = simulate.SimulationParams(**meta["parameters"])
    seed = meta["seed"]
    listener = simulate.make_subject(
        simulate._rng(seed, simulate.STREAM_SUBJECT, meta["subjects"].index(subject)), params
    )
    story = simulate.synthetic_stimulus(seed, meta["stimuli"].index(stimulus), params.minutes * 60.0)
    step = int(round(simulate.SIM_SFREQ / sparrkulee.SFREQ))
    drive = scipy.signal.resample_poly(neural_drive(listener, story.sustained, story.onsets), 1, step, axis=0)
    # the corpus trimmed each recording to its shortest signal before splitting it: the parts add up to that length
    n = sum(
        meta["files"][sparrkulee.format_filename(split, subject, stimulus, "eeg")][0] for split in sparrkulee.SPLITS
    )
    pattern = listener.auditory_pattern - listener.auditory_pattern.mean(axis=0)
    kernels = listener.kernels[:, ::step]
    return SimulatedTruth(
        kernels=kernels,
        times=np.arange(kernels.shape[1]) / sparrkulee.SFREQ,
        drive=drive[:n],
        pattern=pattern / np.abs(pattern).max(),
        sfreq=float(sparrkulee.SFREQ),
    )
