"""The built-in corpus at the raw level: a BIDS dataset laid out like the SparrKULee release.

:mod:`dmf2mel.data.simulate` writes its listeners already preprocessed, in the ``split_data``
layout. This module writes the same subjects hearing the same synthetic stories one level lower,
as the release's raw BIDS dataset, so that ``python -m dmf2mel preprocess`` and ``split`` can be
run (and tested) on files exactly like the real ones::

    OUT/dataset_description.json, participants.tsv, README            (mne-bids)
    OUT/sub-001/ses-shortstories01/eeg/
        sub-001_ses-shortstories01_task-listeningActive_run-01_eeg.bdf.gz   BioSemi: 64 EEG + Status, 1024 Hz
        ..._events.tsv (with stim_file and trigger_file), _channels.tsv, _eeg.json
    OUT/stimuli/eeg/audiobook_1.npz.gz, t_audiobook_1.npz.gz          {"audio", "fs"}: sound and trigger pulses
    OUT/derivatives/simulated_clean/...                                what no real dataset has: the truth

Each recording starts a few seconds before the story, and the BioSemi ``Status`` channel carries
one trigger pulse per second of the story — the same pulse train as the story's trigger file — on
top of system flags in its upper bits, as a real BioSemi recording does. The EEG is simulated at
1024 Hz with the listener's auditory response, background brain noise, alpha, **blinks whose scalp
topography is known** (written to ``derivatives/simulated_clean/blink_topography.npy``), muscle,
power line, drifts and amplifier noise (:func:`dmf2mel.data.simulate.noise_and_artifacts`).

``derivatives/simulated_clean/`` also holds, for every recording, the noise-free auditory response
as it would come out of the linear steps of the preprocessing chain (high-pass, common average,
64 Hz), from the stimulus onset, named like the preprocessed EEG, (64, time) float32: what a
perfect artifact removal would leave of the speech response.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import edfio
import mne
import mne_bids
import numpy as np
import scipy.signal
from tqdm.auto import tqdm

from dmf2mel import cache
from dmf2mel.data import raw as rawchain
from dmf2mel.data import simulate
from dmf2mel.data.derivatives import preprocessed_eeg_name
from dmf2mel.data.preprocess import biosemi_info
from dmf2mel.data.simulation_params import SimulationParams, preset_params
from dmf2mel.io import atomic_path, new_folder_mode, save_json, save_npy
from dmf2mel.validation import check_folder, check_int, check_writable

RAW_SFREQ = 1024
SESSION = "shortstories01"
TASK = "listeningActive"
LEAD_IN_S = (2.0, 4.0)  # the story starts this long after the recording (drawn per recording)
TAIL_S = 4.0  # and the recording goes on this long after it
TRIGGER_PERIOD_S = 1.0
PULSE_S = 0.01
STATUS_IDLE, STATUS_PULSE = 255, 254
STATUS_FLAGS = 1 << 20  # a BioSemi system bit above the 16 trigger bits
BDF_UV_RANGE = (-262144.0, 262143.0)  # BioSemi's physical range, microvolts
BDF_DIGITAL = (-8388608, 8388607)  # 24 bits
CLEAN_FOLDER = ("derivatives", "simulated_clean")
BLINK_TOPOGRAPHY = "blink_topography.npy"
MARKER_FILE = "dmf2mel_raw_corpus.json"
STREAM_RAW = 7  # random streams distinct from those of the split_data corpus


def bids_stem(subject: str, run: int) -> str:
    """``sub-001_ses-shortstories01_task-listeningActive_run-01``."""
    return f"{subject}_ses-{SESSION}_task-{TASK}_run-{run:02d}"


def blink_topography() -> np.ndarray:
    """The scalp pattern (64,) of every simulated blink, 1 at its largest (frontopolar) electrode."""
    head = simulate.head_model()
    pattern = simulate._distance_pattern(head.ch_pos, simulate.BLINK_ORIGIN_M, simulate.BLINK_SPREAD_M)
    return pattern / pattern.max()


def pulse_train(n_samples: int, sfreq: float, first: int, n_pulses: int) -> np.ndarray:
    """0/1 (n_samples,) with ``n_pulses`` pulses of 10 ms, one per second, the first at sample ``first``."""
    train = np.zeros(n_samples)
    width = max(1, int(PULSE_S * sfreq))
    for k in range(n_pulses):
        start = first + int(round(k * TRIGGER_PERIOD_S * sfreq))
        train[start : start + width] = 1.0
    return train


def n_pulses(duration_s: float) -> int:
    """Trigger pulses during a story of ``duration_s`` seconds: one at the start of every second."""
    return int(math.ceil(duration_s / TRIGGER_PERIOD_S - 1e-9))


def _gzip_bytes(data: bytes) -> bytes:
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=1, mtime=0) as fh:  # mtime 0: same bytes every time
        fh.write(data)
    return buffer.getvalue()


def _write_npz_gz(path: Path, **arrays) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    with atomic_path(path) as tmp:
        tmp.write_bytes(_gzip_bytes(buffer.getvalue()))


def _write_bdf(path: Path, eeg_uv: np.ndarray, status: np.ndarray) -> None:
    """A BioSemi-style BDF: the 64 channels (time, 64) in µV and the Status channel."""
    names = biosemi_info(RAW_SFREQ).ch_names
    signals = [
        edfio.BdfSignal(
            eeg_uv[:, k],
            RAW_SFREQ,
            label=name,
            physical_dimension="uV",
            physical_range=BDF_UV_RANGE,
            digital_range=BDF_DIGITAL,
        )
        for k, name in enumerate(names)
    ]
    signals.append(
        edfio.BdfSignal(
            status.astype(np.float64),
            RAW_SFREQ,
            label=rawchain.STATUS_CHANNEL,
            physical_dimension="Boolean",
            physical_range=BDF_DIGITAL,
            digital_range=BDF_DIGITAL,
        )
    )
    edfio.Bdf(signals, data_record_duration=1).write(path)


def _clean_response(neural_uv: np.ndarray) -> np.ndarray:
    """The noise-free response (time, 64) at 1024 Hz through the linear steps of the chain: (64, time) at 64 Hz."""
    data = rawchain.highpass(neural_uv.T, RAW_SFREQ)
    return rawchain.resample(rawchain.common_average(data), RAW_SFREQ).astype(np.float32)


def _bids_recording(
    root: Path,
    work: Path,
    subject: str,
    run: int,
    stimulus: str,
    eeg_uv: np.ndarray,
    status: np.ndarray,
    onset_s: float,
    duration_s: float,
) -> None:
    """Write one recording with its BIDS sidecars (mne-bids), then gzip the BDF as the release does."""
    source = work / f"{bids_stem(subject, run)}.bdf"
    _write_bdf(source, eeg_uv, status)
    raw = mne.io.read_raw_bdf(source, verbose="error")
    raw.set_annotations(mne.Annotations([onset_s], [duration_s], [stimulus]))
    path = mne_bids.BIDSPath(
        subject=subject.removeprefix("sub-"), session=SESSION, task=TASK, run=f"{run:02d}", datatype="eeg", root=root
    )
    mne_bids.write_raw_bids(raw, path, overwrite=True, verbose="error")
    source.unlink()
    bdf = path.copy().update(suffix="eeg", extension=".bdf").fpath
    (bdf.parent / f"{bdf.name}.gz").write_bytes(_gzip_bytes(bdf.read_bytes()))
    bdf.unlink()
    events = path.copy().update(suffix="events", extension=".tsv").fpath
    with open(events, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh, dialect="excel-tab"))
    for row in rows:
        row["stim_file"], row["trigger_file"] = f"{stimulus}.npz.gz", f"t_{stimulus}.npz.gz"
    with open(events, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]), dialect="excel-tab", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    scans = root / subject / f"ses-{SESSION}" / f"{subject}_ses-{SESSION}_scans.tsv"
    scans.write_text(scans.read_text(encoding="utf-8").replace(f"{bdf.name}\t", f"{bdf.name}.gz\t"), encoding="utf-8")


def _simulate_recording(
    rng: np.random.Generator,
    listener: simulate.Subject,
    stimulus: simulate.Stimulus,
    params: SimulationParams,
    duration_s: float,
):
    """EEG (time, 64) µV at 1024 Hz, Status (time,), the story's onset sample and its clean response."""
    sources = params.source_nam * simulate.NAM * simulate.neural_sources(listener, stimulus.sustained, stimulus.onsets)
    up = RAW_SFREQ // int(simulate.SIM_SFREQ)
    neural = scipy.signal.resample_poly(sources @ listener.auditory_pattern.T, up, 1, axis=0) / simulate.UV
    onset = int(rng.uniform(*LEAD_IN_S) * RAW_SFREQ)
    n_total = int(math.ceil(onset / RAW_SFREQ + duration_s + TAIL_S)) * RAW_SFREQ
    scalp = np.zeros((n_total, neural.shape[1]))
    scalp[onset : onset + len(neural)] = neural
    eeg = scalp + simulate.noise_and_artifacts(rng, listener, params, n_total, RAW_SFREQ) / simulate.UV
    pulses = pulse_train(n_total, RAW_SFREQ, onset, n_pulses(duration_s))
    status = STATUS_FLAGS + np.where(pulses > 0, STATUS_PULSE, STATUS_IDLE)
    return eeg, status, onset, _clean_response(neural)


def simulate_raw_corpus(
    out: str | Path,
    preset: str = "teaching",
    seed: int = 0,
    n_subjects: int | None = None,
    n_stories: int | None = None,
    minutes: float | None = None,
    params: SimulationParams | None = None,
    progress: bool = True,
) -> Path:
    """Write the simulated corpus as a raw SparrKULee-like BIDS dataset in ``out``.

    Parameters
    ----------
    out : path
        A new or empty folder, or an earlier raw simulated corpus holding nothing but what it wrote
        (replaced whole; anything else in it is refused, never deleted). Built in a temporary sibling
        folder and renamed into place at the end; the next run removes what a killed one left.
    preset, seed, n_subjects, n_stories, minutes
        As for :func:`dmf2mel.data.corpus.simulate_corpus` (the same synthetic stories).
    params : SimulationParams, optional
        Use these parameters instead of the preset's (for tests: e.g. more blinks).
    progress : bool

    Returns
    -------
    ``out``.
    """
    out = check_folder("out", out)
    seed = check_int("seed", seed, minimum=0)
    if params is None:
        params = preset_params(preset, n_subjects, 0, n_stories, minutes)
    check_writable("out", out.parent)
    cache.check_replaceable(out, _raw_corpus_files, "an earlier raw simulated corpus")
    out.parent.mkdir(parents=True, exist_ok=True)
    with cache.entry_lock(out.parent, out.name, f"simulating a raw corpus into {out}", verbose=progress):
        cache.remove_leftovers(out.parent, out.name)  # of a killed run: no other process builds out now
        cache.check_replaceable(out, _raw_corpus_files, "an earlier raw simulated corpus")
        return _write_raw_corpus(out, preset, seed, params, progress)


def _raw_corpus_files(folder: Path) -> set[str] | None:
    """Every file an earlier raw simulated corpus in ``folder`` wrote (None: it is no such corpus, or one written
    before the marker listed its files)."""
    try:
        marker = json.loads((folder / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = marker.get("files") if isinstance(marker, dict) else None
    return {*files, MARKER_FILE} if isinstance(files, list) else None


def _write_raw_corpus(out: Path, preset: str, seed: int, params: SimulationParams, progress: bool) -> Path:
    subjects = simulate.subject_names(params.n_subjects)
    stories = simulate.story_names(params.n_stories)
    duration_s = params.minutes * 60.0
    out.parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        clean = root.joinpath(*CLEAN_FOLDER)
        save_npy(clean / BLINK_TOPOGRAPHY, blink_topography())
        listeners = [
            simulate.make_subject(simulate._rng(seed, simulate.STREAM_SUBJECT, i), params) for i in range(len(subjects))
        ]
        heard = [simulate.stories_heard(i, len(stories), params.stories_per_subject) for i in range(len(subjects))]
        with (
            tempfile.TemporaryDirectory(prefix="dmf2mel-bdf-") as work,
            tqdm(
                total=sum(map(len, heard)), desc="simulating raw corpus", unit="recording", disable=not progress
            ) as bar,
        ):
            for story_index, story in enumerate(stories):
                audio = simulate.synthetic_audio(seed, story_index, duration_s)
                stimulus = simulate.synthetic_stimulus(seed, story_index, duration_s)
                stimuli = root / rawchain.STIMULUS_FOLDER[0] / rawchain.STIMULUS_FOLDER[1]
                fs = simulate.speech.SPEECH_SFREQ
                _write_npz_gz(stimuli / f"{story}.npz.gz", audio=audio.astype(np.float32), fs=np.int64(fs))
                triggers = pulse_train(len(audio), fs, 0, n_pulses(duration_s))
                _write_npz_gz(stimuli / f"t_{story}.npz.gz", audio=triggers.astype(np.float32), fs=np.int64(fs))
                for subject_index, subject in enumerate(subjects):
                    if story_index not in heard[subject_index]:
                        continue
                    run = heard[subject_index].index(story_index) + 1
                    rng = simulate._rng(seed, STREAM_RAW, subject_index, story_index)
                    eeg, status, onset, clean_response = _simulate_recording(
                        rng, listeners[subject_index], stimulus, params, duration_s
                    )
                    _bids_recording(root, Path(work), subject, run, story, eeg, status, onset / RAW_SFREQ, duration_s)
                    name = preprocessed_eeg_name(bids_stem(subject, run), story)
                    save_npy(clean / subject / f"ses-{SESSION}" / name, clean_response)
                    bar.update()
        save_json(
            root / MARKER_FILE,
            {
                "generator": "dmf2mel.data.simulate_raw",
                "preset": preset,
                "seed": seed,
                "subjects": subjects,
                "stimuli": stories,
                "sfreq": RAW_SFREQ,
                "files": sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()),
            },
        )
        os.chmod(root, new_folder_mode())  # mkdtemp made it owner-only
        cache.replace_folder(root, out)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return out


def clean_path(root: str | Path, subject: str, run: int, stimulus: str) -> Path:
    """The noise-free response of one recording of a raw simulated corpus."""
    return Path(root).joinpath(
        *CLEAN_FOLDER, subject, f"ses-{SESSION}", preprocessed_eeg_name(bids_stem(subject, run), stimulus)
    )


__all__ = ["RAW_SFREQ", "blink_topography", "bids_stem", "clean_path", "pulse_train", "simulate_raw_corpus"]
