"""Run folders and checkpoints: what a training run writes, and how a model is rebuilt from it.

A run folder ``RUN/`` holds::

    config.json    the model name, its config, the training profile, seed and data subjects
    history.csv    one row per epoch (loss terms, learning rate, validation r)
    last.pt        the state after the latest epoch (resume from here)
    best.pt        the state of the epoch with the best validation r (evaluate this one)
    metrics.json   written by ``evaluate`` (and at the end of ``train``)
    .lock          while ``train`` works on the run (:func:`run_lock`)

Checkpoints hold only tensors and plain Python values (dicts, lists, numbers, strings) so that they
load with ``torch.load(..., weights_only=True)``: a checkpoint file from elsewhere cannot run code.
Every file is written atomically (:func:`dmf2mel.io.atomic_path`).
"""

from __future__ import annotations

import contextlib
import csv
import fcntl
import io
import json
import os
import random
import socket
import time
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn

from dmf2mel.errors import DataError, UserError
from dmf2mel.io import atomic_path, save_json
from dmf2mel.models import registry

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
METRICS_FILE = "metrics.json"
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT, METRICS_FILE)
LOCK_FILE = ".lock"
#: Bumped when the checkpoint layout changes.
CHECKPOINT_FORMAT = 1


# --- models a run can hold ----------------------------------------------------------------------


# The registry lives in dmf2mel.models.registry; these names stay importable from here.
ABLATIONS = registry.ABLATIONS
MODELS = registry.MODELS
ModelSpec = registry.ModelSpec
model_spec = registry.model_spec


def model_from_config(config: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The (untrained) model a run config describes: ``config["model"]`` built from ``config["model_config"]``
    (:func:`dmf2mel.models.build_model` builds one from keyword arguments instead)."""
    return model_spec(config["model"]).build(dict(config["model_config"])).to(device)


#: The former name of :func:`model_from_config`.
build_model = model_from_config


# --- RNG states as weights-only values ----------------------------------------------------------


def rng_state() -> dict[str, Any]:
    """The torch, CUDA, numpy and Python RNG states as tensors and plain values."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": name,
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the states saved by :func:`rng_state`."""
    torch.set_rng_state(state["torch"])
    numpy = state["numpy"]
    np.random.set_state(
        (
            numpy["name"],
            numpy["keys"].numpy().astype(np.uint32),
            numpy["pos"],
            numpy["has_gauss"],
            numpy["cached_gaussian"],
        )
    )
    python = state["python"]
    random.setstate((python["version"], tuple(python["internal"]), python["gauss_next"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# --- checkpoint files ---------------------------------------------------------------------------


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain values only) to ``path`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` (no code from the file runs).

    Raises :class:`UserError` naming the file when it is missing, unreadable or not a dmf2mel
    checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for foreign or corrupt files
        raise UserError(f"{path}: not a loadable dmf2mel checkpoint (weights-only load failed: {err})") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT or "model" not in state:
        raise UserError(f"{path}: not a dmf2mel checkpoint (format {CHECKPOINT_FORMAT} with a model state expected)")
    return state


# --- run folders --------------------------------------------------------------------------------


#: What every run's config.json holds (:func:`dmf2mel.train.make_config` writes more).
_REQUIRED_CONFIG = (
    ("model",),
    ("model_config",),
    ("profile",),
    ("train",),
    ("seed",),
    ("data", "folder"),
    ("data", "n_chans"),
    ("data", "n_mels"),
    ("data", "subjects"),
    ("data", "held_out"),
    ("data", "window"),
)


def read_config(run: str | Path) -> dict:
    """The ``config.json`` of a run folder (UserError if the folder or file is missing)."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"{run}: run folder not found (train one with `python -m dmf2mel train --run {run}`)")
    path = run / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run}: not a training run (no {CONFIG_FILE})")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None
    for keys in _REQUIRED_CONFIG:
        value = config
        for depth, key in enumerate(keys):
            if not isinstance(value, dict) or key not in value:
                where = ".".join(keys[: depth + 1])
                raise UserError(
                    f"{path}: no {where!r}, which every run's {CONFIG_FILE} holds (it was edited or cut short; "
                    "train the run again, or restore the file)"
                )
            value = value[key]
    return config


@contextlib.contextmanager
def run_lock(run: str | Path) -> Iterator[Path]:
    """Hold ``RUN/.lock`` while training: a second process on the same run is refused instead of mixing its files
    with the first's.

    The lock is an exclusive ``flock`` on the file, which holds the holder's pid, host and start time for the
    message. The kernel drops the lock when its process ends, however it ends, so a file left by a killed run is
    stale by construction and never blocks the next one (a lock is only as good as ``flock`` on that file system:
    local disks, most network ones). The file is removed on release; a folder created only to hold it is removed
    too.

    Raises
    ------
    UserError
        Naming the run and the process that holds it.
    """
    run = Path(run)
    created = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    path = run / LOCK_FILE
    while True:
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise UserError(
                f"run: {run} is in use by {holder}, which trains it; wait until it ends, or choose another folder "
                "(nothing was changed)",
                parameter="run",
            ) from None
        # the holder before us may have removed the file on release: then lock the one now at the path
        try:
            current = os.stat(path)
        except FileNotFoundError:
            current = None
        if current is not None and os.path.samestat(current, os.fstat(handle.fileno())):
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()} (since {time.strftime('%Y-%m-%d %H:%M:%S')})")
        handle.flush()
        yield path
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before unlocking, so a process that opened it sees that it is retired
        fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()
        if created:
            with contextlib.suppress(OSError):
                run.rmdir()  # only when empty: a refused command leaves no folder behind


def write_config(run: str | Path, config: dict) -> Path:
    """Write ``RUN/config.json`` atomically."""
    return save_json(Path(run) / CONFIG_FILE, config)


#: What identifies a run: a checkpoint whose config differs from ``config.json`` in one of these is another run's.
#: (Epochs may grow on resume, and older runs lack later fields, so the rest is not compared.)
_IDENTITY = (("model",), ("model_config",), ("seed",), ("data", "subjects"), ("data", "held_out"), ("data", "window"))


def check_checkpoint_config(path: str | Path, state: dict, config: dict) -> None:
    """Raise :class:`UserError` when the checkpoint ``state`` (read from ``path``) was written by another run than
    the one ``config`` (its ``config.json``) describes, e.g. a ``best.pt`` copied from another run folder."""
    saved = state.get("config")
    if not isinstance(saved, dict):
        return  # written before checkpoints held their config: nothing to compare
    differences = []
    for keys in _IDENTITY + (("data", "fingerprint"),):
        ours, theirs = config, saved
        for key in keys:
            ours = ours.get(key) if isinstance(ours, dict) else None
            theirs = theirs.get(key) if isinstance(theirs, dict) else None
        if ours is not None and theirs is not None and ours != theirs:
            differences.append(
                f"{'.'.join(keys)}: {json.dumps(theirs)} in the checkpoint, {json.dumps(ours)} in {CONFIG_FILE}"
            )
    if differences:
        raise UserError(
            f"{path}: was written by another run than the {CONFIG_FILE} beside it ("
            + "; ".join(differences)
            + "); use the run folder it came from"
        )


def check_same_data(run: str | Path, fingerprint: str | None, data, subjects) -> None:
    """Raise :class:`~dmf2mel.errors.DataError` unless the recordings of ``subjects`` in ``data`` (a
    :class:`~dmf2mel.data.sparrkulee.SplitData`) are those the run recorded the ``fingerprint`` of."""
    if fingerprint is None:
        return  # a run written before fingerprints existed
    found = data.fingerprint(subjects)
    if found != fingerprint:
        raise DataError(
            f"{data.folder}: the recordings of {run}'s training subjects are not those it was trained on (fingerprint "
            f"{found}, the run recorded {fingerprint}): the folder was re-simulated, re-split or changed since. "
            "Use the data the run was trained on, or train a new run on this data"
        )


def load_model(
    run: str | Path, which: str = BEST_CHECKPOINT, device: str | torch.device = "cpu"
) -> tuple[dict, nn.Module]:
    """The run's config and its model with the weights of ``which`` (``best.pt``), in eval mode."""
    config = read_config(run)
    state = load_checkpoint(Path(run) / which, map_location=device)
    check_checkpoint_config(Path(run) / which, state, config)
    model = model_from_config(config, device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as err:
        raise UserError(f"{Path(run) / which}: does not match the model in {CONFIG_FILE}: {err}") from None
    return config, model.eval()


def write_history(run: str | Path, history: list[dict]) -> Path:
    """Write ``RUN/history.csv`` (one row per epoch) atomically."""
    path = Path(run) / HISTORY_FILE
    buffer = io.StringIO()
    fields = list(history[0]) if history else ["epoch"]
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(history)
    with atomic_path(path) as tmp:
        tmp.write_text(buffer.getvalue(), encoding="utf-8")
    return path


def read_history(run: str | Path) -> list[dict]:
    """``RUN/history.csv`` as a list of dicts (values as strings, as csv gives them)."""
    with open(Path(run) / HISTORY_FILE, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))
