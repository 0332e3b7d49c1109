"""Evaluation protocols (known and unknown subjects) and challenge predictions.

* **known subjects** (the paper's setting): the *test* part of every training subject's
  recordings, with the model given each subject's id.
* **unknown subjects**: subjects held out of training entirely (the corpus metadata's
  ``held_out_subjects``, ``--held-out``, or for the real SparrKULee data without metadata the 2023
  challenge's sub-072 .. sub-085), with the model's "unknown subject" conditioning (id -1). Only
  their *test* parts are scored, so the stimulus time covered was never trained on either.

Each protocol reports the paper metric and the challenge metric (:mod:`dmf2mel.metrics`) with
their chance levels and p-values, per band and per subject. Predictions are made window by window
(the training window length) and stitched back into whole recordings before scoring.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from dmf2mel.checkpoint import BEST_CHECKPOINT, METRICS_FILE, check_same_data, load_model
from dmf2mel.data.datasets import SubjectIndex, sequential_spans
from dmf2mel.data.sparrkulee import (
    ChallengeSubject,
    Recording,
    SplitData,
    challenge_subject_id,
    check_finite_prediction,
    read_challenge_subject,
    write_predictions,
)
from dmf2mel.errors import DataError, NonFinitePrediction, UserError
from dmf2mel.io import save_json
from dmf2mel.metrics import N_NULL, NON_FINITE, RecordingPrediction, challenge_metric, paper_metric
from dmf2mel.threads import configure as configure_threads
from dmf2mel.validation import check_device, check_folder, check_int, check_option, check_writable

#: The 2023 challenge's held-out subjects, used for real SparrKULee data that has no metadata.
SPARRKULEE_HELD_OUT = tuple(f"sub-{i:03d}" for i in range(72, 86))
#: Windows per forward pass when predicting a long recording.
PREDICT_BATCH = 16


def default_held_out(data: SplitData) -> list[str]:
    """The held-out subjects of a corpus: its metadata's, else sub-072..sub-085 where present."""
    if data.metadata is not None and "held_out_subjects" in data.metadata:
        return data.held_out_subjects
    return [s for s in SPARRKULEE_HELD_OUT if s in data.subjects]


def parse_subjects(text: str | None) -> list[str] | None:
    """``"sub-072,sub-073"`` -> ``["sub-072", "sub-073"]`` (None stays None)."""
    if text is None:
        return None
    return sorted({s.strip() for s in text.split(",") if s.strip()})


@torch.no_grad()
def predict_recording(
    model: nn.Module,
    eeg: np.ndarray,
    subject: int,
    window: int,
    device: str | torch.device = "cpu",
    batch_size: int = PREDICT_BATCH,
) -> np.ndarray:
    """Predict the mel of a whole recording window by window.

    Parameters
    ----------
    model : nn.Module
        ``forward(eeg (batch, time, n_chans), subject (batch,)) -> (batch, time, n_mels)``, in eval mode.
    eeg : np.ndarray, shape (time, n_chans)
        Normalised EEG.
    subject : int
        Subject id (-1: unknown subject).
    window : int
        Samples per forward pass: consecutive windows, the last one ending at the last sample
        (:func:`~dmf2mel.data.datasets.sequential_spans`); a shorter recording is one pass.

    Returns
    -------
    np.ndarray, shape (time, n_mels), float32
    """
    spans = sequential_spans(len(eeg), window)
    eeg_t = torch.as_tensor(np.ascontiguousarray(eeg), dtype=torch.float32)
    pieces = []
    for first in range(0, len(spans), batch_size):
        chunk = spans[first : first + batch_size]  # all spans have the same length
        batch = torch.stack([eeg_t[start : start + length] for start, length in chunk]).to(device)
        ids = torch.full((len(chunk),), subject, dtype=torch.int64, device=device)
        pieces.extend(zip(chunk, model(batch, ids).float().cpu().numpy()))
    n_mels = pieces[0][1].shape[-1]
    out = np.zeros((len(eeg), n_mels), dtype=np.float32)
    covered = 0
    for (start, length), pred in pieces:
        # the last window overlaps the previous one: keep the earlier prediction, add the tail
        out[covered : start + length] = pred[covered - start :]
        covered = start + length
    return out


def predict_recordings(
    model: nn.Module,
    data: SplitData,
    split: str,
    recordings: Sequence[Recording],
    subject_index: SubjectIndex,
    window: int,
    device: str | torch.device = "cpu",
) -> list[RecordingPrediction]:
    """Predictions and targets of ``split`` of each recording (subjects not in the index get -1)."""
    out = []
    for rec in recordings:
        eeg, mel = data.pair(split, rec.subject, rec.stimulus)
        pred = predict_recording(model, eeg, subject_index[rec.subject], window, device)
        out.append(RecordingPrediction(rec.subject, rec.stimulus, pred, mel))
    return out


def score_predictions(
    predictions: Sequence[RecordingPrediction],
    n_null: int = N_NULL,
    seed: int = 0,
    non_finite: str = "raise",
    model: str | None = None,
) -> dict:
    """Both metrics of a protocol, in the layout ``evaluate --json`` prints.

    Parameters
    ----------
    predictions : sequence of RecordingPrediction
    n_null, seed : int
        Null draws and their seed.
    non_finite : {"raise", "fail"}
        A prediction with NaN or infinite values: refuse it (default), or score its windows as failures (r = 0),
        counted in ``n_failed_windows`` (:mod:`dmf2mel.metrics`).
    model : str, optional
        Named in the error a non-finite prediction raises (e.g. the run).

    Returns
    -------
    dict
        ``paper_r``, ``challenge_r``, ``chance_r`` and ``p_value`` (of the paper metric),
        ``challenge_chance_r``, ``challenge_p_value``, ``per_band`` (10 paper-metric values),
        ``per_subject`` (paper metric), ``subjects``, ``n_recordings``, ``n_failed_windows`` (paper metric's
        windows scored as failures), and the full results of both metrics under ``paper`` and ``challenge``.
    """
    try:
        paper = paper_metric(predictions, n_null=n_null, seed=seed, non_finite=non_finite)
        challenge = challenge_metric(predictions, n_null=n_null, seed=seed, non_finite=non_finite)
    except NonFinitePrediction as err:
        raise (err.for_model(model) if model else err) from None
    return {
        "paper_r": paper["r"],
        "challenge_r": challenge["r"],
        "chance_r": paper["chance_r"],
        "p_value": paper["p_value"],
        "challenge_chance_r": challenge["chance_r"],
        "challenge_p_value": challenge["p_value"],
        "per_band": paper["per_band"],
        "per_subject": paper["per_subject"],
        "subjects": sorted({p.subject for p in predictions}),
        "n_recordings": len(predictions),
        "n_failed_windows": paper["n_failed_windows"],
        "paper": paper,
        "challenge": challenge,
    }


def open_data_for(config: dict, folder: str | Path) -> SplitData:
    """The split_data folder, checked against the channel and band counts the model was trained on."""
    n_chans, n_mels = config["data"]["n_chans"], config["data"]["n_mels"]
    data = SplitData(folder, n_chans=n_chans, n_mels=n_mels)
    rec = data.recordings[0]
    for feature in ("eeg", "mel"):
        split = next((s for s in ("test", "val", "train") if data.has(s, rec.subject, rec.stimulus, feature)), None)
        if split is None:
            continue
        try:
            data.raw(split, rec.subject, rec.stimulus, feature)
        except DataError as err:
            raise DataError(f"{err} (this run's model takes {n_chans}-channel EEG and {n_mels} mel bands)") from None
    return data


def evaluate_run(
    run: str | Path,
    data_folder: str | Path | None = None,
    held_out: Sequence[str] | None = None,
    device: str = "cpu",
    n_null: int = N_NULL,
    seed: int = 0,
    write: bool = True,
    non_finite: str = "raise",
    window: int | None = None,
    out: str | Path | None = None,
    overwrite: bool = False,
) -> dict:
    """Evaluate a run's best checkpoint on both protocols; write ``RUN/metrics.json``.

    Parameters
    ----------
    run : path
        The run folder.
    data_folder : path, optional
        The split_data folder (default: the one the run was trained on).
    held_out : sequence of str, optional
        Subjects for the unknown-subject protocol (default: those held out of training). They must
        not be training subjects.
    n_null, seed : int
        Null draws and seed of the chance levels.
    non_finite : {"raise", "fail"}
        A prediction with NaN or infinite values raises :class:`~dmf2mel.errors.NonFinitePrediction` naming the
        run, subject and recording (default), or scores its windows as failures, counted in ``n_failed_windows``.
    window : int, optional
        Samples per forward pass when predicting (default: the run's training window). The paper metric scores
        10 s windows (640 samples); with 5 s training windows each scored window spans two forward passes unless
        ``window=640``.
    out : path, optional
        Where to write the scores (default ``RUN/metrics.json``). The run's metrics file is never replaced by scores
        of fewer subjects than it holds (e.g. of a mistyped ``held_out``), and another existing file not at all,
        unless ``overwrite``; the folder's write access is checked before anything is computed.
    overwrite : bool
        Replace ``out`` whatever it holds.

    Returns
    -------
    dict
        ``{"known": {...}, "unknown": {...} or None}`` (see :func:`score_predictions`).
    """
    check_option("non_finite", non_finite, NON_FINITE)
    device = check_device("device", device)
    n_null = check_int("n_null", n_null, minimum=0)
    seed = check_int("seed", seed, minimum=0)
    run = Path(run)
    target = run / METRICS_FILE if out is None else Path(out)
    if write:
        check_folder("out", target.parent)
        check_writable("out", target.parent)
    configure_threads()
    config, model = load_model(run, BEST_CHECKPOINT, device)
    data = open_data_for(config, data_folder or config["data"]["folder"])
    index = SubjectIndex(config["data"]["subjects"])
    check_same_data(run, config["data"].get("fingerprint"), data, index.subjects)
    window = config["data"]["window"] if window is None else check_int("window", window, minimum=1)
    held = list(config["data"]["held_out"]) if held_out is None else list(held_out)
    trained_on = sorted(set(held) & set(index.subjects))
    if trained_on:
        raise UserError(
            f"held_out: {', '.join(trained_on)} were training subjects of {run}; pick subjects it never saw",
            parameter="held_out",
        )
    absent = sorted(set(held) - set(data.subjects))
    if held_out is not None and absent:
        raise UserError(
            f"held_out: {', '.join(absent)} not in {data.folder} (subjects: {', '.join(data.subjects)})",
            parameter="held_out",
        )

    known = data.recordings_in("test", subjects=index.subjects)
    if not known:
        raise DataError(
            f"{data.folder}: no test recordings of the run's training subjects ({', '.join(index.subjects)})"
        )
    unknown = data.recordings_in("test", subjects=held)
    if write and not overwrite:
        _check_keeps_scores(target, out is None, known, unknown)
    results: dict = {}
    name = f"{config['model']} run {run}"
    results["known"] = score_predictions(
        predict_recordings(model, data, "test", known, index, window, device), n_null, seed, non_finite, name
    )
    if unknown:
        # An empty index gives every subject id -1: the unknown-subject conditioning.
        preds = predict_recordings(model, data, "test", unknown, SubjectIndex([]), window, device)
        results["unknown"] = score_predictions(preds, n_null, seed, non_finite, name)
    else:
        results["unknown"] = None
    results["checkpoint"] = str(run / BEST_CHECKPOINT)
    results["data"] = str(data.folder)
    results["window"] = window
    if write:
        save_json(target, results)
    return results


def _check_keeps_scores(target: Path, is_run_metrics: bool, known: list, unknown: list) -> None:
    """Refuse to replace ``target`` with scores of fewer subjects than it holds (e.g. a mistyped held-out list), or,
    when it is not the run's own metrics file, to replace it at all."""
    if not target.exists():
        return
    how = "write these scores elsewhere with out=FILE, or replace it with overwrite=True (nothing was changed)"
    if not is_run_metrics:
        raise UserError(f"out: {target} already exists; {how}", parameter="out")
    try:
        earlier = json.loads(target.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return  # an unreadable metrics file holds nothing to keep
    lost = []
    for protocol, recordings in (("known", known), ("unknown", unknown)):
        before = (earlier.get(protocol) or {}) if isinstance(earlier, dict) else {}
        kept = {rec.subject for rec in recordings}
        gone = sorted(set(before.get("subjects") or []) - kept) if isinstance(before, dict) else []
        if gone:
            lost.append(f"{protocol}: {', '.join(gone)}")
    if lost:
        raise UserError(
            f"out: {target} holds scores of subjects this evaluation would not score ({'; '.join(lost)}), so it was "
            f"kept; {how}",
            parameter="out",
        )


class SubjectPrediction(NamedTuple):
    """What ``predict`` wrote for one test-set subject."""

    subject: str
    path: Path
    known: bool
    n_segments: int


def predict_subjects(
    run: str | Path,
    subjects: Sequence[ChallengeSubject],
    out_dir: str | Path,
    device: str = "cpu",
    overwrite: bool = False,
) -> list[SubjectPrediction]:
    """Write the challenge submission ``OUT/sub-XXX.json`` ``{segment_id: mel (time, n_mels)}`` of each subject.

    All or nothing: every subject's files are read and checked, every prediction is made and checked (no NaN or
    infinite value: strict JSON has none) before anything is written; the files are then written aside and moved
    into ``out_dir`` together, so a bad input, a failure or an interruption leaves ``out_dir`` as it was. A
    submission already there is refused unless ``overwrite``. Each EEG segment is z-scored per channel over its own
    samples (a test segment has no train part to take statistics from) and predicted with the subject's id if the
    run was trained on that subject, else with the unknown-subject conditioning (``known`` False).
    """
    device = check_device("device", device)
    out_dir = check_folder("out_dir", out_dir)
    targets = [out_dir / f"{entry.subject}.json" for entry in subjects]
    existing = [path for path in targets if path.exists()]
    if existing and not overwrite:
        raise UserError(
            f"out_dir: {len(existing)} of the {len(targets)} submissions to write already exist in {out_dir} (first: "
            f"{existing[0].name}); overwrite=True replaces them (nothing was changed)",
            parameter="out_dir",
        )
    check_writable("out_dir", out_dir)
    config, model = load_model(run, BEST_CHECKPOINT, device)
    n_chans, n_mels, window = config["data"]["n_chans"], config["data"]["n_mels"], config["data"]["window"]
    inputs = [read_challenge_subject(entry.eeg_npz, entry.mapping_json, n_chans=n_chans) for entry in subjects]
    index = SubjectIndex(config["data"]["subjects"])
    predicted = []
    for entry, target, segments in zip(subjects, targets, inputs):
        predictions = {}
        for segment_id, eeg in segments.items():
            eeg = eeg.astype(np.float64)  # float32 statistics overflow on extreme values
            std = eeg.std(axis=0)
            eeg = (eeg - eeg.mean(axis=0)) / np.where(std > 0, std, 1.0)
            predictions[segment_id] = predict_recording(model, eeg, index[entry.subject], window, device)
            check_finite_prediction(target, segment_id, predictions[segment_id])
        predicted.append(predictions)
    out_dir.mkdir(parents=True, exist_ok=True)
    aside = Path(tempfile.mkdtemp(prefix=".predict.tmp-", dir=out_dir))
    try:
        for target, predictions in zip(targets, predicted):
            write_predictions(aside / target.name, predictions, n_mels=n_mels)
        for target in targets:
            os.replace(aside / target.name, target)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return [
        SubjectPrediction(entry.subject, target, entry.subject in index, len(predictions))
        for entry, target, predictions in zip(subjects, targets, predicted)
    ]


def challenge_files(eeg_npz: str | Path, mapping_json: str | Path) -> ChallengeSubject:
    """One subject given by its two files; the subject id comes from the mapping file's name.

    The EEG archive must belong to the same subject: ``sub-XXX_eeg.npz`` as released (or ``sub-XXX.npz``).
    """
    subject = challenge_subject_id(mapping_json)
    eeg_npz = Path(eeg_npz)
    if eeg_npz.name not in (f"{subject}_eeg.npz", f"{subject}.npz"):
        raise DataError(
            f"{eeg_npz}: expected the EEG of {subject} (named {subject}_eeg.npz, as {Path(mapping_json).name} "
            f"names the subject), found the name {eeg_npz.name!r}"
        )
    return ChallengeSubject(subject, eeg_npz, Path(mapping_json))


def predict_challenge(
    run: str | Path,
    eeg_npz: str | Path,
    mapping_json: str | Path,
    out_dir: str | Path,
    device: str = "cpu",
    overwrite: bool = False,
) -> Path:
    """Write the challenge submission of one subject, ``OUT/sub-XXX.json``; returns its path.

    The subject id comes from the mapping file's name (``sub-XXX_mapping.json``); see
    :func:`predict_subjects`.
    """
    return predict_subjects(run, [challenge_files(eeg_npz, mapping_json)], out_dir, device, overwrite)[0].path


# --- one-line summaries -----------------------------------------------------------------------


def summary_line(name: str, result: dict | None) -> str:
    """One line per protocol: paper r with chance and p, challenge r with chance, subjects."""
    if result is None:
        return f"{name:>8}: no held-out subjects with test data"

    def fmt(x):
        return "n/a" if x is None else f"{x:.4f}"

    failed = result.get("n_failed_windows", 0)
    return (
        f"{name:>8}: paper r {fmt(result['paper_r'])} (chance {fmt(result['chance_r'])}, p {fmt(result['p_value'])}), "
        f"challenge r {fmt(result['challenge_r'])} (chance {fmt(result['challenge_chance_r'])}), "
        f"{len(result['subjects'])} subjects"
        + (f", {failed} windows FAILED (non-finite predictions, scored r = 0)" if failed else "")
    )
