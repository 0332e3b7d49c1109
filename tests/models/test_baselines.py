"""Baselines (CNN, VLAAI, linear) and build_model: shapes, lag structure, gradients, errors."""

import pytest
import torch

from dmf2mel.errors import DataError, UserError
from dmf2mel.models import DMF2Mel, DMF2MelConfig
from dmf2mel.models.baselines import CNNBaseline, LinearDecoder, VLAAI, build_model

# A narrow VLAAI with the published structure, for speed.
NARROW = dict(extractor_filters=(16, 16, 8), extractor_kernel_size=4, context_kernel_size=6)


@pytest.mark.parametrize("length", [1, 15, 16, 65, 640])
def test_cnn_any_length(length):
    assert CNNBaseline()(torch.randn(2, length, 64)).shape == (2, length, 10)


def test_cnn_uses_the_following_16_samples():
    torch.manual_seed(0)
    model = CNNBaseline(n_chans=3, n_mels=2, kernel_size=4)
    eeg = torch.randn(1, 9, 3)
    out = model(eeg)
    padded = torch.cat([eeg, torch.zeros(1, 3, 3)], dim=1)
    weight, bias = model.conv.weight, model.conv.bias  # (n_mels, n_chans, kernel)
    for t in range(9):
        expected = bias + torch.einsum("mcl,lc->m", weight, padded[0, t : t + 4])
        torch.testing.assert_close(out[0, t], expected)


def test_cnn_is_one_convolution():
    model = CNNBaseline()
    assert sum(p.numel() for p in model.parameters()) == 64 * 10 * 16 + 10


@pytest.mark.parametrize("length", [8, 9, 65, 640])
def test_vlaai_any_length(length):
    torch.manual_seed(1)
    model = VLAAI(**{**NARROW, "extractor_kernel_size": 8}).eval()
    assert model(torch.randn(2, length, 64), torch.tensor([0, 1])).shape == (2, length, 10)


def test_vlaai_published_size():
    model = VLAAI()
    extractor = 64 * 256 * 8 + 256 * 256 * 8 * 2 + 256 * 128 * 8 + 128 * 128 * 8 + 256 * 3 + 128 * 2
    extractor += 2 * (256 * 3 + 128 * 2)  # layer norms
    context = 64 * 64 * 32 + 64 + 2 * 64
    projections = 4 * (128 * 64 + 64)
    assert sum(p.numel() for p in model.parameters()) == extractor + context + projections + 64 * 10 + 10
    assert len(model.block_projections) == 4


def test_vlaai_receptive_field():
    """Each block looks (extractor layers × (kernel − 1)) ahead and (context kernel − 1) back."""
    torch.manual_seed(2)
    model = VLAAI(**NARROW).double().eval()
    n_blocks, ahead, back = 4, 3 * (4 - 1), 6 - 1
    eeg = torch.randn(1, 200, 64, dtype=torch.float64)
    changed = eeg.clone()
    changed[:, 100] += 3.0
    moved = (model(changed) - model(eeg)).abs().sum(-1)[0] > 0
    first, last = 100 - n_blocks * ahead, 100 + n_blocks * back
    assert not moved[:first].any() and not moved[last + 1 :].any()
    assert moved[first] and moved[last] and moved[100]


def test_vlaai_blocks_share_extractor_and_context():
    model = VLAAI(**NARROW)
    calls = []
    model.extractor.register_forward_hook(lambda *args: calls.append("extractor"))
    model.output_context.register_forward_hook(lambda *args: calls.append("context"))
    model(torch.randn(1, 30, 64))
    assert calls == ["extractor", "context"] * 4


@pytest.mark.parametrize("model", [CNNBaseline(), VLAAI(**NARROW)], ids=["cnn", "vlaai"])
def test_gradients_reach_every_parameter(model):
    torch.manual_seed(3)
    model(torch.randn(2, 50, 64)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("model", [CNNBaseline(), VLAAI(**NARROW)], ids=["cnn", "vlaai"])
def test_bad_eeg_is_rejected(model):
    with pytest.raises(DataError, match=r"\(batch, time, 64\).*\(2, 40, 32\)"):
        model(torch.randn(2, 40, 32))
    with pytest.raises(DataError, match="floating-point"):
        model(torch.zeros(2, 40, 64, dtype=torch.int64))


def test_vlaai_too_short():
    with pytest.raises(DataError, match="at least 8 time samples"):
        VLAAI()(torch.randn(1, 7, 64))


def test_build_model():
    assert isinstance(build_model("cnn", kernel_size=8), CNNBaseline)
    assert isinstance(build_model("vlaai", **NARROW), VLAAI)
    assert isinstance(build_model("linear"), LinearDecoder)
    small = build_model("dmf2mel", preset="small", n_subjects=7)
    assert isinstance(small, DMF2Mel) and small.config == DMF2MelConfig.small(n_subjects=7)
    config = DMF2MelConfig.small(n_subjects=7)
    assert build_model("dmf2mel", config=config, head="single").config == DMF2MelConfig.small(
        n_subjects=7, head="single"
    )
    assert isinstance(build_model("dmf2mel", d_model=32, d_state=8, n_hams_repeats=1), DMF2Mel)


def test_build_model_errors():
    with pytest.raises(UserError, match=r"unknown model 'transformer'.*'cnn'"):
        build_model("transformer")
    with pytest.raises(UserError, match="kernel"):
        build_model("cnn", kernel=3)
    with pytest.raises(UserError, match=r"unknown config fields \['layers'\]"):
        build_model("dmf2mel", preset="small", layers=3)
    with pytest.raises(UserError, match="preset"):
        build_model("dmf2mel", preset="huge")
