"""Figures of the diff page: weight histograms per gate and saturated shares, before against after."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lstmviz_cli.analysis.diff import GateStatChange, WeightChange
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.families import GATE_SERIES, SERIES_NAMES
from lstmviz_cli.page.captions import diff_saturation_axis
from lstmviz_cli.render.mpl import SCREEN, Canvas, new_figure
from lstmviz_cli.render.palette import GATE_COLORS


def plot_weight_distributions(changes: Sequence[WeightChange], *, canvas: Canvas = SCREEN) -> Figure:
    """One panel per gate: the weight histogram before (filled) and after (outline), shared bins."""
    c = canvas
    n = max(len(changes), 1)
    cols = min(n, 2 if c.narrow else 4)
    rows = -(-n // cols)
    fig = new_figure(c.width if c.narrow else c.span(2.4 * cols + 0.4), rows * 1.7 + 0.3)
    axes = fig.subplots(rows, cols, squeeze=False)
    for index in range(rows * cols):
        ax = axes[index // cols, index % cols]
        if index >= len(changes):
            ax.set_visible(False)
            continue
        change = changes[index]
        edges = np.asarray(change.bin_edges)
        color = GATE_COLORS.get(change.gate, "#444444")
        ax.stairs(change.hist_before, edges, fill=True, color=color, alpha=0.35, label="before")
        ax.stairs(change.hist_after, edges, color=color, linewidth=1.2, label="after")
        ax.set_title(SERIES_NAMES.get(change.gate, "projection"), fontsize=c.font, color=color, pad=3)
        ax.set_xlabel("weight", fontsize=c.small)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
        ax.tick_params(labelsize=c.small, length=2)
        if index % cols == 0:
            ax.set_ylabel("count", fontsize=c.small)
    if changes:
        axes[0, 0].legend(fontsize=c.small, frameon=False, loc="upper left", handlelength=1.2)
    return fig


def plot_saturation(changes: Sequence[GateStatChange], thresholds: Thresholds, *, canvas: Canvas = SCREEN) -> Figure:
    """Share of saturated gate values per layer and gate, before vs after (grouped bars)."""
    c = canvas
    gates = [ch for ch in changes if ch.series in GATE_SERIES and ch.before_low is not None]
    fig = new_figure(c.span(max(3.0, 0.55 * len(gates) + 1.6)), 2.6)
    ax = fig.subplots()
    x = np.arange(len(gates))
    before = [(ch.before_low or 0.0) + (ch.before_high or 0.0) for ch in gates]
    after = [(ch.after_low or 0.0) + (ch.after_high or 0.0) for ch in gates]
    colors = [GATE_COLORS.get(ch.series, "#444444") for ch in gates]
    ax.bar(x - 0.2, before, 0.4, color=colors, alpha=0.35, label="before")
    ax.bar(x + 0.2, after, 0.4, color=colors, label="after")
    ax.set_xticks(x, [f"{ch.prefix}\n{ch.series}" for ch in gates], fontsize=c.small)
    ax.set_ylim(0, 1.15)
    ax.set_yticks([0, 0.25, 0.5, 0.75, 1], ["0", "25%", "50%", "75%", "100%"])
    ax.set_ylabel(diff_saturation_axis(thresholds), fontsize=c.small)
    ax.tick_params(labelsize=c.small, length=2)
    ax.legend(fontsize=c.small, frameon=False, ncols=2, loc="upper right")
    return fig
