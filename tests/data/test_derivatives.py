"""``split``: the release's preprocessed level into split_data, file for file as the challenge's script."""

import hashlib

import numpy as np
import pytest

from dmf2mel.cli import main
from dmf2mel.data import derivatives as dv
from dmf2mel.data import sparrkulee as sk
from dmf2mel.errors import DataError, UserError

STEM = "{subject}_ses-shortstories01_task-listeningActive_run-0{run}"
# (subject, stimulus, EEG channels, EEG length, mel length, envelope length)
RECORDINGS = [
    ("sub-001", "audiobook_1", 64, 1003, 1001, 1002),
    ("sub-001", "podcast_2", 66, 745, 747, 747),
    ("sub-002", "audiobook_1", 64, 999, 1001, 1002),
]


def make_derivatives(root):
    """A tiny derivatives folder in the release's layout (channel-major float64 EEG, float32 features)."""
    rng = np.random.default_rng(0)
    lengths = {}
    for run, (subject, stimulus, n_chans, n_eeg, n_mel, n_env) in enumerate(RECORDINGS, start=1):
        folder = root / dv.PREPROCESSED_EEG / subject / "ses-shortstories01"
        folder.mkdir(parents=True, exist_ok=True)
        eeg = rng.normal(3.0, 2.0, (n_chans, n_eeg))
        np.save(folder / dv.preprocessed_eeg_name(STEM.format(subject=subject, run=run), stimulus), eeg)
        lengths.setdefault(stimulus, (n_mel, n_env))
    for stimulus, (n_mel, n_env) in lengths.items():
        (root / dv.PREPROCESSED_STIMULI).mkdir(parents=True, exist_ok=True)
        np.save(dv.feature_path(root, stimulus, "mel"), rng.gamma(2.0, 1.0, (n_mel, 10)).astype(np.float32))
        np.save(dv.feature_path(root, stimulus, "envelope"), rng.gamma(2.0, 1.0, (n_env, 1)).astype(np.float32))
    return root


def challenge_reference(root):
    """What split_and_normalize.py writes, re-derived step by step from its description."""
    files = {}
    for path in sorted((root / "preprocessed_eeg").glob("sub-*/*/*.npy")):
        subject = path.parent.parent.name
        stimulus = path.name.split("_eeg.")[0].split("-audio-")[1]
        data = {"eeg": np.swapaxes(np.load(path), 0, 1)[:, :64]}
        for feature in ("envelope", "mel"):
            data[feature] = np.load(root / "preprocessed_stimuli" / f"{stimulus}_-_{feature}.npy")
        n = min(len(a) for a in data.values())
        for feature, array in data.items():
            start, mean, std = 0, None, None
            for split, fraction in zip(("train", "val", "test"), (80 / 100, 10 / 100, 10 / 100)):
                end = start + int(n * fraction)
                cut = array[start:end]
                if mean is None:
                    mean, std = cut.mean(axis=0), cut.std(axis=0)
                files[f"{split}_-_{subject}_-_{stimulus}_-_{feature}.npy"] = (cut, (cut - mean) / std)
                start = end
    return files


def digest(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_split_lengths_use_int_of_each_fraction():
    assert dv.split_lengths(1001) == {"train": slice(0, 800), "val": slice(800, 900), "test": slice(900, 1000)}
    assert dv.split_lengths(745)["test"] == slice(670, 744)


def test_split_equals_the_challenge_script_and_splitdata_sees_its_normalised_values(tmp_path):
    root = make_derivatives(tmp_path / "derivatives")
    out = tmp_path / "split_data"
    assert main(["split", str(root), "--out", str(out), "--quiet"]) == 0
    expected = challenge_reference(root)
    assert sorted(p.name for p in out.iterdir()) == sorted(expected)
    for name, (raw, _) in expected.items():
        got = np.load(out / name)
        assert got.dtype == raw.dtype and got.shape == raw.shape, name
        np.testing.assert_array_equal(got, raw)
    data = sk.SplitData(out)
    assert data.subjects == ["sub-001", "sub-002"] and data.stimuli == ["audiobook_1", "podcast_2"]
    for split in sk.SPLITS:
        for feature in ("mel", "envelope"):
            for rec in data.recordings_in(split, feature):
                eeg, target = data.pair(split, rec.subject, rec.stimulus, feature)
                stem = f"{split}_-_{rec.subject}_-_{rec.stimulus}_-_"
                np.testing.assert_allclose(eeg, expected[stem + "eeg.npy"][1], rtol=1e-4, atol=1e-4)
                np.testing.assert_allclose(
                    target, expected[stem + f"{feature}.npy"][1].reshape(len(target), -1), rtol=1e-4, atol=1e-4
                )


def test_split_never_overwrites_without_overwrite(tmp_path):
    root = make_derivatives(tmp_path / "derivatives")
    out = tmp_path / "split_data"
    dv.split_derivatives(root, out, progress=False)
    victim = next(out.iterdir())
    victim.write_bytes(b"mine")
    before = digest(out)
    with pytest.raises(UserError, match="already exist.*overwrite=True"):
        dv.split_derivatives(root, out, progress=False)
    assert digest(out) == before
    dv.split_derivatives(root, out, overwrite=True, progress=False)
    assert victim.read_bytes() != b"mine"


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda root: dv.feature_path(root, "podcast_2", "mel").unlink(), "podcast_2_-_mel.npy is missing"),
        (
            lambda root: np.save(next(root.glob("preprocessed_eeg/sub-002/*/*.npy")), np.zeros((32, 999))),
            "at least 64 EEG channels, found shape (32, 999)",
        ),
        (
            lambda root: np.save(dv.feature_path(root, "audiobook_1", "mel"), np.zeros((1001, 8), np.float32)),
            "expected a time-major mel of shape (time, 10)",
        ),
    ],
)
def test_bad_derivatives_give_one_error_naming_the_file_and_write_nothing(tmp_path, damage, message):
    root = make_derivatives(tmp_path / "derivatives")
    damage(root)
    out = tmp_path / "split_data"
    with pytest.raises(DataError) as err:
        dv.split_derivatives(root, out, progress=False)
    assert message in str(err.value) and str(root) in str(err.value)
    assert not out.exists()


def test_a_missing_stimulus_names_the_recording_on_the_command_line(tmp_path, capsys):
    root = make_derivatives(tmp_path / "derivatives")
    dv.feature_path(root, "podcast_2", "envelope").unlink()
    assert main(["split", str(root), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "desc-preproc-audio-podcast_2_eeg.npy" in err and "podcast_2_-_envelope.npy" in err
