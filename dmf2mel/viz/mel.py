"""Mel spectrograms of the book: one heatmap, true vs. predicted with a dropdown, per-band traces.

All builders take plain arrays, time-major like the ``*_-_mel.npy`` files: ``(time, n_mels)`` at
``sfreq`` (64 Hz). The comparisons work in the static HTML book: switching between entries uses
plotly's own dropdown (an ``updatemenus`` button restyles the traces), so no kernel is needed.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
from plotly.colors import sample_colorscale
from plotly.subplots import make_subplots

from dmf2mel.data.features import FMAX, FMIN, N_MELS, TARGET_SFREQ, mel_band_edges
from dmf2mel.errors import UserError
from dmf2mel.metrics import pearsonr_time
from dmf2mel.viz.style import MEL_COLORSCALE, PREDICTED_COLOR, TRUE_COLOR, menu_rows

# z-scored bands are drawn on a fixed symmetric range so that colours mean the same in every panel.
ZSCORE_RANGE = 2.5


def check_mel(mel: np.ndarray, name: str = "mel") -> np.ndarray:
    """``mel`` as a finite float64 array of shape (time, n_mels); :class:`UserError` otherwise."""
    array = np.asarray(mel, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 2 or array.shape[1] < 1:
        raise UserError(f"{name} must have shape (time >= 2, n_mels >= 1), got {np.shape(mel)}")
    if not np.all(np.isfinite(array)):
        raise UserError(f"{name} contains NaN or infinite values")
    return array


def check_pair(true: np.ndarray, predicted: np.ndarray, label: str = "") -> tuple[np.ndarray, np.ndarray]:
    """Validate a (true, predicted) pair: both (time, n_mels) with the same shape."""
    where = f" ({label})" if label else ""
    true = check_mel(true, f"true mel{where}")
    predicted = check_mel(predicted, f"predicted mel{where}")
    if true.shape != predicted.shape:
        raise UserError(f"true and predicted mel differ in shape{where}: {true.shape} vs {predicted.shape}")
    return true, predicted


def zscore_bands(mel: np.ndarray) -> np.ndarray:
    """Each band (column) to zero mean and unit variance over time; constant bands become zeros.

    Parameters
    ----------
    mel : (time, n_mels) array

    Returns
    -------
    (time, n_mels) float64 array
    """
    mel = check_mel(mel)
    centred = mel - mel.mean(axis=0)
    std = centred.std(axis=0)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std > 0)


def band_correlations(true: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """Pearson r over time of each band, shape (n_mels,); NaN where a band is constant.

    Parameters
    ----------
    true, predicted : (time, n_mels) arrays
    """
    # The same function the metrics use, so a figure's r and a reported score agree by construction.
    true, predicted = check_pair(true, predicted)
    return pearsonr_time(predicted, true)


def band_labels(n_mels: int, fmin: float = FMIN, fmax: float = FMAX) -> list[str]:
    """One label per mel band naming its centre frequency, e.g. ``"3 · 605 Hz"`` (bands count from 1)."""
    centres = mel_band_edges(n_mels, fmin, fmax)[1:-1]
    return [f"{band + 1} · {centre:.0f} Hz" for band, centre in enumerate(centres)]


def _times(n_samples: int, sfreq: float, start: float = 0.0) -> np.ndarray:
    return start + np.arange(n_samples) / sfreq


def _heatmap(mel: np.ndarray, sfreq: float, start: float, name: str, zscore: bool, **kwargs) -> go.Heatmap:
    z = zscore_bands(mel) if zscore else mel
    limits = dict(zmin=-ZSCORE_RANGE, zmax=ZSCORE_RANGE) if zscore else {}
    return go.Heatmap(
        z=z.T,
        x=_times(mel.shape[0], sfreq, start),
        y=band_labels(mel.shape[1]),
        colorscale=MEL_COLORSCALE,
        name=name,
        hovertemplate="%{x:.2f} s<br>band %{y}<br>%{z:.2f}<extra>" + name + "</extra>",
        **limits,
        **kwargs,
    )


HEATMAP_SCALES = ("power", "db", "zscore")
DB_FLOOR = 1e-6  # relative to the maximum: silence shows at -60 dB, enough range for speech


def _scaled(mel: np.ndarray, scale: str) -> np.ndarray:
    if scale == "zscore":
        return zscore_bands(mel)
    if scale == "db":
        peak = max(float(mel.max()), np.finfo(float).tiny)
        return 10 * np.log10(np.clip(mel, DB_FLOOR * peak, None) / peak)
    return mel


def mel_heatmap(
    mel: np.ndarray,
    sfreq: float = TARGET_SFREQ,
    title: str = "Mel spectrogram",
    scale: str = "db",
    start: float = 0.0,
) -> go.Figure:
    """One mel spectrogram as a heatmap: time (s) across, bands (centre frequency) up.

    Parameters
    ----------
    mel : (time, n_mels) array
        Linear power (as stored) or any per-band signal.
    sfreq : float
        Frame rate in Hz.
    title : str
        The figure's title (state the finding).
    scale : {"db", "power", "zscore"}
        Colour shows decibels relative to the maximum (``"db"``, for power), the values as given
        (``"power"``), or each band standardised over time (``"zscore"``, each band's own dynamics).
    start : float
        Time of the first frame in s.
    """
    mel = check_mel(mel)
    if scale not in HEATMAP_SCALES:
        raise UserError(f"scale must be one of {HEATMAP_SCALES}, got {scale!r}")
    units = {"db": "dB", "power": "power", "zscore": "z"}
    heatmap = _heatmap(mel, sfreq, start, "mel", scale == "zscore", colorbar=dict(title=units[scale]))
    heatmap.z = _scaled(mel, scale).T
    figure = go.Figure(heatmap)
    figure.update_layout(title=title, xaxis_title="time (s)", yaxis_title="mel band")
    return figure


def mel_filters(n_mels: int = N_MELS, fmin: float = FMIN, fmax: float = FMAX, title: str | None = None) -> go.Figure:
    """The triangular mel filters (Slaney scale and area normalisation) against frequency.

    Band ``i`` rises from ``edges[i]``, peaks at ``edges[i + 1]`` and falls to ``edges[i + 2]``;
    with area normalisation its peak is ``2 / (edges[i + 2] - edges[i])``, so wide bands are low.
    """
    edges = mel_band_edges(n_mels, fmin, fmax)
    # Bands are coloured along the mel colour scale, low to high; true/predicted colours stay reserved.
    colours = sample_colorscale(MEL_COLORSCALE, np.linspace(0.0, 0.9, n_mels))
    figure = go.Figure()
    for band, (label, colour) in enumerate(zip(band_labels(n_mels, fmin, fmax), colours)):
        low, centre, high = edges[band : band + 3]
        figure.add_trace(
            go.Scatter(
                x=[low, centre, high],
                y=[0.0, 2.0 / (high - low), 0.0],
                mode="lines",
                fill="tozeroy",
                name=label,
                line=dict(color=colour),
            )
        )
    figure.update_layout(
        title=title or f"{n_mels} mel bands from {fmin:g} to {fmax:g} Hz: narrow and tall below 1 kHz, wide above",
        xaxis_title="frequency (Hz)",
        yaxis_title="filter weight (1/Hz)",
        legend_title="band · centre",
    )
    return figure


def _pair_title(label: str, true: np.ndarray, predicted: np.ndarray) -> str:
    mean_r = np.nanmean(band_correlations(true, predicted))
    return f"{label}: mean r over bands = {mean_r:.3f}"


def mel_comparison(
    entries: Mapping[str, tuple[np.ndarray, np.ndarray]],
    sfreq: float = TARGET_SFREQ,
    names: tuple[str, str] = ("true", "predicted"),
    zscore: bool = True,
    starts: Mapping[str, float] | None = None,
) -> go.Figure:
    """True above predicted mel, with a dropdown choosing the entry (subject, recording, window, model).

    Every entry's data travel inside the figure, so the dropdown works in the static HTML book
    without a kernel. The title states each entry's mean over bands of the per-band Pearson r.

    Parameters
    ----------
    entries : mapping label -> (true (time, n_mels), predicted (time, n_mels))
        Shown in the given order; the first is displayed initially. Entries may differ in length.
    sfreq : float
        Frame rate in Hz.
    names : (str, str)
        Row titles of the two heatmaps.
    zscore : bool
        Standardise each band over the entry's time span (predictions are usually z-scored, true mel is
        linear power: this puts both on one colour scale).
    starts : mapping label -> float, optional
        Time in s of each entry's first frame (e.g. the window position in its recording).

    Returns
    -------
    plotly Figure with two heatmap traces and one ``updatemenus`` dropdown (method ``update``).
    """
    if not entries:
        raise UserError("entries is empty: give at least one label -> (true, predicted) pair")
    pairs = {label: check_pair(*pair, label=label) for label, pair in entries.items()}
    starts = dict(starts or {})
    first_label, (first_true, first_predicted) = next(iter(pairs.items()))

    figure = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08, subplot_titles=names)
    start = starts.get(first_label, 0.0)
    # One shared colour bar: both heatmaps use the same scale.
    figure.add_trace(_heatmap(first_true, sfreq, start, names[0], zscore, coloraxis="coloraxis"), row=1, col=1)
    figure.add_trace(_heatmap(first_predicted, sfreq, start, names[1], zscore, coloraxis="coloraxis"), row=2, col=1)
    limits = dict(cmin=-ZSCORE_RANGE, cmax=ZSCORE_RANGE) if zscore else {}
    figure.update_layout(
        coloraxis=dict(colorscale=MEL_COLORSCALE, colorbar=dict(title="z" if zscore else "power"), **limits),
        title=dict(text=_pair_title(first_label, first_true, first_predicted)),
        height=520,
    )
    for row, colour in ((1, TRUE_COLOR), (2, PREDICTED_COLOR)):
        figure.update_yaxes(title_text="mel band", row=row, col=1)
        figure.layout.annotations[row - 1].font = dict(color=colour, size=14)
    figure.update_xaxes(title_text="time (s)", row=2, col=1)

    buttons = []
    for label, (true, predicted) in pairs.items():
        z = [zscore_bands(m).T if zscore else m.T for m in (true, predicted)]
        x = [_times(true.shape[0], sfreq, starts.get(label, 0.0))] * 2
        buttons.append(
            dict(
                label=label,
                method="update",
                # "title.text", not "title": a whole-title update would erase the title's other settings.
                args=[{"z": z, "x": x}, {"title.text": _pair_title(label, true, predicted)}, [0, 1]],
            )
        )
    # The menu sits above the top heatmap's centred row title (beside it, it would cover it at phone width), below
    # the figure title.
    height, margin = 580, dict(t=130, b=80)
    (menu_y,) = menu_rows(1, height, margin["t"], margin["b"])
    figure.update_layout(
        updatemenus=[
            dict(buttons=buttons, direction="down", showactive=True, x=0.0, xanchor="left", y=menu_y, yanchor="bottom")
        ],
        title=dict(y=0.98, yanchor="top"),
        margin=margin,
        height=height,
    )
    return figure


def band_traces(
    true: np.ndarray,
    predicted: np.ndarray,
    sfreq: float = TARGET_SFREQ,
    start: float = 0.0,
    names: tuple[str, str] = ("true", "predicted"),
    title: str | None = None,
) -> go.Figure:
    """One row per mel band: the true and predicted time courses (each z-scored) and the band's r.

    Parameters
    ----------
    true, predicted : (time, n_mels) arrays
    sfreq : float
        Frame rate in Hz.
    start : float
        Time of the first frame in s.
    names : (str, str)
        Legend names of the two series.
    title : str, optional
        Defaults to the mean r over bands.
    """
    true, predicted = check_pair(true, predicted)
    n_mels = true.shape[1]
    r = band_correlations(true, predicted)
    labels = band_labels(n_mels)
    figure = make_subplots(
        rows=n_mels,
        cols=1,
        shared_xaxes=True,
        vertical_spacing=0.012,
        subplot_titles=[f"band {label}: r = {value:.2f}" for label, value in zip(labels, r)],
    )
    times = _times(true.shape[0], sfreq, start)
    for band in range(n_mels):
        for series, name, colour in ((true, names[0], TRUE_COLOR), (predicted, names[1], PREDICTED_COLOR)):
            figure.add_trace(
                go.Scatter(
                    x=times,
                    y=zscore_bands(series)[:, band],
                    mode="lines",
                    line=dict(color=colour, width=1.3),
                    name=name,
                    legendgroup=name,
                    showlegend=band == 0,
                ),
                row=band + 1,
                col=1,
            )
    for annotation in figure.layout.annotations:
        annotation.update(font=dict(size=11), x=0.0, xanchor="left")
    figure.update_xaxes(title_text="time (s)", row=n_mels, col=1)
    figure.update_yaxes(showticklabels=False)
    figure.update_layout(
        title=title or f"Per-band time courses (z-scored): mean r = {np.nanmean(r):.3f}",
        height=110 * n_mels + 120,
        legend=dict(orientation="h", x=1.0, xanchor="right", y=1.0, yanchor="bottom"),
    )
    return figure
