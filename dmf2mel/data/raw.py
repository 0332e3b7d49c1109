"""The raw level of the SparrKULee release (BIDS) and the chain that turns it into ``derivatives/``.

The release's raw level is a BIDS dataset::

    sub-001/ses-shortstories01/eeg/sub-001_ses-shortstories01_task-listeningActive_run-01_eeg.bdf.gz
    sub-001/ses-shortstories01/eeg/sub-001_ses-shortstories01_task-listeningActive_run-01_events.tsv
    stimuli/eeg/audiobook_1.npz.gz      {"audio": (samples,), "fs": rate}
    stimuli/eeg/t_audiobook_1.npz.gz    {"audio": the trigger pulse train at the same rate, "fs": rate}

Each recording's ``events.tsv`` names its stimulus and trigger files in the columns ``stim_file``
and ``trigger_file`` (relative to ``stimuli/eeg/``). The BioSemi ``.bdf`` holds 64 EEG channels
(1024 Hz) and the ``Status`` channel, whose trigger bits carry the same pulse train as the
trigger file, so the EEG can be aligned with the sound sample by sample.

:func:`preprocess_recording` runs the challenge's chain (its ``sparrKULee.py``, built on
brain_pipe), written here with MNE, numpy and scipy:

1. load the ``.bdf(.gz)``; keep the first 64 channels, in microvolts, and the ``Status`` channel;
2. high-pass: first-order Butterworth at 0.5 Hz, forward and backward (zero phase);
3. interpolate artifacts: runs of samples beyond 500 µV on a channel are replaced by a straight
   line between their ends;
4. align with the stimulus: find the trigger onsets in ``Status`` and in the trigger file; the EEG
   between the first and the last trigger is linearly resampled so that it lasts exactly as long
   as the stimulus's triggers say (this corrects the drift between the two clocks); the epoch runs
   from the first trigger (the start of the stimulus) to 2 s after the last one;
5. multichannel Wiener filter eye-artifact removal (:mod:`dmf2mel.data.mwf`);
6. common average reference;
7. polyphase resampling to 64 Hz.

Stimuli get the ICASSP mel spectrogram and the envelope (:mod:`dmf2mel.data.features`) at 64 Hz.
The output is the release's ``derivatives/`` level, ready for :mod:`dmf2mel.data.derivatives`::

    OUT/preprocessed_eeg/sub-001/ses-shortstories01/{stem}_desc-preproc-audio-audiobook_1_eeg.npy   (64, time)
    OUT/preprocessed_stimuli/audiobook_1_-_mel.npy, audiobook_1_-_envelope.npy                     (time, k)
"""

from __future__ import annotations

import csv
import gzip
import io
import math
import shutil
import tempfile
import zipfile
import zlib
from fractions import Fraction
from pathlib import Path
from typing import NamedTuple

import mne
import numpy as np
import scipy.interpolate
import scipy.signal
from tqdm.auto import tqdm

from dmf2mel.data import features, mwf
from dmf2mel.data.derivatives import PREPROCESSED_EEG, feature_path, preprocessed_eeg_name
from dmf2mel.errors import DataError, UserError
from dmf2mel.io import save_npy
from dmf2mel.validation import check_folder, check_writable

N_CHANS = 64
STATUS_CHANNEL = "Status"
VOLTS_TO_MICROVOLTS = 1e6
HIGHPASS_HZ = 0.5
ARTIFACT_UV = 500.0
EPOCH_TAIL_S = 2.0
TARGET_SFREQ = 64
#: BioSemi keeps the trigger lines in the lower 16 bits of Status; the upper bits are system flags.
TRIGGER_BITS = 0xFFFF
STIMULUS_FOLDER = ("stimuli", "eeg")
STIMULUS_FEATURES = ("mel", "envelope")


class RawRecording(NamedTuple):
    """One raw EEG recording of the BIDS dataset."""

    subject: str
    session: str
    stem: str  # the file name up to ``_eeg``: sub-001_ses-..._task-..._run-01
    bdf_path: Path

    @property
    def events_path(self) -> Path:
        return self.bdf_path.parent / f"{self.stem}_events.tsv"


class StimulusFiles(NamedTuple):
    """The stimulus one recording heard: its name and its audio and trigger files."""

    name: str
    audio_path: Path
    trigger_path: Path


# --- finding and reading the files --------------------------------------------------------------


def find_raw_recordings(bids_root: str | Path) -> list[RawRecording]:
    """Every ``sub-*/*/eeg/*_eeg.bdf`` or ``.bdf.gz`` (resting-state recordings excluded), sorted."""
    bids_root = Path(bids_root)
    if not bids_root.is_dir():
        raise UserError(f"{bids_root}: not a folder (expected the root of the raw SparrKULee BIDS dataset)")
    recordings = []
    for path in sorted(bids_root.glob("sub-*/*/eeg/*_eeg.bdf*")):
        if path.name.endswith((".bdf", ".bdf.gz")) and "restingState" not in path.name:
            recordings.append(
                RawRecording(path.parents[2].name, path.parents[1].name, path.name.split("_eeg")[0], path)
            )
    if not recordings:
        raise DataError(
            f"{bids_root}: no raw recordings found (expected sub-XXX/ses-YYY/eeg/*_eeg.bdf or *_eeg.bdf.gz)"
        )
    return recordings


def _stimulus_file(bids_root: Path, entry: str) -> Path:
    """A path from ``events.tsv``, relative to ``stimuli/eeg/`` unless it already names those folders."""
    parts = entry.split("/")
    return bids_root.joinpath(*[folder for folder in STIMULUS_FOLDER if folder not in parts], *parts)


def read_events(bids_root: str | Path, rec: RawRecording) -> list[StimulusFiles]:
    """The stimuli of a recording, from the ``stim_file`` and ``trigger_file`` columns of its ``events.tsv``."""
    bids_root = Path(bids_root)
    path = rec.events_path
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh, dialect="excel-tab"))
    except FileNotFoundError:
        raise DataError(f"{rec.bdf_path}: its events file {path.name} is missing (it names the stimulus)") from None
    stimuli = []
    for row in rows:
        stim, trigger = row.get("stim_file"), row.get("trigger_file")
        if stim in (None, "", "n/a"):
            continue
        if trigger in (None, "", "n/a"):
            raise DataError(f"{path}: the row of {stim} names no trigger_file (needed to align the EEG with the sound)")
        audio_path, trigger_path = _stimulus_file(bids_root, stim), _stimulus_file(bids_root, trigger)
        for what, file in (("stimulus", audio_path), ("trigger", trigger_path)):
            if not file.is_file():
                raise DataError(f"{rec.bdf_path}: its {what} file {file} (named in {path.name}) is missing")
        stimuli.append(StimulusFiles(audio_path.name.split(".")[0], audio_path, trigger_path))
    if not stimuli:
        raise DataError(f"{path}: names no stimulus (expected a stim_file and a trigger_file column)")
    return stimuli


def _read_maybe_gzip(path: Path) -> bytes:
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:
        raise DataError(f"{path}: not a readable {'gzip ' if path.name.endswith('.gz') else ''}file ({err})") from None


def load_audio_npz(path: str | Path, mix_down=None) -> tuple[np.ndarray, float]:
    """``(audio (samples,) float64, fs)`` of a stimulus or trigger ``.npz`` / ``.npz.gz`` (keys ``audio`` and ``fs``).

    Parameters
    ----------
    path : path
    mix_down : callable, optional
        Audio of several channels, ``(samples, channels)`` or ``(channels, samples)`` (the shorter axis is the
        channels), is averaged to one and ``mix_down`` is called with a note saying so. Without it (trigger files:
        one pulse train), several channels are an error.

    Raises
    ------
    DataError
        Naming the file: unreadable, missing arrays, several channels (without ``mix_down``), or a sampling rate
        that is not a finite number above 0.
    """
    path = Path(path)
    try:
        with np.load(io.BytesIO(_read_maybe_gzip(path)), allow_pickle=False) as archive:
            audio, fs = np.asarray(archive["audio"]), np.asarray(archive["fs"])
    except KeyError as err:
        raise DataError(f"{path}: expected an .npz with the arrays 'audio' and 'fs', missing {err}") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a readable .npz archive ({err})") from None
    if audio.dtype.kind not in "fiu" or fs.dtype.kind not in "fiu" or fs.size != 1:
        raise DataError(
            f"{path}: expected real-valued 'audio' and one sampling rate 'fs', found dtypes {audio.dtype} "
            f"and {fs.dtype} (fs of shape {fs.shape})"
        )
    fs = float(fs.reshape(()))
    if not math.isfinite(fs) or fs <= 0:
        raise DataError(f"{path}: its sampling rate fs is {fs:g}; expected a finite number of Hz above 0")
    audio = audio.astype(np.float64)
    if audio.ndim == 2 and min(audio.shape) > 1:
        channels = int(np.argmin(audio.shape))
        if mix_down is None:
            raise DataError(f"{path}: expected one channel, found audio of shape {audio.shape}")
        mix_down(f"{path}: {audio.shape[channels]} audio channels (shape {audio.shape}) mixed down to one")
        audio = audio.mean(axis=channels)
    if audio.ndim > 2 or audio.size == 0:
        raise DataError(f"{path}: expected audio of shape (samples,) or (samples, channels), found {audio.shape}")
    return audio.reshape(-1), fs


def read_bdf(path: str | Path) -> tuple[np.ndarray, np.ndarray, float]:
    """Load a BioSemi ``.bdf`` or ``.bdf.gz``.

    Returns
    -------
    eeg : (64, time) float64 in microvolts, the first 64 channels before ``Status``.
    status : (time,) int64, the trigger bits of the ``Status`` channel.
    sfreq : float
    """
    path = Path(path)
    with tempfile.TemporaryDirectory(prefix="dmf2mel-bdf-") as tmp:
        source = path
        if path.name.endswith(".gz"):
            source = Path(tmp) / path.name[: -len(".gz")]
            try:
                with gzip.open(path, "rb") as fh_in, open(source, "wb") as fh_out:
                    shutil.copyfileobj(fh_in, fh_out)
            except (OSError, EOFError, gzip.BadGzipFile, zlib.error) as err:  # zlib: a corrupt compressed body
                raise DataError(f"{path}: not a readable gzip file ({err})") from None
        try:
            raw = mne.io.read_raw_bdf(source, preload=True, verbose="error")
        except Exception as err:  # MNE raises several types for a broken header
            raise DataError(f"{path}: not a readable BioSemi .bdf file ({type(err).__name__}: {err})") from None
    names = raw.ch_names
    if STATUS_CHANNEL not in names:
        raise DataError(
            f"{path}: no {STATUS_CHANNEL!r} channel (the BioSemi trigger channel), found {len(names)} channels"
        )
    eeg_names = [n for n in names if n != STATUS_CHANNEL]
    if len(eeg_names) < N_CHANS:
        raise DataError(
            f"{path}: expected at least {N_CHANS} EEG channels besides {STATUS_CHANNEL}, found {len(eeg_names)}"
        )
    eeg = raw.get_data(picks=eeg_names[:N_CHANS]) * VOLTS_TO_MICROVOLTS
    status = np.rint(raw.get_data(picks=[STATUS_CHANNEL])[0]).astype(np.int64) & TRIGGER_BITS
    return eeg, status, float(raw.info["sfreq"])


# --- the steps ----------------------------------------------------------------------------------


def highpass(eeg: np.ndarray, sfreq: float, cutoff: float = HIGHPASS_HZ) -> np.ndarray:
    """First-order Butterworth high-pass, forward and backward (zero phase), along time of (channels, time).

    Padding as MATLAB's ``filtfilt`` (odd extension of 3 samples for one first-order section).
    """
    sos = scipy.signal.butter(1, cutoff, "highpass", fs=sfreq, output="sos")
    padlen = 3 * (2 * len(sos) - min((sos[:, 2] == 0).sum(), (sos[:, 5] == 0).sum()))
    return scipy.signal.sosfiltfilt(sos, eeg, axis=-1, padtype="odd", padlen=padlen)


def interpolate_artifacts(eeg: np.ndarray, threshold: float = ARTIFACT_UV) -> np.ndarray:
    """Replace each run of samples beyond ``threshold`` µV by a line between the run's two ends (per channel)."""
    eeg = np.array(eeg, dtype=np.float64)
    for channel in eeg:
        beyond = np.abs(channel) > threshold
        if not beyond.any():
            continue
        edges = np.diff(np.concatenate(([0], beyond.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1) - 1
        for start, stop in zip(starts, stops):
            channel[start + 1 : stop] = np.linspace(channel[start], channel[stop], max(stop - start - 1, 0))
    return eeg


def eeg_pulses(status: np.ndarray) -> np.ndarray:
    """The BioSemi ``Status`` trigger bits as 0/1: the most common value below 256 is "off", anything else "on"."""
    values, counts = np.unique(status, return_counts=True)
    valid = (values > 0) & (values < 256)
    if not valid.any():
        return np.zeros(len(status), dtype=np.int8)
    idle = values[valid][np.argmax(counts[valid])]
    return (status != idle).astype(np.int8)


def pulse_onsets(pulses: np.ndarray) -> np.ndarray:
    """Sample indices where a pulse train (values > 0.5 are "on") switches on."""
    on = np.flatnonzero(np.asarray(pulses) > 0.5)
    if on.size == 0:
        return on
    return on[np.concatenate(([True], np.diff(on) > 1))]


def align_to_stimulus(
    eeg: np.ndarray,
    sfreq: float,
    eeg_onsets: np.ndarray,
    stimulus_onsets: np.ndarray,
    stimulus_sfreq: float,
    source: Path,
) -> np.ndarray:
    """Cut the epoch of one stimulus out of a recording, corrected for clock drift.

    The EEG between its first and last trigger onset is resampled (linear interpolation) to the
    duration between the first and last trigger of the stimulus; the 2 s after the last trigger
    follow unchanged. One trigger lost at either end of the EEG is restored, and a spurious
    trigger at its very first sample is dropped, as in the SparrKULee pipeline.

    Returns the epoch (channels, time) starting at the stimulus's first trigger.
    """
    eeg_onsets = np.asarray(eeg_onsets)
    if len(stimulus_onsets) < 2:
        raise DataError(
            f"{source}: the stimulus's trigger file has {len(stimulus_onsets)} trigger(s); at least 2 are needed"
        )
    if len(eeg_onsets) == len(stimulus_onsets) - 1 and len(eeg_onsets) >= 2:
        last_eeg = (eeg_onsets[-1] - eeg_onsets[-2]) / sfreq
        last_stimulus = (stimulus_onsets[-1] - stimulus_onsets[-2]) / stimulus_sfreq
        if 0.99 * last_eeg < last_stimulus < 1.01 * last_eeg:  # the last one is missing
            eeg_onsets = np.append(eeg_onsets, eeg_onsets[-1] + int(round(last_stimulus * sfreq)))
        else:  # the first one is missing
            eeg_onsets = np.insert(eeg_onsets, 0, eeg_onsets[0] - int(sfreq))
    elif len(eeg_onsets) == len(stimulus_onsets) + 1 and eeg_onsets[0] == 0:
        eeg_onsets = eeg_onsets[1:]
    if len(eeg_onsets) != len(stimulus_onsets):
        raise DataError(
            f"{source}: {len(eeg_onsets)} triggers in the EEG's {STATUS_CHANNEL} channel but {len(stimulus_onsets)} in "
            "the stimulus's trigger file; cannot align the EEG with the sound"
        )
    first, last = int(eeg_onsets[0]), int(eeg_onsets[-1])
    expected = int(math.ceil((stimulus_onsets[-1] - stimulus_onsets[0]) / stimulus_sfreq * sfreq))
    between = eeg[:, first:last]
    warp = scipy.interpolate.interp1d(np.linspace(0, 1, between.shape[1]), between, kind="linear", axis=1)
    tail = eeg[:, last : last + int(EPOCH_TAIL_S * sfreq)]
    return np.concatenate([warp(np.linspace(0, 1, expected)), tail], axis=1)


def common_average(eeg: np.ndarray) -> np.ndarray:
    """Subtract the mean over channels at every sample (channels, time)."""
    return eeg - eeg.mean(axis=0, keepdims=True)


def resample(eeg: np.ndarray, sfreq: float, target_sfreq: float = TARGET_SFREQ, axis: int = -1) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``) from ``sfreq`` to ``target_sfreq``."""
    ratio = Fraction(target_sfreq / sfreq).limit_denominator(100_000)
    return scipy.signal.resample_poly(eeg, ratio.numerator, ratio.denominator, axis=axis)


# --- one recording, the whole dataset -----------------------------------------------------------


def preprocess_eeg(
    eeg: np.ndarray,
    status: np.ndarray,
    sfreq: float,
    stimulus_triggers: np.ndarray,
    stimulus_sfreq: float,
    source: Path,
    use_mwf: bool = True,
    steps: dict | None = None,
) -> np.ndarray:
    """Steps 2-7 on one recording's EEG and Status for one stimulus.

    Parameters
    ----------
    eeg : (64, time) array in µV; status : (time,) Status trigger bits; sfreq : their rate in Hz
    stimulus_triggers : (samples,) the stimulus's trigger pulse train; stimulus_sfreq : its rate
    source : path
        The recording's file, named in error messages.
    use_mwf : bool
        Run the MWF eye-artifact removal.
    steps : dict, optional
        If given, filled with ``{step name: ((64, time) array, rate)}`` after every step, in order
        (for teaching: it holds several copies of the recording).

    Returns
    -------
    (64, time) float64 at 64 Hz, from the stimulus's first trigger to 2 s after its last.
    """

    def record(name: str, data: np.ndarray, rate: float) -> None:
        if steps is not None:
            steps[name] = (data, rate)

    record("loaded", eeg, sfreq)
    eeg = highpass(eeg, sfreq)
    record("high-passed", eeg, sfreq)
    eeg = interpolate_artifacts(eeg)
    record("artifacts interpolated", eeg, sfreq)
    epoch = align_to_stimulus(
        eeg, sfreq, pulse_onsets(eeg_pulses(status)), pulse_onsets(stimulus_triggers), stimulus_sfreq, source
    )
    record("aligned epoch", epoch, sfreq)
    if use_mwf:
        epoch, _ = mwf.remove_artifacts(epoch, sfreq)
        record("MWF", epoch, sfreq)
    epoch = common_average(epoch)
    record("common average", epoch, sfreq)
    out = resample(epoch, sfreq)
    record("64 Hz", out, TARGET_SFREQ)
    return out


def stimulus_features(audio: np.ndarray, sfreq: float) -> dict[str, np.ndarray]:
    """``{"mel": (time, 10), "envelope": (time, 1)}`` float32 at 64 Hz (the ICASSP recipes)."""
    return {"mel": features.mel_spectrogram(audio, sfreq), "envelope": features.envelope(audio, sfreq)[:, None]}


def eeg_output_path(out: str | Path, rec: RawRecording, stimulus: str) -> Path:
    """``OUT/preprocessed_eeg/sub-XXX/ses-YYY/{stem}_desc-preproc-audio-{stimulus}_eeg.npy``."""
    return Path(out) / PREPROCESSED_EEG / rec.subject / rec.session / preprocessed_eeg_name(rec.stem, stimulus)


class PreprocessReport(NamedTuple):
    """What :func:`preprocess_bids` did: files written, recordings skipped (already done), failures."""

    written: list[Path]
    skipped: list[Path]
    failed: list[tuple[Path, str]]


def preprocess_bids(
    bids_root: str | Path,
    out: str | Path,
    overwrite: bool = False,
    use_mwf: bool = True,
    progress: bool = True,
    report=print,
) -> PreprocessReport:
    """Preprocess every raw recording of a SparrKULee BIDS dataset into ``out`` (the ``derivatives`` level).

    Parameters
    ----------
    bids_root : path
        The root of the BIDS dataset (``sub-*/``, ``stimuli/``).
    out : path
        The derivatives folder to write (``preprocessed_eeg/``, ``preprocessed_stimuli/``).
    overwrite : bool
        Redo recordings whose output exists. Without it they are skipped (so a run that stopped
        half-way can be resumed).
    use_mwf : bool
        Run the MWF eye-artifact removal (step 5).
    progress : bool
        A progress bar over the recordings.
    report : callable
        Called with one line per failed recording (file and reason).

    Returns
    -------
    A :class:`PreprocessReport`. A recording that fails is reported and skipped; it leaves no file
    (every file is written atomically, and a recording's files only once all its stimuli worked).
    """
    bids_root, out = Path(bids_root), check_folder("out", out)
    recordings = find_raw_recordings(bids_root)
    check_writable("out", out)
    written, skipped, failed = [], [], []
    done_stimuli: set[str] = set()
    bar = tqdm(recordings, desc="preprocessing recordings", unit="recording", disable=not progress)
    for rec in bar:
        bar.set_postfix_str(rec.stem)
        try:
            stimuli = read_events(bids_root, rec)
            targets = [eeg_output_path(out, rec, stim.name) for stim in stimuli]
            if not overwrite and all(path.exists() for path in targets):
                skipped.extend(targets)
                continue
            eeg, status, sfreq = read_bdf(rec.bdf_path)
            results = {}
            for stim, target in zip(stimuli, targets):
                triggers, trigger_sfreq = load_audio_npz(stim.trigger_path)
                results[target] = preprocess_eeg(eeg, status, sfreq, triggers, trigger_sfreq, rec.bdf_path, use_mwf)
                if stim.name not in done_stimuli:
                    audio, audio_sfreq = load_audio_npz(stim.audio_path, mix_down=lambda note: report(f"note: {note}"))
                    for name, array in stimulus_features(audio, audio_sfreq).items():
                        path = feature_path(out, stim.name, name)
                        if overwrite or not path.exists():
                            written.append(save_npy(path, array))
                    done_stimuli.add(stim.name)
            for target, array in results.items():
                written.append(save_npy(target, array))
        except (
            DataError,
            ValueError,
            ArithmeticError,
            OSError,
        ) as err:  # this recording's fault: go on with the others
            message = str(err) if str(rec.bdf_path) in str(err) else f"{rec.bdf_path}: {err}"
            failed.append((rec.bdf_path, message))
            report(f"skipped {message}")
    return PreprocessReport(written, skipped, failed)


__all__ = [
    "PreprocessReport",
    "RawRecording",
    "StimulusFiles",
    "align_to_stimulus",
    "common_average",
    "eeg_output_path",
    "eeg_pulses",
    "find_raw_recordings",
    "highpass",
    "interpolate_artifacts",
    "load_audio_npz",
    "preprocess_bids",
    "preprocess_eeg",
    "pulse_onsets",
    "read_bdf",
    "read_events",
    "resample",
    "stimulus_features",
]
