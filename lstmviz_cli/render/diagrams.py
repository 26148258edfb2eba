"""Graphviz diagrams with stable ids: the architecture, the LSTM/GRU cell, and the network unrolled in time.

The data they draw is the page's (`page.figuredata`: PathStep, CellValues, UnrolledRow). Every builder returns a `graphviz.Digraph` whose DOT text depends only on its arguments (node ids
are positional, never `id()`-based), so tests compare it with golden `.gv` files. User text
(module names, tokens) goes through `_text`, which makes control characters visible and escapes
backslashes; Graphviz then XML-escapes it in the SVG.
"""

from __future__ import annotations

import html
import re
import textwrap
from collections.abc import Mapping, Sequence

import graphviz
from matplotlib import colormaps
from matplotlib.colors import to_hex

from lstmviz_cli.errors import LstmvizError
from lstmviz_cli.glyphs import visible
from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.page.figuredata import CellValues, PathStep, UnrolledRow
from lstmviz_cli.render.highlight import ink_on
from lstmviz_cli.render.palette import GATE_CMAP, GATE_COLORS, INK

FONT = "DejaVu Sans"  # the font of every matplotlib figure too; ships with matplotlib
SCREEN_FONTS = "DejaVu Sans, Verdana, Arial, sans-serif"  # what a browser without DejaVu falls back to
MUTED = "#6b7280"
STATE_FILL = "#f3f4f6"
SCREEN_FONT = 10.0  # points: the page's diagrams (an SVG point is 1.33 CSS pixels)


def _text(text: str, limit: int = 40) -> str:
    """One line of user text as a DOT string: visible, backslashes escaped, never an HTML label."""
    return visible(text, limit).replace("\\", "\\\\")


def _label(*lines: str) -> graphviz.quoting.NoHtml:
    """A multi-line plain label from already-escaped lines (the joining `\\n` is DOT's newline)."""
    return graphviz.nohtml("\\n".join(lines))


def _new(name: str, font: float = SCREEN_FONT, **attrs: str) -> graphviz.Digraph:
    graph = graphviz.Digraph(name)
    size = f"{font:g}"
    small = f"{max(font - 1.5, 4.0):g}"
    graph.attr(fontname=FONT, fontsize=small, bgcolor="transparent", **attrs)
    graph.attr("node", fontname=FONT, fontsize=size, color=INK, fontcolor=INK)
    graph.attr("edge", fontname=FONT, fontsize=small, color=MUTED, fontcolor=MUTED, arrowsize="0.6")
    return graph


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


_TITLE = re.compile(r"<title>.*?</title>\n?", re.S)
_COMMENT = re.compile(r"<!--.*?-->\n?", re.S)


def to_svg(graph: graphviz.Digraph) -> str:
    """Render with `dot` to an inline-able SVG (no XML prolog, DOCTYPE or generator comment).

    Graphviz writes each node's and edge's DOT name as its <title> ("r0_5", "x_t->gate_f"), which a
    browser shows on hover: removed; nodes that say something carry a tooltip of their own. The font
    gets fallbacks for browsers without DejaVu Sans.
    """
    try:
        text: str = graph.pipe(format="svg", encoding="utf-8")
    except graphviz.ExecutableNotFound as error:
        raise LstmvizError(
            "Graphviz 'dot' is not installed; install it (Debian/Ubuntu: apt-get install graphviz) and rerun"
        ) from error
    start = text.find("<svg")
    text = text[start:] if start >= 0 else text
    text = _COMMENT.sub("", _TITLE.sub("", text))
    text = text.replace(f'font-family="{FONT}"', f'font-family="{SCREEN_FONTS}"')
    # Natural size in pt; the page's CSS shrinks wide diagrams to the column (max-width: 100%).
    return text.replace("<svg ", '<svg class="diagram" ', 1)


def _html(text: str, size: float) -> str:
    """Text for inside an HTML-like label: `a_b` is a subscript, `a^b` a superscript (`_{t−1}` for
    longer ones), set smaller; the rest escaped."""
    parts = re.split(r"([_^](?:\{[^}]*\}|[^\s_^·=×,()+]+))", text)
    out = []
    for part in parts:
        if part[:1] in "_^" and len(part) > 1:
            inner = html.escape(part[1:].strip("{}"), quote=False)
            tag = "SUB" if part[0] == "_" else "SUP"
            out.append(f'<{tag}><FONT POINT-SIZE="{0.8 * size:.3g}">{inner}</FONT></{tag}>')
        else:
            out.append(html.escape(part, quote=False))
    return "".join(out)


def _math(*lines: str, size: float, bold_first: bool = False, plain: tuple[int, ...] = ()) -> str:
    """An HTML-like label, one table row per line (Graphviz then spaces lines that carry a subscript
    correctly), with `x_t`, `h_{t−1}`, `W^T` set as sub- and superscripts."""
    rows = []
    for k, line in enumerate(lines):
        cell = html.escape(line, quote=False) if k in plain else _html(line, size)  # plain: user text
        if bold_first and k == 0:
            cell = f"<B>{cell}</B>"
        rows.append(f'<TR><TD><FONT POINT-SIZE="{size:g}">{cell}</FONT></TD></TR>')
    return f'<<TABLE BORDER="0" CELLSPACING="0" CELLPADDING="1">{"".join(rows)}</TABLE>>'


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


def architecture_graph(path: Sequence[PathStep], modules: Mapping[str, RecurrentConfig], *,
                       font: float = SCREEN_FONT, narrow: bool = False) -> graphviz.Digraph:
    """Modules along the data path, left to right (top to bottom when `narrow`), with tensor shapes
    on the edges.

    One node per module, in first-call order: a module called many times (a cell, embedding and
    head in a Python loop) is one node marked ×N, with the shapes of its first call.
    """
    graph = _new("architecture", font, rankdir="TB" if narrow else "LR", nodesep="0.3", ranksep="0.3")
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
            graph.node(node, label=_label(*lines), tooltip=_text(f"{step.kind} {step.name}", 80))
        label = shape_text(step.inputs[0]) if step.inputs else ""
        graph.edge(previous, node, label=_label(label))
        previous = node
    last = path[-1].outputs[0] if path and path[-1].outputs else None
    graph.node("output", label=_label("output"), shape="plain", fontcolor=MUTED)
    graph.edge(previous, "output", label=_label(shape_text(last) if last else ""))
    return graph


# -- cell ------------------------------------------------------------------------------------


GATE_TEXT = {
    "f": ("σ", "forget gate"), "i": ("σ", "input gate"), "g": ("tanh", "candidate"), "o": ("σ", "output gate"),
    "r": ("σ", "reset gate"), "z": ("σ", "update gate"), "n": ("tanh", "new gate"),
}
GATE_FORMULA = {
    "f": "f_t = σ(W_{if} x_t + W_{hf} h_{t−1} + b_f)",
    "i": "i_t = σ(W_{ii} x_t + W_{hi} h_{t−1} + b_i)",
    "g": "g_t = tanh(W_{ig} x_t + W_{hg} h_{t−1} + b_g)",
    "o": "o_t = σ(W_{io} x_t + W_{ho} h_{t−1} + b_o)",
    "r": "r_t = σ(W_{ir} x_t + W_{hr} h_{t−1} + b_r)",
    "z": "z_t = σ(W_{iz} x_t + W_{hz} h_{t−1} + b_z)",
    "n": "n_t = tanh(W_{in} x_t + b_{in} + r_t ⊙ (W_{hn} h_{t−1} + b_{hn}))",
}


def _gate_node(graph: graphviz.Digraph, name: str, values: CellValues | None, font: float, *,
               short: bool = False) -> None:
    fn, title = GATE_TEXT[name]
    value = values.values.get(name) if values else None
    lines = [f"{name}_t\u00a0\u00a0{fn}"] + ([] if short else [title])  # no-break spaces: SVG collapses plain ones
    if value is not None:
        lines.append(f"= {_fmt(value)}")
    tooltip = GATE_FORMULA[name].replace("_{", "_").replace("}", "")
    if value is not None and values is not None:
        tooltip += f"; {values.caption}: {_fmt(value)}"
    graph.node(
        f"gate_{name}", label=_math(*lines, size=font, bold_first=True), shape="box", style="rounded,filled", fillcolor="white",
        color=GATE_COLORS[name], fontcolor=GATE_COLORS[name], penwidth="2", tooltip=tooltip,
    )


def _op(graph: graphviz.Digraph, node: str, symbol: str, tooltip: str, font: float) -> None:
    graph.node(node, label=symbol, shape="circle", width=f"{0.22 + 0.012 * font:.2f}", fixedsize="true",
               fontsize=f"{font + 2:g}", tooltip=tooltip)


def _state(graph: graphviz.Digraph, node: str, name: str, detail: str, tooltip: str, font: float) -> None:
    graph.node(node, label=_math(name, detail, size=font), shape="box", style="filled", fillcolor=STATE_FILL, color=MUTED,
               tooltip=tooltip)


def _in_order(graph: graphviz.Digraph, name: str, nodes: Sequence[str]) -> None:
    """Nodes on one rank in this order (top to bottom left to right, or left to right top to bottom)."""
    with graph.subgraph(name=name) as rank:
        rank.attr(rank="same")
        for node in nodes:
            rank.node(node)
        for upper, lower in zip(nodes, nodes[1:], strict=False):
            rank.edge(upper, lower, style="invis")


def cell_graph(
    cfg: RecurrentConfig, values: CellValues | None = None, *, name: str = "cell", input_size: int | None = None,
    font: float = SCREEN_FONT, narrow: bool = False,
) -> graphviz.Digraph:
    """The LSTM, GRU or RNN cell as in Olah's "Understanding LSTM Networks": the state carried along
    one straight line, [h_{t−1}, x_t] feeding the gates in a fixed order (f, i, g, o; r, z, n), σ/tanh,
    ⊙ and + nodes, sized with this model's dimensions.

    `input_size` is the width of this layer's x_t (`LayerTrace.input_width`): above layer 0 it is the
    output of the layer below, not the module's input size. `narrow`: flow top to bottom (a paper's
    single column) instead of left to right. Solid edges carry this step's input, dashed ones the
    previous step's h, thick ones the state carried to the next step (the legend under the cell says so).
    """
    graph = _new(name, font, rankdir="TB" if narrow else "LR", nodesep="0.14" if narrow else "0.18",
                 ranksep="0.26" if narrow else "0.32", newrank="true", splines="spline")
    # Boxes as small as their text (Graphviz's default minimum is 0.75 x 0.5 in).
    graph.attr("node", width="0.3", height="0.25", margin="0.06,0.03")
    hidden, out = cfg.hidden_size, cfg.output_size
    inp = cfg.input_size if input_size is None else input_size
    n_gates = {"lstm": 4, "gru": 3}.get(cfg.family, 1)
    letter = {"lstm": "4H", "gru": "3H"}.get(cfg.family, "H")
    sizes = [
        f"W_{{ih}} {letter}×I = {n_gates * hidden}×{inp}",
        f"W_{{hh}} {letter}×{'P' if cfg.proj_size else 'H'} = {n_gates * hidden}×{out}",
    ]
    if cfg.bias:
        sizes.append(f"b {n_gates * hidden}")
    if cfg.proj_size:
        sizes.append(f"W_{{hr}} P×H = {cfg.proj_size}×{hidden}")
    caption = values.caption if values else "no values"
    small = max(font - 1.5, 4.0)
    state = "c" if cfg.family == "lstm" else "h"
    legend = f"solid: this step's x_t · dashed: h_{{t−1}} from the previous step · thick: {state} carried on"
    legend_lines = ([legend] if not narrow else
                    ["solid: this step's x_t · dashed: h_{t−1}", f"thick: {state} carried to the next step"])
    size_lines = [" · ".join(sizes)] if not narrow else [" · ".join(sizes[:2]), " · ".join(sizes[2:])]
    values_line = f"gate values: {visible(caption, 60)}"
    value_lines = textwrap.wrap(values_line, 44) if narrow else [values_line]
    size_lines = [line for line in size_lines if line]
    user = tuple(range(len(size_lines), len(size_lines) + len(value_lines)))
    graph.attr(label=_math(*size_lines, *value_lines, *legend_lines, size=small, plain=user),
               labelloc="b", fontcolor=MUTED)
    p_or_h = "P" if cfg.proj_size else "H"
    _state(graph, "x_t", "x_t", f"I = {inp}", f"x_t: this step's input, {inp} features", font)
    _state(graph, "h_prev", "h_{t−1}", f"{p_or_h} = {out}", f"h_t−1: the previous step's hidden state, {out} units", font)
    h_value = values.values.get("h") if values else None
    _state(graph, "h_t", "h_t", f"= {_fmt(h_value)}" if values else f"{p_or_h} = {out}",
           f"h_t: this step's hidden state, {out} units" + (f"; {caption}: {_fmt(h_value)}" if values else ""), font)
    graph.node("hx", label="", shape="point", width="0.06", color=INK, tooltip="[h_t−1, x_t]: both feed every gate")
    graph.edge("h_prev", "hx", style="dashed", color=INK, arrowhead="none")
    graph.edge("x_t", "hx", color=INK, arrowhead="none")
    bold = {"color": INK, "penwidth": "2.2", "weight": "8"}
    if cfg.family == "lstm":
        c_value = values.values.get("c") if values else None
        _state(graph, "c_prev", "c_{t−1}", f"H = {hidden}", f"c_t−1: the previous step's cell state, {hidden} units", font)
        _state(graph, "c_t", "c_t", f"= {_fmt(c_value)}" if values else f"H = {hidden}",
               "c_t = f_t ⊙ c_t−1 + i_t ⊙ g_t" + (f"; {caption}: {_fmt(c_value)}" if values else ""), font)
        _in_order(graph, "inputs", ["c_prev", "h_prev", "x_t"])
        gates = ["f", "i", "g", "o"]
        for gate in gates:
            _gate_node(graph, gate, values, font, short=narrow)
            graph.edge("hx", f"gate_{gate}", color=GATE_COLORS[gate])
        _in_order(graph, "gates", [f"gate_{g}" for g in gates])
        _op(graph, "mul_f", "⊙", "f_t ⊙ c_t−1: what the cell keeps", font)
        _op(graph, "mul_i", "⊙", "i_t ⊙ g_t: what the cell writes", font)
        _op(graph, "add_c", "+", "c_t = f_t ⊙ c_t−1 + i_t ⊙ g_t", font)
        _op(graph, "mul_o", "⊙", "o_t ⊙ tanh(c_t)", font)
        graph.node("tanh_c", label="tanh", shape="ellipse", fontsize=f"{small:g}", tooltip="tanh(c_t)")
        _in_order(graph, "products", ["mul_f", "mul_i"])
        graph.edge("c_prev", "mul_f", **bold)
        graph.edge("gate_f", "mul_f", color=GATE_COLORS["f"])
        graph.edge("gate_i", "mul_i", color=GATE_COLORS["i"])
        graph.edge("gate_g", "mul_i", color=GATE_COLORS["g"])
        graph.edge("mul_f", "add_c", **bold)
        graph.edge("mul_i", "add_c", color=INK)
        graph.edge("add_c", "c_t", **bold)
        graph.edge("add_c", "tanh_c", color=INK)
        graph.edge("tanh_c", "mul_o", color=INK)
        graph.edge("gate_o", "mul_o", color=GATE_COLORS["o"])
        if cfg.proj_size:
            graph.node("proj", label=_math("W_{hr}", f"{cfg.proj_size}×{hidden}", size=font), shape="box", style="rounded",
                       tooltip="h_t = W_hr m_t: the projection")
            graph.edge("mul_o", "proj", color=INK, label=_math("m_t", size=small))
            graph.edge("proj", "h_t", **bold)
        else:
            graph.edge("mul_o", "h_t", **bold)
        _in_order(graph, "outputs", ["c_t", "h_t"])
    elif cfg.family == "gru":
        _in_order(graph, "inputs", ["h_prev", "x_t"])
        for gate in ("r", "z"):
            _gate_node(graph, gate, values, font, short=narrow)
            graph.edge("hx", f"gate_{gate}", color=GATE_COLORS[gate])
        _gate_node(graph, "n", values, font, short=narrow)
        graph.edge("x_t", "gate_n", color=GATE_COLORS["n"])
        _op(graph, "mul_r", "⊙", "r_t ⊙ (W_hn h_t−1 + b_hn)", font)
        graph.node("hh_n", label=_math("W_{hn} h_{t−1} + b_{hn}", size=small), shape="box", style="rounded", fontsize=f"{small:g}",
                   tooltip="the recurrent part of the new gate")
        graph.edge("h_prev", "hh_n", style="dashed", color=INK)
        graph.edge("hh_n", "mul_r", color=INK)
        graph.edge("gate_r", "mul_r", color=GATE_COLORS["r"])
        graph.edge("mul_r", "gate_n", color=GATE_COLORS["n"])
        _in_order(graph, "gates", ["gate_z", "gate_r", "hh_n"])
        graph.node("one_minus", label="1 − z", shape="ellipse", fontsize=f"{small:g}", tooltip="1 − z_t")
        _op(graph, "mul_zn", "⊙", "(1 − z_t) ⊙ n_t: the new part", font)
        _op(graph, "mul_zh", "⊙", "z_t ⊙ h_t−1: what the cell keeps", font)
        _op(graph, "add_h", "+", "h_t = (1 − z_t) ⊙ n_t + z_t ⊙ h_t−1", font)
        graph.edge("gate_z", "one_minus", color=GATE_COLORS["z"])
        graph.edge("gate_z", "mul_zh", color=GATE_COLORS["z"])
        graph.edge("one_minus", "mul_zn", color=GATE_COLORS["z"])
        graph.edge("gate_n", "mul_zn", color=GATE_COLORS["n"])
        graph.edge("h_prev", "mul_zh", style="dashed", **bold)
        graph.edge("mul_zn", "add_h", color=INK)
        graph.edge("mul_zh", "add_h", **bold)
        graph.edge("add_h", "h_t", **bold)
        _in_order(graph, "products", ["mul_zh", "mul_zn"])
    else:
        graph.node("gate_a", label=_math("a_t = W_{ih} x_t + W_{hh} h_{t−1} + b", f"h_t = {cfg.nonlinearity}(a_t)", size=font),
                   shape="box", style="rounded", tooltip="the plain recurrent update")
        graph.edge("hx", "gate_a", color=INK)
        graph.edge("gate_a", "h_t", **bold)
        _in_order(graph, "inputs", ["h_prev", "x_t"])
    return graph


# -- unrolled in time --------------------------------------------------------------------------


def _cmap_hex(value: float) -> tuple[str, str]:
    """Fill colour from the gate colormap, and a readable text colour on it."""
    rgba = colormaps[GATE_CMAP](min(max(float(value), 0.0), 1.0))
    return to_hex(rgba), ink_on(rgba)


def unrolled_graph(
    rows: Sequence[UnrolledRow],
    window: tuple[int, int],
    total: int,
    inputs: Sequence[str],
    outputs: Sequence[str],
    shade_name: str,
    *,
    font: float = SCREEN_FONT,
    max_width: float | None = None,
    legend: bool = False,
) -> graphviz.Digraph:
    """Layers (bottom to top) × steps (left to right), h and c arrows, inputs below, outputs above.

    `inputs`/`outputs` hold one label per step of the window; an explicit ellipsis marks steps
    outside the window. `max_width` (inches, a paper's column): only the first steps of the window
    that fit at this font size are drawn, the rest join the ellipsis, instead of shrinking the text.
    `legend`: a line under the graph says what the numbers and arrows are (an exported figure has no
    page around it; the page says it in its own legend).
    """
    start, stop = window
    node_width = max(0.42, 4 * 0.62 * font / 72 + 0.1)
    if max_width is not None:
        label = max((len(row.short or row.label) for row in rows), default=6) * 0.62 * font / 72 + 0.15
        fit = int((max_width - label - (0.8 if start else 0.0) - 0.8) // (node_width + 0.14))
        stop = min(stop, start + max(2, fit))
    graph = _new("unrolled", font, rankdir="BT", nodesep="0.12", ranksep="0.3", newrank="true")
    graph.attr("node", shape="box", style="rounded,filled", width=f"{node_width:.2f}", height=f"{0.3 * font / 10:.2f}",
               margin="0.03,0.02")
    steps = list(range(start, stop))
    before, after = start, total - stop
    if legend:
        carries_c = any(row.carries_c for row in rows)
        words = (f"cells: mean {shade_name} at each step; arrows: h to the next step"
                 + (" (dark), c (orange)" if carries_c else ""))
        small = max(font - 1, 4)
        chars = max(30, int(0.9 * (max_width or 6.0) / (0.62 * small / 72)))  # lines about the column's width
        graph.attr(label=_label(*(_text(line, 200) for line in textwrap.wrap(words, chars))), labelloc="b",
                   labeljust="l", fontcolor=MUTED, fontsize=f"{small:g}")

    def ellipsis(rank: graphviz.Digraph, row: str, where: str, count: int) -> str:
        node = f"{row}_{where}"
        rank.node(node, label=f"… {count} steps", shape="plain", style="", fontcolor=MUTED,
                  fontsize=f"{max(font - 1, 4):g}")
        return node

    with graph.subgraph(name="inputs") as rank:
        rank.attr(rank="same")
        rank.node("x_label", label="input", shape="plain", style="", fontcolor=MUTED, tooltip="the input at each step")
        for k, t in enumerate(steps):
            rank.node(f"x_{t}", label=_label(_text(inputs[k], 12), f"t={t}"), shape="plain", style="", fontcolor=INK)
    with graph.subgraph(name="outputs") as rank:
        rank.attr(rank="same")
        rank.node("y_label", label="output", shape="plain", style="", fontcolor=MUTED,
                  tooltip="what the model outputs at each step")
        for k, t in enumerate(steps):
            rank.node(f"y_{t}", label=_label(_text(outputs[k], 12)), shape="plain", style="", fontcolor=INK)
    for row in rows:
        with graph.subgraph(name=f"row_{row.key}") as rank:
            rank.attr(rank="same")
            text = row.short if max_width is not None and row.short else row.label
            rank.node(f"{row.key}_label", label=_label(_text(text, 48)), shape="plain", style="", fontcolor=MUTED)
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
