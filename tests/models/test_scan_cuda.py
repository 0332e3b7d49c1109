"""The "cuda" backend (mamba_ssm's kernel) against the reference loop, on a GPU only."""

from __future__ import annotations

import pytest
import torch

from dmf2mel.models.scan import selective_scan
from dmf2mel.models.scan.cuda import load_mamba_ssm_scan

pytestmark = pytest.mark.cuda

if not torch.cuda.is_available():
    pytest.skip("the 'cuda' scan backend needs a CUDA GPU; none is visible to torch", allow_module_level=True)
if load_mamba_ssm_scan()[0] is None:
    pytest.skip(
        f"the 'cuda' scan backend needs mamba_ssm (pip install 'dmf2mel[cuda]'): {load_mamba_ssm_scan()[1]}",
        allow_module_level=True,
    )

from test_scan import INPUT_NAMES, assert_close_relative, make_inputs, scan_and_grads, with_grad  # noqa: E402


@pytest.mark.parametrize("use_optional", [False, True])
@pytest.mark.parametrize("shape", [(2, 8, 1, 4), (2, 8, 37, 16), (2, 128, 640, 128)])
def test_cuda_matches_reference(shape, use_optional):
    inputs = make_inputs(*shape, dtype=torch.float32)
    if not use_optional:
        inputs.update(D=None, z=None, delta_bias=None)
    inputs = with_grad({name: None if t is None else t.cuda() for name, t in inputs.items()})
    grad_out = torch.randn(shape[:3], generator=torch.Generator().manual_seed(1)).cuda()
    out_ref, grads_ref = scan_and_grads(inputs, "reference", grad_out=grad_out)
    out_cuda, grads_cuda = scan_and_grads(inputs, "cuda", grad_out=grad_out)
    assert_close_relative(out_cuda, out_ref, 1e-4, "out")
    for name in INPUT_NAMES:
        if inputs[name] is not None:
            assert_close_relative(grads_cuda[name], grads_ref[name], 1e-3, f"d{name}")


def test_auto_picks_cuda_for_gpu_tensors():
    inputs = with_grad({name: t.cuda() for name, t in make_inputs(1, 4, 5, 2, dtype=torch.float32).items()})
    out = selective_scan(**inputs, delta_softplus=True, backend="auto")
    assert "SelectiveScan" in type(out.grad_fn).__name__ and "CPU" not in type(out.grad_fn).__name__
