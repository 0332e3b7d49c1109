"""The selective scan: the numba "cpu" backend against the reference loop, gradients by finite differences."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from dmf2mel.models.scan import selective_scan
from dmf2mel.models.scan.fast_exp import fast_exp_array

INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
# Mamba's initialisation: A = -(1..N), dt = softplus(delta + delta_bias) in [1e-3, 1e-1].
DT_MIN, DT_MAX = 1e-3, 1e-1


def make_inputs(batch, dim, length, d_state, dtype=torch.float64, seed=0):
    """Random scan inputs shaped like a Mamba layer's, as a dict of leaf tensors."""
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape):
        return torch.randn(*shape, generator=generator, dtype=dtype)

    dt = torch.exp(torch.rand(dim, generator=generator, dtype=dtype) * math.log(DT_MAX / DT_MIN) + math.log(DT_MIN))
    # Scaled per channel so that channels differ.
    channel_scale = 0.5 + torch.rand(dim, 1, generator=generator, dtype=dtype)
    A = -torch.arange(1, d_state + 1, dtype=dtype).repeat(dim, 1) * channel_scale
    return {
        "u": randn(batch, dim, length),
        "delta": 0.5 * randn(batch, dim, length),
        "A": A,
        "B": randn(batch, d_state, length),
        "C": randn(batch, d_state, length),
        "D": randn(dim),
        "z": randn(batch, dim, length),
        "delta_bias": dt + torch.log(-torch.expm1(-dt)),  # the inverse softplus of dt
    }


def positive_steps(inputs):
    """Without softplus, delta + delta_bias is the step size itself: make it positive, as Mamba's is."""
    bias = inputs["delta_bias"].detach()[:, None] if inputs["delta_bias"] is not None else 0.0
    steps = torch.nn.functional.softplus(inputs["delta"].detach() + bias) - bias
    return {**inputs, "delta": steps.requires_grad_(inputs["delta"].requires_grad)}


def scan_and_grads(inputs, backend, delta_softplus=True, grad_out=None):
    """Output and the gradients of <out, grad_out> for every input that requires grad (else None)."""
    leaves = {name: None if t is None else t.detach().requires_grad_(t.requires_grad) for name, t in inputs.items()}
    out = selective_scan(**leaves, delta_softplus=delta_softplus, backend=backend)
    if grad_out is None:
        grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
    wanted = [t for t in leaves.values() if t is not None and t.requires_grad]
    grads = iter(torch.autograd.grad(out, wanted, grad_out))
    return out, {name: next(grads) if t is not None and t.requires_grad else None for name, t in leaves.items()}


def with_grad(inputs):
    return {name: None if t is None else t.requires_grad_() for name, t in inputs.items()}


def assert_close_relative(actual, expected, rtol, name):
    """Max abs difference relative to the largest expected magnitude (gradients span several decades)."""
    scale = expected.abs().max().item()
    error = (actual - expected).abs().max().item()
    assert error <= rtol * scale, f"{name}: max error {error:.3g} > {rtol:g} x max |expected| {scale:.3g}"


@pytest.mark.parametrize("use_D, use_z, use_bias, softplus", list(itertools.product((False, True), repeat=4)))
def test_cpu_gradcheck_float64(use_D, use_z, use_bias, softplus):
    inputs = make_inputs(batch=2, dim=3, length=5, d_state=4)
    inputs["D"] = inputs["D"] if use_D else None
    inputs["z"] = inputs["z"] if use_z else None
    inputs["delta_bias"] = inputs["delta_bias"] if use_bias else None
    inputs = inputs if softplus else positive_steps(inputs)
    names = [name for name in INPUT_NAMES if inputs[name] is not None]

    def scan(*tensors):
        return selective_scan(**dict(zip(names, tensors)), delta_softplus=softplus, backend="cpu")

    assert torch.autograd.gradcheck(scan, [inputs[name].requires_grad_() for name in names])


@pytest.mark.slow  # the reference loop's forward+backward: ~1 s on an idle 2-core machine, far more when busy
def test_cpu_matches_reference_float32_at_paper_shape():
    """(batch 2, dim 128, length 640, d_state 128): the shapes of one DMF2Mel Mamba layer, 20 segments."""
    inputs = with_grad(make_inputs(batch=2, dim=128, length=640, d_state=128, dtype=torch.float32))
    out_ref, grads_ref = scan_and_grads(inputs, "reference")
    out_cpu, grads_cpu = scan_and_grads(inputs, "cpu")
    assert out_cpu.dtype == torch.float32
    assert_close_relative(out_cpu, out_ref, 1e-5, "out")
    for name in INPUT_NAMES:
        assert grads_cpu[name].shape == inputs[name].shape
        assert_close_relative(grads_cpu[name], grads_ref[name], 1e-4, f"d{name}")


@pytest.mark.parametrize("length", [1, 2, 7, 33])
@pytest.mark.parametrize("softplus", [False, True])
def test_cpu_matches_reference_any_length(length, softplus):
    inputs = with_grad(make_inputs(batch=3, dim=5, length=length, d_state=6))
    inputs = inputs if softplus else positive_steps(inputs)
    out_ref, grads_ref = scan_and_grads(inputs, "reference", softplus)
    out_cpu, grads_cpu = scan_and_grads(inputs, "cpu", softplus)
    torch.testing.assert_close(out_cpu, out_ref, rtol=1e-10, atol=1e-12)
    for name in INPUT_NAMES:
        torch.testing.assert_close(grads_cpu[name], grads_ref[name], rtol=1e-9, atol=1e-12, msg=f"d{name}")


def test_cpu_under_no_grad():
    inputs = with_grad(make_inputs(batch=2, dim=4, length=9, d_state=3))
    with torch.no_grad():
        out = selective_scan(**inputs, delta_softplus=True, backend="cpu")
        expected = selective_scan(**inputs, delta_softplus=True, backend="reference")
    assert out.grad_fn is None
    torch.testing.assert_close(out, expected)


def test_cpu_without_any_input_requiring_grad():
    inputs = make_inputs(batch=2, dim=4, length=9, d_state=3)
    out = selective_scan(**inputs, delta_softplus=True, backend="cpu")
    assert out.grad_fn is None and not out.requires_grad
    torch.testing.assert_close(out, selective_scan(**inputs, delta_softplus=True, backend="reference"))


def test_cpu_gradients_only_for_inputs_that_require_them():
    inputs = make_inputs(batch=2, dim=4, length=9, d_state=3)
    inputs["u"].requires_grad_()
    inputs["A"].requires_grad_()
    _, grads_ref = scan_and_grads(inputs, "reference")
    _, grads_cpu = scan_and_grads(inputs, "cpu")
    for name in INPUT_NAMES:
        if name in ("u", "A"):
            torch.testing.assert_close(grads_cpu[name], grads_ref[name])
        else:
            assert grads_cpu[name] is None


def strided_copy(tensor):
    """The same values in a non-contiguous view (every other element of a larger buffer)."""
    return torch.stack([tensor, torch.zeros_like(tensor)], dim=-1)[..., 0]


def test_cpu_non_contiguous_inputs():
    """Mamba's B and C arrive as (batch, length, d_state) views transposed to (batch, d_state, length)."""
    base = make_inputs(batch=2, dim=4, length=11, d_state=3)
    views = {name: strided_copy(t) for name, t in base.items()}
    views["B"] = base["B"].transpose(1, 2).contiguous().transpose(1, 2)
    views["C"] = base["C"].transpose(1, 2).contiguous().transpose(1, 2)
    assert not any(t.is_contiguous() for t in views.values())
    out_cpu, grads_cpu = scan_and_grads(with_grad(views), "cpu")
    out_ref, grads_ref = scan_and_grads(with_grad(base), "reference")
    torch.testing.assert_close(out_cpu, out_ref)
    for name in INPUT_NAMES:
        torch.testing.assert_close(grads_cpu[name], grads_ref[name], msg=f"d{name}")


def test_cpu_single_thread_matches_reference():
    """One thread means one channel chunk: the partial dB and dC buffers are summed differently."""
    inputs = with_grad(make_inputs(batch=2, dim=5, length=8, d_state=4))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out_cpu, grads_cpu = scan_and_grads(inputs, "cpu")
    finally:
        torch.set_num_threads(threads)
    out_ref, grads_ref = scan_and_grads(inputs, "reference")
    torch.testing.assert_close(out_cpu, out_ref)
    for name in INPUT_NAMES:
        torch.testing.assert_close(grads_cpu[name], grads_ref[name], msg=f"d{name}")


def test_cpu_half_precision_inputs_compute_in_float32():
    inputs = make_inputs(batch=2, dim=4, length=9, d_state=3, dtype=torch.float32)
    half = {name: t.to(torch.bfloat16) for name, t in inputs.items()}
    out = selective_scan(**half, delta_softplus=True, backend="cpu")
    expected = selective_scan(**{n: t.float() for n, t in half.items()}, delta_softplus=True, backend="reference")
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), expected, rtol=1e-2, atol=1e-2)


def test_auto_uses_the_cpu_kernel_on_cpu():
    inputs = with_grad(make_inputs(batch=1, dim=2, length=3, d_state=2, dtype=torch.float32))
    out = selective_scan(**inputs, backend="auto")
    assert type(out.grad_fn).__name__.startswith("SelectiveScanCPU")


def test_unknown_backend_is_a_value_error():
    inputs = make_inputs(batch=1, dim=2, length=3, d_state=2)
    with pytest.raises(ValueError, match="backend must be one of"):
        selective_scan(**inputs, backend="triton")


@pytest.mark.parametrize(
    "name, shape, pattern",
    [
        ("B", (1, 3, 2), r"B must have shape \(batch, d_state, length\) = \(1, 2, 3\), found \(1, 3, 2\)"),
        ("C", (1, 2), r"C must have shape"),
        ("delta", (1, 2, 4), r"delta must have shape \(batch, dim, length\) = \(1, 2, 3\), found \(1, 2, 4\)"),
        ("A", (3, 2), r"A must have shape \(dim, d_state\) with dim = 2, found \(3, 2\)"),
        ("D", (3,), r"D must have shape \(dim,\) = \(2,\), found \(3,\)"),
        ("z", (1, 2, 2), r"z must have shape"),
        ("delta_bias", (2, 1), r"delta_bias must have shape"),
        ("u", (2, 3), r"u must have shape \(batch, dim, length\), found \(2, 3\)"),
    ],
)
def test_bad_shapes_name_the_argument(name, shape, pattern):
    inputs = make_inputs(batch=1, dim=2, length=3, d_state=2)
    inputs[name] = torch.zeros(shape, dtype=torch.float64)
    with pytest.raises(ValueError, match=pattern):
        selective_scan(**inputs, backend="cpu")


def test_cuda_backend_with_cpu_tensors_is_a_value_error():
    inputs = make_inputs(batch=1, dim=2, length=3, d_state=2)
    with pytest.raises(ValueError, match="backend='cuda' needs CUDA tensors"):
        selective_scan(**inputs, backend="cuda")


@pytest.mark.parametrize("dtype, max_ulp", [(np.float32, 3), (np.float64, 2)])
def test_fast_exp_is_within_a_few_ulp_of_numpy(dtype, max_ulp):
    info = np.finfo(dtype)
    x = np.linspace(np.log(info.tiny) * 0.99, np.log(info.max) * 0.99, 200_001).astype(dtype)
    x = np.concatenate([x, np.linspace(-1, 1, 10_001).astype(dtype)])
    expected = np.exp(x)
    ulp = np.abs(fast_exp_array(x) - expected) / np.spacing(expected)
    assert ulp.max() <= max_ulp


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fast_exp_special_values(dtype):
    x = np.array([np.nan, -np.inf, np.inf, 0.0, -1e4, 1e4], dtype=dtype)
    result = fast_exp_array(x)
    assert np.isnan(result[0])
    np.testing.assert_array_equal(result[1:], np.array([0.0, np.inf, 1.0, 0.0, np.inf], dtype=dtype))


FASTMATH_CALLER_FIRST = """
import numpy as np
from numba import njit
from dmf2mel.models.scan.fast_exp import fast_exp, fast_exp_array

@njit(fastmath=True)
def sloppy(x):
    out = np.empty_like(x)
    for i in range(x.size):
        out[i] = x[i] / (1 + fast_exp(-x[i]))
    return out

for dtype in (np.float32, np.float64):
    x = np.linspace(-80, 80, 100_001).astype(dtype)
    sloppy(x)  # the first caller compiles fast_exp for this dtype, inside a fast-math kernel
    expected = np.exp(x)
    print(float((np.abs(fast_exp_array(x) - expected) / np.spacing(expected)).max()))
"""


def test_fast_exp_keeps_its_accuracy_whichever_kernel_compiles_it_first(tmp_path):
    # numba hands a caller's fastmath on to callees that leave it unset; fast_exp sets it, so a fast-math kernel
    # compiling it first (a fresh process, an empty cache) cannot loosen it for every later caller
    import os
    import subprocess
    import sys

    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", FASTMATH_CALLER_FIRST], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    worst_float32, worst_float64 = (float(line) for line in proc.stdout.split())
    assert worst_float32 <= 3 and worst_float64 <= 2
