"""Weights: W_ih and W_hh split per gate, the biases and weight histograms of each chosen layer."""

from __future__ import annotations

from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import WeightsData
from lstmviz_cli.page.model import FigureRef, FigureSpec, Paragraph, Section


def weights_section(ctx: PageContext) -> Section | None:
    layers = [layer for layer in ctx.layers if layer.weights]
    if not layers:
        return None
    section_id = ctx.ids.take("weights")
    lead = Paragraph(("Input (W_ih) and recurrent (W_hh) weights split per gate on one symmetric scale, the summed "
                      "bias of each gate, and each gate's weight distribution.",), role="lead")
    figures = tuple(
        FigureSpec(
            id=ctx.ids.take("weights", layer.prefix), ref=FigureRef("weights", layer.prefix), data=WeightsData(layer),
            description=f"W_ih and W_hh split per gate, biases and weight histograms of {layer.label}.",
            title=visible(layer.label, 80),
        )
        for layer in layers
    )
    return Section(section_id, "Weights", (lead, *figures))
