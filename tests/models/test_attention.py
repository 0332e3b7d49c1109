"""SplineMap attention: weights, self/cross attention on any length, the AGKAN switch, determinism, gradients."""

import pytest
import torch

from dmf2mel.models.attention import SplineMapAttention
from dmf2mel.models.kan import AGKANLinear

D_MODEL = 16


def n_params(module):
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("time", [1, 7, 33])
def test_self_attention_weights_sum_to_one_and_match_fused_path(time):
    torch.manual_seed(0)
    attention = SplineMapAttention(D_MODEL, n_heads=2).eval()
    x = torch.randn(3, time, D_MODEL)
    out, weights = attention(x, return_weights=True)
    assert out.shape == (3, time, D_MODEL)
    assert weights.shape == (3, 2, time, time)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 2, time))
    torch.testing.assert_close(attention(x), out, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("time, source_time", [(5, 12), (12, 5), (1, 9)])
def test_cross_attention_with_different_lengths(time, source_time):
    torch.manual_seed(1)
    attention = SplineMapAttention(D_MODEL, n_heads=4).eval()
    query, source = torch.randn(2, time, D_MODEL), torch.randn(2, source_time, D_MODEL)
    out, weights = attention(query, source, return_weights=True)
    assert out.shape == (2, time, D_MODEL)
    assert weights.shape == (2, 4, time, source_time)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 4, time))
    # the key/value input matters, and self-attention is cross-attention of the query with itself
    assert not torch.allclose(out, attention(query, torch.randn(2, source_time, D_MODEL)))
    torch.testing.assert_close(attention(query), attention(query, query))


def test_attention_equals_explicit_formula():
    torch.manual_seed(2)
    attention = SplineMapAttention(D_MODEL, n_heads=2).eval()
    query, source = torch.randn(2, 6, D_MODEL), torch.randn(2, 4, D_MODEL)
    nq, ns = attention.norm(query), attention.norm(source)
    q, k, v = attention.query_proj(nq), attention.key_proj(ns), attention.value_proj(ns)
    heads = []
    for h in range(2):
        cols = slice(8 * h, 8 * (h + 1))
        weights = torch.softmax(q[..., cols] @ k[..., cols].transpose(1, 2) / 8**0.5, dim=-1)
        heads.append(weights @ v[..., cols])
    expected = query + attention.out_proj(torch.cat(heads, dim=-1))
    torch.testing.assert_close(attention(query, source), expected, atol=1e-5, rtol=1e-5)


def test_use_splinemap_switches_projection_type_and_parameter_count():
    with_kan = SplineMapAttention(64, 2)
    plain = SplineMapAttention(64, 2, use_splinemap=False)
    assert all(
        isinstance(m, AGKANLinear)
        for m in (with_kan.query_proj, with_kan.key_proj, with_kan.value_proj, with_kan.out_proj)
    )
    assert isinstance(plain.query_proj, torch.nn.Linear)
    assert n_params(plain) == 2 * 64 + 4 * (64 * 64 + 64)
    assert n_params(with_kan) > 5 * n_params(plain)
    x = torch.randn(2, 5, 64)
    assert plain(x).shape == x.shape


def test_projection_sizes_follow_the_paper():
    attention = SplineMapAttention(64, 2)
    sizes = [
        (p.kan.grid_size, p.to_prototypes.out_features)
        for p in (attention.query_proj, attention.key_proj, attention.value_proj, attention.out_proj)
    ]
    assert sizes == [(8, 64), (6, 32), (8, 64), (6, 128)]
    gate_biases = [p.gate.bias.item() for p in (attention.query_proj, attention.key_proj, attention.value_proj)]
    assert gate_biases == [1.0, 0.5, 2.0]


def test_official_initialisation():
    """As the official ``_init_agkan_weights``: small normal KAN weights for Q, K, V; the output gate bias default."""
    torch.manual_seed(0)
    attention = SplineMapAttention(64, 2)
    for projection in (attention.query_proj, attention.key_proj, attention.value_proj):
        assert abs(projection.kan.base_weight.std().item() - 0.02) < 0.002
        assert abs(projection.kan.spline_weight.std().item() - 0.01) < 0.001
    # the output projection keeps efficient-KAN's uniform base weights (std 1 / sqrt(3 * 64) = 0.072)
    assert attention.out_proj.kan.base_weight.std().item() > 0.05
    bias = attention.out_proj.gate.bias.item()
    assert abs(bias) <= 64**-0.5 and bias not in (0.0, 1.0)
    # prototype compression: orthogonal rows except for the key's Kaiming-uniform
    compress = attention.query_proj.to_prototypes.weight
    torch.testing.assert_close(compress @ compress.T, torch.eye(64), atol=1e-5, rtol=0)
    key_compress = attention.key_proj.to_prototypes.weight
    assert key_compress.abs().max() <= (6 / 64) ** 0.5 and not torch.allclose(
        key_compress @ key_compress.T, torch.eye(32), atol=0.1
    )


def test_eval_is_deterministic_and_train_uses_dropout():
    torch.manual_seed(3)
    attention = SplineMapAttention(D_MODEL, 2)
    x = torch.randn(2, 9, D_MODEL)
    attention.eval()
    torch.testing.assert_close(attention(x), attention(x), atol=0, rtol=0)
    attention.train()
    assert not torch.allclose(attention(x), attention(x))


@pytest.mark.parametrize("use_splinemap", [True, False])
def test_gradient_reaches_every_parameter(use_splinemap):
    torch.manual_seed(4)
    attention = SplineMapAttention(D_MODEL, 2, use_splinemap=use_splinemap)
    query, source = torch.randn(2, 7, D_MODEL), torch.randn(2, 5, D_MODEL)
    (attention(query, source) * torch.randn(2, 7, D_MODEL)).sum().backward()
    for name, p in attention.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_rejects_heads_that_do_not_divide_d_model():
    with pytest.raises(ValueError, match="n_heads"):
        SplineMapAttention(10, 3)


# ---------------------------------------------------------------- attention with dropout: numba kernels vs torch ops


def explicit_attention(q, k, v, p):
    """softmax(q k^T / sqrt(d)), dropped by the package's numba dropout (same generator, same seed), times v."""
    from dmf2mel.models.dropout import _NumbaDropout

    weights = torch.softmax((q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1), dim=-1)
    return (_NumbaDropout.apply(weights, p) if p > 0 else weights) @ v


def _grads(function, tensors, upstream, seed=5):
    for tensor in tensors:
        tensor.grad = None
    torch.manual_seed(seed)
    out = function(*tensors)
    out.backward(upstream)
    return [out.detach()] + [tensor.grad.clone() for tensor in tensors]


@pytest.mark.parametrize("dtype, tolerance", [(torch.float64, 1e-10), (torch.float32, 2e-5)])
@pytest.mark.parametrize("p", [0.0, 0.1, 0.5])
@pytest.mark.parametrize("time, source_time, head_size", [(37, 41, 8), (6, 5, 3), (1, 1, 16)])
def test_row_kernels_equal_explicit_attention_with_the_same_dropout_mask(
    dtype, tolerance, p, time, source_time, head_size
):
    """Values and all three gradients; odd source lengths put mask elements on both halves of a 64-bit draw."""
    from dmf2mel.models.attention import attention_with_dropout

    torch.manual_seed(0)
    q = torch.randn(3, 2, time, head_size, dtype=dtype, requires_grad=True)
    k, v = (torch.randn(3, 2, source_time, head_size, dtype=dtype, requires_grad=True) for _ in range(2))
    upstream = torch.randn(3, 2, time, head_size, dtype=dtype)
    fused = _grads(lambda *t: attention_with_dropout(*t, p), (q, k, v), upstream)
    explicit = _grads(lambda *t: explicit_attention(*t, p), (q, k, v), upstream)
    for a, b in zip(fused, explicit):
        torch.testing.assert_close(a, b, rtol=tolerance, atol=tolerance)


def test_row_kernels_survive_scores_far_above_the_first_one():
    """The softmax is shifted by the first score; a score ~200 above it overflows that sum and takes the exact path."""
    from dmf2mel.models.attention import attention_with_dropout

    q = torch.zeros(1, 1, 3, 2)
    q[..., 0] = 20.0
    k = torch.tensor([[[[-10.0, 0.0], [0.0, 1.0], [10.0, 0.0], [-3.0, 2.0]]]], requires_grad=True)
    v = torch.randn(1, 1, 4, 2)
    out = attention_with_dropout(q, k, v, 0.0)
    torch.testing.assert_close(out, explicit_attention(q, k, v, 0.0))
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("gap", [20.0, 45.0, 70.0, 87.9, 88.5, 95.0])
def test_row_kernels_stay_finite_when_the_shifted_sum_nears_the_float32_limit(gap):
    """A score ``gap`` above the first: at 87.9 the sum shifted by the first score is ~1.5e38, still finite, and its
    exponentials times v used to overflow (inf - inf = NaN) before the row was shifted by its maximum."""
    from dmf2mel.models.attention import attention_with_dropout

    q = torch.ones(1, 1, 1, 1, requires_grad=True)
    k = torch.tensor([[[[0.0], [gap], [gap - 0.5], [3.0]]]], requires_grad=True)
    v = torch.tensor([[[[8.0], [-8.0], [7.5], [1.0]]]], requires_grad=True)
    upstream = torch.ones(1, 1, 1, 1)
    fast = _grads(lambda *t: attention_with_dropout(*t, 0.0, scale=1.0), (q, k, v), upstream)
    exact = [t.double() for t in (q, k, v)]
    for t in exact:
        t.retain_grad()
    reference_out = torch.softmax(exact[0] @ exact[1].transpose(-2, -1), dim=-1) @ exact[2]
    reference_out.backward(upstream.double())
    reference = [reference_out.detach()] + [t.grad for t in exact]
    for a, b in zip(fast, reference):
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a.double(), b, rtol=3e-4, atol=1e-5)  # float32 scores of ~90: ulp 8e-6


def test_row_kernels_gradcheck_with_dropout():
    from dmf2mel.models.attention import attention_with_dropout

    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True) for _ in range(3))

    def seeded(q, k, v):  # the same mask on every call gradcheck makes
        torch.manual_seed(7)
        return attention_with_dropout(q, k, v, 0.3)

    assert torch.autograd.gradcheck(seeded, (q, k, v))


def test_attention_with_dropout_keeps_its_rate_and_switches_off_in_evaluation():
    from dmf2mel.models.attention import attention_with_dropout

    torch.manual_seed(2)
    q = torch.zeros(1, 200, 4)  # uniform weights 1/S: the output is the mean of the kept values, rescaled
    k = torch.randn(1, 500, 4)
    v = torch.ones(1, 500, 4)
    dropped = attention_with_dropout(q, k, v, 0.2)
    kept_fraction = dropped[..., 0] * 0.8  # = (kept values / 500) per row
    assert abs(kept_fraction.mean().item() - 0.8) < 5 * (0.2 * 0.8 / (200 * 500)) ** 0.5
    torch.testing.assert_close(attention_with_dropout(q, k, v, 0.2, training=False), torch.ones(1, 200, 4))


@pytest.mark.parametrize("p", [1.0, -0.1, 1.5])
def test_attention_with_dropout_rejects_a_probability_outside_0_1(p):
    """p = 1 would rescale by 1 / (1 - p): refused with the value named, on every path."""
    from dmf2mel.models.attention import attention_with_dropout

    q = torch.randn(1, 3, 2)
    with pytest.raises(ValueError, match=r"attention dropout p=.*expected a number in \[0, 1\)"):
        attention_with_dropout(q, q, q, p)


def test_training_step_of_the_block_matches_the_torch_path():
    """SplineMapAttention in training mode: the kernels and the torch ops (with the numba dropout) agree."""
    from dmf2mel.models import kernels

    torch.manual_seed(3)
    attention = SplineMapAttention(D_MODEL, n_heads=2, dropout=0.0, attn_dropout=0.2).double().train()
    x = torch.randn(2, 19, D_MODEL, dtype=torch.float64, requires_grad=True)
    results = []
    for explicit in (False, True):
        torch.manual_seed(11)
        attention.zero_grad()
        x.grad = None
        if explicit:
            out, _ = attention(x, return_weights=True)  # the explicit torch path, numba dropout
        else:
            out = attention(x)
        out.pow(2).sum().backward()
        results.append([out.detach(), x.grad.clone()] + [p.grad.clone() for p in attention.parameters()])
    for fused, explicit in zip(*results):
        torch.testing.assert_close(fused, explicit)
    assert kernels.enabled()
