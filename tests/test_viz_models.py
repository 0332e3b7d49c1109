"""dmf2mel.viz.models: figure builders and measurement helpers of the model chapters, on small inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from dmf2mel.errors import UserError
from dmf2mel.models import kan
from dmf2mel.viz import models as model_viz


def test_spline_bases_draws_every_basis_their_sum_and_the_knots():
    x = torch.linspace(-1.5, 1.5, 101)
    knots = kan.uniform_knots(4)
    bases = kan.b_spline_bases_reference(x[:, None], knots)[:, 0]
    figure = model_viz.spline_bases(x, bases, knots, (-1.0, 1.0), title="bases")
    assert len(figure.data) == bases.shape[1] + 1
    np.testing.assert_allclose(figure.data[-1].y, bases.sum(dim=1).numpy(), rtol=1e-6)
    vertical_lines = [s for s in figure.layout.shapes if s.type == "line"]
    assert len(vertical_lines) == len(knots)
    with pytest.raises(UserError, match="one row per x"):
        model_viz.spline_bases(x[:-1], bases, knots, (-1.0, 1.0), title="bad")


def test_edge_functions_one_panel_per_edge_with_parts():
    x = np.linspace(-1, 1, 20)
    curves = np.random.default_rng(0).standard_normal((2, 3, 20))
    figure = model_viz.edge_functions(x, curves, title="edges", parts={"a": curves / 2, "b": curves / 2})
    totals = [trace for trace in figure.data if trace.name == "edge function"]
    assert len(totals) == 6 and len(figure.data) == 18
    np.testing.assert_allclose(totals[-1].y, curves[1, 2])
    assert sum(trace.showlegend is not False for trace in figure.data) == 3  # one legend entry per series
    first_column = [figure.layout[f"yaxis{'' if i == 1 else i}"].title.text for i in (1, 4)]  # 3 columns a row
    assert first_column == ["φ(x)", "φ(x)"] and figure.layout.xaxis4.title.text == "x"
    with pytest.raises(UserError, match="shape"):
        model_viz.edge_functions(x, curves[..., :5], title="bad")


def test_gate_histograms_bin_on_unit_interval():
    figure = model_viz.gate_histograms({"q": np.array([0.1, 0.9]), "k": np.full((2, 3), 0.5)}, title="gates")
    assert [trace.name for trace in figure.data] == ["q", "k"]
    assert figure.data[1].x.shape == (6,)
    assert tuple(figure.layout.xaxis.range) == (0, 1)
    with pytest.raises(UserError):
        model_viz.gate_histograms({}, title="none")


def test_heatmap_menu_buttons_carry_each_map():
    maps = {"head 1": np.eye(3), "head 2": np.ones((3, 3))}
    figure = model_viz.heatmap_menu(maps, title="t", x_title="x", y_title="y")
    buttons = figure.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["head 1", "head 2"]
    np.testing.assert_array_equal(buttons[1].args[0]["z"][0], np.ones((3, 3)))
    single = model_viz.heatmap_menu({"only": np.eye(2)}, title="t", x_title="x", y_title="y", signed=True)
    assert not single.layout.updatemenus and single.data[0].zmid == 0
    with pytest.raises(UserError, match="2-D"):
        model_viz.heatmap_menu({"bad": np.ones(3)}, title="t", x_title="x", y_title="y")


def test_heatmap_panels_share_one_symmetric_scale_when_signed():
    panels = {"a": np.array([[1.0, -3.0]]), "b": np.array([[2.0, 0.5]])}
    figure = model_viz.heatmap_panels(panels, title="t", x_title="x", y_title="y", signed=True)
    assert len(figure.data) == 2 and all(trace.coloraxis == "coloraxis" for trace in figure.data)
    assert (figure.layout.coloraxis.cmin, figure.layout.coloraxis.cmax) == (-3.0, 3.0)
    with pytest.raises(UserError, match="same shape"):
        model_viz.heatmap_panels({"a": np.ones((1, 2)), "b": np.ones((2, 2))}, title="t", x_title="x", y_title="y")


def test_scale_traces_and_scaling_figure():
    figure = model_viz.scale_traces(
        {"T": (np.arange(4) / 4, np.arange(4)), "T/2": (np.arange(2) / 2, np.ones(2))}, title="t", y_title="v"
    )
    assert len(figure.data) == 2 and figure.data[0].line.shape == "hv"
    # both scales end where the window ends (1 s), not at the start of their last step
    assert figure.data[0].x[-1] == 1.0 and figure.data[1].x[-1] == 1.0
    assert list(figure.data[1].y) == [1.0, 1.0, 1.0]
    scaling = model_viz.scaling_figure(
        [10, 100], {"scan": [1.0, 10.0], "attention": [1.0, 100.0]}, title="t", y_title="s"
    )
    assert scaling.layout.xaxis.type == "log" and scaling.layout.yaxis.type == "log"
    with pytest.raises(UserError, match="values for"):
        model_viz.scaling_figure([10, 100], {"scan": [1.0]}, title="t", y_title="s")


def test_bar_figures():
    bars = model_viz.bar_figure(
        {"a": 1.0, "b": 2000.0}, title="t", y_title="v", x_title="k", log_y=True, reference=("ref", 5.0)
    )
    assert list(bars.data[0].text) == ["1", "2e+03"] and bars.layout.yaxis.type == "log"
    assert (bars.layout.xaxis.title.text, bars.layout.yaxis.title.text) == ("k", "v")
    assert bars.layout.shapes[0].y0 == 5.0
    stacked = model_viz.stacked_bars(
        {"ours": {"dcfam": 1, "rest": 2}, "official": {"dcfam": 3}}, title="t", y_title="n", x_title="model"
    )
    assert stacked.layout.xaxis.title.text == "model"
    assert [trace.name for trace in stacked.data] == ["dcfam", "rest"]
    assert list(stacked.data[1].y) == [2.0, 0.0]


def test_scan_benchmark_groups_rows_and_skips_unmeasured_ones():
    report = {
        "results": [
            {"shape": [2, 8, 16, 4], "backend": "reference", "pass": "forward", "min_s": 0.5, "peak_extra_mb": 10.0},
            {"shape": [2, 8, 16, 4], "backend": "cpu", "pass": "forward", "min_s": 0.01, "peak_extra_mb": 1.0},
            {"shape": [2, 8, 16, 4], "backend": "mambapy", "pass": "forward", "status": "skipped"},
        ]
    }
    figure = model_viz.scan_benchmark(report)
    assert [trace.name for trace in figure.data] == ["reference", "reference", "cpu", "cpu"]
    assert (figure.layout.yaxis.title.text, figure.layout.yaxis2.title.text) == ("time (s)", "peak extra memory (MiB)")
    assert list(figure.data[3].y) == [1.0]
    with pytest.raises(UserError, match="no measured rows"):
        model_viz.scan_benchmark({"results": [report["results"][2]]})


def test_table_renders_html_and_markdown_with_escaping():
    table = model_viz.table([{"module": "a", "parameters": 1}, {"module": "<b>", "parameters": (2, 3)}])
    assert table._repr_markdown_().splitlines() == [
        "| module | parameters |",
        "|---|---|",
        "| a | 1 |",
        "| <b> | (2, 3) |",
    ]
    rendered = table._repr_html_()
    assert rendered.count("<tr>") == 3 and "<th>parameters</th>" in rendered and "&lt;b&gt;" in rendered
    with pytest.raises(UserError, match="empty"):
        model_viz.table([])


def test_saved_tensor_bytes_counts_what_backward_keeps():
    x = torch.randn(100, 8, requires_grad=True)
    # exp saves its output (100 x 8 float32); a sum saves nothing
    assert model_viz.saved_tensor_bytes(lambda: x.exp().sum()) == 100 * 8 * 4
    assert model_viz.saved_tensor_bytes(lambda: (x + 1).sum()) == 0
    layer = kan.KANLinear(8, 4, grid_size=5)
    recursion = lambda: torch.einsum(  # noqa: E731
        "tik,oik->to", kan.b_spline_bases_reference(x, layer.knots()), layer.scaled_spline_weight()
    )
    assert model_viz.saved_tensor_bytes(recursion) > 4 * model_viz.saved_tensor_bytes(lambda: layer(x))


def test_best_time_is_the_fastest_run():
    calls = []
    assert model_viz.best_time(lambda: calls.append(1), repeats=3) >= 0.0
    assert len(calls) == 4  # one warm-up


def test_module_shapes_records_every_call_in_order():
    shared = nn.Linear(4, 4)
    model = nn.Sequential(nn.Linear(3, 4), shared, shared, nn.Linear(4, 2))
    rows = model_viz.module_shapes(model, torch.zeros(5, 3))
    assert [(row["module"], row["call"]) for row in rows] == [("0", 1), ("1", 1), ("1", 2), ("3", 1)]
    assert rows[0]["input shape"] == (5, 3) and rows[-1]["output shape"] == (5, 2)
    assert not shared._forward_hooks  # hooks removed
    with pytest.raises(UserError, match="no submodule"):
        model_viz.module_shapes(model, torch.zeros(5, 3), names=["missing"])


def test_module_outputs_keeps_each_call():
    shared = nn.Linear(2, 2)
    model = nn.Sequential(shared, nn.ReLU(), shared)
    x = torch.randn(3, 2)
    outputs = model_viz.module_outputs(model, x, names=["0", "1"])
    assert len(outputs["0"]) == 2 and len(outputs["1"]) == 1
    torch.testing.assert_close(outputs["0"][1], model(x))
    assert not shared._forward_hooks
    with pytest.raises(UserError, match="no submodule"):
        model_viz.module_outputs(model, x, names=["9"])


def test_growth_exponent_and_crossover_read_what_was_measured():
    lengths = [64, 128, 256, 512]
    assert model_viz.growth_exponent(lengths, [2.0 * n for n in lengths]) == pytest.approx(1.0)
    assert model_viz.growth_exponent(lengths, [n**2 / 7 for n in lengths]) == pytest.approx(2.0)
    assert model_viz.growth_exponent(lengths, [float("nan"), 4.0, 8.0, 16.0]) == pytest.approx(1.0)
    with pytest.raises(UserError):
        model_viz.growth_exponent(lengths, [float("nan")] * 3 + [1.0])
    assert model_viz.first_length_below(lengths, [5, 1, 2, 1], [1, 2, 4, 8]) == 128
    assert model_viz.first_length_below(lengths, [1, 5, 2, 1], [2, 2, 4, 8]) == 256
    assert model_viz.first_length_below(lengths, [9, 9, 9, 9], [1, 2, 4, 8]) is None


def test_log_axes_spanning_decades_label_only_powers_of_ten():
    """plotly labels the ticks between powers of ten by their first digit ("2", "5"), which reads as values."""
    memory = model_viz.bar_figure(
        {"recursion": 40.0, "four bases": 0.3}, title="t", y_title="GiB", x_title="k", log_y=True
    )
    assert memory.layout.yaxis.type == "log" and memory.layout.yaxis.dtick == 1
    within_a_decade = model_viz.bar_figure({"a": 2.0, "b": 5.0}, title="t", y_title="v", x_title="k", log_y=True)
    assert within_a_decade.layout.yaxis.type == "log" and within_a_decade.layout.yaxis.dtick is None
    scaling = model_viz.scaling_figure([64, 640, 6400], {"m": [1e3, 1e4, 1e5]}, title="t", y_title="bytes")
    assert scaling.layout.xaxis.dtick == 1 and scaling.layout.yaxis.dtick == 1
