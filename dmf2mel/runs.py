"""Cached training runs: each chapter that needs a trained model asks for it here, and it is trained once.

Chapters 11 (training), 12 (evaluation) and 11 (ablations) of the book all need the same trained
models. :func:`cached_run` trains a model with :func:`dmf2mel.train.train` the first time it is
asked for, evaluates it (``metrics.json``) and keeps the run folder in the same cache as the
built-in corpus (:func:`dmf2mel.data.corpus.cache_dir`, under ``runs/``); every later call with
the same arguments returns that folder at once. So one book build trains each model once per
machine, not once per chapter.

A cached run is identified by everything that decides its result: the corpus (whose folder name
already hashes the simulation code, its parameters and the numerical libraries), the model, the
training profile and its number of epochs, the seed, the package version, the torch version and a
hash of the package source that training and evaluation run (every module but the figures and the
command line). Change any of them and the run is trained again; older runs of the same corpus,
model, profile, epochs and seed are deleted once nobody has used them for a day.

Reliability (the rules of :mod:`dmf2mel.cache`, which the corpus cache follows too): a run is trained
in a temporary folder and renamed into place only when it is complete, so a killed build never leaves
half a run behind; a cached run is verified before it is reused (its identity, ``config.json``,
``history.csv``, ``metrics.json`` and a ``best.pt`` that loads); concurrent processes asking for the
same run wait for one another (a file lock) instead of training it twice, and the one that waits says
whom it waits for.

A run that fails (an error, or a cell interrupted at the book build's time limit) leaves a note
(``.NAME.failed.json`` beside the runs) saying how and when. Within the same book build (the build id
in ``DMF2MEL_BUILD``, which ``make book`` and the tests set), a later chapter asking for that run
reports the failure in one sentence instead of starting the same long training again inside its own
time limit; the next build, or ``retry=True``, trains it again. Without a build id (JupyterLab, a
script) every call trains again, as before.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

import dmf2mel
from dmf2mel import cache
from dmf2mel.checkpoint import (
    BEST_CHECKPOINT,
    CONFIG_FILE,
    HISTORY_FILE,
    METRICS_FILE,
    load_checkpoint,
    load_model,
    read_config,
    read_history,
)
from dmf2mel.data.datasets import SubjectIndex
from dmf2mel.data.corpus import cache_dir, default_corpus, shown_path
from dmf2mel.data.sparrkulee import SplitData
from dmf2mel.errors import DataError, TrainingFailed, UserError
from dmf2mel.evaluate import open_data_for, predict_recordings
from dmf2mel.io import save_json
from dmf2mel.metrics import N_NULL, RecordingPrediction
from dmf2mel.train import PROFILES, train
from dmf2mel.validation import check_option

#: Epochs of the ``quick`` profile the book's chapters train (its default; ~2 min for DMF2Mel on the
#: teaching corpus on one CPU thread).
BOOK_EPOCHS = 10
#: Sub-folder of the cache that holds the runs.
RUNS_FOLDER = "runs"
#: Written into a run folder last, before it is renamed into place: what the run is.
IDENTITY_FILE = "cached_run.json"
#: A temporary run folder this old belongs to a killed build.
STALE_TEMP_S = 6 * 3600.0
#: Environment variable holding the id of the book build in progress (set by ``scripts/build_book.py``).
BUILD_ENV = "DMF2MEL_BUILD"
#: Parts of the package that cannot change a trained run (figures, command line, exercise checkers, this module,
#: the linear TRFs and the match-mismatch task, which no training run imports).
_NOT_IN_RUNS = ("viz", "cli.py", "__main__.py", "runs.py", "exercises.py", "trf.py", "match_mismatch.py")
_PACKAGE_ROOT = Path(dmf2mel.__file__).parent


def source_digest() -> str:
    """A hash of the package source that training and evaluation run (changes whenever that code does)."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE_ROOT.rglob("*.py")):
        relative = path.relative_to(_PACKAGE_ROOT)
        if relative.parts[0] in _NOT_IN_RUNS:
            continue
        digest.update(str(relative).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def run_identity(data: str | Path, model: str, profile: str, epochs: int | None, seed: int) -> dict:
    """Everything that decides a cached run's result, as plain JSON values.

    Parameters
    ----------
    data : path
        The ``split_data`` folder (its name and, for a simulated corpus, its metadata version).
    model, profile : str
        As for :func:`dmf2mel.train.train`.
    epochs : int or None
        None: the profile's number of epochs.
    seed : int
    """
    check_option("profile", profile, PROFILES)
    data = Path(data).resolve()
    metadata_file = data / "dmf2mel_corpus.json"
    corpus_version = None
    if metadata_file.is_file():
        corpus_version = json.loads(metadata_file.read_text(encoding="utf-8")).get("version")
    return {
        "data": str(data),
        "corpus_version": corpus_version,
        "model": model,
        "profile": profile,
        "epochs": int(PROFILES[profile].epochs if epochs is None else epochs),
        "seed": int(seed),
        "package_version": dmf2mel.__version__,
        "torch_version": torch.__version__,
        "source": source_digest(),
    }


def run_name(identity: dict) -> str:
    """The cache folder name: readable stem plus a hash of the whole identity, e.g.
    ``teaching-f000fc387196-dmf2mel-quick-e10-s0-1a2b3c4d5e6f``."""
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return f"{_stem(identity)}-{digest}"


def _stem(identity: dict) -> str:
    corpus = Path(identity["data"]).name
    return f"{corpus}-{identity['model']}-{identity['profile']}-e{identity['epochs']}-s{identity['seed']}"


def verify_run(folder: str | Path, identity: dict | None = None) -> dict:
    """Check a cached run is complete (and, with ``identity``, that it is that run); returns its metrics.

    Raises
    ------
    DataError
        Naming the first problem: a missing or unreadable file, another identity, a ``best.pt``
        that does not load.
    """
    folder = Path(folder)
    for name in (IDENTITY_FILE, CONFIG_FILE, HISTORY_FILE, METRICS_FILE, BEST_CHECKPOINT):
        if not (folder / name).is_file():
            raise DataError(f"{folder}: not a complete cached run (no {name})")
    try:
        stored = json.loads((folder / IDENTITY_FILE).read_text(encoding="utf-8"))
        metrics = json.loads((folder / METRICS_FILE).read_text(encoding="utf-8"))
        config = read_config(folder)
    except (json.JSONDecodeError, UnicodeDecodeError, UserError) as err:
        raise DataError(f"{folder}: unreadable run file ({err})") from None
    if identity is not None and stored != identity:
        raise DataError(f"{folder}: holds another run ({stored}), expected {identity}")
    if config.get("model") != stored.get("model") or config.get("seed") != stored.get("seed"):
        raise DataError(f"{folder}: {CONFIG_FILE} does not match {IDENTITY_FILE}")
    if "known" not in metrics:
        raise DataError(f"{folder}: {METRICS_FILE} has no known-subject results")
    problem = _training_problem(folder, metrics)
    if problem:
        raise DataError(f"{folder}: {problem}; not reused")
    try:
        load_checkpoint(folder / BEST_CHECKPOINT)
    except UserError as err:
        raise DataError(str(err)) from None
    return metrics


def _training_problem(folder: Path, metrics: dict) -> str | None:
    """Why a run's training cannot be shown as a result (None: it can): NaN in its history (a run of code without the
    trainer's guard), a stop after repeated divergence, or test windows scored as failures."""
    for row in read_history(folder):
        for column in ("loss", "train_r", "val_r"):
            if row.get(column, "").strip().lower() in ("nan", "inf", "-inf"):
                return f"its training diverged ({HISTORY_FILE}: {column} {row[column]} in epoch {row.get('epoch')})"
        if "training stopped" in row.get("event", ""):
            return f"its training diverged ({HISTORY_FILE}: {row['event']})"
    for protocol in ("known", "unknown"):
        if (metrics.get(protocol) or {}).get("n_failed_windows"):
            return f"its model predicted NaN or infinite values on the test parts ({protocol} subjects)"
    return None


def _failure_note(root: Path, folder: Path) -> Path:
    return root / f".{folder.name}.failed.json"


def _earlier_failure(note: Path) -> dict | None:
    """The failure recorded in ``note`` if it happened in the book build now running, else None."""
    build = os.environ.get(BUILD_ENV)
    if not build or not note.is_file():
        return None
    try:
        failure = json.loads(note.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return failure if failure.get("build") == build else None


def _describe(error: BaseException) -> str:
    if isinstance(error, KeyboardInterrupt):
        return "it was interrupted (stopped by hand, or past the time limit of a book cell)"
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def cached_run(
    model: str = "dmf2mel",
    preset: str = "teaching",
    profile: str = "quick",
    epochs: int | None = None,
    seed: int = 0,
    data: str | Path | None = None,
    root: str | Path | None = None,
    progress: bool = True,
    n_null: int = N_NULL,
    device: str | None = None,
    verbose: bool = True,
    retry: bool = False,
) -> Path:
    """The folder of a trained and evaluated run, trained now only if no verified copy is cached.

    Parameters
    ----------
    model : str
        Which model to train: a name in :data:`dmf2mel.models.registry.MODELS` (``"dmf2mel"``, ``"linear"``,
        ``"cnn"``, ``"vlaai"``, an ablation such as ``"dmf2mel-no-mamba"``).
    preset : {"teaching", "sparrkulee"}
        The built-in corpus to train on (ignored when ``data`` is given).
    profile : {"quick", "paper"}
        Training profile (:data:`dmf2mel.train.PROFILES`).
    epochs : int, optional
        Override the profile's number of epochs.
    seed : int
        Training seed.
    data : path, optional
        A ``split_data`` folder to train on instead of the built-in corpus.
    root : path, optional
        Where runs are kept (default: ``cache_dir() / "runs"``, i.e. ``$DMF2MEL_CACHE/runs`` or
        ``~/.cache/dmf2mel/runs``).
    progress : bool
        Progress bars while training (else one log line per epoch).
    n_null : int
        Null draws for the chance levels of the evaluation.
    device : str, optional
        ``"cpu"`` or ``"cuda"`` (default: cuda when available).
    verbose : bool
        Print one line saying whether the run was reused or trained.
    retry : bool
        Train again even if this run already failed in the book build now running (see the module docstring).

    Returns
    -------
    Path
        The run folder: ``config.json``, ``history.csv``, ``best.pt``, ``last.pt``,
        ``metrics.json`` (both protocols, see :func:`dmf2mel.evaluate.evaluate_run`) and
        ``cached_run.json`` (its identity).
    """
    data = Path(data) if data is not None else default_corpus(preset, progress=progress)
    identity = run_identity(data, model, profile, epochs, seed)
    root = Path(root) if root is not None else cache_dir() / RUNS_FOLDER
    folder = root / run_name(identity)
    what = f"the {model} run ({profile} profile, {identity['epochs']} epochs, seed {seed})"
    note = _failure_note(root, folder)
    with cache.entry_lock(root, folder.name, f"training {what}", verbose):
        cache.remove_stale(root, folder, lambda path: (path / IDENTITY_FILE).is_file(), stale_temp_s=STALE_TEMP_S)
        with contextlib.suppress(DataError):
            verify_run(folder, identity)
            cache.mark_used(folder)
            if verbose:
                print(f"using the cached {model} run {shown_path(folder)}")
                if progress:
                    _show_cached_epochs(folder, model, identity["epochs"])
            return folder
        failure = None if retry else _earlier_failure(note)
        if failure is not None:
            raise TrainingFailed(
                f"{what} already failed in this build at {failure['at']} after {failure['seconds']:.0f} s: "
                f"{failure['reason']}; not training it again here (retry=True forces it)"
            )
        started = time.perf_counter()
        try:
            _train_into(folder, root, data, identity, model, profile, seed, device, progress, n_null)
        except BaseException as error:  # noqa: BLE001 - recorded, then reported in one sentence
            seconds = time.perf_counter() - started
            reason = _describe(error)
            save_json(
                note,
                {
                    "build": os.environ.get(BUILD_ENV),
                    "at": time.strftime("%H:%M:%S"),
                    "seconds": round(seconds, 1),
                    "reason": reason,
                    "identity": identity,
                },
            )
            if isinstance(error, UserError):
                raise
            raise TrainingFailed(f"training {what} failed after {seconds:.0f} s: {reason}") from error
        note.unlink(missing_ok=True)
        cache.mark_used(folder)
    if verbose:
        print(f"trained {model} ({profile} profile) in {time.perf_counter() - started:.0f} s: {shown_path(folder)}")
    return folder


def _train_into(
    folder: Path,
    root: Path,
    data: Path,
    identity: dict,
    model: str,
    profile: str,
    seed: int,
    device: str | None,
    progress: bool,
    n_null: int,
) -> None:
    """Train and evaluate into a temporary folder, then rename it to ``folder`` (never half a run in place)."""

    def build(run: Path) -> None:
        train(
            data,
            run,
            model=model,
            profile=profile,
            epochs=identity["epochs"],
            seed=seed,
            device=device,
            quiet=not progress,
            n_null=n_null,
        )
        # metrics.json names the checkpoint it scored: name it where it will be, not in the temporary folder
        metrics = json.loads((run / METRICS_FILE).read_text(encoding="utf-8"))
        metrics["checkpoint"] = str(folder / BEST_CHECKPOINT)
        save_json(run / METRICS_FILE, metrics)
        save_json(run / IDENTITY_FILE, identity)
        verify_run(run, identity)

    cache.build_entry(folder, build)


def _show_cached_epochs(folder: Path, model: str, epochs: int) -> None:
    """A finished progress bar for a cached run: the epochs it trained and its best validation r.

    A chapter then shows the same kind of output whether the building machine trained the run just now or
    found it in its cache (in a notebook the bar is a saved widget, as the training bars are).
    """
    history = history_table(folder)
    best = history["best_val_r"][-1] if "best_val_r" in history else np.nan
    bar = tqdm(
        total=epochs,
        initial=int(history["epoch"][-1]),
        desc=f"cached {model}",
        unit="epoch",
        postfix=f"best val r {best:.4f}",
    )
    bar.close()


def book_run(model: str = "dmf2mel", progress: bool = True, verbose: bool = True, retry: bool = False) -> Path:
    """The run the book's chapters share: ``model`` on the built-in ``teaching`` corpus, ``quick`` profile,
    :data:`BOOK_EPOCHS` epochs, seed 0 (:func:`cached_run` with those arguments)."""
    return cached_run(
        model,
        preset="teaching",
        profile="quick",
        epochs=BOOK_EPOCHS,
        seed=0,
        progress=progress,
        verbose=verbose,
        retry=retry,
    )


def read_metrics(run: str | Path) -> dict:
    """A run's ``metrics.json``: ``{"known": {...}, "unknown": {...} or None, ...}``."""
    path = Path(run) / METRICS_FILE
    if not path.is_file():
        raise UserError(f"{run}: no {METRICS_FILE} (evaluate the run first: python -m dmf2mel evaluate --run {run})")
    return json.loads(path.read_text(encoding="utf-8"))


#: Columns of ``history.csv`` that hold text (what the trainer did), not numbers.
TEXT_COLUMNS = ("event",)


def history_table(run: str | Path) -> dict[str, np.ndarray]:
    """A run's ``history.csv`` as float columns (an empty cell, e.g. an epoch without validation, is NaN).

    Returns
    -------
    dict column name -> (n_epochs,) array
        float64: ``epoch``, ``step`` (optimiser updates so far), ``lr``, ``loss``, ``train_r``, ``train_l1``,
        ``train_infonce``, ``grad_norm``, ``grad_norm_max``, ``clipped_steps``, ``skipped_steps``, ``val_r``,
        ``best_val_r``, ``seconds`` (runs of older versions lack some); str: ``event`` (empty, or the sentence the
        trainer wrote when an epoch diverged).
    """
    rows = read_history(run)
    if not rows:
        raise DataError(f"{run}: {HISTORY_FILE} has no epochs")

    def number(text: str) -> float:
        return float(text) if text not in ("", "None") else np.nan

    return {
        column: np.array([row[column] if column in TEXT_COLUMNS else number(row[column]) for row in rows])
        for column in rows[0]
    }


@dataclasses.dataclass(frozen=True)
class RunPredictions:
    """Test-part predictions of a run, per protocol.

    Attributes
    ----------
    known, unknown : list of RecordingPrediction
        Normalised (z-scored) predicted and true mel, ``(time, n_mels)`` each, of the test parts of
        the training subjects (with their ids) and of the held-out subjects (unknown-subject
        conditioning).
    data : SplitData
        The corpus (e.g. for :meth:`~dmf2mel.data.sparrkulee.SplitData.norm_stats`, to map a
        prediction back to mel power).
    """

    known: list[RecordingPrediction]
    unknown: list[RecordingPrediction]
    data: SplitData

    def by_recording(self) -> dict[tuple[str, str], RecordingPrediction]:
        """Every prediction keyed by ``(subject, stimulus)``."""
        return {(p.subject, p.stimulus): p for p in self.known + self.unknown}

    def mel_power(self, subject: str, stimulus: str, which: str = "pred") -> np.ndarray:
        """The predicted (or, with ``which="true"``, the true) mel of a test part as band power, for listening.

        Predictions live on the z-scored scale the model was trained on; the recording's own train-part
        mean and standard deviation map them back to power (negative values clipped to zero).

        Returns
        -------
        (time, n_mels) float64 array
        """
        check_option("which", which, ("pred", "true"))
        recordings = self.by_recording()
        if (subject, stimulus) not in recordings:
            raise UserError(f"no test prediction for {subject} / {stimulus}; available: {sorted(recordings)}")
        mean, std = self.data.norm_stats(subject, stimulus, "mel")
        z = getattr(recordings[subject, stimulus], which).astype(np.float64)
        return np.clip(z * std + mean, 0.0, None)


def run_predictions(run: str | Path, device: str = "cpu") -> RunPredictions:
    """Predict the test parts of a run's known and held-out subjects with its ``best.pt``.

    The same predictions :func:`dmf2mel.evaluate.evaluate_run` scores, kept for figures and listening.
    """
    config, model = load_model(run, BEST_CHECKPOINT, device)
    data = open_data_for(config, config["data"]["folder"])
    index = SubjectIndex(config["data"]["subjects"])
    window = config["data"]["window"]
    known = predict_recordings(
        model, data, "test", data.recordings_in("test", subjects=index.subjects), index, window, device
    )
    held = data.recordings_in("test", subjects=config["data"]["held_out"])
    unknown = predict_recordings(model, data, "test", held, SubjectIndex([]), window, device)
    return RunPredictions(known, unknown, data)
