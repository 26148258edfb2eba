"""Diagnostics: every finding with its severity, numbers and a link to the figure that shows it,
and per layer the unit-activity figure (how far each unit's h moves, its largest |c|)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmviz_cli.analysis.findings import units_text
from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.analysis.rows import valid_rows
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page import captions
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import ActivityData
from lstmviz_cli.page.model import (
    Block,
    Definitions,
    FigureRef,
    FigureSpec,
    FindingRow,
    Findings,
    Inline,
    Paragraph,
    Section,
    Span,
)

SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}


def reading(analysis: Analysis) -> str:
    if not analysis.findings:
        return ("No threshold is crossed: no dead units, saturated or pinned gates, exploding cell state or "
                "vanishing gradient.")
    counts = {sev: sum(1 for f in analysis.findings if f.severity == sev) for sev in ("error", "warning", "info")}
    head = ", ".join(f"{n} {sev}{'s' if n != 1 else ''}" for sev, n in counts.items() if n)
    worst = min(analysis.findings, key=lambda f: SEVERITY_ORDER.get(f.severity, 3))
    return f"{head}. The most serious: {worst.message}."


UNIT_LINKS = 8  # units of a finding written as links to their heatmap rows; the rest counted


def unit_links(ctx: PageContext, prefix: str | None, units: Sequence[int] | None) -> tuple[Inline, ...]:
    """A finding's units as links that outline each unit's row in its layer's heatmap (resolved to
    the heatmap's id when the page is rendered: plain text where the page shows no such heatmap)."""
    if not prefix or not units:
        return ()
    target = FigureRef("heatmaps", prefix)
    parts: list[Inline] = ["unit " if len(units) == 1 else "units "]
    for k, unit in enumerate(units[:UNIT_LINKS]):
        parts += [", "] if k else []
        parts.append(Span(str(unit), "link", ref=target, unit=int(unit)))
    if len(units) > UNIT_LINKS:
        parts.append(f" (+{len(units) - UNIT_LINKS} more)")
    return tuple(parts)


def diagnostics_section(ctx: PageContext) -> Section:
    """Findings with severity, each linked to the figure that shows it, and the unit-activity figures."""
    analysis = ctx.analysis
    th = analysis.thresholds
    section_id = ctx.ids.take("diagnostics")
    definitions = captions.finding_definitions(th)
    if analysis.check is not None:  # the page of check --report: findings are the check's verdicts
        definitions.update(captions.check_definitions(analysis.check))
    if not any("c" in layer.series for layer in ctx.layers):  # no cell state on this page (GRU, RNN)
        definitions = {code: text for code, text in definitions.items() if code != "exploding_cell"}
    rows = tuple(
        FindingRow(
            severity=f.severity, layer=f.prefix or "model", units=units_text(f.units) if f.units else "–",
            message=f.message, value=f"{f.value:.3g}", threshold=f"{f.threshold:.3g}",
            definition=definitions.get(f.code, ""), figure=f.figure, unit_links=unit_links(ctx, f.prefix, f.units),
        )
        for f in sorted(analysis.findings, key=lambda f: SEVERITY_ORDER.get(f.severity, 3))
    )
    figures = []
    for layer in ctx.layers:
        h = valid_rows(layer.series["h"]) if "h" in layer.series else None
        c = valid_rows(layer.series["c"]) if "c" in layer.series else None
        h_range = h.max(axis=0) - h.min(axis=0) if h is not None and len(h) else None
        c_peak = np.abs(c).max(axis=0) if c is not None and len(c) else None
        if h_range is None and c_peak is None:
            continue
        figures.append(FigureSpec(
            id=ctx.ids.take("fig", "activity", layer.prefix), ref=FigureRef("activity", layer.prefix),
            data=ActivityData(layer.prefix, h_range, c_peak, th, unjudged=analysis.unjudged.get(layer.prefix)),
            description=(f"How far each unit's h moves and its largest |c|, per unit of {layer.label}, against the "
                         "dead-unit and cell-state thresholds." if c_peak is not None else
                         f"How far each unit's h moves, per unit of {layer.label}, against the dead-unit threshold."),
            caption=visible(f"{layer.prefix}: how far each unit's h moves"
                            + (", and its largest |c|" if c_peak is not None else "")
                            + ("; red: past the threshold" if layer.prefix not in analysis.unjudged else
                               "; too short to judge: no unit is marked"), 300), frame="analysis",
        ))
    severity = ("error: a cell state still growing at 5× its threshold or more; warning: a threshold crossed "
                "by a large share of a layer's units, or a cell state still growing past it; info: a few units only, "
                "or a property worth knowing however far past its threshold (a short memory, a bounded large cell "
                "state)")
    if analysis.check is not None:
        fail_on = analysis.check.fail_on
        severity = ("a finding fails the check when it says \"fails the check\"; "
                    + ("no analysis finding fails it by severity (--fail-on never)" if fail_on == "never" else
                       f"with --fail-on {fail_on}, every finding of severity {fail_on}"
                       + (" or error" if fail_on == "warning" else "") + " does"))
    terms = (
        ("severity", severity),
        *((code.replace("_", " "), text) for code, text in definitions.items()),
        ("thresholds", captions.thresholds_line(th)),
        *((("check thresholds", analysis.check.settings_text()),) if analysis.check is not None else ()),
    )
    blocks: tuple[Block, ...] = (Paragraph((reading(analysis),), role="reading"),
                                 *([Findings(rows)] if rows else []), *figures, Definitions(terms))
    return Section(section_id, "Diagnostics", blocks, analysis=True)

