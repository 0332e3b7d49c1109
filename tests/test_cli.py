"""The command line as a user runs it: simulate, inspect, and one-line errors for bad input."""

import hashlib
import json
import subprocess
import sys

import numpy as np
import pytest

from dmf2mel.data import sparrkulee as sk

from conftest import TINY


def run(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "dmf2mel", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def digest(folder):
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def simulate_args(out, seed):
    return [
        "simulate",
        "--preset",
        "teaching",
        "--seed",
        seed,
        "--out",
        out,
        "--quiet",
        "--subjects",
        TINY["n_subjects"],
        "--held-out",
        TINY["n_held_out"],
        "--stories",
        TINY["n_stories"],
        "--minutes",
        TINY["minutes"],
    ]


def test_simulate_twice_with_the_same_seed_gives_identical_bytes(tmp_path, tiny_corpus):
    result = run(*simulate_args(tmp_path / "again", 0))
    assert result.returncode == 0, result.stderr
    assert digest(tmp_path / "again") == digest(tiny_corpus)


def test_inspect_json_describes_the_corpus(tiny_corpus):
    result = run("inspect", tiny_corpus, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert set(summary) == {"subjects", "stimuli", "recordings", "samples", "eeg_channels", "mel_bands"}
    files = [sk.parse_filename(p.name) for p in tiny_corpus.iterdir()]
    files = [f for f in files if f is not None]
    assert summary["subjects"] == sorted({f.subject for f in files}) and len(summary["subjects"]) == TINY["n_subjects"]
    assert summary["stimuli"] == sorted({f.stimulus for f in files})
    data = sk.SplitData(tiny_corpus)
    for split in sk.SPLITS:
        recs = {(f.subject, f.stimulus) for f in files if f.split == split and f.feature == "mel"}
        assert summary["recordings"][split] == len(recs)
        expected = sum(
            min(
                len(np.load(data.path(split, s, t, "eeg"), mmap_mode="r")),
                len(np.load(data.path(split, s, t, "mel"), mmap_mode="r")),
            )
            for s, t in recs
        )
        assert summary["samples"][split] == expected
    assert summary["eeg_channels"] == 64 and summary["mel_bands"] == 10


def test_inspect_readable_summary(tiny_corpus):
    result = run("inspect", tiny_corpus)
    assert result.returncode == 0 and "subjects" in result.stdout and "held out" in result.stdout


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: np.save(p, np.zeros((100, 63), dtype=np.float32)), "expected shape (time, 64)"),
        (lambda p: np.save(p, np.full((100, 64), np.inf, dtype=np.float32)), "NaN or infinite"),
        (lambda p: p.write_bytes(p.read_bytes()[:200]), "truncated or corrupt"),
    ],
)
def test_bad_files_give_one_error_line_and_change_nothing(tmp_path, tiny_corpus, damage, message):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_corpus, folder)
    victim = next(p for p in sorted(folder.iterdir()) if p.name.endswith("_-_eeg.npy"))
    damage(victim)
    before = digest(folder)
    result = run("inspect", folder)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr and message in result.stderr and victim.name in result.stderr
    assert digest(folder) == before


def test_mismatched_lengths_are_refused(tmp_path, tiny_corpus):
    import shutil

    folder = tmp_path / "copy"
    shutil.copytree(tiny_corpus, folder)
    victim = next(p for p in sorted(folder.iterdir()) if p.name.endswith("_-_mel.npy"))
    np.save(victim, np.load(victim)[:-300])
    result = run("inspect", folder)
    assert result.returncode == 2 and "samples" in result.stderr and "Traceback" not in result.stderr


def test_empty_folder_and_missing_folder(tmp_path):
    result = run("inspect", tmp_path)
    assert result.returncode == 2 and "no recordings found" in result.stderr
    result = run("inspect", tmp_path / "nope")
    assert result.returncode == 2 and "not a folder" in result.stderr
