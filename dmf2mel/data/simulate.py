"""The built-in corpus's simulation: 64-channel EEG of people listening to speech.

No real EEG can be downloaded when the book builds, so the chapters run on a simulated corpus that
looks like SparrKULee to every reader in :mod:`dmf2mel.data.sparrkulee`. The simulation follows what
is known about cortical tracking of speech:

1. **Stimuli** — synthetic speech (:mod:`dmf2mel.data.speech`) or a folder of audio files. Their
   mel spectrogram (the regression target) and envelope are computed with the exact ICASSP-2024
   recipe of :mod:`dmf2mel.data.features`.
2. **What drives the auditory cortex** — a *nonlinear* function of the mel bands: each band is
   compressed (power 0.3, the loudness-like compression of the cochlea) and its onsets are taken
   (half-wave rectified temporal derivative). A subject-specific weighting over bands mixes the
   sustained and the onset parts, separately for the left and the right auditory cortex. A linear
   decoder of the (uncompressed) mel therefore cannot be perfect even without noise.
3. **Response functions** — the drive is convolved with a P1–N1–P2 kernel (peaks near 50, 100 and
   180 ms) whose latency and amplitudes differ between subjects and hemispheres.
4. **Forward model** — two current dipoles (one per auditory cortex), subject-specific in position
   (within about 1 cm) and orientation, projected to the BioSemi-64 electrodes through an MNE
   three-shell spherical head model.
5. **Noise and artifacts** — background brain activity (1/f noise from dozens of random dipoles),
   alpha bursts from parieto-occipital dipoles, blinks (frontal), muscle bursts (temporal), power
   line, slow drifts and amplifier noise.
6. **Preprocessing** — the chain of :mod:`dmf2mel.data.preprocess` (notch, 0.5–32 Hz band-pass,
   blink projection, clipping, common-average reference, 64 Hz), as real data go through.

The noise-free neural response goes through the same linear filters and is written to a ``clean/``
sub-folder with the same file names as the EEG, so chapters can show what the noise costs.

Two presets (:data:`dmf2mel.data.simulation_params.PRESETS`): ``teaching`` (clear effects; a lagged
ridge decoder reaches a within-subject test r of roughly 0.15–0.3) and ``sparrkulee`` (as hard as the
real data, r of roughly 0.03–0.06).

This module is the simulation itself: the head model, the listeners, the stimuli and their neural
drive, the noise and one recording (:func:`simulate_recording`). Writing a corpus to disk, checking
one and the cache of the default corpora are in :mod:`dmf2mel.data.corpus`; the parameters and the
presets in :mod:`dmf2mel.data.simulation_params`. The corpus functions still answer to their old
names here (``simulate.default_corpus``), for notebooks written before they moved.

Determinism: every random number comes from a :class:`numpy.random.SeedSequence` keyed by
``(seed, stream, subject, story)``, so the same seed gives the same bytes, and adding subjects or
stories leaves the existing recordings unchanged.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from pathlib import Path
from typing import Any

import mne
import numpy as np
import scipy.signal

from dmf2mel.data import features, preprocess, speech

# The parameters live in simulation_params; imported under their own names so ``simulate.PRESETS`` etc. still work.
from dmf2mel.data.simulation_params import PRESETS as PRESETS
from dmf2mel.data.simulation_params import SimulationParams as SimulationParams
from dmf2mel.data.simulation_params import preset_params as preset_params

# Bump by hand for changes the source hash cannot see (none so far); the version also hashes the code
# (SOURCE_FILES: the simulation, its parameters and the corpus writer).
SIMULATION_VERSION = "1"
SOURCE_FILES = ("simulate.py", "simulation_params.py", "corpus.py")

SIM_SFREQ = float(features.MEL_FRAME_RATE)  # 128 Hz: the mel frame rate; above the 50 Hz line and muscles
NAM = 1e-9  # one nanoampere-metre in A*m (dipole moments)
UV = 1e-6  # one microvolt in V

# Seed streams: one independent generator per (stream, subject, story).
STREAM_STIMULUS, STREAM_SUBJECT, STREAM_RECORDING = 0, 1, 2

# Dipole geometry in MNE head coordinates of the BioSemi montage (metres; x right, y front, z up;
# the electrode equator T7-T8 is at z = 0.037).
AUDITORY_CORTEX_M = np.array([[-0.05, -0.015, 0.03], [0.05, -0.015, 0.03]])
AUDITORY_ORIENTATION = np.array([[0.3, 0.2, 1.0], [-0.3, 0.2, 1.0]])  # roughly up, tilted medially
LOCATION_JITTER_M = 0.008
# Candidate dipole locations per hemisphere: the centre and one step along +-x, +-y, +-z; a subject's
# dipole mixes their lead fields, mostly the centre's.
LOCATION_OFFSETS = np.vstack([np.zeros(3), np.eye(3), -np.eye(3)])
CENTRE_WEIGHT = 4.0  # Dirichlet concentration of the centre (the others have 1)
ORIENTATION_JITTER = 0.3
NOISE_GRID_MM = 20.0  # spacing of the candidate background-noise dipoles
ALPHA_REGION = dict(y_max=-0.03, z_min=0.04)  # parieto-occipital dipoles only
BLINK_ORIGIN_M = np.array([0.0, 0.10, 0.02])
BLINK_SPREAD_M = 0.04
MUSCLE_ORIGINS_M = np.array([[-0.095, 0.01, 0.01], [0.095, 0.01, 0.01]])
MUSCLE_SPREAD_M = 0.035

# P1-N1-P2 response kernel: (latency s, width s, signed amplitude) of three Gaussian peaks.
RESPONSE_PEAKS = ((0.05, 0.012, 0.5), (0.10, 0.02, -1.0), (0.18, 0.03, 0.6))
KERNEL_SECONDS = 0.4
COMPRESSION = 0.3  # power-law compression of the mel bands before they drive the cortex
BAND_WEIGHT_STEP = 0.4  # log-weights of neighbouring mel bands differ by about this much
LATENCY_SD = 0.1  # log-normal spread of the subject's latency scale
AMPLITUDE_SD = 0.25  # log-normal spread of peak amplitudes and subject gain
HEMISPHERE_LAG_S = 0.01  # the right cortex lags or leads by up to this much

ALPHA_HZ = (8.5, 11.5)
ALPHA_BANDWIDTH_HZ = 1.5
ALPHA_BURST_HZ = 0.3  # bursts wax and wane on this time scale
BLINK_WIDTH_S = (0.08, 0.14)  # Gaussian SD of one blink
MUSCLE_BURST_S = (0.3, 1.5)
MUSCLE_BAND_HZ = (20.0, 60.0)
DRIFT_MAX_HZ = 0.3
LINE_FREQ = 50.0
EVENT_AMPLITUDE_RANGE = (0.7, 1.3)  # each blink, and each electrode's line pickup, scales by this much


def _rng(seed: int, stream: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(stream, *key)))


def simulation_version() -> str:
    """A version string that changes whenever the simulation code (this module, :mod:`.simulation_params` and
    the corpus writer :mod:`.corpus`, see :data:`SOURCE_FILES`) or the feature recipe changes."""
    digest = hashlib.sha256(SIMULATION_VERSION.encode())
    for module in (speech, features, preprocess):
        digest.update(Path(module.__file__).read_bytes())
    for name in SOURCE_FILES:
        digest.update((Path(__file__).parent / name).read_bytes())
    return f"{SIMULATION_VERSION}+{digest.hexdigest()[:12]}"


def story_names(n_stories: int) -> list[str]:
    """SparrKULee-style stimulus names: ``audiobook_1, podcast_1, audiobook_2, podcast_2, ...``."""
    return [f"{'audiobook' if i % 2 == 0 else 'podcast'}_{i // 2 + 1}" for i in range(n_stories)]


def subject_names(n_subjects: int) -> list[str]:
    return [f"sub-{i + 1:03d}" for i in range(n_subjects)]


# --------------------------------------------------------------------------------------------
# Head model (computed once per process: a few hundred milliseconds)


@dataclasses.dataclass(frozen=True)
class HeadModel:
    """Lead fields of the dipoles the simulation uses, in V per A*m, for the BioSemi-64 channels.

    ``auditory_gain`` (64, 2, 7, 3): per hemisphere, 7 candidate locations (the centre and +-jitter
    along x, y, z), free orientation. ``noise_gain`` (64, n_grid, 3) and ``noise_rr`` (n_grid, 3)
    for a grid filling the brain. ``ch_pos`` (64, 3) electrode positions in metres.
    """

    auditory_gain: np.ndarray
    noise_gain: np.ndarray
    noise_rr: np.ndarray
    ch_pos: np.ndarray


def _forward(info: mne.Info, sphere, rr: np.ndarray | None, grid_mm: float | None = None):
    if rr is not None:
        pos = dict(rr=rr, nn=np.tile([0.0, 0.0, 1.0], (len(rr), 1)))
        src = mne.setup_volume_source_space(pos=pos, sphere=sphere, verbose=False)
    else:
        src = mne.setup_volume_source_space(pos=grid_mm, sphere=sphere, verbose=False)
    fwd = mne.make_forward_solution(info, trans=None, src=src, bem=sphere, meg=False, eeg=True, n_jobs=1, verbose=False)
    used_rr = fwd["source_rr"]
    return fwd["sol"]["data"].reshape(len(info.ch_names), len(used_rr), 3), used_rr


@functools.lru_cache(maxsize=1)
def head_model() -> HeadModel:
    """The cached :class:`HeadModel` (MNE three-shell sphere fitted to the BioSemi-64 montage)."""
    info = preprocess.biosemi_info(SIM_SFREQ)
    sphere = mne.make_sphere_model("auto", "auto", info, verbose=False)
    offsets = LOCATION_OFFSETS * LOCATION_JITTER_M  # (7, 3)
    rr = (AUDITORY_CORTEX_M[:, None, :] + offsets[None]).reshape(-1, 3)
    auditory, _ = _forward(info, sphere, rr)
    noise, noise_rr = _forward(info, sphere, None, NOISE_GRID_MM)
    ch_pos = np.array([ch["loc"][:3] for ch in info["chs"]])
    return HeadModel(auditory.reshape(len(ch_pos), 2, len(offsets), 3), noise, noise_rr, ch_pos)


# --------------------------------------------------------------------------------------------
# Subjects


@dataclasses.dataclass(frozen=True)
class Subject:
    """What makes one simulated listener different from the next.

    ``kernels`` (2, kernel_samples): P1-N1-P2 response per hemisphere at 128 Hz.
    ``sustained_weights``, ``onset_weights`` (2, n_mels): band weights of the drive per hemisphere.
    ``auditory_pattern`` (64, 2) in V per A*m; ``background_pattern`` (64, n_background);
    ``alpha_pattern`` (64, 2); ``gain``: overall response strength; ``alpha_hz``.
    """

    kernels: np.ndarray
    sustained_weights: np.ndarray
    onset_weights: np.ndarray
    auditory_pattern: np.ndarray
    background_pattern: np.ndarray
    alpha_pattern: np.ndarray
    gain: float
    alpha_hz: float


def response_kernel(latency_scale: float, amplitudes: np.ndarray, sfreq: float = SIM_SFREQ) -> np.ndarray:
    """P1-N1-P2 kernel (kernel_samples,): three Gaussian peaks with latencies scaled by ``latency_scale``."""
    t = np.arange(int(KERNEL_SECONDS * sfreq)) / sfreq
    kernel = np.zeros_like(t)
    for (latency, width, sign), amplitude in zip(RESPONSE_PEAKS, amplitudes):
        kernel += sign * amplitude * np.exp(-0.5 * ((t - latency * latency_scale) / (width * latency_scale)) ** 2)
    return kernel


def _random_dipoles(rng: np.random.Generator, gain: np.ndarray, candidates: np.ndarray, n: int) -> np.ndarray:
    """Scalp patterns (64, n) of ``n`` dipoles at random ``candidates`` grid points, random orientations."""
    picks = rng.choice(candidates, size=n, replace=len(candidates) < n)
    orientation = rng.standard_normal((n, 3))
    orientation /= np.linalg.norm(orientation, axis=1, keepdims=True)
    return np.einsum("cnk,nk->cn", gain[:, picks], orientation)


def make_subject(rng: np.random.Generator, params: SimulationParams, n_mels: int = features.N_MELS) -> Subject:
    """Draw one subject's response properties and spatial patterns."""
    head = head_model()
    latency = np.exp(rng.normal(0.0, LATENCY_SD))
    kernels = []
    for hemisphere in range(2):
        lag = rng.uniform(-HEMISPHERE_LAG_S, HEMISPHERE_LAG_S) if hemisphere else 0.0
        amplitudes = np.exp(rng.normal(0.0, AMPLITUDE_SD, len(RESPONSE_PEAKS)))
        kernels.append(response_kernel(latency + lag / RESPONSE_PEAKS[1][0], amplitudes))
    # Smooth band weightings: a random walk over bands, positive, normalised.
    walks = np.exp(np.cumsum(rng.normal(0.0, BAND_WEIGHT_STEP, (2, 2, n_mels)), axis=-1))
    walks /= walks.sum(axis=-1, keepdims=True)
    # Location: weights over the 7 candidate lead fields (mostly the centre); orientation jittered.
    location = rng.dirichlet(np.r_[CENTRE_WEIGHT, np.ones(len(LOCATION_OFFSETS) - 1)], size=2)  # (2, 7)
    orientation = AUDITORY_ORIENTATION / np.linalg.norm(AUDITORY_ORIENTATION, axis=1, keepdims=True)
    orientation = orientation + ORIENTATION_JITTER * rng.standard_normal((2, 3))
    orientation /= np.linalg.norm(orientation, axis=1, keepdims=True)
    auditory = np.einsum("chlk,hl,hk->ch", head.auditory_gain, location, orientation)
    everywhere = np.arange(len(head.noise_rr))
    background = _random_dipoles(rng, head.noise_gain, everywhere, params.n_background_sources)
    posterior = np.flatnonzero(
        (head.noise_rr[:, 1] < ALPHA_REGION["y_max"]) & (head.noise_rr[:, 2] > ALPHA_REGION["z_min"])
    )
    alpha = _random_dipoles(rng, head.noise_gain, posterior, 2)
    return Subject(
        kernels=np.array(kernels),
        sustained_weights=walks[0],
        onset_weights=walks[1],
        auditory_pattern=auditory,
        background_pattern=background,
        alpha_pattern=alpha,
        gain=float(np.exp(rng.normal(0.0, AMPLITUDE_SD))),
        alpha_hz=float(rng.uniform(*ALPHA_HZ)),
    )


def stories_heard(subject_index: int, n_stories: int, stories_per_subject: int) -> list[int]:
    """Indices of the stories subject ``subject_index`` (0-based) heard: the first story (everyone heard
    ``audiobook_1`` in SparrKULee) and the next ones in turn, so every story gets a fair share of listeners."""
    n_others = n_stories - 1
    others = {1 + (subject_index + k) % n_others for k in range(stories_per_subject - 1)} if n_others else set()
    return [0, *sorted(others)]


# --------------------------------------------------------------------------------------------
# Signals


def auditory_drive(mel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The nonlinear features of the mel bands that drive the auditory cortex.

    Parameters
    ----------
    mel : (time, n_mels) array
        Linear-power mel spectrogram at the simulation rate.

    Returns
    -------
    sustained : (time, n_mels) compressed band power, ``(mel / mean) ** 0.3``.
    onsets : (time, n_mels) half-wave rectified time derivative of ``sustained``.
    """
    level = np.mean(mel) + 1e-12  # the auditory system adapts to the overall level of a story
    sustained = np.maximum(mel / level, 0.0) ** COMPRESSION
    onsets = np.maximum(np.diff(sustained, axis=0, prepend=sustained[:1]), 0.0)
    return sustained, onsets


def _zscore(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / (x.std() + 1e-12)


def neural_sources(subject: Subject, sustained: np.ndarray, onsets: np.ndarray) -> np.ndarray:
    """Time courses (time, 2) of the left and right auditory dipoles, unit RMS times the subject gain."""
    sources = []
    for hemisphere in range(2):
        drive = _zscore(sustained @ subject.sustained_weights[hemisphere])
        drive += _zscore(onsets @ subject.onset_weights[hemisphere])
        response = scipy.signal.fftconvolve(drive, subject.kernels[hemisphere])[: drive.size]
        sources.append(_zscore(response))
    return subject.gain * np.stack(sources, axis=1)


def colored_noise(
    rng: np.random.Generator,
    shape: tuple[int, int],
    sfreq: float,
    exponent: float,
    fmin: float = 0.0,
    fmax: float | None = None,
) -> np.ndarray:
    """Gaussian noise (time, n) with power spectrum ~ 1/f**exponent between ``fmin`` and ``fmax``, unit RMS."""
    n_times, n = shape
    freqs = np.fft.rfftfreq(n_times, 1.0 / sfreq)
    shaping = np.zeros_like(freqs)
    band = (freqs > max(fmin, 0.0)) & (freqs <= (fmax if fmax is not None else sfreq / 2))
    shaping[band] = freqs[band] ** (-exponent / 2)
    spectrum = (rng.standard_normal((freqs.size, n)) + 1j * rng.standard_normal((freqs.size, n))) * shaping[:, None]
    noise = np.fft.irfft(spectrum, n=n_times, axis=0)
    return noise / (noise.std(axis=0, keepdims=True) + 1e-30)


def _distance_pattern(ch_pos: np.ndarray, origin: np.ndarray, spread: float) -> np.ndarray:
    return np.exp(-np.linalg.norm(ch_pos - origin, axis=1) / spread)


def _event_times(rng: np.random.Generator, per_minute: float, n_times: int, sfreq: float) -> np.ndarray:
    n_events = rng.poisson(per_minute * n_times / sfreq / 60.0)
    return np.sort(rng.integers(0, n_times, n_events))


def noise_and_artifacts(
    rng: np.random.Generator, subject: Subject, params: SimulationParams, n_times: int, sfreq: float = SIM_SFREQ
) -> np.ndarray:
    """Everything but the auditory response, in volts, (time, 64)."""
    head = head_model()
    t = np.arange(n_times) / sfreq
    background = colored_noise(rng, (n_times, subject.background_pattern.shape[1]), sfreq, exponent=1.0, fmin=0.1)
    eeg = params.background_nam * NAM * background @ subject.background_pattern.T
    # Alpha: band-limited noise around the subject's alpha peak, switched on and off by slow bursts.
    carrier = colored_noise(
        rng,
        (n_times, 2),
        sfreq,
        0.0,
        subject.alpha_hz - ALPHA_BANDWIDTH_HZ / 2,
        subject.alpha_hz + ALPHA_BANDWIDTH_HZ / 2,
    )
    bursts = np.maximum(colored_noise(rng, (n_times, 1), sfreq, 0.0, 0.0, ALPHA_BURST_HZ), 0.0)
    eeg += params.alpha_nam * NAM * (carrier * bursts) @ subject.alpha_pattern.T
    # Blinks: Gaussian bumps, largest at the frontopolar electrodes.
    blink_trace = np.zeros(n_times)
    for onset in _event_times(rng, params.blinks_per_minute, n_times, sfreq):
        width = rng.uniform(*BLINK_WIDTH_S)
        blink_trace += rng.uniform(*EVENT_AMPLITUDE_RANGE) * np.exp(-0.5 * ((t - onset / sfreq) / width) ** 2)
    blink_pattern = _distance_pattern(head.ch_pos, BLINK_ORIGIN_M, BLINK_SPREAD_M)
    eeg += params.blink_uv * UV * np.outer(blink_trace, blink_pattern / blink_pattern.max())
    # Muscle: 20-60 Hz bursts over one temporal muscle.
    for onset in _event_times(rng, params.muscle_per_minute, n_times, sfreq):
        length = min(int(rng.uniform(*MUSCLE_BURST_S) * sfreq), n_times - onset)
        if length < 2:
            continue
        burst = colored_noise(rng, (length, 1), sfreq, 0.0, *MUSCLE_BAND_HZ)[:, 0] * np.hanning(length)
        pattern = _distance_pattern(head.ch_pos, MUSCLE_ORIGINS_M[rng.integers(2)], MUSCLE_SPREAD_M)
        eeg[onset : onset + length] += params.muscle_uv * UV * np.outer(burst, pattern / pattern.max())
    # Power line: a common 50 Hz sinusoid with channel-specific amplitude (electrode impedances differ).
    line = np.sin(2 * np.pi * LINE_FREQ * t + rng.uniform(0, 2 * np.pi))
    eeg += params.line_uv * UV * np.outer(line, rng.uniform(*EVENT_AMPLITUDE_RANGE, eeg.shape[1]))
    eeg += params.drift_uv * UV * colored_noise(rng, eeg.shape, sfreq, 2.0, 0.0, DRIFT_MAX_HZ)
    eeg += params.sensor_uv * UV * rng.standard_normal(eeg.shape)
    return eeg


@dataclasses.dataclass(frozen=True)
class Stimulus:
    """One story's features: ``mel`` (T, 10) and ``envelope`` (T,) at 64 Hz (the targets);
    ``sustained``/``onsets`` (T_sim, 10): the neural drive at the simulation rate. Read-only arrays."""

    name: str
    mel: np.ndarray
    envelope: np.ndarray
    sustained: np.ndarray
    onsets: np.ndarray


def make_stimulus(name: str, audio: np.ndarray, sfreq: float = speech.SPEECH_SFREQ) -> Stimulus:
    """Compute the target features and the neural drive of one story."""
    n_sim = int(round(audio.size / sfreq * SIM_SFREQ))
    # The recipe computes mel frames at 128 Hz (= SIM_SFREQ) and then resamples them to 64 Hz: do the
    # expensive part once and derive both (the test checks this equals features.mel_spectrogram).
    mel_frames = features.mel_spectrogram(audio, sfreq, target_sfreq=features.MEL_FRAME_RATE)
    mel = scipy.signal.resample_poly(mel_frames, features.TARGET_SFREQ, features.MEL_FRAME_RATE, axis=0)
    # center=False loses the last frames: pad with the final value so the drive covers the recording.
    mel_sim = np.pad(mel_frames, ((0, max(n_sim - len(mel_frames), 0)), (0, 0)), mode="edge")[:n_sim]
    sustained, onsets = auditory_drive(mel_sim)
    arrays = dict(
        mel=mel.astype(np.float32), envelope=features.envelope(audio, sfreq), sustained=sustained, onsets=onsets
    )
    for array in arrays.values():
        array.setflags(write=False)  # shared between corpora through the cache below
    return Stimulus(name=name, **arrays)


def synthetic_audio(seed: int, index: int, duration_s: float) -> np.ndarray:
    """The audio (samples,) at 16 kHz of synthetic story ``index`` (0-based) of a corpus made with ``seed``."""
    return speech.synthesize_speech(_rng(seed, STREAM_STIMULUS, index), duration_s)


@functools.lru_cache(maxsize=8)
def synthetic_stimulus(seed: int, index: int, duration_s: float) -> Stimulus:
    """Features of synthetic story ``index``; cached, since every corpus of a seed shares its stories."""
    return make_stimulus(story_names(index + 1)[index], synthetic_audio(seed, index, duration_s))


def simulate_recording(
    rng: np.random.Generator, subject: Subject, stimulus: Stimulus, params: SimulationParams
) -> tuple[np.ndarray, np.ndarray]:
    """One subject listening to one story.

    Returns
    -------
    eeg : (time, 64) float32 at 64 Hz in microvolts, preprocessed.
    clean : (time, 64) float32, the noise-free auditory response through the same linear filters.
    """
    sources = params.source_nam * NAM * neural_sources(subject, stimulus.sustained, stimulus.onsets)
    neural = sources @ subject.auditory_pattern.T  # (time, 64) volts
    noisy = neural + noise_and_artifacts(rng, subject, params, len(neural))
    eeg = preprocess.preprocess(preprocess.make_raw(noisy, SIM_SFREQ), line_freq=LINE_FREQ)
    clean = preprocess.preprocess(preprocess.make_raw(neural, SIM_SFREQ), line_freq=LINE_FREQ, artifacts=False)
    return eeg, clean


# Writing, checking and caching a corpus moved to dmf2mel.data.corpus; these names still work here.
_CORPUS_NAMES = frozenset(
    {
        "CACHE_ENV",
        "CLEAN_FOLDER",
        "LAST_USED_FILE",
        "STALE_CORPUS_S",
        "STALE_TEMP_S",
        "_is_corpus",
        "_library_versions",
        "_stimuli",
        "_write_corpus",
        "cache_dir",
        "corpus_key",
        "default_corpus",
        "simulate_corpus",
        "verify_corpus",
    }
)


def __getattr__(name: str) -> Any:
    """The corpus writer and cache moved to :mod:`dmf2mel.data.corpus`; the old names still work."""
    if name in _CORPUS_NAMES:
        from dmf2mel.data import corpus

        return getattr(corpus, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
