"""A batched sample's heatmaps: one figure per sequence and layer behind a picker, while they fit the page's budget."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_run, numpy_trace, split_options

from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.page.build import report_page
from lstmviz_cli.page.context import PageContext, context
from lstmviz_cli.page.figuredata import HeatmapData
from lstmviz_cli.page.ids import Ids
from lstmviz_cli.page.model import FigureSpec, Page, Paragraph, Section, SequencePicker
from lstmviz_cli.page.outline import outline
from lstmviz_cli.page.sections import heatmaps
from lstmviz_cli.page.view import ViewOptions, resolve_view
from lstmviz_cli.render.draw import figure_svg
from lstmviz_cli.tracing.records import Run


def page_of(run: Run, **view: object) -> Page:
    view_options, analysis_options = split_options(**view)
    return report_page(run, analyze_run(run, analysis_options), view_options)


def section(page: Page) -> Section:
    return next(s for s in page.sections if s.id == "heatmaps")


def figures(page: Page) -> list[FigureSpec]:
    return [b for b in section(page).blocks if isinstance(b, FigureSpec)]


def batch_run(batch: int, *, steps: int = 9, lengths: list[int] | None = None, num_layers: int = 2) -> Run:
    """A features run of `batch` sequences; `lengths`: padded, NaN after each sequence's last valid step (as traced)."""
    trace = numpy_trace("LSTM", steps=steps, hidden_size=5, num_layers=num_layers, batch=batch, seed=7)
    if lengths is not None:
        trace.lengths["lstm"] = np.asarray(lengths, dtype=np.int64)
        for layer in trace.layers:
            for values in layer.series.values():
                for k, valid in enumerate(lengths):
                    values[k, valid:] = np.nan
    run = make_run(trace)
    run.sample.values = np.zeros((batch, steps, 3), dtype=np.float32)
    return run


def test_a_batch_of_three_draws_each_sequence_from_its_own_rows() -> None:
    run = batch_run(3, lengths=[9, 6, 9])
    page = page_of(run, units="all")
    blocks = section(page).blocks
    pickers = [b for b in blocks if isinstance(b, SequencePicker)]
    assert len(pickers) == 1
    assert pickers[0].choices == ("sequence 0 of 3 (valid steps 9)", "sequence 1 of 3 (valid steps 6)",
                                  "sequence 2 of 3 (valid steps 9)")
    # The picker comes before every heatmap.
    assert blocks.index(pickers[0]) < min(blocks.index(f) for f in figures(page))
    for layer in run.trace.layers:
        specs = [f for f in figures(page) if f.ref.prefix == layer.prefix]
        assert [f.sequence for f in specs] == [0, 1, 2]
        assert [f.ref.kind for f in specs] == ["heatmaps", "heatmaps-seq1", "heatmaps-seq2"]
        for k, spec in enumerate(specs):
            assert isinstance(spec.data, HeatmapData)
            assert spec.title.endswith(f"· sequence {k}")
            assert spec.caption.startswith(f"Sequence {k} of 3")
            assert spec.data.label.endswith(f"sequence {k}")  # the hover text names it
            for panel in spec.data.panels:
                expected = layer.series[panel.series][k][:, list(panel.units)].T
                np.testing.assert_array_equal(panel.values, expected)  # its own values, NaN padding included
            # One scale for the three: sequence 1's c is scaled like sequence 0's.
            assert [p.limits for p in spec.data.panels] == [p.limits for p in specs[0].data.panels]
        assert "padding from step 6" in specs[1].caption and "padding" not in specs[0].caption
        second = specs[1].data
        assert isinstance(second, HeatmapData) and np.isnan(second.panels[0].values[:, 6:]).all()
    # Findings still link to sequence 0's figure; ids are unique (Page checks) and in the outline.
    assert page.anchor(figures(page)[0].ref) == "heatmap-lstm-l0-fwd"
    ids = [f["figure"] for s in outline(page)["sections"] for f in s["blocks"] if "figure" in f]
    assert len(ids) == len(set(ids))


def test_a_token_batch_shows_each_sequence_its_own_tokens() -> None:
    trace = numpy_trace("LSTM", steps=4, hidden_size=3, batch=2, seed=1)
    vocab = ("a", "b", "c", "d")
    run = make_run(trace, labels=["a", "b", "c", "d"], kind="tokens", vocab=vocab)
    run.sample.values = np.array([[0, 1, 2, 3], [3, 3, 0, 1]], dtype=np.int64)
    tokens = [f.data.tokens for f in figures(page_of(run)) if isinstance(f.data, HeatmapData)]
    assert tokens == [("a", "b", "c", "d"), ("d", "d", "a", "b")]


def test_one_sequence_has_no_picker() -> None:
    page = page_of(batch_run(1))
    blocks = section(page).blocks
    assert not any(isinstance(b, SequencePicker) for b in blocks)
    assert [f.sequence for f in figures(page)] == [None, None]
    assert not any("sequence" in f.caption.lower() for f in figures(page))


def test_a_batch_over_the_budget_shows_sequence_zero_and_says_how_to_see_another(
        monkeypatch: pytest.MonkeyPatch) -> None:
    run = batch_run(3)
    one = heatmaps.figure_bytes(heatmaps.layer_heatmaps(page_context(run), run.trace.layers[0])[0][0])
    monkeypatch.setattr(heatmaps, "SEQUENCES_BUDGET", 2 * one - 1)  # two layers: one more sequence needs 2 * one
    page = page_of(run)
    assert not any(isinstance(b, SequencePicker) for b in section(page).blocks)
    assert [f.sequence for f in figures(page)] == [None, None]
    notes = [b.parts[0] for b in section(page).blocks if isinstance(b, Paragraph) and b.role == "note"]
    assert len(notes) == 1 and "holds 3 sequences" in str(notes[0]) and "--batch-index N" in str(notes[0])
    # Just enough for one more: two sequences, and the third is named for --batch-index.
    monkeypatch.setattr(heatmaps, "SEQUENCES_BUDGET", 2 * one)
    page = page_of(run)
    assert [f.sequence for f in figures(page)] == [0, 1, 0, 1]
    assert any("Sequence 2: --batch-index" in str(b.parts[0]) for b in section(page).blocks
               if isinstance(b, Paragraph))


def test_at_most_eight_sequences() -> None:
    assert heatmaps.sequences_shown(10, 1) == heatmaps.MAX_SEQUENCES == 8
    assert heatmaps.sequences_shown(3, heatmaps.SEQUENCES_BUDGET + 1) == 1
    assert heatmaps.sequences_shown(3, heatmaps.SEQUENCES_BUDGET // 2) == 3


def test_the_size_estimate_is_above_the_drawn_figure() -> None:
    """The budget rests on `figure_bytes`: it must not be below what the page will carry."""
    run = batch_run(1, steps=30, num_layers=1)
    spec = figures(page_of(run, units="all"))[0]
    assert isinstance(spec.data, HeatmapData)
    drawn = len(figure_svg(spec).encode())
    assert drawn <= heatmaps.figure_bytes(spec.data) <= 2 * drawn


def page_context(run: Run) -> PageContext:
    view = resolve_view(ViewOptions(), run)
    return context(run, analyze_run(run, split_options()[1]), view, Ids())


def test_exported_figures_are_of_the_first_sequence_only() -> None:
    """`lstmviz figures` exports a paper's figures: the picker's other sequences are the page's alone."""
    from lstmviz_cli.render.paper import page_items

    page = page_of(batch_run(3), units="all")
    exported = [item for item in page_items(page) if item.figure.startswith("heatmaps")]
    assert len([f for f in page.figures() if f.ref.kind.startswith("heatmaps")]) == 6  # 2 layers x 3 sequences
    assert len(exported) == 2  # one per layer
