"""Torch datasets over a SparrKULee ``split_data`` folder: training windows, evaluation windows, subject ids.

Every item is a dict ``{"eeg": (window, n_chans) float32, "mel": (window, n_mels) float32,
"subject": int64}``; a :class:`torch.utils.data.DataLoader` stacks them into ``(batch, window, ·)``.
Windows are read by slicing the memory-mapped arrays of :class:`~dmf2mel.data.sparrkulee.SplitData`
and z-scored with the statistics of each recording's *train* part, so memory does not grow with
the number of recordings and the normalisation is the same for train, val and test.

Randomness is a pure function of ``(seed, epoch, index)``: the same seed gives the same windows in
every process (DataLoader workers, DDP ranks) and after a resume.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from dmf2mel.data.sparrkulee import Recording, SplitData
from dmf2mel.errors import DataError

#: Subject index of a subject the model has not been trained on (its "unknown subject" conditioning).
UNKNOWN_SUBJECT = -1


class SubjectIndex:
    """Subject name -> integer id for the model's subject embedding; unknown subjects map to -1.

    Parameters
    ----------
    subjects : iterable of str
        The training subjects; ids are their positions in sorted order.
    """

    def __init__(self, subjects: Iterable[str]) -> None:
        self.subjects = sorted(set(subjects))
        self._ids = {name: i for i, name in enumerate(self.subjects)}

    def __len__(self) -> int:
        return len(self.subjects)

    def __getitem__(self, subject: str) -> int:
        """The id of ``subject``, or :data:`UNKNOWN_SUBJECT` (-1) if it was not a training subject."""
        return self._ids.get(subject, UNKNOWN_SUBJECT)

    def __contains__(self, subject: str) -> bool:
        return subject in self._ids

    def __repr__(self) -> str:
        return f"SubjectIndex({self.subjects!r})"


def _window(
    data: SplitData, split: str, rec: Recording, start: int, length: int, feature: str
) -> tuple[np.ndarray, np.ndarray]:
    """One z-scored window of a recording part: (length, n_chans), (length, n_mels), float32."""
    arrays = []
    for name in ("eeg", feature):
        raw = np.asarray(data.raw(split, rec.subject, rec.stimulus, name)[start : start + length], dtype=np.float32)
        mean, std = data.norm_stats(rec.subject, rec.stimulus, name)
        arrays.append((raw - mean) / std)
    return arrays[0], arrays[1]


def _item(eeg: np.ndarray, mel: np.ndarray, subject: int) -> dict[str, torch.Tensor]:
    return {
        "eeg": torch.from_numpy(np.ascontiguousarray(eeg)),
        "mel": torch.from_numpy(np.ascontiguousarray(mel)),
        "subject": torch.tensor(subject, dtype=torch.int64),
    }


class RandomWindows(Dataset):
    """Random training windows: ``windows_per_recording`` random windows of every recording per epoch.

    With ``windows_per_recording=1`` this is the paper's epoch: one random 10 s window per recording.

    Parameters
    ----------
    data : SplitData
    split : str
        Usually ``"train"``.
    recordings : sequence of Recording
        The recordings to draw from; parts shorter than ``window`` are skipped.
    window : int
        Window length in samples.
    subject_index : SubjectIndex
    windows_per_recording : int
    unknown_fraction : float
        Probability that a window's subject id is replaced by -1, which trains the model's
        "unknown subject" conditioning (``book/architecture.md``, "Stem and subject conditioning").
    seed : int
    feature : str
        The target feature (``"mel"``).

    Notes
    -----
    Call :meth:`set_epoch` before each epoch; the windows of an epoch depend only on
    ``(seed, epoch, index)``.
    """

    def __init__(
        self,
        data: SplitData,
        split: str,
        recordings: Sequence[Recording],
        window: int,
        subject_index: SubjectIndex,
        windows_per_recording: int = 1,
        unknown_fraction: float = 0.0,
        seed: int = 0,
        feature: str = "mel",
    ) -> None:
        self.data = data
        self.split = split
        self.window = int(window)
        self.subject_index = subject_index
        self.windows_per_recording = int(windows_per_recording)
        self.unknown_fraction = float(unknown_fraction)
        self.seed = int(seed)
        self.feature = feature
        self.epoch = 0
        self.recordings: list[Recording] = []
        self.lengths: list[int] = []
        for rec in recordings:
            n = data.n_samples(split, rec.subject, rec.stimulus, feature)
            if n >= self.window:
                self.recordings.append(rec)
                self.lengths.append(n)
        if not self.recordings:
            raise DataError(
                f"{data.folder}: no {split} recording is at least {self.window} samples long "
                f"({self.window / 64:.1f} s at 64 Hz): use shorter windows or longer recordings"
            )

    def set_epoch(self, epoch: int) -> None:
        """Select the windows of ``epoch``."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.recordings) * self.windows_per_recording

    def draw(self, index: int) -> tuple[int, int, bool]:
        """(recording position, start sample, subject hidden) of item ``index`` in the current epoch."""
        rng = np.random.default_rng([self.seed, self.epoch, index])
        position = index % len(self.recordings)
        start = int(rng.integers(0, self.lengths[position] - self.window + 1))
        hidden = bool(rng.random() < self.unknown_fraction)
        return position, start, hidden

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        position, start, hidden = self.draw(index)
        rec = self.recordings[position]
        eeg, mel = _window(self.data, self.split, rec, start, self.window, self.feature)
        subject = -1 if hidden else self.subject_index[rec.subject]
        return _item(eeg, mel, subject)


class SequentialWindows(Dataset):
    """Consecutive windows covering each recording part, for validation and evaluation.

    Full windows start every ``window`` samples; if a recording part does not end on a window
    boundary, one more window ends exactly at its last sample (overlapping the previous one), so
    every sample is covered. A part shorter than ``window`` gives one window of its own length
    (so batch such items one at a time, or use :attr:`window` equal lengths).

    Parameters
    ----------
    data : SplitData
    split : str
    recordings : sequence of Recording
    window : int
    subject_index : SubjectIndex
        Subjects not in it get -1 (the unknown-subject protocol).
    feature : str

    Attributes
    ----------
    items : list of (recording position, start, length)
    """

    def __init__(
        self,
        data: SplitData,
        split: str,
        recordings: Sequence[Recording],
        window: int,
        subject_index: SubjectIndex,
        feature: str = "mel",
    ) -> None:
        self.data = data
        self.split = split
        self.recordings = list(recordings)
        self.window = int(window)
        self.subject_index = subject_index
        self.feature = feature
        self.lengths = [data.n_samples(split, r.subject, r.stimulus, feature) for r in self.recordings]
        self.items: list[tuple[int, int, int]] = []
        for position, n in enumerate(self.lengths):
            self.items.extend((position, start, length) for start, length in sequential_spans(n, self.window))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        position, start, length = self.items[index]
        rec = self.recordings[position]
        eeg, mel = _window(self.data, self.split, rec, start, length, self.feature)
        return _item(eeg, mel, self.subject_index[rec.subject])


def sequential_spans(n_samples: int, window: int) -> list[tuple[int, int]]:
    """``(start, length)`` of windows covering ``n_samples``: full windows, then one ending at the end.

    >>> sequential_spans(25, 10)
    [(0, 10), (10, 10), (15, 10)]
    >>> sequential_spans(7, 10)
    [(0, 7)]
    """
    if n_samples <= window:
        return [(0, n_samples)] if n_samples > 0 else []
    spans = [(start, window) for start in range(0, n_samples - window + 1, window)]
    if spans[-1][0] + window < n_samples:
        spans.append((n_samples - window, window))
    return spans
