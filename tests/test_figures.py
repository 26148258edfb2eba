"""Figures: time binning and unit ordering (the page's choice) with known answers; heatmaps and weights render byte-stably."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pytest
from conftest import HOSTILE, numpy_trace

from lstmviz_cli.page import unitorder
from lstmviz_cli.page.figuredata import HeatPanel
from lstmviz_cli.render import figures
from lstmviz_cli.render.mpl import to_svg

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def test_bin_time_means_per_bin() -> None:
    values = np.arange(1000 * 2, dtype=np.float64).reshape(1000, 2)
    binned, width = unitorder.bin_time(values, max_columns=400)
    assert width == 3 and binned.shape == (334, 2)
    np.testing.assert_allclose(binned[0], values[:3].mean(axis=0))
    np.testing.assert_allclose(binned[-1], values[999])  # the last bin holds one step


def test_bin_time_keeps_short_sequences_and_ignores_padding() -> None:
    values = np.ones((10, 3))
    same, width = unitorder.bin_time(values, max_columns=400)
    assert width == 1 and same is values
    padded = np.array([[1.0], [3.0], [np.nan], [np.nan]])
    binned, width = unitorder.bin_time(padded, max_columns=2)
    assert width == 2 and binned[0, 0] == 2.0 and np.isnan(binned[1, 0])


def test_order_units_variance_and_none() -> None:
    t = np.linspace(0, 1, 50)
    values = np.stack([0.1 * t, 3.0 * t, 1.0 * t, 0.0 * t], axis=1)
    assert unitorder.order_units(values, "variance").tolist() == [1, 2, 0, 3]
    assert unitorder.order_units(values, "none").tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError):
        unitorder.order_units(values, "random")


def test_order_units_cluster_puts_correlated_units_together() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=200), rng.normal(size=200)
    # units 0 and 2 follow a, units 1 and 3 follow -a... and b: two groups interleaved by index.
    values = np.stack([a, b, a + 0.05 * rng.normal(size=200), b + 0.05 * rng.normal(size=200)], axis=1)
    order = unitorder.order_units(values, "cluster").tolist()
    groups = ["a" if u in (0, 2) else "b" for u in order]
    assert groups in (["a", "a", "b", "b"], ["b", "b", "a", "a"])
    assert unitorder.order_units(values, "cluster").tolist() == order  # deterministic


def test_time_ticks_are_step_numbers_with_the_token_under_each() -> None:
    from lstmviz_cli.render.mpl import Canvas

    wide = Canvas(width=10.0, font=9.0)
    # Few steps, wide columns: every step numbered, the tokens in a row of their own.
    positions, labels, token_row = figures.time_ticks(3, 0, 1, ["a", " ", "\n"], column_width=1.0, canvas=wide)
    assert positions == [0, 1, 2] and labels == ["0", "1", "2"] and token_row
    # --steps 100:140 at a paper's single column: round step numbers, each with its token under it.
    tokens = [chr(ord("a") + k % 26) for k in range(40)]
    positions, labels, token_row = figures.time_ticks(40, 100, 1, tokens, column_width=2.4 / 40,
                                                      canvas=Canvas(width=3.5, font=8.0))
    assert not token_row and labels[0] == "100\na" and positions[1] - positions[0] in (5, 10)
    assert all(int(label.split("\n")[0]) % (positions[1] - positions[0]) == 0 for label in labels)
    # Binned columns (50 steps each) are labelled at round step numbers, each at its own step's place.
    positions, labels, _ = figures.time_ticks(400, 100, 50, None, column_width=8.0 / 400, canvas=wide)
    assert positions == [(int(label) - 100 + 0.5) / 50 - 0.5 for label in labels]
    assert all(int(label) % 1000 == 0 for label in labels) and 10 <= len(labels) <= 30
    # 5,000 steps in bins of 13 (a width no round stride is a multiple of): still round numbers
    # (not 0, 195, 390 ...), none past the last bin's first step, step 1000 inside the bin holding it.
    positions, labels, _ = figures.time_ticks(385, 0, 13, None, column_width=8.0 / 385, canvas=wide)
    steps = [int(label) for label in labels]
    stride = steps[1] - steps[0]
    assert stride in figures.NICE_STRIDES and stride >= 100 and all(s % stride == 0 for s in steps)
    assert steps[0] == 0 and steps[-1] <= 384 * 13
    k = steps.index(1000)
    assert round(positions[k]) == 1000 // 13 and abs(positions[k] - 1000 // 13) < 0.5


def _panels(trace):
    layer = trace.layers[0]
    return [HeatPanel(name, layer.series[name][0].T, list(range(layer.units))) for name in layer.series]


def test_heatmaps_deterministic_and_labels_not_markup() -> None:
    trace = numpy_trace("LSTM", steps=9, hidden_size=4)
    tokens = [HOSTILE, "</svg>", "<b>", "$x$", "\\", "a", "b", "c", "d"]
    svg1 = to_svg(figures.plot_gate_heatmaps(_panels(trace), start=0, width=1, tokens=tokens))
    svg2 = to_svg(figures.plot_gate_heatmaps(_panels(trace), start=0, width=1, tokens=tokens))
    assert svg1 == svg2
    assert svg1.count("<svg") == 1 and svg1.count("</svg>") == 1 and "<script" not in svg1 and "<b>" not in svg1
    assert svg1.count("<image") == 12  # a raster per series (i f g o c h) and per colour bar


def test_heatmaps_gru_and_binned_axis_label() -> None:
    trace = numpy_trace("GRU", steps=30, hidden_size=3, module="gru")
    fig = figures.plot_gate_heatmaps(_panels(trace), start=0, width=5, tokens=None)
    texts = [ax.xaxis.label.get_text() for ax in fig.axes] + [ax.get_title(loc="left") for ax in fig.axes]
    assert "time step (means over bins of 5 steps)" in texts
    assert {"r · reset gate", "z · update gate", "n · new gate", "h · hidden state"} <= set(texts)


@pytest.mark.parametrize("kind, proj", [("LSTM", 0), ("LSTM", 2), ("GRU", 0)])
def test_weights_figure_splits_gates(kind: str, proj: int) -> None:
    trace = numpy_trace(kind, steps=3, hidden_size=4, proj_size=proj)
    w = trace.layers[0].weights
    fig = figures.plot_weights(trace.layers[0])
    gates = "ifgo" if kind == "LSTM" else "rzn"
    by_title = {ax.get_title(loc="left").split(":")[0]: ax for ax in fig.axes if ax.get_title(loc="left")}
    for name, columns in (("W_ih", 3), ("W_hh", proj or 4)):
        ax = by_title["$W_{" + name[2:] + "}$"]
        assert f": 4×{columns} per gate" in ax.get_title(loc="left")
        labels = [t.get_text() for t in ax.get_xticklabels()]
        assert labels == list(gates)
        # The image is the gate blocks side by side, NaN gaps between: the weights themselves.
        picture = np.asarray(ax.images[0].get_array().filled(np.nan))
        blocks = [picture[:, c] for c in range(picture.shape[1]) if not np.isnan(picture[:, c]).all()]
        np.testing.assert_allclose(np.stack(blocks, axis=1),
                                   np.concatenate(np.split(w[name.replace("W_", "weight_")], len(gates)), axis=1))
    bias = by_title["bias per unit ($b_{ih} + b_{hh}$)"]
    assert [t.get_text() for t in bias.get_xticklabels()] == list(gates)
    steps = [p for p in bias.patches]
    assert len(steps) == len(gates)
    np.testing.assert_allclose(np.concatenate([p.get_data().values for p in steps]), w["bias_ih"] + w["bias_hh"],
                               rtol=1e-6)


def test_gate_blocks_crop_large_matrices() -> None:
    matrix = np.arange(4 * 200 * 3, dtype=np.float32).reshape(4 * 200, 3)
    picture, centres, shapes = figures.gate_blocks(matrix, "ifgo", 200)
    assert shapes == [(200, 3)] * 4
    assert picture.shape[0] == figures.MAX_WEIGHT_ROWS
    np.testing.assert_array_equal(picture[:, :3], matrix[:128])
    assert np.isnan(picture[:, 3]).all() and len(centres) == 4


def test_gate_stats_figure_has_a_panel_per_layer() -> None:
    from conftest import stand_in_analysis

    trace = numpy_trace("LSTM", steps=6, hidden_size=3, num_layers=2)
    stats = stand_in_analysis(trace).gate_stats
    prefixes = [layer.prefix for layer in trace.layers]
    fig = figures.plot_gate_stats(stats, prefixes, {p: p for p in prefixes})
    titles = [ax.get_title(loc="left") for ax in fig.axes]
    assert titles.count("lstm/l0/fwd") == 1 and titles.count("lstm/l1/fwd") == 1
    means = [p.get_height() for p in fig.axes[0].patches]
    assert means == pytest.approx([s.mean for s in stats if s.prefix == "lstm/l0/fwd" and s.series != "c"])


def test_cell_state_scale_ignores_a_runaway_unit() -> None:
    c = np.tile(np.linspace(-1.0, 1.0, 200), (10, 1))
    c[0, :5] = 40.0  # one unit runs away for a few steps
    assert figures.cell_state_limit(c) == pytest.approx(float(np.percentile(np.abs(c), 99)))
    assert figures.cell_state_limit(c) < 2.0
    assert figures.cell_state_limit(None) == 1.0 and figures.cell_state_limit(np.full((2, 2), np.nan)) == 1.0
    panel = HeatPanel("c", c, list(range(10)))
    svg = to_svg(figures.plot_gate_heatmaps([panel], start=0, width=1, tokens=None))
    assert svg.count("<path") > 0


def test_heatmap_title_carries_the_users_own_name() -> None:
    values = np.full((3, 8), 0.5)
    fig = figures.plot_gate_heatmaps(
        [HeatPanel("f", values, [0, 1, 2], source_name="forget_gate")], start=0, width=1, tokens=None
    )
    assert fig.axes[0].get_title(loc="left") == "f · forget gate · forget_gate"


def _bad_artists(fig: Figure) -> int:
    """How many artists of the unit-activity figure are drawn in its "past the threshold" colour."""
    from matplotlib.colors import to_hex

    from lstmviz_cli.render.figures_analysis import BAD

    count = 0
    for ax in fig.axes:
        for artist in [*ax.lines, *ax.patches, *ax.texts]:
            colour = artist.get_color() if hasattr(artist, "get_color") else artist.get_facecolor()
            count += to_hex(colour).lower() == BAD.lower()
    return count


@pytest.mark.parametrize("steps", [1, 2, 12])
def test_activity_figure_marks_no_dead_unit_in_a_layer_too_short_to_judge(steps: int) -> None:
    """One or two steps give every unit a range of 0: the page says no threshold applies, and its
    figure must not paint every unit dead; a judged layer with a flat unit still marks it."""
    from conftest import make_run

    from lstmviz_cli.analysis.options import AnalysisOptions
    from lstmviz_cli.explain.orchestrate import analyze_run
    from lstmviz_cli.page.build import report_page
    from lstmviz_cli.page.figuredata import ActivityData
    from lstmviz_cli.page.view import ViewOptions
    from lstmviz_cli.render.draw import plot

    trace = numpy_trace("LSTM", steps=steps, hidden_size=4)
    trace.layers[0].series["h"][:, :, 2] = 0.25  # unit 2 never moves: dead wherever a layer can be judged
    run = make_run(trace, name="short.pt")
    page = report_page(run, analyze_run(run, AnalysisOptions()), ViewOptions())
    spec = next(s for s in page.figures() if isinstance(s.data, ActivityData))
    assert isinstance(spec.data, ActivityData)
    fig = plot(spec.data)
    assert fig is not None
    title = fig.texts[0].get_text() if fig.texts else ""
    if steps < 4:
        assert spec.data.unjudged == steps and "too short to judge" in spec.caption
        assert _bad_artists(fig) == 0 and "not judged" in title
    else:
        assert spec.data.unjudged is None and "red: past the threshold" in spec.caption
        assert _bad_artists(fig) >= 2 and "not judged" not in title  # unit 2's bar and its ▲, the dashed line
