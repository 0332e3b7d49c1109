"""Figures and small measurements for the model chapters (SplineMap/AGKAN, DC-FAM, HAMS-Net, convMamba, DMF2Mel).

Builders take plain arrays (or a benchmark report) and return a plotly figure; the notebook decides to show it.
Heatmap menus switch entries with plotly's own dropdown, so they work in the static HTML book.

The measurement helpers (:func:`saved_tensor_bytes`, :func:`best_time`, :func:`module_shapes`, :func:`table`,
:func:`module_outputs`) exist so that the
chapters can show live numbers in one line each; they measure, they do not change the models.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import plotly.graph_objects as go
import torch
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots
from torch import nn

from dmf2mel.errors import UserError
from dmf2mel.viz.style import CHANCE_COLOR, SERIES_COLORS, log_axis

#: Non-negative weights (attention, neighbourhood weights): a sequential scale unlike the mel spectrograms'.
WEIGHT_COLORSCALE = "Blues"
#: Signed maps (raw, unnormalised weights): diverging, centred on zero.
SIGNED_COLORSCALE = "RdBu_r"
#: B-spline bases are drawn in colours sampled along this scale, left to right.
BASIS_COLORSCALE = "Viridis"
BYTES_PER_MIB = 2**20


def _palette(n: int) -> list[str]:
    return [SERIES_COLORS[i % len(SERIES_COLORS)] for i in range(n)]


def _as_2d(name: str, values) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    if array.ndim != 2 or 0 in array.shape:
        raise UserError(f"{name} must be a non-empty 2-D array, got shape {np.shape(values)}")
    return array


# -- B-splines and KAN edges ------------------------------------------------------------------------------------


def spline_bases(
    x: np.ndarray, bases: np.ndarray, knots: np.ndarray, grid_range: tuple[float, float], title: str
) -> go.Figure:
    """Every B-spline basis against ``x``, the knots as ticks, and their sum (a partition of unity on the grid).

    Parameters
    ----------
    x : (n,)
        Input values.
    bases : (n, n_bases)
        ``B_k(x)`` for every basis ``k``.
    knots : (n_knots,)
        The extended knot vector, drawn as dotted vertical lines.
    grid_range : (float, float)
        The grid's range, shaded.
    title : str
        The finding.
    """
    x = np.asarray(x, dtype=np.float64)
    bases = _as_2d("bases", bases)
    if bases.shape[0] != x.shape[0]:
        raise UserError(f"bases must have one row per x: {bases.shape[0]} rows for {x.shape[0]} x values")
    colours = sample_colorscale(BASIS_COLORSCALE, np.linspace(0, 0.9, bases.shape[1]))
    figure = go.Figure()
    figure.add_vrect(x0=grid_range[0], x1=grid_range[1], fillcolor=CHANCE_COLOR, opacity=0.08, line_width=0)
    for k in range(bases.shape[1]):
        figure.add_trace(go.Scatter(x=x, y=bases[:, k], mode="lines", name=f"B{k}", line=dict(color=colours[k])))
    figure.add_trace(
        go.Scatter(x=x, y=bases.sum(axis=1), mode="lines", name="sum", line=dict(color="black", dash="dash"))
    )
    for knot in np.asarray(knots, dtype=np.float64):
        figure.add_vline(x=float(knot), line=dict(color=CHANCE_COLOR, dash="dot", width=1))
    figure.update_layout(title=title, xaxis_title="input x (after LayerNorm, unitless)", yaxis_title="B_k(x)")
    return figure


def edge_functions(
    x: np.ndarray,
    curves: np.ndarray,
    title: str,
    parts: Mapping[str, np.ndarray] | None = None,
) -> go.Figure:
    """Small multiples of the learned function on each KAN edge ``phi_{o,i}(x)``: one panel per (output, input).

    Parameters
    ----------
    x : (n,)
    curves : (n_out, n_in, n)
        The total edge function per panel.
    title : str
    parts : mapping label -> (n_out, n_in, n), optional
        Components drawn thinner in the same panels (e.g. the SiLU base path and the spline path).
    """
    x = np.asarray(x, dtype=np.float64)
    curves = np.asarray(curves, dtype=np.float64)
    if curves.ndim != 3 or curves.shape[-1] != x.shape[0]:
        raise UserError(f"curves must have shape (n_out, n_in, {x.shape[0]}), got {curves.shape}")
    n_out, n_in, _ = curves.shape
    parts = dict(parts or {})
    figure = make_subplots(
        rows=n_out,
        cols=n_in,
        shared_xaxes=True,
        horizontal_spacing=0.03,
        vertical_spacing=0.05,
        column_titles=[f"input {i}" for i in range(n_in)],
        row_titles=[f"output {o}" for o in range(n_out)],
    )
    colours = _palette(len(parts) + 1)
    for o in range(n_out):
        for i in range(n_in):
            first = o == 0 and i == 0
            for (label, part), colour in zip(parts.items(), colours[1:]):
                figure.add_trace(
                    go.Scatter(
                        x=x,
                        y=part[o, i],
                        mode="lines",
                        name=label,
                        legendgroup=label,
                        showlegend=first,
                        line=dict(color=colour, width=1, dash="dot"),
                    ),
                    row=o + 1,
                    col=i + 1,
                )
            figure.add_trace(
                go.Scatter(
                    x=x,
                    y=curves[o, i],
                    mode="lines",
                    name="edge function",
                    legendgroup="total",
                    showlegend=first,
                    line=dict(color=colours[0], width=2),
                ),
                row=o + 1,
                col=i + 1,
            )
    figure.update_xaxes(title_text="x", row=n_out)
    figure.update_yaxes(title_text="φ(x)", col=1)
    figure.update_layout(
        title=title,
        height=max(320, 170 * n_out + 120),
        legend=dict(orientation="h", x=0.5, xanchor="center", y=-0.2, yanchor="top"),
        margin=dict(b=110),
    )
    return figure


def gate_histograms(gates: Mapping[str, np.ndarray], title: str) -> go.Figure:
    """Overlaid histograms of AGKAN gate values ``g`` in [0, 1], one per projection (1 = all KAN path).

    Parameters
    ----------
    gates : mapping label -> array of gate values (any shape, flattened)
    title : str
    """
    if not gates:
        raise UserError("gates is empty")
    figure = go.Figure()
    for (label, values), colour in zip(gates.items(), _palette(len(gates))):
        values = np.asarray(values, dtype=np.float64).ravel()
        figure.add_trace(
            go.Histogram(
                x=values, name=label, marker_color=colour, opacity=0.6, xbins=dict(start=0.0, end=1.0, size=0.02)
            )
        )
    figure.update_layout(
        title=title,
        barmode="overlay",
        xaxis_title="gate g (0 = prototype path, 1 = KAN path)",
        yaxis_title="tokens",
        xaxis_range=[0, 1],
    )
    return figure


# -- heatmaps ---------------------------------------------------------------------------------------------------


def heatmap_menu(
    maps: Mapping[str, np.ndarray],
    title: str,
    x_title: str,
    y_title: str,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    colorbar_title: str = "weight",
    signed: bool = False,
) -> go.Figure:
    """One heatmap with a dropdown choosing the map (head, layer, scale): works without a kernel.

    Parameters
    ----------
    maps : mapping label -> (rows, cols)
        Rows go along y, columns along x. Maps may differ in size when ``x`` and ``y`` are None.
    title, x_title, y_title : str
        The finding and the axis titles (with units).
    x, y : (cols,), (rows,), optional
        Coordinates (e.g. time in s); indices by default.
    colorbar_title : str
    signed : bool
        A diverging colour scale centred on zero (else a sequential one).
    """
    if not maps:
        raise UserError("maps is empty")
    arrays = {label: _as_2d(f"maps[{label!r}]", m) for label, m in maps.items()}
    first = next(iter(arrays.values()))
    colour = dict(colorscale=SIGNED_COLORSCALE, zmid=0.0) if signed else dict(colorscale=WEIGHT_COLORSCALE)
    figure = go.Figure(go.Heatmap(z=first, x=x, y=y, colorbar=dict(title=colorbar_title), **colour))
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    if len(arrays) > 1:
        buttons = [dict(label=label, method="restyle", args=[{"z": [m]}]) for label, m in arrays.items()]
        figure.update_layout(
            updatemenus=[
                dict(
                    buttons=buttons, direction="down", showactive=True, x=0.0, xanchor="left", y=1.02, yanchor="bottom"
                )
            ],
            title=dict(y=0.97, yanchor="top"),
            margin=dict(t=110),
        )
    return figure


def heatmap_panels(
    panels: Mapping[str, np.ndarray],
    title: str,
    x_title: str,
    y_title: str,
    x: np.ndarray | None = None,
    y: np.ndarray | None = None,
    colorbar_title: str = "weight",
    signed: bool = False,
) -> go.Figure:
    """Heatmaps stacked over one shared x axis (and one shared colour scale), one panel per label.

    Parameters are those of :func:`heatmap_menu`; every panel must have the same shape.
    """
    if not panels:
        raise UserError("panels is empty")
    arrays = {label: _as_2d(f"panels[{label!r}]", p) for label, p in panels.items()}
    if len({a.shape for a in arrays.values()}) != 1:
        raise UserError(f"every panel needs the same shape, got {[a.shape for a in arrays.values()]}")
    figure = make_subplots(
        rows=len(arrays), cols=1, shared_xaxes=True, vertical_spacing=0.1, subplot_titles=list(arrays)
    )
    stacked = np.stack(list(arrays.values()))
    limit = float(np.abs(stacked).max()) or 1.0
    axis = (
        dict(colorscale=SIGNED_COLORSCALE, cmin=-limit, cmax=limit)
        if signed
        else dict(colorscale=WEIGHT_COLORSCALE, cmin=0.0, cmax=float(stacked.max()) or 1.0)
    )
    for row, array in enumerate(arrays.values(), start=1):
        figure.add_trace(go.Heatmap(z=array, x=x, y=y, coloraxis="coloraxis"), row=row, col=1)
        figure.update_yaxes(title_text=y_title, row=row, col=1)
    figure.update_xaxes(title_text=x_title, row=len(arrays), col=1)
    figure.update_layout(
        title=title,
        coloraxis=dict(colorbar=dict(title=colorbar_title), **axis),
        height=max(320, 200 * len(arrays) + 120),
    )
    return figure


# -- lines and bars ---------------------------------------------------------------------------------------------


def scale_traces(series: Mapping[str, tuple[np.ndarray, np.ndarray]], title: str, y_title: str) -> go.Figure:
    """One panel per scale of a multi-scale network: a feature over time, drawn as steps of that scale's resolution.

    Parameters
    ----------
    series : mapping label -> (times (n,), values (n,))
        ``times`` in s, the start of each step (evenly spaced); a coarser scale has fewer, longer steps. Each step,
        the last included, is drawn over its whole span.
    title, y_title : str
    """
    if not series:
        raise UserError("series is empty")
    figure = make_subplots(
        rows=len(series), cols=1, shared_xaxes=True, vertical_spacing=0.04, subplot_titles=list(series)
    )
    for row, ((label, (times, values)), colour) in enumerate(zip(series.items(), _palette(len(series))), start=1):
        times, values = np.asarray(times, dtype=np.float64), np.asarray(values, dtype=np.float64)
        if times.shape != values.shape or times.ndim != 1:
            raise UserError(f"series {label!r}: times and values must be 1-D of one length")
        if times.size >= 2:  # draw the last step over its whole span too, so every scale ends where the window ends
            times = np.append(times, 2 * times[-1] - times[-2])
            values = np.append(values, values[-1])
        figure.add_trace(
            go.Scatter(
                x=times, y=values, mode="lines", line=dict(shape="hv", color=colour), name=label, showlegend=False
            ),
            row=row,
            col=1,
        )
    figure.update_xaxes(title_text="time (s)", row=len(series), col=1)
    figure.update_yaxes(title_text=y_title)
    figure.update_layout(title=title, height=150 * len(series) + 140)
    return figure


def scaling_figure(
    lengths: Sequence[int],
    series: Mapping[str, Sequence[float]],
    title: str,
    y_title: str,
    x_title: str = "sequence length T (samples)",
) -> go.Figure:
    """Cost against sequence length on log–log axes, one line with markers per method.

    A straight line of slope 1 is linear cost, of slope 2 quadratic. NaN values leave a gap.

    Parameters
    ----------
    lengths : (n,) sequence lengths
    series : mapping label -> (n,) costs (seconds, bytes, ...)
    title, y_title, x_title : str
    """
    lengths = np.asarray(lengths, dtype=np.float64)
    figure = go.Figure()
    for (label, values), colour in zip(series.items(), _palette(len(series))):
        values = np.asarray(values, dtype=np.float64)
        if values.shape != lengths.shape:
            raise UserError(f"series {label!r} has {values.shape[0]} values for {lengths.shape[0]} lengths")
        figure.add_trace(go.Scatter(x=lengths, y=values, mode="lines+markers", name=label, line=dict(color=colour)))
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    figure.update_xaxes(**log_axis(lengths))
    figure.update_yaxes(**log_axis(*series.values()))
    return figure


def growth_exponent(lengths: Sequence[int], values: Sequence[float]) -> float:
    """The exponent ``k`` of a cost that grows like ``T**k``: the slope of a line fitted on log–log axes.

    Parameters
    ----------
    lengths : (n,) sequence lengths
    values : (n,) costs; NaN and non-positive values are left out (at least two must remain)

    Returns
    -------
    float
        About 1 for a linear cost, 2 for a quadratic one.
    """
    lengths, values = np.asarray(lengths, dtype=np.float64), np.asarray(values, dtype=np.float64)
    keep = np.isfinite(values) & (values > 0)
    if keep.sum() < 2:
        raise UserError(f"growth_exponent needs at least two positive costs, got {values.tolist()}")
    return float(np.polyfit(np.log(lengths[keep]), np.log(values[keep]), 1)[0])


def first_length_below(lengths: Sequence[int], cost: Sequence[float], other: Sequence[float]) -> int | None:
    """The first length from which ``cost`` stays below ``other`` (None if it never does at the last length)."""
    lengths = list(lengths)
    below = np.asarray(cost, dtype=np.float64) < np.asarray(other, dtype=np.float64)
    for index in range(len(lengths)):
        if below[index:].all():
            return int(lengths[index])
    return None


def bar_figure(
    values: Mapping[str, float],
    title: str,
    y_title: str,
    *,
    x_title: str,
    log_y: bool = False,
    text_format: str = ".3g",
    reference: tuple[str, float] | None = None,
    color: str = SERIES_COLORS[0],
) -> go.Figure:
    """One labelled bar per entry, its value written on it, optionally a horizontal reference line.

    Parameters
    ----------
    values : mapping label -> value
    title, y_title : str
    x_title : str
        What the bars are (e.g. ``"model configuration"``): every axis of the book's figures has a title.
    log_y : bool
    text_format : str
        Format spec of the value labels.
    reference : (label, value), optional
        E.g. ``("official model", 5.88e6)``, drawn as a dashed line.
    color : str
        Bar colour.
    """
    if not values:
        raise UserError("values is empty")
    labels = list(values)
    numbers = np.array([float(v) for v in values.values()])
    figure = go.Figure(
        go.Bar(
            x=labels,
            y=numbers,
            marker_color=color,
            text=[format(v, text_format) for v in numbers],
            textposition="outside",
        )
    )
    if reference is not None:
        figure.add_hline(
            y=reference[1],
            line=dict(color=CHANCE_COLOR, dash="dash"),
            annotation_text=reference[0],
            annotation_position="top left",
        )
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, showlegend=False)
    if log_y:
        figure.update_yaxes(**log_axis(numbers, [] if reference is None else [reference[1]]))
    return figure


def stacked_bars(stacks: Mapping[str, Mapping[str, float]], title: str, y_title: str, *, x_title: str) -> go.Figure:
    """One bar per entry, stacked from its parts (e.g. parameters per module of two models).

    Parameters
    ----------
    stacks : mapping bar label -> (mapping part label -> value)
        Parts missing from a bar count zero; parts keep one colour across bars.
    title, y_title : str
    x_title : str
        What the bars are.
    """
    if not stacks:
        raise UserError("stacks is empty")
    parts = list(dict.fromkeys(part for bar in stacks.values() for part in bar))
    bars = list(stacks)
    figure = go.Figure()
    for part, colour in zip(parts, _palette(len(parts))):
        figure.add_trace(
            go.Bar(x=bars, y=[float(stacks[bar].get(part, 0.0)) for bar in bars], name=part, marker_color=colour)
        )
    figure.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, barmode="stack")
    return figure


def scan_benchmark(report: Mapping) -> go.Figure:
    """Time and peak extra memory of each selective-scan backend from ``benchmarks/results/scan.json``.

    Parameters
    ----------
    report : mapping
        The benchmark's JSON report: ``report["results"]`` rows with ``shape``, ``backend``, ``pass``, ``min_s``,
        ``peak_extra_mb`` (rows without numbers, e.g. skipped ones, are left out).

    Returns
    -------
    Two panels (time, memory) of grouped bars on log axes: one group per (shape, pass), one bar per backend.
    """
    rows = [row for row in report.get("results", []) if row.get("min_s") is not None]
    if not rows:
        raise UserError("the scan benchmark report has no measured rows")
    groups = list(dict.fromkeys(f"{'x'.join(map(str, row['shape']))} {row['pass']}" for row in rows))
    backends = list(dict.fromkeys(row["backend"] for row in rows))
    figure = make_subplots(rows=1, cols=2, subplot_titles=("time (s, fastest run)", "peak extra memory (MiB)"))
    for backend, colour in zip(backends, _palette(len(backends))):
        mine = {f"{'x'.join(map(str, row['shape']))} {row['pass']}": row for row in rows if row["backend"] == backend}
        for col, key in ((1, "min_s"), (2, "peak_extra_mb")):
            values = [mine[g].get(key) if g in mine else None for g in groups]
            figure.add_trace(
                go.Bar(
                    x=groups,
                    y=[np.nan if v is None else v for v in values],
                    name=backend,
                    marker_color=colour,
                    legendgroup=backend,
                    showlegend=col == 1,
                ),
                row=1,
                col=col,
            )
    figure.update_yaxes(type="log")
    figure.update_yaxes(title_text="time (s)", col=1)
    figure.update_yaxes(title_text="peak extra memory (MiB)", col=2)
    figure.update_xaxes(title_text="batch x dim x length x d_state, pass")
    figure.update_layout(
        title="Selective scan, benchmarks/results/scan.json: the fused CPU kernel against the others",
        barmode="group",
        height=480,
    )
    return figure


# -- tables and measurements ------------------------------------------------------------------------------------


class Table:
    """Rows of a table that display as HTML (the book, JupyterLab) and as Markdown (plain front-ends).

    Parameters
    ----------
    rows : sequence of mappings
        One per row, all with the keys of the first (the columns, in order).
    """

    def __init__(self, rows: Sequence[Mapping[str, object]]):
        if not rows:
            raise UserError("rows is empty")
        self.columns = list(rows[0])
        self.rows = [[str(row.get(column, "")) for column in self.columns] for row in rows]

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(column)}</th>" for column in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in self.rows)
        return f'<table class="table"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'

    def _repr_markdown_(self) -> str:
        lines = ["| " + " | ".join(self.columns) + " |", "|" + "---|" * len(self.columns)]
        return "\n".join(lines + ["| " + " | ".join(row) + " |" for row in self.rows])


def table(rows: Sequence[Mapping[str, object]]) -> Table:
    """A list of dicts (one per row, same keys) as a table that renders in JupyterLab and in the book."""
    return Table(rows)


def saved_tensor_bytes(fn: Callable[[], torch.Tensor]) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of ``fn()`` (each storage counted once).

    This is the memory a layer holds per training step until its backward runs; parameters are included only if
    the graph saves them.
    """
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        fn()
    return sum(storages.values())


def best_time(fn: Callable[[], object], repeats: int = 3) -> float:
    """The fastest of ``repeats`` wall-clock runs of ``fn()``, in seconds, after one warm-up run.

    The fastest run is the least disturbed by other work on a shared machine.
    """
    fn()
    durations = []
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        fn()
        durations.append(time.perf_counter() - start)
    return min(durations)


def module_shapes(model: nn.Module, *inputs, names: Sequence[str] | None = None) -> list[dict[str, object]]:
    """Run ``model(*inputs)`` without gradients and record the input and output shape of every call of the named
    submodules, in call order (a module applied several times appears once per call).

    Parameters
    ----------
    model : torch.nn.Module
    *inputs
        Passed to ``model``.
    names : sequence of str, optional
        Submodule names as in ``model.named_modules()``; by default the direct children.

    Returns
    -------
    list of dicts with keys ``"module"``, ``"call"``, ``"input shape"``, ``"output shape"``.
    """
    modules = dict(model.named_modules())
    names = list(names) if names is not None else [name for name, _ in model.named_children()]
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise UserError(f"module_shapes: no submodule named {unknown}")
    rows: list[dict[str, object]] = []
    calls: dict[str, int] = {}

    def hook(name):
        def record(module, args, output):
            calls[name] = calls.get(name, 0) + 1
            first = args[0] if args else None
            rows.append(
                {
                    "module": name,
                    "call": calls[name],
                    "input shape": tuple(first.shape) if isinstance(first, torch.Tensor) else "-",
                    "output shape": tuple(output.shape) if isinstance(output, torch.Tensor) else "-",
                }
            )

        return record

    handles = [modules[name].register_forward_hook(hook(name)) for name in names]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return rows


def module_outputs(model: nn.Module, *inputs, names: Sequence[str]) -> dict[str, list[torch.Tensor]]:
    """Run ``model(*inputs)`` without gradients and keep the outputs of the named submodules, one per call.

    Parameters
    ----------
    model : torch.nn.Module
    *inputs
        Passed to ``model``.
    names : sequence of str
        Submodule names as in ``model.named_modules()``.

    Returns
    -------
    dict name -> list of output tensors, in call order.
    """
    modules = dict(model.named_modules())
    unknown = [name for name in names if name not in modules]
    if unknown:
        raise UserError(f"module_outputs: no submodule named {unknown}")
    outputs: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    handles = [
        modules[name].register_forward_hook(lambda module, args, output, name=name: outputs[name].append(output))
        for name in names
    ]
    try:
        with torch.no_grad():
            model(*inputs)
    finally:
        for handle in handles:
            handle.remove()
    return outputs


__all__ = [
    "Table",
    "bar_figure",
    "best_time",
    "edge_functions",
    "gate_histograms",
    "heatmap_menu",
    "heatmap_panels",
    "module_outputs",
    "module_shapes",
    "saved_tensor_bytes",
    "scale_traces",
    "scaling_figure",
    "scan_benchmark",
    "spline_bases",
    "stacked_bars",
    "table",
]
