"""The typed page model: sections, blocks, ids, captions and links, checked without drawing a figure.

Golden files (`tests/gold/page/*.json`, `tests/gold/html/*.html`) hold whole pages; rewrite them with
LSTMVIZ_UPDATE_GOLD=1 after an intended change and read the diff.
"""

from __future__ import annotations

import json
import re
from dataclasses import replace

import numpy as np
import pytest
from conftest import HOSTILE, TEXT, make_run, numpy_trace, split_options
from gold import check_gold, check_gold_json, scrub

from lstmviz_cli.analysis.analyze import analyze_trace
from lstmviz_cli.analysis.diff import diff_traces
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.prediction import predict
from lstmviz_cli.analysis.records import Analysis, FigureRef, MemoryProbe, SaliencyResult
from lstmviz_cli.analysis.serialize import analysis_json
from lstmviz_cli.analysis.thresholds import Thresholds, saturation_thresholds
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.loading.records import TensorAccounting
from lstmviz_cli.page.build import REPORT_SECTIONS, build_page, report_page, select
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.diff import build_diff_page
from lstmviz_cli.page.ids import Ids, slug
from lstmviz_cli.page.index import ReportSummary, build_index_page
from lstmviz_cli.page.model import FigureSpec, Findings, Highlight, Page, Section
from lstmviz_cli.page.outline import outline
from lstmviz_cli.page.view import ViewOptions, resolve_view
from lstmviz_cli.render.html import render_html
from lstmviz_cli.tracing.records import Run, Trace, TraceMeta


def page_of(run: Run, **view: object) -> Page:
    """The report page of `run`, options split as the CLI splits them (no figure is drawn)."""
    view_options, analysis_options = split_options(**view)
    return report_page(run, analyze_run(run, analysis_options), view_options)


def stub_svg(spec: FigureSpec) -> str:
    """A stand-in drawer: the page's markup without matplotlib or Graphviz (fast, version-independent)."""
    return f'<svg data-figure="{spec.id}" data-kind="{type(spec.data).__name__}"></svg>'


def text_of(page: Page) -> str:
    return json.dumps(outline(page), ensure_ascii=False)


def _memory_run() -> tuple[Run, Analysis]:
    """A text run whose analysis has saliency and a memory probe (as `explain` would add them)."""
    trace = numpy_trace("LSTM", steps=len(TEXT), hidden_size=4, seed=5)
    run = make_run(trace, name="charlm.pt", text=TEXT, vocab=tuple("abcde"), task="char-lm")
    values = np.linspace(0.05, 1.0, len(TEXT)) ** 3
    saliency = SaliencyResult(step=len(TEXT) - 1, target="logit of 'k' at step 23", values=values,
                              param_norms={"lstm.weight_hh_l0": 0.5, "lstm.bias_ih_l0": 0.25},
                              gate_norms={"lstm/l0/fwd": {"i": 0.1, "f": 0.2, "g": 0.3, "o": 0.4}})
    probe = MemoryProbe(prefix="lstm/l0/fwd", lengths=[1, 2, 4, 8], dependence=[1.0, 0.8, 0.4, 0.1])
    # The prediction as the orchestration reads it (once, from the model's output and what is known of it).
    prediction = predict(trace.output, run.loaded.info)
    analysis = analyze_trace(trace, prediction=prediction, tokens=list(TEXT), saliency=saliency, memory_probe=probe)
    return run, analysis


# -- golden pages ------------------------------------------------------------------------------------
def test_golden_report_pages(lstm_run: Run, gru_run: Run, bilstm_run: Run, hostile_run: Run) -> None:
    pages = {
        "lstm_charlm": page_of(lstm_run),
        "gru": page_of(gru_run),
        "bilstm_view": page_of(bilstm_run, layers="lstm/l1/bwd", units="0,2", steps="2:6", sort_units="cluster",
                               at_step=3),
        "thresholds": page_of(lstm_run, saturation_low=0.2, saturation_high=0.8),
        "hostile": page_of(hostile_run, title=HOSTILE),
        "memory": report_page(*_memory_run(), ViewOptions()),
    }
    for name, page in pages.items():
        check_gold_json(f"page/{name}.json", outline(page))


def test_golden_html_of_the_report_diff_and_index(lstm_run: Run) -> None:
    """The whole markup of three pages, each figure drawn by a stand-in (matplotlib's SVG is not ours to pin)."""
    check_gold("html/lstm_charlm.html", scrub(render_html(page_of(lstm_run), drawer=stub_svg)))
    check_gold("html/diff.html", scrub(render_html(_diff_page(Thresholds()), drawer=stub_svg)))
    rows = [
        ReportSummary(name="charlm.pt", file="charlm.html", format="dict-checkpoint", n_params=131124,
                      layers=["lstm/l0/fwd", "lstm/l1/fwd"], verify_error=7.6e-6, findings={"info": 5, "warning": 1}),
        ReportSummary(name=HOSTILE + ".pt", file=None, error="cannot read <b>it</b>"),
    ]
    check_gold("html/index.html", scrub(render_html(build_index_page(rows, title="lstmviz reports"), drawer=stub_svg)))


def _diff_page(thresholds: Thresholds) -> Page:
    before = numpy_trace("LSTM", steps=12, hidden_size=4, seed=1)
    after = numpy_trace("LSTM", steps=12, hidden_size=4, seed=1)
    after.layers[0].weights["weight_hh"] = after.layers[0].weights["weight_hh"] * 1.5
    after.layers[0].series["f"] = np.clip(after.layers[0].series["f"] * 1.3, 0, 1)
    result = diff_traces(before, after, analyze_trace(before, thresholds=thresholds),
                         analyze_trace(after, thresholds=thresholds), before_name="a.pt", after_name="b.pt",
                         sample="12 steps")
    return build_diff_page(result, thresholds)


# -- sections and ids ---------------------------------------------------------------------------------
def test_sections_in_order_with_contents(lstm_run: Run) -> None:
    page = page_of(lstm_run)
    assert [section.id for section in page.sections] == [
        "summary", "architecture", "cell", "unrolled", "heatmaps", "tokens", "weights", "gate-statistics",
        "gate-saturation", "interpretable-units", "unit-excerpts", "hypothesis", "memory-over-time",
        "state-trajectories", "diagnostics",
    ]
    assert page.toc()[7] == ("gate-statistics", "Gate statistics")
    # One gate-statistics figure on the whole page.
    assert [spec.ref.kind for spec in page.figures()].count("gate-stats") == 1
    kinds = {spec.ref.kind for spec in page.figures()}
    assert kinds == {"architecture", "cell", "unrolled", "heatmaps", "weights", "gate-stats", "saturation", "units",
                     "trajectories", "activity", "timescales"}


def test_ids_are_unicode_safe_and_given_once() -> None:
    assert slug("heatmap", "lstm/l0/fwd") == "heatmap-lstm-l0-fwd"
    assert slug("fig", "saturation", "enc.<script>/l0/fwd") == "fig-saturation-enc-script-l0-fwd"
    assert slug("слой") == "слой" and slug("层") == "层" and slug("", "!") == "x"
    assert slug("कि") == "कि"  # a vowel sign (a combining mark) stays part of the word
    ids = Ids(["unit-picker"])
    assert [ids.take("a.b"), ids.take("a-b"), ids.take("A_B"), ids.take("unit", "picker")] == [
        "a-b", "a-b-2", "a-b-3", "unit-picker-2"]
    assert all("_" not in ids.take(name) for name in ("a_b", "__", "x_y_z"))


def _two_module_run(first: str, second: str) -> Run:
    a = numpy_trace("LSTM", steps=8, hidden_size=3, module=first, seed=1)
    b = numpy_trace("LSTM", steps=8, hidden_size=3, module=second, seed=2)
    trace = Trace(layers=[*a.layers, *b.layers], modules={**a.modules, **b.modules}, verify_error=1e-7,
                  output=a.output, meta=TraceMeta(path=a.meta.path[:1] + b.meta.path))
    return make_run(trace)


@pytest.mark.parametrize("names", [("слой", "层"), ("enc.lstm", "enc-lstm")])
def test_modules_whose_names_meet_get_distinct_ids(names: tuple[str, str]) -> None:
    page = page_of(_two_module_run(*names))
    heatmaps = [spec.id for spec in page.figures() if spec.ref.kind == "heatmaps"]
    assert len(heatmaps) == 2 and len(set(heatmaps)) == 2
    if names[0] == "слой":
        assert heatmaps == ["heatmap-слой-l0-fwd", "heatmap-层-l0-fwd"]
    else:
        assert heatmaps == ["heatmap-enc-lstm-l0-fwd", "heatmap-enc-lstm-l0-fwd-2"]
    html = render_html(page, drawer=stub_svg)
    ids = re.findall(r'\sid="([^"]*)"', html)
    assert len(ids) == len(set(ids))


def test_a_broken_section_is_an_error(lstm_run: Run) -> None:
    def broken(ctx: PageContext) -> Section:
        raise KeyError("a bug in a section")

    run, analysis, view = select(lstm_run, analyze_run(lstm_run, AnalysisOptions()), ViewOptions())
    with pytest.raises(KeyError, match="a bug in a section"):
        build_page(run, analysis, view, sections=(*REPORT_SECTIONS[:3], broken, *REPORT_SECTIONS[3:]))


def test_recurrent_only_stamp_names_the_rebuilt_embedding_from_the_model_info(lstm_run: Run) -> None:
    """The embedding a --recurrent-only rebuild kept is a fact of the typed ModelInfo (no torch module here)."""
    info = replace(lstm_run.loaded.info, recurrent_only=True, embedding="emb\u202e",
                   accounting=TensorAccounting(total=9, unused=("norm.weight",), front=("norm",)))
    run = replace(lstm_run, loaded=replace(lstm_run.loaded, info=info))
    stamp = text_of(page_of(run))
    assert "Recurrent layers only (--recurrent-only)" in stamp
    assert "(token ids through the rebuilt embedding `emb\\\\u202e`)" in stamp  # shown, escaped, never obeyed
    assert ", without `norm`, which may run before them" in stamp and "\u202e" not in stamp
    bare = replace(run, loaded=replace(run.loaded, info=replace(info, embedding=None)))
    assert "Recurrent layers only" in text_of(page_of(bare)) and "rebuilt embedding" not in text_of(page_of(bare))


def test_tolerates_a_minimal_analysis(lstm_run: Run) -> None:
    page = build_page(lstm_run, Analysis(gate_stats=[], prediction=None), resolve_view(ViewOptions(), lstm_run))
    ids = [section.id for section in page.sections]
    assert "gate-statistics" not in ids and "heatmaps" in ids and "No prediction" in text_of(page)


# -- --layers ------------------------------------------------------------------------------------------
def test_layers_filter_every_section_and_the_json(bilstm_run: Run) -> None:
    analysis = analyze_run(bilstm_run, AnalysisOptions())
    assert {s.prefix for s in analysis.gate_stats} == {"lstm/l0/fwd", "lstm/l0/bwd", "lstm/l1/fwd", "lstm/l1/bwd"}
    run, chosen, view = select(bilstm_run, analysis, ViewOptions(layers="lstm/l1/bwd"))
    page = build_page(run, chosen, view)
    assert [layer.prefix for layer in run.trace.layers] == ["lstm/l1/bwd"]
    assert {spec.ref.prefix for spec in page.figures()} == {None, "lstm/l1/bwd"}
    document = json.dumps(analysis_json(chosen, page.anchor))
    for other in ("lstm/l0/fwd", "lstm/l0/bwd", "lstm/l1/fwd"):
        assert other not in text_of(page) and other not in document, other
    assert "lstm/l1/bwd" in document
    # Nothing is recomputed: the kept numbers are the full analysis' own.
    full = {(s.prefix, s.series): s.mean for s in analysis.gate_stats}
    assert all(full[(s.prefix, s.series)] == s.mean for s in chosen.gate_stats)


# -- captions from the thresholds in force ------------------------------------------------------------------
def test_captions_follow_the_saturation_thresholds(lstm_run: Run) -> None:
    text = text_of(page_of(lstm_run, saturation_low=0.2, saturation_high=0.8))
    for phrase in ("passes 0.2 or 0.8", '"< 0.2"', '"> 0.8"', "gate value below 0.2",
                   "gate value above 0.8", "saturated (below 0.2 or above 0.8)"):
        assert phrase in text, phrase
    for stale in ("below 0.1", "above 0.9", "< 0.1", "> 0.9"):
        assert not re.search(re.escape(stale) + r"(?!\d)", text), stale
    diff = text_of(_diff_page(saturation_thresholds(0.2, 0.8)))
    assert "below 0.2 (left-saturated) or above 0.8" in diff and '"< 0.2 before"' in diff
    assert not re.search(r"(below|above|[<>]) 0\.[19](?!\d)", diff)


# -- findings link to figures ---------------------------------------------------------------------------------
def test_findings_link_to_figures_the_page_shows() -> None:
    trace = numpy_trace("LSTM", steps=16, hidden_size=6, seed=4)
    trace.layers[0].series["h"][:, :, :3] = 0.001  # dead units
    trace.layers[0].series["f"][:] = 0.999  # pinned forget gates
    run = make_run(trace)
    analysis = analyze_run(run, AnalysisOptions())
    page = page_of(run)
    assert {f.code for f in analysis.findings} >= {"dead_units", "forget_pinned_high"}
    figures = {spec.id: spec for spec in page.figures()}
    rows = [row for block in page.blocks() if isinstance(block, Findings) for row in block.rows]
    assert len(rows) == len(analysis.findings)
    for row in rows:
        assert row.figure is not None and page.anchor(row.figure) in figures
    assert page.anchor(FigureRef("activity", "lstm/l0/fwd")) == "fig-activity-lstm-l0-fwd"
    assert page.anchor(FigureRef("saliency")) is None  # not on this page: no link, never a dangling one
    anchors = [f["anchor"] for f in analysis_json(analysis, page.anchor)["findings"]]
    assert anchors and all(anchor in figures for anchor in anchors)


# -- the one highlighter -----------------------------------------------------------------------------------------
def test_token_highlighting_colours_by_the_unit(lstm_run: Run) -> None:
    from lstmviz_cli.render.highlight import LEVELS, token_class

    page = page_of(lstm_run)
    blocks = [b for b in page.blocks() if isinstance(b, Highlight) and b.id and b.id.startswith("tokens-")]
    cells = lstm_run.trace.layers[0].series["c"][0].astype(np.float64)
    top = int(np.argmax(cells.var(axis=0)))
    block = next(b for b in blocks if re.fullmatch(rf"tokens-lstm-l0-fwd-c-{top}(-ranked)?", b.id or ""))
    c = cells[:, top]
    assert [token_class(v, block.scale) for v in block.values] == [
        f"v{round((v / np.abs(c).max() + 1) / 2 * (LEVELS - 1))}" for v in c]
    assert "".join(block.tokens) == TEXT.replace("\n", "↵\n") and len(block.tokens) == len(TEXT)
    assert f"colour scale ±{np.abs(c).max():.3g}" in block.caption
    pickers = page.pickers()
    assert [ident for ident, _ in pickers] == [b.id for b in blocks]
    # The units section and the memory section colour text with the same block type and classes.
    memory = report_page(*_memory_run(), ViewOptions())
    kinds = {(b.scale, b.id is None) for b in memory.blocks() if isinstance(b, Highlight)}
    assert ("sequential", True) in kinds and ("diverging", False) in kinds
