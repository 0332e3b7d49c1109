"""Run folders and checkpoints: what a training run writes, and how a model is rebuilt from it.

A run folder ``RUN/`` holds::

    config.json    the model name, its config, the training profile, seed and data subjects
    history.csv    one row per epoch (loss terms, learning rate, validation r)
    last.pt        the state after the latest epoch (resume from here)
    best.pt        the state of the epoch with the best validation r (evaluate this one)
    metrics.json   written by ``evaluate`` (and at the end of ``train``)

Checkpoints hold only tensors and plain Python values (dicts, lists, numbers, strings) so that they
load with ``torch.load(..., weights_only=True)``: a checkpoint file from elsewhere cannot run code.
Every file is written atomically (:func:`dmf2mel.io.atomic_path`).
"""

from __future__ import annotations

import csv
import io
import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dmf2mel.errors import UserError
from dmf2mel.io import atomic_path, save_json
from dmf2mel.models import registry

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
METRICS_FILE = "metrics.json"
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT, METRICS_FILE)
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


def read_config(run: str | Path) -> dict:
    """The ``config.json`` of a run folder (UserError if the folder or file is missing)."""
    run = Path(run)
    if not run.is_dir():
        raise UserError(f"{run}: run folder not found (train one with `python -m dmf2mel train --run {run}`)")
    path = run / CONFIG_FILE
    if not path.is_file():
        raise UserError(f"{run}: not a training run (no {CONFIG_FILE})")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise UserError(f"{path}: not valid JSON ({err})") from None


def write_config(run: str | Path, config: dict) -> Path:
    """Write ``RUN/config.json`` atomically."""
    return save_json(Path(run) / CONFIG_FILE, config)


def load_model(
    run: str | Path, which: str = BEST_CHECKPOINT, device: str | torch.device = "cpu"
) -> tuple[dict, nn.Module]:
    """The run's config and its model with the weights of ``which`` (``best.pt``), in eval mode."""
    config = read_config(run)
    state = load_checkpoint(Path(run) / which, map_location=device)
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
