"""What the registered models compute, in a few numbers: tells a faster or tidier implementation from new maths.

A benchmark report records the commit whose code it trained. When the models' code changes afterwards, the report
describes the code as it was - unless the change computes the same functions (a faster kernel, a refactor). The
fingerprint tells the two apart. For every model of :data:`~dmf2mel.models.registry.MODELS`, built as the quick
profile builds it (the ``small`` DMF2Mel config) from a fixed seed, in float64:

- a gradient-trained model takes one training step's forward and backward pass on a fixed random batch (training
  mode, so with its dropout masks drawn from a fixed seed; the paper loss) and is summarised by the loss, the
  projection of its output on a fixed random direction, and the projection of its gradient, parameter by parameter
  in registration order, on another;
- a closed-form model (the linear decoder) is fitted on fixed random pairs and summarised by the projection of its
  prediction.

Float64 does not make these numbers bit-identical across machines: the summation order of a kernel and the
vector instructions of the CPU change the last bits, and the fingerprint keeps what the model was built from. On
the same code the CNN, VLAAI, the linear decoder and every DMF2Mel variant agree to about 1e-13 (relative) or
better between one and two torch threads. Until the SplineMap attention drew its orthogonal weights with a float64
QR (:func:`dmf2mel.models.kan.orthogonal_`), DMF2Mel and its SplineMap ablations moved by about 1e-8 between one
and two threads and by up to 3.2e-7 between two machines (the no-DC-FAM ablation's gradient projection): torch's
float32 QR rounds differently with the thread count and the CPU, so the models started from weights 3e-7 apart; the
float64 QR moved the fingerprints by at most 2.3e-7. What is left between CPUs with other vector instructions is
about 1e-10 (float32 elementwise functions in the BiMamba's initialisation). A change of the maths (another
initialisation, another dropout mask, a different layer) moved them by a relative 2.6 to 6.7 in this project's
history. :func:`same_fingerprint` compares them to a relative 1e-4: three hundred times the largest difference seen
between machines, four orders of magnitude under the smallest change of the maths.

The fingerprint covers the models and the loss (:data:`COVERED`); the training loop and the data windows
(``dmf2mel/train.py``, ``dmf2mel/data/datasets.py``) are not in it.
"""

from __future__ import annotations

import math

import numpy as np
import torch

#: Sizes of the fixed batch: a 5 s window at 64 Hz (the quick profile's), 64 channels, 10 bands, 4 subjects.
BATCH, WINDOW, N_CHANS, N_MELS, N_SUBJECTS = 2, 320, 64, 10, 4
#: The model config the quick profile trains (``dmf2mel.train.PROFILES["quick"].model_preset``).
MODEL_PRESET = "small"
#: The code the fingerprint covers: a change elsewhere can change training without changing these numbers.
COVERED = ("dmf2mel/models/", "dmf2mel/losses.py")
#: Relative tolerance of :func:`same_fingerprint`.
RTOL = 1e-4


def _direction(shape, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float64)


def model_fingerprint(name: str) -> list[float]:
    """The numbers of one registered model (see the module docstring)."""
    from dmf2mel.losses import PaperLoss
    from dmf2mel.models.registry import model_spec

    spec = model_spec(name)
    torch.manual_seed(0)
    model = spec.build(spec.default_config(MODEL_PRESET, N_SUBJECTS, N_CHANS, N_MELS)).double()
    data = torch.Generator().manual_seed(1)
    eeg = _direction((BATCH, WINDOW, N_CHANS), data)
    mel = _direction((BATCH, WINDOW, N_MELS), data)
    subject = torch.arange(BATCH) % N_SUBJECTS
    directions = torch.Generator().manual_seed(2)
    if spec.closed_form:
        pairs = [(eeg[i].numpy(), mel[i].numpy()) for i in range(BATCH)]
        model.fit(pairs[:1], pairs[1:]).eval()
        with torch.no_grad():
            out = model(eeg, subject)
        return [float((out * _direction(out.shape, directions)).sum())]
    model.train()
    torch.manual_seed(3)  # the dropout masks
    out = model(eeg, subject)
    loss = PaperLoss()(out, mel)
    loss.backward()
    gradient = sum(
        float((p.grad * _direction(p.shape, directions)).sum()) if p.grad is not None else 0.0
        for p in model.parameters()
    )
    return [float(loss.detach()), float((out.detach() * _direction(out.shape, directions)).sum()), gradient]


def fingerprint(names=None) -> dict[str, list[float]]:
    """``{model name: numbers}`` for ``names`` (default: every registered model).

    Computed with the numba kernels whatever the switch says (:mod:`dmf2mel.models.kernels`: the default, which the
    benchmarks train with; the torch path draws other dropout masks). torch's random state is left as it was.
    """
    from dmf2mel.models import kernels
    from dmf2mel.models.registry import model_names

    state, backend = torch.get_rng_state(), kernels.backend()
    kernels.set_backend("numba")
    try:
        return {name: model_fingerprint(name) for name in (names or model_names())}
    finally:
        torch.set_rng_state(state)
        kernels.set_backend(backend)


def same_fingerprint(a: dict[str, list[float]], b: dict[str, list[float]], rtol: float = RTOL) -> bool:
    """Whether two fingerprints have the same models and agree on every number to ``rtol`` (relative)."""
    if set(a) != set(b):
        return False
    for name in a:
        if len(a[name]) != len(b[name]):
            return False
        for x, y in zip(a[name], b[name]):
            if not (math.isfinite(x) and math.isfinite(y)) or not np.isclose(x, y, rtol=rtol, atol=0.0):
                return False
    return True
