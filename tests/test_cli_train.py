"""``python -m dmf2mel train / evaluate / predict`` end to end on a tiny simulated teaching corpus."""

import json
import subprocess
import sys

import numpy as np
import pytest

from dmf2mel.cli import main
from dmf2mel.data import sparrkulee as sk


@pytest.fixture(scope="module")
def linear_run(tiny_corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "linear"
    assert main(["train", "--data", str(tiny_corpus), "--run", str(run), "--model", "linear", "--quiet"]) == 0
    return run


def test_train_writes_the_run_folder(linear_run):
    names = sorted(p.name for p in linear_run.iterdir())
    assert names == ["best.pt", "config.json", "history.csv", "last.pt", "metrics.json"]
    config = json.loads((linear_run / "config.json").read_text())
    assert config["model"] == "linear" and len(config["data"]["held_out"]) == 1


def test_evaluate_json_then_predict(tiny_corpus, linear_run, tmp_path, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--data", str(tiny_corpus), "--run", str(linear_run), "--json", "--n-null", "200"]) == 0
    result = json.loads(capsys.readouterr().out)
    known, unknown = result["known"], result["unknown"]
    # the teaching corpus has a clear effect: a linear decoder is far above chance on known subjects
    assert known["paper_r"] > 2 * known["chance_r"] and known["p_value"] < 0.01
    assert unknown is not None and unknown["paper_r"] is not None and len(unknown["per_band"]) == 10

    rng = np.random.default_rng(0)
    segments = {f"segment_{k}": rng.standard_normal((1920, 64)).astype(np.float32) for k in range(2)}
    npz, mapping = sk.write_challenge_subject(tmp_path, "sub-001", segments)
    out = tmp_path / "predictions"
    argv = ["predict", "--run", str(linear_run), "--eeg", str(npz), "--mapping", str(mapping), "--out", str(out)]
    assert main(argv) == 0
    predictions = json.loads((out / "sub-001.json").read_text())
    assert sorted(predictions) == sorted(segments)
    assert np.asarray(predictions["segment_0"]).shape == (1920, 10)


def test_an_ablation_trains_and_is_scored_by_name(tiny_corpus, tmp_path, capsys):
    """Ablation names are package models: a fresh ``evaluate`` rebuilds the one-channel head from the run."""
    run = tmp_path / "single-head"
    argv = [
        "train",
        "--data",
        str(tiny_corpus),
        "--run",
        str(run),
        "--model",
        "dmf2mel-single-head",
        "--epochs",
        "1",
        "--quiet",
    ]
    assert main(argv) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["model"] == "dmf2mel-single-head" and config["model_config"]["head"] == "single"
    capsys.readouterr()
    assert main(["evaluate", "--data", str(tiny_corpus), "--run", str(run), "--json", "--n-null", "50"]) == 0
    known = json.loads(capsys.readouterr().out)["known"]
    # one predicted envelope broadcast to every band: the per-band scores come from the same prediction
    assert len(known["per_band"]) == 10 and all(np.isfinite(known["per_band"]))


def test_user_errors_exit_2_without_traceback_and_leave_the_run_alone(tiny_corpus, linear_run, tmp_path):
    before = {p.name: p.read_bytes() for p in linear_run.iterdir()}
    cases = [
        (["train", "--data", str(tiny_corpus), "--run", str(linear_run), "--model", "linear"], "not empty"),
        (["train", "--data", str(tiny_corpus), "--run", str(linear_run), "--model", "cnn", "--resume"], "model"),
        (["evaluate", "--data", str(tiny_corpus), "--run", str(tmp_path / "missing")], "run folder not found"),
    ]
    for argv, message in cases:
        proc = subprocess.run([sys.executable, "-m", "dmf2mel", *argv], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 2, proc.stderr
        assert message in proc.stderr and "Traceback" not in proc.stderr
    assert {p.name: p.read_bytes() for p in linear_run.iterdir()} == before
    assert not (tmp_path / "missing").exists()
