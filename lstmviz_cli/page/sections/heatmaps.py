"""Gate heatmaps: units × time for every gate and state of each chosen layer, time binned when long."""

from __future__ import annotations

import numpy as np

from lstmviz_cli.families import GATE_SERIES
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.context import PageContext, sequence
from lstmviz_cli.page.figuredata import FloatArray, HeatmapData, HeatPanel
from lstmviz_cli.page.model import FigureRef, FigureSpec, Paragraph, Section, Span
from lstmviz_cli.page.unitorder import bin_time, order_units, unit_variance
from lstmviz_cli.page.view import valid_steps
from lstmviz_cli.tracing.records import LayerTrace


def row_order(ctx: PageContext, layer: LayerTrace) -> tuple[list[int], str]:
    """Which hidden units each heatmap shows, in which order, and a sentence saying so."""
    view = ctx.view
    key = "c" if "c" in layer.series else "h"
    values = sequence(layer, key, view.window)
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


def layer_heatmap(ctx: PageContext, layer: LayerTrace) -> tuple[HeatmapData, str]:
    """One layer's units × time heatmaps and the sentence saying which units are shown."""
    start, stop = ctx.view.window
    rows, how = row_order(ctx, layer)
    panels = []
    width = 1
    source_names = (ctx.run.trace.meta.series_names or {}).get(layer.prefix, {})
    own_rows: list[str] = []  # series of another width (a projected h): the caption says whose rows they are
    for name in layer.series:
        values = sequence(layer, name, ctx.view.window)
        if values.shape[1] == layer.config.hidden_size:
            units = rows
        else:  # a projected h has its own width: its own top units
            units = [int(u) for u in np.argsort(-unit_variance(values), kind="stable")[: len(rows)]]
            which = (f"all {len(units)}" if len(units) == values.shape[1] else
                     f"its {len(units)} of highest variance, whatever units were chosen for the others")
            own_rows.append(f"{name} has {values.shape[1]} units of its own (the projection): its rows are {which}")
        binned, width = bin_time(values[:, units])
        limits, scale = panel_scale(name, np.asarray(binned), ctx.view.color_scale)
        panels.append(HeatPanel(series=name, values=binned.T, units=tuple(units), source_name=source_names.get(name),
                                limits=limits, scale=scale))
    # Tokens of a text or token input under the step numbers; a feature input's values are no tokens.
    tokens = ctx.tokens[start:stop] if ctx.tokens is not None and ctx.run.sample.kind == "tokens" else None
    at_step = ctx.view.at_step
    mark = (at_step - start) // width if at_step is not None and start <= at_step < stop else None
    caption = f"{how}; steps {start}–{stop - 1}"
    for words in own_rows:
        caption += f"; {words}"
    own = [p.series for p in panels if p.limits is not None]
    if own:
        caption += (f"; {', '.join(own)} on {'their' if len(own) > 1 else 'its'} own colour scale (written above each "
                    "panel), the others on the fixed ones")
    valid = valid_steps(ctx.run.trace)
    if stop > valid:
        caption += f" (from step {max(valid, start)}: padding of sequence 0, left blank)"
    if mark is not None:
        caption += f"; dashed line: step {at_step}, shown on the cell diagram"
    if width > 1:
        caption += f", averaged over bins of {width} steps (full data: lstmviz trace)"
    data = HeatmapData(tuple(panels), start=start, width=width, tokens=tokens, mark=mark, label=visible(layer.label, 80))
    return data, caption


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
    figures = []
    for layer in ctx.layers:
        data, caption = layer_heatmap(ctx, layer)
        figures.append(FigureSpec(
            id=ctx.ids.take("heatmap", layer.prefix), ref=FigureRef("heatmaps", layer.prefix), data=data,
            description=f"Units x time heatmaps of every gate and state of {layer.label}.",
            title=visible(layer.label, 80), caption=visible(caption, 300),
        ))
    return Section(section_id, "Gate heatmaps", (lead, *figures), toc="Gate heatmaps")
