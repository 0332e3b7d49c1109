"""HAMS-Net and ADAF: exact pad/crop for any length, windowed position attention, gradients."""

import pytest
import torch
import torch.nn.functional as F

from dmf2mel.models.hams import ADAF, DEFAULT_POSITION_WINDOW, HAMSNet, PositionAttention

D_MODEL = 16
FULL = 10**9  # a position window longer than any test input: exact full attention


def open_gates(module):
    """Zero-initialised residual gates block gradients to the attention weights at init (by design); open them."""
    for name, p in module.named_parameters():
        if name.endswith("gamma"):
            torch.nn.init.constant_(p, 0.5)


@pytest.mark.parametrize("time", [1, 7, 64, 640, 641, 1920])
def test_pads_and_crops_exactly(time):
    torch.manual_seed(0)
    net = HAMSNet(D_MODEL, reduction=4).eval()
    open_gates(net)
    x = torch.randn(1, time, D_MODEL)
    with torch.no_grad():
        out = net(x)
        padded_time = -(-time // 8) * 8
        explicit = net(F.pad(x, (0, 0, 0, padded_time - time)))
    assert out.shape == x.shape
    assert torch.isfinite(out).all()
    # the module's padding is right zero-padding, and the crop keeps exactly the first `time` steps
    torch.testing.assert_close(out, explicit[:, :time])


def test_windowed_attention_equals_full_attention_when_window_covers_the_input():
    torch.manual_seed(1)
    windowed = HAMSNet(D_MODEL, reduction=4, position_window=96).eval()
    full = HAMSNet(D_MODEL, reduction=4, position_window=FULL).eval()
    open_gates(windowed)
    full.load_state_dict(windowed.state_dict())
    for time in (90, 96):  # padded to 96: one window at every scale
        x = torch.randn(2, time, D_MODEL)
        torch.testing.assert_close(windowed(x), full(x))
    x = torch.randn(2, 200, D_MODEL)
    assert not torch.allclose(windowed(x), full(x))


def test_default_window_is_the_training_length():
    net = HAMSNet(D_MODEL)
    assert net.position_window == DEFAULT_POSITION_WINDOW
    assert net.decoder[-1].position_attention.window == DEFAULT_POSITION_WINDOW
    assert net.bottleneck[0].position_attention.window == DEFAULT_POSITION_WINDOW // 8


def test_position_attention_windows_are_independent_blocks():
    torch.manual_seed(2)
    attention = PositionAttention(4, window=5)
    torch.nn.init.constant_(attention.gamma, 1.0)
    full = PositionAttention(4)
    full.load_state_dict(attention.state_dict())
    x = torch.randn(2, 4, 12)  # windows [0, 5), [5, 10), [10, 12)
    expected = torch.cat([full(x[..., s : s + 5]) for s in (0, 5, 10)], dim=-1)
    torch.testing.assert_close(attention(x), expected)


def test_position_attention_equals_explicit_formula():
    torch.manual_seed(3)
    attention = PositionAttention(3)
    torch.nn.init.constant_(attention.gamma, 0.7)
    x = torch.randn(2, 3, 6)
    q, k, v = attention.query(x), attention.key(x), attention.value(x)
    out = torch.empty_like(x)
    for i in range(6):
        weights = torch.softmax((q[:, :, i : i + 1] * k).sum(1), dim=-1)  # (batch, time)
        out[:, :, i] = x[:, :, i] + 0.7 * (v * weights[:, None]).sum(-1)
    torch.testing.assert_close(attention(x), out)


def test_adaf_starts_with_closed_gates_and_an_even_mix():
    torch.manual_seed(4)
    block = ADAF(32, reduction=16)
    assert block.reduce.out_channels == 2
    x = torch.randn(2, 32, 9)
    # closed gates: both attentions are identities, sigmoid(0) = 0.5 each
    expected = F.relu(block.expand(block.reduce(x)))
    torch.testing.assert_close(block(x), expected)
    assert ADAF(8, reduction=16).reduce.out_channels == 1


# at least 9 steps, so the T/8 bottleneck has two positions: over a single position, softmax attention is constant
# and its query/key weights get no gradient at any length-1 scale
@pytest.mark.parametrize("time", [9, 17, 64])
def test_gradient_reaches_every_parameter(time):
    torch.manual_seed(5)
    net = HAMSNet(D_MODEL, reduction=4)
    open_gates(net)
    x = torch.randn(2, time, D_MODEL)
    (net(x) * torch.randn_like(x)).sum().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_eval_is_deterministic_and_causes_no_batch_mixing():
    torch.manual_seed(6)
    net = HAMSNet(D_MODEL, reduction=4).eval()
    open_gates(net)
    x = torch.randn(3, 40, D_MODEL)
    out = net(x)
    torch.testing.assert_close(net(x), out, atol=0, rtol=0)
    torch.testing.assert_close(net(x[2:]), out[2:])


def test_rejects_non_positive_window():
    with pytest.raises(ValueError, match="position_window"):
        HAMSNet(D_MODEL, position_window=0)
