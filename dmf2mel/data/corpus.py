"""Writing, checking and caching a simulated corpus in the SparrKULee ``split_data`` layout.

:func:`simulate_corpus` writes the recordings of :mod:`dmf2mel.data.simulate` for every listener and
the stories they heard, the noise-free EEG under ``clean/`` and a metadata file listing the preset,
seed, simulation version, who heard what, the parameters and every file with its shape;
:func:`verify_corpus` checks a corpus against that list. :func:`default_corpus` is the built-in corpus
of a preset the chapters use: generated on first use into :func:`cache_dir`, under a folder name
(:func:`corpus_key`) that hashes the parameters, the seed, the simulation code and the numerical
libraries, following the rules of :mod:`dmf2mel.cache`.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Callable

import mne
import numpy as np
import scipy
from tqdm.auto import tqdm

from dmf2mel import cache
from dmf2mel.data import sparrkulee, speech
from dmf2mel.data.simulate import (
    STREAM_RECORDING,
    STREAM_SUBJECT,
    Stimulus,
    _rng,
    make_stimulus,
    make_subject,
    simulate_recording,
    simulation_version,
    stories_heard,
    story_names,
    subject_names,
    synthetic_stimulus,
)
from dmf2mel.data.simulation_params import SimulationParams, preset_params
from dmf2mel.errors import DataError
from dmf2mel.io import save_npy
from dmf2mel.validation import check_folder, check_int, check_writable

CLEAN_FOLDER = "clean"
CACHE_ENV = "DMF2MEL_CACHE"
STALE_TEMP_S = 3600.0  # a temporary corpus folder this old belongs to a killed run
#: A cached corpus of other code or parameters is deleted only when no process has asked for it for this long:
#: a run started before the code changed may still be reading it (``default_corpus`` marks each use).
STALE_CORPUS_S = cache.UNUSED_FOR_S
#: The file whose modification time records a cached corpus's last use.
LAST_USED_FILE = cache.LAST_USED_FILE


def _stimuli(
    params: SimulationParams, seed: int, stimuli_dir: str | Path | None, minutes_given: bool
) -> list[tuple[str, Callable[[], Stimulus]]]:
    """(name, a function computing its :class:`Stimulus`) per story: synthetic speech, or the user's
    files (cut to ``minutes`` if given)."""
    if stimuli_dir is None:
        return [
            (name, functools.partial(synthetic_stimulus, seed, index, params.minutes * 60.0))
            for index, name in enumerate(story_names(params.n_stories))
        ]
    loaded = speech.load_stimuli(stimuli_dir)
    limit = int(params.minutes * 60 * speech.SPEECH_SFREQ) if minutes_given else None
    return [(name, functools.partial(make_stimulus, name, audio[:limit])) for name, audio in loaded.items()]


def _write_corpus(
    folder: Path,
    preset: str,
    seed: int,
    params: SimulationParams,
    stories: list[tuple[str, Callable[[], Stimulus]]],
    stimuli_dir,
    progress: bool,
) -> None:
    subjects = subject_names(params.n_subjects)
    listeners = [make_subject(_rng(seed, STREAM_SUBJECT, index), params) for index in range(params.n_subjects)]
    heard_index = [stories_heard(i, len(stories), params.stories_per_subject) for i in range(len(subjects))]
    heard = {subject: [stories[i][0] for i in indices] for subject, indices in zip(subjects, heard_index)}
    files: dict[str, list[int]] = {}
    n_steps = len(stories) + sum(map(len, heard_index))
    with tqdm(total=n_steps, desc="simulating corpus", unit="step", disable=not progress) as bar:
        for story_index, (story_name, compute_stimulus) in enumerate(stories):
            bar.set_postfix_str(f"stimulus {story_name}")
            stimulus = compute_stimulus()
            bar.update()
            for subject_index, (subject, listener) in enumerate(zip(subjects, listeners)):
                if story_index not in heard_index[subject_index]:
                    continue
                bar.set_postfix_str(f"{subject} {story_name}")
                rng = _rng(seed, STREAM_RECORDING, subject_index, story_index)
                eeg, clean = simulate_recording(rng, listener, stimulus, params)
                # The 64 Hz mel loses a frame or two to center=False: trim everything to the shortest.
                n = min(len(eeg), len(stimulus.mel), len(stimulus.envelope))
                written = sparrkulee.write_recording(
                    folder, subject, story_name, eeg[:n], stimulus.mel[:n], stimulus.envelope[:n]
                )
                for split, part in sparrkulee.split_bounds(n).items():
                    name = sparrkulee.format_filename(split, subject, story_name, "eeg")
                    written.append(save_npy(folder / CLEAN_FOLDER / name, np.ascontiguousarray(clean[:n][part])))
                for path in written:
                    files[path.relative_to(folder).as_posix()] = list(np.load(path, mmap_mode="r").shape)
                bar.update()
    held_out = subjects[len(subjects) - params.n_held_out :] if params.n_held_out else []
    sparrkulee.write_metadata(
        folder,
        {
            "generator": "dmf2mel.data.simulate",
            "preset": preset,
            "seed": seed,
            "version": simulation_version(),
            "libraries": _library_versions(),
            "sfreq": sparrkulee.SFREQ,
            "eeg_unit": "microvolt",
            "subjects": subjects,
            "held_out_subjects": held_out,
            "stimuli": [name for name, _ in stories],
            "stimuli_source": "synthetic speech" if stimuli_dir is None else str(stimuli_dir),
            "recordings": heard,
            "clean_folder": CLEAN_FOLDER,
            "parameters": dataclasses.asdict(params),
            "files": dict(sorted(files.items())),
        },
    )


def _library_versions() -> dict[str, str]:
    import librosa

    return {"numpy": np.__version__, "scipy": scipy.__version__, "mne": mne.__version__, "librosa": librosa.__version__}


def _is_corpus(folder: Path) -> bool:
    try:
        meta = sparrkulee.read_metadata(folder)
    except DataError:
        return False
    return meta is not None and meta.get("generator") == "dmf2mel.data.simulate"


def simulate_corpus(
    out: str | Path,
    preset: str = "teaching",
    seed: int = 0,
    n_subjects: int | None = None,
    n_held_out: int | None = None,
    n_stories: int | None = None,
    minutes: float | None = None,
    stimuli_dir: str | Path | None = None,
    progress: bool = True,
) -> Path:
    """Simulate a corpus and write it to ``out`` in the SparrKULee ``split_data`` layout.

    Parameters
    ----------
    out : path
        Output folder. It must be absent, empty, or an earlier simulated corpus holding nothing but
        what that corpus wrote (it is then replaced); anything else in it is refused, never deleted.
        The corpus is built in a temporary sibling folder ``.NAME.tmp-*`` and renamed into place at the
        end, so an interrupted run leaves ``out`` as it was; the next run into ``out`` removes what a
        killed one left there (it holds a lock, ``.NAME.lock`` beside ``out``, while it builds).
    preset : {"teaching", "sparrkulee"}
        Signal-to-noise regime (see :mod:`dmf2mel.data.simulate`).
    seed : int
        The same seed (and parameters) gives byte-identical files.
    n_subjects, n_held_out, n_stories, minutes
        Override the preset's sizes: subjects in total, of which the last ``n_held_out`` are held
        out; synthetic stories of ``minutes`` minutes each.
    stimuli_dir : path, optional
        A folder of audio files to use instead of synthetic speech (one story per file, full length
        unless ``minutes`` is given; ``n_stories`` is then the number of files).
    progress : bool
        Show a progress bar.

    Returns
    -------
    The path of the corpus. Besides the ``{split}_-_{subject}_-_{stimulus}_-_{eeg|mel|envelope}.npy``
    files (float32, 64 Hz; EEG in microvolts) it holds ``dmf2mel_corpus.json`` (preset, seed, version,
    subjects, held-out subjects, who heard what, parameters, every file with its shape) and
    ``clean/`` with the noise-free EEG under the same names.
    """
    out = check_folder("out", out)
    seed = check_int("seed", seed, minimum=0)
    params = preset_params(preset, n_subjects, n_held_out, n_stories, minutes)
    check_writable("out", out.parent)
    cache.check_replaceable(out, _corpus_files, "an earlier simulated corpus")
    stories = _stimuli(params, seed, stimuli_dir, minutes_given=minutes is not None)
    params = dataclasses.replace(
        params, n_stories=len(stories), stories_per_subject=min(params.stories_per_subject, len(stories))
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    with cache.entry_lock(out.parent, out.name, f"simulating a corpus into {out}", verbose=progress):
        cache.remove_leftovers(out.parent, out.name)  # of a killed run: no other process builds out now
        cache.check_replaceable(out, _corpus_files, "an earlier simulated corpus")  # again, now that out is ours
        return cache.build_entry(
            out, lambda path: _write_corpus(path, preset, seed, params, stories, stimuli_dir, progress)
        )


def _corpus_files(folder: Path) -> set[str] | None:
    """Every file an earlier simulated corpus in ``folder`` wrote (None: ``folder`` is no simulated corpus)."""
    if not _is_corpus(folder):
        return None
    files = sparrkulee.read_metadata(folder).get("files")
    if not isinstance(files, dict):
        return None
    return {*files, sparrkulee.METADATA_FILE, LAST_USED_FILE}


def verify_corpus(folder: str | Path, version: str | None = None) -> dict:
    """Check a simulated corpus is complete; returns its metadata.

    Every file the metadata lists must exist with the listed shape (only the ``.npy`` headers are
    read). With ``version``, the corpus must also come from that simulation version.

    Raises
    ------
    DataError
        Naming the first problem found.
    """
    folder = Path(folder)
    meta = sparrkulee.read_metadata(folder) if folder.is_dir() else None
    if meta is None or "files" not in meta:
        raise DataError(f"{folder}: no simulated-corpus metadata ({sparrkulee.METADATA_FILE} with a file list)")
    if version is not None and meta.get("version") != version:
        raise DataError(f"{folder}: simulation version {meta.get('version')!r}, expected {version!r}")
    for name, shape in meta["files"].items():
        path = folder / name
        try:
            found = np.load(path, mmap_mode="r").shape
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: listed in the corpus metadata but unreadable ({err})") from None
        if list(found) != list(shape):
            raise DataError(f"{path}: expected shape {tuple(shape)}, found {found}")
    return meta


def cache_dir() -> Path:
    """Where :func:`default_corpus` keeps corpora: ``$DMF2MEL_CACHE`` or ``~/.cache/dmf2mel``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "dmf2mel")


def shown_path(path: str | Path) -> str:
    """``path`` as a message shows it: inside the cache as ``$DMF2MEL_CACHE/...``, else as given.

    A book page then shows where a run or corpus lies without the building machine's own folders.
    """
    path = Path(path)
    try:
        return f"${CACHE_ENV}/{path.resolve().relative_to(cache_dir().resolve()).as_posix()}"
    except ValueError:
        return str(path)


def corpus_key(preset: str, seed: int = 0) -> str:
    """The cache folder name of a default corpus: preset plus a hash of parameters, seed, code and libraries."""
    params = preset_params(preset)
    identity = dict(
        params=dataclasses.asdict(params), seed=seed, version=simulation_version(), libraries=_library_versions()
    )
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:12]
    return f"{preset}-{digest}"


def default_corpus(preset: str = "teaching", progress: bool = True) -> Path:
    """The built-in corpus of ``preset`` (seed 0), generated on first use and cached.

    The cached copy is verified before use (metadata, every file, every shape) and regenerated when
    it is incomplete or when the parameters, the simulation code or the numerical libraries changed
    (they are part of the folder name). The cache follows :mod:`dmf2mel.cache`: generation happens in a
    temporary folder that is renamed into place, so a killed run never leaves half a corpus; a second
    process asking for the same corpus waits for the first instead of generating it again; a corpus
    of older code or parameters is deleted once nobody has used it for a day.

    Returns
    -------
    Path of the corpus folder (``split_data`` layout).
    """
    version = simulation_version()
    root = cache_dir()
    folder = root / corpus_key(preset)
    with cache.entry_lock(root, folder.name, f"generating the {preset} corpus"):
        cache.remove_stale(root, folder, _is_corpus, STALE_CORPUS_S, (sparrkulee.METADATA_FILE,), STALE_TEMP_S)
        try:
            verify_corpus(folder, version)
        except DataError:
            cache.build_entry(folder, lambda path: simulate_corpus(path, preset=preset, seed=0, progress=progress))
            verify_corpus(folder, version)
        cache.mark_used(folder)
    return folder
