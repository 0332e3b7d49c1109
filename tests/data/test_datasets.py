"""Training and evaluation windows over a split_data folder."""

import numpy as np
import pytest
import torch

from dmf2mel.data import sparrkulee as sk
from dmf2mel.data.datasets import RandomWindows, SequentialWindows, SubjectIndex, sequential_spans
from dmf2mel.errors import DataError

WINDOW = 32


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(0)
    for subject, stimulus, n in [("sub-001", "story_1", 400), ("sub-001", "story_2", 500), ("sub-002", "story_1", 450)]:
        eeg = rng.standard_normal((n, 64)) * 4 + 2
        mel = rng.random((n, 10)) * 3
        sk.write_recording(folder, subject, stimulus, eeg, mel)
    return sk.SplitData(folder)


def test_subject_index_maps_known_names_and_unknown_to_minus_one():
    index = SubjectIndex(["sub-003", "sub-001"])
    assert index.subjects == ["sub-001", "sub-003"]
    assert (index["sub-001"], index["sub-003"], index["sub-099"]) == (0, 1, -1)
    assert "sub-003" in index and "sub-099" not in index and len(index) == 2


def test_random_windows_are_normalised_slices_of_the_recording(data):
    ds = RandomWindows(
        data, "train", data.recordings, WINDOW, SubjectIndex(data.subjects), windows_per_recording=3, seed=1
    )
    assert len(ds) == 9
    for i in range(len(ds)):
        item = ds[i]
        position, start, _ = ds.draw(i)
        rec = ds.recordings[position]
        eeg, mel = data.pair("train", rec.subject, rec.stimulus)
        assert item["eeg"].shape == (WINDOW, 64) and item["mel"].shape == (WINDOW, 10)
        assert item["eeg"].dtype == torch.float32
        np.testing.assert_allclose(item["eeg"].numpy(), eeg[start : start + WINDOW], rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(item["mel"].numpy(), mel[start : start + WINDOW], rtol=1e-6, atol=1e-6)
        assert int(item["subject"]) == data.subjects.index(rec.subject)


def test_random_windows_depend_only_on_seed_epoch_and_index(data):
    def starts(seed, epoch):
        ds = RandomWindows(data, "train", data.recordings, WINDOW, SubjectIndex(data.subjects), seed=seed)
        ds.set_epoch(epoch)
        return [ds.draw(i)[1] for i in range(len(ds))]

    assert starts(0, 0) == starts(0, 0)
    assert starts(0, 0) != starts(0, 1)
    assert starts(0, 0) != starts(1, 0)


def test_unknown_fraction_hides_about_that_share_of_subject_ids(data):
    ds = RandomWindows(
        data,
        "train",
        data.recordings,
        WINDOW,
        SubjectIndex(data.subjects),
        windows_per_recording=200,
        unknown_fraction=0.25,
    )
    hidden = np.mean([ds.draw(i)[2] for i in range(len(ds))])
    assert 0.18 < hidden < 0.32
    i = next(i for i in range(len(ds)) if ds.draw(i)[2])
    assert int(ds[i]["subject"]) == -1


def test_random_windows_refuse_when_no_recording_is_long_enough(data):
    with pytest.raises(DataError, match="at least 10000 samples"):
        RandomWindows(data, "val", data.recordings, 10000, SubjectIndex(data.subjects))


def test_sequential_windows_cover_every_sample(data):
    index = SubjectIndex(["sub-001"])  # sub-002 is then an unknown subject
    ds = SequentialWindows(data, "test", data.recordings, WINDOW, index)
    for position, rec in enumerate(ds.recordings):
        n = ds.lengths[position]
        covered = np.zeros(n, bool)
        for (pos, start, length), item in zip(ds.items, (ds[i] for i in range(len(ds)))):
            if pos == position:
                covered[start : start + length] = True
                expected = 0 if rec.subject == "sub-001" else -1
                assert int(item["subject"]) == expected
        assert covered.all()


def test_sequential_spans():
    assert sequential_spans(25, 10) == [(0, 10), (10, 10), (15, 10)]
    assert sequential_spans(20, 10) == [(0, 10), (10, 10)]
    assert sequential_spans(7, 10) == [(0, 7)]
    assert sequential_spans(0, 10) == []


def test_windows_are_read_from_memory_maps(data):
    ds = RandomWindows(data, "train", data.recordings, WINDOW, SubjectIndex(data.subjects))
    ds[0]
    for rec in data.recordings:
        for feature in ("eeg", "mel"):
            assert isinstance(data.raw("train", rec.subject, rec.stimulus, feature), np.memmap)
