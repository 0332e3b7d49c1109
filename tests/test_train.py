"""The trainer: run folder, checkpoints, resume after SIGKILL, early stopping, refusals."""

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

import train_fixtures as tf
from dmf2mel.checkpoint import build_model, load_checkpoint, read_history, rng_state, save_checkpoint, set_rng_state
from dmf2mel.errors import DataError, UserError
from dmf2mel.train import ResumeWarning, train

TESTS = Path(__file__).parent
EPOCHS = 3


@pytest.fixture(scope="module", autouse=True)
def tiny_model_and_profile():
    tf.register()


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tf.make_corpus(tmp_path_factory.mktemp("corpus") / "split_data")


@pytest.fixture(scope="module")
def finished(corpus, tmp_path_factory):
    """An uninterrupted tiny run (the reference for the resume test)."""
    run = tmp_path_factory.mktemp("runs") / "full"
    summary = train(corpus, run, model="tiny", profile="tiny", epochs=EPOCHS, quiet=True, n_null=200)
    return run, summary


def _snapshot(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_run_folder_holds_config_history_checkpoints_and_test_metrics(finished):
    run, summary = finished
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "history.csv", "last.pt", "metrics.json"]
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "tiny" and config["seed"] == 0
    assert config["data"]["subjects"] == ["sub-001", "sub-002", "sub-003"]
    assert config["data"]["held_out"] == ["sub-004"]
    history = read_history(run)
    assert [int(row["epoch"]) for row in history] == [1, 2, 3]
    assert float(history[-1]["best_val_r"]) == pytest.approx(summary["best_val_r"])
    # the learning rate follows StepLR(2, 0.5)
    assert [float(row["lr"]) for row in history] == pytest.approx([3e-3, 3e-3, 1.5e-3])
    metrics = json.loads((run / "metrics.json").read_text())
    known, unknown = metrics["known"], metrics["unknown"]
    assert known["paper_r"] > known["chance_r"] and known["p_value"] < 0.01
    assert unknown["subjects"] == ["sub-004"] and unknown["paper_r"] is not None
    assert len(known["per_band"]) == 10 and set(known["per_subject"]) == {"sub-001", "sub-002", "sub-003"}


def test_checkpoint_round_trip_is_weights_only(finished, tmp_path):
    run, _ = finished
    best = load_checkpoint(run / "best.pt")
    last = load_checkpoint(run / "last.pt")
    assert last["epoch"] == EPOCHS and len(last["history"]) == EPOCHS
    assert best["epoch"] == best["best_epoch"]
    model = build_model(best["config"])
    model.load_state_dict(best["model"])
    for key, value in model.state_dict().items():
        assert torch.equal(value, best["model"][key])
    # optimiser and scheduler states are there to resume
    assert last["optimizer"]["state"] and last["scheduler"]["last_epoch"] == EPOCHS
    # a pickle that would run code is refused
    evil = tmp_path / "evil.pt"
    torch.save({"format": 1, "model": {}, "payload": tf.TinyDecoder(1)}, evil)
    with pytest.raises(UserError, match="weights-only"):
        load_checkpoint(evil)


def test_rng_states_round_trip_through_a_checkpoint(tmp_path):
    import random

    state = rng_state()
    path = save_checkpoint(tmp_path / "rng.pt", {"model": {}, "rng": state})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    set_rng_state(load_checkpoint(path)["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


KILL_AFTER_FIRST_CHECKPOINT = textwrap.dedent(
    """
    import os, signal, sys
    sys.path.insert(0, {tests!r})
    import train_fixtures as tf
    tf.register()
    import dmf2mel.train as T

    original = T.save_checkpoint
    def save_then_die(path, state):
        original(path, state)
        if path.name == "last.pt":
            os.kill(os.getpid(), signal.SIGKILL)
    T.save_checkpoint = save_then_die
    T.train({corpus!r}, {run!r}, model="tiny", profile="tiny", epochs={epochs}, quiet=True, n_null=200)
    """
)


def test_resume_after_sigkill_equals_an_uninterrupted_run(corpus, finished, tmp_path):
    run = tmp_path / "killed"
    script = KILL_AFTER_FIRST_CHECKPOINT.format(tests=str(TESTS), corpus=str(corpus), run=str(run), epochs=EPOCHS)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -9, proc.stderr
    assert load_checkpoint(run / "last.pt")["epoch"] == 1
    assert not list(run.glob(".*tmp"))  # no half-written files

    with warnings.catch_warnings():
        warnings.simplefilter("error", ResumeWarning)  # one fixed thread count in both parts: the promise holds
        train(corpus, run, resume=True, quiet=True, n_null=200)  # model, profile, seed, epochs: the run's

    reference, _ = finished
    ref, got = load_checkpoint(reference / "last.pt"), load_checkpoint(run / "last.pt")
    assert got["epoch"] == EPOCHS
    for key, value in ref["model"].items():
        assert torch.equal(value, got["model"][key]), key
    strip = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert strip(got["history"]) == strip(ref["history"])
    ref_metrics = json.loads((reference / "metrics.json").read_text())
    got_metrics = json.loads((run / "metrics.json").read_text())
    assert got_metrics["known"] == ref_metrics["known"] and got_metrics["unknown"] == ref_metrics["unknown"]


@pytest.mark.parametrize(
    "first, then, why",
    [
        ("auto", "1", "its epochs so far ran on 1 thread\\(s\\) chosen by the machine's load"),
        ("1", "auto", "it ran on 1 fixed thread\\(s\\) and now the machine's load chooses the count"),
        ("1", "2", "it ran on 1 thread\\(s\\) and now runs on 2"),
    ],
)
def test_resume_warns_when_the_thread_count_cannot_give_the_same_bits(corpus, tmp_path, monkeypatch, first, then, why):
    from dmf2mel import threads

    run = tmp_path / "run"
    monkeypatch.setattr(threads, "threads_for", lambda usable, others: 1)  # the load-chosen count, made definite
    # forget thread counts earlier tests set (a torch.set_num_threads call would read as the user's fixed choice)
    monkeypatch.setattr(threads, "_last_set", torch.get_num_threads())
    monkeypatch.setattr(threads, "_configured_at", -float("inf"))
    monkeypatch.setenv("DMF2MEL_NUM_THREADS", first)
    train(corpus, run, model="tiny", profile="tiny", epochs=1, quiet=True, test=False)
    assert load_checkpoint(run / "last.pt")["threads"] == {"counts": [1], "fixed": first != "auto"}
    monkeypatch.setenv("DMF2MEL_NUM_THREADS", then)
    with pytest.warns(
        ResumeWarning, match=f"resume: {run} will end equal to an uninterrupted run up to rounding.*{why}"
    ):
        train(corpus, run, epochs=2, resume=True, quiet=True, test=False)
    resumed = load_checkpoint(run / "last.pt")["threads"]
    assert resumed["fixed"] == (first != "auto" and then != "auto")
    assert resumed["counts"] == ([1, 2] if then == "2" else [1])


def test_early_stopping_after_patience_validations_without_improvement(corpus, tmp_path):
    import dataclasses

    from dmf2mel.train import PROFILES

    PROFILES["frozen"] = dataclasses.replace(tf.TINY_PROFILE, name="frozen", lr=0.0, epochs=10)
    summary = train(corpus, tmp_path / "run", model="tiny", profile="frozen", patience=2, quiet=True, test=False)
    # lr 0: epoch 1 sets the best, epochs 2 and 3 do not improve -> stop after epoch 3
    assert summary["stopped_early"] and summary["epochs"] == 3 and summary["best_epoch"] == 1
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_refuses_to_overwrite_an_existing_run(corpus, finished):
    run, _ = finished
    before = _snapshot(run)
    with pytest.raises(UserError, match="not empty.*resume=True"):
        train(corpus, run, model="tiny", profile="tiny", epochs=EPOCHS, quiet=True)
    assert _snapshot(run) == before


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(model="linear"), "model:"),
        (dict(seed=1), "seed:"),
        (dict(held_out=["sub-003", "sub-004"]), "held_out"),
    ],
)
def test_refuses_to_resume_with_another_setup(corpus, finished, change, message):
    run, _ = finished
    before = _snapshot(run)
    kwargs = dict(model="tiny", profile="tiny", quiet=True) | change
    with pytest.raises(UserError, match=message):
        train(corpus, run, resume=True, **kwargs)
    assert _snapshot(run) == before


def test_refuses_to_resume_a_missing_run(corpus, tmp_path):
    with pytest.raises(UserError, match="no run to resume"):
        train(corpus, tmp_path / "nothing", model="tiny", profile="tiny", resume=True)
    assert not (tmp_path / "nothing").exists()


def test_refuses_data_with_another_channel_count(tmp_path):
    folder = tf.make_corpus(tmp_path / "eeg32", n_chans=32)
    with pytest.raises(DataError, match=r"expected shape \(time, 64\).*\(time, 32\)|\(\d+, 32\)"):
        train(folder, tmp_path / "run", model="tiny", profile="tiny", quiet=True)
    assert not (tmp_path / "run").exists()


def test_refuses_unknown_held_out_subjects(corpus, tmp_path):
    with pytest.raises(UserError, match="sub-099"):
        train(corpus, tmp_path / "run", model="tiny", profile="tiny", held_out=["sub-099"])


def test_epoch_batches_drop_the_last_incomplete_batch_as_the_official_loader():
    from dmf2mel.train import _epoch_batches, _Process

    one = _Process(rank=0, world=1, device=torch.device("cpu"))
    batches = _epoch_batches(10, 4, seed=0, epoch=0, proc=one)
    assert [len(b) for b in batches] == [4, 4]
    assert [len(b) for b in _epoch_batches(3, 4, seed=0, epoch=0, proc=one)] == [3]  # the only batch stays
    ranks = [_epoch_batches(11, 2, seed=0, epoch=1, proc=_Process(rank, 2, torch.device("cpu"))) for rank in (0, 1)]
    assert [len(b) for b in ranks[0]] == [len(b) for b in ranks[1]] == [2, 2, 2]
