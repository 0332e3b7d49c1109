"""The selective scan as a plain loop over time: slow, obviously correct, the oracle for tests.

Implements Mamba's (Gu & Dao, 2023) discretised selective state-space recurrence

    delta_t = softplus(delta_t + delta_bias)          (if delta_softplus)
    h_t     = exp(delta_t * A) * h_{t-1} + delta_t * B_t * u_t
    y_t     = C_t . h_t + D * u_t
    out_t   = y_t * silu(z_t)                           (if z is given)

with the argument conventions of ``mamba_ssm``'s ``selective_scan_fn`` (variable B and C).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def selective_scan_reference(
    u: torch.Tensor,
    delta: torch.Tensor,
    A: torch.Tensor,
    B: torch.Tensor,
    C: torch.Tensor,
    D: torch.Tensor | None = None,
    z: torch.Tensor | None = None,
    delta_bias: torch.Tensor | None = None,
    delta_softplus: bool = False,
) -> torch.Tensor:
    """Selective scan by a loop over time.

    Parameters
    ----------
    u, delta, z : (batch, dim, length)
    A : (dim, d_state), real
    B, C : (batch, d_state, length)
    D, delta_bias : (dim,)

    Returns
    -------
    out : (batch, dim, length), the dtype of ``u``.
    """
    dtype_in = u.dtype
    u, delta, A, B, C = (t.float() if t.dtype in (torch.float16, torch.bfloat16) else t for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias[..., None].to(delta.dtype)
    if delta_softplus:
        delta = F.softplus(delta)
    batch, dim, length = u.shape
    state = u.new_zeros(batch, dim, A.shape[1])
    outputs = []
    for t in range(length):
        decay = torch.exp(delta[:, :, t, None] * A)  # (batch, dim, d_state)
        drive = (delta[:, :, t] * u[:, :, t])[:, :, None] * B[:, None, :, t]
        state = decay * state + drive
        outputs.append(torch.einsum("bdn,bn->bd", state, C[:, :, t]))
    out = torch.stack(outputs, dim=-1)
    if D is not None:
        out = out + u * D[:, None].to(u.dtype)
    if z is not None:
        out = out * F.silu(z)
    return out.to(dtype_in)
