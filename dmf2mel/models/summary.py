"""Per-module parameter table of a model (the book prints it next to the official ≈ 5.88 M).

>>> from dmf2mel.models import DMF2Mel, DMF2MelConfig, format_summary
>>> print(format_summary(DMF2Mel(DMF2MelConfig.paper())))  # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

#: Parameter count of the official DMF2Mel implementation (with mambapy standing in for mamba_ssm).
OFFICIAL_DMF2MEL_PARAMETERS = 5_880_000


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


__all__ = ["OFFICIAL_DMF2MEL_PARAMETERS", "SummaryRow", "format_summary", "summary"]
