"""Per-module parameter table of a model (the book prints it next to the official ≈ 5.88 M).

>>> from dmf2mel.models import DMF2Mel, DMF2MelConfig, format_summary
>>> print(format_summary(DMF2Mel(DMF2MelConfig.paper())))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

#: Parameters of the official DMF2Mel (``Decoder`` in ``models/DMF2Mel.py`` of github.com/fchest/DMF2Mel) by module,
#: under the names of this package's modules. Counted by building the official classes with the arguments of its
#: ``train.py`` (d_model 64, d_inner 1024, 2 heads, kernels (9, 1)) and summing ``p.numel()`` per child module, with
#: this package's :class:`~dmf2mel.models.mamba.Mamba` standing in for ``mamba_ssm.Mamba`` (same parameter names and
#: shapes). Shared modules count once: the fusion's six attention layers are ``slf_attn1`` .. ``slf_attn6``
#: (``slf_attn1`` serves both self-attentions and the first cross-attention); ``layer_norm`` serves the subject code
#: and the stem.
OFFICIAL_PARAMETERS_BY_MODULE = {
    "input projection": 0,
    "subject conditioning": 5_504,  # sub_proj: Linear(85, 64) on a one-hot code
    "stem LayerNorm": 128,
    "stem attention": 234_372,
    "stem feed-forward": 656_576,
    "HAMS-Net": 35_396,
    "DC-FAM": 3_091_449,
    "fusion attention": 1_406_232,  # 6 x 234,372
    "convMamba": 452_800,
    "head": 65,  # Linear(64, 1)
}
#: Parameter count of the official DMF2Mel implementation (the sum of :data:`OFFICIAL_PARAMETERS_BY_MODULE`).
OFFICIAL_DMF2MEL_PARAMETERS = sum(OFFICIAL_PARAMETERS_BY_MODULE.values())
#: Which top-level modules of :class:`~dmf2mel.models.DMF2Mel` make up each official module.
OUR_MODULES = {
    "input projection": ("input_proj",),
    "subject conditioning": ("subject_embedding",),
    "stem LayerNorm": ("subject_norm", "stem_norm"),
    "stem attention": ("stem_attention",),
    "stem feed-forward": ("stem_ffn",),
    "HAMS-Net": ("hams",),
    "DC-FAM": ("dcfam",),
    "fusion attention": ("hams_self_attention", "dcfam_self_attention", "cross_attention"),
    "convMamba": ("convmamba",),
    "head": ("head",),
}
#: Why a module's count differs from the official one (at the paper's sizes).
DIFFERENCE_NOTES = {
    "input projection": "only when the EEG has another channel count than d_model",
    "subject conditioning": "an embedding table with an 'unknown' row instead of one-hot x Linear with a bias: same size",
    "HAMS-Net": (
        "+4,160 zero-initialised 1x1 output convolution; -816: 3-tap kernels where the official 3x3 kernels on a 1 x T "
        "map use only their middle row; -20: the official ADAF's feedback convolution, never called; +16: QK-norm's "
        "two LayerNorms in the position attention"
    ),
    "DC-FAM": "the official runs with the 640 time steps as channels; here d_model channels along time",
    "head": "10 mel bands instead of one channel",
}


@dataclass(frozen=True)
class SummaryRow:
    """One top-level module: its name, its parameters, and their share of the model's total.

    A module shared with an earlier row (e.g. one self-attention used for both branches) counts
    zero here and names that row in ``shared_with``, so the rows add up to the total.
    """

    name: str
    parameters: int
    share: float
    shared_with: str | None = None


def summary(model: nn.Module) -> list[SummaryRow]:
    """Parameter count per top-level module of ``model``, in definition order.

    Parameters held directly by ``model`` (not by a child) appear as the row ``"(own)"``. Each
    parameter is counted once, by the first row that holds it.

    Parameters
    ----------
    model : torch.nn.Module

    Returns
    -------
    list of SummaryRow
        Their ``parameters`` sum to ``sum(p.numel() for p in model.parameters())``.
    """
    total = sum(p.numel() for p in model.parameters())
    seen: dict[int, str] = {}
    rows = []
    # remove_duplicate=False keeps a child registered under two names (a shared layer) as two rows
    children = [(name, m) for name, m in model.named_modules(remove_duplicate=False) if name and "." not in name]
    groups = [(name, list(child.parameters())) for name, child in children]
    groups.append(("(own)", list(model.parameters(recurse=False))))
    for name, parameters in groups:
        if not parameters:
            continue
        fresh = [p for p in parameters if id(p) not in seen]
        owners = sorted({seen[id(p)] for p in parameters if id(p) in seen})
        count = sum(p.numel() for p in fresh)
        for p in fresh:
            seen[id(p)] = name
        rows.append(SummaryRow(name, count, count / total if total else 0.0, ", ".join(owners) or None))
    return rows


def format_summary(model_or_rows: nn.Module | list[SummaryRow]) -> str:
    """The :func:`summary` table as aligned text, with a total line.

    Parameters
    ----------
    model_or_rows : torch.nn.Module or list of SummaryRow

    Returns
    -------
    str
    """
    rows = summary(model_or_rows) if isinstance(model_or_rows, nn.Module) else model_or_rows
    total = sum(row.parameters for row in rows)
    width = max([len("module"), len("total"), *(len(row.name) for row in rows)])
    lines = [f"{'module':<{width}}  {'parameters':>12}  {'share':>7}"]
    for row in rows:
        note = f"  (shared with {row.shared_with})" if row.shared_with else ""
        lines.append(f"{row.name:<{width}}  {row.parameters:>12,}  {row.share:>7.1%}{note}")
    lines.append(f"{'total':<{width}}  {total:>12,}  {1.0 if total else 0.0:>7.1%}")
    return "\n".join(lines)


def official_comparison(model: nn.Module) -> list[dict[str, object]]:
    """Parameters per module of ``model`` (a :class:`~dmf2mel.models.DMF2Mel`) next to the official code's.

    Returns
    -------
    list of dicts with keys ``"module"``, ``"official"``, ``"this book"``, ``"difference"`` (this book minus
    official) and ``"why"``, one per entry of :data:`OFFICIAL_PARAMETERS_BY_MODULE`; the columns sum to the two
    totals (every parameter of ``model`` is in exactly one row).
    """
    by_name = {row.name: row.parameters for row in summary(model)}
    rows = []
    for module, official in OFFICIAL_PARAMETERS_BY_MODULE.items():
        ours = sum(by_name.pop(name, 0) for name in OUR_MODULES[module])
        rows.append(
            {
                "module": module,
                "official": official,
                "this book": ours,
                "difference": ours - official,
                "why": DIFFERENCE_NOTES.get(module, "") if ours != official else "",
            }
        )
    if by_name:
        raise ValueError(f"official_comparison: modules without an official counterpart: {sorted(by_name)}")
    return rows


__all__ = [
    "OFFICIAL_DMF2MEL_PARAMETERS",
    "OFFICIAL_PARAMETERS_BY_MODULE",
    "SummaryRow",
    "format_summary",
    "official_comparison",
    "summary",
]
