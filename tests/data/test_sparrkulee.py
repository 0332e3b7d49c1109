"""The split_data layer: names, validation, trimming, train-only normalisation, windows, challenge files."""

import json

import numpy as np
import pytest

from dmf2mel.data import sparrkulee as sk
from dmf2mel.errors import DataError, UserError


@pytest.mark.parametrize(
    "name, expected",
    [
        ("train_-_sub-001_-_audiobook_1_-_mel.npy", ("train", "sub-001", "audiobook_1", "mel")),
        ("val_-_sub-085_-_audiobook_7_5_-_eeg.npy", ("val", "sub-085", "audiobook_7_5", "eeg")),
        ("test_-_sub-012_-_podcast_23_-_envelope.npy", ("test", "sub-012", "podcast_23", "envelope")),
        ("train_-_sub-003_-_audiobook_1_artefact_-_mel.npy", ("train", "sub-003", "audiobook_1_artefact", "mel")),
    ],
)
def test_parse_real_style_names(name, expected):
    assert sk.parse_filename(name) == expected
    assert sk.format_filename(*expected) == name


@pytest.mark.parametrize(
    "name",
    [
        "README.md",
        "train_-_sub-001_-_audiobook_1_-_mel.npz",
        "training_-_sub-001_-_audiobook_1_-_mel.npy",
        "train_-_sub-001_-_audiobook_1_-_spectrogram.npy",
        "train_-_001_-_audiobook_1_-_mel.npy",
        "train_-_sub-001_-_audiobook_1_-_extra_-_mel.npy",
    ],
)
def test_other_names_are_ignored(name):
    assert sk.parse_filename(name) is None


def test_format_filename_rejects_bad_parts():
    with pytest.raises(UserError, match="feature"):
        sk.format_filename("train", "sub-001", "audiobook_1", "wav")


def test_split_bounds_cover_the_recording_80_10_10():
    bounds = sk.split_bounds(1000)
    assert bounds == {"train": slice(0, 800), "val": slice(800, 900), "test": slice(900, 1000)}
    assert sum(s.stop - s.start for s in sk.split_bounds(777).values()) == 777


def _recording(rng, n=640):
    return rng.standard_normal((n, 64)) * 3 + 5, rng.random((n, 10)) * 2 + 1, rng.random(n)


@pytest.fixture()
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for subject, stimulus in [("sub-001", "audiobook_1"), ("sub-001", "audiobook_7_5"), ("sub-002", "audiobook_1")]:
        sk.write_recording(tmp_path, subject, stimulus, *_recording(rng))
    (tmp_path / "notes.txt").write_text("not data")
    sk.write_metadata(tmp_path, {"held_out_subjects": ["sub-002"], "preset": "unit"})
    return tmp_path


def test_write_and_index(folder):
    data = sk.SplitData(folder)
    assert data.subjects == ["sub-001", "sub-002"]
    assert data.stimuli == ["audiobook_1", "audiobook_7_5"]
    assert len(data.recordings) == 3
    assert data.held_out_subjects == ["sub-002"]
    assert data.raw("train", "sub-001", "audiobook_1", "eeg").shape == (512, 64)
    assert data.raw("test", "sub-001", "audiobook_1", "envelope").shape == (64, 1)
    assert isinstance(data.raw("val", "sub-002", "audiobook_1", "mel"), np.memmap)
    summary = data.summary()
    assert summary["recordings"] == {"train": 3, "val": 3, "test": 3}
    assert summary["samples"] == {"train": 3 * 512, "val": 3 * 64, "test": 3 * 64}


def test_normalisation_uses_train_statistics_only(folder):
    data = sk.SplitData(folder)
    train_eeg, train_mel = data.pair("train", "sub-001", "audiobook_1")
    np.testing.assert_allclose(train_eeg.mean(0), 0, atol=1e-4)
    np.testing.assert_allclose(train_eeg.std(0), 1, atol=1e-4)
    np.testing.assert_allclose(train_mel.mean(0), 0, atol=1e-4)
    # val/test are scaled with the train statistics, not their own
    raw_test = np.asarray(data.raw("test", "sub-001", "audiobook_1", "eeg"), dtype=np.float64)
    train_raw = np.asarray(data.raw("train", "sub-001", "audiobook_1", "eeg"), dtype=np.float64)
    test_eeg, _ = data.pair("test", "sub-001", "audiobook_1")
    np.testing.assert_allclose(test_eeg, (raw_test - train_raw.mean(0)) / train_raw.std(0), rtol=1e-4, atol=1e-4)
    assert not np.allclose(test_eeg.mean(0), 0, atol=1e-3)


def test_pairs_differing_by_a_few_samples_are_trimmed(folder):
    name = sk.format_filename("val", "sub-001", "audiobook_1", "mel")
    mel = np.load(folder / name)
    np.save(folder / name, mel[:-3])
    data = sk.SplitData(folder)
    eeg, target = data.pair("val", "sub-001", "audiobook_1")
    assert eeg.shape == (61, 64) and target.shape == (61, 10)


def test_pairs_differing_a_lot_are_refused(folder):
    name = sk.format_filename("train", "sub-001", "audiobook_1", "mel")
    np.save(folder / name, np.load(folder / name)[:-200])
    with pytest.raises(DataError, match=r"312.*within 64 samples"):
        sk.SplitData(folder).pair("train", "sub-001", "audiobook_1")


@pytest.mark.parametrize(
    "array, match",
    [
        (np.zeros((100, 63)), r"expected shape \(time, 64\).*found shape \(100, 63\)"),
        (np.full((100, 64), np.nan), "NaN or infinite"),
        (np.zeros((100, 64), dtype=np.int32), "floating-point"),
        (np.zeros((64, 100)), r"time-major"),
    ],
)
def test_bad_eeg_is_refused_naming_the_file(folder, array, match):
    name = sk.format_filename("train", "sub-002", "audiobook_1", "eeg")
    np.save(folder / name, array)
    with pytest.raises(DataError, match=match) as err:
        sk.SplitData(folder).raw("train", "sub-002", "audiobook_1", "eeg")
    assert name in str(err.value)


def test_truncated_file_is_refused(folder):
    path = folder / sk.format_filename("train", "sub-002", "audiobook_1", "eeg")
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated or corrupt"):
        sk.SplitData(folder).raw("train", "sub-002", "audiobook_1", "eeg")


def test_folder_without_recordings_is_refused(tmp_path):
    (tmp_path / "notes.txt").write_text("")
    with pytest.raises(DataError, match="no recordings found"):
        sk.SplitData(tmp_path)
    (tmp_path / "something.npy").write_bytes(b"")  # a recording under another name is not silently left out
    with pytest.raises(DataError, match=r"something.npy: a .npy file whose name is not"):
        sk.SplitData(tmp_path)
    with pytest.raises(UserError, match="not a folder"):
        sk.SplitData(tmp_path / "missing")


def test_window_starts():
    np.testing.assert_array_equal(sk.window_starts(1300, 640), [0, 640])
    np.testing.assert_array_equal(sk.window_starts(1300, 640, 320), [0, 320, 640])
    assert len(sk.window_starts(100, 640)) == 0


def test_challenge_format_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    segments = {f"seg{k}": rng.standard_normal((1920, 64)).astype(np.float32) for k in range(3)}
    npz, mapping = sk.write_challenge_subject(tmp_path, "sub-004", segments)
    # the release's layout: TASK2_regression/sub-XXX_mapping.json + preprocessed_eeg/sub-XXX_eeg.npz
    assert npz == tmp_path / "preprocessed_eeg" / "sub-004_eeg.npz" and mapping == tmp_path / "sub-004_mapping.json"
    assert json.loads(mapping.read_text())["seg1"] == {"eeg": "eeg_1"}
    loaded = sk.read_challenge_subject(npz, mapping)
    assert list(loaded) == list(segments)
    for key in segments:
        np.testing.assert_array_equal(loaded[key], segments[key])
    predictions = {key: rng.standard_normal((1920, 10)) for key in segments}
    out = sk.write_predictions(tmp_path / "sub-004.json", predictions)
    back = sk.read_predictions(out)
    assert set(back) == set(predictions) and back["seg0"].shape == (1920, 10)
    np.testing.assert_allclose(back["seg2"], predictions["seg2"], atol=1e-6)


def test_challenge_mapping_naming_a_missing_segment_is_refused(tmp_path):
    npz, mapping = sk.write_challenge_subject(tmp_path, "sub-004", {"a": np.zeros((1920, 64))})
    mapping.write_text(json.dumps({"a": {"eeg": "eeg_9"}}))
    with pytest.raises(DataError, match="eeg_9"):
        sk.read_challenge_subject(npz, mapping)


def test_challenge_subject_id_comes_from_the_mapping_file_name(tmp_path):
    assert sk.challenge_subject_id(tmp_path / "sub-072_mapping.json") == "sub-072"
    assert sk.challenge_eeg_path(tmp_path / "sub-072_mapping.json") == tmp_path / "preprocessed_eeg" / "sub-072_eeg.npz"
    with pytest.raises(DataError, match="sub-XXX_mapping.json"):
        sk.challenge_subject_id(tmp_path / "mapping.json")


def test_find_challenge_subjects_reads_the_release_layout(tmp_path):
    task2 = tmp_path / "test_set" / "TASK2_regression"
    for subject in ("sub-090", "sub-002"):
        sk.write_challenge_subject(task2, subject, {"a": np.zeros((1920, 64))})
    found = sk.find_challenge_subjects(task2)
    assert [f.subject for f in found] == ["sub-002", "sub-090"]
    assert found[0].eeg_npz == task2 / "preprocessed_eeg" / "sub-002_eeg.npz"
    # the folder above TASK2_regression works too
    assert sk.find_challenge_subjects(tmp_path / "test_set") == found
    (task2 / "preprocessed_eeg" / "sub-090_eeg.npz").unlink()
    with pytest.raises(DataError, match="sub-090_eeg.npz: file not found"):
        sk.find_challenge_subjects(task2)
    with pytest.raises(DataError, match="no challenge test set"):
        sk.find_challenge_subjects(tmp_path)


def test_write_recording_refuses_mismatched_lengths(tmp_path):
    with pytest.raises(UserError, match="mel must be"):
        sk.write_recording(tmp_path, "sub-001", "x", np.zeros((100, 64)), np.zeros((90, 10)))
    assert not any(tmp_path.iterdir())


def test_open_files_do_not_pile_up(folder):
    import os

    data = sk.SplitData(folder)
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        for rec in data.recordings:
            for split in sk.SPLITS:
                data.pair(split, rec.subject, rec.stimulus)
    assert len(os.listdir("/proc/self/fd")) <= before + 1
