"""Evaluation protocols, window-by-window prediction, the evaluate/predict commands and their refusals."""

import argparse
import json

import numpy as np
import pytest
import torch
from torch import nn

import train_fixtures as tf
from dmf2mel.cli import add_evaluate_parser, add_predict_parser
from dmf2mel.data import sparrkulee as sk
from dmf2mel.data.datasets import SubjectIndex
from dmf2mel.errors import DataError, NonFinitePrediction, UserError
from dmf2mel.evaluate import (
    default_held_out,
    evaluate_run,
    predict_recording,
    predict_recordings,
)
from dmf2mel.train import train


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tf.register()
    root = tmp_path_factory.mktemp("evaluate")
    corpus = tf.make_corpus(root / "split_data")
    run = root / "run"
    train(corpus, run, model="tiny", profile="tiny", epochs=2, quiet=True, test=False)
    return corpus, run


class Pointwise(nn.Module):
    """A per-time-step linear map plus the subject id as an offset: windowing cannot change it."""

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(64, 10)
        self.seen = []

    def forward(self, eeg, subject):
        self.seen.extend(subject.tolist())
        return self.linear(eeg) + subject[:, None, None].float()


@pytest.mark.parametrize("n_samples", [25, 40, 7])
def test_predict_recording_stitches_windows_exactly(n_samples):
    model = Pointwise().eval()
    eeg = np.random.default_rng(0).standard_normal((n_samples, 64)).astype(np.float32)
    got = predict_recording(model, eeg, subject=3, window=10, batch_size=2)
    with torch.no_grad():
        expected = model(torch.from_numpy(eeg)[None], torch.tensor([3]))[0].numpy()
    assert got.shape == (n_samples, 10)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_subjects_outside_the_index_are_predicted_as_unknown(trained):
    corpus, _ = trained
    data = sk.SplitData(corpus)
    model = Pointwise().eval()
    preds = predict_recordings(model, data, "test", data.recordings, SubjectIndex(["sub-002"]), window=64)
    assert set(model.seen) == {0, -1}
    for p in preds:
        eeg, mel = data.pair("test", p.subject, p.stimulus)
        np.testing.assert_array_equal(p.true, mel)
        assert p.pred.shape == mel.shape


def test_default_held_out_comes_from_metadata_else_the_2023_challenge_subjects(tmp_path):
    rng = np.random.default_rng(0)
    for subject in ("sub-001", "sub-072", "sub-085"):
        sk.write_recording(tmp_path, subject, "story", rng.standard_normal((100, 64)), rng.standard_normal((100, 10)))
    assert default_held_out(sk.SplitData(tmp_path)) == ["sub-072", "sub-085"]
    sk.write_metadata(tmp_path, {"held_out_subjects": ["sub-001"]})
    assert default_held_out(sk.SplitData(tmp_path)) == ["sub-001"]


def _parse(*argv):
    parser = argparse.ArgumentParser()
    subparsers = parser.add_subparsers()
    add_evaluate_parser(subparsers)
    add_predict_parser(subparsers)
    return parser.parse_args(argv)


def test_evaluate_json_prints_one_object_with_both_protocols(trained, capsys):
    corpus, run = trained
    args = _parse("evaluate", "--data", str(corpus), "--run", str(run), "--json", "--n-null", "100")
    assert args.func(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed) == {"known", "unknown"}
    for name in ("known", "unknown"):
        result = printed[name]
        for key in ("paper_r", "challenge_r", "per_band", "per_subject", "chance_r", "p_value"):
            assert key in result
        assert len(result["per_band"]) == 10
    assert set(printed["known"]["per_subject"]) == {"sub-001", "sub-002", "sub-003"}
    assert set(printed["unknown"]["per_subject"]) == {"sub-004"}
    assert printed["known"]["paper_r"] > printed["known"]["chance_r"]
    assert json.loads((run / "metrics.json").read_text())["known"] == printed["known"]


def test_evaluate_refusals(trained, tmp_path):
    corpus, run = trained
    with pytest.raises(UserError, match="run folder not found"):
        evaluate_run(tmp_path / "no_run", corpus)
    assert not (tmp_path / "no_run").exists()
    with pytest.raises(UserError, match="sub-001 were training subjects"):
        evaluate_run(run, corpus, held_out=["sub-001"], write=False)
    other = tf.make_corpus(tmp_path / "eeg32", n_chans=32)
    with pytest.raises(DataError, match=r"takes 64-channel EEG"):
        evaluate_run(run, other, write=False)


@pytest.fixture
def nan_on_sub_002(monkeypatch):
    """The tiny run's predictions, with NaN in the last 40 rows of sub-002's recordings (the failure seen in a book
    build: a model's last chunk of some recordings)."""
    import dmf2mel.evaluate as evaluate_module

    real = evaluate_module.predict_recording

    def failing(model, eeg, subject, *args, **kwargs):
        out = real(model, eeg, subject, *args, **kwargs)
        if subject == 1:
            out[-40:] = np.nan
        return out

    monkeypatch.setattr(evaluate_module, "predict_recording", failing)


def test_evaluate_refuses_non_finite_predictions_and_keeps_the_old_metrics(trained, nan_on_sub_002, capsys):
    corpus, run = trained
    metrics_file = run / "metrics.json"
    metrics_file.write_text('{"earlier": true}')
    with pytest.raises(NonFinitePrediction, match=r"tiny run .*run, sub-002 / story_1\) has 400 NaN"):
        evaluate_run(run, corpus, n_null=10)
    assert json.loads(metrics_file.read_text()) == {"earlier": True}
    args = _parse("evaluate", "--data", str(corpus), "--run", str(run), "--n-null", "10")
    with pytest.raises(NonFinitePrediction):
        args.func(args)


def test_evaluate_can_count_non_finite_predictions_as_failures(trained, nan_on_sub_002, capsys):
    corpus, run = trained
    args = _parse("evaluate", "--data", str(corpus), "--run", str(run), "--n-null", "10", "--non-finite", "fail")
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    assert "windows FAILED (non-finite predictions, scored r = 0)" in printed.splitlines()[0]
    known = json.loads((run / "metrics.json").read_text())["known"]
    # 300 test samples: one window of its own length per recording; both of sub-002's recordings fail
    assert known["n_failed_windows"] == 2
    assert known["paper"]["failed_recordings"] == ["sub-002 / story_1", "sub-002 / story_2"]
    assert known["per_subject"]["sub-002"] == 0.0
    honest = evaluate_run(run, corpus, n_null=10, write=False, non_finite="fail")["unknown"]
    assert honest["n_failed_windows"] == 0


def test_evaluate_can_predict_with_another_window(trained):
    """The tiny run trained on 2 s windows (128 samples); each 300-sample test part is then three forward passes,
    or one with window=300: the convolution's edges move, so the scores change a little, and the window is
    recorded."""
    corpus, run = trained
    default = evaluate_run(run, corpus, n_null=10, write=False)
    whole = evaluate_run(run, corpus, n_null=10, write=False, window=300)
    assert default["window"] == 128 and whole["window"] == 300
    assert whole["known"]["paper_r"] != default["known"]["paper_r"]
    assert whole["known"]["paper_r"] == pytest.approx(default["known"]["paper_r"], abs=0.05)
    with pytest.raises(UserError, match="window must be an integer >= 1"):
        evaluate_run(run, corpus, write=False, window=0)


def test_predict_writes_a_challenge_submission(trained, tmp_path):
    corpus, run = trained
    rng = np.random.default_rng(1)
    segments = {f"seg_{k}": rng.standard_normal((1920, 64)).astype(np.float32) for k in range(3)}
    npz, mapping = sk.write_challenge_subject(tmp_path, "sub-002", segments)
    args = _parse(
        "predict", "--run", str(run), "--eeg", str(npz), "--mapping", str(mapping), "--out", str(tmp_path / "out")
    )
    assert args.func(args) == 0
    predictions = sk.read_predictions(tmp_path / "out" / "sub-002.json")
    assert sorted(predictions) == sorted(segments)
    assert all(p.shape == (1920, 10) and np.isfinite(p).all() for p in predictions.values())


def _predict_main(*argv):
    from dmf2mel.cli import main

    return main(["predict", *map(str, argv)])


def test_predict_test_folder_writes_one_submission_per_subject(trained, tmp_path, capsys):
    corpus, run = trained
    known = json.loads((run / "config.json").read_text())["data"]["subjects"][0]
    task2 = tmp_path / "test_set" / "TASK2_regression"
    rng = np.random.default_rng(2)
    segments = {}
    for subject in (known, "sub-099"):
        segments[subject] = {f"{subject}_seg_{k}": rng.standard_normal((1920, 64)).astype(np.float32) for k in range(2)}
        sk.write_challenge_subject(task2, subject, segments[subject])
    capsys.readouterr()
    assert _predict_main("--run", run, "--test-folder", task2, "--out", tmp_path / "out") == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([f"{known}.json", "sub-099.json"])
    for subject, segs in segments.items():
        predictions = sk.read_predictions(tmp_path / "out" / f"{subject}.json")
        assert list(predictions) == list(segs) and all(p.shape == (1920, 10) for p in predictions.values())
    assert "sub-099 is not a training subject" in printed and f"{known} is not" not in printed
    # the single-subject form names the subject the same way and gives the same predictions
    single = tmp_path / "single"
    npz, mapping = task2 / "preprocessed_eeg" / f"{known}_eeg.npz", task2 / f"{known}_mapping.json"
    assert _predict_main("--run", run, "--eeg", npz, "--mapping", mapping, "--out", single) == 0
    assert (single / f"{known}.json").read_bytes() == (tmp_path / "out" / f"{known}.json").read_bytes()


def test_predict_with_a_bad_subject_writes_nothing(trained, tmp_path, capsys):
    corpus, run = trained
    task2 = tmp_path / "TASK2_regression"
    sk.write_challenge_subject(task2, "sub-001", {"a": np.zeros((1920, 64))})
    _, mapping = sk.write_challenge_subject(task2, "sub-002", {"b": np.zeros((1920, 64))})
    mapping.write_text(json.dumps({"b": {"eeg": "eeg_7"}}))
    with pytest.raises(DataError, match=r"sub-002_eeg.npz: has no array 'eeg_7'"):
        _predict_args_run(run, task2, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    capsys.readouterr()
    assert _predict_main("--run", run, "--test-folder", task2, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "sub-002_mapping.json" in err and "eeg_7" in err
    assert not (tmp_path / "out").exists()
    npz = task2 / "preprocessed_eeg" / "sub-001_eeg.npz"
    args = _parse(
        "predict", "--run", str(run), "--eeg", str(npz), "--mapping", str(mapping), "--out", str(tmp_path / "o")
    )
    with pytest.raises(DataError, match="expected the EEG of sub-002"):
        args.func(args)
    with pytest.raises(UserError, match="either --test-folder"):
        args = _parse("predict", "--run", str(run), "--eeg", str(npz), "--out", str(tmp_path / "o"))
        args.func(args)


def _predict_args_run(run, folder, out):
    args = _parse("predict", "--run", str(run), "--test-folder", str(folder), "--out", str(out))
    return args.func(args)


def test_predict_refuses_a_missing_run(tmp_path):
    args = _parse(
        "predict", "--run", str(tmp_path / "none"), "--eeg", "x.npz", "--mapping", "x.json", "--out", str(tmp_path)
    )
    with pytest.raises(UserError, match="run folder not found"):
        args.func(args)
