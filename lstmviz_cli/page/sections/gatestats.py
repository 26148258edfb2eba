"""Gate statistics: per layer and series, mean, spread and saturated shares, as a table and one figure."""

from __future__ import annotations

from lstmviz_cli.analysis.records import GateStat
from lstmviz_cli.families import SERIES_NAMES
from lstmviz_cli.page import captions
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import GateStatsData
from lstmviz_cli.page.model import (
    Block,
    Cell,
    Definitions,
    FigureRef,
    FigureSpec,
    Paragraph,
    Row,
    Section,
    Table,
)
from lstmviz_cli.page.numbers import fixed, percent


def reading(stats: list[GateStat], low: float, high: float) -> str:
    """One paragraph from the numbers: the most right- and left-saturated gates, and the forget gates."""
    gates = [s for s in stats if s.frac_high is not None]
    if not gates:
        return "This model has no sigmoid gates to summarise (a plain RNN)."
    parts = []
    top = max(gates, key=lambda s: (s.frac_high or 0.0, s.prefix, s.series))
    if (top.frac_high or 0.0) == 0.0 and all((s.frac_low or 0.0) == 0.0 for s in gates):
        mean = sum(s.mean for s in gates) / len(gates)
        return (
            f"No gate value leaves the band [{low:g}, {high:g}] on this sample: every gate works in its "
            f"graded range (mean gate value {mean:.2f}), none acts as a hard switch."
        )
    parts.append(
        f"The most right-saturated gate is the {SERIES_NAMES[top.series]} of {top.prefix}: "
        f"{percent(top.frac_high)} of its values are above {high:g} (mean {top.mean:.2f})."
    )
    bottom = max(gates, key=lambda s: (s.frac_low or 0.0, s.prefix, s.series))
    if (bottom.frac_low or 0.0) > 0.0:
        parts.append(
            f"The most left-saturated is the {SERIES_NAMES[bottom.series]} of {bottom.prefix}: "
            f"{percent(bottom.frac_low)} below {low:g}."
        )
    for s in gates:
        if s.series != "f":
            continue
        if (s.frac_high or 0.0) >= 0.5:
            parts.append(
                f"{s.prefix} forget gates are right-saturated {percent(s.frac_high)} of the time: "
                "this layer mostly carries its memory forward."
            )
        elif (s.frac_low or 0.0) >= 0.5:
            parts.append(
                f"{s.prefix} forget gates are left-saturated {percent(s.frac_low)} of the time: "
                "this layer mostly resets its memory at every step."
            )
    return " ".join(parts)


def gate_stats_section(ctx: PageContext) -> Section | None:
    """The gate statistics table and its figure (mean ± std per series, saturated shares per gate)."""
    stats = ctx.analysis.gate_stats
    if not stats:
        return None
    th = ctx.thresholds
    section_id = ctx.ids.take("gate-statistics")
    rows = tuple(
        Row(tuple(Cell((text,)) for text in (
            s.prefix, f"{s.series} ({SERIES_NAMES.get(s.series, s.series)})", fixed(s.mean), fixed(s.std),
            percent(s.frac_low), percent(s.frac_high), fixed(s.time_std),
        )))
        for s in stats
    )
    blocks: list[Block] = [
        Paragraph((reading(stats, th.saturation_low, th.saturation_high),), role="reading"),
        Table(("layer", "series", "mean", "std", captions.below(th), captions.above(th), "std over time"), rows,
              caption="Per layer and series", analysis=True),
    ]
    labels = {layer.prefix: layer.label for layer in ctx.layers}
    prefixes = tuple(p for p in labels if any(s.prefix == p for s in stats))
    if prefixes:
        blocks.append(FigureSpec(
            id=ctx.ids.take("fig-gate-statistics"), ref=FigureRef("gate-stats"),
            data=GateStatsData(tuple(stats), prefixes, labels),
            description="Gate statistics per layer: mean, spread and saturated share of each gate.",
            caption=captions.gate_stats_caption(th), frame="analysis",
        ))
    blocks.append(Definitions(captions.gate_stats_definitions(th)))
    return Section(section_id, "Gate statistics", tuple(blocks), analysis=True)
