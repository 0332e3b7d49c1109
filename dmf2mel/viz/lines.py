"""Line plots for curves the chapters compare: response functions, correlations against lag, training curves."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go

from dmf2mel.errors import UserError
from dmf2mel.viz.style import SERIES_COLORS, log_axis


def line_figure(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str,
    x_title: str,
    y_title: str,
    colors: Mapping[str, str] | None = None,
    log_y: bool = False,
) -> go.Figure:
    """One line per labelled (x, y) series.

    Parameters
    ----------
    series : mapping label -> (x (n,), y (n,))
        Drawn in the given order, in the book's series colours unless ``colors`` names one.
    title : str
        The figure's title (state the finding).
    x_title, y_title : str
        Axis titles, with units.
    colors : mapping label -> colour, optional
        E.g. ``{"true": viz.TRUE_COLOR}``.
    log_y : bool
        Logarithmic y axis.
    """
    colors = dict(colors or {})
    palette = iter(SERIES_COLORS * (1 + len(series) // len(SERIES_COLORS)))
    figure = go.Figure()
    for label, (x, y) in series.items():
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        if x.ndim != 1 or x.shape != y.shape:
            raise UserError(f"series {label!r}: x and y must be 1-D of one length, got {x.shape} and {y.shape}")
        colour = colors.get(label) or next(palette)
        figure.add_trace(go.Scatter(x=x, y=y, mode="lines", name=label, line=dict(color=colour)))
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    if log_y:
        figure.update_yaxes(**log_axis(*(y for _, y in series.values())))
    return figure
