"""Mamba, BiMamba and convMamba: shapes, a from-scratch reference, initialisation, causality."""

import math

import pytest
import torch
import torch.nn.functional as F

from dmf2mel.models import kernels, mamba
from dmf2mel.models.mamba import BiMamba, ConvMamba, FeedForward, Mamba
from dmf2mel.viz.models import saved_tensor_bytes

D_MODEL = 8
D_STATE = 4
LENGTHS = [1, 3, 7, 64, 65]


def small_mamba(**kwargs):
    return Mamba(D_MODEL, d_state=D_STATE, scan_backend="reference", **kwargs)


def mamba_from_scratch(block: Mamba, x: torch.Tensor) -> torch.Tensor:
    """The Mamba equations written out step by step from the parameters, independent of the scan."""
    batch, length, _ = x.shape
    inner, n_state, rank = block.d_inner, block.d_state, block.dt_rank
    xz = x @ block.in_proj.weight.T
    u, z = xz[..., :inner], xz[..., inner:]
    # causal depthwise convolution: out_t = bias + sum_k w[k] * u[t - (K-1) + k]
    kernel = block.conv1d.weight[:, 0, :]  # (inner, K)
    padded = F.pad(u, (0, 0, kernel.shape[1] - 1, 0))
    conv = torch.stack([(padded[:, t : t + kernel.shape[1], :] * kernel.T).sum(1) for t in range(length)], dim=1)
    u = F.silu(conv + block.conv1d.bias)
    A = -torch.exp(block.A_log)
    state = x.new_zeros(batch, inner, n_state)
    ys = []
    for t in range(length):
        proj = u[:, t] @ block.x_proj.weight.T
        dt_raw, b, c = proj[:, :rank], proj[:, rank : rank + n_state], proj[:, rank + n_state :]
        delta = F.softplus(dt_raw @ block.dt_proj.weight.T + block.dt_proj.bias)  # (batch, inner)
        state = torch.exp(delta[..., None] * A) * state + (delta * u[:, t])[..., None] * b[:, None, :]
        y = (state * c[:, None, :]).sum(-1) + block.D * u[:, t]
        ys.append(y * F.silu(z[:, t]))
    return torch.stack(ys, dim=1) @ block.out_proj.weight.T


@pytest.mark.parametrize("length", LENGTHS)
def test_shapes_any_length(length):
    torch.manual_seed(0)
    x = torch.randn(2, length, D_MODEL)
    assert small_mamba()(x).shape == x.shape
    assert BiMamba(D_MODEL, d_state=D_STATE, scan_backend="reference")(x).shape == x.shape
    conv_mamba = ConvMamba(D_MODEL, d_ff=16, dropout=0.0, d_state=D_STATE, scan_backend="reference")
    assert conv_mamba(x).shape == x.shape


@pytest.mark.parametrize("length", [1, 5, 23])
def test_matches_from_scratch_reference(length):
    torch.manual_seed(1)
    block = small_mamba().double()
    # move every parameter away from its initial value so that each one matters
    with torch.no_grad():
        for p in block.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x = torch.randn(3, length, D_MODEL, dtype=torch.float64)
    torch.testing.assert_close(block(x), mamba_from_scratch(block, x), rtol=1e-10, atol=1e-10)


def test_matches_mambapy():
    """An outside implementation with the same parameter names gives the same output."""
    mambapy = pytest.importorskip("mambapy.mamba", reason="mambapy (benchmark reference) not installed")
    torch.manual_seed(2)
    ours = Mamba(16, d_state=8, expand=2, scan_backend="reference")
    config = mambapy.MambaConfig(d_model=16, n_layers=1, d_state=8, expand_factor=2, pscan=False)
    theirs = mambapy.MambaBlock(config)
    theirs.load_state_dict(ours.state_dict())
    x = torch.randn(2, 33, 16)
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-5, atol=1e-5)


def test_cpu_backend_matches_reference_in_the_block():
    """Same weights, two scan backends: equal outputs and gradients (the scan tests cover the kernel)."""
    torch.manual_seed(8)
    fast = Mamba(D_MODEL, d_state=D_STATE, scan_backend="cpu")
    slow = Mamba(D_MODEL, d_state=D_STATE, scan_backend="reference")
    slow.load_state_dict(fast.state_dict())
    x = torch.randn(2, 40, D_MODEL)
    fast(x).square().sum().backward()
    slow(x).square().sum().backward()
    torch.testing.assert_close(fast(x), slow(x), rtol=1e-5, atol=1e-5)
    for (name, p_fast), p_slow in zip(fast.named_parameters(), slow.parameters()):
        torch.testing.assert_close(p_fast.grad, p_slow.grad, rtol=1e-4, atol=1e-5, msg=name)


def test_initialisation():
    torch.manual_seed(3)
    dt_min, dt_max = 2e-3, 5e-2
    block = Mamba(32, d_state=6, dt_min=dt_min, dt_max=dt_max, scan_backend="reference")
    assert block.dt_rank == math.ceil(32 / 16)
    expected_a = torch.log(torch.arange(1, 7, dtype=torch.float32)).expand(64, -1)
    torch.testing.assert_close(block.A_log.detach(), expected_a)
    torch.testing.assert_close(block.D.detach(), torch.ones(64))
    dt = F.softplus(block.dt_proj.bias.detach())
    assert dt.min() >= dt_min * (1 - 1e-5) and dt.max() <= dt_max * (1 + 1e-5)
    assert block.dt_proj.weight.abs().max() <= block.dt_rank**-0.5
    assert block.in_proj.bias is None and block.out_proj.bias is None and block.x_proj.bias is None


def test_mamba_is_causal():
    torch.manual_seed(4)
    block = small_mamba()
    x = torch.randn(1, 20, D_MODEL)
    changed = x.clone()
    changed[:, 12] += 1.0
    before, after = block(x), block(changed)
    torch.testing.assert_close(before[:, :12], after[:, :12])
    assert not torch.allclose(before[:, 12:], after[:, 12:])


def test_bimamba_sees_both_directions():
    torch.manual_seed(5)
    block = BiMamba(D_MODEL, d_state=D_STATE, scan_backend="reference")
    assert block.forward_mamba is not block.backward_mamba
    x = torch.randn(1, 20, D_MODEL)
    changed = x.clone()
    changed[:, 12] += 1.0
    before, after = block(x), block(changed)
    assert not torch.allclose(before[:, :12], after[:, :12])  # the reversed Mamba carries the future
    # the backward half is exactly the time-reversed Mamba
    with torch.no_grad():
        block.proj.weight[:, :D_MODEL] = 0.0
        block.proj.bias.zero_()
    expected = block.backward_mamba(x.flip(1)).flip(1) @ block.proj.weight[:, D_MODEL:].T
    torch.testing.assert_close(block(x), expected)


def test_convmamba_equations_and_sharing():
    torch.manual_seed(6)
    block = ConvMamba(D_MODEL, d_ff=16, dropout=0.0, d_state=D_STATE, scan_backend="reference").eval()
    x = torch.randn(2, 30, D_MODEL)
    h = block.bimamba(block.conv(x))
    h = h + 0.5 * block.ffn(h)
    h = h + block.conv(h)
    h = h + 0.5 * block.ffn(h)
    torch.testing.assert_close(block(x), h)
    # the conv and the feed-forward are used twice but exist once
    counted = sum(p.numel() for m in (block.conv, block.ffn, block.bimamba) for p in m.parameters())
    assert sum(p.numel() for p in block.parameters()) == counted


def test_convmamba_without_mamba():
    with_mamba = ConvMamba(D_MODEL, d_ff=16, d_state=D_STATE, scan_backend="reference")
    without = ConvMamba(D_MODEL, d_ff=16, d_state=D_STATE, use_mamba=False)
    assert without.bimamba is None
    n_with = sum(p.numel() for p in with_mamba.parameters())
    n_without = sum(p.numel() for p in without.parameters())
    assert n_with - n_without == sum(p.numel() for p in with_mamba.bimamba.parameters())
    assert without(torch.randn(2, 9, D_MODEL)).shape == (2, 9, D_MODEL)


def test_gradients_reach_every_parameter():
    torch.manual_seed(7)
    block = ConvMamba(D_MODEL, d_ff=16, dropout=0.1, d_state=D_STATE, scan_backend="reference")
    block(torch.randn(2, 17, D_MODEL)).square().mean().backward()
    for name, p in block.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_invalid_arguments():
    with pytest.raises(ValueError, match="scan_backend"):
        Mamba(D_MODEL, scan_backend="gpu-please")
    with pytest.raises(ValueError, match="dt_rank"):
        Mamba(D_MODEL, dt_rank=0)
    with pytest.raises(ValueError, match="dt_min"):
        Mamba(D_MODEL, dt_min=0.1, dt_max=0.01)


@pytest.fixture
def torch_kernels():
    """The package's torch-op path (the fused feed-forward off), restored afterwards."""
    previous = kernels.backend()
    kernels.set_backend("torch")
    yield
    kernels.set_backend(previous)


def test_checkpointed_feed_forward_same_outputs_gradients_and_statistics(torch_kernels):
    """Checkpointing applies to the torch-op feed-forward (the fused one keeps nothing to recompute)."""
    torch.manual_seed(8)
    plain = ConvMamba(D_MODEL, d_ff=64, dropout=0.3, d_state=D_STATE, scan_backend="reference").train()
    checkpointed = ConvMamba(
        D_MODEL, d_ff=64, dropout=0.3, d_state=D_STATE, scan_backend="reference", checkpoint_feed_forward=True
    ).train()
    checkpointed.load_state_dict(plain.state_dict())
    x = torch.randn(2, 33, D_MODEL)
    results = []
    for block in (plain, checkpointed):
        torch.manual_seed(9)  # same dropout masks in both runs; the recomputation must reproduce them
        source = x.clone().requires_grad_()
        out = block(source)
        out.square().mean().backward()
        results.append((out, source.grad, {name: p.grad for name, p in block.named_parameters()}))
    (out_a, grad_a, params_a), (out_b, grad_b, params_b) = results
    torch.testing.assert_close(out_b, out_a, rtol=0, atol=0)
    torch.testing.assert_close(grad_b, grad_a)
    for name in params_a:
        torch.testing.assert_close(params_b[name], params_a[name], msg=name)
    # the BatchNorm is not recomputed: its running statistics were updated exactly as often
    torch.testing.assert_close(checkpointed.conv.norm.running_mean, plain.conv.norm.running_mean, rtol=0, atol=0)
    assert checkpointed.conv.norm.num_batches_tracked == plain.conv.norm.num_batches_tracked
    # and it does keep less: the (tokens, d_ff) activations are gone
    hidden_bytes = 2 * 33 * 64 * 4
    torch.manual_seed(10)
    saved_checkpointed = saved_tensor_bytes(lambda: checkpointed(x))
    torch.manual_seed(10)  # (same dropout, so that the BatchNorm statistics stay equal for the check below)
    assert saved_checkpointed + 2 * hidden_bytes < saved_tensor_bytes(lambda: plain(x))
    with torch.no_grad():  # nothing to checkpoint without a graph
        torch.testing.assert_close(checkpointed.eval()(x), plain.eval()(x), rtol=0, atol=0)


def unfused_feed_forward(ffn: FeedForward, x: torch.Tensor) -> torch.Tensor:
    """The feed-forward as torch ops with the package's dropouts (the masks the fused path must reproduce)."""
    return ffn.output_dropout(ffn.contract(ffn.dropout(F.silu(ffn.expand(ffn.norm(x))))))


@pytest.mark.parametrize("fused", [True, False])
def test_feed_forward_has_the_official_second_dropout(fused):
    """Dropout after the SiLU and again after the output projection, both at the block's rate; output_dropout=False
    leaves the second out."""
    from dmf2mel.models import kernels

    torch.manual_seed(0)
    x = torch.randn(4, 500, 16)
    kernels.set_backend("numba" if fused else "torch")
    try:
        with_second = FeedForward(16, 32, 0.4).train()
        without = FeedForward(16, 32, 0.4, output_dropout=False).train()
        without.load_state_dict(with_second.state_dict())
        assert with_second.fused(x) == fused
        zeros = (with_second(x) == 0).float().mean().item()
        assert zeros == pytest.approx(0.4, abs=0.02)  # the output's own mask: whole outputs set to 0
        assert (without(x) == 0).float().mean().item() < 0.01
        with torch.no_grad():
            torch.testing.assert_close(with_second.eval()(x), without.eval()(x))  # both off in evaluation
    finally:
        kernels.set_backend("numba")


@pytest.mark.parametrize(
    "dtype, chunk_elements, p",
    [(torch.float32, 2**19, 0.3), (torch.float32, 1000, 0.3), (torch.float64, 777, 0.3), (torch.float64, 500, 0.0)],
)
def test_fused_feed_forward_equals_torch_ops(monkeypatch, dtype, chunk_elements, p):
    """One chunk, and many with a shorter last one: the same output and gradients as the torch ops."""
    monkeypatch.setattr(mamba, "FEED_FORWARD_CHUNK_ELEMENTS", chunk_elements)
    torch.manual_seed(3)
    ffn = FeedForward(16, 96, p).to(dtype).train()
    x = torch.randn(3, 50, 16, dtype=dtype)
    grad = torch.randn(3, 50, 16, dtype=dtype)
    assert ffn.fused(x)
    results = []
    for run in (ffn, lambda t: unfused_feed_forward(ffn, t)):
        torch.manual_seed(5)  # the same seed for the dropout call
        source = x.clone().requires_grad_()
        out = run(source)
        out.backward(grad)
        results.append((out, source.grad, [param.grad.clone() for param in ffn.parameters()]))
        ffn.zero_grad()
    (out, grad_x, grads), (expected, expected_x, expected_grads) = results
    # sums over tokens in chunks: rounding relative to the largest term
    eps = 1e-6 if dtype == torch.float32 else 1e-13

    def assert_close(got, want, name):
        torch.testing.assert_close(got, want, rtol=10 * eps, atol=eps * want.abs().max().item(), msg=name)

    assert_close(out, expected, "out")
    assert_close(grad_x, expected_x, "x")
    for (name, _), got, want in zip(ffn.named_parameters(), grads, expected_grads):
        assert_close(got, want, name)
    if p > 0:
        # the mask is really applied: training differs from evaluation
        assert (out != unfused_feed_forward(ffn.eval(), x)).any()


def test_fused_feed_forward_gradcheck_with_dropout(monkeypatch):
    monkeypatch.setattr(mamba, "FEED_FORWARD_CHUNK_ELEMENTS", 40)
    torch.manual_seed(4)
    ffn = FeedForward(4, 12, 0.4).double().train()
    x = torch.randn(2, 7, 4, dtype=torch.float64, requires_grad=True)

    def reseeded(t):
        torch.manual_seed(6)  # every evaluation draws the same mask
        return ffn(t)

    assert torch.autograd.gradcheck(reseeded, (x,))


def test_fused_feed_forward_keeps_no_hidden_activation():
    """It keeps its (tokens, d_model) input, not the (tokens, d_ff) hidden layer the torch ops keep three times."""
    ffn = FeedForward(8, 256, 0.1).train()
    x = torch.randn(2, 40, 8, requires_grad=True)
    hidden_bytes = 2 * 40 * 256 * 4
    parameter_bytes = sum(param.numel() * 4 for param in ffn.parameters())
    fused = saved_tensor_bytes(lambda: ffn(x)) - parameter_bytes
    assert fused < hidden_bytes / 8
    assert saved_tensor_bytes(lambda: unfused_feed_forward(ffn, x)) > 2 * hidden_bytes
    with torch.no_grad():  # evaluation: the torch ops, no dropout
        ffn.eval()
        assert not ffn.fused(x)
        torch.testing.assert_close(ffn(x), unfused_feed_forward(ffn, x))
