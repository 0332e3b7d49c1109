"""dmf2mel.viz: figure builders, the vocoder, scalp maps and the explorer, on small synthetic arrays."""

from __future__ import annotations

import numpy as np
import plotly.io as pio
import pytest

from dmf2mel import viz
from dmf2mel.data.features import mel_band_edges, mel_spectrogram
from dmf2mel.errors import UserError
from dmf2mel.viz import style
from dmf2mel.viz.audio import band_carriers
from dmf2mel.viz.mel import check_pair

SFREQ = 64
AUDIO_SFREQ = 16_000


def modulated_mel(n_frames=320, n_mels=10, seed=0):
    """Band powers with slow, band-specific modulations, (n_frames, n_mels), all positive."""
    rng = np.random.default_rng(seed)
    t = np.arange(n_frames)[:, None] / SFREQ
    rates = rng.uniform(0.5, 4.0, n_mels)
    phases = rng.uniform(0, 2 * np.pi, n_mels)
    return ((1.05 + np.sin(2 * np.pi * rates * t + phases)) ** 2).astype(np.float32)


# -- statistics ------------------------------------------------------------------------------------------


def test_band_correlations_match_numpy_corrcoef():
    rng = np.random.default_rng(1)
    true = rng.standard_normal((200, 10))
    predicted = 0.5 * true + rng.standard_normal((200, 10))
    expected = [np.corrcoef(true[:, b], predicted[:, b])[0, 1] for b in range(10)]
    np.testing.assert_allclose(viz.band_correlations(true, predicted), expected, rtol=1e-12)


def test_band_correlations_nan_for_constant_band_and_scale_invariant():
    rng = np.random.default_rng(2)
    true = rng.standard_normal((100, 3))
    predicted = true.copy()
    predicted[:, 1] = 4.0
    r = viz.band_correlations(true, predicted * 7 + 3)
    assert np.isnan(r[1])
    np.testing.assert_allclose(r[[0, 2]], 1.0)


def test_zscore_bands_standardises_each_band_and_zeroes_constant_ones():
    mel = np.column_stack([np.arange(50.0), np.full(50, 3.0), np.linspace(-1, 5, 50) ** 2])
    z = viz.zscore_bands(mel)
    np.testing.assert_allclose(z.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z.std(axis=0), [1.0, 0.0, 1.0])


@pytest.mark.parametrize(
    "true, predicted, message",
    [
        (np.zeros(10), np.zeros(10), "shape"),
        (np.zeros((10, 3)), np.zeros((11, 3)), "differ in shape"),
        (np.full((10, 3), np.nan), np.zeros((10, 3)), "NaN"),
    ],
)
def test_bad_pairs_raise_user_errors_naming_the_problem(true, predicted, message):
    with pytest.raises(UserError, match=message):
        check_pair(true, predicted)


def test_band_labels_name_the_centre_frequencies():
    labels = viz.band_labels(10)
    centres = mel_band_edges(10)[1:-1]
    assert len(labels) == 10
    assert labels[0] == f"1 · {centres[0]:.0f} Hz" and labels[-1].startswith("10 · ")


# -- figures ---------------------------------------------------------------------------------------------


def test_mel_heatmap_axes_and_scales():
    mel = modulated_mel()
    figure = viz.mel_heatmap(mel, start=2.0)
    heatmap = figure.data[0]
    assert np.asarray(heatmap.z).shape == (10, mel.shape[0])  # bands up, time across
    assert heatmap.x[0] == pytest.approx(2.0) and heatmap.x[1] - heatmap.x[0] == pytest.approx(1 / SFREQ)
    assert np.max(heatmap.z) == pytest.approx(0.0)  # dB relative to the maximum
    z = viz.mel_heatmap(mel, scale="zscore").data[0].z
    np.testing.assert_allclose(np.asarray(z), viz.zscore_bands(mel).T)
    with pytest.raises(UserError, match="scale"):
        viz.mel_heatmap(mel, scale="log")


def test_mel_comparison_dropdown_holds_every_entry():
    true_a, true_b = modulated_mel(seed=1), modulated_mel(n_frames=200, seed=2)
    entries = {"a": (true_a, true_a + 1.0), "b": (true_b, true_b[::-1].copy())}
    figure = viz.mel_comparison(entries, starts={"b": 5.0})
    assert [trace.type for trace in figure.data] == ["heatmap", "heatmap"]
    (menu,) = figure.layout.updatemenus
    assert [button.label for button in menu.buttons] == ["a", "b"]
    # Initially the first entry; its title gives its mean r (a shifted copy: r = 1).
    assert figure.layout.title.text == "a: mean r over bands = 1.000"
    np.testing.assert_allclose(np.asarray(figure.data[0].z), viz.zscore_bands(true_a).T)
    # The second button swaps in entry b's data, times and title, for both traces.
    trace_update, layout_update, indices = menu.buttons[1].args
    assert list(indices) == [0, 1]
    np.testing.assert_allclose(trace_update["z"][1], viz.zscore_bands(true_b[::-1]).T)
    assert trace_update["x"][0][0] == pytest.approx(5.0) and len(trace_update["x"][0]) == 200
    expected_r = np.nanmean(viz.band_correlations(true_b, true_b[::-1]))
    assert layout_update == {"title.text": f"b: mean r over bands = {expected_r:.3f}"}


def test_mel_comparison_menu_sits_above_the_row_titles():
    """Beside the centred title of the top heatmap, the menu would cover it at phone width (390 px)."""
    mel = modulated_mel(seed=1)
    figure = viz.mel_comparison({"a": (mel, mel), "b": (mel, mel)})
    (menu,) = figure.layout.updatemenus
    plot_px = figure.layout.height - figure.layout.margin.t - figure.layout.margin.b
    assert menu.yanchor == "bottom" and (menu.y - 1) * plot_px >= style.MENU_GAP_PX - 1e-6
    assert (menu.y - 1) * plot_px + style.MENU_ROW_PX <= figure.layout.margin.t


def test_mel_comparison_rejects_empty_and_mismatched_entries():
    with pytest.raises(UserError, match="empty"):
        viz.mel_comparison({})
    with pytest.raises(UserError, match="differ in shape"):
        viz.mel_comparison({"x": (np.zeros((10, 10)), np.zeros((12, 10)))})


def test_band_traces_one_row_per_band_with_its_r_and_the_book_colours():
    true = modulated_mel(n_frames=128, n_mels=4)
    predicted = true.copy()
    predicted[:, 2] = predicted[::-1, 2]
    figure = viz.band_traces(true, predicted)
    assert len(figure.data) == 2 * 4
    assert {trace.line.color for trace in figure.data[0::2]} == {viz.TRUE_COLOR}
    assert {trace.line.color for trace in figure.data[1::2]} == {viz.PREDICTED_COLOR}
    r = viz.band_correlations(true, predicted)
    titles = [annotation.text for annotation in figure.layout.annotations]
    assert titles[0].endswith("r = 1.00") and titles[2].endswith(f"r = {r[2]:.2f}")


def test_mel_filters_peak_at_the_band_edges_with_unit_area():
    figure = viz.mel_filters()
    edges = mel_band_edges(10)
    assert len(figure.data) == 10
    for band, trace in enumerate(figure.data):
        np.testing.assert_allclose(trace.x, edges[band : band + 3])
        area = 0.5 * (trace.x[2] - trace.x[0]) * trace.y[1]  # Slaney area normalisation
        assert area == pytest.approx(1.0)


def test_setup_notebook_renders_html_with_plotly_js_and_no_cdn():
    viz.setup_notebook()
    assert pio.renderers.default == viz.style.NOTEBOOK_RENDERER
    bundle = pio.renderers[viz.style.OFFLINE_RENDERER].to_mimebundle(viz.mel_filters().to_dict())
    html = bundle["text/html"]
    assert "Plotly.newPlot" in html
    assert "http" not in html.replace("http://www.w3.org", "")  # no CDN, no remote script
    assert pio.templates.default == viz.style.TEMPLATE_NAME


def test_long_titles_are_wrapped_for_the_book_column_and_get_room():
    long = "The linear decoder recovers the low bands best, and new subjects less well than known ones"
    assert viz.style.wrap_title("short") == "short"
    assert all(len(line) <= viz.style.TITLE_LINE_CHARS for line in viz.style.wrap_title(long).split("<br>"))
    figure = {
        "layout": {
            "title": {"text": long},
            "margin": {"t": 70},
            "updatemenus": [{"buttons": [{"args": [{"visible": [True]}, {"title.text": long + " (2)"}]}]}],
        }
    }
    viz.style.fit_titles(figure)
    assert figure["layout"]["title"]["text"].count("<br>") == 1
    assert "<br>" in figure["layout"]["updatemenus"][0]["buttons"][0]["args"][1]["title.text"]
    assert figure["layout"]["margin"]["t"] > 70
    viz.setup_notebook()
    html = pio.renderers[viz.style.OFFLINE_RENDERER].to_mimebundle(viz.mel_filters(title=long).to_dict())["text/html"]
    assert "\\u003cbr\\u003e" in html  # plotly's JSON escapes the "<br>" in the embedded figure


# -- the vocoder -----------------------------------------------------------------------------------------


def test_vocode_length_dtype_peak_and_determinism():
    mel = modulated_mel()
    audio = viz.vocode(mel, seed=3)
    assert audio.dtype == np.float32 and audio.shape == (mel.shape[0] * AUDIO_SFREQ // SFREQ,)
    assert np.max(np.abs(audio)) == pytest.approx(0.99, rel=1e-6)
    np.testing.assert_array_equal(audio, viz.vocode(mel, seed=3))
    assert not np.array_equal(audio, viz.vocode(mel, seed=4))


def test_vocode_silence_and_negative_power_give_silence():
    assert not np.any(viz.vocode(np.zeros((64, 10))))
    assert not np.any(viz.vocode(-np.ones((64, 10))))


def test_vocoded_band_energy_stays_inside_its_mel_filter():
    band = 4
    mel = np.zeros((128, 10))
    mel[:, band] = 1.0
    audio = viz.vocode(mel).astype(np.float64)
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / AUDIO_SFREQ)
    low, high = mel_band_edges(10)[band], mel_band_edges(10)[band + 2]
    inside = spectrum[(freqs >= low) & (freqs <= high)].sum()
    assert inside / spectrum.sum() > 0.999


def test_carriers_have_unit_rms():
    carriers = band_carriers(10, 8000, AUDIO_SFREQ, 0.0, 5000.0, seed=0)
    np.testing.assert_allclose(np.sqrt(np.mean(carriers**2, axis=1)), 1.0)


def test_vocoded_audio_has_the_band_envelopes_of_the_input_mel():
    """The round trip mel -> vocoder -> mel keeps each band's time course (what listening relies on)."""
    mel = modulated_mel(n_frames=640)
    again = mel_spectrogram(viz.vocode(mel), AUDIO_SFREQ)
    n = min(len(again), len(mel))
    r = viz.band_correlations(mel[:n], again[:n])
    assert np.all(r > 0.6), r
    assert np.mean(r) > 0.75


def test_vocode_rejects_a_rate_too_low_for_the_filterbank():
    with pytest.raises(UserError, match="sfreq_audio"):
        viz.vocode(modulated_mel(), sfreq_audio=8000)


# -- EEG figures -----------------------------------------------------------------------------------------


def test_scalp_positions_put_the_cap_equator_on_the_head_circle():
    names, positions = viz.scalp_positions("biosemi64")
    assert len(names) == 64 and positions.shape == (64, 2)
    where = {name: positions[i] for i, name in enumerate(names)}
    np.testing.assert_allclose(where["Cz"], [0.0, 0.0], atol=1e-9)
    for name in ("Fpz", "Oz", "T7", "T8"):
        assert np.linalg.norm(where[name]) == pytest.approx(1.0, abs=0.05)
    assert where["Fpz"][1] > 0 and where["Oz"][1] < 0 and where["T8"][0] > 0  # nose up, right ear right


def test_topomap_interpolates_through_the_electrodes():
    names, positions = viz.scalp_positions()
    values = positions[:, 0] - 0.5 * positions[:, 1]  # a plane: the thin-plate spline reproduces it
    figure = viz.topomap(values, unit="µV")
    heatmap = figure.data[0]
    x, y, z = np.asarray(heatmap.x), np.asarray(heatmap.y), np.asarray(heatmap.z, dtype=float)
    i, j = len(y) // 2, len(x) // 2
    assert z[i, j] == pytest.approx(x[j] - 0.5 * y[i], abs=1e-6)
    assert np.isnan(z[0, 0])  # corners lie outside the head
    assert heatmap.zmin == -heatmap.zmax == pytest.approx(-np.abs(values).max())
    with pytest.raises(UserError, match=r"\(64,\)"):
        viz.topomap(values[:10])


def test_spectra_log_axis_series_with_their_own_frequencies_and_shape_check():
    figure = viz.spectra(
        {"raw": (np.linspace(0, 64, 65), np.ones(65)), "preprocessed": (np.linspace(0, 32, 33), np.full(33, 2.0))},
        fmax=40,
    )
    assert figure.layout.yaxis.type == "log" and [t.name for t in figure.data] == ["raw", "preprocessed"]
    assert len(figure.data[0].x) == 65 and len(figure.data[1].x) == 33
    assert tuple(figure.layout.xaxis.range) == (0, 40)
    with pytest.raises(UserError, match="one length"):
        viz.spectra({"a": (np.linspace(0, 32, 33), np.ones(10))})


def test_electrode_map_labels_every_electrode_and_highlights_some():
    figure = viz.electrode_map(highlight=["Cz", "T7"])
    plain, marked = figure.data
    assert len(plain.text) == 62 and sorted(marked.text) == ["Cz", "T7"]
    with pytest.raises(UserError, match="not in the montage"):
        viz.electrode_map(highlight=["XYZ"])


def test_eeg_traces_stack_the_picked_channels_in_order():
    names, _ = viz.scalp_positions()
    data = np.random.default_rng(0).standard_normal((128, 64))
    figure = viz.eeg_traces(data, 64, names, picks=["Oz", "Fp1"], spacing=10.0, start=1.0)
    assert [trace.name for trace in figure.data] == ["Oz", "Fp1"]
    column = names.index("Fp1")
    np.testing.assert_allclose(figure.data[1].y, data[:, column] - np.median(data[:, column]) - 10.0)
    assert figure.data[0].x[0] == pytest.approx(1.0)
    with pytest.raises(UserError, match="not in ch_names"):
        viz.eeg_traces(data, 64, names, picks=["nope"])


def test_line_figure_colours_and_validation():
    figure = viz.line_figure(
        {"true": ([0, 1], [1, 2]), "model": ([0, 1], [2, 3])},
        "t",
        "x",
        "y",
        colors={"true": viz.TRUE_COLOR},
        log_y=True,
    )
    assert figure.data[0].line.color == viz.TRUE_COLOR and figure.data[1].line.color not in (viz.TRUE_COLOR, None)
    assert figure.layout.yaxis.type == "log"
    with pytest.raises(UserError, match="one length"):
        viz.line_figure({"a": ([0, 1, 2], [1, 2])}, "t", "x", "y")


# -- the explorer ----------------------------------------------------------------------------------------


@pytest.fixture()
def explorer():
    rng = np.random.default_rng(5)
    targets = {
        ("sub-001", "story_a"): rng.random((1280, 10)),
        ("sub-001", "story_b"): rng.random((900, 10)),
        ("sub-002", "story_a"): rng.random((1000, 10)),
    }
    predictions = {
        "good": {key: mel + 0.1 * rng.random(mel.shape) for key, mel in targets.items()},
        "other": {("sub-002", "story_a"): rng.random((1000, 10))},
    }
    return viz.ComparisonExplorer(targets, predictions, window_seconds=5.0)


def test_explorer_shows_the_selected_window(explorer):
    window = 5 * SFREQ
    assert explorer.subject.options == ("sub-001", "sub-002")
    assert explorer.recording.options == ("story_a", "story_b")
    explorer.position.value = 2.0
    true = explorer.targets[("sub-001", "story_a")][2 * SFREQ : 2 * SFREQ + window]
    predicted = explorer.predictions["good"][("sub-001", "story_a")][2 * SFREQ : 2 * SFREQ + window]
    np.testing.assert_allclose(np.asarray(explorer.heatmaps.data[0].z), viz.zscore_bands(true).T)
    np.testing.assert_allclose(np.asarray(explorer.heatmaps.data[1].z), viz.zscore_bands(predicted).T)
    assert explorer.heatmaps.data[0].x[0] == pytest.approx(2.0)
    r = viz.band_correlations(true, predicted)
    assert explorer.traces.layout.annotations[3].text.endswith(f"r = {r[3]:.2f}")
    np.testing.assert_allclose(np.asarray(explorer.traces.data[2 * 3 + 1].y), viz.zscore_bands(predicted)[:, 3])


def test_explorer_menus_follow_the_model_and_subject(explorer):
    explorer.position.value = 10.0  # beyond story_b's last window start
    explorer.recording.value = "story_b"
    assert explorer.position.max == pytest.approx((900 - 5 * SFREQ) / SFREQ)
    assert explorer.position.value == pytest.approx(explorer.position.max)
    explorer.model.value = "other"  # covers only sub-002
    assert explorer.subject.options == ("sub-002",) and explorer.subject.value == "sub-002"
    assert explorer.recording.value == "story_a"
    true, predicted, _ = explorer.current_window()
    np.testing.assert_allclose(np.asarray(explorer.heatmaps.data[1].z), viz.zscore_bands(predicted).T)
    assert "other · sub-002 · story_a" in explorer.heatmaps.layout.title.text


def test_explorer_rejects_predictions_without_targets():
    with pytest.raises(UserError, match="without a target"):
        viz.ComparisonExplorer({("s", "r"): np.ones((100, 10))}, {"m": {("s", "x"): np.ones((100, 10))}})
    with pytest.raises(UserError, match="empty"):
        viz.ComparisonExplorer({("s", "r"): np.ones((100, 10))}, {})


# -- scores with chance ----------------------------------------------------------------------------------


def test_score_bars_draw_scores_and_chance_ticks_in_order():
    figure = viz.score_bars({"sub-002": 0.2, "sub-001": None}, {"sub-001": 0.03, "sub-002": 0.02})
    bars, ticks = figure.data
    assert list(bars.x) == ["sub-002", "sub-001"]
    assert bars.y[0] == pytest.approx(0.2) and np.isnan(bars.y[1])  # None (NaN in JSON) is a gap
    np.testing.assert_allclose(ticks.y, [0.02, 0.03])
    with pytest.raises(UserError, match="no value"):
        viz.score_bars({"a": 0.1}, {"b": 0.0})


def test_band_scores_group_series_per_band_with_their_chance():
    per_band = {"known": list(np.linspace(0.3, 0.1, 10)), "unknown": [0.05] * 10}
    chance = {"known": [0.01] * 10, "unknown": [0.02] * 10}
    figure = viz.band_scores(per_band, chance, colors={"known": viz.TRUE_COLOR})
    bars = [trace for trace in figure.data if trace.type == "bar"]
    ticks = [trace for trace in figure.data if trace.type == "scatter"]
    assert [bar.name for bar in bars] == ["known", "unknown"] and len(ticks) == 2
    assert list(bars[0].x) == viz.band_labels(10) and bars[0].marker.color == viz.TRUE_COLOR
    np.testing.assert_allclose(ticks[1].y, 0.02)
    with pytest.raises(UserError, match="one score per band"):
        viz.band_scores({"a": [0.1] * 10, "b": [0.1] * 9})
    with pytest.raises(UserError, match="10 values"):
        viz.band_scores(per_band, {"known": [0.0] * 10})
