"""Unrolled in time: layers × steps of a window, each cell shaded by the gate that keeps state."""

from __future__ import annotations

import numpy as np

from lstmviz_cli.families import FAMILIES, GATE_SERIES, SERIES_NAMES
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.context import PageContext, sequence
from lstmviz_cli.page.figuredata import UnrolledData, UnrolledRow
from lstmviz_cli.page.model import (
    FigureRef,
    FigureSpec,
    Legend,
    LegendItem,
    Paragraph,
    Section,
    Span,
    inline,
)
from lstmviz_cli.page.view import total_steps

_SUBSCRIPT = str.maketrans("0123456789", "₀₁₂₃₄₅₆₇₈₉")


def _sub(name: str, t: int) -> str:
    """`h₁₂`: a symbol with its step as a subscript (a diagram label is plain text, no markup)."""
    return name + str(t).translate(_SUBSCRIPT)


def _input_labels(ctx: PageContext, steps: range) -> tuple[str, ...]:
    if ctx.tokens is not None:
        return tuple(ctx.tokens[t] for t in steps)
    values = np.asarray(ctx.run.sample.values)
    if values.ndim == 3:
        prefix = "x" if values.shape[2] == 1 else "x₀"
        # A module called more often than the input has steps (a loop run twice) has steps of its own.
        return tuple(f"{prefix}={values[0, t, 0]:.2f}" if t < values.shape[1] else _sub("x", t) for t in steps)
    return tuple(_sub("x", t) for t in steps)


def _output_labels(ctx: PageContext, steps: range) -> tuple[str, ...]:
    """Per step: the most likely next token of a char LM (argmax of the output), else h with the step
    as its subscript (h₀, h₁, ...).

    Only a real prediction is read: without a known head the output is hidden states.
    """
    output = ctx.run.trace.output
    vocab = ctx.run.loaded.info.vocab
    if output is not None and vocab is not None and ctx.facts.has_head:
        out = np.asarray(output)
        if out.ndim == 3 and out.shape[2] == len(vocab) and out.shape[1] >= steps.stop:
            return tuple("→ " + visible(vocab[int(np.argmax(out[0, t]))], 8) for t in steps)
    return tuple(_sub("h", t) for t in steps)


def unrolled_data(ctx: PageContext) -> UnrolledData:
    """The unrolled diagram's rows, labels and what shades its cells."""
    start, stop = ctx.view.diagram_window
    steps = range(start, stop)
    rows = []
    groups: dict[tuple[str, int], int] = {}
    shade_names = set()
    for k, layer in enumerate(ctx.layers):
        # What shades a cell: the gate that decides how much state is kept (a plain RNN: h itself).
        family = FAMILIES.get(layer.family)
        name = family.memory_gate if family is not None and family.memory_gate else "h"
        shade_names.add(name)
        values = sequence(layer, name, (start, stop)).mean(axis=1)
        if name not in GATE_SERIES:
            values = 0.5 + 0.5 * np.tanh(values)
        group = groups.setdefault((layer.module, layer.layer), len(groups))
        rows.append(UnrolledRow(
            key=f"r{k}", group=group, label=layer.label, backward=layer.direction == "bwd",
            shade=[float(v) for v in values], carries_c=layer.family == "lstm",
            short=visible(f"{layer.module} l{layer.layer}" + (f" {layer.direction}" if layer.config.bidirectional else ""),
                          20),
        ))
    shade = " / ".join(f"{SERIES_NAMES[n]} ({n})" for n in sorted(shade_names))
    return UnrolledData(tuple(rows), (start, stop), total_steps(ctx.run.trace), _input_labels(ctx, steps),
                        _output_labels(ctx, steps), shade)


def _replacing(ctx: PageContext) -> str:
    """The exception to "bright cells keep their state": GRUs written h = (1 - z)·h + z·n."""
    replaces = [visible(layer.label, 200) for layer in ctx.layers if not layer.keeps_when_high]
    if not replaces:
        return ""
    return (f", except in {', '.join(replaces)}, whose update gate is written the other way round "
            "(h = (1−z)·h + z·n): there bright cells replace their state")


FIT_STEPS = 24  # unrolled steps shrunk to the page's width; more scroll at their natural size


def unrolled_section(ctx: PageContext) -> Section:
    section_id = ctx.ids.take("unrolled")
    data = unrolled_data(ctx)
    start, stop = data.window
    lead = Paragraph(inline(
        f"Steps {start}–{stop - 1} of {data.total}, layers from bottom to top, inputs below and outputs above. "
        f"Each cell is shaded and labelled by its mean {data.shade_name} at that step: bright cells keep more of "
        "their state" + _replacing(ctx) + ".",
        *((" Choose another window with ", Span("--steps START:STOP", "code"), ".") if stop - start < data.total
          else ()),
    ), role="lead")
    items = [LegendItem("", swatch="ramp", low="0", high="1"),
             LegendItem("h carried to the next step", swatch="ink")]
    if any(layer.family == "lstm" for layer in ctx.layers):
        items.append(LegendItem("c carried to the next step", swatch="f"))
    if any(layer.direction == "bwd" for layer in ctx.layers):
        items.append(LegendItem("backward rows run right to left"))
    # Up to FIT_STEPS steps fit the column with readable text; a longer window scrolls, and says so.
    scrolls = stop - start > FIT_STEPS
    diagram = FigureSpec(
        id=ctx.ids.take("unrolled-diagram"), ref=FigureRef("unrolled"), data=data,
        frame="unrolled" if scrolls else "plain",
        caption=f"{stop - start} steps: scroll sideways to see them all" if scrolls else "",
        description="The recurrent layers unrolled over the first steps, each cell shaded by its mean forget (LSTM) "
                    "or update (GRU) gate, inputs below and outputs above.",
    )
    return Section(section_id, "Unrolled in time", (lead, Legend(tuple(items)), diagram))
