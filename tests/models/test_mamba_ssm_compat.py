"""Our Mamba's state dict is interchangeable with ``mamba_ssm.modules.mamba_simple.Mamba``.

mamba_ssm needs its compiled CUDA extension even to import, so the round trip runs only where it is
installed (the ``cuda`` extra); the name-and-shape check below runs everywhere.
"""

import math

import pytest
import torch

from dmf2mel.models.mamba import Mamba

D_MODEL, D_STATE, D_CONV, EXPAND = 64, 128, 4, 2


def documented_mamba_ssm_shapes(d_model, d_state, d_conv, expand):
    """Parameter names and shapes of mamba_ssm's Mamba (mamba_simple.py, bias=False, conv_bias=True)."""
    d_inner = expand * d_model
    dt_rank = math.ceil(d_model / 16)
    return {
        "in_proj.weight": (2 * d_inner, d_model),
        "conv1d.weight": (d_inner, 1, d_conv),
        "conv1d.bias": (d_inner,),
        "x_proj.weight": (dt_rank + 2 * d_state, d_inner),
        "dt_proj.weight": (d_inner, dt_rank),
        "dt_proj.bias": (d_inner,),
        "A_log": (d_inner, d_state),
        "D": (d_inner,),
        "out_proj.weight": (d_model, d_inner),
    }


@pytest.mark.parametrize("d_model, d_state", [(D_MODEL, D_STATE), (40, 16)])
def test_parameter_names_and_shapes_match_mamba_ssm(d_model, d_state):
    ours = Mamba(d_model, d_state=d_state, d_conv=D_CONV, expand=EXPAND, scan_backend="reference")
    shapes = {name: tuple(t.shape) for name, t in ours.state_dict().items()}
    assert shapes == documented_mamba_ssm_shapes(d_model, d_state, D_CONV, EXPAND)


def test_state_dict_round_trip_with_mamba_ssm():
    mamba_simple = pytest.importorskip(
        "mamba_ssm.modules.mamba_simple",
        reason="mamba_ssm is a GPU-only extra (it needs its compiled CUDA extension even to import)",
        exc_type=ImportError,
    )
    torch.manual_seed(0)
    ours = Mamba(D_MODEL, d_state=D_STATE, d_conv=D_CONV, expand=EXPAND, scan_backend="reference")
    theirs = mamba_simple.Mamba(D_MODEL, d_state=D_STATE, d_conv=D_CONV, expand=EXPAND)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    back = Mamba(D_MODEL, d_state=D_STATE, d_conv=D_CONV, expand=EXPAND, scan_backend="reference")
    back.load_state_dict(theirs.state_dict(), strict=True)
    for name, tensor in ours.state_dict().items():
        torch.testing.assert_close(back.state_dict()[name], tensor, msg=name)
    if not torch.cuda.is_available():
        pytest.skip("mamba_ssm's forward pass needs a CUDA GPU; the state dicts round-trip")
    x = torch.randn(2, 100, D_MODEL, device="cuda")
    ours, theirs = ours.cuda(), theirs.cuda()
    theirs.use_fast_path = False  # the same unfused path as ours
    torch.testing.assert_close(ours(x), theirs(x), rtol=1e-4, atol=1e-4)
