"""Kernels compiled twice (dmf2mel.models.parallel_kernels): the serial copy on one thread, the same numbers."""

import importlib
import pkgutil

import numba
import numpy as np
import pytest
import torch
from numba import prange

import dmf2mel.models
from dmf2mel.models import DMF2Mel, DMF2MelConfig
from dmf2mel.models.parallel_kernels import ParallelKernel, parallel_kernel
from dmf2mel.models.scan.cpu import numba_threads


@parallel_kernel(fastmath=True)
def _row_sums(x, out):
    for row in prange(x.shape[0]):
        out[row] = x[row].sum()


@pytest.fixture
def torch_threads():
    """Set torch's thread count (numba follows it inside numba_threads); restored afterwards."""
    before = torch.get_num_threads()
    yield torch.set_num_threads
    torch.set_num_threads(before)


def test_one_thread_calls_the_serial_copy_and_more_threads_the_parallel_one(torch_threads):
    x = np.arange(12.0).reshape(4, 3)
    out = np.empty(4)
    torch_threads(1)
    with numba_threads():
        assert numba.get_num_threads() == 1
        _row_sums(x, out)
    assert _row_sums.serial.signatures and not _row_sums.parallel.signatures
    np.testing.assert_array_equal(out, x.sum(axis=1))
    if numba.config.NUMBA_NUM_THREADS < 2:
        pytest.skip("numba has one thread here: the parallel copy is never chosen")
    torch_threads(2)
    with numba_threads():
        _row_sums(x, out * 0)
    assert _row_sums.parallel.signatures
    assert _row_sums.__name__ == "_row_sums" and "_serial" in _row_sums.serial.py_func.__qualname__


def test_every_prange_kernel_of_the_package_has_a_serial_copy():
    """No kernel is compiled with parallel=True alone: on one thread it would go through numba's pool."""
    modules = [
        importlib.import_module(info.name) for info in pkgutil.walk_packages(dmf2mel.models.__path__, "dmf2mel.models.")
    ]
    twins, parallel_only = [], []
    for module in modules:
        for name, value in vars(module).items():
            if isinstance(value, ParallelKernel):
                twins.append(name)
            elif getattr(value, "targetoptions", {}).get("parallel"):
                parallel_only.append(f"{module.__name__}.{name}")
    assert not parallel_only
    assert {"kan_features", "attention_forward", "attention_backward", "scan_forward", "scan_backward"} <= set(twins)


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="needs numba's pool of at least 2 threads")
def test_the_model_trains_alike_on_one_thread_and_on_two(torch_threads):
    """Forward and backward of DMF2Mel (every numba kernel: KAN, attention, dropout, scan, feed-forward) in float64
    with the serial copies (one thread) and the parallel ones (two): equal up to rounding."""
    config = DMF2MelConfig.small(n_subjects=3, d_model=16, d_inner=32, d_state=4, d_ff_mamba=32, dropout=0.2)
    torch.manual_seed(0)
    model = DMF2Mel(config).double().train()
    eeg, subject = torch.randn(2, 64, 64, dtype=torch.float64), torch.tensor([0, 2])
    results = []
    for threads in (1, 2):
        torch_threads(threads)
        model.zero_grad()
        torch.manual_seed(1)  # the same dropout draws
        out = model(eeg, subject)
        out.square().mean().backward()
        results.append((out.detach(), [p.grad.clone() for p in model.parameters() if p.grad is not None]))
    (out_one, grads_one), (out_two, grads_two) = results
    from dmf2mel.models import attention_kernels, kan_kernels
    from dmf2mel.models.scan import cpu_kernels

    for kernel in (kan_kernels.kan_features, attention_kernels.attention_backward, cpu_kernels.scan_forward):
        assert kernel.serial.signatures and kernel.parallel.signatures, kernel.__name__  # both copies ran
    torch.testing.assert_close(out_two, out_one, rtol=1e-10, atol=1e-12)
    assert len(grads_one) == len(grads_two) > 0
    for one, two in zip(grads_one, grads_two):
        torch.testing.assert_close(two, one, rtol=1e-9, atol=1e-12)
