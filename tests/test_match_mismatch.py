"""dmf2mel.match_mismatch: the protocols, decisions by correlation, accuracy with its interval, the baseline, the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dmf2mel import match_mismatch as mm
from dmf2mel.cli import main
from dmf2mel.data.sparrkulee import SplitData
from dmf2mel.errors import UserError
from dmf2mel.models.match_mismatch import DilatedConvMatchMismatch

pytestmark = pytest.mark.usefixtures("one_thread")

SFREQ = 64


def random_recording(rng, n_story=64 * 600, n_part=64 * 120, offset=64 * 300, n_features=10):
    """A smooth random story, and a part of it with EEG that is noise (no information about the story)."""
    story = np.cumsum(rng.standard_normal((n_story, n_features)), axis=0)
    eeg = rng.standard_normal((n_part, 64))
    return eeg, story, offset


# ---- protocols -------------------------------------------------------------------------------------------------


def test_the_published_protocols():
    new, old = mm.PROTOCOLS["2024"], mm.PROTOCOLS["2023"]
    assert (new.segment_s, new.n_candidates, new.mismatch, new.chance) == (5.0, 5, "story", 0.2)
    assert (old.segment_s, old.n_candidates, old.mismatch, old.chance) == (3.0, 2, "adjacent", 0.5)
    assert new.segment_samples() == 320 and old.segment_samples() == 192
    assert new.with_segment(2).segment_samples() == 128 and new.with_segment(2).n_candidates == 5
    with pytest.raises(UserError, match="protocol must be one of"):
        mm.protocol("2022")
    with pytest.raises(UserError, match="n_candidates=2"):
        mm.Protocol("x", 3.0, 3, "adjacent")


def test_2024_mismatched_candidates_are_other_chunks_of_the_story():
    rng = np.random.default_rng(0)
    length, n_story = 320, 64 * 60
    for start in (0, 100, 1000, n_story - length):
        starts = mm.mismatched_starts(start, length, n_story, mm.PROTOCOLS["2024"], rng)
        assert len(starts) == 4 and len(set(starts)) == 4
        assert np.all(starts % length == 0) and np.all(starts + length <= n_story)
        assert np.all((starts + length <= start) | (starts >= start + length)), "a candidate overlaps the matched one"
    drawn = np.concatenate([mm.mismatched_starts(0, length, n_story, mm.PROTOCOLS["2024"], rng) for _ in range(300)])
    assert len(set(drawn)) == n_story // length - 1, "every other chunk can be drawn"
    with pytest.raises(UserError, match="too few"):
        mm.mismatched_starts(0, length, 4 * length, mm.PROTOCOLS["2024"], rng)


def test_2023_mismatched_candidate_starts_one_second_after_the_matched_one():
    rng = np.random.default_rng(0)
    proto = mm.PROTOCOLS["2023"]
    assert mm.mismatched_starts(100, 192, 2000, proto, rng).tolist() == [100 + 192 + 64]
    # at the end of the story: the segment ending 1 s before the matched one starts
    assert mm.mismatched_starts(1700, 192, 2000, proto, rng).tolist() == [1700 - 64 - 192]
    with pytest.raises(UserError, match="too short"):
        mm.mismatched_starts(10, 192, 300, proto, rng)


@pytest.mark.parametrize("name", ["2024", "2023"])
def test_recording_trials_hold_the_heard_segment_at_the_label(name):
    rng = np.random.default_rng(1)
    eeg, story, offset = random_recording(rng)
    proto = mm.PROTOCOLS[name]
    eeg_segments, candidates, labels = mm.recording_trials(eeg, story, offset, proto, rng)
    length = proto.segment_samples()
    n = len(eeg) // length
    assert eeg_segments.shape == (n, length, 64) and candidates.shape == (n, proto.n_candidates, length, 10)
    for i in range(n):
        np.testing.assert_array_equal(eeg_segments[i], eeg[i * length : (i + 1) * length].astype(np.float32))
        heard = story[offset + i * length : offset + (i + 1) * length].astype(np.float32)
        np.testing.assert_array_equal(candidates[i, labels[i]], heard)
        others = np.delete(candidates[i], labels[i], axis=0)
        assert not any(np.array_equal(other, heard) for other in others)
    assert set(labels) == set(range(proto.n_candidates)), "the matched candidate moves between positions"


def test_make_trials_counts_and_positions_on_a_corpus(tiny_corpus):
    data = SplitData(tiny_corpus)
    trials = mm.make_trials(data, "test", "2023")
    parts = data.recordings_in("test")
    expected = sum(data.n_samples("test", r.subject, r.stimulus) // 192 for r in parts)
    assert len(trials) == expected and trials.candidates.shape[1:] == (2, 192, 10)
    first = parts[0]
    _, mel = data.pair("test", first.subject, first.stimulus)
    index = np.flatnonzero((trials.subject == first.subject) & (trials.stimulus == first.stimulus))[0]
    np.testing.assert_array_equal(trials.candidates[index, trials.label[index]], mel[:192])
    again = mm.make_trials(data, "test", "2023")
    np.testing.assert_array_equal(trials.label, again.label)  # the seed decides
    assert len(trials.select(trials.subject == first.subject)) < len(trials)
    with pytest.raises(UserError, match="do not fit"):
        mm.make_trials(data, "test", mm.PROTOCOLS["2024"].with_segment(60))


# ---- decisions and accuracy ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["2024", "2023"])
def test_a_perfect_reconstruction_is_always_right_and_noise_is_at_chance(name):
    rng = np.random.default_rng(2)
    proto = mm.PROTOCOLS[name].with_segment(1.0)
    pieces = [mm.recording_trials(*random_recording(rng), proto, rng) for _ in range(3)]
    candidates = np.concatenate([p[1] for p in pieces])
    labels = np.concatenate([p[2] for p in pieces])
    perfect = candidates[np.arange(len(labels)), labels]
    assert mm.accuracy(np.argmax(mm.correlation_scores(perfect, candidates), 1), labels, proto.n_candidates)[
        "accuracy"
    ] == pytest.approx(1.0)
    noisy = perfect + 2 * rng.standard_normal(perfect.shape) * perfect.std(axis=1, keepdims=True)
    shuffled = perfect[rng.permutation(len(perfect))]  # every reconstruction paired with another trial's stimulus
    for reconstruction, low, high in ((noisy, proto.chance + 0.1, 1.0), (shuffled, 0.0, 1.0)):
        result = mm.accuracy(
            np.argmax(mm.correlation_scores(reconstruction, candidates), 1), labels, proto.n_candidates
        )
        assert low <= result["accuracy"] <= high
    chance = mm.accuracy(np.argmax(mm.correlation_scores(shuffled, candidates), 1), labels, proto.n_candidates)
    assert chance["ci_low"] <= proto.chance <= chance["ci_high"], chance
    assert chance["p_value"] > 0.01


def test_a_constant_candidate_is_never_chosen():
    rng = np.random.default_rng(3)
    candidates = rng.standard_normal((4, 3, 50, 2))
    candidates[:, 1] = 1.0
    scores = mm.correlation_scores(-candidates[:, 0], candidates)  # anti-correlated with the real one
    assert scores.shape == (4, 3) and np.all(np.isneginf(scores[:, 1]))
    assert np.all(np.argmax(scores, axis=1) != 1)


def test_accuracy_interval_is_exact_and_covers_the_truth():
    result = mm.accuracy([0, 1, 1, 0], [0, 1, 0, 1], 2)
    assert (result["accuracy"], result["correct"], result["n"], result["chance"]) == (0.5, 2, 4, 0.5)
    assert mm.accuracy([0] * 10, [1] * 10, 5)["ci_low"] == 0.0
    assert mm.accuracy([1] * 10, [1] * 10, 5)["ci_high"] == 1.0
    rng = np.random.default_rng(4)
    truth, n, covered = 0.3, 40, 0
    for _ in range(2000):
        correct = rng.random(n) < truth
        result = mm.accuracy(correct.astype(int), np.ones(n, int), 5)
        covered += result["ci_low"] <= truth <= result["ci_high"]
    assert 0.95 <= covered / 2000 <= 0.995, "Clopper-Pearson covers at least its level, and not absurdly more"
    with pytest.raises(UserError, match="as many choices"):
        mm.accuracy([0, 1], [0], 2)


# ---- the dilated-convolution baseline --------------------------------------------------------------------------


def test_model_shapes_any_length_and_candidate_order():
    torch.manual_seed(0)
    model = DilatedConvMatchMismatch(n_features=10).eval()
    for n_times, k in ((320, 5), (192, 2), (100, 3)):
        eeg, candidates = torch.randn(3, n_times, 64), torch.randn(3, k, n_times, 10)
        logits = model(eeg, candidates)
        assert logits.shape == (3, k)
        order = torch.randperm(k)
        torch.testing.assert_close(model(eeg, candidates[:, order]), logits[:, order])
    with pytest.raises(ValueError, match="candidates must have shape"):
        model(torch.randn(2, 100, 64), torch.randn(2, 3, 90, 10))
    with pytest.raises(ValueError, match="more than"):
        model(torch.randn(2, model.receptive_field, 64), torch.randn(2, 3, model.receptive_field, 10))


def test_the_baseline_learns_on_the_built_in_corpus_and_is_cached(tiny_corpus, tmp_path, monkeypatch):
    settings = mm.TrainingSettings(epochs=4, hop_s=1.0)
    proto = mm.PROTOCOLS["2024"].with_segment(3.0)
    calls = []
    real_train = mm.train_model
    monkeypatch.setattr(mm, "train_model", lambda *a, **k: calls.append(1) or real_train(*a, **k))
    model, history = mm.cached_model(tiny_corpus, proto=proto, settings=settings, root=tmp_path, verbose=False)
    assert len(history) == 4 and calls == [1]
    assert history[-1]["train_accuracy"] > 0.5, history  # chance is 0.2: the teaching corpus is easy
    trials = mm.make_trials(SplitData(tiny_corpus), "test", proto)
    assert mm.score_trials(mm.classifier_scores(model, trials), trials)["p_value"] < 0.05  # above chance
    again, history_again = mm.cached_model(tiny_corpus, proto=proto, settings=settings, root=tmp_path, verbose=False)
    assert calls == [1] and history_again == history
    for key, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[key], value)


# ---- a trained reconstruction run, the release's files and the command line ------------------------------------


@pytest.fixture(scope="module")
def linear_run(tiny_corpus, tmp_path_factory):
    run = tmp_path_factory.mktemp("mm") / "linear"
    assert main(["train", "--data", str(tiny_corpus), "--run", str(run), "--model", "linear", "--quiet"]) == 0
    return run


def test_evaluate_run_scores_known_and_unknown_subjects(linear_run):
    result = mm.evaluate_run(linear_run, proto="2023", lengths_s=(1.0, 2.0))
    assert result["known"]["chance"] == 0.5 and result["known"]["accuracy"] > 0.8
    assert result["unknown"]["n"] > 0 and set(result["by_length"]) == {"1.0", "2.0"}
    assert result["by_length"]["1.0"]["n"] > result["by_length"]["2.0"]["n"]


def test_cli_prints_accuracy_and_json(linear_run, capsys):
    assert main(["match-mismatch", "--run", str(linear_run), "--protocol", "2023", "--lengths", "1,2"]) == 0
    out = capsys.readouterr().out
    assert "protocol 2023: 3 s segments, 2 candidates" in out and "known: accuracy" in out and "1 s: accuracy" in out
    assert main(["match-mismatch", "--run", str(linear_run), "--protocol", "2023", "--segment", "2", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["protocol"]["segment_s"] == 2.0 and 0 <= result["known"]["ci_low"] <= result["known"]["accuracy"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--protocol", "2022"], "--protocol must be one of '2024', '2023'"),
        (["--lengths", "1,x"], "--lengths must be comma-separated seconds"),
        (["--lengths", "0,1"], "--lengths must be positive"),
        (["--segment", "-1"], "--segment must be a positive number"),
        (["--segment", "60"], "do not fit in any test part"),
        (["--split", "everything"], "--split must be one of"),
        (["--out", "somewhere"], "--out goes with --test-folder"),
        (["--test-folder", "somewhere"], "--test-folder needs --out"),
    ],
)
def test_cli_rejects_bad_arguments_in_one_line(linear_run, capsys, args, message):
    assert main(["match-mismatch", "--run", str(linear_run), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_reports_a_missing_run(tmp_path, capsys):
    assert main(["match-mismatch", "--run", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err


def write_task1_folder(folder, trials: mm.Trials, subject: str):
    """The release's TASK1_match_mismatch layout for one subject's trials."""
    (folder / "preprocessed_eeg").mkdir(parents=True)
    (folder / "stimulus").mkdir()
    eeg = {f"eeg_{i}": segment for i, segment in enumerate(trials.eeg)}
    stimuli = {f"mel_{i}_{k}": c for i, trial in enumerate(trials.candidates) for k, c in enumerate(trial)}
    mapping = {
        f"segment_{i}": {"eeg": f"eeg_{i}", "stimulus": [f"mel_{i}_{k}" for k in range(trials.candidates.shape[1])]}
        for i in range(len(trials))
    }
    np.savez(folder / "preprocessed_eeg" / f"{subject}_eeg.npz", **eeg)
    np.savez(folder / "stimulus" / "audiobook_mel_chunks.npz", **stimuli)
    (folder / f"{subject}_mapping.json").write_text(json.dumps(mapping))


def test_cli_decides_the_release_task1_trials(linear_run, tiny_corpus, tmp_path, capsys):
    data = SplitData(tiny_corpus)
    trials = mm.make_trials(data, "test", "2023", subjects=["sub-001"])
    write_task1_folder(tmp_path / "task1", trials, "sub-001")
    read = mm.challenge_trials(tmp_path / "task1")
    ids, back = read["sub-001"]
    np.testing.assert_array_equal(back.candidates, trials.candidates)
    out = tmp_path / "decisions"
    args = ["match-mismatch", "--run", str(linear_run), "--test-folder", str(tmp_path / "task1"), "--out", str(out)]
    assert main(args) == 0
    decisions = json.loads((out / "sub-001.json").read_text())
    assert list(decisions) == ids
    chosen = np.array([decisions[i] for i in ids])
    assert np.mean(chosen == trials.label) > 0.8  # a known subject of the teaching corpus
    (tmp_path / "task1" / "preprocessed_eeg" / "sub-001_eeg.npz").unlink()
    assert main(args) == 2
    assert "sub-001_eeg.npz: missing" in capsys.readouterr().err
