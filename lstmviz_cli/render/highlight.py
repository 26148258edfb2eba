"""How user text is shown: visible control characters, and tokens coloured by one unit's activation.

Everything here returns plain strings and records; the template escapes them (never `|safe`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps
from matplotlib.colors import to_hex

from lstmviz_cli.glyphs import visible
from lstmviz_cli.render.palette import STATE_CMAP


def display_char(token: str) -> str:
    """A token inside running text: like `visible`, but a newline also breaks the line after its symbol."""
    if token == "\n":
        return "\u21b5\n"
    if token == " ":
        return " "
    return visible(token, 24)


LEVELS = 21  # activation colours are quantised to this many CSS classes (keeps the file small)


@dataclass(frozen=True)
class TokenSpan:
    """One token of a highlighted text: what to print, its colour level (CSS class) and its tooltip."""

    text: str
    level: int  # 0 (−1, blue) … LEVELS−1 (+1, red); -1: not a number
    title: str


@dataclass(frozen=True)
class HighlightBlock:
    """The sample text coloured by one unit (one "small multiple")."""

    id: str
    caption: str
    spans: list[TokenSpan]


def activation_level(value: float) -> int:
    """The colour level of a value in [-1, 1] (clipped); -1 for NaN."""
    if not np.isfinite(value):
        return -1
    x = min(max(float(value), -1.0), 1.0)
    return int(round((x + 1.0) / 2.0 * (LEVELS - 1)))


def level_colours() -> list[tuple[str, str]]:
    """(background, ink) of every level on the state colormap, ink chosen for contrast."""
    colours = []
    for level in range(LEVELS):
        rgba = colormaps[STATE_CMAP](level / (LEVELS - 1))
        luminance = 0.2126 * rgba[0] + 0.7152 * rgba[1] + 0.0722 * rgba[2]
        colours.append((to_hex(rgba), "#111111" if luminance > 0.45 else "#ffffff"))
    return colours


def top_variance_units(values: np.ndarray, count: int) -> list[int]:
    """The `count` units of a (time, units) array with the highest variance over time (ties: lower index)."""
    var = np.nan_to_num(np.nanvar(values, axis=0), nan=0.0)
    order = np.argsort(-var, kind="stable")
    return [int(u) for u in order[:count]]


def highlight_block(
    block_id: str,
    caption: str,
    tokens: list[str],
    values: np.ndarray,
    *,
    start: int,
    series: str,
    unit: int,
    scale: float = 1.0,
    separator: str = "",
) -> HighlightBlock:
    """Colour each token by `values[t] / scale` on [−1, 1] (scale: e.g. the unit's max |c|, since c is unbounded)."""
    spans = []
    shown = values / (scale or 1.0)
    for k, token in enumerate(tokens):
        spans.append(
            TokenSpan(
                text=display_char(token) + separator,
                level=activation_level(float(shown[k])),
                title=f"t={start + k} {series}[{unit}]={float(values[k]):.3f}",
            )
        )
    return HighlightBlock(id=block_id, caption=caption, spans=spans)
