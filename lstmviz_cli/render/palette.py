"""Colours that mean the same thing in every figure, diagram and page of lstmviz.

Gate hues follow the brief (forget red, input blue, output green, candidate purple) using the
colour-blind-safe Okabe-Ito / Tol families; states use diverging maps centred on zero.
"""

from __future__ import annotations

GATE_COLORS: dict[str, str] = {
    "i": "#0072B2",  # input gate: blue
    "f": "#D55E00",  # forget gate: red/vermillion
    "o": "#009E73",  # output gate: green
    "g": "#7B3294",  # cell candidate: purple
    "c": "#444444",  # cell state (diverging map in heatmaps)
    "h": "#222222",  # hidden state (diverging map in heatmaps)
    "m": "#666666",
    "r": "#E69F00",  # reset gate: orange
    "z": "#56B4E9",  # update gate: sky blue
    "n": "#7B3294",  # new gate: purple (the GRU's candidate)
    "a": "#7B3294",
}

INK = "#1f2430"  # text, outlines and the hidden state carried from step to step

# Sequential maps for [0, 1] gate values and a diverging map for signed states.
GATE_CMAP = "viridis"
STATE_CMAP = "RdBu_r"
