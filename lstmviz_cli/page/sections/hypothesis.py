"""Hypothesis search (LSTMVis's core interaction, offline): select a span, find the units that mark it.

The page embeds h of every layer for the sample's first steps, quantised to one byte per value
(256 levels on [-1, 1], about 0.008 apart: enough to compare with a threshold), base64-encoded;
the page's script (`templates/js/hypothesis.js.j2`) ranks the units that are on inside a selected
span and off just outside it, and marks the other places where the top units are on together
(Strobelt et al., "LSTMVis", IEEE TVCG 2018).
"""

from __future__ import annotations

import base64

import numpy as np

from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.highlight import display_char
from lstmviz_cli.page.model import HypothesisSearch, Paragraph, Section

MAX_SEARCH_STEPS = 4000  # steps of the sample searchable on the page
MAX_SEARCH_BYTES = 2 << 20  # bytes of quantised h embedded (steps x units)
DEFAULT_THRESHOLD = 0.3  # LSTMVis's default "on" level


def quantise(values: np.ndarray) -> bytes:
    """h on [-1, 1] as one byte per value: round((clip(h) + 1) / 2 * 255); NaN (padding) as 127."""
    v = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=-1.0 / 255.0)
    return np.round((np.clip(v, -1.0, 1.0) + 1.0) / 2.0 * 255.0).astype(np.uint8).tobytes()


def hypothesis_section(ctx: PageContext) -> Section | None:
    """The sample's text with the search's controls and data; None for inputs without tokens."""
    tokens = ctx.analysis.tokens
    if tokens is None or ctx.run.sample.kind != "tokens":
        return None
    layers = [layer for layer in ctx.layers if "h" in layer.series]
    if not layers:
        return None
    units = sum(layer.series["h"].shape[2] for layer in layers)
    steps = min(len(tokens), MAX_SEARCH_STEPS, max(1, MAX_SEARCH_BYTES // max(units, 1)))
    matrix = np.concatenate([np.asarray(layer.series["h"][0, :steps], dtype=np.float64) for layer in layers], axis=1)
    labels = tuple(f"{layer.prefix}:{u}" for layer in layers for u in range(layer.series["h"].shape[2]))
    separator = "" if ctx.run.sample.text is not None else " "
    block = HypothesisSearch(
        id=ctx.ids.take("hypothesis-search"),
        tokens=tuple(display_char(t) + separator for t in tokens[:steps]),
        units=labels, data=base64.b64encode(quantise(matrix)).decode("ascii"), threshold=DEFAULT_THRESHOLD,
    )
    lead = Paragraph((
        "Which units mark a pattern you see? Select a stretch of the text below (a quoted phrase, a word, a "
        "bracketed aside): the page lists the units of h that are on (|h| at or above the threshold, on its "
        "positive side for a + unit, its negative side for a − unit) at every step inside it and off at the steps "
        "just before and after it, ranked by their margin, and marks the other places in the text where the top "
        "units are on together. All in this page, from the recorded h of every layer.",
    ), role="lead")
    notes = []
    if steps < len(tokens):
        notes.append(Paragraph((f"searchable: the first {steps:,} of {len(tokens):,} steps (the page embeds at most "
                                f"{MAX_SEARCH_BYTES >> 20} MB of values)",), role="note"))
    return Section(ctx.ids.take("hypothesis"), "Hypothesis search", (lead, *notes, block), analysis=True)
