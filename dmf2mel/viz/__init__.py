"""Figures and widgets of the book: plotly figure builders and the JupyterLab explorer.

Every builder takes plain numpy arrays and returns a plotly figure; the notebook decides to show it.
Chapters call :func:`setup_notebook` first so that figures render in JupyterLab and in the offline
HTML book alike.

- :mod:`dmf2mel.viz.diagram` — the whole model drawn from its configuration, one part highlighted
- :mod:`dmf2mel.viz.style` — colours (true vs. predicted), template, renderer
- :mod:`dmf2mel.viz.mel` — mel heatmaps, the true-vs-predicted comparison with a dropdown, per-band traces
- :mod:`dmf2mel.viz.audio` — the noise vocoder for listening to mel spectrograms
- :mod:`dmf2mel.viz.eeg` — electrode layout, scalp maps, stacked traces and spectra
- :mod:`dmf2mel.viz.scores` — scores per band / subject / model next to their chance levels
- :mod:`dmf2mel.viz.lines` — line plots (response functions, curves against lag or epoch)
- :mod:`dmf2mel.viz.explorer` — the ipywidgets comparison explorer (JupyterLab)
- :mod:`dmf2mel.viz.results` — the benchmark reports' figures and sentences (:func:`gpu_step_note` for a chapter)
- :mod:`dmf2mel.viz.source` — the package's own code shown in a chapter (:func:`show_source`)
- :mod:`dmf2mel.viz.quiz` — a chapter's quick check: self-checking concept questions (``viz.quiz.quick_check``)
"""

from dmf2mel.viz.diagram import architecture
from dmf2mel.viz import quiz
from dmf2mel.viz.audio import vocode
from dmf2mel.viz.eeg import eeg_traces, electrode_map, scalp_positions, spectra, topomap
from dmf2mel.viz.explorer import ComparisonExplorer
from dmf2mel.viz.lines import line_figure
from dmf2mel.viz.mel import (
    band_correlations,
    band_labels,
    band_traces,
    mel_comparison,
    mel_filters,
    mel_heatmap,
    zscore_bands,
)
from dmf2mel.viz.results import gpu_step_note
from dmf2mel.viz.scores import band_scores, score_bars
from dmf2mel.viz.source import show_source
from dmf2mel.viz.style import PREDICTED_COLOR, TRUE_COLOR, setup_notebook

__all__ = [
    "PREDICTED_COLOR",
    "TRUE_COLOR",
    "ComparisonExplorer",
    "architecture",
    "band_correlations",
    "band_labels",
    "band_scores",
    "band_traces",
    "eeg_traces",
    "electrode_map",
    "gpu_step_note",
    "line_figure",
    "mel_comparison",
    "mel_filters",
    "mel_heatmap",
    "quiz",
    "scalp_positions",
    "score_bars",
    "show_source",
    "setup_notebook",
    "spectra",
    "topomap",
    "vocode",
    "zscore_bands",
]
