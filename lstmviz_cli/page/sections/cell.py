"""Cell: each chosen layer's recurrent cell with this model's sizes and the mean (or --at-step value) of each gate."""

from __future__ import annotations

import numpy as np

from lstmviz_cli.families import GATE_ORDER, SERIES_NAMES
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import CellData, CellValues
from lstmviz_cli.page.model import (
    FigureRef,
    FigureSpec,
    Grid,
    Legend,
    LegendItem,
    LegendSwatch,
    Paragraph,
    Section,
)
from lstmviz_cli.tracing.records import LayerTrace


def cell_values(ctx: PageContext, layer: LayerTrace) -> CellValues:
    """The values written on the gates: at --at-step (mean over units), else the analysis' means."""
    if ctx.view.at_step is not None:
        t = ctx.view.at_step
        values = {name: float(np.nanmean(array[0, t])) for name, array in layer.series.items()}
        token = f" ({visible(ctx.tokens[t], 12)!r})" if ctx.tokens else ""
        return CellValues(values, f"step {t}{token}, mean over units")
    stats = {s.series: s.mean for s in ctx.analysis.gate_stats if s.prefix == layer.prefix}
    values = {
        name: float(stats[name]) if name in stats else float(np.nanmean(array[0]))
        for name, array in layer.series.items()
    }
    return CellValues(values, "mean over the sample (every step and unit)")


def _swatch(gate: str) -> LegendSwatch:
    swatches: dict[str, LegendSwatch] = {"i": "i", "f": "f", "g": "g", "o": "o", "r": "r", "z": "z", "n": "n"}
    return swatches[gate]


def cell_section(ctx: PageContext) -> Section:
    """One cell diagram per chosen layer and direction."""
    section_id = ctx.ids.take("cell")
    cells = tuple(
        FigureSpec(
            id=ctx.ids.take("cell", layer.prefix), ref=FigureRef("cell", layer.prefix),
            data=CellData(layer.config, cell_values(ctx, layer), name=f"cell{k}", input_size=layer.input_width),
            description=f"{layer.family.upper()} cell of {layer.label} with its gates, sized with this model's "
                        "dimensions and the mean of each gate.",
            caption=visible(layer.label, 80), caption_user=True,
        )
        for k, layer in enumerate(ctx.layers)
    )
    shown = (f"its value at step {ctx.view.at_step} (mean over units)" if ctx.view.at_step is not None
             else "its mean over the sample")
    lead = Paragraph((f"The recurrent cell with this model's sizes. Each gate shows {shown}; the thick line is the "
                      "state carried from step to step.",), role="lead")
    gates = [g for g in GATE_ORDER if any(g in layer.series for layer in ctx.layers)]
    legend = Legend(tuple(LegendItem(f"{g} · {SERIES_NAMES[g]}", swatch=_swatch(g)) for g in gates))
    return Section(section_id, "Cell", (lead, legend, Grid(cells, kind="cells")))
