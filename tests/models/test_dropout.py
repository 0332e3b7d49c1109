"""dmf2mel.models.dropout: torch's dropout maths with masks from a counter-based numba generator."""

from __future__ import annotations

import numba
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dmf2mel.models import dropout as D
from dmf2mel.models import kernels


@pytest.fixture(autouse=True)
def numba_backend():
    kernels.set_backend("numba")
    yield
    kernels.set_backend("numba")


def kept(y: torch.Tensor) -> np.ndarray:
    return (y != 0).numpy().reshape(-1)


def test_output_and_gradient_are_torchs_formula():
    torch.manual_seed(0)
    x = (torch.rand(3, 70, 33) + 0.5).requires_grad_()  # no zeros: the mask is readable from the output
    y = D.dropout(x, 0.3)
    keep = (y != 0).float()
    torch.testing.assert_close(y, x.detach() * keep / 0.7, rtol=1e-6, atol=0)
    grad_out = torch.randn_like(y)
    y.backward(grad_out)
    torch.testing.assert_close(x.grad, grad_out * keep / 0.7, rtol=1e-6, atol=0)


def test_float64_and_non_contiguous_inputs():
    torch.manual_seed(1)
    x = (torch.rand(40, 30, dtype=torch.float64) + 0.5).t()  # a transposed view
    y = D.dropout(x, 0.5)
    assert y.dtype == torch.float64 and y.shape == x.shape
    keep = (y != 0).double()
    torch.testing.assert_close(y, x * keep * 2.0)


def _splitmix_reference(z: int) -> int:
    mask = 2**64 - 1
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    return z ^ (z >> 31)


@pytest.mark.parametrize("n", [1, 7, 8192, 8193, 20001])
def test_masks_are_the_documented_generator(n):
    """Element i keeps its value iff 32 bits of splitmix64(splitmix64(seed) + (i // 2) * golden) reach p * 2**32
    (low half for even i, high half for odd i): checked against plain Python integers, odd sizes and block edges."""
    seed, p = 123456789, 0.3
    x = np.ones(n, dtype=np.float32)
    out, keep = np.empty_like(x), np.empty(n, dtype=np.bool_)
    D._dropout_forward(x, out, keep, seed, D._threshold(p), np.float32(1 / (1 - p)))
    base, threshold = _splitmix_reference(seed), int(D._threshold(p))
    expected = []
    for i in list(range(min(n, 40))) + list(range(max(0, n - 40), n)):
        bits = _splitmix_reference((base + (i // 2) * 0x9E3779B97F4A7C15) & (2**64 - 1))
        half = bits & 0xFFFFFFFF if i % 2 == 0 else bits >> 32
        expected.append((i, half >= threshold))
    assert [(i, bool(keep[i])) for i, _ in expected] == expected
    np.testing.assert_array_equal(out, keep * np.float32(1 / (1 - p)))


@pytest.mark.parametrize("element0", [0, 1, 2, 7, 2**40 + 3])
@pytest.mark.parametrize("n", [1, 2, 5, 640, 641])
def test_a_run_of_the_mask_starting_anywhere_is_the_documented_generator(element0, n):
    # the attention and feed-forward kernels draw rows that start at odd elements and end inside a pair
    from numba import njit

    @njit
    def run(keep, element0, base, threshold):
        D.keep_mask(keep, element0, base, threshold, D.pair_buffer(keep.size))

    seed, p = 987654321, 0.4
    base, threshold = _splitmix_reference(seed), int(D._threshold(p))
    keep = np.empty(n, dtype=np.float32)
    run(keep, element0, np.uint64(base), D._threshold(p))
    expected = []
    for i in range(element0, element0 + n):
        bits = _splitmix_reference((base + (i // 2) * 0x9E3779B97F4A7C15) & (2**64 - 1))
        expected.append(float((bits & 0xFFFFFFFF if i % 2 == 0 else bits >> 32) >= threshold))
    assert keep.tolist() == expected


def test_rate_matches_p():
    torch.manual_seed(2)
    n = 1_000_000
    for p in (0.05, 0.1, 0.5):
        rate = 1 - kept(D.dropout(torch.ones(n), p)).mean()
        sigma = (p * (1 - p) / n) ** 0.5
        assert abs(rate - p) < 5 * sigma, (p, rate)


def test_mask_elements_are_independent_within_and_across_calls():
    torch.manual_seed(3)
    n, p = 1_000_000, 0.3
    first, second = kept(D.dropout(torch.ones(n), p)), kept(D.dropout(torch.ones(n), p))
    bound = 5 / n**0.5
    for lag in (1, 2, 3, 7, 8192):  # 2: the two halves of one 64-bit draw; 8192: a kernel block
        a, b = first[:-lag].astype(float), first[lag:].astype(float)
        assert abs(np.corrcoef(a, b)[0, 1]) < bound, lag
    assert abs(np.corrcoef(first.astype(float), second.astype(float))[0, 1]) < bound
    assert not np.array_equal(first, second)


def test_masks_follow_torchs_seed_and_not_the_thread_count():
    x = torch.ones(100_000)
    torch.manual_seed(4)
    a = kept(D.dropout(x, 0.2))
    previous = numba.get_num_threads()
    torch_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)  # the kernels follow torch's count
        torch.manual_seed(4)
        b = kept(D.dropout(x, 0.2))
    finally:
        torch.set_num_threads(torch_threads)
        numba.set_num_threads(previous)
    torch.manual_seed(5)
    c = kept(D.dropout(x, 0.2))
    assert np.array_equal(a, b), "the same torch seed gives the same mask, whatever the threads"
    assert not np.array_equal(a, c)


def test_evaluation_and_edge_probabilities():
    x = torch.randn(5, 6)
    assert D.dropout(x, 0.5, training=False) is x
    assert D.dropout(x, 0.0) is x
    assert torch.equal(D.dropout(x, 1.0), torch.zeros_like(x))
    with pytest.raises(ValueError, match=r"p=1.5.*\[0, 1\]"):
        D.dropout(x, 1.5)
    with pytest.raises(ValueError, match="p=-0.1"):
        D.Dropout(-0.1)


def test_other_dtypes_and_the_torch_backend_use_torch():
    x = torch.ones(1000, dtype=torch.float16)
    torch.manual_seed(6)
    y = D.dropout(x, 0.5)
    torch.manual_seed(6)
    torch.testing.assert_close(y, F.dropout(x, 0.5))
    kernels.set_backend("torch")
    x = torch.ones(1000)
    torch.manual_seed(7)
    y = D.dropout(x, 0.5)
    torch.manual_seed(7)
    torch.testing.assert_close(y, F.dropout(x, 0.5))
    with pytest.raises(ValueError, match="'cuda'.*numba, torch"):
        kernels.set_backend("cuda")


def test_module_is_a_drop_in_for_nn_dropout():
    module = D.Dropout(0.25)
    assert "p=0.25" in repr(module)
    x = torch.rand(4, 64) + 1
    module.eval()
    assert torch.equal(module(x), x)
    module.train()
    y = module(x)
    ratios = (y / x)[y != 0]
    torch.testing.assert_close(ratios, torch.full_like(ratios, 4 / 3))
    assert 0 < (y == 0).sum() < y.numel()
