"""One picture of the whole model, drawn from its configuration: the figure each module chapter opens with.

:func:`architecture` builds :class:`~dmf2mel.models.DMF2Mel` from a :class:`~dmf2mel.models.DMF2MelConfig` and draws
its data flow - stem, the HAMS-Net and DC-FAM branches, the fusion attentions, convMamba, the head - with what
the configuration says about each part (repeats, sharing, switches, sizes) and the parameters the built model
really holds there. Nothing in it is drawn by hand: another configuration (an ablation, the paper's sizes) draws
another picture. A chapter passes the part it teaches as ``highlight``; the other parts are drawn faded.
"""

from __future__ import annotations

from dataclasses import dataclass

import plotly.graph_objects as go

from dmf2mel.models.dmf2mel import DMF2Mel, DMF2MelConfig
from dmf2mel.viz.style import CHANCE_COLOR, PREDICTED_COLOR, TRUE_COLOR

# The parts of the model, in the order data flow through them, with the model's attributes each one owns.
PART_MODULES: dict[str, tuple[str, ...]] = {
    "stem": ("input_proj", "subject_embedding", "subject_norm", "stem_attention", "stem_ffn"),
    "hams": ("hams",),
    "dcfam": ("dcfam",),
    "fusion": ("hams_self_attention", "dcfam_self_attention", "cross_attention"),
    "convmamba": ("convmamba",),
    "head": ("head",),
}
# What a chapter may highlight: a part, or "splinemap", every part built on SplineMap attention (the stem's
# attention and the fusion's).
HIGHLIGHTS = (*PART_MODULES, "splinemap")
SPLINEMAP_PARTS = ("stem", "fusion")

_FADED = "#D9D9D9"
_FADED_TEXT = "#8C8C8C"
# The diagram runs top to bottom, sized in pixels so that its text fits at any width down to a phone's:
# a box is as tall as its lines, the two branches stand side by side.
_LINE_PX = 15
_PAD_PX = 10
_GAP_PX = 26  # between rows: room for the arrows
_WIDE, _NARROW = 0.62, 0.46  # box widths, as fractions of the figure's width


@dataclass(frozen=True)
class Box:
    """One box of the diagram: its part (None for the input and output), horizontal centre and width (fractions
    of the figure's width), title and lines of text; its vertical place is set by :func:`_place`."""

    part: str | None
    x: float
    width: float
    title: str
    lines: tuple[str, ...]

    @property
    def height(self) -> float:
        return (len(self.lines) + 2) * _LINE_PX + 2 * _PAD_PX  # title, lines, parameters


def part_parameters(model: DMF2Mel) -> dict[str, int]:
    """Trainable parameters of each part of ``model`` (a module shared by several repeats or layers counts once).

    The parts partition the model's parameters: their sum is ``sum(p.numel() for p in model.parameters())``.
    """
    counts: dict[str, int] = {}
    seen: set[int] = set()
    for part, names in PART_MODULES.items():
        params = [p for name in names for p in getattr(model, name).parameters()]
        unique = {id(p): p for p in params if id(p) not in seen}
        seen.update(unique)
        counts[part] = sum(p.numel() for p in unique.values())
    return counts


def _count(n: int) -> str:
    return f"{n / 1e6:.2f} M" if n >= 1e6 else f"{n / 1e3:.1f} k" if n >= 1e3 else str(n)


def _repeats(n: int, shared: bool) -> str:
    if n == 1:
        return "1 pass"
    return f"× {n}, one shared block" if shared else f"× {n}, {n} blocks"


def _rows(config: DMF2MelConfig) -> list[list[Box]]:
    """The diagram's rows of boxes, top to bottom, every line read from ``config``."""
    c = config
    attention = "SplineMap attention" if c.use_splinemap else "attention (linear projections)"
    stem_in = f"Linear {c.n_chans}→{c.d_model}" if c.n_chans != c.d_model else "no input projection"
    hams = (
        ("identity (use_hams=False)",)
        if not c.use_hams
        else (_repeats(c.n_hams_repeats, c.share_hams), f"ADAF, reduction {c.hams_reduction}")
    )
    dcfam = (
        ("identity (use_dcfam=False)",)
        if not c.use_dcfam
        else (_repeats(c.n_dcfam_repeats, c.share_dcfam), f"{c.dcfam_n_heads} heads, {c.dcfam_kernel_size}-step")
    )
    shared = "one shared" if c.share_fusion_self_attention else "one per branch"
    n_pass = c.n_convmamba_repeats
    residuals = n_pass if c.convmamba_last_residual else n_pass - 1
    mamba = f"BiMamba, state {c.d_state}" if c.use_mamba else "no BiMamba (use_mamba=False)"
    head = f"Linear {c.d_model}→{c.n_mels}" if c.head == "bands" else f"Linear {c.d_model}→1, broadcast"
    n_out = c.n_mels if c.head == "bands" else 1
    return [
        [Box(None, 0.5, _NARROW, "EEG", (f"time × {c.n_chans}, subject id",))],
        [Box("stem", 0.5, _WIDE, "Stem", (f"{stem_in}, + subject embedding", attention, "conv feed-forward"))],
        [Box("hams", 0.25, _NARROW, "HAMS-Net", hams), Box("dcfam", 0.75, _NARROW, "DC-FAM", dcfam)],
        [
            Box(
                "fusion",
                0.5,
                _WIDE,
                "Fusion",
                (
                    f"self-attention ({shared})",
                    f"{c.n_cross_layers} cross-attentions",
                    "each a SplineMap attention" if c.use_splinemap else "linear projections",
                ),
            )
        ],
        [
            Box(
                "convmamba",
                0.5,
                _WIDE,
                "convMamba",
                (
                    f"{_repeats(n_pass, c.share_convmamba)}, residual on {residuals} of {n_pass}",
                    f"Conv-BN-ReLU, {mamba}",
                ),
            )
        ],
        [Box("head", 0.5, _NARROW, "Head", (head,))],
        [Box(None, 0.5, _NARROW, "Mel", (f"time × {n_out}",))],
    ]


def _place(rows: list[list[Box]]) -> tuple[list[tuple[Box, float, float]], float]:
    """Each box with its top and bottom (pixels from the bottom of the plot), and the plot's height."""
    heights = [max(box.height - (_LINE_PX if box.part is None else 0) for box in row) for row in rows]
    total = sum(heights) + _GAP_PX * (len(rows) - 1)
    placed, top = [], total
    for row, height in zip(rows, heights):
        placed += [(box, top, top - height) for box in row]
        top -= height + _GAP_PX
    return placed, total


def _lit(part: str | None, highlight: str | None) -> bool:
    if part is None or highlight is None:
        return True
    if highlight == "splinemap":
        return part in SPLINEMAP_PARTS
    return part == highlight


def architecture(
    config: DMF2MelConfig | None = None, highlight: str | None = None, *, title: str | None = None
) -> go.Figure:
    """The data flow of DMF2Mel under ``config``, top to bottom, one box per part, ``highlight`` drawn in colour.

    Parameters
    ----------
    config : DMF2MelConfig, optional
        The configuration to draw (default :meth:`DMF2MelConfig.small`, the book's model). The model is built
        from it to count each part's parameters.
    highlight : str, optional
        One of :data:`HIGHLIGHTS`: the part a chapter teaches (``"splinemap"`` lights every part built on
        SplineMap attention). None draws every part in colour.
    title : str, optional
        The figure's title (default: the parameter count of the whole model).

    Returns
    -------
    plotly.graph_objects.Figure
        Boxes with what the configuration sets (repeats, sharing, switches, sizes) and each part's parameters.
    """
    if highlight is not None and highlight not in HIGHLIGHTS:
        raise ValueError(f"highlight: expected one of {', '.join(HIGHLIGHTS)} or None, got {highlight!r}")
    config = DMF2MelConfig.small() if config is None else config
    model = DMF2Mel(config)
    params = part_parameters(model)
    total = sum(p.numel() for p in model.parameters())
    placed, height = _place(_rows(config))
    fig = go.Figure()
    _arrows(fig, placed)
    for box, top, bottom in placed:
        lit = _lit(box.part, highlight)
        colour = (PREDICTED_COLOR if highlight is not None else TRUE_COLOR) if lit else _FADED
        if box.part is None:
            colour = CHANCE_COLOR
        fig.add_shape(
            type="rect",
            x0=box.x - box.width / 2,
            x1=box.x + box.width / 2,
            y0=bottom,
            y1=top,
            line={"color": colour, "width": 3 if lit and box.part is not None else 1.5},
            fillcolor="white",
            layer="below",
        )
        lines = list(box.lines)
        if box.part is not None:
            lines.append(f"<i>{_count(params[box.part])} parameters</i>")
        fig.add_annotation(
            x=box.x,
            y=(top + bottom) / 2,
            text=f"<b>{box.title}</b><br>" + "<br>".join(lines),
            showarrow=False,
            font={"size": 11, "color": "black" if lit else _FADED_TEXT},
            align="center",
        )
    margin = {"l": 10, "r": 10, "t": 50, "b": 10}
    fig.update_layout(
        title=title or f"DMF2Mel: {total:,} parameters",
        xaxis={"visible": False, "range": [0, 1], "fixedrange": True},
        yaxis={"visible": False, "range": [0, height], "fixedrange": True},
        height=height + margin["t"] + margin["b"],
        margin=margin,
        plot_bgcolor="white",
        hovermode=False,
    )
    return fig


def _arrows(fig: go.Figure, placed: list[tuple[Box, float, float]]) -> None:
    """Arrows along the data flow, from every box of a row to every box of the next (the stem feeds both branches,
    both branches feed the fusion)."""
    rows: dict[float, list[tuple[Box, float, float]]] = {}
    for entry in placed:
        rows.setdefault(entry[1], []).append(entry)
    tops = sorted(rows, reverse=True)
    for upper, lower in zip(tops, tops[1:]):
        for start, _, start_bottom in rows[upper]:
            for end, end_top, _ in rows[lower]:
                fig.add_annotation(
                    x=end.x,
                    y=end_top,
                    ax=start.x,
                    ay=start_bottom,
                    xref="x",
                    yref="y",
                    axref="x",
                    ayref="y",
                    text="",
                    showarrow=True,
                    arrowhead=2,
                    arrowsize=1,
                    arrowwidth=1.5,
                    arrowcolor=CHANCE_COLOR,
                )


__all__ = ["HIGHLIGHTS", "PART_MODULES", "architecture", "part_parameters"]
