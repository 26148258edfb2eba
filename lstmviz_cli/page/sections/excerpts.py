"""What each unit responds to: its top-activating contexts over everything read (the corpus, or the sample).

Karpathy et al. (2015), LSTMVis and Radford et al. (2017) found their cells by reading the contexts
where a unit fires most; the page lists them for every unit of h behind a picker, the ranked units
first, the firing token marked (`analysis.pooled.TopContexts`).
"""

from __future__ import annotations

from collections.abc import Sequence

from lstmviz_cli.analysis.evidence import Excerpt, UnitExcerpts
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.model import ExcerptBrowser, ExcerptLine, ExcerptUnit, Paragraph, Section

MAX_EXCERPT_UNITS = 512  # units offered by the picker (ranked units first)


def _text(tokens: Sequence[str], separator: str) -> str:
    return separator.join(visible(t, 24) if t != " " else " " for t in tokens)


def excerpt_line(e: Excerpt, separator: str, corpus: bool) -> ExcerptLine:
    where = (f"sequence {e.sequence}, step {e.step}" if corpus or e.sequence else f"step {e.step}")
    return ExcerptLine(before=_text(e.before, separator) + (separator if e.before else ""),
                       token=visible(e.token, 24) if e.token != " " else "\u2423",
                       after=(separator if e.after else "") + _text(e.after, separator),
                       value=f"{e.value:+.2f}", where=where)


def excerpts_section(ctx: PageContext) -> Section | None:
    """Every h unit's highest and lowest contexts, with a picker; None without token excerpts."""
    analysis = ctx.analysis
    if not analysis.excerpts:
        return None
    section_id = ctx.ids.take("unit-excerpts")
    chars = ctx.run.sample.text is not None
    separator = "" if chars else " "
    corpus = analysis.corpus is not None
    ranked: dict[tuple[str, int], str] = {}
    for u in analysis.units:
        ranked.setdefault((u.prefix, u.unit), f"{u.feature.replace('_', ' ')} r = {u.r:+.2f}")
    labels = {layer.prefix: layer.label for layer in ctx.layers}

    def order(e: UnitExcerpts) -> tuple[int, int, str, int]:
        key = (e.prefix, e.unit)
        rank = list(ranked).index(key) if key in ranked else len(ranked)
        return (0 if key in ranked else 1, rank, e.prefix, e.unit)

    chosen = sorted(analysis.excerpts, key=order)[:MAX_EXCERPT_UNITS]
    units = tuple(ExcerptUnit(
        key=f"{e.prefix}:{e.unit}",
        label=f"{labels.get(e.prefix, e.prefix)} · h[{e.unit}]" + (f" · {ranked[(e.prefix, e.unit)]}"
                                                                   if (e.prefix, e.unit) in ranked else "")
              + f" · mean {e.mean:+.2f}",
        highest=tuple(excerpt_line(x, separator, corpus) for x in e.highest),
        lowest=tuple(excerpt_line(x, separator, corpus) for x in e.lowest),
    ) for e in chosen)
    read = (f"{analysis.corpus.sequences:,} sequences ({analysis.corpus.steps:,} steps) of {analysis.corpus.source}"
            if analysis.corpus is not None else "the sample")
    lead = Paragraph((
        f"What does a unit respond to? For every unit of h, the places in {read} where it is highest and lowest, "
        "one per stretch of text (the marked token is where the unit peaks; its value and place follow). Pick a "
        "unit: the units ranked in the section above come first.",
    ), role="lead")
    notes = []
    if len(analysis.excerpts) > len(chosen):
        notes.append(Paragraph((f"the picker offers {len(chosen)} of {len(analysis.excerpts)} units (ranked units "
                                "first, then in layer order); the JSON summary has them all",), role="note"))
    return Section(section_id, "What each unit responds to", (lead, *notes, ExcerptBrowser(ctx.ids.take("excerpts"),
                                                                                            units)),
                   toc="Unit excerpts", analysis=True)
