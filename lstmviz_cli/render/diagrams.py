"""Graphviz diagrams with stable ids: the architecture, the LSTM/GRU cell, and the network unrolled in time.

The data they draw is the page's (`page.figuredata`: PathStep, CellValues, UnrolledRow). Every builder returns a `graphviz.Digraph` whose DOT text depends only on its arguments (node ids
are positional, never `id()`-based), so tests compare it with golden `.gv` files. User text
(module names, tokens) goes through `_text`, which makes control characters visible and escapes
backslashes; Graphviz then XML-escapes it in the SVG.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import graphviz
from matplotlib import colormaps
from matplotlib.colors import to_hex

from lstmviz_cli.errors import LstmvizError
from lstmviz_cli.glyphs import visible
from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.page.figuredata import CellValues, PathStep, UnrolledRow
from lstmviz_cli.render.palette import GATE_CMAP, GATE_COLORS, INK

FONT = "Helvetica"
MUTED = "#6b7280"
STATE_FILL = "#f3f4f6"


def _text(text: str, limit: int = 40) -> str:
    """One line of user text as a DOT string: visible, backslashes escaped, never an HTML label."""
    return visible(text, limit).replace("\\", "\\\\")


def _label(*lines: str) -> graphviz.quoting.NoHtml:
    """A multi-line plain label from already-escaped lines (the joining `\\n` is DOT's newline)."""
    return graphviz.nohtml("\\n".join(lines))


def _new(name: str, **attrs: str) -> graphviz.Digraph:
    graph = graphviz.Digraph(name)
    graph.attr(fontname=FONT, fontsize="11", bgcolor="transparent", **attrs)
    graph.attr("node", fontname=FONT, fontsize="11", color=INK, fontcolor=INK)
    graph.attr("edge", fontname=FONT, fontsize="9", color=MUTED, fontcolor=MUTED, arrowsize="0.6")
    return graph


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def to_svg(graph: graphviz.Digraph) -> str:
    """Render with `dot` to an inline-able SVG (no XML prolog, DOCTYPE or generator comment)."""
    try:
        text: str = graph.pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound as error:
        raise LstmvizError(
            "Graphviz 'dot' is not installed; install it (Debian/Ubuntu: apt-get install graphviz) and rerun"
        ) from error
    start = text.find("<svg")
    text = text[start:] if start >= 0 else text
    # Natural size in pt; the page's CSS shrinks wide diagrams to the column (max-width: 100%).
    return text.replace("<svg ", '<svg class="diagram" ', 1)


# -- architecture ----------------------------------------------------------------------------


def shape_text(shape: Sequence[int]) -> str:
    """`(1, 212, 32)`; unknown dimensions (-1) are written B and T."""
    names = ["B", "T"]
    parts = [names[k] if d < 0 and k < 2 else str(d) for k, d in enumerate(shape)]
    return "(" + ", ".join(parts) + ")"


def config_text(cfg: RecurrentConfig) -> str:
    """`LSTM ×2 bidirectional · hidden 32 · proj 16` — the module's shape in one line."""
    parts = [cfg.kind + (f" ×{cfg.num_layers}" if cfg.num_layers > 1 else "")]
    if cfg.bidirectional:
        parts[0] += " bidirectional"
    parts.append(f"hidden {cfg.hidden_size}")
    if cfg.proj_size:
        parts.append(f"proj {cfg.proj_size}")
    return " · ".join(parts)


def architecture_graph(path: Sequence[PathStep], modules: Mapping[str, RecurrentConfig]) -> graphviz.Digraph:
    """Modules along the data path, left to right, with tensor shapes on the edges.

    One node per module, in first-call order: a module called many times (a cell, embedding and
    head in a Python loop) is one node marked ×N, with the shapes of its first call.
    """
    graph = _new("architecture", rankdir="LR", nodesep="0.3", ranksep="0.35")
    graph.attr("node", shape="box", style="rounded,filled", fillcolor="white", margin="0.12,0.06")
    graph.node("input", label=_label("input"), shape="plain", fontcolor=MUTED)
    previous = "input"
    for k, step in enumerate(path):
        node = f"m{k}"
        cfg = modules.get(step.name)
        if cfg is not None:
            lines = [_text(step.name) + f" ({cfg.kind})", config_text(cfg).replace(cfg.kind, "", 1).strip(" ·")]
            lines = [line for line in lines if line]
            if step.calls > 1:
                lines.append(f"×{step.calls} (called once per step)" if cfg.is_cell else f"×{step.calls} calls")
            colour = GATE_COLORS["f"] if cfg.family == "lstm" else GATE_COLORS["z"]
            graph.node(node, label=_label(*lines), fillcolor="#fff7f2", color=colour, penwidth="1.6")
        else:
            lines = [_text(step.kind), _text(step.name)] + ([f"×{step.calls} calls"] if step.calls > 1 else [])
            graph.node(node, label=_label(*lines))
        label = shape_text(step.inputs[0]) if step.inputs else ""
        graph.edge(previous, node, label=_label(label))
        previous = node
    last = path[-1].outputs[0] if path and path[-1].outputs else None
    graph.node("output", label=_label("output"), shape="plain", fontcolor=MUTED)
    graph.edge(previous, "output", label=_label(shape_text(last) if last else ""))
    return graph


# -- cell ------------------------------------------------------------------------------------


def _gate_node(graph: graphviz.Digraph, name: str, fn: str, title: str, values: CellValues | None) -> None:
    value = values.values.get(name) if values else None
    lines = [f"{name}  {fn}", title]
    if value is not None:
        lines.append(f"= {_fmt(value)}")
    graph.node(
        f"gate_{name}", label=_label(*lines), shape="box", style="rounded,filled", fillcolor="white",
        color=GATE_COLORS[name], fontcolor=GATE_COLORS[name], penwidth="2",
    )


def _op(graph: graphviz.Digraph, node: str, symbol: str) -> None:
    graph.node(node, label=symbol, shape="circle", width="0.32", fixedsize="true", fontsize="14")


def _state(graph: graphviz.Digraph, node: str, *lines: str) -> None:
    graph.node(node, label=_label(*lines), shape="box", style="filled", fillcolor=STATE_FILL, color=MUTED)


def cell_graph(
    cfg: RecurrentConfig, values: CellValues | None = None, *, name: str = "cell", input_size: int | None = None
) -> graphviz.Digraph:
    """The LSTM, GRU or RNN cell with its gates, σ/tanh, ⊙ and + nodes, sized with this model's dimensions.

    `input_size` is the width of this layer's x_t (`LayerTrace.input_width`): above layer 0 it is the
    output of the layer below, not the module's input size.
    """
    graph = _new(name, rankdir="LR", nodesep="0.25", ranksep="0.45", newrank="true")
    hidden, out = cfg.hidden_size, cfg.output_size
    inp = cfg.input_size if input_size is None else input_size
    n_gates = {"lstm": 4, "gru": 3}.get(cfg.family, 1)
    letter = {"lstm": "4H", "gru": "3H"}.get(cfg.family, "H")
    sizes = [
        f"W_ih {letter}×I = {n_gates * hidden}×{inp}",
        f"W_hh {letter}×{'P' if cfg.proj_size else 'H'} = {n_gates * hidden}×{out}",
    ]
    if cfg.bias:
        sizes.append(f"b {n_gates * hidden}")
    if cfg.proj_size:
        sizes.append(f"W_hr P×H = {cfg.proj_size}×{hidden}")
    caption = values.caption if values else "no values"
    graph.attr(label=_label(" · ".join(sizes), f"gate values: {_text(caption, 60)}"), labelloc="t", fontcolor=MUTED)
    _state(graph, "x_t", "x_t", f"I = {inp}")
    _state(graph, "h_prev", "h_{t-1}", f"{'P' if cfg.proj_size else 'H'} = {out}")
    h_value = values.values.get("h") if values else None
    _state(graph, "h_t", "h_t", f"= {_fmt(h_value)}" if values else f"{out}")
    if cfg.family == "lstm":
        c_value = values.values.get("c") if values else None
        _state(graph, "c_prev", "c_{t-1}", f"H = {hidden}")
        _state(graph, "c_t", "c_t", f"= {_fmt(c_value)}" if values else f"{hidden}")
        for gate, fn, title in (("f", "σ", "forget"), ("i", "σ", "input"), ("g", "tanh", "candidate"), ("o", "σ", "output")):
            _gate_node(graph, gate, fn, title, values)
            graph.edge("x_t", f"gate_{gate}", color=GATE_COLORS[gate])
            graph.edge("h_prev", f"gate_{gate}", color=GATE_COLORS[gate], style="dashed")
        _op(graph, "mul_f", "⊙")
        _op(graph, "mul_i", "⊙")
        _op(graph, "add_c", "+")
        _op(graph, "mul_o", "⊙")
        graph.node("tanh_c", label="tanh", shape="ellipse", fontsize="10")
        graph.edge("c_prev", "mul_f", color=INK, penwidth="2")
        graph.edge("gate_f", "mul_f", color=GATE_COLORS["f"])
        graph.edge("gate_i", "mul_i", color=GATE_COLORS["i"])
        graph.edge("gate_g", "mul_i", color=GATE_COLORS["g"])
        graph.edge("mul_f", "add_c", color=INK, penwidth="2")
        graph.edge("mul_i", "add_c", color=INK)
        graph.edge("add_c", "c_t", color=INK, penwidth="2")
        graph.edge("add_c", "tanh_c", color=INK)
        graph.edge("tanh_c", "mul_o", color=INK)
        graph.edge("gate_o", "mul_o", color=GATE_COLORS["o"])
        if cfg.proj_size:
            graph.node("proj", label=_label("W_hr", f"{cfg.proj_size}×{hidden}"), shape="box", style="rounded")
            graph.edge("mul_o", "proj", color=INK, label="m_t")
            graph.edge("proj", "h_t", color=INK, penwidth="2")
        else:
            graph.edge("mul_o", "h_t", color=INK, penwidth="2")
        with graph.subgraph(name="highway") as row:
            row.attr(rank="same")
            for node in ("c_prev",):
                row.node(node)
        with graph.subgraph(name="outputs") as row:
            row.attr(rank="same")
            row.node("c_t")
            row.node("h_t")
    elif cfg.family == "gru":
        for gate, fn, title in (("r", "σ", "reset"), ("z", "σ", "update"), ("n", "tanh", "new")):
            _gate_node(graph, gate, fn, title, values)
            graph.edge("x_t", f"gate_{gate}", color=GATE_COLORS[gate])
        graph.edge("h_prev", "gate_r", color=GATE_COLORS["r"], style="dashed")
        graph.edge("h_prev", "gate_z", color=GATE_COLORS["z"], style="dashed")
        _op(graph, "mul_r", "⊙")
        graph.node("hh_n", label=_label("W_hn h + b_hn"), shape="box", style="rounded", fontsize="9")
        graph.edge("h_prev", "hh_n", style="dashed")
        graph.edge("hh_n", "mul_r")
        graph.edge("gate_r", "mul_r", color=GATE_COLORS["r"])
        graph.edge("mul_r", "gate_n", color=GATE_COLORS["n"])
        graph.node("one_minus", label="1 − z", shape="ellipse", fontsize="10")
        _op(graph, "mul_zn", "⊙")
        _op(graph, "mul_zh", "⊙")
        _op(graph, "add_h", "+")
        graph.edge("gate_z", "one_minus", color=GATE_COLORS["z"])
        graph.edge("gate_z", "mul_zh", color=GATE_COLORS["z"])
        graph.edge("one_minus", "mul_zn", color=GATE_COLORS["z"])
        graph.edge("gate_n", "mul_zn", color=GATE_COLORS["n"])
        graph.edge("h_prev", "mul_zh", color=INK, penwidth="2")
        graph.edge("mul_zn", "add_h", color=INK)
        graph.edge("mul_zh", "add_h", color=INK, penwidth="2")
        graph.edge("add_h", "h_t", color=INK, penwidth="2")
    else:
        graph.node("gate_a", label=_label("a = W_ih x + W_hh h + b", f"{cfg.nonlinearity}"), shape="box", style="rounded")
        graph.edge("x_t", "gate_a")
        graph.edge("h_prev", "gate_a", style="dashed")
        graph.edge("gate_a", "h_t", color=INK, penwidth="2")
    return graph


# -- unrolled in time --------------------------------------------------------------------------


def _cmap_hex(value: float) -> tuple[str, str]:
    """Fill colour from the gate colormap, and a readable text colour on it."""
    rgba = colormaps[GATE_CMAP](min(max(float(value), 0.0), 1.0))
    luminance = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]
    return to_hex(rgba), ("#111111" if luminance > 0.5 else "#ffffff")


def unrolled_graph(
    rows: Sequence[UnrolledRow],
    window: tuple[int, int],
    total: int,
    inputs: Sequence[str],
    outputs: Sequence[str],
    shade_name: str,
) -> graphviz.Digraph:
    """Layers (bottom to top) × steps (left to right), h and c arrows, inputs below, outputs above.

    `inputs`/`outputs` hold one label per step of the window; an explicit ellipsis marks steps
    outside the window.
    """
    start, stop = window
    graph = _new("unrolled", rankdir="BT", nodesep="0.12", ranksep="0.32", newrank="true")
    graph.attr("node", shape="box", style="rounded,filled", width="0.5", height="0.34", fontsize="11", margin="0.03,0.02")
    steps = list(range(start, stop))
    before, after = start, total - stop

    def ellipsis(rank: graphviz.Digraph, row: str, where: str, count: int) -> str:
        node = f"{row}_{where}"
        rank.node(node, label=f"… {count} steps", shape="plain", style="", fontcolor=MUTED, fontsize="10")
        return node

    with graph.subgraph(name="inputs") as rank:
        rank.attr(rank="same")
        rank.node("x_label", label="input", shape="plain", style="", fontcolor=MUTED)
        for k, t in enumerate(steps):
            rank.node(f"x_{t}", label=_label(_text(inputs[k], 12), f"t={t}"), shape="plain", style="", fontcolor=INK)
    with graph.subgraph(name="outputs") as rank:
        rank.attr(rank="same")
        rank.node("y_label", label="output", shape="plain", style="", fontcolor=MUTED)
        for k, t in enumerate(steps):
            rank.node(f"y_{t}", label=_label(_text(outputs[k], 12)), shape="plain", style="", fontcolor=INK)
    for row in rows:
        with graph.subgraph(name=f"row_{row.key}") as rank:
            rank.attr(rank="same")
            rank.node(f"{row.key}_label", label=_label(_text(row.label, 48)), shape="plain", style="", fontcolor=MUTED)
            for k, t in enumerate(steps):
                fill, ink = _cmap_hex(row.shade[k])
                rank.node(
                    f"{row.key}_{t}", label=f"{row.shade[k]:.2f}", fillcolor=fill, fontcolor=ink, color=fill,
                    tooltip=_text(f"{row.label} · step {t} · mean {shade_name} {row.shade[k]:.3f}", 120),
                )
            if before:
                ellipsis(rank, row.key, "before", before)
            if after:
                ellipsis(rank, row.key, "after", after)
        first, last = f"{row.key}_{steps[0]}", f"{row.key}_{steps[-1]}"
        graph.edge(f"{row.key}_label", f"{row.key}_before" if before else first, style="invis")
        if before:
            graph.edge(f"{row.key}_before", first, style="dashed", dir="back" if row.backward else "forward")
        if after:
            graph.edge(last, f"{row.key}_after", style="dashed", dir="back" if row.backward else "forward")
        for t0, t1 in zip(steps, steps[1:], strict=False):
            direction = "back" if row.backward else "forward"
            graph.edge(f"{row.key}_{t0}", f"{row.key}_{t1}", color=INK, dir=direction)
            if row.carries_c:
                graph.edge(f"{row.key}_{t0}", f"{row.key}_{t1}", color=GATE_COLORS["f"], dir=direction, style="bold")
    # Vertical data flow between layers; the rows of one layer (both directions, which read the
    # same inputs) are stacked with invisible edges so the columns stay aligned, not a hairball.
    layers: list[list[UnrolledRow]] = []
    for row in rows:
        if layers and layers[-1][0].group == row.group:
            layers[-1].append(row)
        else:
            layers.append([row])
    below = "x"
    columns: list[str | int] = ["label", *steps]
    graph.edge("x_label", f"x_{steps[0]}", style="invis")
    graph.edge("y_label", f"y_{steps[0]}", style="invis")
    for group in layers:
        for column in columns:
            style = "invis" if column == "label" else "solid"
            graph.edge(f"{below}_{column}", f"{group[0].key}_{column}", color="#9aa0aa", arrowsize="0.4", weight="4",
                       style=style)
            for lower, upper in zip(group, group[1:], strict=False):
                graph.edge(f"{lower.key}_{column}", f"{upper.key}_{column}", style="invis", weight="8")
        below = group[-1].key
    for column in columns:
        style = "invis" if column == "label" else "solid"
        graph.edge(f"{below}_{column}", f"y_{column}", color="#9aa0aa", arrowsize="0.4", weight="4", style=style)
    return graph
