"""The built-in corpus: layout and metadata, determinism, the clean response, caching, and that the
EEG really carries the stimulus (a lagged ridge decoder beats chance, less so on the hard preset); the
corpus functions' old names in ``simulate``, and parameters that load without MNE."""

import dataclasses
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile

from dmf2mel.data import corpus, simulate, simulation_params
from dmf2mel.data.features import mel_spectrogram
from dmf2mel.data.sparrkulee import METADATA_FILE, SPLITS, SplitData, format_filename
from dmf2mel.errors import DataError, UserError
from dmf2mel.models.linear import LinearDecoder

# One recording (sub-001 hears audiobook_1): the same story length as the session's tiny corpus, so
# its bytes must equal that corpus's sub-001/audiobook_1 files (seeds are keyed per subject and story).
ONE = dict(n_subjects=1, n_held_out=0, n_stories=1, minutes=1.0, progress=False)


def corpus_files(folder):
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def one_recording(tmp_path_factory):
    return corpus.simulate_corpus(tmp_path_factory.mktemp("one") / "corpus", seed=0, **ONE)


def test_layout_and_metadata(tiny_corpus):
    data = SplitData(tiny_corpus)
    meta = data.metadata
    assert meta["preset"] == "teaching" and meta["seed"] == 0
    assert meta["version"] == simulate.simulation_version()
    assert data.subjects == meta["subjects"] == [f"sub-{i:03d}" for i in range(1, len(data.subjects) + 1)]
    assert data.held_out_subjects == meta["held_out_subjects"] == data.subjects[-1:]  # written like the rest
    assert data.stimuli == sorted(meta["stimuli"]) == ["audiobook_1", "podcast_1"]
    # Everyone heard audiobook_1; the files on disk are exactly the recordings the metadata lists.
    assert all("audiobook_1" in stories for stories in meta["recordings"].values())
    assert sorted(data.recordings) == sorted((s, st) for s, stories in meta["recordings"].items() for st in stories)
    assert set(meta["files"]) | {METADATA_FILE} == set(corpus_files(tiny_corpus))
    for subject, stimulus in data.recordings:
        eeg, mel = data.pair("train", subject, stimulus)
        assert eeg.shape[1] == 64 and mel.shape[1] == 10 and len(eeg) == len(mel)
        assert data.raw("train", subject, stimulus, "eeg").dtype == np.float32
        assert data.has("test", subject, stimulus, "envelope")
    n_total = sum(len(data.raw(split, "sub-001", "audiobook_1", "eeg")) for split in SPLITS)
    assert n_total == pytest.approx(meta["parameters"]["minutes"] * 60 * 64, abs=2)


def test_clean_response_kept(tiny_corpus):
    meta = SplitData(tiny_corpus).metadata
    for split in SPLITS:
        name = format_filename(split, "sub-002", "audiobook_1", "eeg")
        clean = np.load(tiny_corpus / meta["clean_folder"] / name)
        eeg = np.load(tiny_corpus / name)
        assert clean.shape == eeg.shape and clean.dtype == np.float32
    # The noise-free response is part of the EEG, smaller than it, and common-average referenced too.
    assert 0.02 < clean.std() / eeg.std() < 0.8
    assert np.corrcoef(clean.ravel(), eeg.ravel())[0, 1] > 0.05
    np.testing.assert_allclose(clean.mean(axis=1), 0.0, atol=1e-3 * clean.std())


def test_same_seed_same_bytes(tmp_path, one_recording, tiny_corpus):
    simulate.synthetic_stimulus.cache_clear()  # regenerate everything, the stimuli included
    again = corpus.simulate_corpus(tmp_path / "again", seed=0, **ONE)
    assert corpus_files(again) == corpus_files(one_recording)
    for name in corpus_files(one_recording):
        assert (again / name).read_bytes() == (one_recording / name).read_bytes(), name
    # More subjects and stories leave an existing recording unchanged.
    for name in corpus_files(one_recording):
        if name != METADATA_FILE:
            assert (tiny_corpus / name).read_bytes() == (one_recording / name).read_bytes(), name


def test_other_seed_other_bytes(tmp_path, one_recording):
    # Written over a copy of an earlier corpus, which it replaces whole.
    shutil.copytree(one_recording, tmp_path / "other")
    other = corpus.simulate_corpus(tmp_path / "other", seed=1, **ONE)
    assert SplitData(other).metadata["seed"] == 1 and corpus_files(other) == corpus_files(one_recording)
    assert [p.name for p in tmp_path.iterdir()] == ["other"]  # no temporary folder left
    for feature in ("eeg", "mel"):
        name = format_filename("train", "sub-001", "audiobook_1", feature)
        assert not np.array_equal(np.load(other / name), np.load(one_recording / name))


def test_stimulus_mel_follows_the_feature_recipe():
    from dmf2mel.data.speech import synthesize_speech

    audio = synthesize_speech(np.random.default_rng(3), 15.0)
    stimulus = simulate.make_stimulus("x", audio)
    np.testing.assert_allclose(stimulus.mel, mel_spectrogram(audio, 16000), rtol=1e-5, atol=1e-6 * stimulus.mel.max())
    # The neural drive is nonlinear: compressed bands and rectified onsets.
    assert stimulus.sustained.shape[1] == 10 and (stimulus.onsets >= 0).all()
    assert len(stimulus.sustained) == round(15.0 * simulate.SIM_SFREQ)


def within_subject_r(folder, subjects=None):
    """Mean over subjects of the test r of a lagged ridge decoder fitted on that subject's train parts."""
    data = SplitData(folder)
    scores = []
    for subject in subjects or data.subjects:
        stimuli = [st for s, st in data.recordings if s == subject]
        decoder = LinearDecoder().fit(
            [data.pair("train", subject, st) for st in stimuli], [data.pair("val", subject, st) for st in stimuli]
        )
        scores.append(decoder.score([data.pair("test", subject, st) for st in stimuli]))
    return float(np.mean(scores))


def test_eeg_carries_the_stimulus_and_presets_differ(tmp_path, tiny_corpus):
    """Teaching: clearly above chance (|r| of a mismatched pair is ~0.02 here). SparrKULee (same seed,
    so the same noise): far weaker."""
    subjects = ["sub-001", "sub-002"]
    teaching = within_subject_r(tiny_corpus, subjects)
    hard = corpus.simulate_corpus(
        tmp_path / "hard",
        preset="sparrkulee",
        seed=0,
        n_subjects=2,
        n_held_out=0,
        n_stories=2,
        minutes=1.0,
        progress=False,
    )
    sparrkulee = within_subject_r(hard, subjects)
    assert teaching > 0.1
    assert sparrkulee < 0.5 * teaching


def test_user_stimuli(tmp_path):
    rng = np.random.default_rng(0)
    for name in ("Chapter 1.wav", "chapter 2.wav"):
        soundfile.write(tmp_path / name, 0.1 * rng.standard_normal(22050 * 12).astype(np.float32), 22050)
    out = corpus.simulate_corpus(
        tmp_path / "corpus", seed=0, n_subjects=1, n_held_out=0, stimuli_dir=tmp_path, progress=False
    )
    meta = SplitData(out).metadata
    assert meta["stimuli"] == ["chapter_1", "chapter_2"] and meta["parameters"]["n_stories"] == 2
    assert meta["recordings"] == {"sub-001": ["chapter_1", "chapter_2"]}


def test_refuses_to_overwrite_foreign_folders(tmp_path):
    (tmp_path / "mine.txt").write_text("keep me")
    with pytest.raises(UserError, match="new or empty folder"):
        corpus.simulate_corpus(tmp_path, seed=0, **ONE)
    assert corpus_files(tmp_path) == ["mine.txt"]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(preset="nope"), "preset must be one of 'teaching', 'sparrkulee'; got 'nope'"),
        (dict(n_subjects=2, n_held_out=2), "n_held_out must be between"),
        (dict(n_stories=0), "stories"),
        (dict(minutes=0.1), "minutes"),
        (dict(seed=-1), "seed"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, message):
    with pytest.raises(UserError, match=message):
        corpus.simulate_corpus(tmp_path / "x", progress=False, **kwargs)
    assert not (tmp_path / "x").exists()


def test_default_corpus_is_cached_verified_and_repaired(tmp_path, monkeypatch):
    monkeypatch.setenv(corpus.CACHE_ENV, str(tmp_path))
    tiny = simulation_params.SimulationParams(n_subjects=1, n_held_out=0, n_stories=1, minutes=0.2)
    monkeypatch.setitem(simulation_params.PRESETS, "teaching", tiny)
    stale = tmp_path / "teaching-000000000000"  # from older code, unused for two days: removed
    in_use = tmp_path / "teaching-111111111111"  # from older code, handed out an hour ago: a run may be reading it
    for old, age in ((stale, 2 * 24 * 3600), (in_use, 3600)):
        old.mkdir()
        (old / METADATA_FILE).write_text('{"generator": "dmf2mel.data.simulate", "files": {}}')
        (old / corpus.LAST_USED_FILE).touch()
        then = time.time() - age
        os.utime(old / corpus.LAST_USED_FILE, (then, then))
    calls = []
    original = corpus.simulate_corpus
    monkeypatch.setattr(corpus, "simulate_corpus", lambda *a, **k: calls.append(1) or original(*a, **k))

    folder = corpus.default_corpus("teaching", progress=False)
    assert folder.parent == tmp_path and folder.name.startswith("teaching-") and len(calls) == 1
    assert corpus.verify_corpus(folder)["parameters"]["minutes"] == 0.2
    assert corpus.default_corpus("teaching", progress=False) == folder and len(calls) == 1  # cached
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([folder.name, in_use.name])  # no temporary folders
    assert time.time() - (folder / corpus.LAST_USED_FILE).stat().st_mtime < 60  # each use is recorded

    eeg = folder / format_filename("test", "sub-001", "audiobook_1", "eeg")
    np.save(eeg, np.zeros((3, 64), dtype=np.float32))  # a damaged file is found and the corpus rebuilt
    with pytest.raises(DataError, match="expected shape"):
        corpus.verify_corpus(folder)
    assert corpus.default_corpus("teaching", progress=False) == folder and len(calls) == 2
    corpus.verify_corpus(folder)

    os.remove(eeg)
    with pytest.raises(DataError, match="unreadable"):
        corpus.verify_corpus(folder)
    # Other parameters give another cache folder.
    monkeypatch.setitem(simulation_params.PRESETS, "teaching", dataclasses.replace(tiny, minutes=0.25))
    assert corpus.corpus_key("teaching") != folder.name


def test_everyone_hears_the_first_story_and_the_others_are_shared_fairly():
    heard = [simulate.stories_heard(i, n_stories=4, stories_per_subject=3) for i in range(6)]
    assert all(len(h) == 3 and h[0] == 0 and len(set(h)) == 3 for h in heard)
    counts = np.bincount(np.concatenate(heard), minlength=4)
    assert counts[0] == 6 and set(counts[1:]) == {4}


def test_the_corpus_functions_still_answer_to_their_old_names():
    for name in simulate._CORPUS_NAMES:
        assert getattr(simulate, name) is getattr(corpus, name), name
    from dmf2mel.data.simulate import default_corpus, simulate_corpus

    assert (default_corpus, simulate_corpus) == (corpus.default_corpus, corpus.simulate_corpus)
    assert {"simulate_corpus", "default_corpus", "cache_dir", "CACHE_ENV"} <= simulate._CORPUS_NAMES
    assert simulate.PRESETS is simulation_params.PRESETS and simulate.preset_params is simulation_params.preset_params
    with pytest.raises(AttributeError, match="^module 'dmf2mel.data.simulate' has no attribute 'no_such_name'$"):
        simulate.no_such_name


def test_the_version_hashes_the_simulation_its_parameters_and_the_writer():
    files = {Path(module.__file__).name for module in (simulate, simulation_params, corpus)}
    assert set(simulate.SOURCE_FILES) == files
    assert all(Path(module.__file__).parent == Path(simulate.__file__).parent for module in (simulation_params, corpus))


def test_the_parameters_load_without_mne():
    script = "import sys, dmf2mel.data.simulation_params; assert 'mne' not in sys.modules, 'mne was imported'"
    root = Path(simulation_params.__file__).parents[2]  # this checkout first on the path (python -c puts cwd first)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=root, timeout=120)
    assert proc.returncode == 0, proc.stderr
