"""Nothing lost, nothing silent: each command under bad input, interruptions and concurrent use.

Grouped by command. Every test here reproduces a way a command once lost data, exited 0 with a wrong result, showed
a traceback or left debris behind, and checks the command now refuses (exit 2, one line naming the file or flag,
nothing changed), or cleans up.
"""

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

import train_fixtures as tf
from dmf2mel.cli import main
from dmf2mel.data import sparrkulee as sk

#: The smallest corpus simulate writes: two subjects, one 12 s story.
SMALL = ["--subjects", "2", "--held-out", "0", "--stories", "1", "--minutes", "0.2", "--quiet"]


def cli(capsys, *argv):
    """``python -m dmf2mel ARGV`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def refused(result, *words):
    """The command failed as a user error: exit 2, one line, no traceback, naming ``words``."""
    status, _, err = result
    assert status == 2, err
    assert err.startswith("error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, err
    return err


def snapshot(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The tiny model of the trainer tests, two epochs on their four-subject corpus (sub-004 held out)."""
    tf.register()
    root = tmp_path_factory.mktemp("guarantees")
    corpus = tf.make_corpus(root / "split_data")
    run = root / "run"
    assert (
        main(
            ["train", "--data", str(corpus), "--run", str(run), "--model", "tiny", "--profile", "tiny"]
            + ["--epochs", "2", "--quiet", "--no-test"]
        )
        == 0
    )
    return corpus, run


# --- simulate -------------------------------------------------------------------------------------------------------


def test_simulate_replaces_only_what_the_corpus_wrote(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert cli(capsys, "simulate", "--out", out, *SMALL)[0] == 0
    assert cli(capsys, "simulate", "--out", out, "--seed", "1", *SMALL)[0] == 0  # an earlier corpus alone: replaced
    (out / "NOTES.txt").write_text("my notes")
    (out / "my_runs" / "run1").mkdir(parents=True)
    (out / "my_runs" / "run1" / "config.json").write_text("{}")
    before = snapshot(out)
    err = refused(cli(capsys, "simulate", "--out", out, *SMALL), "NOTES.txt", "my_runs/", "nothing was changed")
    assert "my_runs/run1" not in err  # a foreign folder is named once
    assert snapshot(out) == before


def test_simulate_removes_what_a_killed_run_left(tmp_path, capsys):
    out = tmp_path / "corpus"
    killed = tmp_path / ".corpus.tmp-k1ll3d" / "corpus"  # as cache.build_entry names its temporary folder
    killed.mkdir(parents=True)
    (killed / "train_-_sub-001_-_audiobook_1_-_eeg.npy").write_bytes(b"half")
    old = tmp_path / ".corpus.old-k1ll3d"
    old.mkdir()
    other = tmp_path / ".other.tmp-123"  # another folder's build: not ours to remove
    other.mkdir()
    assert cli(capsys, "simulate", "--out", out, *SMALL)[0] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.tmp-123", "corpus"]


# --- predict --------------------------------------------------------------------------------------------------------


def _test_set(folder, segments_by_subject):
    for subject, segments in segments_by_subject.items():
        sk.write_challenge_subject(folder, subject, segments)
    return folder


def _segments(seed, n=2, length=256):
    rng = np.random.default_rng(seed)
    return {f"seg_{k}": rng.standard_normal((length, 64)).astype(np.float32) for k in range(n)}


def test_predict_refuses_to_overwrite_a_submission_unless_asked(trained, tmp_path, capsys):
    _, run = trained
    task2 = _test_set(tmp_path / "TASK2", {"sub-001": _segments(0), "sub-002": _segments(1)})
    out = tmp_path / "out"
    assert cli(capsys, "predict", "--run", run, "--test-folder", task2, "--out", out)[0] == 0
    before = snapshot(out)
    _test_set(task2, {"sub-001": _segments(2), "sub-002": _segments(3)})
    refused(cli(capsys, "predict", "--run", run, "--test-folder", task2, "--out", out), "sub-001.json", "--overwrite")
    assert snapshot(out) == before
    assert cli(capsys, "predict", "--run", run, "--test-folder", task2, "--out", out, "--overwrite")[0] == 0
    after = snapshot(out)
    assert sorted(after) == sorted(before) and all(after[name] != before[name] for name in before)


def test_predict_checks_every_input_before_writing(trained, tmp_path, capsys):
    """A zero-length segment of the second subject once crashed half-way, leaving a mixed submission."""
    _, run = trained
    task2 = _test_set(tmp_path / "TASK2", {"sub-001": _segments(0), "sub-002": _segments(1)})
    out = tmp_path / "out"
    assert cli(capsys, "predict", "--run", run, "--test-folder", task2, "--out", out)[0] == 0
    before = snapshot(out)
    broken = {**_segments(5, n=1), "empty": np.zeros((0, 64), dtype=np.float32)}
    _test_set(task2, {"sub-001": _segments(4), "sub-002": broken})
    argv = ("predict", "--run", run, "--test-folder", task2, "--out", out, "--overwrite")
    refused(cli(capsys, *argv), "sub-002_eeg.npz", "'empty'", "has no samples")
    assert snapshot(out) == before
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "array, words",
    [
        (np.ones((256, 64), dtype=np.complex64), ["complex64", "real numbers"]),
        (np.full((256, 64), "1.0"), ["<U3", "real numbers"]),
    ],
)
def test_predict_refuses_arrays_that_are_not_real_numbers(trained, tmp_path, capsys, array, words):
    _, run = trained
    task2 = tmp_path / "TASK2"
    _, mapping = sk.write_challenge_subject(task2, "sub-001", _segments(0, n=1))
    np.savez(task2 / "preprocessed_eeg" / "sub-001_eeg.npz", eeg_0=array)
    refused(cli(capsys, "predict", "--run", run, "--test-folder", task2, "--out", tmp_path / "out"), *words)
    assert not (tmp_path / "out").exists()


def test_predict_refuses_object_arrays(trained, tmp_path, capsys):
    _, run = trained
    task2 = tmp_path / "TASK2"
    sk.write_challenge_subject(task2, "sub-001", _segments(0, n=1))
    objects = np.empty((256, 64), dtype=object)
    objects[:] = 1.0
    np.savez(task2 / "preprocessed_eeg" / "sub-001_eeg.npz", eeg_0=objects)
    refused(cli(capsys, "predict", "--run", run, "--test-folder", task2, "--out", tmp_path / "out"), "'eeg_0'")
    assert not (tmp_path / "out").exists()


def test_predict_never_writes_nan(trained, tmp_path, capsys, monkeypatch):
    import dmf2mel.evaluate as evaluate_module

    _, run = trained
    task2 = _test_set(tmp_path / "TASK2", {"sub-001": _segments(0), "sub-002": _segments(1)})
    real = evaluate_module.predict_recording

    def nan_for_sub_002(model, eeg, subject, *args, **kwargs):
        out = real(model, eeg, subject, *args, **kwargs)
        if subject == 1:
            out[:3] = np.nan
        return out

    monkeypatch.setattr(evaluate_module, "predict_recording", nan_for_sub_002)
    refused(cli(capsys, "predict", "--run", run, "--test-folder", task2, "--out", tmp_path / "out"), "NaN", "seg_0")
    assert not (tmp_path / "out").exists()


def test_predict_extreme_inputs_give_finite_strict_json(trained, tmp_path, capsys):
    """Values near float32's limit once overflowed the z-score into NaN, written into the JSON."""
    _, run = trained
    segments = _segments(0, n=1)
    segments["seg_0"][:, :8] *= 3e37
    task2 = _test_set(tmp_path / "TASK2", {"sub-001": segments})
    assert cli(capsys, "predict", "--run", run, "--test-folder", task2, "--out", tmp_path / "out")[0] == 0
    text = (tmp_path / "out" / "sub-001.json").read_text()
    prediction = json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} in the submission"))
    assert np.isfinite(np.asarray(prediction["seg_0"])).all()


# --- evaluate -------------------------------------------------------------------------------------------------------


def test_evaluate_keeps_metrics_of_more_subjects(trained, tmp_path, capsys):
    corpus, run = trained
    metrics = run / "metrics.json"
    assert cli(capsys, "evaluate", "--run", run, "--n-null", "10")[0] == 0
    before = metrics.read_bytes()
    assert json.loads(before)["unknown"]["subjects"] == ["sub-004"]
    # a mistyped held-out subject
    refused(cli(capsys, "evaluate", "--run", run, "--held-out", "sub-999", "--n-null", "10"), "--held-out", "sub-999")
    assert metrics.read_bytes() == before
    # a copy of the data without the held-out subject would score fewer subjects
    fewer = tmp_path / "fewer"
    shutil.copytree(corpus, fewer, ignore=shutil.ignore_patterns("*sub-004*"))
    refused(cli(capsys, "evaluate", "--run", run, "--data", fewer, "--n-null", "10"), "unknown: sub-004", "--out FILE")
    assert metrics.read_bytes() == before
    elsewhere = tmp_path / "fewer.json"
    assert cli(capsys, "evaluate", "--run", run, "--data", fewer, "--n-null", "10", "--out", elsewhere)[0] == 0
    assert json.loads(elsewhere.read_text())["unknown"] is None and metrics.read_bytes() == before
    refused(cli(capsys, "evaluate", "--run", run, "--data", fewer, "--n-null", "10", "--out", elsewhere), "exists")
    assert cli(capsys, "evaluate", "--run", run, "--data", fewer, "--n-null", "10", "--overwrite")[0] == 0
    assert json.loads(metrics.read_text())["unknown"] is None


# --- train ----------------------------------------------------------------------------------------------------------


def _train_argv(corpus, run, *more):
    return (
        "train",
        "--data",
        corpus,
        "--run",
        run,
        "--model",
        "tiny",
        "--profile",
        "tiny",
        "--epochs",
        "1",
        "--quiet",
        "--no-test",
        *more,
    )


def test_train_refuses_a_run_another_process_trains(trained, tmp_path, capsys):
    from dmf2mel.checkpoint import LOCK_FILE, run_lock

    corpus, _ = trained
    run = tmp_path / "run"
    with run_lock(run):  # what a first `train` holds while it trains
        holder = (run / LOCK_FILE).read_text()
        err = refused(cli(capsys, *_train_argv(corpus, run)), f"process {os.getpid()}", "in use")
        assert holder in err
        assert sorted(p.name for p in run.iterdir()) == [LOCK_FILE]
    assert not run.exists()  # the lock created the folder, and nothing else was written into it


def test_train_ignores_the_lock_file_of_a_killed_run(trained, tmp_path, capsys):
    LOCK_FILE = ".lock"
    corpus, _ = trained
    run = tmp_path / "run"
    run.mkdir()
    (run / LOCK_FILE).write_text("process 999999 on elsewhere (since 2026-01-01 00:00:00)")  # its process is gone
    assert cli(capsys, *_train_argv(corpus, run))[0] == 0
    assert sorted(p.name for p in run.iterdir()) == ["best.pt", "config.json", "history.csv", "last.pt"]


# --- every command that reads split_data (inspect, train, evaluate) -------------------------------------------------


@pytest.mark.parametrize(
    "damage, words",
    [
        (
            lambda victim: victim.rename(victim.with_name(victim.name.replace("sub-002", "sub_002"))),
            ["sub_002", "name"],
        ),
        (lambda victim: (victim.unlink(), victim.mkdir()), ["a folder", "train_-_sub-002"]),
    ],
)
def test_a_misnamed_file_is_an_error_not_a_missing_recording(trained, tmp_path, capsys, damage, words):
    corpus, _ = trained
    copy = tmp_path / "copy"
    shutil.copytree(corpus, copy)
    damage(copy / sk.format_filename("train", "sub-002", "story_1", "eeg"))
    refused(cli(capsys, "inspect", copy), *words)
    refused(cli(capsys, *_train_argv(copy, tmp_path / "run")), *words)
    assert not (tmp_path / "run").exists()


# --- split ----------------------------------------------------------------------------------------------------------


def _derivatives(root, eeg, mel_samples):
    """A derivatives folder of one recording: ``eeg`` as stored, a mel and an envelope of ``mel_samples``."""
    from dmf2mel.data import derivatives as dv

    folder = root / dv.PREPROCESSED_EEG / "sub-001" / "ses-shortstories01"
    folder.mkdir(parents=True)
    np.save(folder / dv.preprocessed_eeg_name("sub-001_ses-shortstories01_task-listeningActive_run-01", "story"), eeg)
    (root / dv.PREPROCESSED_STIMULI).mkdir()
    rng = np.random.default_rng(0)
    np.save(dv.feature_path(root, "story", "mel"), rng.random((mel_samples, 10)).astype(np.float32))
    np.save(dv.feature_path(root, "story", "envelope"), rng.random((mel_samples, 1)).astype(np.float32))
    return root


def test_split_refuses_time_major_eeg(tmp_path, capsys):
    eeg = np.random.default_rng(0).standard_normal((2000, 64))  # (time, channels): transposed
    root = _derivatives(tmp_path / "derivatives", eeg, 2000)
    refused(cli(capsys, "split", root, "--out", tmp_path / "out", "--quiet"), "time-major", "(2000, 64)")
    assert not (tmp_path / "out").exists()


def test_split_refuses_lengths_far_apart(tmp_path, capsys):
    eeg = np.random.default_rng(0).standard_normal((64, 1984))
    root = _derivatives(tmp_path / "derivatives", eeg, 126)  # e.g. the mel of a wrongly read stimulus
    refused(cli(capsys, "split", root, "--out", tmp_path / "out", "--quiet"), "eeg 1984", "mel 126", "10 s")
    assert not (tmp_path / "out").exists()
    ok = _derivatives(tmp_path / "close", eeg, 1984 - 130)  # the epoch's tail after the sound: cut, as the release
    assert cli(capsys, "split", ok, "--out", tmp_path / "out", "--quiet")[0] == 0


# --- train, evaluate: a run is tied to its data and its config ------------------------------------------------------


def test_evaluate_and_resume_refuse_other_data_than_the_run_trained_on(trained, tmp_path, capsys):
    corpus, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    moved = tmp_path / "moved"
    shutil.copytree(corpus, moved)  # the same recordings elsewhere: still the run's data
    assert (
        cli(capsys, "evaluate", "--run", copy, "--data", moved, "--n-null", "10", "--out", tmp_path / "m.json")[0] == 0
    )
    resimulated = tf.make_corpus(tmp_path / "resimulated", seed=1)  # same names and shapes, other recordings
    before = snapshot(copy)
    refused(
        cli(capsys, "evaluate", "--run", copy, "--data", resimulated, "--n-null", "10"), "not those it was trained on"
    )
    config["data"]["folder"] = str(resimulated)  # as if the corpus had been re-simulated in place
    (copy / "config.json").write_text(json.dumps(config))
    refused(cli(capsys, "evaluate", "--run", copy, "--n-null", "10"), "re-simulated")
    refused(cli(capsys, *_train_argv(resimulated, copy, "--resume", "--epochs", "3")), "not those it was trained on")
    (copy / "config.json").write_text(json.dumps({**config, "data": {**config["data"], "folder": str(corpus)}}))
    assert {k: v for k, v in snapshot(copy).items() if k != "config.json"} == {
        k: v for k, v in before.items() if k != "config.json"
    }


def test_evaluate_refuses_a_checkpoint_of_another_run(trained, tmp_path, capsys):
    """A best.pt copied from a run that trained on the held-out subject once scored it as 'unknown'."""
    corpus, run = trained
    other = tmp_path / "other"
    assert cli(capsys, *_train_argv(corpus, other, "--held-out", "sub-001"))[0] == 0
    copy = tmp_path / "copy"
    shutil.copytree(run, copy)
    shutil.copy(other / "best.pt", copy / "best.pt")
    refused(cli(capsys, "evaluate", "--run", copy, "--n-null", "10"), "best.pt", "another run", "held_out")
    refused(
        cli(
            capsys,
            "predict",
            "--run",
            copy,
            "--test-folder",
            _test_set(tmp_path / "T", {"sub-001": _segments(0)}),
            "--out",
            tmp_path / "out",
        ),
        "another run",
    )


# --- preprocess -----------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def raw_corpus(tmp_path_factory):
    """The raw BIDS corpus of two listeners and one 12 s story."""
    from dmf2mel.data import simulate_raw, simulation_params

    params = simulation_params.preset_params("teaching", n_subjects=2, n_held_out=0, n_stories=1, minutes=0.2)
    return simulate_raw.simulate_raw_corpus(tmp_path_factory.mktemp("raw") / "bids", params=params, progress=False)


def _rewrite_npz_gz(path, **changes):
    import gzip
    import io

    with np.load(io.BytesIO(gzip.decompress(path.read_bytes()))) as archive:
        arrays = {name: archive[name] for name in archive.files}
    buffer = io.BytesIO()
    np.savez(buffer, **{**arrays, **{k: v(arrays[k]) for k, v in changes.items()}})
    path.write_bytes(gzip.compress(buffer.getvalue()))


def _preprocess(capsys, root, out):
    status, _, err = cli(capsys, "preprocess", root, "--out", out, "--quiet")
    assert "Traceback" not in err
    return status, err


def test_preprocess_mixes_stereo_audio_down_with_a_note(raw_corpus, tmp_path, capsys):
    from dmf2mel.data.derivatives import feature_path

    mono = tmp_path / "mono"
    assert _preprocess(capsys, raw_corpus, mono)[0] == 0
    root = tmp_path / "bids"
    shutil.copytree(raw_corpus, root)
    audio = root / "stimuli" / "eeg" / "audiobook_1.npz.gz"
    _rewrite_npz_gz(audio, audio=lambda a: np.stack([a, a], axis=1))  # (samples, 2)
    status, err = _preprocess(capsys, root, tmp_path / "stereo")
    assert status == 0 and "2 audio channels" in err and "mixed down" in err
    for feature in ("mel", "envelope"):
        np.testing.assert_allclose(
            np.load(feature_path(tmp_path / "stereo", "audiobook_1", feature)),
            np.load(feature_path(mono, "audiobook_1", feature)),
            rtol=1e-5,
            atol=1e-6,
        )


def test_preprocess_refuses_stereo_triggers(raw_corpus, tmp_path, capsys):
    root = tmp_path / "bids"
    shutil.copytree(raw_corpus, root)
    _rewrite_npz_gz(root / "stimuli" / "eeg" / "t_audiobook_1.npz.gz", audio=lambda a: np.stack([a, a]))
    status, err = _preprocess(capsys, root, tmp_path / "out")
    assert status == 1 and "t_audiobook_1.npz.gz: expected one channel" in err


@pytest.mark.parametrize("fs", [0, np.nan])
def test_preprocess_reports_a_bad_trigger_rate_and_goes_on(raw_corpus, tmp_path, capsys, fs):
    from dmf2mel.data import raw

    root = tmp_path / "bids"
    shutil.copytree(raw_corpus, root)
    # sub-002 hears the story through its own copy of the trigger file
    trigger = root / "stimuli" / "eeg" / "t_audiobook_1_sub002.npz.gz"
    shutil.copy(root / "stimuli" / "eeg" / "t_audiobook_1.npz.gz", trigger)
    _rewrite_npz_gz(trigger, fs=lambda _: np.asarray(fs))
    second = raw.find_raw_recordings(root)[1]
    second.events_path.write_text(second.events_path.read_text().replace("t_audiobook_1.npz.gz", trigger.name))
    status, err = _preprocess(capsys, root, tmp_path / "out")
    assert status == 1 and "sampling rate fs is" in err and trigger.name in err
    assert err.splitlines()[-1] == "error: 1 recording(s) failed (listed above) and were skipped"
    first = raw.find_raw_recordings(root)[0]
    assert raw.eeg_output_path(tmp_path / "out", first, "audiobook_1").is_file()


def test_preprocess_reports_a_corrupt_compressed_recording_and_goes_on(raw_corpus, tmp_path, capsys):
    from dmf2mel.data import raw

    root = tmp_path / "bids"
    shutil.copytree(raw_corpus, root)
    first, second = raw.find_raw_recordings(root)
    body = second.bdf_path.read_bytes()
    # a valid gzip header, then a deflate block of the reserved type 3: zlib.error, which is no OSError
    second.bdf_path.write_bytes(body[:10] + b"\xff" * 64 + body[74:])
    status, err = _preprocess(capsys, root, tmp_path / "out")
    assert status == 1 and f"skipped {second.bdf_path}: not a readable gzip file" in err, err
    assert raw.eeg_output_path(tmp_path / "out", first, "audiobook_1").is_file()


# --- every command: arguments out of range, a broken config, a folder it cannot write -------------------------------


def _argument_cases(corpus, run, tmp):
    train = ("train", "--data", corpus, "--run", tmp / "new", "--model", "tiny", "--profile", "tiny", "--quiet")
    evaluate = ("evaluate", "--run", run, "--n-null", "10")
    predict = (
        "predict",
        "--run",
        run,
        "--eeg",
        tmp / "sub-001_eeg.npz",
        "--mapping",
        tmp / "sub-001_mapping.json",
        "--out",
        tmp / "out",
    )
    simulate = ("simulate", "--out", tmp / "corpus", *SMALL)
    return [
        ((*train, "--val-every", "0"), "--val-every must be an integer >= 1; got 0"),
        ((*train, "--seed", "-1"), "--seed must be an integer >= 0; got -1"),
        ((*train, "--workers", "-1"), "--workers must be an integer >= 0; got -1"),
        ((*train, "--epochs", "0"), "--epochs must be an integer >= 1; got 0"),
        ((*train, "--patience", "0"), "--patience must be an integer >= 1; got 0"),
        ((*train, "--device", "tpu"), "--device must be 'cpu', 'cuda' or 'cuda:N' (lower case); got 'tpu'"),
        ((*train, "--device", "CPU"), "got 'CPU'"),
        ((*evaluate, "--device", "mps"), "--device must be 'cpu', 'cuda' or 'cuda:N' (lower case); got 'mps'"),
        ((*evaluate, "--n-null", "-1"), "--n-null must be an integer >= 0; got -1"),
        ((*evaluate, "--seed", "-1"), "--seed must be an integer >= 0; got -1"),
        ((*predict, "--device", "tpu"), "--device must be 'cpu'"),
        ((*simulate, "--minutes", "nan"), "--minutes must be a finite number > 0; got nan"),
        ((*simulate, "--minutes", "inf"), "--minutes must be a finite number > 0; got inf"),
        ((*simulate, "--seed", "-1"), "--seed must be an integer >= 0; got -1"),
    ]


def test_arguments_out_of_range_are_named(trained, tmp_path, capsys):
    corpus, run = trained
    sk.write_challenge_subject(tmp_path, "sub-001", _segments(0, n=1))
    before = snapshot(run)
    for argv, message in _argument_cases(corpus, run, tmp_path):
        refused(cli(capsys, *argv), message)
    assert snapshot(run) == before
    assert not (tmp_path / "new").exists() and not (tmp_path / "out").exists() and not (tmp_path / "corpus").exists()


def test_a_config_missing_a_key_is_named(trained, tmp_path, capsys):
    corpus, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    config = json.loads((copy / "config.json").read_text())
    del config["data"]["window"]
    (copy / "config.json").write_text(json.dumps(config))
    for argv in (("evaluate", "--run", copy, "--n-null", "10"), _train_argv(corpus, copy, "--resume")):
        refused(cli(capsys, *argv), "config.json: no 'data.window'")


@pytest.fixture
def read_only():
    """Make a folder (with ``tree=True``: and everything in it) read-only for this process, root included
    (``chattr +i`` where root runs the tests)."""
    import subprocess

    made = []

    def make(folder, tree=False):
        folder.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            flags = ["-R"] if tree else []
            if subprocess.run(["chattr", *flags, "+i", str(folder)], capture_output=True).returncode:
                pytest.skip("running as root on a file system without chattr +i")
        else:
            for path in [*(folder.rglob("*") if tree else []), folder]:
                path.chmod(path.stat().st_mode & ~0o222)
        made.append((folder, tree))
        return folder

    yield make
    for folder, tree in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", *(["-R"] if tree else []), "-i", str(folder)], check=True)
        else:
            for path in [folder, *(folder.rglob("*") if tree else [])]:
                path.chmod(path.stat().st_mode | 0o200)


def test_a_read_only_output_folder_is_reported_before_any_work(
    trained, raw_corpus, tmp_path, capsys, read_only, monkeypatch
):
    import dmf2mel.evaluate as evaluate_module

    corpus, run = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "metrics.json").unlink(missing_ok=True)
    read_only(copy)
    task2 = _test_set(tmp_path / "TASK2", {"sub-001": _segments(0)})
    derivatives = _derivatives(tmp_path / "derivatives", np.zeros((64, 1000)), 1000)
    locked = read_only(tmp_path / "locked")
    monkeypatch.setattr(evaluate_module, "predict_recordings", lambda *a, **k: pytest.fail("computed before checking"))
    cases = [
        ("evaluate", "--run", copy, "--n-null", "10"),
        ("predict", "--run", run, "--test-folder", task2, "--out", locked / "out"),
        _train_argv(corpus, locked / "run"),
        ("simulate", "--out", locked / "corpus", *SMALL),
        ("split", derivatives, "--out", locked / "split"),
        ("preprocess", raw_corpus, "--out", locked / "derivatives"),
    ]
    for argv in cases:
        refused(cli(capsys, *argv), "cannot write to", "read-only")


# --- leftovers: killed runs, file modes, caches -------------------------------------------------------------------


def test_a_run_killed_before_its_first_checkpoint_can_be_trained_again(trained, tmp_path, capsys):
    corpus, run = trained
    cut_short = tmp_path / "run"
    cut_short.mkdir()
    shutil.copy(run / "config.json", cut_short / "config.json")  # all a train killed in its first epoch leaves
    refused(
        cli(capsys, *_train_argv(corpus, cut_short, "--resume")), "before its first epoch ended", "without --resume"
    )
    status, out, err = cli(capsys, *_train_argv(corpus, cut_short))
    assert status == 0, err
    assert "starting it again" in out
    assert sorted(p.name for p in cut_short.iterdir()) == ["best.pt", "config.json", "history.csv", "last.pt"]


def test_files_are_written_with_the_users_umask(trained, tmp_path, capsys):
    """A course's shared corpus and runs must be readable by the others (they were owner-only, 0600)."""
    corpus, run = trained
    old = os.umask(0o022)
    try:
        assert cli(capsys, "simulate", "--out", tmp_path / "corpus", *SMALL)[0] == 0
        assert cli(capsys, *_train_argv(corpus, tmp_path / "run"))[0] == 0
        task2 = _test_set(tmp_path / "TASK2", {"sub-001": _segments(0)})
        assert cli(capsys, "predict", "--run", run, "--test-folder", task2, "--out", tmp_path / "out")[0] == 0
    finally:
        os.umask(old)
    written = [p for folder in ("corpus", "run", "out") for p in (tmp_path / folder).rglob("*")]
    modes = {p.relative_to(tmp_path).as_posix(): oct(p.stat().st_mode & 0o777) for p in written}
    assert {mode for p, mode in modes.items() if (tmp_path / p).is_file()} == {"0o644"}, modes
    assert {mode for p, mode in modes.items() if (tmp_path / p).is_dir()} == {"0o755"}, modes
    assert oct((tmp_path / "corpus").stat().st_mode & 0o777) == "0o755"


def test_the_package_imports_with_a_read_only_package_and_home(tmp_path, read_only):
    """numba's on-disk kernel cache once failed every command at import when it could write nowhere."""
    import subprocess
    import sys

    import dmf2mel

    package = tmp_path / "site" / "dmf2mel"
    shutil.copytree(Path(dmf2mel.__file__).parent, package, ignore=shutil.ignore_patterns("__pycache__"))
    read_only(package.parent, tree=True)
    home = read_only(tmp_path / "home")
    (tmp_path / "tmp").mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(
        HOME=str(home), TMPDIR=str(tmp_path / "tmp"), PYTHONPATH=str(package.parent), PYTHONDONTWRITEBYTECODE="1"
    )
    code = "import dmf2mel, dmf2mel.cli; print(dmf2mel.__file__)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(package / "__init__.py")
    assert (tmp_path / "tmp" / f"dmf2mel-numba-{os.getuid()}").is_dir()
