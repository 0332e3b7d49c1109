"""dmf2mel.models.kernels: one switch between the numba CPU kernels and torch ops, for all three users."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from dmf2mel.models import kernels
from dmf2mel.models.attention import SplineMapAttention
from dmf2mel.models.kan import KANLinear


def _graph_names(tensor: torch.Tensor) -> set[str]:
    """Names of the autograd nodes behind ``tensor``."""
    names, stack, seen = set(), [tensor.grad_fn], set()
    while stack:
        node = stack.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        names.add(type(node).__name__)
        stack.extend(next_node for next_node, _ in node.next_functions)
    return names


@pytest.fixture(autouse=True)
def restore():
    yield
    kernels.set_backend("numba")


def test_the_switch_routes_dropout_kan_and_attention():
    torch.manual_seed(0)
    attention = SplineMapAttention(16, n_heads=2, dropout=0.3, attn_dropout=0.2).train()
    x = torch.randn(2, 9, 16, requires_grad=True)
    on = _graph_names(attention(x))
    assert {"_NumbaDropoutBackward", "_FeatureKANBackward", "_RowAttentionBackward"} <= on
    kernels.set_backend("torch")
    assert kernels.backend() == "torch" and not kernels.enabled()
    off = _graph_names(attention(x))
    assert not {"_NumbaDropoutBackward", "_FeatureKANBackward", "_RowAttentionBackward"} & off
    assert "_LocalSplineContractionBackward" in off
    assert "_LocalSplineContractionBackward" in _graph_names(KANLinear(3, 2)(torch.randn(4, 3)))


def test_unknown_names_are_refused_in_code_and_in_the_environment():
    with pytest.raises(ValueError, match="'cuda'.*expected one of numba, torch"):
        kernels.set_backend("cuda")
    env = dict(os.environ, DMF2MEL_KERNELS="Torch")
    result = subprocess.run(
        [sys.executable, "-c", "import dmf2mel.models"], env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0 and "DMF2MEL_KERNELS='Torch': expected one of numba, torch" in result.stderr


def test_the_environment_chooses_torch():
    env = dict(os.environ, DMF2MEL_KERNELS="torch")
    code = "from dmf2mel.models import kernels; print(kernels.backend())"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "torch"
