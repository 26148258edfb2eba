"""Gate saturation: per unit, how often each gate is closed or open (after Karpathy et al. 2015, fig. 3)."""

from __future__ import annotations

import numpy as np

from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.families import SERIES_NAMES
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page import captions
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import SaturationData
from lstmviz_cli.page.model import Block, Definitions, FigureRef, FigureSpec, Paragraph, Section
from lstmviz_cli.page.numbers import percent


def reading(analysis: Analysis) -> str:
    th = analysis.thresholds
    if not analysis.saturation:
        return "This model has no sigmoid gates (a plain RNN), so there is nothing to saturate."
    parts = []
    for sat in analysis.saturation:
        if sat.series not in ("f", "z"):
            continue
        n = len(sat.frac_high)
        right = int((sat.frac_high > 0.5).sum())
        left = int((sat.frac_low > 0.5).sum())
        text = f"{sat.prefix}: {right} of {n} {SERIES_NAMES[sat.series]} units right-saturated and {left} left-saturated"
        if right > n / 2:
            text += " (this layer mostly carries its memory forward)"
        elif left > n / 2:
            text += " (this layer mostly forgets at every step)"
        parts.append(text)
    lead = (
        f"Counting units right-saturated (> {th.saturation_high:g}) or left-saturated (< {th.saturation_low:g}) "
        "more than half of the time — " + "; ".join(parts) + ". Units between the corners gate memory step by step."
        if parts else ""
    )
    sentences = [lead] if lead else []
    busiest = max(analysis.saturation, key=lambda s: (float(np.mean(s.frac_low + s.frac_high)), s.prefix, s.series))
    sentences.append(
        f"Overall the most saturated is the {SERIES_NAMES[busiest.series]} of {busiest.prefix}: its units "
        f"spend on average {percent(float(np.mean(busiest.frac_low + busiest.frac_high)))} of the steps saturated."
    )
    return " ".join(sentences)


def saturation_section(ctx: PageContext) -> Section:
    """Karpathy-style saturation scatter plots, one figure per layer and direction."""
    analysis = ctx.analysis
    th = analysis.thresholds
    section_id = ctx.ids.take("gate-saturation")
    labels = {layer.prefix: layer.label for layer in ctx.run.trace.layers}
    figures = []
    for prefix in dict.fromkeys(s.prefix for s in analysis.saturation):
        figures.append(FigureSpec(
            id=ctx.ids.take("fig", "saturation", prefix), ref=FigureRef("saturation", prefix),
            data=SaturationData(tuple(s for s in analysis.saturation if s.prefix == prefix), th, prefix),
            description=f"Gate saturation per unit of {labels.get(prefix, prefix)} (after Karpathy et al. 2015).",
            caption=visible(f"{prefix}: saturation per unit (after Karpathy, Johnson & Fei-Fei 2015, fig. 3)", 300),
            frame="analysis",
        ))
    blocks: tuple[Block, ...] = (Paragraph((reading(analysis),), role="reading"), *figures,
                                 Definitions(captions.saturation_definitions(th)))
    return Section(section_id, "Gate saturation", blocks, analysis=True)
