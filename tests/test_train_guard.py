"""The trainer's guard: no update from a non-finite step, gradient clipping, warm-up, recovery from divergence, --lr."""

import argparse
import dataclasses
import json
import math

import pytest
import torch

import train_fixtures as tf
from dmf2mel.checkpoint import load_checkpoint, load_model, read_history, save_checkpoint
from dmf2mel.cli import add_train_parser
from dmf2mel.errors import TrainingFailed, UserError
from dmf2mel.evaluate import predict_recordings
from dmf2mel.data.datasets import SubjectIndex
from dmf2mel.data.sparrkulee import SplitData
from dmf2mel.train import MAX_RECOVERIES, PROFILES, train

# 3 subjects x 2 stories x 2 windows per recording = 12 windows: 3 steps of 4 per epoch
STEPS_PER_EPOCH = 3


@pytest.fixture(scope="module", autouse=True)
def tiny_model_and_profile():
    tf.register()
    PROFILES["tiny-guarded"] = dataclasses.replace(tf.TINY_PROFILE, name="tiny-guarded", clip_grad_norm=1.0)


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return tf.make_corpus(tmp_path_factory.mktemp("corpus") / "split_data")


@pytest.fixture
def flaky(monkeypatch):
    """Set which calls of the flaky model fail (reset after the test)."""

    def configure(training_calls=(), eval_after=None):
        monkeypatch.setattr(tf.FlakyDecoder, "FAIL_TRAINING_CALLS", set(training_calls))
        monkeypatch.setattr(tf.FlakyDecoder, "FAIL_EVAL_AFTER", eval_after)

    return configure


def _column(run, name):
    return [row[name] for row in read_history(run)]


def test_a_non_finite_step_never_updates_the_weights(corpus, tmp_path, flaky):
    flaky(training_calls={2})
    run = tmp_path / "run"
    train(corpus, run, model="flaky", profile="tiny-guarded", epochs=1, quiet=True, test=False)
    history = read_history(run)[0]
    assert history["skipped_steps"] == "1" and history["step"] == str(STEPS_PER_EPOCH - 1)
    assert history["event"] == ""  # one skipped step of three is not a divergence
    state = load_checkpoint(run / "last.pt")
    assert all(torch.isfinite(value).all() for value in state["model"].values())
    assert math.isfinite(float(history["loss"]))  # the skipped step is not in the epoch's mean


def test_a_flat_eeg_file_trains_the_cnn_baseline_to_finite_weights(tmp_path):
    """One recording's EEG all zeros (a disconnected cap): the CNN predicts a constant there, and the Pearson loss's
    square root of a zero sum of squares used to give a NaN gradient, and NaN weights from the first epoch."""
    import numpy as np

    corpus = tf.make_corpus(tmp_path / "split_data")
    for split in ("train", "val", "test"):
        path = corpus / f"{split}_-_sub-002_-_story_1_-_eeg.npy"
        np.save(path, np.zeros_like(np.load(path)))
    summary = train(corpus, tmp_path / "run", model="cnn", profile="tiny", epochs=2, quiet=True, n_null=10)
    assert _column(tmp_path / "run", "skipped_steps") == ["0", "0"]
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert all(torch.isfinite(value).all() for value in state["model"].values() if value.is_floating_point())
    assert summary["metrics"]["known"]["paper_r"] > summary["metrics"]["known"]["chance_r"]


def test_gradient_norms_are_recorded_and_clipped(corpus, tmp_path):
    PROFILES["tiny-clipped"] = dataclasses.replace(tf.TINY_PROFILE, name="tiny-clipped", clip_grad_norm=1e-6)
    run = tmp_path / "run"
    train(corpus, run, model="tiny", profile="tiny-clipped", epochs=2, quiet=True, test=False)
    for row in read_history(run):
        assert float(row["grad_norm"]) > 1e-3 and float(row["grad_norm_max"]) >= float(row["grad_norm"])
        assert row["clipped_steps"] == str(STEPS_PER_EPOCH) and row["skipped_steps"] == "0"


def test_warm_up_scales_the_first_steps(corpus, tmp_path):
    """Adam's first update moves every weight with a gradient by about the learning rate: by lr / 4 with a warm-up
    of 4 steps."""
    PROFILES["tiny-warm"] = dataclasses.replace(tf.TINY_PROFILE, name="tiny-warm", warmup_steps=4)
    PROFILES["tiny-one-step"] = dataclasses.replace(tf.TINY_PROFILE, name="tiny-one-step", batch_size=12)
    PROFILES["tiny-warm-one-step"] = dataclasses.replace(
        PROFILES["tiny-warm"], name="tiny-warm-one-step", batch_size=12
    )
    moves = {}
    for profile in ("tiny-one-step", "tiny-warm-one-step"):
        run = tmp_path / profile
        train(corpus, run, model="tiny", profile=profile, epochs=1, quiet=True, test=False)
        torch.manual_seed(0)
        start = tf.TinyDecoder(3)
        trained = load_checkpoint(run / "last.pt")["model"]
        moves[profile] = (trained["conv.weight"] - start.conv.weight.detach()).abs().median().item()
    assert moves["tiny-one-step"] == pytest.approx(3e-3, rel=0.05)
    assert moves["tiny-warm-one-step"] == pytest.approx(3e-3 / 4, rel=0.05)
    rows = read_history(tmp_path / "tiny-warm-one-step")
    assert rows[0]["step"] == "1" and float(rows[0]["lr"]) == pytest.approx(3e-3)  # the schedule's, not the warm one


def test_a_diverged_epoch_restores_the_best_state_with_half_the_learning_rate(corpus, tmp_path, flaky, capsys):
    # every step of epoch 2 fails
    flaky(training_calls=range(STEPS_PER_EPOCH + 1, 2 * STEPS_PER_EPOCH + 1))
    run = tmp_path / "run"
    summary = train(corpus, run, model="flaky", profile="tiny-guarded", epochs=3, quiet=True, test=False)
    events = _column(run, "event")
    assert events[0] == "" and events[2] == ""
    assert events[1] == (
        "epoch 2 diverged (3 of 3 steps had a non-finite loss or gradient): restored the state of epoch 1 and cut the "
        f"learning rate to 0.00075 (recovery 1 of {MAX_RECOVERIES})"  # StepLR had already halved it for epoch 3
    )
    assert events[1] in capsys.readouterr().out
    assert [float(lr) for lr in _column(run, "lr")] == pytest.approx([3e-3, 3e-3, 1.5e-3 * 0.5])  # StepLR(2, 0.5) on
    assert _column(run, "skipped_steps") == ["0", "3", "0"]
    assert summary["best_epoch"] in (1, 3)
    state = load_checkpoint(run / "last.pt")
    assert state["recoveries"] == 1 and all(torch.isfinite(value).all() for value in state["model"].values())


def test_best_pt_never_predicts_non_finite_values_on_validation(corpus, tmp_path, flaky, capsys):
    """From epoch 2 on, the model predicts NaN in evaluation: every later epoch diverges, the run recovers
    MAX_RECOVERIES times, then stops; best.pt stays the state of epoch 1."""
    flaky(eval_after=STEPS_PER_EPOCH)
    run = tmp_path / "run"
    summary = train(corpus, run, model="flaky", profile="tiny-guarded", epochs=10, quiet=True, test=False)
    events = _column(run, "event")
    assert len(events) == 2 + MAX_RECOVERIES and summary["stopped_early"]
    assert "restored the state of epoch 1" in events[1]
    assert events[-1] == (
        f"epoch {len(events)} diverged (its model predicted NaN or infinite values in 6 validation windows) after "
        f"{MAX_RECOVERIES} recoveries: training stopped; best.pt holds epoch 1"
    )
    assert load_checkpoint(run / "best.pt")["epoch"] == 1
    assert "stopped early" not in capsys.readouterr().out
    tf.FlakyDecoder.FAIL_EVAL_AFTER = None
    config, model = load_model(run, "best.pt")
    data = SplitData(corpus)
    predictions = predict_recordings(
        model,
        data,
        "val",
        data.recordings_in("val", subjects=config["data"]["subjects"]),
        SubjectIndex(config["data"]["subjects"]),
        config["data"]["window"],
    )
    assert all(torch.isfinite(torch.as_tensor(p.pred)).all() for p in predictions)


def test_a_run_without_any_finite_validation_fails_with_one_sentence(corpus, tmp_path, flaky):
    flaky(eval_after=0)
    with pytest.raises(TrainingFailed, match="no epoch's model predicted finite values on validation"):
        train(corpus, tmp_path / "run", model="flaky", profile="tiny-guarded", epochs=6, quiet=True, test=False)
    assert not (tmp_path / "run" / "best.pt").exists()


def test_the_profile_sets_the_loss_weights(corpus, tmp_path):
    PROFILES["tiny-pearson"] = dataclasses.replace(tf.TINY_PROFILE, name="tiny-pearson", loss_weights=(1.0, 0.0, 0.0))
    run = tmp_path / "run"
    train(corpus, run, model="tiny", profile="tiny-pearson", epochs=1, quiet=True, test=False)
    row = read_history(run)[0]
    assert float(row["loss"]) == pytest.approx(-float(row["train_r"]))  # the loss is -r alone
    assert float(row["train_l1"]) > 0  # the other terms are still recorded
    assert json.loads((run / "config.json").read_text())["train"]["loss_weights"] == [1.0, 0.0, 0.0]


def test_lr_from_the_command_line(corpus, tmp_path):
    parser = argparse.ArgumentParser()
    add_train_parser(parser.add_subparsers())
    run = tmp_path / "run"
    args = parser.parse_args(
        [
            "train",
            "--data",
            str(corpus),
            "--run",
            str(run),
            "--model",
            "tiny",
            "--profile",
            "tiny",
            "--epochs",
            "1",
            "--lr",
            "0.0007",
            "--no-test",
            "--quiet",
        ]
    )
    assert args.func(args) == 0
    assert json.loads((run / "config.json").read_text())["train"]["lr"] == 0.0007
    assert float(read_history(run)[0]["lr"]) == pytest.approx(7e-4)
    assert PROFILES["tiny"].lr == 3e-3  # the profile keeps its default
    for bad in (0.0, -1e-3, float("nan"), float("inf")):
        with pytest.raises(UserError, match="lr must be a finite number > 0"):
            train(corpus, tmp_path / "bad", model="tiny", profile="tiny", lr=bad, quiet=True, test=False)
    assert not (tmp_path / "bad").exists()


def test_a_run_from_before_the_guard_resumes_without_warm_up_or_clipping(corpus, tmp_path):
    PROFILES["tiny-guarded-2"] = dataclasses.replace(PROFILES["tiny-guarded"], name="tiny-guarded-2", warmup_steps=5)
    run = tmp_path / "run"
    train(corpus, run, model="tiny", profile="tiny-guarded-2", epochs=1, quiet=True, test=False)
    config = json.loads((run / "config.json").read_text())
    for key in ("warmup_steps", "clip_grad_norm", "loss_weights"):
        del config["train"][key]
    (run / "config.json").write_text(json.dumps(config))
    state = load_checkpoint(run / "last.pt")
    del state["step"]
    save_checkpoint(run / "last.pt", state)
    train(corpus, run, profile="tiny-guarded-2", epochs=2, resume=True, quiet=True, test=False)
    stored = json.loads((run / "config.json").read_text())["train"]
    assert stored["warmup_steps"] == 0 and stored["clip_grad_norm"] is None
    assert read_history(run)[1]["clipped_steps"] == "0"
