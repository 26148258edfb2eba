"""Diagrams: DOT text pinned by golden files, real sizes on the cell, escaping of user text in SVG."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from conftest import HOSTILE, numpy_trace

from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.page.figuredata import CellValues, PathStep, UnrolledRow
from lstmviz_cli.page.sections.architecture import read_path
from lstmviz_cli.render import diagrams

GOLD = Path(__file__).parent / "gold"
UPDATE = os.environ.get("LSTMVIZ_UPDATE_GOLD") == "1"  # LSTMVIZ_UPDATE_GOLD=1 pytest tests/test_diagrams.py


def plain(source: str) -> str:
    """DOT source with its HTML-like label markup taken out: `W<SUB>ih</SUB>` reads `W_ih`."""
    source = re.sub(r"<SUB>(?:<FONT[^>]*>)?", "_", source)
    return re.sub(r"<[^<>]*>", "", source)


def check_gold(name: str, text: str) -> None:
    path = GOLD / name
    if UPDATE or not path.exists():
        if not UPDATE:
            pytest.fail(f"missing golden file {path}; run with LSTMVIZ_UPDATE_GOLD=1 to create it")
        path.write_text(text, encoding="utf-8")
    assert text == path.read_text(encoding="utf-8"), f"{name} changed; LSTMVIZ_UPDATE_GOLD=1 to accept"


LSTM_PROJ = RecurrentConfig("LSTM", input_size=32, hidden_size=128, num_layers=2, bidirectional=True, proj_size=16)
GRU = RecurrentConfig("GRU", input_size=16, hidden_size=64)


def test_lstm_cell_gold_and_real_sizes() -> None:
    values = CellValues({"i": 0.5, "f": 0.875, "g": -0.25, "o": 0.625, "c": 0.125, "h": 0.0625}, "mean over the sample")
    graph = diagrams.cell_graph(LSTM_PROJ, values)
    check_gold("cell_lstm_proj.gv", graph.source)
    text = plain(graph.source)
    # 4H×I with this model's numbers (W with its subscript set as one), the projection, every gate's value.
    assert "W_ih 4H×I = 512×32" in text and "W<SUB>" in graph.source
    assert "W_hh 4H×P = 512×16" in text
    assert "W_hr P×H = 16×128" in text
    assert "= 0.88" in graph.source and "= -0.25" in graph.source
    # Olah's gate order, top to bottom, whatever the model: f, i, g, o.
    assert "gate_f -> gate_i [style=invis]" in graph.source and "gate_g -> gate_o [style=invis]" in graph.source
    # The legend line says what the line styles mean.
    assert "dashed: h_t−1 from the previous step" in text
    for node in ("gate_i", "gate_f", "gate_g", "gate_o", "mul_f", "mul_i", "add_c", "mul_o", "c_prev", "c_t", "h_prev", "h_t"):
        assert f"\t{node} [" in graph.source


def test_gru_cell_gold() -> None:
    graph = diagrams.cell_graph(GRU, CellValues({"r": 0.25, "z": 0.75, "n": 0.5, "h": 0.0}, "at step 3"))
    check_gold("cell_gru.gv", graph.source)
    assert "W_ih 3H×I = 192×16" in plain(graph.source)
    assert "c_prev" not in graph.source and "1 − z" in graph.source


def test_unrolled_gold_window_and_ellipsis() -> None:
    rows = [
        UnrolledRow("r0", 0, "lstm · layer 0 · forward", False, [0.25, 0.5, 0.75], True),
        UnrolledRow("r1", 0, "lstm · layer 0 · backward", True, [0.0, 0.5, 1.0], True),
        UnrolledRow("r2", 1, "lstm · layer 1 · forward", False, [0.5, 0.5, 0.5], True),
    ]
    graph = diagrams.unrolled_graph(rows, (2, 5), 9, ["a", " ", "\n"], ["→ b", "→ c", "→ d"], "forget gate (f)")
    check_gold("unrolled.gv", graph.source)
    source = graph.source
    assert "… 2 steps" in source and "… 4 steps" in source  # explicit ellipsis on both sides
    assert "r1_2 -> r1_3" in source and "dir=back" in source  # the backward chain runs right to left
    assert "x_2 -> r0_2" in source and "r0_2 -> r2_2" not in source  # layer 1 reads the top row of layer 0
    assert "r1_2 -> r2_2" in source and "r2_4 -> y_4" in source
    assert "␣" in source and "↵" in source  # whitespace inputs are visible
    assert "cells: mean" not in source  # on the page its legend says it
    # An exported figure has no page around it: a line under it says what the numbers and arrows are.
    exported = diagrams.unrolled_graph(rows, (2, 5), 9, ["a", " ", "\n"], ["→ b", "→ c", "→ d"], "forget gate (f)",
                                       font=8, max_width=3.5, legend=True).source
    legend = re.search(r'\blabel="(cells: mean[^"]*)"', exported)
    assert legend is not None and legend.group(1).replace("\\n", " ") == (
        "cells: mean forget gate (f) at each step; arrows: h to the next step (dark), c (orange)")


def test_architecture_from_tracer_path_gold() -> None:
    trace = numpy_trace("LSTM", steps=7, hidden_size=4, num_layers=2, bidirectional=True)
    # The tracer's format: input/output shapes and a call count.
    path = [
        {"name": "embedding", "type": "Embedding", "input": [1, 7], "output": [1, 7, 3], "calls": 1},
        {"name": "lstm", "type": "LSTM", "input": [1, 7, 3], "output": [1, 7, 8], "calls": 1},
        {"name": "fc", "type": "Linear", "input": [1, 7, 8], "output": [1, 7, 5], "calls": 1},
    ]
    graph = diagrams.architecture_graph(read_path(path, trace.modules), trace.modules)
    check_gold("architecture.gv", graph.source)
    assert "(1, 7)" in graph.source and "(1, 7, 3)" in graph.source and "(1, 7, 5)" in graph.source
    assert "×2 bidirectional" in graph.source


def test_architecture_without_path_uses_configs() -> None:
    steps = read_path(None, {"gru": GRU})
    assert steps == (PathStep("gru", "GRU", ((-1, -1, 16),), ((-1, -1, 64),)),)
    assert diagrams.shape_text((-1, -1, 16)) == "(B, T, 16)"


def test_hostile_text_is_escaped_in_svg() -> None:
    cfg = RecurrentConfig("LSTM", input_size=3, hidden_size=4)
    name = "</svg><script>alert(1)</script>"
    path = [PathStep(name, "LSTM", ((1, 2, 3),), ((1, 2, 4),)), PathStep(HOSTILE, "<b>", (), ())]
    svg = diagrams.to_svg(diagrams.architecture_graph(path, {name: cfg}))
    rows = [UnrolledRow("r0", 0, HOSTILE, False, [0.5, 0.5], True)]
    svg += diagrams.to_svg(diagrams.unrolled_graph(rows, (0, 2), 2, [HOSTILE, "<i>"], ["\"'", "</svg>"], "f"))
    assert "<script" not in svg and "</svg><" not in svg.replace("</svg>\n", "")
    assert "&lt;/svg&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in svg
    assert "&lt;i&gt;" in svg
    assert "\u202e" not in svg and "\\u202e" in svg  # bidi override shown, not obeyed
    assert "\x07" not in svg and "\\x07" in svg
    assert svg.count("<svg") == 2 and svg.count("</svg>") == 2


def test_ids_are_stable_across_builds() -> None:
    a = diagrams.cell_graph(GRU).source
    b = diagrams.cell_graph(GRU).source
    assert a == b
    svg1 = diagrams.to_svg(diagrams.cell_graph(LSTM_PROJ))
    svg2 = diagrams.to_svg(diagrams.cell_graph(LSTM_PROJ))
    assert svg1 == svg2 and svg1.startswith("<svg class=\"diagram\"")
    # Graphviz's <title> per node and edge ("gate_f", "x_t->gate_f") would show on hover: none left.
    assert "<title>" not in svg1 and "x_t&#45;&gt;" not in svg1 and "tooltip" not in svg1
    assert 'xlink:title="f_t = σ(' in svg1  # a gate tells its formula instead


def test_upper_layer_cell_reads_the_layer_below() -> None:
    """Layer 1 of a bidirectional projected LSTM reads 2 x proj_size features, not the model input."""
    trace = numpy_trace("LSTM", input_size=10, hidden_size=12, num_layers=2, bidirectional=True, proj_size=4)
    upper = trace.layer("lstm/l1/fwd")
    assert trace.layer("lstm/l0/fwd").input_width == 10 and upper.input_width == 8
    source = diagrams.cell_graph(upper.config, input_size=upper.input_width).source
    assert "48×8" in source and "I = 8" in source and "48×10" not in source


def test_unrolled_labels_set_the_step_as_a_subscript() -> None:
    """A model without a token head outputs its hidden state: each step reads h₀, h₁ ... h₁₂ on the
    diagram, not the raw text "h_t" (the same for every step); inputs of several features read x₀=…"""
    from conftest import make_run

    from lstmviz_cli.analysis.options import AnalysisOptions
    from lstmviz_cli.explain.orchestrate import analyze_run
    from lstmviz_cli.page.build import report_page
    from lstmviz_cli.page.figuredata import UnrolledData
    from lstmviz_cli.page.view import ViewOptions

    run = make_run(numpy_trace("LSTM", steps=14, hidden_size=4))
    page = report_page(run, analyze_run(run, AnalysisOptions()), ViewOptions(steps="9:14"))
    data = next(s.data for s in page.figures() if isinstance(s.data, UnrolledData))
    assert isinstance(data, UnrolledData)
    assert data.outputs == ("h₉", "h₁₀", "h₁₁", "h₁₂", "h₁₃")
    assert data.inputs[0] == "x₀=0.00"
    source = diagrams.unrolled_graph(data.rows, data.window, data.total, data.inputs, data.outputs,
                                     data.shade_name).source
    assert "h_t" not in source and 'label="h₁₃"' in source
