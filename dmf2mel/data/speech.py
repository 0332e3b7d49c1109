"""Stimuli for the built-in corpus: synthetic speech-like audio, or a user's own audio files.

:func:`synthesize_speech` builds audio with the statistics the auditory EEG literature cares about,
from a source-filter model of speech:

* **phrases and pauses** — runs of syllables separated by silent gaps (0.25–0.8 s), so the
  envelope has the slow phrase rhythm of read speech;
* **syllables at 4–5 Hz** — each syllable has a smooth amplitude contour, which gives the
  dominant 4–5 Hz peak in the modulation spectrum of real speech;
* **voiced nuclei** — a glottal pulse train whose pitch follows a declining phrase contour with
  an accent on some syllables, filtered through three formant resonators of a vowel;
* **consonants** — band-limited noise bursts (fricatives) and short broadband bursts (plosives)
  before and after the vowels.

:func:`load_stimuli` reads a folder of real recordings instead (mono, resampled to 16 kHz).
"""

from __future__ import annotations

import functools
import re
import warnings
from pathlib import Path

import numpy as np
import scipy.signal

from dmf2mel.errors import UserError

SPEECH_SFREQ = 16_000
AUDIO_EXTENSIONS = (".wav", ".flac", ".mp3", ".ogg", ".m4a", ".aiff", ".aif")
MIN_STIMULUS_SECONDS = 10.0  # shorter files cannot be cut 80/10/10 into usable parts

# Syllable and phrase timing (seconds). Mean syllable length 0.22 s gives a ~4.5 Hz syllable rate.
SYLLABLE_MEDIAN_S = 0.21
SYLLABLE_LOG_SD = 0.3
SYLLABLE_RANGE_S = (0.1, 0.45)
SYLLABLES_PER_PHRASE = (4, 13)
PAUSE_RANGE_S = (0.25, 0.8)
LEADING_SILENCE_S = 0.3

# Vowel formants F1, F2, F3 (Hz) of an adult male voice (Peterson & Barney, 1952, rounded).
VOWEL_FORMANTS = np.array(
    [
        [730, 1090, 2440],  # /a/
        [270, 2290, 3010],  # /i/
        [300, 870, 2240],  # /u/
        [530, 1840, 2480],  # /e/
        [570, 840, 2410],  # /o/
        [660, 1720, 2410],  # /ae/
        [490, 1350, 1690],  # /er/
    ],
    dtype=np.float64,
)
FORMANT_BANDWIDTHS_HZ = np.array([80.0, 100.0, 140.0])

# Consonant noise bands (Hz): /s/, /sh/, /f/, /h/-like aspiration.
FRICATIVE_BANDS_HZ = ((4000.0, 7500.0), (2000.0, 5000.0), (1000.0, 7000.0), (500.0, 3500.0))
FRICATIVE_RANGE_S = (0.04, 0.11)
PLOSIVE_RANGE_S = (0.008, 0.02)
ONSET_CONSONANT_PROB = 0.6
PLOSIVE_SHARE = 0.35
CODA_CONSONANT_PROB = 0.25
FRICATIVE_GAIN_DB = (-20.0, -10.0)  # relative to the vowel level

# Voice.
F0_MALE_HZ = (95.0, 135.0)
F0_FEMALE_HZ = (170.0, 235.0)
FEMALE_FORMANT_SCALE = 1.15
DECLINATION = 0.2  # the pitch falls by about this fraction over a phrase
ACCENT_PROB = 0.3
ACCENT_RISE = 0.15
GLOTTAL_POLE = 0.97  # two poles here give the -12 dB/octave glottal source tilt
ASPIRATION_LEVEL = 0.02
TARGET_RMS = 0.05  # of the sounding parts; leaves headroom under full scale


@functools.lru_cache(maxsize=None)
def _bandpass_sos(low_hz: float, high_hz: float, sfreq: float) -> np.ndarray:
    high_hz = min(high_hz, 0.45 * sfreq)
    return scipy.signal.butter(4, [low_hz, high_hz], btype="bandpass", fs=sfreq, output="sos")


def _resonator(freq_hz: float, bandwidth_hz: float, sfreq: float) -> tuple[np.ndarray, np.ndarray]:
    """Second-order formant resonator (Klatt, 1980) with unit gain at 0 Hz."""
    radius = np.exp(-np.pi * bandwidth_hz / sfreq)
    a = np.array([1.0, -2.0 * radius * np.cos(2.0 * np.pi * freq_hz / sfreq), radius**2])
    return np.array([a.sum()]), a


def _smooth_window(n: int, rng: np.random.Generator) -> np.ndarray:
    """A syllable amplitude contour: a fast rise and a slower fall (asymmetric raised cosine)."""
    peak = int(n * rng.uniform(0.2, 0.4))
    rise = 0.5 - 0.5 * np.cos(np.pi * np.arange(peak) / max(peak, 1))
    fall = 0.5 + 0.5 * np.cos(np.pi * np.arange(n - peak) / max(n - peak, 1))
    return np.concatenate([rise, fall])


def _glottal_source(f0: np.ndarray, sfreq: float, rng: np.random.Generator) -> np.ndarray:
    """Pulse train following the pitch contour ``f0`` (samples,), with the glottal spectral tilt."""
    phase = np.cumsum(f0 / sfreq)
    pulses = np.diff(np.floor(phase), prepend=0.0)  # 1 at each completed glottal cycle
    source = scipy.signal.lfilter([1.0], [1.0, -2.0 * GLOTTAL_POLE, GLOTTAL_POLE**2], pulses)
    source = np.diff(source, prepend=0.0)  # lip radiation: +6 dB/octave
    source += ASPIRATION_LEVEL * np.std(source) * rng.standard_normal(source.size)
    return source


def _consonant(n: int, sfreq: float, rng: np.random.Generator, plosive: bool) -> np.ndarray:
    noise = rng.standard_normal(n)
    if not plosive:
        low, high = FRICATIVE_BANDS_HZ[rng.integers(len(FRICATIVE_BANDS_HZ))]
        noise = scipy.signal.sosfilt(_bandpass_sos(low, high, sfreq), noise)
    contour = np.hanning(n) if not plosive else np.exp(-np.arange(n) / (0.3 * n))
    gain = 10 ** (rng.uniform(*FRICATIVE_GAIN_DB) / 20)
    return gain * contour * noise / (np.std(noise) + 1e-12)


def _phrase(n_syllables: int, sfreq: float, f0_base: float, formant_scale: float, rng: np.random.Generator):
    """One phrase: returns audio (samples,) at unit vowel level."""
    durations = np.exp(rng.normal(np.log(SYLLABLE_MEDIAN_S), SYLLABLE_LOG_SD, n_syllables))
    lengths = (np.clip(durations, *SYLLABLE_RANGE_S) * sfreq).astype(int)
    total = int(lengths.sum())
    # Pitch: linear declination over the phrase plus a rise on accented syllables.
    f0 = f0_base * (1.0 + DECLINATION * (0.5 - np.linspace(0.0, 1.0, total)))
    bounds = np.concatenate([[0], np.cumsum(lengths)])
    for start, stop in zip(bounds[:-1], bounds[1:]):
        if rng.random() < ACCENT_PROB:
            f0[start:stop] *= 1.0 + ACCENT_RISE * np.hanning(stop - start)
    source = _glottal_source(f0, sfreq, rng)
    audio = np.zeros(total)
    for start, stop in zip(bounds[:-1], bounds[1:]):
        n = stop - start
        onset = 0
        if rng.random() < ONSET_CONSONANT_PROB:
            plosive = rng.random() < PLOSIVE_SHARE
            span = PLOSIVE_RANGE_S if plosive else FRICATIVE_RANGE_S
            onset = min(int(rng.uniform(*span) * sfreq), n // 3)
            audio[start : start + onset] += _consonant(onset, sfreq, rng, plosive)
        coda = 0
        if rng.random() < CODA_CONSONANT_PROB:
            coda = min(int(rng.uniform(*FRICATIVE_RANGE_S) * sfreq), n // 4)
            audio[stop - coda : stop] += _consonant(coda, sfreq, rng, plosive=False)
        nucleus = slice(start + onset, stop - coda)
        vowel = source[nucleus]
        formants = VOWEL_FORMANTS[rng.integers(len(VOWEL_FORMANTS))] * formant_scale
        for freq, bandwidth in zip(formants, FORMANT_BANDWIDTHS_HZ):
            vowel = scipy.signal.lfilter(*_resonator(freq, bandwidth, sfreq), vowel)
        audio[nucleus] += vowel * _smooth_window(vowel.size, rng)
    return audio


def synthesize_speech(rng: np.random.Generator, duration_s: float, sfreq: int = SPEECH_SFREQ) -> np.ndarray:
    """Speech-like audio from a source-filter model (one speaker per call).

    Parameters
    ----------
    rng : numpy.random.Generator
        The only source of randomness: the same generator state gives the same samples.
    duration_s : float
        Length of the output in seconds.
    sfreq : int
        Sampling rate in Hz (16 kHz, like the stimuli of the SparrKULee pipeline after resampling).

    Returns
    -------
    audio : (samples,) float32 array, ``samples = round(duration_s * sfreq)``, RMS of the sounding
        parts about 0.05.
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    n_samples = int(round(duration_s * sfreq))
    female = rng.random() < 0.5
    f0_base = rng.uniform(*(F0_FEMALE_HZ if female else F0_MALE_HZ))
    formant_scale = FEMALE_FORMANT_SCALE if female else 1.0
    pieces = [np.zeros(int(LEADING_SILENCE_S * sfreq))]
    filled = pieces[0].size
    while filled < n_samples:
        phrase = _phrase(int(rng.integers(*SYLLABLES_PER_PHRASE)), sfreq, f0_base, formant_scale, rng)
        pause = np.zeros(int(rng.uniform(*PAUSE_RANGE_S) * sfreq))
        pieces += [phrase, pause]
        filled += phrase.size + pause.size
    audio = np.concatenate(pieces)[:n_samples]
    sounding = np.abs(audio) > 0
    audio *= TARGET_RMS / (np.sqrt(np.mean(audio[sounding] ** 2)) + 1e-12)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


def stimulus_name(path: str | Path) -> str:
    """A file name turned into a stimulus name valid in ``split_data`` file names (``[a-z0-9_]``)."""
    name = re.sub(r"[^a-z0-9]+", "_", Path(path).stem.lower()).strip("_")
    return name or "stimulus"


def load_stimuli(folder: str | Path, sfreq: int = SPEECH_SFREQ) -> dict[str, np.ndarray]:
    """Read every audio file in ``folder`` (not recursive), as mono float32 at ``sfreq``.

    Parameters
    ----------
    folder : path
        A folder of audio files (``.wav``, ``.flac``, ``.mp3``, ``.ogg``, ...).
    sfreq : int
        Output sampling rate in Hz.

    Returns
    -------
    stimuli : dict
        ``{stimulus_name: (samples,) float32}`` sorted by name; names come from
        :func:`stimulus_name` (lower case, ``[a-z0-9_]``).

    Raises
    ------
    UserError
        The folder does not exist, holds no audio file, a file cannot be decoded, is shorter than
        10 s, or two files map to the same stimulus name.
    """
    import librosa  # slow import, only needed here

    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"stimuli folder {folder} does not exist or is not a folder")
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in AUDIO_EXTENSIONS),
        key=lambda p: (stimulus_name(p), p.name),
    )
    if not files:
        raise UserError(f"stimuli folder {folder} holds no audio file (expected one of {', '.join(AUDIO_EXTENSIONS)})")
    stimuli: dict[str, np.ndarray] = {}
    for path in files:
        name = stimulus_name(path)
        if name in stimuli:
            raise UserError(f"audio file {path} gives the stimulus name {name!r}, which another file already uses")
        try:
            with warnings.catch_warnings():  # librosa warns before falling back to audioread
                warnings.simplefilter("ignore")
                audio, _ = librosa.load(path, sr=sfreq, mono=True)
        except Exception as error:  # librosa raises many types (soundfile, audioread, EOF)
            raise UserError(f"cannot read audio file {path}: {error}") from None
        if audio.size < MIN_STIMULUS_SECONDS * sfreq or not np.all(np.isfinite(audio)):
            raise UserError(
                f"audio file {path} must hold at least {MIN_STIMULUS_SECONDS:g} s of finite samples, "
                f"found {audio.size / sfreq:.1f} s"
            )
        stimuli[name] = audio.astype(np.float32)
    return stimuli
