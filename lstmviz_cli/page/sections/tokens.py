"""Token highlighting: the sample text coloured by single units (text and token inputs only)."""

from __future__ import annotations

import numpy as np

from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.context import PageContext, sequence
from lstmviz_cli.page.highlight import highlight
from lstmviz_cli.page.model import (
    ExplorerSeries,
    Grid,
    Highlight,
    Paragraph,
    Section,
    Span,
    UnitExplorer,
    UnitPicker,
)
from lstmviz_cli.page.unitorder import top_variance_units
from lstmviz_cli.tracing.records import LayerTrace

MAX_HIGHLIGHT_STEPS = 2000  # token highlighting shows at most this many characters
HIGHLIGHT_UNITS = 1  # top-variance units per layer shown as highlighted text (the explorer shows any other)
RANKED_UNITS = 4  # units the analysis ranks (against a text feature) shown first


def token_section(ctx: PageContext) -> Section | None:
    """Text coloured by single units: the units the analysis ranks, then each layer's top-variance units."""
    if ctx.tokens is None or ctx.run.sample.kind != "tokens":
        return None
    section_id = ctx.ids.take("tokens")
    start, stop = ctx.view.window
    stop = min(stop, start + MAX_HIGHLIGHT_STEPS)
    shown = ctx.tokens[start:stop]
    text = ctx.run.sample.text
    separator = "" if text and len(text) == len(ctx.tokens) else " "
    blocks: list[Highlight] = []
    seen: set[tuple[str, int]] = set()

    def add(layer: LayerTrace, series: str, unit: int, why: str, suffix: str = "") -> None:
        values = sequence(layer, series, (start, stop))[:, unit]
        # h lives in [−1, 1]; the unbounded cell state is scaled by the unit's own max |c|.
        scale = float(np.nanmax(np.abs(values))) if series == "c" and np.isfinite(values).any() else 1.0
        scale = scale or 1.0
        caption = f"{layer.label} · {series}[{unit}] · {why}" + (f" · colour scale ±{scale:.3g}" if series == "c" else "")
        titles = [f"t={start + k} {series}[{unit}]={float(v):.3f}" for k, v in enumerate(values)]
        block_id = ctx.ids.take("tokens", layer.prefix, series, str(unit), suffix)
        blocks.append(highlight(block_id, visible(caption, 160), shown, values / scale, titles, separator=separator))
        seen.add((f"{layer.prefix}/{series}", unit))

    selected = {layer.prefix: layer for layer in ctx.layers}
    # Units the analysis ranks (correlation with a text feature) say the most: show them first.
    for ranked in ctx.analysis.units[:RANKED_UNITS]:
        prefix, _, series = ranked.key.rpartition("/")
        layer = selected.get(prefix)
        if layer is None or series not in layer.series or (ranked.key, ranked.unit) in seen:
            continue
        add(layer, series, int(ranked.unit), f"r = {ranked.r:+.2f} with {ranked.feature}", "ranked")
    for layer in ctx.layers:
        key = "c" if "c" in layer.series else "h"
        for unit in top_variance_units(sequence(layer, key, (start, stop)), HIGHLIGHT_UNITS):
            if (f"{layer.prefix}/{key}", unit) not in seen:
                add(layer, key, unit, "high variance")
    cells = any("c" in layer.series for layer in ctx.layers)
    lead = Paragraph((
        "The sample text with each token's background coloured by one unit: blue negative, red positive ",
        Span("", "ramp-div"), " (h on [−1, 1]" + ("; a cell state on ± its own largest |c|" if cells else "")
        + "). Units that track a text "
        "feature come first, then each layer's highest-variance units. Hover a token for its exact value; pick any "
        "unit of any layer just below.",
    ), role="lead")
    notes = []
    if stop < ctx.view.window[1]:
        window = ctx.view.window
        notes.append(Paragraph((f"showing steps {start}–{stop - 1} of {window[0]}–{window[1] - 1}; choose others "
                                "with --steps",), role="note"))
    picker = UnitPicker(tuple((b.id, b.caption) for b in blocks if b.id is not None))
    explorer = unit_explorer(ctx, (start, stop), ctx.ids.take("tokens", "any-unit"))
    return Section(section_id, "Token highlighting",
                   (lead, *notes, *([explorer] if explorer else []), picker, Grid(tuple(blocks), kind="highlights")))


EXPLORER_VALUES = 600_000  # values embedded for the unit explorer at most (float32: 3.2 MB of base64)


def unit_explorer(ctx: PageContext, window: tuple[int, int], block_id: str) -> UnitExplorer | None:
    """Every unit of every shown layer's h (and c), over the highlighted window, for the reader to pick.

    Layers are left out from the last while the values would pass EXPLORER_VALUES (the page's size
    budget); None when not even one fits.
    """
    if ctx.tokens is None:
        return None
    start, stop = window
    series: list[ExplorerSeries] = []
    budget = EXPLORER_VALUES
    for layer in ctx.layers:
        for name in ("h", "c"):
            if name not in layer.series:
                continue
            values = sequence(layer, name, window)
            if values.size > budget:
                continue
            budget -= values.size
            series.append(ExplorerSeries(visible(f"{layer.label} · {name}", 80), name,
                                         np.asarray(values, dtype=np.float32)))
    if not series:
        return None
    text = ctx.run.sample.text
    separator = "" if text and len(text) == len(ctx.tokens) else " "
    shown = highlight(None, "", ctx.tokens[start:stop], np.zeros(stop - start), [""] * (stop - start),
                      separator=separator)
    return UnitExplorer(block_id, shown.tokens, tuple(series), start)
