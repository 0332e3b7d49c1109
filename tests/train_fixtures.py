"""A tiny model, profile and corpus for the trainer tests (importable by their subprocesses)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from dmf2mel.checkpoint import MODELS, ModelSpec
from dmf2mel.data import sparrkulee as sk
from dmf2mel.train import PROFILES, TrainProfile

N_SAMPLES = 3000  # per recording: 2400 train, 300 val, 300 test samples
SUBJECTS = ("sub-001", "sub-002", "sub-003", "sub-004")
HELD_OUT = ("sub-004",)


class TinyDecoder(nn.Module):
    """A temporal convolution 64 -> 10 with a subject bias and dropout (so RNG state matters).

    ``(batch, time, n_chans), (batch,) -> (batch, time, n_mels)``.
    """

    def __init__(self, n_subjects: int, n_chans: int = 64, n_mels: int = 10, kernel: int = 9) -> None:
        super().__init__()
        self.conv = nn.Conv1d(n_chans, n_mels, kernel, padding=kernel // 2)
        self.subject = nn.Embedding(n_subjects + 1, n_mels)  # last row: unknown subject
        self.dropout = nn.Dropout(0.2)

    def forward(self, eeg: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(self.dropout(eeg).transpose(1, 2)).transpose(1, 2)
        if subject is None:
            subject = torch.full((len(eeg),), -1, dtype=torch.int64, device=eeg.device)
        ids = torch.where(subject < 0, self.subject.num_embeddings - 1, subject)
        return out + self.subject(ids)[:, None, :]


class FlakyDecoder(TinyDecoder):
    """:class:`TinyDecoder` that predicts NaN on demand, to test the trainer's guard.

    ``FAIL_TRAINING_CALLS``: the training-mode forward calls (counted from 1 over the model's life) whose output is
    NaN; ``FAIL_EVAL_AFTER``: evaluation-mode calls predict NaN once this many training calls have been made.
    """

    FAIL_TRAINING_CALLS: set = set()
    FAIL_EVAL_AFTER: int | None = None

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.training_calls = 0

    def forward(self, eeg: torch.Tensor, subject: torch.Tensor | None = None) -> torch.Tensor:
        out = super().forward(eeg, subject)
        if self.training:
            self.training_calls += 1
            if self.training_calls in self.FAIL_TRAINING_CALLS:
                return out * float("nan")
        elif self.FAIL_EVAL_AFTER is not None and self.training_calls > self.FAIL_EVAL_AFTER:
            return out * float("nan")
        return out


def _tiny_config(preset, n_subjects, n_chans, n_mels):
    return {"n_subjects": n_subjects, "n_chans": n_chans, "n_mels": n_mels}


TINY_PROFILE = TrainProfile(
    name="tiny",
    model_preset="small",
    batch_size=4,
    window_seconds=2.0,
    windows_per_recording=2,
    epochs=3,
    lr=3e-3,
    betas=(0.9, 0.98),
    eps=1e-9,
    step_size=2,
    gamma=0.5,
    val_every=1,
    patience=None,
    unknown_fraction=0.2,
)


def register() -> None:
    """Make ``model="tiny"``, ``model="flaky"`` and ``profile="tiny"`` known to the trainer."""
    MODELS["tiny"] = ModelSpec(_tiny_config, lambda config: TinyDecoder(**config))
    MODELS["flaky"] = ModelSpec(_tiny_config, lambda config: FlakyDecoder(**config))
    PROFILES["tiny"] = TINY_PROFILE


def make_corpus(folder: str | Path, n_chans: int = 64, seed: int = 0) -> Path:
    """Four subjects x two stories; the mel is a smoothed linear read-out of the EEG plus noise."""
    folder = Path(folder)
    rng = np.random.default_rng(seed)
    mixing = rng.standard_normal((n_chans, 10)) / np.sqrt(n_chans)
    kernel = np.hanning(7) / np.hanning(7).sum()
    for subject in SUBJECTS:
        for story in ("story_1", "story_2"):
            eeg = rng.standard_normal((N_SAMPLES, n_chans))
            clean = np.apply_along_axis(np.convolve, 0, eeg @ mixing[:n_chans], kernel, mode="same")
            mel = clean + 0.5 * rng.standard_normal(clean.shape) * clean.std()
            sk.write_recording(folder, subject, story, eeg, mel)
    sk.write_metadata(
        folder, {"preset": "test", "seed": seed, "subjects": list(SUBJECTS), "held_out_subjects": list(HELD_OUT)}
    )
    return folder
