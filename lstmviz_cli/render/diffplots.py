"""Figures of the diff page: weight histograms per gate and saturated shares, before against after."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from lstmviz_cli.analysis.diff import GateStatChange, WeightChange
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.families import GATE_SERIES, SERIES_NAMES
from lstmviz_cli.page.captions import diff_saturation_axis
from lstmviz_cli.render.mpl import new_figure
from lstmviz_cli.render.palette import GATE_COLORS


def plot_weight_distributions(changes: Sequence[WeightChange]) -> Figure:
    """One panel per gate: the weight histogram before (filled) and after (outline), shared bins."""
    fig = new_figure(2.2 * max(len(changes), 1), 2.0)
    axes = fig.subplots(1, max(len(changes), 1), squeeze=False)[0]
    for ax, change in zip(axes, changes, strict=False):
        edges = np.asarray(change.bin_edges)
        color = GATE_COLORS.get(change.gate, "#444444")
        ax.stairs(change.hist_before, edges, fill=True, color=color, alpha=0.35, label="before")
        ax.stairs(change.hist_after, edges, color=color, linewidth=1.4, label="after")
        ax.set_title(SERIES_NAMES.get(change.gate, "projection"), fontsize=9)
        ax.set_xlabel("weight")
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel("count")
    axes[0].legend(fontsize=7, frameon=False)
    return fig


def plot_saturation(changes: Sequence[GateStatChange], thresholds: Thresholds) -> Figure:
    """Share of saturated gate values per layer and gate, before vs after (grouped bars)."""
    gates = [c for c in changes if c.series in GATE_SERIES and c.before_low is not None]
    fig = new_figure(max(3.0, 0.6 * len(gates) + 1.5), 2.6)
    ax = fig.subplots()
    x = np.arange(len(gates))
    before = [(c.before_low or 0.0) + (c.before_high or 0.0) for c in gates]
    after = [(c.after_low or 0.0) + (c.after_high or 0.0) for c in gates]
    colors = [GATE_COLORS.get(c.series, "#444444") for c in gates]
    ax.bar(x - 0.2, before, 0.4, color=colors, alpha=0.35, label="before")
    ax.bar(x + 0.2, after, 0.4, color=colors, label="after")
    ax.set_xticks(x, [f"{c.prefix}\n{c.series}" for c in gates], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel(diff_saturation_axis(thresholds))
    ax.legend(fontsize=7, frameon=False)
    return fig
