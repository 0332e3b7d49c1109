"""The comparison explorer for JupyterLab: pick a model, subject, recording and window; see true vs. predicted.

ipywidgets controls drive two plotly ``FigureWidget``s (true and predicted heatmaps, and the per-band
time courses with each band's r in the window). Python callbacks need a running kernel, so in the
static HTML book the same comparison is :func:`dmf2mel.viz.mel.mel_comparison` with plotly's own
dropdown; the chapters hide this explorer's output there.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as widgets
import numpy as np
import plotly.graph_objects as go

from dmf2mel.data.features import TARGET_SFREQ
from dmf2mel.errors import UserError
from dmf2mel.viz.mel import band_correlations, band_traces, check_mel, check_pair, mel_comparison, zscore_bands

Key = tuple[str, str]  # (subject, recording)
DEFAULT_WINDOW_SECONDS = 10.0


class ComparisonExplorer:
    """Widgets choosing model / subject / recording / window position, updating plotly figures.

    Parameters
    ----------
    targets : mapping (subject, recording) -> (time, n_mels) array
        The true mel of each recording (any scale: every window is z-scored per band for display).
    predictions : mapping model name -> mapping (subject, recording) -> (time, n_mels) array
        Each model's prediction, same shape as the matching target. A model may cover only some
        recordings; the subject and recording menus list what the chosen model covers.
    sfreq : float
        Frame rate in Hz.
    window_seconds : float
        Length of the displayed window in s (the paper's metric uses 10 s windows).

    Attributes
    ----------
    model, subject, recording : ipywidgets.Dropdown
    position : ipywidgets.FloatSlider
        Start of the window in s.
    heatmaps, traces : plotly.graph_objects.FigureWidget
    summary : ipywidgets.HTML
        The window's mean r and per-band r.
    widget : ipywidgets.VBox
        Everything, ready to display (displaying the explorer displays this).
    """

    def __init__(
        self,
        targets: Mapping[Key, np.ndarray],
        predictions: Mapping[str, Mapping[Key, np.ndarray]],
        sfreq: float = TARGET_SFREQ,
        window_seconds: float = DEFAULT_WINDOW_SECONDS,
    ):
        if not predictions:
            raise UserError("predictions is empty: give at least one model -> {(subject, recording): mel}")
        self.targets = {key: check_mel(mel, f"target {key}") for key, mel in targets.items()}
        self.predictions: dict[str, dict[Key, np.ndarray]] = {}
        for model, by_key in predictions.items():
            missing = [key for key in by_key if key not in self.targets]
            if missing:
                raise UserError(f"model {model!r} predicts recordings without a target: {missing}")
            if not by_key:
                raise UserError(f"model {model!r} has no predictions")
            self.predictions[model] = {
                key: check_pair(self.targets[key], mel, label=f"{model}, {key}")[1] for key, mel in by_key.items()
            }
        self.sfreq = float(sfreq)
        self.window = max(2, int(round(window_seconds * sfreq)))

        self.model = widgets.Dropdown(options=list(self.predictions), description="model")
        self.subject = widgets.Dropdown(description="subject")
        self.recording = widgets.Dropdown(description="recording")
        self.position = widgets.FloatSlider(
            description="window (s)", min=0.0, step=1.0 / self.sfreq, continuous_update=False, readout_format=".2f"
        )
        self.summary = widgets.HTML()
        true, predicted = self._first_window()
        self.heatmaps = go.FigureWidget(mel_comparison({"window": (true, predicted)}, sfreq=self.sfreq))
        # The widgets choose the window here: no plotly menu, and no room kept for one.
        self.heatmaps.layout.updatemenus = ()
        self.heatmaps.layout.margin.t = 70
        self.traces = go.FigureWidget(band_traces(true, predicted, sfreq=self.sfreq))
        self.widget = widgets.VBox(
            [
                widgets.HBox([self.model, self.subject, self.recording]),
                self.position,
                self.summary,
                self.heatmaps,
                self.traces,
            ]
        )
        self._busy = False
        self._refresh_subjects()
        self.model.observe(self._on_model, names="value")
        self.subject.observe(self._on_subject, names="value")
        self.recording.observe(self._on_recording, names="value")
        self.position.observe(self._on_position, names="value")
        self.update()

    # -- what is selectable ---------------------------------------------------------------------
    def _keys(self) -> list[Key]:
        return sorted(self.predictions[self.model.value])

    def _first_window(self) -> tuple[np.ndarray, np.ndarray]:
        # Only builds the figures' traces; update() then draws the actual selection.
        model = next(iter(self.predictions))
        key = sorted(self.predictions[model])[0]
        return self.targets[key][: self.window], self.predictions[model][key][: self.window]

    def _refresh_subjects(self) -> None:
        subjects = sorted({subject for subject, _ in self._keys()})
        keep = self.subject.value if self.subject.value in subjects else subjects[0]
        self.subject.options = subjects
        self.subject.value = keep
        self._refresh_recordings()

    def _refresh_recordings(self) -> None:
        recordings = [recording for subject, recording in self._keys() if subject == self.subject.value]
        keep = self.recording.value if self.recording.value in recordings else recordings[0]
        self.recording.options = recordings
        self.recording.value = keep
        self._refresh_position()

    def _refresh_position(self) -> None:
        n_samples = self.targets[(self.subject.value, self.recording.value)].shape[0]
        last_start = max(0, n_samples - self.window) / self.sfreq
        self.position.max = last_start
        self.position.value = min(self.position.value, last_start)

    # -- callbacks: refresh what depends on the changed control, then redraw once ----------------
    # Refreshing a menu changes other controls' values; the guard keeps their callbacks from redrawing
    # half-updated selections.
    def _react(self, refresh) -> None:
        if self._busy:
            return
        self._busy = True
        try:
            refresh()
        finally:
            self._busy = False
        self.update()

    def _on_model(self, _change) -> None:
        self._react(self._refresh_subjects)

    def _on_subject(self, _change) -> None:
        self._react(self._refresh_recordings)

    def _on_recording(self, _change) -> None:
        self._react(self._refresh_position)

    def _on_position(self, _change) -> None:
        self._react(lambda: None)

    # -- drawing --------------------------------------------------------------------------------
    def current_window(self) -> tuple[np.ndarray, np.ndarray, float]:
        """The selected (true (window, n_mels), predicted (window, n_mels), start in s)."""
        key = (self.subject.value, self.recording.value)
        first = int(round(self.position.value * self.sfreq))
        true = self.targets[key]
        first = min(first, max(0, true.shape[0] - self.window))
        span = slice(first, first + self.window)
        return true[span], self.predictions[self.model.value][key][span], first / self.sfreq

    def update(self) -> None:
        """Redraw both figures and the summary for the current selection."""
        true, predicted, start = self.current_window()
        times = start + np.arange(true.shape[0]) / self.sfreq
        r = band_correlations(true, predicted)
        true_z, predicted_z = zscore_bands(true), zscore_bands(predicted)
        label = f"{self.model.value} · {self.subject.value} · {self.recording.value} · {start:.1f} s"
        with self.heatmaps.batch_update():
            for trace, z in zip(self.heatmaps.data, (true_z, predicted_z)):
                trace.x, trace.z = times, z.T
            self.heatmaps.layout.title.text = f"{label}: mean r over bands = {np.nanmean(r):.3f}"
        with self.traces.batch_update():
            for band in range(true.shape[1]):
                for offset, series in enumerate((true_z, predicted_z)):
                    trace = self.traces.data[2 * band + offset]
                    trace.x, trace.y = times, series[:, band]
                self.traces.layout.annotations[band].text = self.traces.layout.annotations[band].text.split(":")[0] + (
                    f": r = {r[band]:.2f}"
                )
            self.traces.layout.title.text = f"Per-band time courses (z-scored): mean r = {np.nanmean(r):.3f}"
        self.summary.value = "<b>window r per band:</b> " + ", ".join(f"{value:.2f}" for value in r)

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)
