"""Gate heatmaps: units × time for every gate and state of each chosen layer, time binned when long."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmviz_cli.families import GATE_SERIES
from lstmviz_cli.glyphs import display_token, visible
from lstmviz_cli.page.context import PageContext, sequence
from lstmviz_cli.page.figuredata import FloatArray, HeatmapData, HeatPanel
from lstmviz_cli.page.model import (
    Block,
    FigureRef,
    FigureSpec,
    Paragraph,
    Section,
    SequencePicker,
    Span,
)
from lstmviz_cli.page.unitorder import bin_time, order_units, unit_variance
from lstmviz_cli.tracing.records import LayerTrace


def row_order(ctx: PageContext, layer: LayerTrace, element: int = 0) -> tuple[list[int], str]:
    """Which hidden units each heatmap shows, in which order (chosen on batch element `element`), and a
    sentence saying so."""
    view = ctx.view
    key = "c" if "c" in layer.series else "h"
    values = sequence(layer, key, view.window, element)
    variance = unit_variance(values)  # one pass over a possibly long window, used twice below
    order = [int(u) for u in order_units(values, view.sort_units, variance=variance)]
    total = values.shape[1]
    how = {"none": "in index order", "variance": f"by variance of {key} (highest first)",
           "cluster": f"clustered (units whose {key} moves together sit together)"}[view.sort_units]
    if isinstance(view.units, tuple):
        chosen = [u for u in order if u in view.units]
        return chosen, f"units {', '.join(map(str, view.units))} of {total}, {how}"
    if view.units >= total:
        return order, f"all {total} units, {how}"
    by_var = {int(u) for u in np.argsort(-variance, kind="stable")[: view.units]}
    return [u for u in order if u in by_var], f"the {view.units} of {total} units with the highest variance of {key}, {how}"


ROBUST_SPAN = 0.5  # auto: a gate whose 1st–99th percentiles span less than this gets its own scale


def panel_scale(series: str, values: FloatArray, mode: str) -> tuple[tuple[float, float] | None, str]:
    """The colour limits of one panel and the words for them (None: the series' fixed scale).

    fixed: gates [0, 1], g/h/n [−1, 1], c ± its 99th percentile of |c|. robust: the shown values'
    1st–99th percentiles (a gate) or ± the 99th percentile of |v| (a signed state). auto: robust where
    the fixed scale would show one flat colour (a gate spanning less than ROBUST_SPAN, a state
    within ±ROBUST_SPAN), else fixed.
    """
    finite = values[np.isfinite(values)]
    if mode == "fixed" or finite.size == 0 or series == "c":
        return None, ""
    if series in GATE_SERIES:
        low, high = (float(v) for v in np.percentile(finite, [1, 99]))
        if mode == "auto" and high - low >= ROBUST_SPAN:
            return None, ""
        if high - low < 1e-6:
            low, high = low - 0.005, high + 0.005
        return (low, high), f"{low:.3g}–{high:.3g} (1st–99th pct)"
    peak = float(np.percentile(np.abs(finite), 99))
    if mode == "auto" and peak >= ROBUST_SPAN:
        return None, ""
    peak = peak or 1e-6
    return (-peak, peak), f"±{peak:.2g} (99th pct of |{series}|)"


def element_tokens(ctx: PageContext, element: int) -> tuple[str, ...] | None:
    """The input tokens of batch element `element` over the window, as the step labels write them (a
    token input only: a feature input's values are no tokens)."""
    sample = ctx.run.sample
    if sample.kind != "tokens":
        return None
    start, stop = ctx.view.window
    if element == 0:
        return None if ctx.tokens is None else ctx.tokens[start:stop]
    if sample.values.ndim != 2 or element >= sample.batch:
        return None
    vocab = ctx.run.loaded.info.vocab
    return tuple(display_token(vocab[i]) if vocab and 0 <= i < len(vocab) else str(i)
                 for i in sample.values[element, start:stop].tolist())


def layer_heatmaps(ctx: PageContext, layer: LayerTrace, elements: Sequence[int] = (0,)) -> list[tuple[HeatmapData, str]]:
    """One layer's units × time heatmaps for each batch element of `elements`, with the sentence saying
    which units are shown. The rows (chosen on the first element) and the colour scales (from the
    values of every element) are the same for all of them, so they compare."""
    start, stop = ctx.view.window
    rows, how = row_order(ctx, layer, elements[0])
    several = len(elements) > 1
    width = 1
    source_names = (ctx.run.trace.meta.series_names or {}).get(layer.prefix, {})
    own_rows: list[str] = []  # series of another width (a projected h): the caption says whose rows they are
    panels: list[list[HeatPanel]] = [[] for _ in elements]
    for name in layer.series:
        first = sequence(layer, name, ctx.view.window, elements[0])
        if first.shape[1] == layer.config.hidden_size:
            units = rows
        else:  # a projected h has its own width: its own top units
            units = [int(u) for u in np.argsort(-unit_variance(first), kind="stable")[: len(rows)]]
            which = (f"all {len(units)}" if len(units) == first.shape[1] else
                     f"its {len(units)} of highest variance, whatever units were chosen for the others")
            own_rows.append(f"{name} has {first.shape[1]} units of its own (the projection): its rows are {which}")
        binned_all = []
        for element in elements:
            binned, width = bin_time(sequence(layer, name, ctx.view.window, element)[:, units])
            binned_all.append(np.asarray(binned))
        pooled = np.concatenate(binned_all, axis=0) if several else binned_all[0]
        limits, scale = panel_scale(name, pooled, ctx.view.color_scale)
        if several and name == "c":  # one scale for every sequence (alone, the plot takes c's own 99th pct)
            finite = np.abs(pooled[np.isfinite(pooled)])
            peak = float(np.percentile(finite, 99)) if finite.size else 1.0
            limits, scale = (-(peak or 1.0), peak or 1.0), f"±{peak or 1.0:.2g} (99th pct of |c|)"
        for k, binned in enumerate(binned_all):
            panels[k].append(HeatPanel(series=name, values=binned.T, units=tuple(units),
                                       source_name=source_names.get(name), limits=limits, scale=scale))
    at_step = ctx.view.at_step
    mark = (at_step - start) // width if at_step is not None and start <= at_step < stop else None
    shared = f"{how}; steps {start}–{stop - 1}"
    for words in own_rows:
        shared += f"; {words}"
    own = [p.series for p in panels[0] if p.limits is not None and p.series != "c"]
    if own:
        shared += (f"; {', '.join(own)} on {'their' if len(own) > 1 else 'its'} own colour scale (written above each "
                   "panel), the others on the fixed ones")
    lengths = ctx.run.trace.valid_steps()
    batch = len(lengths)
    out = []
    for k, element in enumerate(elements):
        valid = int(lengths[element])
        if several:  # the sequence and its padding first: a long caption is cut at its end
            padding = f", padding from step {max(valid, start)} (left blank)" if stop > valid else ""
            caption = f"Sequence {element} of {batch}{padding}: {shared}"
        else:
            caption = shared
            if stop > valid:
                caption += f" (from step {max(valid, start)}: padding of sequence {element}, left blank)"
        if mark is not None:
            caption += f"; dashed line: step {at_step}, shown on the cell diagram"
        if width > 1:
            caption += f", averaged over bins of {width} steps (full data: lstmviz trace)"
        label = visible(layer.label, 80) + (f" · sequence {element}" if several else "")
        data = HeatmapData(tuple(panels[k]), start=start, width=width, tokens=element_tokens(ctx, element), mark=mark,
                           label=label)
        out.append((data, caption))
    return out


MAX_SEQUENCES = 8  # a batched sample: the heatmaps of its first sequences at most, behind a picker
SEQUENCES_BUDGET = 3_000_000  # bytes the heatmaps of sequences 1, 2, ... may add to a page (pages stay under 8 MB)
# What one heatmap figure weighs on the page, conservatively (measured on the sample models: the estimate
# is 10–40 % above the drawn SVG): per value its hover number (float32 in base64, 5.3 bytes) and its
# pixel (an RGBA PNG in base64, at most 5.3 bytes); per row its unit label; per figure its axes, time
# ticks, titles and colour bars.
BYTES_PER_VALUE = 11
BYTES_PER_ROW = 400
BYTES_PER_FIGURE = 100_000


def figure_bytes(data: HeatmapData) -> int:
    """The page bytes one heatmap figure is estimated at, at most (from its data: the figure is not drawn yet)."""
    rows = sum(len(panel.units) for panel in data.panels)
    values = sum(int(panel.values.size) for panel in data.panels)
    return BYTES_PER_FIGURE + BYTES_PER_ROW * rows + BYTES_PER_VALUE * values


def sequences_shown(batch: int, per_sequence: int) -> int:
    """How many sequences of a batch of `batch` get their heatmaps: up to MAX_SEQUENCES while the
    figures of sequences 1, 2, ... (`per_sequence` bytes each) fit SEQUENCES_BUDGET; 1 when not two fit."""
    fits = 1 + SEQUENCES_BUDGET // max(per_sequence, 1)
    return max(1, min(batch, MAX_SEQUENCES, fits))


SCALE_WORDS = {
    "fixed": "fixed scales (--color-scale fixed)",
    "robust": "each panel on its own robust scale: the 1st–99th percentile of its values (--color-scale robust)",
    "auto": "fixed scales, except a panel whose values would all take one colour: it gets its own robust scale, "
            "written above it (--color-scale auto; fixed or robust to choose)",
}


def heatmap_section(ctx: PageContext) -> Section:
    """Units × time heatmaps per chosen layer and direction."""
    section_id = ctx.ids.take("heatmaps")
    families = {layer.family for layer in ctx.layers}
    states = ("candidates and hidden states share [−1, 1] and the cell state is symmetric around 0"
              if "lstm" in families else "the new gate and the hidden state share [−1, 1]")
    lead = Paragraph((
        "Units (rows) over time (columns) for every gate and state. Gates go from 0 to 1 (", Span("", "ramp"),
        f"); {states} (", Span("", "ramp-div"), f"). Colours: {SCALE_WORDS[ctx.view.color_scale]}. Hover a cell for "
        "its unit, step, token and value.",
    ), role="lead")
    first = [layer_heatmaps(ctx, layer)[0] for layer in ctx.layers]
    lengths = ctx.run.trace.valid_steps()
    batch = len(lengths)
    per_sequence = sum(figure_bytes(data) for data, _ in first)
    shown = sequences_shown(batch, per_sequence)
    blocks: list[Block] = [lead]
    rest = f"Sequence {shown}" if shown == batch - 1 else f"Sequences {shown}–{batch - 1}"
    if shown > 1:
        blocks.append(Paragraph((
            f"The sample holds {batch} sequences: choose the one whose heatmaps are shown. Every sequence has the "
            "same rows (the units chosen on sequence 0) and the same colour scales (from the values of all "
            f"{shown} sequences), so they compare; the padding after a sequence's last valid step is left blank."
            + (f" {rest}: --batch-index N traces and shows sequence N alone." if shown < batch else ""),
        ), role="note"))
        blocks.append(SequencePicker(
            id=ctx.ids.take("heatmap-sequences"),
            choices=tuple(f"sequence {k} of {batch} (valid steps {int(lengths[k])})" for k in range(shown)),
        ))
    elif batch > 1:
        blocks.append(Paragraph((
            f"The sample holds {batch} sequences; these heatmaps show sequence 0 (those of the others would add about "
            f"{per_sequence / 1e6:.1f} MB each to the page). --batch-index N traces and shows sequence N alone.",
        ), role="note"))
    several = shown > 1
    for layer, alone in zip(ctx.layers, first, strict=True):
        # Several: sequence 0 again, with the scales shared by all and its sequence named.
        drawn = layer_heatmaps(ctx, layer, tuple(range(shown))) if several else [alone]
        for k, (data, caption) in enumerate(drawn):
            blocks.append(FigureSpec(
                id=ctx.ids.take("heatmap", layer.prefix, *((f"seq{k}",) if several and k else ())),
                ref=FigureRef("heatmaps" if k == 0 else f"heatmaps-seq{k}", layer.prefix), data=data,
                description=f"Units x time heatmaps of every gate and state of {layer.label}"
                            + (f", sequence {k} of {batch}." if several else "."),
                title=visible(layer.label, 80) + (f" · sequence {k}" if several else ""),
                caption=visible(caption, 300), sequence=k if several else None,
            ))
    return Section(section_id, "Gate heatmaps", tuple(blocks), toc="Gate heatmaps")
