"""The colours of highlighted text: a token's value on its scale -> one of a few CSS classes.

Values are quantised to LEVELS classes per scale (keeps the page small, and no inline styles): the
diverging scale (`v0`…`v20`: blue −1 … red +1, the state colormap) and the sequential one (`s0`…`s20`:
white … blue, kept light enough to read). The ink of each class is chosen for contrast.
"""

from __future__ import annotations

import math

from matplotlib import colormaps
from matplotlib.colors import to_hex

from lstmviz_cli.page.model import Scale
from lstmviz_cli.render.palette import STATE_CMAP

LEVELS = 21  # colour classes per scale
SEQUENTIAL_CMAP = "Blues"
SEQUENTIAL_DEPTH = 0.75  # the darkest sequential class stops here on the colormap, so black text stays readable


def token_class(value: float, scale: Scale) -> str:
    """The CSS class of one token: "v0".."v20" (diverging, [−1, 1] clipped), "s0".."s20" ([0, 1]); "v-1": no value."""
    if not math.isfinite(value):
        return "v-1"
    if scale == "diverging":
        x = min(max(float(value), -1.0), 1.0)
        return f"v{int(round((x + 1.0) / 2.0 * (LEVELS - 1)))}"
    return f"s{int(round(min(max(float(value), 0.0), 1.0) * (LEVELS - 1)))}"


def relative_luminance(rgba: tuple[float, ...]) -> float:
    """WCAG 2 relative luminance of an sRGB colour (channels in [0, 1], gamma removed)."""
    def linear(c: float) -> float:
        return c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4

    return 0.2126 * linear(rgba[0]) + 0.7152 * linear(rgba[1]) + 0.0722 * linear(rgba[2])


def ink_on(rgba: tuple[float, ...]) -> str:
    """Near-black or white text, whichever has the higher WCAG contrast ratio on this background."""
    background = relative_luminance(rgba)
    dark = (background + 0.05) / (relative_luminance((0.067, 0.067, 0.067)) + 0.05)
    light = 1.05 / (background + 0.05)
    return "#111111" if dark >= light else "#ffffff"


def _ink(rgba: tuple[float, float, float, float]) -> str:
    return ink_on(rgba)


def level_colours() -> list[tuple[str, str, str]]:
    """(class, background, ink) of every class of both scales."""
    colours = []
    for level in range(LEVELS):
        rgba = colormaps[STATE_CMAP](level / (LEVELS - 1))
        colours.append((f"v{level}", to_hex(rgba), _ink(rgba)))
    for level in range(LEVELS):
        rgba = colormaps[SEQUENTIAL_CMAP](SEQUENTIAL_DEPTH * level / (LEVELS - 1))
        colours.append((f"s{level}", to_hex(rgba), _ink(rgba)))
    return colours
