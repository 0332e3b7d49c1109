"""The model registry: one table of names for build_model, the trainer, the run folders and the benchmarks."""

import pytest
import torch

from dmf2mel import checkpoint
from dmf2mel.errors import UserError
from dmf2mel.models import DMF2Mel, DMF2MelConfig, SingleHeadBroadcast, build_model, registry
from dmf2mel.models.baselines import build_model as old_build_model


def test_every_name_builds_from_keywords_and_from_its_default_config():
    for name, spec in registry.MODELS.items():
        config = spec.default_config("small", 3, 64, 10)
        built = spec.build(config)
        assert type(built) is type(build_model(name, **config)), name
        out = built(torch.randn(2, 40, 64), torch.tensor([0, -1]))
        assert out.shape == (2, 40, 10), name
        assert registry.model_label(name), name


def test_an_ablation_builds_by_name_with_its_switch_applied():
    model = build_model("dmf2mel-no-mamba", preset="small", n_subjects=4)
    assert isinstance(model, DMF2Mel) and model.config == DMF2MelConfig.small(n_subjects=4, use_mamba=False)
    config = DMF2MelConfig.small(n_subjects=4)
    assert isinstance(build_model("dmf2mel-single-head", config=config), SingleHeadBroadcast)
    assert build_model("dmf2mel-no-hams", config=config).config.use_hams is False


def test_labels_come_from_the_registry():
    assert registry.model_label("dmf2mel") == "DMF2Mel"
    assert registry.model_label("dmf2mel-no-mamba") == "DMF2Mel without BiMamba"
    assert registry.model_names()[:4] == ("linear", "cnn", "vlaai", "dmf2mel")
    assert set(registry.ABLATIONS) <= set(registry.model_names())


def test_old_names_are_the_registry():
    assert checkpoint.MODELS is registry.MODELS and checkpoint.ABLATIONS is registry.ABLATIONS
    assert checkpoint.model_spec is registry.model_spec and checkpoint.ModelSpec is registry.ModelSpec
    assert old_build_model is registry.build_model


def test_a_registered_model_is_known_everywhere(monkeypatch):
    class Zero(torch.nn.Module):
        def __init__(self, n_chans=64, n_mels=10):
            super().__init__()
            self.n_mels = n_mels

        def forward(self, eeg, subject=None):
            return eeg.new_zeros(*eeg.shape[:2], self.n_mels)

    spec = registry.ModelSpec(
        lambda preset, n_subjects, n_chans, n_mels: {"n_chans": n_chans, "n_mels": n_mels},
        lambda config: Zero(**config),
        label="zero",
    )
    monkeypatch.setitem(registry.MODELS, "zero", None)
    registry.register("zero", spec)
    assert isinstance(build_model("zero", n_mels=3), Zero)
    run_config = {"model": "zero", "model_config": spec.default_config("small", 1, 64, 10)}
    assert isinstance(checkpoint.model_from_config(run_config), Zero)
    assert registry.model_label("zero") == "zero"


def test_unknown_names_and_arguments_are_user_errors():
    with pytest.raises(UserError, match=r"unknown model 'transformer'.*'dmf2mel-no-mamba'"):
        build_model("transformer")
    with pytest.raises(UserError, match="unexpected keyword argument 'layers'"):
        build_model("cnn", layers=3)
    with pytest.raises(UserError, match="preset"):
        build_model("dmf2mel-no-dcfam", preset="huge")
