"""Interpretable units: units ranked by their correlation with per-step text features (or --labels)."""

from __future__ import annotations

import numpy as np

from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import UnitFeaturesData, UnitPanel
from lstmviz_cli.page.model import (
    Block,
    Cell,
    Definitions,
    FigureRef,
    FigureSpec,
    Paragraph,
    Row,
    Section,
    Span,
    Table,
)

UNIT_FEATURES_SHOWN = 4  # features whose best unit gets a highlighted text and a plot


def reading(analysis: Analysis) -> str:
    if not analysis.features:
        return (
            "No text is known for this sample (the built-in features need a text input, such as a character "
            "model's .txt sample), so there are no built-in per-step features to compare units with. "
            "Pass --labels labels.csv (one column per feature, one row per step) to rank units against your own."
        )
    if not analysis.units:
        return "No unit varies together with any feature on this sample (every feature or every unit is constant)."
    best = analysis.units[0]
    parts = [
        f"The unit most tied to a feature is unit {best.unit} of {best.key}, which follows "
        f"{best.feature.replace('_', ' ')} with r = {best.r:+.2f}."
    ]
    seen = {best.feature}
    for u in analysis.units[1:]:
        if u.feature in seen or len(seen) >= 3:
            continue
        seen.add(u.feature)
        parts.append(f"For {u.feature.replace('_', ' ')} the best is unit {u.unit} of {u.key} (r = {u.r:+.2f}).")
    absent = [name for name in analysis.features if name not in {u.feature for u in analysis.units}]
    if absent:
        parts.append("Constant on this sample, so not ranked: " + ", ".join(a.replace("_", " ") for a in absent) + ".")
    strong = sum(1 for u in analysis.units if abs(u.r) >= 0.7)
    parts.append(f"{strong} of the listed unit–feature pairs have |r| ≥ 0.7.")
    return " ".join(parts)


def units_section(ctx: PageContext) -> Section:
    """Ranked units per feature (each unit a link to its heatmap row), with the best units' activation plots."""
    analysis = ctx.analysis
    section_id = ctx.ids.take("interpretable-units")
    tables: list[Block] = []
    if analysis.units:
        tables.append(Table(
            ("feature", "layer / series", "unit", "r"),
            tuple(Row((Cell((u.feature.replace("_", " "),)), Cell((u.key,)),
                       Cell((Span(str(u.unit), "link", ref=FigureRef("heatmaps", u.key.rpartition("/")[0]),
                                  unit=int(u.unit)),), numeric=True),
                       Cell((f"{u.r:+.3f}",), numeric=True)))
                  for u in analysis.units),
            caption="Top units per feature, strongest first", analysis=True,
        ))
    layers = {layer.prefix: layer for layer in ctx.run.trace.layers}
    shown: list[str] = []
    panels = []
    highlights: list[Block] = []
    for u in analysis.units:
        if u.feature in shown or len(shown) >= UNIT_FEATURES_SHOWN:
            continue
        shown.append(u.feature)
        prefix, series = u.key.rsplit("/", 1)
        layer = layers.get(prefix)
        if layer is None:
            continue
        activation = np.asarray(layer.series[series][0, :, u.unit], dtype=np.float64)
        caption = f"unit {u.unit} of {u.key} · {u.feature.replace('_', ' ')} · r = {u.r:+.2f}"
        panels.append(UnitPanel(activation, analysis.features[u.feature], caption))
    figures: list[Block] = []
    if panels:
        figures.append(FigureSpec(
            id=ctx.ids.take("fig", "units"), ref=FigureRef("units"),
            data=UnitFeaturesData(tuple(panels), ctx.display_tokens()),
            description="The best unit for each of the strongest text features: its activation over time against "
                        "the feature.",
            caption="the best unit for each of the strongest features (black line) against the feature (grey)",
            frame="analysis",
        ))
    definitions = Definitions((
        ("r", "Pearson correlation between a unit's activation and a feature over the time steps of the sample"),
        *((name.replace("_", " "), text) for name, text in analysis.feature_definitions.items()),
    ))
    if panels and ctx.run.sample.kind == "tokens" and ctx.tokens is not None:
        # The text coloured by these units is the token section's (shown there first): not twice.
        highlights.append(Paragraph(("The sample text coloured by each of these units: ",
                                     Span("Token highlighting", "link", href="#tokens"), " (ranked units first).",),
                                    role="note"))
    blocks = (Paragraph((reading(analysis),), role="reading"), *tables, *figures, *highlights, definitions)
    return Section(section_id, "Interpretable units", blocks, analysis=True)
