"""The SparrKULee ``split_data`` layout: names, validation, normalisation, windows, challenge files.

The public SparrKULee release (Accou et al., 2024) and the ICASSP auditory-EEG challenges ship each
recording as three time-split parts per feature::

    {split}_-_{subject}_-_{stimulus}_-_{feature}.npy
    train_-_sub-001_-_audiobook_1_-_mel.npy     (T, 10) at 64 Hz
    train_-_sub-001_-_audiobook_1_-_eeg.npy     (T, 64) at 64 Hz, time-major

with the first 80 % of a recording in ``train``, the next 10 % in ``val`` and the last 10 % in
``test``. This module reads that layout (memory-mapped, so memory does not grow with the number of
recordings), validates every array it hands out, trims EEG/feature pairs that differ by a few
samples, and z-scores each recording with the statistics of its own *train* part — the public
challenge script computes those statistics but never saves the normalised arrays, so every user
re-derives them; here it is one method, :meth:`SplitData.pair`.

It also reads and writes the ICASSP-2024 regression test-set format as released::

    TASK2_regression/sub-XXX_mapping.json                 {segment_id: {"eeg": eeg_id}}
    TASK2_regression/preprocessed_eeg/sub-XXX_eeg.npz     {eeg_id: (1920, 64) EEG}

The subject id is the part of the mapping file's name before ``_mapping.json`` (the EEG archive
carries an ``_eeg`` suffix, so its stem is *not* the subject id). Predictions go back as one JSON
``sub-XXX.json`` ``{segment_id: mel}`` per subject.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from pathlib import Path
from typing import Iterable, NamedTuple

import numpy as np

from dmf2mel.errors import DataError, UserError
from dmf2mel.io import atomic_path, save_json, save_npy

SPLITS = ("train", "val", "test")
FEATURES = ("eeg", "mel", "envelope")
SFREQ = 64
N_CHANS = 64
N_MELS = 10
SPLIT_FRACTIONS = (0.8, 0.1, 0.1)
METADATA_FILE = "dmf2mel_corpus.json"
SEPARATOR = "_-_"
#: Blocks of bytes read from each file for :meth:`SplitData.fingerprint` (the first holds the .npy header).
FINGERPRINT_BLOCKS = 8
FINGERPRINT_BLOCK_BYTES = 4096
# Values are checked for NaN/inf this many samples at a time, so validation never loads a whole file.
_CHECK_CHUNK = 65536

_NAME = re.compile(
    r"^(?P<split>train|val|test)_-_(?P<subject>sub-[A-Za-z0-9]+)_-_(?P<stimulus>.+?)_-_(?P<feature>eeg|mel|envelope)\.npy$"
)


class FileKey(NamedTuple):
    """The four parts of a ``split_data`` file name."""

    split: str
    subject: str
    stimulus: str
    feature: str


class Recording(NamedTuple):
    """One subject listening to one stimulus."""

    subject: str
    stimulus: str


def parse_filename(name: str) -> FileKey | None:
    """Parse ``{split}_-_{subject}_-_{stimulus}_-_{feature}.npy``; ``None`` for any other name.

    >>> parse_filename("train_-_sub-001_-_audiobook_7_5_-_mel.npy")
    FileKey(split='train', subject='sub-001', stimulus='audiobook_7_5', feature='mel')
    """
    match = _NAME.match(Path(name).name)
    if match is None or SEPARATOR in match["stimulus"]:
        return None
    return FileKey(match["split"], match["subject"], match["stimulus"], match["feature"])


def format_filename(split: str, subject: str, stimulus: str, feature: str) -> str:
    """The ``split_data`` file name of one part of one recording."""
    name = SEPARATOR.join((split, subject, stimulus, feature)) + ".npy"
    if parse_filename(name) != (split, subject, stimulus, feature):
        raise UserError(
            f"cannot name a split_data file from split={split!r}, subject={subject!r}, stimulus={stimulus!r}, "
            f"feature={feature!r}: expected split in {SPLITS}, subject like 'sub-001', feature in {FEATURES}, "
            f"and a stimulus name without {SEPARATOR!r}"
        )
    return name


def split_bounds(n_samples: int, fractions: tuple[float, float, float] = SPLIT_FRACTIONS) -> dict[str, slice]:
    """Time split of a recording of ``n_samples``: first 80 % train, next 10 % val, last 10 % test."""
    train_end = int(round(n_samples * fractions[0]))
    val_end = int(round(n_samples * (fractions[0] + fractions[1])))
    return {"train": slice(0, train_end), "val": slice(train_end, val_end), "test": slice(val_end, n_samples)}


def write_recording(
    folder: str | Path,
    subject: str,
    stimulus: str,
    eeg: np.ndarray,
    mel: np.ndarray,
    envelope: np.ndarray | None = None,
    dtype=np.float32,
) -> list[Path]:
    """Cut one recording 80/10/10 in time and write its parts in the ``split_data`` layout.

    Parameters
    ----------
    folder : path
        The ``split_data`` folder (created if missing).
    subject, stimulus : str
        E.g. ``"sub-001"`` and ``"audiobook_1"``.
    eeg : (time, channels) array at 64 Hz
    mel : (time, n_mels) array at 64 Hz, same length as ``eeg``
    envelope : (time,) or (time, 1) array, optional
    dtype : numpy dtype written to disk (the real release uses float64; float32 halves the size).

    Returns
    -------
    The written paths. Each file is written atomically.
    """
    folder = Path(folder)
    arrays = {"eeg": np.asarray(eeg), "mel": np.asarray(mel)}
    if envelope is not None:
        arrays["envelope"] = np.asarray(envelope).reshape(len(envelope), 1)
    n_samples = len(arrays["eeg"])
    for feature, array in arrays.items():
        if array.ndim != 2 or len(array) != n_samples:
            raise UserError(
                f"write_recording: {feature} must be (time, columns) with {n_samples} samples like the EEG, "
                f"got shape {array.shape}"
            )
    written = []
    for split, part in split_bounds(n_samples).items():
        for feature, array in arrays.items():
            path = folder / format_filename(split, subject, stimulus, feature)
            written.append(save_npy(path, np.ascontiguousarray(array[part], dtype=dtype)))
    return written


def write_metadata(folder: str | Path, meta: dict) -> Path:
    """Write the corpus metadata file (preset, seed, version, held-out subjects, ...) atomically."""
    return save_json(Path(folder) / METADATA_FILE, meta)


def read_metadata(folder: str | Path) -> dict | None:
    """The corpus metadata of ``folder``, or ``None`` when it has none (e.g. the real SparrKULee data)."""
    path = Path(folder) / METADATA_FILE
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: not a valid JSON metadata file ({err})") from None
    if not isinstance(meta, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(meta).__name__}")
    return meta


def _expected_columns(feature: str, n_chans: int, n_mels: int) -> int:
    return {"eeg": n_chans, "mel": n_mels, "envelope": 1}[feature]


def open_float_npy(path: Path, what: str | None = None) -> np.ndarray:
    """Memory-map a ``.npy`` file of floats; :class:`DataError` naming the file (and ``what`` it should hold) if it
    is missing, unreadable or not floating point."""
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found" + (f" ({what})" if what else "")) from None
    except (ValueError, OSError, EOFError) as err:
        raise DataError(f"{path}: not a readable .npy array (truncated or corrupt?): {err}") from None
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{path}: expected a floating-point array, found dtype {array.dtype}")
    return array


def load_array(path: str | Path, feature: str, n_chans: int = N_CHANS, n_mels: int = N_MELS) -> np.ndarray:
    """Memory-map one ``split_data`` array and validate it.

    Returns a read-only (time, columns) array (an envelope stored as (time,) comes back as
    (time, 1)). Raises :class:`DataError` naming the file for a corrupt or truncated file, a
    non-float dtype, a wrong number of columns, or NaN/infinite values.
    """
    path = Path(path)
    array = open_float_npy(path)
    if feature == "envelope" and array.ndim == 1:
        array = array[:, None]
    expected = _expected_columns(feature, n_chans, n_mels)
    if array.ndim != 2 or array.shape[1] != expected:
        what = {"eeg": "EEG channels", "mel": "mel bands", "envelope": "envelope column"}[feature]
        raise DataError(
            f"{path}: expected shape (time, {expected}) with {expected} {what} (time-major), found shape {array.shape}"
        )
    if len(array) == 0:
        raise DataError(f"{path}: the array has no samples")
    for start in range(0, len(array), _CHECK_CHUNK):
        chunk = np.asarray(array[start : start + _CHECK_CHUNK])
        if not np.isfinite(chunk).all():
            bad = start + int(np.argwhere(~np.isfinite(chunk))[0, 0])
            raise DataError(f"{path}: contains NaN or infinite values (first at sample {bad})")
    return array


def _stats(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and standard deviation, accumulated in float64 chunk by chunk."""
    total = np.zeros(array.shape[1])
    total_sq = np.zeros(array.shape[1])
    for start in range(0, len(array), _CHECK_CHUNK):
        chunk = np.asarray(array[start : start + _CHECK_CHUNK], dtype=np.float64)
        total += chunk.sum(axis=0)
        total_sq += (chunk**2).sum(axis=0)
    mean = total / len(array)
    std = np.sqrt(np.maximum(total_sq / len(array) - mean**2, 0.0))
    # A flat column (e.g. a dead channel) is centred but not scaled.
    std[std < 1e-12] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


class SplitData:
    """A folder in the SparrKULee ``split_data`` layout.

    Parameters
    ----------
    folder : path
        The folder of ``{split}_-_{subject}_-_{stimulus}_-_{feature}.npy`` files. Other files (the
        corpus metadata, ``clean/``) are ignored, but a ``.npy`` file of another name, or a folder
        under a split_data name, is an error (it would drop a recording without a word).
    n_chans : int
        Expected number of EEG channels (64).
    n_mels : int
        Expected number of mel bands (10).
    max_mismatch : int
        EEG and a feature of the same recording part may differ by up to this many samples (they
        are trimmed to the shorter); a larger difference is an error.

    Notes
    -----
    Arrays are memory-mapped (re-opened on each use, so open files do not pile up) and validated on
    first use; normalisation statistics are computed
    once per recording from its ``train`` part and cached.
    """

    def __init__(self, folder: str | Path, n_chans: int = N_CHANS, n_mels: int = N_MELS, max_mismatch: int = SFREQ):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise UserError(f"{self.folder}: not a folder (expected a SparrKULee split_data folder)")
        self.n_chans = n_chans
        self.n_mels = n_mels
        self.max_mismatch = max_mismatch
        self._files: dict[FileKey, Path] = {}
        for path in sorted(self.folder.iterdir()):
            key = parse_filename(path.name)
            if key is not None and not path.is_file():
                raise DataError(f"{path}: a folder (or other non-file) where a split_data .npy file belongs")
            if key is not None:
                self._files[key] = path
            elif path.name.endswith(".npy") and not path.name.startswith("."):
                # a mistyped name would otherwise drop a recording, or a whole subject, without a word
                raise DataError(
                    f"{path}: a .npy file whose name is not '{{split}}_-_{{subject}}_-_{{stimulus}}_-_{{feature}}.npy' "
                    f"(split in {', '.join(SPLITS)}, subject like 'sub-001', feature in {', '.join(FEATURES)}); "
                    "rename it, or move it out of the folder"
                )
        if not self._files:
            raise DataError(
                f"{self.folder}: no recordings found (expected files named "
                f"'{{split}}_-_{{subject}}_-_{{stimulus}}_-_{{feature}}.npy', e.g. "
                f"'train_-_sub-001_-_audiobook_1_-_eeg.npy')"
            )
        self.metadata = read_metadata(self.folder)
        self.recordings = sorted({Recording(k.subject, k.stimulus) for k in self._files})
        self.subjects = sorted({r.subject for r in self.recordings})
        self.stimuli = sorted({r.stimulus for r in self.recordings})
        self._validated: set[FileKey] = set()
        self._norm: dict[tuple[str, str, str], tuple[np.ndarray, np.ndarray]] = {}

    def __repr__(self) -> str:
        return f"SplitData({str(self.folder)!r}: {len(self.subjects)} subjects, {len(self.recordings)} recordings)"

    @property
    def held_out_subjects(self) -> list[str]:
        """Subjects the corpus metadata reserves for the unknown-subject protocol ([] without metadata)."""
        return sorted((self.metadata or {}).get("held_out_subjects", []))

    def has(self, split: str, subject: str, stimulus: str, feature: str) -> bool:
        """Whether that part of that recording exists."""
        return FileKey(split, subject, stimulus, feature) in self._files

    def recordings_in(self, split: str, feature: str = "mel", subjects: Iterable[str] | None = None) -> list[Recording]:
        """Recordings with both EEG and ``feature`` in ``split`` (optionally only for ``subjects``)."""
        wanted = None if subjects is None else set(subjects)
        return [
            r
            for r in self.recordings
            if (wanted is None or r.subject in wanted)
            and self.has(split, r.subject, r.stimulus, "eeg")
            and self.has(split, r.subject, r.stimulus, feature)
        ]

    def path(self, split: str, subject: str, stimulus: str, feature: str) -> Path:
        """The file of one part of one recording."""
        key = FileKey(split, subject, stimulus, feature)
        if key not in self._files:
            raise DataError(f"{self.folder}: no file {format_filename(*key)}")
        return self._files[key]

    def raw(self, split: str, subject: str, stimulus: str, feature: str) -> np.ndarray:
        """The memory-mapped, validated array of one part: (time, columns), as stored on disk."""
        key = FileKey(split, subject, stimulus, feature)
        if key not in self._validated:
            array = load_array(self.path(*key), feature, self.n_chans, self.n_mels)
            self._validated.add(key)
            return array
        # Re-opened on each call rather than kept: every open memmap holds a file descriptor, and the
        # real release has thousands of files (a common limit is 1024 open files).
        array = np.load(self._files[key], mmap_mode="r", allow_pickle=False)
        return array[:, None] if array.ndim == 1 else array

    def norm_stats(self, subject: str, stimulus: str, feature: str) -> tuple[np.ndarray, np.ndarray]:
        """Per-column (mean, std) of the *train* part of one recording's ``feature`` (or ``"eeg"``)."""
        key = (subject, stimulus, feature)
        if key not in self._norm:
            if not self.has("train", subject, stimulus, feature):
                raise DataError(
                    f"{self.folder}: cannot normalise {subject} / {stimulus}: its train part "
                    f"{format_filename('train', subject, stimulus, feature)} is missing"
                )
            self._norm[key] = _stats(self.raw("train", subject, stimulus, feature))
        return self._norm[key]

    def n_samples(self, split: str, subject: str, stimulus: str, feature: str = "mel") -> int:
        """Length of a recording part after trimming EEG and ``feature`` to the shorter (validated)."""
        eeg = self.raw(split, subject, stimulus, "eeg")
        target = self.raw(split, subject, stimulus, feature)
        if abs(len(eeg) - len(target)) > self.max_mismatch:
            raise DataError(
                f"{self.folder}: {format_filename(split, subject, stimulus, 'eeg')} has {len(eeg)} samples but "
                f"{format_filename(split, subject, stimulus, feature)} has {len(target)}; expected lengths within "
                f"{self.max_mismatch} samples of each other"
            )
        return min(len(eeg), len(target))

    def pair(
        self, split: str, subject: str, stimulus: str, feature: str = "mel", normalise: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """EEG and target of one recording part, trimmed to equal length.

        Returns
        -------
        eeg : (time, n_chans) float32
        target : (time, n_mels) float32 (``(time, 1)`` for the envelope)
            z-scored per column with the statistics of the recording's train part when
            ``normalise`` (the same statistics for its train, val and test parts).
        """
        n = self.n_samples(split, subject, stimulus, feature)
        arrays = []
        for name in ("eeg", feature):
            array = np.asarray(self.raw(split, subject, stimulus, name)[:n], dtype=np.float32)
            if normalise:
                mean, std = self.norm_stats(subject, stimulus, name)
                array = (array - mean) / std
            arrays.append(array)
        return arrays[0], arrays[1]

    def fingerprint(self, subjects: Iterable[str] | None = None) -> str:
        """A hash of the recordings of ``subjects`` (default: all): every file's name, dtype and shape, and
        :data:`FINGERPRINT_BLOCKS` blocks of its bytes spread over the file.

        Cheap on the real release (a few reads per file) and different for any re-simulated, re-split or
        replaced recording; the same for a copy or a moved folder. A run records it (``config.json``) to tell
        later whether it is evaluated or resumed on the data it was trained on.
        """
        wanted = None if subjects is None else set(subjects)
        digest = hashlib.sha256()
        for key, path in sorted(self._files.items()):
            if wanted is not None and key.subject not in wanted:
                continue
            digest.update(path.name.encode())
            size = path.stat().st_size
            with open(path, "rb") as fh:
                for k in range(FINGERPRINT_BLOCKS):
                    fh.seek(k * max(size - FINGERPRINT_BLOCK_BYTES, 0) // max(FINGERPRINT_BLOCKS - 1, 1))
                    digest.update(fh.read(FINGERPRINT_BLOCK_BYTES))
            digest.update(str(size).encode())
        return digest.hexdigest()[:16]

    def summary(self, feature: str = "mel") -> dict:
        """Counts for ``python -m dmf2mel inspect``: subjects, stimuli, recordings and samples per split."""
        recordings = {split: 0 for split in SPLITS}
        samples = {split: 0 for split in SPLITS}
        for split in SPLITS:
            for rec in self.recordings_in(split, feature):
                recordings[split] += 1
                samples[split] += self.n_samples(split, rec.subject, rec.stimulus, feature)
        return {
            "subjects": self.subjects,
            "stimuli": self.stimuli,
            "recordings": recordings,
            "samples": samples,
            "eeg_channels": self.n_chans,
            "mel_bands": self.n_mels,
        }


def window_starts(n_samples: int, window: int, hop: int | None = None) -> np.ndarray:
    """Start indices of every full window of ``window`` samples, ``hop`` apart (default: ``window``)."""
    hop = window if hop is None else hop
    if window <= 0 or hop <= 0:
        raise ValueError(f"window and hop must be positive, got window={window}, hop={hop}")
    if n_samples < window:
        return np.zeros(0, dtype=np.int64)
    return np.arange(0, n_samples - window + 1, hop, dtype=np.int64)


# --- the ICASSP-2024 regression test-set format -------------------------------------------------


#: Sub-folder of the challenge's ``TASK2_regression`` folder that holds the EEG archives.
CHALLENGE_EEG_FOLDER = "preprocessed_eeg"
_MAPPING_NAME = re.compile(r"^(?P<subject>sub-[A-Za-z0-9]+)_mapping\.json$")


class ChallengeSubject(NamedTuple):
    """One subject of the challenge test set: its id and its two files."""

    subject: str
    eeg_npz: Path
    mapping_json: Path


def challenge_subject_id(mapping_json: str | Path) -> str:
    """The subject id a test-set mapping file names: ``.../sub-003_mapping.json`` -> ``"sub-003"``."""
    mapping_json = Path(mapping_json)
    match = _MAPPING_NAME.match(mapping_json.name)
    if match is None:
        raise DataError(
            f"{mapping_json}: expected a challenge mapping file named 'sub-XXX_mapping.json' "
            f"(the subject id comes from its name), found the name {mapping_json.name!r}"
        )
    return match["subject"]


def challenge_eeg_path(mapping_json: str | Path) -> Path:
    """Where the release keeps the EEG of a mapping file: ``preprocessed_eeg/sub-XXX_eeg.npz`` beside it."""
    mapping_json = Path(mapping_json)
    return mapping_json.parent / CHALLENGE_EEG_FOLDER / f"{challenge_subject_id(mapping_json)}_eeg.npz"


def find_challenge_subjects(folder: str | Path) -> list[ChallengeSubject]:
    """Every subject of a challenge test-set folder (``TASK2_regression`` as released), sorted by id.

    ``folder`` may also be the folder above it that holds ``TASK2_regression/``. Raises
    :class:`DataError` naming the folder when it has no ``sub-XXX_mapping.json``, and naming the
    missing file when a mapping has no ``preprocessed_eeg/sub-XXX_eeg.npz``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{folder}: not a folder (expected the challenge's TASK2_regression folder)")
    if not any(folder.glob("sub-*_mapping.json")) and (folder / "TASK2_regression").is_dir():
        folder = folder / "TASK2_regression"
    subjects = []
    for mapping_json in sorted(folder.glob("sub-*_mapping.json")):
        eeg_npz = challenge_eeg_path(mapping_json)
        if not eeg_npz.is_file():
            raise DataError(
                f"{eeg_npz}: file not found (expected the EEG of {mapping_json.name} there, as the challenge "
                f"test set lays it out: {CHALLENGE_EEG_FOLDER}/{eeg_npz.name})"
            )
        subjects.append(ChallengeSubject(challenge_subject_id(mapping_json), eeg_npz, mapping_json))
    if not subjects:
        raise DataError(
            f"{folder}: no challenge test set found (expected files named 'sub-XXX_mapping.json' with "
            f"'{CHALLENGE_EEG_FOLDER}/sub-XXX_eeg.npz', as in the release's TASK2_regression folder)"
        )
    return subjects


def read_challenge_subject(
    eeg_npz: str | Path, mapping_json: str | Path, n_chans: int = N_CHANS
) -> dict[str, np.ndarray]:
    """EEG segments of one subject of the challenge test set, keyed by segment id.

    Parameters
    ----------
    eeg_npz : path
        ``sub-XXX_eeg.npz`` holding ``{eeg_id: (time, n_chans)}``.
    mapping_json : path
        ``sub-XXX_mapping.json`` holding ``{segment_id: {"eeg": eeg_id}}``.

    Returns
    -------
    ``{segment_id: (time, n_chans) float32}`` in the mapping's order.
    """
    eeg_npz, mapping_json = Path(eeg_npz), Path(mapping_json)
    try:
        mapping = json.loads(mapping_json.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{mapping_json}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise DataError(f"{mapping_json}: not valid JSON ({err})") from None
    if not isinstance(mapping, dict) or not all(isinstance(v, dict) and "eeg" in v for v in mapping.values()):
        raise DataError(f'{mapping_json}: expected {{segment_id: {{"eeg": eeg_id}}}}, found another structure')
    if not mapping:
        raise DataError(f"{mapping_json}: names no segments")
    try:
        archive = np.load(eeg_npz, allow_pickle=False)
    except FileNotFoundError:
        raise DataError(f"{eeg_npz}: file not found") from None
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:
        raise DataError(f"{eeg_npz}: not a readable .npz archive ({err})") from None
    segments = {}
    with archive:
        for segment_id, entry in mapping.items():
            eeg_id = str(entry["eeg"])
            if eeg_id not in archive.files:
                raise DataError(
                    f"{eeg_npz}: has no array {eeg_id!r}, which {mapping_json.name} names for segment {segment_id!r}"
                )
            try:
                eeg = archive[eeg_id]
            except (ValueError, OSError, zipfile.BadZipFile, EOFError) as err:  # object arrays, a corrupt member
                raise DataError(f"{eeg_npz}: array {eeg_id!r} is not a readable numeric array ({err})") from None
            if eeg.dtype.kind not in "fiu":
                raise DataError(
                    f"{eeg_npz}: array {eeg_id!r}: expected real numbers (float or integer), found dtype {eeg.dtype}"
                )
            if eeg.ndim != 2 or eeg.shape[1] != n_chans:
                raise DataError(f"{eeg_npz}: array {eeg_id!r}: expected shape (time, {n_chans}), found {eeg.shape}")
            if len(eeg) == 0:
                raise DataError(f"{eeg_npz}: array {eeg_id!r} (segment {segment_id!r}) has no samples")
            if not np.isfinite(eeg).all():
                raise DataError(f"{eeg_npz}: array {eeg_id!r} contains NaN or infinite values")
            segments[str(segment_id)] = eeg.astype(np.float32)
    return segments


def write_challenge_subject(folder: str | Path, subject: str, segments: dict[str, np.ndarray]) -> tuple[Path, Path]:
    """Write one subject's EEG segments in the challenge test-set layout (for tests and the book).

    ``folder`` plays the release's ``TASK2_regression``. Segment ``k`` (in dictionary order) is
    stored under the EEG id ``"eeg_{k}"``. Returns the paths of
    ``preprocessed_eeg/{subject}_eeg.npz`` and ``{subject}_mapping.json``.
    """
    folder = Path(folder)
    eeg_ids = {segment_id: f"eeg_{k}" for k, segment_id in enumerate(segments)}
    npz_path = folder / CHALLENGE_EEG_FOLDER / f"{subject}_eeg.npz"
    with atomic_path(npz_path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **{eeg_ids[s]: np.asarray(eeg, dtype=np.float32) for s, eeg in segments.items()})
    mapping_path = save_json(folder / f"{subject}_mapping.json", {s: {"eeg": e} for s, e in eeg_ids.items()})
    return npz_path, mapping_path


def check_finite_prediction(path: str | Path, segment_id: str, mel: np.ndarray) -> None:
    """Raise :class:`UserError` when a prediction holds NaN or infinite values (strict JSON has no NaN)."""
    bad = ~np.isfinite(mel)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=-1))
        raise UserError(
            f"{Path(path).name}: the model predicted {int(bad.sum())} NaN or infinite values for segment "
            f"{segment_id!r} (rows {rows[0]}-{rows[-1]} of {len(mel)}); a submission cannot hold them, so nothing "
            "was written"
        )


def write_predictions(path: str | Path, predictions: dict[str, np.ndarray], n_mels: int = N_MELS) -> Path:
    """Write a challenge submission: one JSON ``{segment_id: [[n_mels floats] per time step]}``, atomically.

    Time-major, as the challenge's own sample submission script writes it (``predict_test.py`` in
    exporl/auditory-eeg-challenge-2024-code lists ``np.squeeze(model.predict(...))`` of a Keras model whose
    output is ``(segments, time, bands)``), although the challenge web page describes the arrays as "10 x 1920".
    """
    out = {}
    for segment_id, mel in predictions.items():
        mel = np.asarray(mel)
        if mel.ndim != 2 or mel.shape[1] != n_mels:
            raise UserError(
                f"prediction for segment {segment_id!r}: expected shape (time, {n_mels}), found {mel.shape}"
            )
        check_finite_prediction(path, segment_id, mel)
        out[str(segment_id)] = np.round(mel.astype(np.float64), 6).tolist()
    return save_json(path, out, indent=None)


def read_predictions(path: str | Path) -> dict[str, np.ndarray]:
    """Read a submission written by :func:`write_predictions`: ``{segment_id: (time, n_mels)}``."""
    path = Path(path)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise DataError(f"{path}: not valid JSON ({err})") from None
    return {segment_id: np.asarray(mel, dtype=np.float32) for segment_id, mel in raw.items()}


__all__ = [
    "CHALLENGE_EEG_FOLDER",
    "FEATURES",
    "METADATA_FILE",
    "N_CHANS",
    "N_MELS",
    "SFREQ",
    "SPLITS",
    "SPLIT_FRACTIONS",
    "ChallengeSubject",
    "FileKey",
    "Recording",
    "SplitData",
    "challenge_eeg_path",
    "challenge_subject_id",
    "find_challenge_subjects",
    "format_filename",
    "load_array",
    "parse_filename",
    "read_challenge_subject",
    "read_metadata",
    "read_predictions",
    "split_bounds",
    "window_starts",
    "write_challenge_subject",
    "write_metadata",
    "write_predictions",
    "write_recording",
    "check_finite_prediction",
]
