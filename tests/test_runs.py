"""Cached runs: trained once, verified before reuse, replaced when broken, never left half-written."""

from __future__ import annotations

import fcntl
import json
import functools
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import tqdm

import train_fixtures as tf
from dmf2mel import runs
from dmf2mel.checkpoint import BEST_CHECKPOINT, METRICS_FILE
from dmf2mel.data import corpus as corpus_module
from dmf2mel.errors import DataError, TrainingFailed, UserError
from dmf2mel.evaluate import score_predictions

N_NULL = 20  # chance levels are not under test here; keep the evaluation fast
REAL_SOURCE_DIGEST = runs.source_digest


@pytest.fixture(scope="module", autouse=True)
def tiny_model():
    """A small convolutional decoder and a 3-epoch profile (train_fixtures): a run trains in about a second."""
    tf.register()


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    """Four subjects (one held out) x two stories of 3000 samples, written without simulation."""
    return tf.make_corpus(tmp_path_factory.mktemp("corpus") / "split_data")


@pytest.fixture(autouse=True)
def fixed_source(monkeypatch):
    """The package source is held fixed: an edit elsewhere in a working tree must not rename runs mid-test."""
    monkeypatch.setattr(runs, "source_digest", lambda: "f" * 12)


def cached(corpus, root, **kwargs):
    kwargs = {"model": "tiny", "profile": "tiny", **kwargs}
    return runs.cached_run(data=corpus, root=root, n_null=N_NULL, progress=False, verbose=False, **kwargs)


@pytest.fixture()
def count_training(monkeypatch):
    """Counts calls of the trainer that cached_run makes (the real trainer still runs)."""
    calls = []
    real_train = runs.train

    def counting_train(*args, **kwargs):
        calls.append(kwargs)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(runs, "train", counting_train)
    return calls


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory):
    """One cached run, trained once for the tests that only read it or copy it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(runs, "source_digest", lambda: "f" * 12)
        return cached(tiny_corpus, tmp_path_factory.mktemp("runs"))


def copy_run(trained, root):
    """``trained`` copied into the cache ``root``, under its own name."""
    return Path(shutil.copytree(trained, root / trained.name))


def test_trains_once_then_reuses_the_verified_run(tiny_corpus, trained, count_training):
    assert cached(tiny_corpus, trained.parent) == trained
    assert count_training == [], "a verified cached run must not be trained again"
    metrics = runs.verify_run(trained, runs.run_identity(tiny_corpus, "tiny", "tiny", None, 0))
    # the metrics name the checkpoint in the final folder, not in the temporary one it was trained in
    assert metrics["checkpoint"] == str(trained / BEST_CHECKPOINT)
    assert metrics["known"]["paper_r"] > metrics["known"]["chance_r"]
    # nothing but the run is left in the cache (the lock file goes with its release)
    assert [p.name for p in trained.parent.iterdir()] == [trained.name]


def test_every_part_of_the_identity_names_another_run(tiny_corpus):
    base = runs.run_identity(tiny_corpus, "tiny", "tiny", None, 0)
    assert base["epochs"] == runs.PROFILES["tiny"].epochs
    variants = [
        runs.run_identity(tiny_corpus, "linear", "tiny", None, 0),
        runs.run_identity(tiny_corpus, "tiny", "quick", None, 0),
        runs.run_identity(tiny_corpus, "tiny", "tiny", 2, 0),
        runs.run_identity(tiny_corpus, "tiny", "tiny", None, 1),
        {**base, "source": "0" * 12},
        {**base, "corpus_version": "other"},
    ]
    names = {runs.run_name(identity) for identity in [base, *variants]}
    assert len(names) == 1 + len(variants)
    assert runs.run_name(base) == runs.run_name(runs.run_identity(tiny_corpus, "tiny", "tiny", None, 0))


def test_source_digest_ignores_figures_but_not_the_trainer(monkeypatch, tmp_path):
    package = tmp_path / "pkg"
    (package / "viz").mkdir(parents=True)
    (package / "train.py").write_text("A = 1\n")
    (package / "viz" / "mel.py").write_text("B = 1\n")
    monkeypatch.setattr(runs, "_PACKAGE_ROOT", package)
    before = REAL_SOURCE_DIGEST()
    (package / "viz" / "mel.py").write_text("B = 2\n")
    assert REAL_SOURCE_DIGEST() == before
    (package / "train.py").write_text("A = 2\n")
    assert REAL_SOURCE_DIGEST() != before


def test_a_broken_cached_run_is_trained_again(tiny_corpus, trained, tmp_path, count_training):
    folder = copy_run(trained, tmp_path)
    (folder / BEST_CHECKPOINT).write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="best.pt"):
        runs.verify_run(folder)
    again = cached(tiny_corpus, tmp_path)
    assert again == folder and len(count_training) == 1
    runs.verify_run(again)


@pytest.mark.parametrize(
    "damage, reason",
    [
        ("nan history", r"its training diverged \(history.csv: val_r nan in epoch 2\); not reused"),
        ("stopped", r"its training diverged \(history.csv: epoch 2 diverged \(.*\): training stopped"),
        ("failed windows", r"predicted NaN or infinite values on the test parts \(known subjects\)"),
    ],
)
def test_a_cached_run_whose_training_diverged_is_not_reused(
    tiny_corpus, trained, tmp_path, count_training, damage, reason
):
    folder = copy_run(trained, tmp_path)
    history = (folder / "history.csv").read_text().splitlines()
    header = history[0].split(",")
    if damage == "nan history":
        row = history[2].split(",")
        row[header.index("val_r")] = "nan"
        history[2] = ",".join(row)
    elif damage == "stopped":
        row = history[2].split(",")
        row[header.index("event")] = '"epoch 2 diverged (3 of 3 steps): training stopped; best.pt holds epoch 1"'
        history[2] = ",".join(row)
    else:
        metrics = json.loads((folder / METRICS_FILE).read_text())
        metrics["known"]["n_failed_windows"] = 2
        (folder / METRICS_FILE).write_text(json.dumps(metrics))
    (folder / "history.csv").write_text("\n".join(history) + "\n")
    with pytest.raises(DataError, match=reason):
        runs.verify_run(folder)
    assert cached(tiny_corpus, tmp_path) == folder and len(count_training) == 1
    runs.verify_run(folder)


def interrupted_train(data, run, **kwargs):
    run.mkdir(parents=True)
    (run / "config.json").write_text("{}")
    raise KeyboardInterrupt  # as when a book cell runs past its time limit


def test_a_failed_training_leaves_nothing_but_a_note(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(runs, "train", interrupted_train)
    with pytest.raises(TrainingFailed, match=r"training the tiny run \(tiny profile.*interrupted"):
        cached(tiny_corpus, tmp_path)
    left = sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock"))
    assert len(left) == 1 and left[0].endswith(".failed.json"), "no half-written run, no temporary folder"


def test_a_failure_is_reported_later_in_the_same_build_not_trained_again(
    tiny_corpus, tmp_path, monkeypatch, count_training
):
    monkeypatch.setenv(runs.BUILD_ENV, "build-1")
    real_train = runs.train
    monkeypatch.setattr(runs, "train", interrupted_train)
    with pytest.raises(TrainingFailed):
        cached(tiny_corpus, tmp_path)
    monkeypatch.setattr(runs, "train", real_train)
    # a later chapter of the same build: one sentence, no second training
    with pytest.raises(
        TrainingFailed,
        match=r"already failed in this build at \d\d:\d\d:\d\d after \d+ s: it was "
        r"interrupted.*retry=True",
    ):
        cached(tiny_corpus, tmp_path)
    assert count_training == []
    # the next build trains again, and a success removes the note
    monkeypatch.setenv(runs.BUILD_ENV, "build-2")
    monkeypatch.setattr(runs, "train", real_train)  # the counting trainer of the fixture
    folder = cached(tiny_corpus, tmp_path)
    assert len(count_training) == 1 and runs.verify_run(folder)
    assert not list(tmp_path.glob("*.failed.json"))


def test_retry_and_sessions_without_a_build_id_train_again(tiny_corpus, tmp_path, monkeypatch, count_training):
    monkeypatch.setenv(runs.BUILD_ENV, "build-1")
    real_train = runs.train
    monkeypatch.setattr(runs, "train", interrupted_train)
    with pytest.raises(TrainingFailed):
        cached(tiny_corpus, tmp_path)
    monkeypatch.setattr(runs, "train", real_train)  # the counting trainer of the fixture
    with pytest.raises(TrainingFailed, match="already failed"):
        cached(tiny_corpus, tmp_path)
    cached(tiny_corpus, tmp_path, retry=True)
    assert len(count_training) == 1
    shutil.rmtree(next(p for p in tmp_path.iterdir() if p.is_dir()))
    monkeypatch.setattr(runs, "train", interrupted_train)
    with pytest.raises(TrainingFailed):
        cached(tiny_corpus, tmp_path)
    monkeypatch.delenv(runs.BUILD_ENV)  # JupyterLab or a script: the user sees the training and may retry it
    monkeypatch.setattr(runs, "train", real_train)  # the counting trainer of the fixture
    cached(tiny_corpus, tmp_path)
    assert len(count_training) == 2


def test_a_data_error_keeps_its_own_message(tiny_corpus, tmp_path, monkeypatch):
    def bad_data(data, run, **kwargs):
        raise DataError("train_-_sub-001_-_x_-_eeg.npy: expected 64 channels, found 63")

    monkeypatch.setattr(runs, "train", bad_data)
    with pytest.raises(DataError, match="found 63"):
        cached(tiny_corpus, tmp_path)


def test_a_waiting_process_says_whom_it_waits_for(tiny_corpus, trained, tmp_path, capsys):
    folder = copy_run(trained, tmp_path)
    lock = tmp_path / f".{folder.name}.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        handle.write("process 4242 (since 10:00:00)")
        handle.flush()
        waiter = threading.Thread(
            target=lambda: runs.cached_run(
                model="tiny", profile="tiny", data=tiny_corpus, root=tmp_path, n_null=N_NULL, progress=False
            )
        )
        waiter.start()
        time.sleep(0.5)
        assert waiter.is_alive(), "the lock holder must be waited for"
        fcntl.flock(handle, fcntl.LOCK_UN)
    waiter.join(timeout=60)
    out = capsys.readouterr().out
    assert "waiting for process 4242 (since 10:00:00), which is training the tiny run (tiny profile" in out
    assert f"using the cached tiny run {folder}" in out


def test_older_versions_of_the_same_run_are_removed(tiny_corpus, trained, tmp_path, count_training):
    copy_run(trained, tmp_path)
    identity = runs.run_identity(tiny_corpus, "tiny", "tiny", None, 0)
    old = tmp_path / runs.run_name({**identity, "source": "0" * 12})
    other_seed = tmp_path / runs.run_name(runs.run_identity(tiny_corpus, "tiny", "tiny", None, 7))
    for folder in (old, other_seed):
        folder.mkdir()
        (folder / runs.IDENTITY_FILE).write_text("{}")
    folder = cached(tiny_corpus, tmp_path)
    assert folder.is_dir() and not old.exists() and count_training == []
    assert other_seed.is_dir(), "a run with another seed is another run, not an older version"


def test_concurrent_requests_train_once(tiny_corpus, tmp_path, count_training):
    folders = []
    threads = [threading.Thread(target=lambda: folders.append(cached(tiny_corpus, tmp_path))) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(folders) == 2 and folders[0] == folders[1]
    assert len(count_training) == 1


def test_predictions_are_the_ones_the_metrics_scored(trained):
    folder = trained
    metrics = runs.read_metrics(folder)
    predictions = runs.run_predictions(folder)
    assert {p.subject for p in predictions.unknown} == set(predictions.data.held_out_subjects)
    assert {p.subject for p in predictions.known}.isdisjoint(predictions.data.held_out_subjects)
    for protocol in ("known", "unknown"):
        rescored = score_predictions(getattr(predictions, protocol), n_null=N_NULL)
        assert rescored["paper_r"] == pytest.approx(metrics[protocol]["paper_r"], abs=1e-6)
        assert rescored["per_band"] == pytest.approx(metrics[protocol]["per_band"], abs=1e-6)
    for prediction in predictions.by_recording().values():
        assert prediction.pred.shape == prediction.true.shape and prediction.pred.shape[1] == 10


def test_mel_power_maps_the_true_mel_back_to_the_stored_one(trained):
    predictions = runs.run_predictions(trained)
    subject, stimulus = predictions.known[0].subject, predictions.known[0].stimulus
    power = predictions.mel_power(subject, stimulus, which="true")
    stored = np.asarray(predictions.data.raw("test", subject, stimulus, "mel"))[: len(power)]
    np.testing.assert_allclose(power, np.clip(stored, 0, None), rtol=1e-4, atol=1e-5 * np.abs(stored).max())
    assert predictions.mel_power(subject, stimulus).min() >= 0.0
    with pytest.raises(UserError, match="no test prediction"):
        predictions.mel_power("sub-999", stimulus)


def test_history_table_reads_missing_validations_as_nan(tmp_path):
    (tmp_path / "history.csv").write_text("epoch,loss,val_r,event\n1,0.5,,\n2,0.25,0.125,epoch 2 diverged\n")
    table = runs.history_table(tmp_path)
    np.testing.assert_array_equal(table["epoch"], [1.0, 2.0])
    np.testing.assert_array_equal(table["loss"], [0.5, 0.25])
    assert np.isnan(table["val_r"][0]) and table["val_r"][1] == 0.125
    assert table["event"].tolist() == ["", "epoch 2 diverged"]


def test_read_metrics_names_the_missing_file(tmp_path):
    with pytest.raises(Exception, match=METRICS_FILE):
        runs.read_metrics(tmp_path)
    (tmp_path / METRICS_FILE).write_text(json.dumps({"known": {"paper_r": 0.1}}))
    assert runs.read_metrics(tmp_path)["known"]["paper_r"] == 0.1


def test_a_cached_run_shows_a_finished_bar_of_its_epochs(
    tiny_corpus, trained, tmp_path, count_training, capsys, monkeypatch
):
    """Reused, a run still shows its epochs as a (finished) progress bar, so a chapter's output does not depend
    on whether the building machine had the run cached; without progress bars it shows none."""
    # the suite sets TQDM_DISABLE for every bar; this test wants to see them (as text)
    monkeypatch.setattr(runs, "tqdm", functools.partial(tqdm.std.tqdm, disable=False))
    copy_run(trained, tmp_path / "runs")
    history = runs.history_table(trained)
    epochs = int(history["epoch"][-1])
    kwargs = dict(model="tiny", profile="tiny", data=tiny_corpus, root=tmp_path / "runs", n_null=N_NULL)
    runs.cached_run(**kwargs)
    err = capsys.readouterr().err
    assert not count_training
    assert "cached tiny" in err and f"{epochs}/{epochs}" in err
    assert f"best val r {history['best_val_r'][-1]:.4f}" in err
    runs.cached_run(progress=False, **kwargs)
    assert "cached tiny" not in capsys.readouterr().err


def test_book_run_fixes_the_chapters_choices(monkeypatch, tmp_path):
    calls = []
    monkeypatch.setattr(runs, "cached_run", lambda *args, **kwargs: calls.append((args, kwargs)) or tmp_path)
    assert runs.book_run("cnn", verbose=False) == tmp_path
    (model,), kwargs = calls[0]
    assert model == "cnn"
    assert kwargs["preset"] == "teaching" and kwargs["profile"] == "quick"
    assert kwargs["epochs"] == runs.BOOK_EPOCHS and kwargs["seed"] == 0


def test_a_run_in_the_cache_is_named_relative_to_it(tiny_corpus, trained, tmp_path, monkeypatch, capsys):
    """A book page shows ``$DMF2MEL_CACHE/runs/<name>``, not the building machine's folders."""
    monkeypatch.setenv(corpus_module.CACHE_ENV, str(tmp_path))
    folder = copy_run(trained, tmp_path / "runs")
    runs.cached_run(model="tiny", profile="tiny", data=tiny_corpus, root=tmp_path / "runs", n_null=N_NULL)
    out = capsys.readouterr().out
    assert f"using the cached tiny run $DMF2MEL_CACHE/runs/{folder.name}" in out and str(tmp_path) not in out
    assert corpus_module.shown_path("/elsewhere/run") == "/elsewhere/run"
