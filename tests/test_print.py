"""Figures for print and screen (issue 16): laid out for their size, no overlapping text, readable PDFs,
every requested unit findable, the options behind them (--color-scale, --units 0, --batch-index)."""

from __future__ import annotations

import io
import itertools
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import TEXT, make_run, numpy_trace
from matplotlib.figure import Figure
from matplotlib.text import Annotation, Text

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.errors import InputError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.page.build import report_page
from lstmviz_cli.page.figuredata import DIAGRAM_TYPES, HeatmapData
from lstmviz_cli.page.sections.heatmaps import panel_scale
from lstmviz_cli.page.view import ViewOptions, parse_units
from lstmviz_cli.render import paper
from lstmviz_cli.render.draw import plot
from lstmviz_cli.render.mpl import SCREEN, Canvas, finish

pypdf = pytest.importorskip("pypdf")
SINGLE = paper.PublicationStyle(width=paper.WIDTHS["single"]).canvas
DOUBLE = paper.PublicationStyle(width=paper.WIDTHS["double"]).canvas


def _pages() -> list[object]:
    """Report pages of a char model (2 layers, tokens) and a bidirectional projected LSTM on features."""
    text = (TEXT + " ") * 6
    char = make_run(numpy_trace("LSTM", steps=len(text), hidden_size=10, num_layers=2), name="charlm.pt", text=text)
    sine = make_run(numpy_trace("LSTM", steps=40, hidden_size=8, num_layers=2, bidirectional=True, proj_size=4,
                                input_size=1), name="sine.pt")
    gru = make_run(numpy_trace("GRU", steps=30, hidden_size=12, module="gru"), name="gru.pt")
    return [report_page(run, analyze_run(run, AnalysisOptions()), ViewOptions()) for run in (char, sine, gru)]


def _saliency_figure() -> object:
    """A saliency figure (the numpy runs above have no model to differentiate): 120 steps with tokens."""
    from lstmviz_cli.analysis.records import SaliencyResult
    from lstmviz_cli.page.figuredata import SaliencyData
    from lstmviz_cli.page.model import FigureRef, FigureSpec

    values = np.exp(np.linspace(-12, 0, 120))
    result = SaliencyResult(step=119, target="log-probability of the predicted 'A' at step 119", values=values,
                            horizon=8)
    return FigureSpec("fig-saliency", FigureRef("saliency"), SaliencyData(result, tuple("ab c" * 30), 0.9), "saliency")


PAGES = _pages()
# One plot of each kind (the char model's), plus the 4-layer gate statistics and the projected heatmap.
FIGURES = [spec for spec in PAGES[0].figures() if not isinstance(spec.data, DIAGRAM_TYPES)
           and spec.ref.prefix in (None, "lstm/l1/fwd")]
FIGURES += [spec for spec in PAGES[1].figures() if spec.ref.kind == "gate-stats"
            or (spec.ref.kind == "heatmaps" and spec.ref.prefix == "lstm/l1/bwd")]
FIGURES.append(_saliency_figure())


def _drawn_ticks(axis: object, minor: bool) -> list[Text]:
    """The tick labels matplotlib draws: a visible axis, a visible label, its tick inside the view."""
    if not axis.get_visible():
        return []
    low, high = sorted(axis.get_view_interval())
    ticks = axis.get_minor_ticks() if minor else axis.get_major_ticks()
    locs = axis.get_minorticklocs() if minor else axis.get_majorticklocs()
    drawn = []
    for tick, loc in zip(ticks, locs, strict=False):
        if not low - 1e-9 <= loc <= high + 1e-9:
            continue
        drawn += [label for label in (tick.label1, tick.label2) if label.get_visible() and label.get_text()]
    return drawn


def _texts(fig: Figure) -> tuple[list[tuple[str, object, Text]], set[int]]:
    """Every text the figure draws with its box, and the ids of those that are tick labels. Tokens
    written on a trajectory's points (annotations) are data, not layout: left out."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    found: list[Text] = []
    ticks: set[int] = set()
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for axis in (ax.xaxis, ax.yaxis):
            for minor in (False, True):
                drawn = _drawn_ticks(axis, minor)
                found += drawn
                ticks |= {id(t) for t in drawn}
            if axis.get_visible() and axis.label.get_visible():
                found.append(axis.label)
        found += [ax.title, ax._left_title, ax._right_title]  # noqa: SLF001 - matplotlib's own three titles
        found += [t for t in ax.texts if not isinstance(t, Annotation)]
        legend = ax.get_legend()
        if legend is not None:
            found += list(legend.get_texts())
    found += list(fig.texts)
    for extra in (fig._suptitle, fig._supxlabel, fig._supylabel):  # noqa: SLF001
        if extra is not None:
            found.append(extra)
    out = []
    for text in found:
        if not text.get_visible() or not text.get_text().strip():
            continue
        box = text.get_window_extent(renderer)
        if box.width > 0 and box.height > 0:
            out.append((text.get_text(), box, text))
    return out, ticks


def _tick_overlaps(fig: Figure) -> list[tuple[str, str]]:
    """Pairs of tick labels of one axis whose boxes overlap (more than the blank around digits)."""
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    bad = []
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            for minor in (False, True):
                labels = _drawn_ticks(axis, minor)
                boxes = [t.get_window_extent(renderer) for t in labels]
                for (a, ta), (b, tb) in itertools.combinations(zip(boxes, labels, strict=True), 2):
                    dx = min(a.x1, b.x1) - max(a.x0, b.x0)
                    dy = min(a.y1, b.y1) - max(a.y0, b.y0)
                    if dx > 0.5 and dy > 0.25 * min(a.height, b.height):
                        bad.append((ta.get_text(), tb.get_text()))
    return bad


@pytest.mark.parametrize("canvas", [SCREEN, SINGLE, DOUBLE], ids=["screen", "single", "double"])
def test_no_text_overlaps_or_leaves_the_figure(canvas: Canvas) -> None:
    """Every plot of three report pages, drawn at the page's size and at both column widths: tick labels
    never overlap, titles and axis labels never overlap other text, and no text is cut at the edge."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    problems = []
    for spec in FIGURES:
        if True:
            fig = plot(spec.data, canvas)
            if fig is None:
                continue
            FigureCanvasAgg(fig)
            finish(fig)
            fig.canvas.draw()
            width, height = fig.bbox.width, fig.bbox.height
            name = spec.id
            if canvas.fill:
                assert fig.get_size_inches()[0] == pytest.approx(canvas.width), name
            problems += [(name, "ticks", pair) for pair in _tick_overlaps(fig)]
            texts, ticks = _texts(fig)
            for label, box, _ in texts:
                if box.x0 < -1 or box.y0 < -1 or box.x1 > width + 1 or box.y1 > height + 1:
                    problems.append((name, "cut at the edge", label))
            # Titles, axis labels, legends and colour-bar labels against every other text (ticks against
            # ticks are checked above, with the blank around digits allowed).
            others = [entry for entry in texts if id(entry[2]) not in ticks]
            for la, a, ta in others:
                for lb, b, tb in texts:
                    if tb is ta:
                        continue
                    dx = min(a.x1, b.x1) - max(a.x0, b.x0)
                    dy = min(a.y1, b.y1) - max(a.y0, b.y0)
                    if dx > 1 and dy > 1:
                        problems.append((name, "overlap", tuple(sorted((la, lb)))))
    PROBLEMS[:] = sorted(set(problems))
    assert PROBLEMS == []


PROBLEMS: list[object] = []


def test_heatmap_rows_all_labelled_and_time_axis_is_steps() -> None:
    """Up to 64 rows, every row carries its unit; the time axis shows step numbers (and tokens)."""
    spec = next(s for s in PAGES[0].figures() if isinstance(s.data, HeatmapData))
    assert isinstance(spec.data, HeatmapData)
    fig = plot(spec.data, SCREEN)
    finish(fig)
    for k, panel in enumerate(spec.data.panels):
        ax = next(ax for ax in fig.axes if ax.get_label() == f"heat:{k}")
        assert [t.get_text() for t in ax.get_yticklabels()] == [str(u) for u in panel.units]
    bottom = next(ax for ax in fig.axes if ax.get_label() == f"heat:{len(spec.data.panels) - 1}")
    numbers = [t.get_text().split("\n")[0] for t in bottom.get_xticklabels()]
    assert numbers and all(n.isdigit() for n in numbers) and numbers[0] == "0"
    assert "time step" in bottom.get_xlabel() and "token" in bottom.get_xlabel()


def test_exported_pdfs_are_strictly_valid_with_embedded_fonts(tmp_path: Path) -> None:
    """Every figure of a page, plots and Graphviz diagrams, as PDF at a single column: strict pypdf reads
    it (cairo's "(cairo 1.16.0 (https://...))" producer once broke it), every font is embedded."""
    from test_export import _fonts

    kinds: set[str] = set()
    items = [item for item in paper.page_items(PAGES[1]) if not (item.figure in kinds or kinds.add(item.figure))]
    entries = paper.export_items(items, model="sine", out_dir=tmp_path, fmt="pdf",
                                 style=paper.PublicationStyle(width=3.5))
    assert {e.figure for e in entries} >= {"cell", "architecture", "unrolled", "heatmaps", "weights"}
    for entry in entries:
        reader = pypdf.PdfReader(tmp_path / entry.file, strict=True)
        marks = (str(reader.metadata.get("/Producer", "")), str(reader.metadata.get("/Creator", "")))
        assert any(mark.startswith("lstmviz-generated") for mark in marks), entry.file
        fonts = _fonts(reader.pages[0])
        assert fonts and all(embedded for _, _, embedded in fonts), entry.file
        assert float(reader.pages[0].mediabox.width) <= 3.5 * 72 + 0.5, entry.file


def test_diagram_text_follows_the_font_size() -> None:
    """--font-size reaches the diagrams: their DOT says it, and a single column stacks the cell."""
    spec = next(s for s in PAGES[0].figures() if s.ref.kind == "cell")
    from lstmviz_cli.render.draw import diagram

    for font in (7.0, 10.0):
        canvas = paper.PublicationStyle(width=3.5, font_size=font).canvas
        assert isinstance(spec.data, DIAGRAM_TYPES)
        source = diagram(spec.data, canvas).source
        assert f'fontsize={font:g}' in source and "rankdir=TB" in source
    assert "rankdir=LR" in diagram(spec.data, DOUBLE).source


def test_requested_units_are_in_the_exported_files(tmp_path: Path) -> None:
    """--units 0,5,9,3: each unit's label is text of the SVG, and the rows are listed in the metadata."""
    run = make_run(numpy_trace("LSTM", steps=40, hidden_size=12), name="m.pt", text="ab" * 20)
    page = report_page(run, analyze_run(run, AnalysisOptions()), ViewOptions(units="0,5,9,3", sort_units="cluster"))
    items = [i for i in paper.page_items(page) if i.figure == "heatmaps"]
    for fmt in ("svg", "png"):
        (entry,) = paper.export_items(items, model="m", out_dir=tmp_path, fmt=fmt, style=paper.PublicationStyle(
            width=3.5))
        data = (tmp_path / entry.file).read_bytes()
        if fmt == "svg":
            text = data.decode()
            metadata = re.search(r"<dc:description>(.*?)</dc:description>", text, re.S)
            assert metadata and all(f"{u}" in metadata.group(1) for u in (0, 3, 5, 9))
        else:
            from PIL import Image

            description = Image.open(io.BytesIO(data)).text["Description"]
            assert all(re.search(rf"\b{u}\b", description) for u in (0, 3, 5, 9))
    fig = plot(items[0].build(SINGLE) and page.figures()[[s.ref.kind for s in page.figures()].index("heatmaps")].data,
               SINGLE)
    finish(fig)
    labels = {t.get_text() for ax in fig.axes for t in ax.get_yticklabels()}
    assert {"0", "3", "5", "9"} <= labels


def test_color_scale_auto_robust_fixed() -> None:
    flat = np.random.default_rng(0).uniform(0.45, 0.55, size=(6, 50))  # the sine sample's gates
    limits, words = panel_scale("f", flat, "auto")
    assert limits is not None and 0.45 <= limits[0] < limits[1] <= 0.55 and "1st–99th pct" in words
    assert panel_scale("f", flat, "fixed") == (None, "")
    spread = np.linspace(0, 1, 300).reshape(6, 50)
    assert panel_scale("f", spread, "auto") == (None, "")
    assert panel_scale("f", spread, "robust")[0] == pytest.approx((0.01, 0.99), abs=0.01)
    small_h = 0.1 * np.sin(np.linspace(0, 6, 300)).reshape(6, 50)
    limits, words = panel_scale("h", small_h, "auto")
    assert limits is not None and limits[0] == -limits[1] and limits[1] < 0.11 and "|h|" in words


def test_units_zero_is_unit_zero() -> None:
    layers = tuple(numpy_trace("LSTM", hidden_size=6).layers)
    assert parse_units("0", layers) == (0,)
    assert parse_units("4,", layers) == (4,) and parse_units("4", layers) == 4
    with pytest.raises(InputError, match="out of range"):
        parse_units("9,", layers)
    # Only commas name no unit: the usage line, not "unit ? is out of range".
    for text in (",", ",,", " , "):
        with pytest.raises(InputError, match=r"expected a count \(e\.g\. 32\), 'all', or unit indices") as error:
            parse_units(text, layers)
        assert "?" not in str(error.value)


def test_projected_h_rows_are_named_in_the_caption() -> None:
    """--units 5,6 on an LSTM projected to 4: c shows units 5 and 6, but h has only 4 units (h₀…h₃ of
    the projection), so its rows are its own; the caption must say so, not only "units 5, 6"."""
    from lstmviz_cli.page.figuredata import HeatmapData

    run = make_run(numpy_trace("LSTM", steps=20, hidden_size=8, proj_size=4, input_size=1), name="proj.pt")
    page = report_page(run, analyze_run(run, AnalysisOptions()), ViewOptions(units="5,6"))
    spec = next(s for s in page.figures() if isinstance(s.data, HeatmapData))
    assert isinstance(spec.data, HeatmapData)
    units = {p.series: p.units for p in spec.data.panels}
    assert set(units["c"]) == {5, 6} and set(units["h"]) <= {0, 1, 2, 3} and len(units["h"]) == 2
    assert spec.caption.startswith("units 5, 6 of 8")
    assert "h has 4 units of its own (the projection): its rows are its 2 of highest variance" in spec.caption
    # Every unit: all of h's 4.
    page = report_page(run, analyze_run(run, AnalysisOptions()), ViewOptions(units="all"))
    spec = next(s for s in page.figures() if isinstance(s.data, HeatmapData))
    assert "its rows are all 4" in spec.caption


def test_batch_index_picks_one_sequence() -> None:
    from lstmviz_cli.loading.inputs import pick_sequence
    from lstmviz_cli.loading.records import SampleInput

    values = np.array([[1, 2, 3], [3, 2, 1]], dtype=np.int64)
    sample = SampleInput(values=values, kind="tokens", labels=["a", "b", "c"], description="x.npy: 2 sequences",
                         lengths=np.array([3, 2]), arrays={"mask": np.ones((2, 3)), "scale": np.ones(4)})
    picked = pick_sequence(sample, 1, ("_", "a", "b", "c"))
    assert picked.values.tolist() == [[3, 2, 1]] and picked.labels == ["c", "b", "a"]
    assert picked.lengths is not None and picked.lengths.tolist() == [2]
    assert picked.arrays["mask"].shape == (1, 3) and picked.arrays["scale"].shape == (4,)
    assert "sequence 1 of 2" in picked.description and picked.picked == (1, 2)
    with pytest.raises(InputError, match="--batch-index 2: the sample holds 2 sequences"):
        pick_sequence(sample, 2, None)


def test_batch_index_picks_before_the_memory_budget(tmp_path: Path) -> None:
    """A batch too large to trace whole under --max-memory: one sequence of it (--batch-index) fits,
    and its trace size is that of one sequence (it was refused before the sequence was picked)."""
    import torch

    from lstmviz_cli.commands import pipeline
    from lstmviz_cli.commands.options import LoadOptions
    from lstmviz_cli.loading.budget import estimate_trace_bytes
    from lstmviz_cli.loading.records import RecurrentConfig

    torch.manual_seed(0)
    torch.save(torch.nn.LSTM(3, 8, batch_first=True).state_dict(), tmp_path / "sd.pt")
    np.save(tmp_path / "x.npy", np.random.default_rng(0).normal(size=(16, 50, 3)).astype(np.float32))
    config = RecurrentConfig(kind="LSTM", input_size=3, hidden_size=8)
    one = estimate_trace_bytes([config], 1, 50)
    options = LoadOptions(checkpoint=tmp_path / "sd.pt", input=tmp_path / "x.npy", max_memory=f"{2 * one}B")
    with pytest.raises(InputError, match="over the memory budget"):
        pipeline.load_and_trace(options)
    run = pipeline.load_and_trace(replace(options, batch_index=5))
    assert run.sample.batch == 1 and run.sample.picked == (5, 16) and run.sample.trace_bytes == one
    assert np.array_equal(run.sample.values[0], np.load(tmp_path / "x.npy")[5])


def test_progress_only_on_a_terminal() -> None:
    from rich.console import Console

    from lstmviz_cli.commands.progress import Steps

    quiet = io.StringIO()
    with Steps("report", console=Console(file=quiet, force_terminal=False)) as steps:
        steps.step("tracing")
        steps.figures(3, 10)
    assert quiet.getvalue() == ""
    shown = io.StringIO()
    with Steps("report", console=Console(file=shown, force_terminal=True, width=100)) as steps:
        steps.step("tracing")
        steps.figures(3, 10)
    assert "report" in shown.getvalue()
