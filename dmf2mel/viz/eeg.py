"""EEG figures: scalp maps (topographies) and power spectra, as plotly figures.

Scalp maps use the same projection as MNE's ``plot_topomap``: each electrode's position on a sphere
is mapped to the plane by an azimuthal equidistant projection around the vertex, so the head's
equator (Fpz, T7, Oz, T8) lies on the drawn head circle. Values between electrodes are
interpolated with a thin-plate spline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import mne
import numpy as np
import plotly.graph_objects as go
from scipy.interpolate import RBFInterpolator
from scipy.spatial import Delaunay

from dmf2mel.errors import UserError
from dmf2mel.viz.style import SERIES_COLORS, TOPOMAP_COLORSCALE

GRID_POINTS = 101  # interpolation grid per axis
HEAD_LINE = dict(color="#444444", width=2)
NOSE_HALF_WIDTH = 0.18  # radians either side of the midline
NOSE_LENGTH = 0.1  # fraction of the head radius
EAR_HEIGHT = 0.25  # fraction of the head radius
EAR_WIDTH = 0.08
MAD_TO_SD = 1.4826  # median absolute deviation of a Gaussian times this is its standard deviation


def scalp_positions(montage: str | mne.channels.DigMontage | mne.Info = "biosemi64") -> tuple[list[str], np.ndarray]:
    """Electrode names and 2D scalp positions for plotting, in units of the head radius.

    Parameters
    ----------
    montage : str | DigMontage | Info
        A standard montage name (``"biosemi64"`` for SparrKULee), a montage, or an ``Info`` with one.

    Returns
    -------
    ch_names : list of str
    positions : (n_channels, 2) array
        x to the right ear, y to the nose; the head's equator has radius 1.
    """
    if isinstance(montage, str):
        montage = mne.channels.make_standard_montage(montage)
    if isinstance(montage, mne.Info):
        info = montage
        montage = info.get_montage()
        if montage is None:
            raise UserError("the Info has no montage: call raw.set_montage('biosemi64') first")
        names = info["ch_names"]
    else:
        names = montage.ch_names
    ch_pos = montage.get_positions()["ch_pos"]
    xyz = np.array([ch_pos[name] for name in names])
    # Head coordinates have their origin between the ears (as MNE's default topomap sphere), so the
    # equator of the electrode cap (Fpz, T7, Oz, T8) projects onto the unit circle.
    polar = np.arccos(np.clip(xyz[:, 2] / np.linalg.norm(xyz, axis=1), -1.0, 1.0))  # 0 at the vertex
    azimuth = np.arctan2(xyz[:, 1], xyz[:, 0])
    distance = polar / (np.pi / 2)
    return list(names), np.column_stack([distance * np.cos(azimuth), distance * np.sin(azimuth)])


def _head_outline() -> list[dict]:
    angle = np.linspace(0, 2 * np.pi, 181)
    nose = np.array([-NOSE_HALF_WIDTH, 0.0, NOSE_HALF_WIDTH]) + np.pi / 2
    nose_radius = np.array([1.0, 1.0 + NOSE_LENGTH, 1.0])
    shapes = [
        dict(type="path", path=_path(np.cos(angle), np.sin(angle)), line=HEAD_LINE),
        dict(type="path", path=_path(nose_radius * np.cos(nose), nose_radius * np.sin(nose)), line=HEAD_LINE),
    ]
    for side in (-1, 1):
        ear = np.linspace(-np.pi / 2, np.pi / 2, 31)
        shapes.append(
            dict(
                type="path",
                path=_path(side * (1.0 + EAR_WIDTH * np.cos(ear)), EAR_HEIGHT * np.sin(ear)),
                line=HEAD_LINE,
            )
        )
    return shapes


def _path(x: np.ndarray, y: np.ndarray) -> str:
    return "M " + " L ".join(f"{a:.4f},{b:.4f}" for a, b in zip(x, y))


def topomap(
    values: np.ndarray,
    montage: str | mne.channels.DigMontage | mne.Info = "biosemi64",
    title: str = "Scalp map",
    unit: str = "",
    symmetric: bool = True,
) -> go.Figure:
    """A scalp map of one value per electrode (seen from above, nose up).

    Parameters
    ----------
    values : (n_channels,) array
        In the channel order of ``montage`` (SparrKULee's EEG columns follow BioSemi-64's order).
    montage : str | DigMontage | Info
        Where the electrodes are (see :func:`scalp_positions`).
    title : str
        The figure's title.
    unit : str
        Colour-bar title, e.g. ``"µV"``.
    symmetric : bool
        Centre the colour scale on zero (for signed quantities such as field patterns).
    """
    names, positions = scalp_positions(montage)
    values = np.asarray(values, dtype=np.float64)
    if values.shape != (len(names),):
        raise UserError(f"values must have shape ({len(names)},) for this montage, got {values.shape}")
    if not np.all(np.isfinite(values)):
        raise UserError("values contain NaN or infinite values")
    # Like MNE, electrodes below the equator (Iz, P9, P10) lie outside the head circle; the grid reaches them.
    reach = max(1.0, float(np.max(np.linalg.norm(positions, axis=1))))
    axis = np.linspace(-reach, reach, GRID_POINTS)
    grid_x, grid_y = np.meshgrid(axis, axis)
    interpolated = RBFInterpolator(positions, values, kernel="thin_plate_spline")(
        np.column_stack([grid_x.ravel(), grid_y.ravel()])
    ).reshape(grid_x.shape)
    # Draw only where there are electrodes around: beyond their convex hull the spline extrapolates freely.
    outside = Delaunay(positions).find_simplex(np.column_stack([grid_x.ravel(), grid_y.ravel()])) < 0
    interpolated[outside.reshape(grid_x.shape)] = np.nan
    limit = float(np.max(np.abs(values))) or 1.0
    limits = dict(zmin=-limit, zmax=limit) if symmetric else {}
    figure = go.Figure(
        [
            go.Heatmap(
                x=axis,
                y=axis,
                z=interpolated,
                colorscale=TOPOMAP_COLORSCALE,
                colorbar=dict(title=unit),
                hoverinfo="skip",
                **limits,
            ),
            go.Scatter(
                x=positions[:, 0],
                y=positions[:, 1],
                mode="markers",
                marker=dict(color="black", size=4),
                text=[f"{name}: {value:.3g} {unit}" for name, value in zip(names, values)],
                hoverinfo="text",
                showlegend=False,
            ),
        ]
    )
    extent = max(reach, 1.0 + max(NOSE_LENGTH, EAR_WIDTH)) + 0.05
    figure.update_layout(
        title=title,
        shapes=_head_outline(),
        width=560,
        height=480,
        xaxis=dict(visible=False, range=[-extent, extent], scaleanchor="y", constrain="domain"),
        yaxis=dict(visible=False, range=[-extent, extent]),
        plot_bgcolor="white",
    )
    return figure


def spectra(
    series: Mapping[str, tuple[np.ndarray, np.ndarray]],
    title: str = "Power spectral density",
    unit: str = "µV²/Hz",
    fmax: float | None = None,
) -> go.Figure:
    """Power spectra on a logarithmic power axis, one line per labelled series.

    Parameters
    ----------
    series : mapping label -> (freqs (n_freqs,), power (n_freqs,))
        E.g. ``{"raw": (f_raw, p_raw), "preprocessed": (f_pre, p_pre)}``, each averaged over channels;
        the series may have different frequency axes (different sampling rates). Drawn in the book's
        series colours, in the given order.
    title, unit : str
        The figure's title and the power axis unit.
    fmax : float, optional
        Upper end of the frequency axis in Hz (default: the highest frequency given).
    """
    figure = go.Figure()
    colours = SERIES_COLORS * (1 + len(series) // len(SERIES_COLORS))
    for (label, (freqs, power)), colour in zip(series.items(), colours):
        freqs, power = np.asarray(freqs, dtype=np.float64), np.asarray(power, dtype=np.float64)
        if freqs.ndim != 1 or power.shape != freqs.shape:
            raise UserError(
                f"series {label!r}: freqs and power must be 1-D of one length, got {freqs.shape} and {power.shape}"
            )
        figure.add_trace(go.Scatter(x=freqs, y=power, mode="lines", name=label, line=dict(color=colour)))
    figure.update_layout(title=title, xaxis_title="frequency (Hz)", yaxis_title=f"power ({unit})", yaxis_type="log")
    if fmax is not None:
        figure.update_xaxes(range=[0, fmax])
    return figure


def electrode_map(
    montage: str | mne.channels.DigMontage | mne.Info = "biosemi64",
    highlight: Sequence[str] = (),
    title: str | None = None,
) -> go.Figure:
    """The electrode layout seen from above (nose up), every electrode labelled.

    Parameters
    ----------
    montage : str | DigMontage | Info
        See :func:`scalp_positions`.
    highlight : sequence of str
        Electrodes drawn larger and in the book's first series colour (e.g. the ones a chapter uses).
    title : str, optional
        Defaults to the montage's size.
    """
    names, positions = scalp_positions(montage)
    unknown = sorted(set(highlight) - set(names))
    if unknown:
        raise UserError(f"highlight names electrodes not in the montage: {unknown}")
    marked = np.array([name in highlight for name in names])
    figure = go.Figure()
    for selected, colour, size in ((False, "#444444", 7), (True, SERIES_COLORS[0], 12)):
        keep = marked == selected
        if not keep.any():
            continue
        figure.add_trace(
            go.Scatter(
                x=positions[keep, 0],
                y=positions[keep, 1],
                mode="markers+text",
                text=[name for name, k in zip(names, keep) if k],
                textposition="top center",
                textfont=dict(size=9),
                marker=dict(color=colour, size=size),
                hoverinfo="text",
                showlegend=False,
            )
        )
    reach = max(1.0, float(np.max(np.linalg.norm(positions, axis=1))))
    extent = max(reach, 1.0 + max(NOSE_LENGTH, EAR_WIDTH)) + 0.1
    figure.update_layout(
        title=title or f"{len(names)} electrodes, seen from above (nose up)",
        shapes=_head_outline(),
        width=560,
        height=560,
        xaxis=dict(visible=False, range=[-extent, extent], scaleanchor="y", constrain="domain"),
        yaxis=dict(visible=False, range=[-extent, extent]),
        plot_bgcolor="white",
    )
    return figure


def eeg_traces(
    data: np.ndarray,
    sfreq: float,
    ch_names: Sequence[str],
    picks: Sequence[str] | None = None,
    start: float = 0.0,
    spacing: float | None = None,
    title: str = "EEG",
    unit: str = "µV",
) -> go.Figure:
    """Stacked time courses of some channels, one above the other.

    Parameters
    ----------
    data : (time, n_channels) array
        Time-major, like the ``*_-_eeg.npy`` files.
    sfreq : float
        Sampling rate in Hz.
    ch_names : sequence of str
        Names of the columns of ``data``.
    picks : sequence of str, optional
        Channels to draw, top to bottom (default: all).
    start : float
        Time of the first sample in s.
    spacing : float, optional
        Vertical distance between traces in ``unit`` (default: 6 robust standard deviations of the
        drawn data, so that traces rarely overlap).
    title, unit : str
        The figure's title and the data unit.
    """
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] != len(ch_names):
        raise UserError(f"data must have shape (time, {len(ch_names)}) to match ch_names, got {data.shape}")
    picks = list(picks) if picks is not None else list(ch_names)
    unknown = [name for name in picks if name not in ch_names]
    if unknown:
        raise UserError(f"picks name channels not in ch_names: {unknown}")
    columns = data[:, [list(ch_names).index(name) for name in picks]]
    columns = columns - np.median(columns, axis=0)
    if spacing is None:
        spacing = 6 * float(np.median(np.median(np.abs(columns), axis=0))) * MAD_TO_SD or 1.0
    times = start + np.arange(len(data)) / sfreq
    figure = go.Figure()
    for row, name in enumerate(picks):
        offset = -row * spacing
        figure.add_trace(
            go.Scatter(
                x=times,
                y=columns[:, row] + offset,
                mode="lines",
                name=name,
                line=dict(color="#333333", width=1),
                showlegend=False,
                hovertemplate=f"{name}<br>%{{x:.3f}} s<extra></extra>",
            )
        )
    figure.update_layout(
        title=title,
        xaxis_title="time (s)",
        yaxis=dict(
            tickvals=[-row * spacing for row in range(len(picks))],
            ticktext=picks,
            zeroline=False,
            title=f"channel (spacing {spacing:.3g} {unit})",
        ),
        height=max(300, 28 * len(picks) + 150),
    )
    return figure
