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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from dmf2mel.errors import UserError
from dmf2mel.io import atomic_path, save_json

CONFIG_FILE = "config.json"
HISTORY_FILE = "history.csv"
LAST_CHECKPOINT = "last.pt"
BEST_CHECKPOINT = "best.pt"
METRICS_FILE = "metrics.json"
RUN_FILES = (CONFIG_FILE, HISTORY_FILE, LAST_CHECKPOINT, BEST_CHECKPOINT, METRICS_FILE)
#: Bumped when the checkpoint layout changes.
CHECKPOINT_FORMAT = 1


# --- models a run can hold ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """How to configure and build one kind of model.

    Attributes
    ----------
    default_config : callable (preset, n_subjects, n_chans, n_mels) -> dict
        The model's config as plain JSON values; ``preset`` is ``"small"`` or ``"paper"``.
    build : callable (config dict) -> nn.Module
        A module with ``forward(eeg (batch, time, n_chans), subject (batch,) or None) ->
        (batch, time, n_mels)``.
    closed_form : bool
        Fitted by ``model.fit(train_pairs, val_pairs)`` instead of gradient descent.
    """

    default_config: Callable[[str, int, int, int], dict]
    build: Callable[[dict], nn.Module]
    closed_form: bool = False


def _dmf2mel_config(preset: str, n_subjects: int, n_chans: int, n_mels: int) -> dict:
    from dmf2mel.models import DMF2MelConfig

    base = DMF2MelConfig.small() if preset == "small" else DMF2MelConfig.paper()
    config = base.to_dict()
    config.update(n_subjects=n_subjects, n_chans=n_chans, n_mels=n_mels)
    return config


def _dmf2mel_build(config: dict) -> nn.Module:
    from dmf2mel.models import DMF2Mel, DMF2MelConfig

    return DMF2Mel(DMF2MelConfig.from_dict(config))


def _baseline_config(preset: str, n_subjects: int, n_chans: int, n_mels: int) -> dict:
    return {"n_chans": n_chans, "n_mels": n_mels}


def _linear_build(config: dict) -> nn.Module:
    from dmf2mel.models.linear import LinearDecoder

    return LinearDecoder(**config)


def _builder(name: str) -> Callable[[dict], nn.Module]:
    def build(config: dict) -> nn.Module:
        from dmf2mel.models import build_model

        return build_model(name, **config)

    return build


#: The ablations of DMF2Mel (chapter 11, ``benchmarks/quality.py``): model name -> the
#: :class:`~dmf2mel.models.DMF2MelConfig` fields that differ from the full model.
ABLATIONS: dict[str, dict] = {
    "dmf2mel-no-dcfam": {"use_dcfam": False},  # the DC-FAM branch is the identity
    "dmf2mel-no-hams": {"use_hams": False},  # the HAMS-Net branch is the identity
    "dmf2mel-no-splinemap": {"use_splinemap": False},  # linear projections instead of AGKAN in every attention
    "dmf2mel-no-mamba": {"use_mamba": False},  # convMamba without its BiMamba
    "dmf2mel-single-head": {"head": "single"},  # the official one-channel output, broadcast to the bands
}


def _ablation_spec(overrides: dict) -> ModelSpec:
    """DMF2Mel's spec with ``overrides`` applied to its default config."""

    def default_config(preset: str, n_subjects: int, n_chans: int, n_mels: int) -> dict:
        return {**_dmf2mel_config(preset, n_subjects, n_chans, n_mels), **overrides}

    if overrides.get("head") == "single":

        def build(config: dict) -> nn.Module:
            from dmf2mel.models import DMF2MelConfig, SingleHeadBroadcast

            return SingleHeadBroadcast(DMF2MelConfig.from_dict(config))

        return ModelSpec(default_config, build)
    return ModelSpec(default_config, _dmf2mel_build)


#: Models ``train`` knows by name. Add an entry to train your own module with the same trainer.
MODELS: dict[str, ModelSpec] = {
    "dmf2mel": ModelSpec(_dmf2mel_config, _dmf2mel_build),
    "cnn": ModelSpec(_baseline_config, _builder("cnn")),
    "vlaai": ModelSpec(_baseline_config, _builder("vlaai")),
    "linear": ModelSpec(_baseline_config, _linear_build, closed_form=True),
    **{name: _ablation_spec(overrides) for name, overrides in ABLATIONS.items()},
}


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name`` (UserError for an unknown name)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: expected one of {', '.join(sorted(MODELS))}")
    return MODELS[name]


def build_model(config: dict, device: str | torch.device = "cpu") -> nn.Module:
    """The (untrained) model a run config describes: ``config["model"]`` built from ``config["model_config"]``."""
    model = model_spec(config["model"]).build(dict(config["model_config"]))
    # Modules are built on the CPU; moving only when needed also spares models that override
    # nn.Module._apply (LinearDecoder does), which breaks Module.to.
    if torch.device(device).type != "cpu":
        model = model.to(device)
    return model


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
        (numpy["name"], numpy["keys"].numpy().astype(np.uint32), numpy["pos"], numpy["has_gauss"], numpy["cached_gaussian"])
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


def load_model(run: str | Path, which: str = BEST_CHECKPOINT, device: str | torch.device = "cpu") -> tuple[dict, nn.Module]:
    """The run's config and its model with the weights of ``which`` (``best.pt``), in eval mode."""
    config = read_config(run)
    state = load_checkpoint(Path(run) / which, map_location=device)
    model = build_model(config, device)
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
