"""HAMS-Net and ADAF: the official structure, exact pad/crop for any length, windowed position attention, gradients."""

import pytest
import torch
import torch.nn.functional as F

from dmf2mel.models.hams import ADAF, DEFAULT_POSITION_WINDOW, HAMSNet, PositionAttention

D_MODEL = 16
FULL = 10**9  # a position window longer than any test input: exact full attention


def open_gates(module):
    """Zero-initialised gates and output projection block gradients at init (by design); open them."""
    for name, p in module.named_parameters():
        if name.endswith("gamma"):
            torch.nn.init.constant_(p, 0.5)
        elif name.startswith("out_proj"):
            torch.nn.init.normal_(p, std=0.1)


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
    assert net._window(1) == DEFAULT_POSITION_WINDOW
    assert net._window(8) == DEFAULT_POSITION_WINDOW // 8


def test_position_attention_windows_are_independent_blocks():
    torch.manual_seed(2)
    attention = PositionAttention(4)
    torch.nn.init.constant_(attention.gamma, 1.0)
    x = torch.randn(2, 4, 12)  # windows [0, 5), [5, 10), [10, 12)
    expected = torch.cat([attention(x[..., s : s + 5]) for s in (0, 5, 10)], dim=-1)
    torch.testing.assert_close(attention(x, window=5), expected)
    torch.testing.assert_close(attention(x, window=12), attention(x))


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


def test_position_attention_with_qk_norm_equals_explicit_formula_and_is_scale_free():
    torch.manual_seed(3)
    attention = PositionAttention(4, qk_norm=True)
    torch.nn.init.constant_(attention.gamma, 0.7)
    torch.nn.init.normal_(attention.query_norm.weight)  # a learned gain, not the initial ones
    x = torch.randn(2, 4, 6)
    q, k, v = attention.query(x), attention.key(x), attention.value(x)

    def standardise(t, norm):  # over the channels, per time step, with the norm's gain and bias
        t = (t - t.mean(1, keepdim=True)) / torch.sqrt(t.var(1, unbiased=False, keepdim=True) + norm.eps)
        return t * norm.weight[None, :, None] + norm.bias[None, :, None]

    qn, kn = standardise(q, attention.query_norm), standardise(k, attention.key_norm)
    out = torch.empty_like(x)
    for i in range(6):
        weights = torch.softmax((qn[:, :, i : i + 1] * kn).sum(1) / 2.0, dim=-1)  # 1/sqrt(4 channels)
        out[:, :, i] = x[:, :, i] + 0.7 * (v * weights[:, None]).sum(-1)
    torch.testing.assert_close(attention(x), out)
    # the weights no longer depend on the activations' scale: the attended part of x * 1e6 is that of x, times 1e6
    with torch.no_grad():
        big = attention(x * 1e6) - x * 1e6
        torch.testing.assert_close(big / 1e6, attention(x) - x, rtol=1e-4, atol=1e-5)
        plain = PositionAttention(4)
        plain.load_state_dict({k: v for k, v in attention.state_dict().items() if "norm" not in k})
        # without it, the scores of x * 1e6 are 1e12 times larger: the softmax has become a hard choice
        assert not torch.allclose((plain(x * 1e6) - x * 1e6) / 1e6, plain(x) - x, atol=1e-3)


def test_qk_norm_is_on_in_the_model_by_default_and_switched_off_through_the_config():
    from dmf2mel.models import DMF2MelConfig
    from dmf2mel.models.dmf2mel import DMF2Mel

    assert PositionAttention(4).query_norm is None and PositionAttention(4).scale == 1.0  # the module: official
    assert DMF2MelConfig().hams_qk_norm and DMF2MelConfig.small().hams_qk_norm and DMF2MelConfig.paper().hams_qk_norm
    plain, normed = DMF2Mel(DMF2MelConfig.small(hams_qk_norm=False)), DMF2Mel(DMF2MelConfig.small())
    extra = {name for name, _ in normed.named_parameters()} - {name for name, _ in plain.named_parameters()}
    assert extra and all("position_attention.query_norm" in n or "position_attention.key_norm" in n for n in extra)
    attention = normed.hams[0].adaf[0].position_attention
    assert attention.scale == attention.query_norm.normalized_shape[0] ** -0.5
    with pytest.raises(Exception, match="hams_qk_norm must be True or False"):
        DMF2MelConfig.small(hams_qk_norm=1)


def test_position_attention_of_a_diverged_training_step_is_finite_and_equals_the_torch_path():
    """A saved case: DMF2Mel (small config, seed 0, lr 3e-3) in its second epoch, first HAMS-Net ADAF, one window of
    80 steps. Two query rows have a score ~88 above their first one, whose exponentials summed to ~1.5e38: finite, so
    the row kernel used to keep them, and their products with v overflowed to inf - inf = NaN. The training loss was
    NaN from that step on."""
    from pathlib import Path

    from dmf2mel.models import kernels

    case = torch.load(Path(__file__).parent / "data" / "position_attention_overflow.pt", weights_only=True)
    attention = PositionAttention(case["x"].shape[1])
    attention.load_state_dict(case["state"])
    with torch.no_grad():
        fast = attention(case["x"])
        kernels.set_backend("torch")
        try:
            reference = attention(case["x"])
        finally:
            kernels.set_backend("numba")
    assert torch.isfinite(reference).all()
    assert torch.isfinite(fast).all()
    torch.testing.assert_close(fast, reference, rtol=1e-5, atol=1e-5)


def test_adaf_starts_with_closed_gates_and_the_official_mix():
    torch.manual_seed(4)
    block = ADAF(32, reduction=16).eval()
    assert block.reduce_position[0].pointwise.out_channels == 2
    assert block.reduce_channel[0].pointwise.out_channels == 2
    x = torch.randn(2, 32, 9)
    # closed gates: both attentions are identities; the official mixing weights start at sigmoid(1)
    mix = torch.sigmoid(torch.tensor(1.0))
    position = mix * block.refine_position(block.reduce_position(x))
    channel = mix * block.refine_channel(block.reduce_channel(x))
    expected = block.fuse(block.expand_position(position) + block.expand_channel(channel))
    torch.testing.assert_close(block(x), expected)
    assert ADAF(8, reduction=16).reduce_position[0].pointwise.out_channels == 1


def test_adaf_reductions_are_three_tap_separable_convolutions_without_bias():
    block = ADAF(32, reduction=8)
    conv = block.reduce_position[0]
    assert conv.depthwise.kernel_size == (3,) and conv.depthwise.groups == 32 and conv.depthwise.bias is None
    assert conv.pointwise.bias is None
    assert isinstance(block.expand_position[0], torch.nn.Dropout1d) and block.expand_position[0].p == 0.05


@pytest.mark.parametrize("kernel_size", [1, 3])
def test_separable_convolution_is_depthwise_then_pointwise(kernel_size):
    """The one dense convolution equals the two convolutions it stands for, in values and in all gradients."""
    from dmf2mel.models.hams import SeparableConv1d

    torch.manual_seed(3)
    conv = SeparableConv1d(12, 5, kernel_size).double()
    x = torch.randn(2, 12, 17, dtype=torch.float64, requires_grad=True)
    upstream = torch.randn(2, 5, 17, dtype=torch.float64)
    results = []
    for forward in (conv, lambda t: conv.pointwise(conv.depthwise(t))):
        conv.zero_grad()
        x.grad = None
        out = forward(x)
        out.backward(upstream)
        results.append(
            [out.detach(), x.grad.clone(), conv.depthwise.weight.grad.clone(), conv.pointwise.weight.grad.clone()]
        )
    for fused, stepwise in zip(*results):
        torch.testing.assert_close(fused, stepwise)


def test_forward_is_the_official_u_net():
    """The official HAMS-Net, written out: no ReLU after the encoder, max-pool of the input in the multi-scale sum,
    residual bottleneck, the bottleneck upsampled to every scale, ``x + ADAF(x)`` at four scales, top-down pass."""
    torch.manual_seed(7)
    net = HAMSNet(D_MODEL, reduction=4, n_bottleneck_adaf=3, position_window=FULL).eval()
    open_gates(net)
    adaf = net.adaf[0]
    x = torch.randn(2, 64, D_MODEL)
    h = x.transpose(1, 2)
    up = lambda t, f: t.repeat_interleave(f, dim=-1)  # noqa: E731
    e1 = net.encoder[0](h)
    e2 = net.encoder[1](e1)
    e3 = net.encoder[2](e2)
    m = F.max_pool1d(h, 8) + F.max_pool1d(e1, 4) + F.max_pool1d(e2, 2) + e3
    b = adaf(adaf(adaf(m))) + m
    c = b + adaf(b)
    d8, d4, d2, d1 = (s + up(c, f) for s, f in ((e3, 1), (e2, 2), (e1, 4), (h, 8)))
    d8, d4, d2, d1 = (d + adaf(d) for d in (d8, d4, d2, d1))
    top_down = d1 + up(d2 + up(d4 + up(d8, 2), 2), 2)
    torch.testing.assert_close(net(x), net.out_proj(top_down).transpose(1, 2))


def test_one_shared_adaf_by_default():
    shared = HAMSNet(D_MODEL, reduction=4, n_bottleneck_adaf=3)
    assert len(shared.adaf) == 8 and len(set(map(id, shared.adaf))) == 1
    separate = HAMSNet(D_MODEL, reduction=4, n_bottleneck_adaf=3, share_adaf=False)
    assert len(set(map(id, separate.adaf))) == 8
    adaf_parameters = sum(p.numel() for p in shared.adaf[0].parameters())
    n_shared = sum(p.numel() for p in shared.parameters())
    assert sum(p.numel() for p in separate.parameters()) == n_shared + 7 * adaf_parameters


def test_untrained_net_contributes_nothing():
    """The zero-initialised output projection: a repeated branch ``h + HAMSNet(...)`` starts as its input."""
    net = HAMSNet(D_MODEL, reduction=4)
    x = torch.randn(2, 40, D_MODEL)
    assert torch.count_nonzero(net(x)) == 0


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
