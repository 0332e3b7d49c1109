"""DC-FAM: any length, normalised neighbourhood weights, the aggregation formula, linear cost, gradients."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from dmf2mel.models.dcfam import DCFAM

D_MODEL = 16


@pytest.mark.parametrize("time", [1, 2, 7, 641])
def test_any_length_keeps_shape_and_weights_sum_to_one(time):
    torch.manual_seed(0)
    module = DCFAM(D_MODEL, n_heads=2).eval()
    x = torch.randn(2, time, D_MODEL)
    out, weights = module(x, return_weights=True)
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    for name in ("foreground", "background"):
        assert weights[name].shape == (2, 2, 3, time)
        assert (weights[name] >= 0).all()
        torch.testing.assert_close(weights[name].sum(2), torch.ones(2, 2, time))
    assert weights["channel"].shape == (2, 2, D_MODEL // 2, D_MODEL // 2)
    torch.testing.assert_close(weights["channel"].sum(-1), torch.ones(2, 2, D_MODEL // 2))


def test_official_unnormalised_weights_option():
    torch.manual_seed(1)
    module = DCFAM(D_MODEL, n_heads=2, normalise_weights=False).eval()
    out, weights = module(torch.randn(2, 9, D_MODEL), return_weights=True)
    assert out.shape == (2, 9, D_MODEL)
    assert not torch.allclose(weights["foreground"].sum(2), torch.ones(2, 2, 9))


def test_aggregation_equals_explicit_neighbourhood_sum():
    torch.manual_seed(2)
    module = DCFAM(D_MODEL, n_heads=4, kernel_size=5).double().eval()
    time = 11
    x = torch.randn(2, time, D_MODEL, dtype=torch.float64)
    out, weights = module(x, return_weights=True)

    q, k, v = module.qkv_depthwise(module.to_qkv(x.transpose(1, 2))).chunk(3, dim=1)
    foreground = module.foreground_adjust(module.local_mixer(q, k, v))
    values = module.value_proj(foreground)  # the official aggregates a projection of the local branch, not v
    padded = F.pad(values, (2, 2))
    aggregated = torch.zeros_like(v)
    for offset in range(5):  # neighbour offset - 2 relative to each time step
        shifted = padded[:, :, offset : offset + time].view(2, 4, 4, time)
        weight = (weights["foreground"] + weights["background"])[:, :, offset].unsqueeze(2)
        aggregated += (weight * shifted).reshape(2, D_MODEL, time)
    expected = (aggregated + foreground).transpose(1, 2)
    torch.testing.assert_close(out, expected)


def test_cost_is_linear_in_time():
    module = DCFAM(D_MODEL, n_heads=2).eval()

    def flops(time):
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            module(torch.randn(1, time, D_MODEL))
        return counter.get_total_flops()

    base, double, quadruple = flops(100), flops(200), flops(400)
    assert base > 0
    assert double == 2 * base
    assert quadruple == 4 * base


def test_eval_is_deterministic_and_batch_independent():
    torch.manual_seed(3)
    module = DCFAM(D_MODEL).eval()
    x = torch.randn(3, 13, D_MODEL)
    out = module(x)
    torch.testing.assert_close(module(x), out, atol=0, rtol=0)
    torch.testing.assert_close(module(x[1:2]), out[1:2])


def test_time_mixing_is_local_in_the_foreground_but_global_through_channel_attention():
    # changing the last step must change far-away outputs only through the (global) channel attention
    torch.manual_seed(4)
    module = DCFAM(D_MODEL).eval()
    x = torch.randn(1, 30, D_MODEL)
    y = x.clone()
    y[:, -1] += 5.0
    diff = (module(x) - module(y)).abs()
    assert diff[:, -1].sum() > diff[:, 0].sum() > 0


@pytest.mark.parametrize("normalise_weights", [True, False])
def test_gradient_reaches_every_parameter(normalise_weights):
    torch.manual_seed(5)
    module = DCFAM(D_MODEL, n_heads=2, normalise_weights=normalise_weights)
    (module(torch.randn(2, 7, D_MODEL)) * torch.randn(2, 7, D_MODEL)).sum().backward()
    for name, p in module.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_official_heads_bias_and_weight_dropout():
    module = DCFAM(64)
    assert module.n_heads == 8
    assert module.channel_attention.proj.bias is None
    torch.manual_seed(6)
    x = torch.randn(2, 12, 64)
    module.train()
    _, weights = module(x, return_weights=True)  # the returned weights are before dropout
    torch.manual_seed(7)
    dropped = module(x)
    module.eval()
    assert not torch.allclose(dropped, module(x))
    assert DCFAM(64, attn_dropout=0.0).train()(x).shape == x.shape


def test_rejects_bad_sizes():
    with pytest.raises(ValueError, match="n_heads"):
        DCFAM(10, n_heads=3)
    with pytest.raises(ValueError, match="kernel_size"):
        DCFAM(16, kernel_size=4)
