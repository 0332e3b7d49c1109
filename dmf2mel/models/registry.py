"""Every model the package can train, by name: its builder, its default config and its display label.

One table, :data:`MODELS`, serves everything that takes a model name: :func:`build_model` (a module
from keyword arguments), :func:`dmf2mel.train.train` and the run folders of :mod:`dmf2mel.checkpoint`
(a module from the JSON config a run saves), ``python -m dmf2mel train --model``, the benchmarks and
the chapters (the labels of figures and tables).

Names: ``linear``, ``cnn``, ``vlaai``, ``dmf2mel`` and the ablations of DMF2Mel (:data:`ABLATIONS`),
each one switch of :class:`~dmf2mel.models.DMF2MelConfig`.

Adding a model: write a module with ``forward(eeg (batch, time, n_chans), subject (batch,) or None)
-> (batch, time, n_mels)`` and register it::

    register("my-model", ModelSpec(
        default_config=lambda preset, n_subjects, n_chans, n_mels: {"n_chans": n_chans, "n_mels": n_mels},
        build=lambda config: MyModel(**config),
        label="my model",
    ))

Then ``train(data, run, model="my-model")``, ``evaluate``, ``load_model`` and ``build_model("my-model")``
work with it (the command line's ``--model`` lists the names registered when it starts).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from torch import nn

from dmf2mel.errors import UserError
from dmf2mel.models.baselines import VLAAI, CNNBaseline
from dmf2mel.models.dmf2mel import DMF2Mel, DMF2MelConfig, SingleHeadBroadcast
from dmf2mel.models.linear import LinearDecoder

#: Model config presets: ``"small"`` (the book's quick profile) and ``"paper"`` (the official sizes).
PRESETS = {"paper": DMF2MelConfig.paper, "small": DMF2MelConfig.small}


@dataclass(frozen=True)
class ModelSpec:
    """How to configure and build one kind of model.

    Attributes
    ----------
    default_config : callable (preset, n_subjects, n_chans, n_mels) -> dict
        The model's config as plain JSON values; ``preset`` is ``"small"`` or ``"paper"``. A run saves
        it in its ``config.json``.
    build : callable (config dict) -> nn.Module
        A module with ``forward(eeg (batch, time, n_chans), subject (batch,) or None) ->
        (batch, time, n_mels)``, built from a config like the one ``default_config`` returns.
    closed_form : bool
        Fitted by ``model.fit(train_pairs, val_pairs)`` instead of gradient descent.
    label : str
        The name figures and tables show (the registry name when empty).
    construct : callable (**kwargs) -> nn.Module, optional
        The keyword interface of :func:`build_model` (default: ``build`` of the keyword arguments).
    """

    default_config: Callable[[str, int, int, int], dict]
    build: Callable[[dict], nn.Module]
    closed_form: bool = False
    label: str = ""
    construct: Callable[..., nn.Module] | None = None


# --- DMF2Mel and its ablations ------------------------------------------------------------------


def dmf2mel_config(
    config: DMF2MelConfig | None = None, preset: str = "paper", overrides: dict | None = None
) -> DMF2MelConfig:
    """A :class:`DMF2MelConfig` from a config or a preset (``"paper"``, ``"small"``), with field overrides."""
    overrides = dict(overrides or {})
    fields = set(DMF2MelConfig().to_dict())
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise UserError(f"build_model('dmf2mel'): unknown config fields {unknown}; expected some of {sorted(fields)}")
    if config is None:
        if preset not in PRESETS:
            raise UserError(f"build_model('dmf2mel'): preset must be one of {sorted(PRESETS)}, got {preset!r}")
        return PRESETS[preset](**overrides)
    return DMF2MelConfig.from_dict({**config.to_dict(), **overrides}) if overrides else config


def dmf2mel_variant(switches: dict, label: str) -> ModelSpec:
    """DMF2Mel with ``switches`` (config fields) applied on top of every config it is given (for :func:`register`:
    an ablation, or a variant a study trains)."""
    module = SingleHeadBroadcast if switches.get("head") == "single" else DMF2Mel

    def default_config(preset: str, n_subjects: int, n_chans: int, n_mels: int) -> dict:
        config = PRESETS[preset]().to_dict()
        config.update(n_subjects=n_subjects, n_chans=n_chans, n_mels=n_mels, **switches)
        return config

    def build(config: dict) -> nn.Module:
        return module(DMF2MelConfig.from_dict(config))

    def construct(config: DMF2MelConfig | None = None, preset: str = "paper", **overrides: Any) -> nn.Module:
        return module(dmf2mel_config(config, preset, {**overrides, **switches}))

    return ModelSpec(default_config, build, label=label, construct=construct)


#: The ablations of DMF2Mel (chapter 13, ``benchmarks/quality.py``): model name -> the
#: :class:`~dmf2mel.models.DMF2MelConfig` fields that differ from the full model.
ABLATIONS: dict[str, dict] = {
    "dmf2mel-no-dcfam": {"use_dcfam": False},  # the DC-FAM branch is the identity
    "dmf2mel-no-hams": {"use_hams": False},  # the HAMS-Net branch is the identity
    "dmf2mel-no-splinemap": {"use_splinemap": False},  # linear projections instead of AGKAN in every attention
    "dmf2mel-no-mamba": {"use_mamba": False},  # convMamba without its BiMamba
    "dmf2mel-single-head": {"head": "single"},  # the official one-channel output, broadcast to the bands
}

ABLATION_LABELS: dict[str, str] = {
    "dmf2mel-no-dcfam": "DMF2Mel without DC-FAM",
    "dmf2mel-no-hams": "DMF2Mel without HAMS-Net",
    "dmf2mel-no-splinemap": "DMF2Mel without SplineMap",
    "dmf2mel-no-mamba": "DMF2Mel without BiMamba",
    "dmf2mel-single-head": "DMF2Mel with the one-channel head",
}


# --- the baselines ------------------------------------------------------------------------------


def _baseline_config(preset: str, n_subjects: int, n_chans: int, n_mels: int) -> dict:
    return {"n_chans": n_chans, "n_mels": n_mels}


def _baseline_spec(module: type[nn.Module], label: str, closed_form: bool = False) -> ModelSpec:
    return ModelSpec(_baseline_config, lambda config: module(**config), closed_form, label, construct=module)


#: Every model :func:`build_model` and the trainer know, in the order tables list them.
MODELS: dict[str, ModelSpec] = {
    "linear": _baseline_spec(LinearDecoder, "linear decoder", closed_form=True),
    "cnn": _baseline_spec(CNNBaseline, "CNN baseline"),
    "vlaai": _baseline_spec(VLAAI, "VLAAI"),
    "dmf2mel": dmf2mel_variant({}, "DMF2Mel"),
    **{name: dmf2mel_variant(switches, ABLATION_LABELS[name]) for name, switches in ABLATIONS.items()},
}


def register(name: str, spec: ModelSpec) -> None:
    """Add (or replace) the model ``name``: every entry point that takes a model name then knows it."""
    MODELS[name] = spec


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` of ``name`` (UserError for an unknown name)."""
    if name not in MODELS:
        raise UserError(f"unknown model {name!r}: expected one of {sorted(MODELS)}")
    return MODELS[name]


def model_label(name: str) -> str:
    """The display label of ``name`` (``"dmf2mel-no-mamba"`` -> ``"DMF2Mel without BiMamba"``)."""
    return model_spec(name).label or name


def model_names() -> tuple[str, ...]:
    """The registered names, in table order."""
    return tuple(MODELS)


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a model by name: ``"dmf2mel"``, ``"cnn"``, ``"vlaai"``, ``"linear"`` or an ablation.

    Parameters
    ----------
    name : str
        A name in :data:`MODELS`, e.g. ``"dmf2mel-no-mamba"``.
    **kwargs
        Constructor arguments. For DMF2Mel and its ablations: ``config=DMF2MelConfig(...)``, or
        ``preset="paper" | "small"`` plus any config field, e.g. ``build_model("dmf2mel",
        preset="small", n_subjects=12)``; an ablation's switch is applied on top.

    Returns
    -------
    nn.Module
        ``forward(eeg (batch, time, n_chans), subject (batch,) or None) -> (batch, time, n_mels)``.

    Raises
    ------
    UserError
        On an unknown name or argument.
    """
    spec = model_spec(name)
    if spec.construct is None:
        return spec.build(dict(kwargs))
    try:
        inspect.signature(spec.construct).bind(**kwargs)
    except TypeError as error:
        raise UserError(f"build_model({name!r}): {error}") from None
    return spec.construct(**kwargs)


__all__ = [
    "ABLATIONS",
    "MODELS",
    "ModelSpec",
    "build_model",
    "dmf2mel_config",
    "dmf2mel_variant",
    "model_label",
    "model_names",
    "model_spec",
    "register",
]
