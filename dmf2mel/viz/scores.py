"""Scores next to their chance levels: per band, per subject, per model.

Every reconstruction score in the book is a Pearson r of a few hundredths to a few tenths, which
means nothing without the chance level of the same aggregation (see :mod:`dmf2mel.metrics`). These
bar charts always draw the two together: the bar is the score, the grey tick the 95th percentile of
the null distribution.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import plotly.graph_objects as go

from dmf2mel.errors import UserError
from dmf2mel.viz.mel import band_labels
from dmf2mel.viz.style import CHANCE_COLOR, SERIES_COLORS

CHANCE_MARKER = dict(symbol="line-ew", size=26, line=dict(width=3, color=CHANCE_COLOR), color=CHANCE_COLOR)


def _as_floats(values: Sequence[float | None]) -> np.ndarray:
    # Metrics write NaN as None (JSON); plotly leaves a gap for NaN.
    return np.array([np.nan if v is None else float(v) for v in values], dtype=np.float64)


def score_bars(
    scores: Mapping[str, float | None],
    chance: Mapping[str, float | None] | None = None,
    title: str = "Pearson r",
    x_title: str = "",
    y_title: str = "Pearson r",
    color: str = SERIES_COLORS[0],
) -> go.Figure:
    """One bar per label (subject, model, ...) with an optional chance tick on each.

    Parameters
    ----------
    scores : mapping label -> r
        In the order to draw; None is drawn as a gap.
    chance : mapping label -> r, optional
        The chance level of each score (same labels).
    title, x_title, y_title : str
        Title (state the finding) and axis titles.
    color : str
        Bar colour.
    """
    labels = list(scores)
    figure = go.Figure(go.Bar(x=labels, y=_as_floats(scores.values()), name="score", marker_color=color))
    if chance is not None:
        missing = [label for label in labels if label not in chance]
        if missing:
            raise UserError(f"chance has no value for {missing}")
        figure.add_trace(
            go.Scatter(
                x=labels,
                y=_as_floats([chance[label] for label in labels]),
                mode="markers",
                marker=CHANCE_MARKER,
                name="chance (95th percentile of the null)",
            )
        )
    figure.update_layout(
        title=title,
        xaxis_title=x_title,
        yaxis_title=y_title,
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="bottom"),
    )
    return figure


def band_scores(
    per_band: Mapping[str, Sequence[float | None]],
    chance: Mapping[str, Sequence[float | None]] | None = None,
    title: str = "Pearson r per mel band",
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Grouped bars: one group per mel band, one bar per series (model, protocol), with chance ticks.

    Parameters
    ----------
    per_band : mapping label -> (n_mels,) scores
        E.g. ``{"known subjects": result["per_band"], "unknown subjects": ...}``.
    chance : mapping label -> (n_mels,) chance levels, optional
        Same labels as ``per_band``.
    title : str
        The figure's title.
    colors : mapping label -> colour, optional
        Defaults to the book's series colours in order.
    """
    if not per_band:
        raise UserError("per_band is empty")
    lengths = {len(values) for values in per_band.values()}
    if len(lengths) != 1:
        raise UserError(f"every series needs one score per band, got lengths {sorted(lengths)}")
    n_mels = lengths.pop()
    bands = band_labels(n_mels)
    colors = dict(colors or {})
    palette = iter(SERIES_COLORS * (1 + len(per_band) // len(SERIES_COLORS)))
    figure = go.Figure()
    for label, values in per_band.items():
        colour = colors.get(label) or next(palette)
        figure.add_trace(go.Bar(x=bands, y=_as_floats(values), name=label, marker_color=colour, offsetgroup=label))
        if chance is not None:
            if label not in chance or len(chance[label]) != n_mels:
                raise UserError(f"chance[{label!r}] must have {n_mels} values")
            figure.add_trace(
                go.Scatter(
                    x=bands,
                    y=_as_floats(chance[label]),
                    mode="markers",
                    marker=CHANCE_MARKER,
                    name=f"chance, {label}",
                    offsetgroup=label,
                    showlegend=False,
                )
            )
    figure.update_layout(
        title=title,
        barmode="group",
        scattermode="group",
        xaxis_title="mel band",
        yaxis_title="Pearson r",
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="bottom"),
    )
    return figure
