"""The preprocessed level of the SparrKULee release (``derivatives/``) and its split into ``split_data``.

The release ships, besides the ready ``split_data``, a level that is preprocessed but not yet
split::

    derivatives/preprocessed_eeg/sub-001/ses-shortstories01/
        sub-001_ses-shortstories01_task-listeningActive_run-01_desc-preproc-audio-audiobook_1_eeg.npy
                                                   (channels, time) at 64 Hz: channel-major!
    derivatives/preprocessed_stimuli/audiobook_1_-_mel.npy        (time, 10) at 64 Hz
    derivatives/preprocessed_stimuli/audiobook_1_-_envelope.npy   (time, 1) at 64 Hz

The challenge's ``split_and_normalize.py`` turns it into ``split_data``; :func:`split_derivatives`
does the same, file for file:

* the stimulus of a recording is the part of its file name between ``-audio-`` and ``_eeg.``;
* the EEG is transposed to (time, channels) and only its first 64 channels are kept;
* every array of a recording (EEG, envelope, mel) is cut to the shortest of them, ``n`` samples (they
  may differ by up to :data:`MAX_MISMATCH_S`; a larger difference is an error, not a silent cut);
* the cut is consecutive: train ``int(n * 0.8)`` samples, then val ``int(n * 0.1)``, then test
  ``int(n * 0.1)`` (so up to two samples at the very end are dropped, as the challenge drops them);
* each part is written *unnormalised*, with the dtype it had on disk, as
  ``{split}_-_{subject}_-_{stimulus}_-_{feature}.npy``.

The challenge script computes the train-part mean and standard deviation of each array but saves
the raw cut; :class:`dmf2mel.data.sparrkulee.SplitData` applies that z-score when it reads. Unlike
the script, this module checks everything (missing features, channel count, names that collide)
before it writes anything (channel-major EEG, lengths that agree), and never replaces an existing
file unless asked to.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from tqdm.auto import tqdm

from dmf2mel.data.sparrkulee import (
    N_CHANS,
    N_MELS,
    SFREQ,
    SPLIT_FRACTIONS,
    SPLITS,
    format_filename,
    open_float_npy,
)
from dmf2mel.errors import DataError, UserError
from dmf2mel.io import save_npy
from dmf2mel.validation import check_folder, check_writable

PREPROCESSED_EEG = "preprocessed_eeg"
PREPROCESSED_STIMULI = "preprocessed_stimuli"
#: The longest length difference between a recording's EEG and its stimulus features that is cut to the shortest.
MAX_MISMATCH_S = 10.0
#: The stimulus features the challenge splits, in its order.
STIMULUS_FEATURES = ("envelope", "mel")
_AUDIO_MARK = "-audio-"
_EEG_MARK = "_eeg."


class DerivedRecording(NamedTuple):
    """One preprocessed EEG recording: who, what they heard, and where it is."""

    subject: str
    stimulus: str
    eeg_path: Path


def stimulus_of(eeg_path: str | Path) -> str:
    """The stimulus a preprocessed EEG file names: ``..._desc-preproc-audio-audiobook_1_eeg.npy`` -> ``audiobook_1``."""
    name = Path(eeg_path).name
    if _AUDIO_MARK not in name or _EEG_MARK not in name:
        raise DataError(
            f"{eeg_path}: expected a preprocessed EEG file named '..._desc-preproc-audio-{{stimulus}}_eeg.npy', "
            f"found the name {name!r}"
        )
    return name.split(_EEG_MARK)[0].split(_AUDIO_MARK)[1]


def preprocessed_eeg_name(bids_stem: str, stimulus: str) -> str:
    """The release's name of a preprocessed recording: ``{bids_stem}_desc-preproc-audio-{stimulus}_eeg.npy``.

    ``bids_stem`` is the raw file's name up to ``_eeg``, e.g.
    ``sub-001_ses-shortstories01_task-listeningActive_run-01``.
    """
    return f"{bids_stem}_desc-preproc{_AUDIO_MARK}{stimulus}_eeg.npy"


def feature_path(derivatives: str | Path, stimulus: str, feature: str) -> Path:
    """``derivatives/preprocessed_stimuli/{stimulus}_-_{feature}.npy``."""
    return Path(derivatives) / PREPROCESSED_STIMULI / f"{stimulus}_-_{feature}.npy"


def find_recordings(derivatives: str | Path) -> list[DerivedRecording]:
    """Every ``preprocessed_eeg/sub-*/*/*.npy`` of a derivatives folder, sorted by path."""
    derivatives = Path(derivatives)
    if not derivatives.is_dir():
        raise UserError(f"{derivatives}: not a folder (expected the release's derivatives folder)")
    eeg_folder = derivatives / PREPROCESSED_EEG
    recordings = []
    for path in sorted(eeg_folder.glob("sub-*/*/*.npy")):
        recordings.append(DerivedRecording(path.parent.parent.name, stimulus_of(path), path))
    if not recordings:
        raise DataError(
            f"{derivatives}: no preprocessed recordings found (expected "
            f"{PREPROCESSED_EEG}/sub-XXX/ses-YYY/*_desc-preproc-audio-{{stimulus}}_eeg.npy)"
        )
    return recordings


def split_lengths(n_samples: int, fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> dict[str, slice]:
    """The challenge's cut of ``n_samples``: consecutive parts of ``int(n_samples * fraction)`` samples.

    >>> split_lengths(1001)
    {'train': slice(0, 800, None), 'val': slice(800, 900, None), 'test': slice(900, 1000, None)}
    """
    bounds, start = {}, 0
    for split, fraction in zip(SPLITS, fractions):
        end = start + int(n_samples * fraction)
        bounds[split] = slice(start, end)
        start = end
    return bounds


def _open_recording(derivatives: Path, rec: DerivedRecording, features: tuple[str, ...]) -> dict[str, np.ndarray]:
    """Memory-mapped arrays of one recording, all time-major, checked: ``{"eeg": (T, 64), feature: (T, k)}``."""
    eeg = open_float_npy(rec.eeg_path, "a preprocessed EEG recording")
    if eeg.ndim != 2 or eeg.shape[0] < N_CHANS:
        raise DataError(
            f"{rec.eeg_path}: expected (channels, time) with at least {N_CHANS} EEG channels, found shape {eeg.shape}"
        )
    if eeg.shape[0] > eeg.shape[1]:
        raise DataError(
            f"{rec.eeg_path}: expected channel-major EEG (channels, time) as the release stores it, found shape "
            f"{eeg.shape}: more rows than columns, so it looks time-major (time, channels); transpose it"
        )
    arrays = {"eeg": eeg.T[:, :N_CHANS]}
    for feature in features:
        path = feature_path(derivatives, rec.stimulus, feature)
        if not path.is_file():
            raise DataError(
                f"{rec.eeg_path}: its stimulus feature {PREPROCESSED_STIMULI}/{path.name} is missing (recording "
                f"{rec.subject} / {rec.stimulus} needs {', '.join(features)} of stimulus {rec.stimulus!r})"
            )
        array = open_float_npy(path, f"the {feature} of {rec.stimulus}")
        columns = array.shape[1] if array.ndim == 2 else None
        expected = {
            "mel": ("(time, 10)", array.ndim == 2 and columns == N_MELS),
            "envelope": ("(time,) or (time, 1)", array.ndim == 1 or columns == 1),
        }
        shape, ok = expected.get(feature, ("(time,) or (time, columns)", array.ndim in (1, 2)))
        if not ok:
            raise DataError(f"{path}: expected a time-major {feature} of shape {shape}, found shape {array.shape}")
        arrays[feature] = array
    return arrays


def _check_lengths(rec: DerivedRecording, arrays: dict[str, np.ndarray]) -> None:
    """The EEG and the stimulus features of a recording may differ by up to :data:`MAX_MISMATCH_S` (the epoch runs on
    a little after the sound ends); more means a wrong stimulus, rate or layout, which cutting to the shortest would
    hide."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if max(lengths.values()) - min(lengths.values()) > MAX_MISMATCH_S * SFREQ:
        found = ", ".join(f"{name} {n}" for name, n in lengths.items())
        raise DataError(
            f"{rec.eeg_path}: the EEG and the features of {rec.stimulus!r} differ in length by more than "
            f"{MAX_MISMATCH_S:g} s at {SFREQ} Hz ({found} samples); check the stimulus, its sampling rate and the "
            "EEG's layout"
        )


def split_derivatives(
    derivatives: str | Path,
    out: str | Path,
    overwrite: bool = False,
    features: tuple[str, ...] = STIMULUS_FEATURES,
    progress: bool = True,
) -> list[Path]:
    """Split the release's preprocessed level into ``split_data``, exactly as the challenge's script does.

    Parameters
    ----------
    derivatives : path
        The folder holding ``preprocessed_eeg/`` and ``preprocessed_stimuli/``.
    out : path
        The ``split_data`` folder to write (created if missing).
    overwrite : bool
        Replace files that already exist. Without it an existing file is an error, raised before
        anything is written.
    features : tuple of str
        Stimulus features to split with the EEG (the challenge: envelope and mel).
    progress : bool
        A progress bar over the recordings.

    Returns
    -------
    The written paths. Every file is written atomically; all inputs are checked first, so bad input
    leaves ``out`` as it was.
    """
    derivatives, out = Path(derivatives), check_folder("out", out)
    recordings = find_recordings(derivatives)
    check_writable("out", out)
    names: dict[Path, Path] = {}
    for rec in recordings:
        _check_lengths(rec, _open_recording(derivatives, rec, features))
        for split in SPLITS:
            for feature in ("eeg", *features):
                target = out / format_filename(split, rec.subject, rec.stimulus, feature)
                if target in names:
                    raise DataError(
                        f"{rec.eeg_path}: {rec.subject} heard {rec.stimulus!r} in another recording too "
                        f"({names[target]}); both would be written to {target.name}"
                    )
                names[target] = rec.eeg_path
    existing = [path for path in names if path.exists()]
    if existing and not overwrite:
        raise UserError(
            f"out: {len(existing)} of the {len(names)} files to write to {out} already exist "
            f"(first: {existing[0].name}); overwrite=True replaces them",
            parameter="out",
        )
    written = []
    for rec in tqdm(recordings, desc="splitting recordings", unit="recording", disable=not progress):
        arrays = _open_recording(derivatives, rec, features)
        n_samples = min(len(array) for array in arrays.values())
        for split, part in split_lengths(n_samples).items():
            for feature, array in arrays.items():
                path = out / format_filename(split, rec.subject, rec.stimulus, feature)
                written.append(save_npy(path, np.ascontiguousarray(array[part])))
    return written


__all__ = [
    "PREPROCESSED_EEG",
    "PREPROCESSED_STIMULI",
    "STIMULUS_FEATURES",
    "DerivedRecording",
    "feature_path",
    "find_recordings",
    "preprocessed_eeg_name",
    "split_derivatives",
    "split_lengths",
    "stimulus_of",
]
