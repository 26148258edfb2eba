"""The one token highlighter: text whose tokens are coloured by values (`page.model.Highlight`).

The token highlighting section colours the sample by single units, the units section by the best
unit of a feature, the memory section by the saliency; all build their block here. The page
decides the values on the colour scale and the tooltips; the renderer picks the colours.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmviz_cli.glyphs import WHITESPACE, visible
from lstmviz_cli.page.figuredata import FloatArray
from lstmviz_cli.page.model import Highlight, Scale

MAX_TOKENS = 600  # tokens per highlighted text in the analysis sections (units, saliency)


def display_char(token: str) -> str:
    """A token inside running text: like `visible`, but a newline also breaks the line after its symbol."""
    if token == "\n":
        return WHITESPACE["\n"] + "\n"
    if token == " ":
        return " "
    return visible(token, 24)


def highlight(
    block_id: str | None, caption: str, tokens: Sequence[str], positions: FloatArray, titles: Sequence[str], *,
    scale: Scale = "diverging", separator: str = "",
) -> Highlight:
    """A highlighted text: each token shown as running text (`display_char` + `separator`) and
    coloured by its position on the scale ([−1, 1] diverging, [0, 1] sequential; NaN: none)."""
    return Highlight(
        id=block_id, caption=caption, tokens=tuple(display_char(token) + separator for token in tokens),
        values=tuple(float(v) for v in np.asarray(positions, dtype=np.float64)), titles=tuple(titles), scale=scale,
    )
