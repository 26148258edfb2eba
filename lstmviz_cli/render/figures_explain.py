"""Figures of the explanations with evidence (issue 18): pure functions from page data to matplotlib Figures.

Attribution beside saliency, the forget-timescale histograms, the context-ablation curve and a
unit's causal check. No pyplot state; fixed margins in inches (`render.mpl.margins`); long inputs
are binned so that a figure's size does not grow with the sequence. Decompositions are additive,
so a bin shows the sum of its steps' shares: the bars still add up to the output.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from lstmviz_cli.analysis.evidence import ContextAblation, LayerTimescales
from lstmviz_cli.page.figuredata import AttributionPanel, FloatArray
from lstmviz_cli.render.figures_analysis import _label_height, _time_labels, _time_ticks, plain
from lstmviz_cli.render.mpl import margins, new_figure
from lstmviz_cli.render.palette import GATE_COLORS, INK

MAX_BARS = 400  # bars per panel before steps are summed into bins
POSITIVE = "#B2182B"  # a step that pushes the output up (the diverging map's red end)
NEGATIVE = "#2166AC"  # ... down (its blue end)
SHADE = "#e3e3e3"
UNSIGNED = "#8a8f98"  # a share that has no sign (saliency): grey, as the caption says


def _bins(values: FloatArray, limit: int = MAX_BARS) -> tuple[FloatArray, FloatArray, int]:
    """(x centres, sums per bin, steps per bin): every step when few, else equal bins summed."""
    n = len(values)
    if n <= limit:
        return np.arange(n, dtype=np.float64), np.asarray(values, dtype=np.float64), 1
    width = -(-n // limit)
    edges = np.arange(0, n + width, width)[: -(-n // width) + 1]
    edges[-1] = n
    sums = np.add.reduceat(np.nan_to_num(np.asarray(values, dtype=np.float64)), edges[:-1])
    return (edges[:-1] + edges[1:] - 1) / 2.0, sums, width


def plot_attribution(panels: Sequence[AttributionPanel], tokens: Sequence[str] | None, step: int) -> Figure:
    """One panel per method, sharing the input-step axis: saliency's share, then each decomposition's
    signed parts (red: towards the output, blue: against it). The predicted step is marked."""
    steps = max(len(p.values) for p in panels)
    labels = _time_labels(tokens, steps)
    titles = [textwrap.wrap(plain(p.title), 130) for p in panels]
    heights = [1.45 + 0.14 * (len(t) - 1) for t in titles]
    fig = new_figure(7.5, sum(heights) + 0.5 + _label_height(labels), fixed=True)
    margins(fig, left=0.85, right=0.15, top=0.25 + 0.14 * len(titles[0]), bottom=0.35 + _label_height(labels),
            hspace=0.55 + 0.1 * max(len(t) for t in titles))
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, panel, title in zip(axes, panels, titles, strict=True):
        x, y, width = _bins(panel.values)
        colours = [POSITIVE if v >= 0 else NEGATIVE for v in y] if panel.signed else UNSIGNED
        ax.bar(x, y, width=0.9 * width, color=colours, linewidth=0)
        ax.axhline(0, color="#999999", linewidth=0.6)
        ax.axvline(step, color=INK, linewidth=0.7, linestyle=":")
        unit = "" if width == 1 else f" (sum over {width} steps)"
        ax.set_ylabel(("share" if not panel.signed else "part of y") + unit, fontsize=7)
        ax.set_title("\n".join(title), fontsize=8, loc="left")
        ax.tick_params(labelsize=7)
        ax.set_xlim(-0.5, steps - 0.5)
    _time_ticks(axes[-1], tokens, steps)
    return fig


def plot_timescales(layers: Sequence[LayerTimescales], labels: Mapping[str, str]) -> Figure:
    """Per layer, units per forget timescale bin ([1, 2), [2, 4), ... steps) with the median marked."""
    fig = new_figure(7.0, 1.35 * len(layers) + 0.75, fixed=True)
    margins(fig, left=0.8, right=0.15, top=0.2, bottom=0.55, hspace=0.75)
    axes = fig.subplots(len(layers), 1, sharex=True, squeeze=False)[:, 0]
    occupied = [int(np.flatnonzero(layer.counts).max(initial=0)) for layer in layers]
    bins = min(len(layers[0].counts), max(8, max(occupied) + 2))  # empty long-timescale bins left out
    names = []
    for k in range(bins):
        low, high = layers[0].edges[k], layers[0].edges[k + 1]
        names.append(f"≥{low:g}" if not np.isfinite(high) else f"<{high:g}" if low == 0 else f"{low:g}–{high:g}")
    for ax, layer in zip(axes, layers, strict=True):
        colour = GATE_COLORS.get(layer.gate, INK)
        ax.bar(np.arange(bins), layer.counts[:bins], width=0.85, color=colour, linewidth=0)
        beyond = int(layer.counts[bins:].sum())
        if beyond:  # cannot happen with the bins chosen above; never hide a unit
            ax.text(0.99, 0.9, f"{beyond} more beyond", transform=ax.transAxes, ha="right", fontsize=7)
        median = layer.median
        title = f"{labels.get(layer.prefix, layer.prefix)} · {layer.gate} · {len(layer.tau)} units"
        if np.isfinite(median):
            position = float(np.searchsorted(layer.edges, median, side="right") - 1)
            ax.axvline(position, color=INK, linestyle="--", linewidth=0.8)
            title += f" · median τ = {median:.3g} steps (dashed)"
        ax.set_title(plain(title), fontsize=8, loc="left")
        ax.set_ylabel("units", fontsize=7)
        ax.tick_params(labelsize=7)
    axes[-1].set_xticks(np.arange(bins), names, rotation=90, fontsize=6)
    axes[-1].set_xlabel("forget timescale τ = −1 / ln(mean gate), in steps", fontsize=8)
    return fig


def plot_context_ablation(ablation: ContextAblation, saliency_horizon: int | None) -> Figure:
    """|Δy| against the context kept k, the ablation horizon marked (solid) and the saliency's (dashed)."""
    fig = new_figure(7.0, 2.9, fixed=True)
    margins(fig, left=0.8, right=0.2, top=0.45, bottom=0.5)
    ax: Axes = fig.add_subplot()
    kept = np.asarray(ablation.kept, dtype=np.float64)
    change = np.asarray(ablation.change, dtype=np.float64)
    x = kept + 1.0  # k = 0 (all neutral) on a log axis: plotted at 1
    ax.plot(x, change, color=INK, linewidth=1.1, marker="o", markersize=2.5)
    ax.axhspan(0, ablation.tolerance * ablation.reference, color=SHADE, linewidth=0)
    ax.axvline(ablation.horizon + 1.0, color=INK, linewidth=1.0)
    if saliency_horizon:
        ax.axvline(saliency_horizon + 1.0, color=INK, linewidth=0.9, linestyle="--")
    ax.set_xscale("log")
    ax.set_xlim(0.9, x[-1] * 1.1)
    nice = (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000)
    ticks = [k for k in nice if k + 1 <= x[-1] * 1.1]
    ax.set_xticks([k + 1.0 for k in ticks], [str(k) for k in ticks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlabel("steps of context kept before the output (older input zeroed)", fontsize=8)
    what = "log-probability" if ablation.quantity == "log-probability" else "value"
    ax.set_ylabel(f"|change of the {what}|", fontsize=8)
    title = (f"context ablation of {ablation.target_label} at step {ablation.step}: reads {ablation.horizon} "
             f"steps back (solid)" + (f"; saliency horizon {saliency_horizon} (dashed)" if saliency_horizon else "")
             + f"; shaded: under {ablation.tolerance:.0%} of the largest change")
    ax.set_title("\n".join(textwrap.wrap(plain(title), 110)), fontsize=8, loc="left")
    ax.tick_params(labelsize=7)
    return fig


def plot_unit_ablation(change: FloatArray, feature: FloatArray | None, title: str,
                       tokens: Sequence[str] | None) -> Figure:
    """The loss change per predicted step when a unit is clamped; steps where its feature is present shaded."""
    steps = len(change)
    labels = _time_labels(tokens, steps)
    fig = new_figure(7.5, 2.4 + _label_height(labels), fixed=True)
    margins(fig, left=0.85, right=0.15, top=0.5, bottom=0.35 + _label_height(labels))
    ax: Axes = fig.add_subplot()
    if feature is not None:
        present = np.asarray(feature, dtype=np.float64)[:steps]
        on = present > present.min()
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            ax.axvspan(start - 0.5, stop - 0.5, color=SHADE, linewidth=0)
    x, y, width = _bins(change)
    ax.bar(x, y, width=0.9 * width, color=[POSITIVE if v >= 0 else NEGATIVE for v in y], linewidth=0)
    ax.axhline(0, color="#999999", linewidth=0.6)
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylabel("Δ loss (nats)" + ("" if width == 1 else f", sum of {width}"), fontsize=7)
    ax.set_title("\n".join(textwrap.wrap(plain(title), 100)), fontsize=8, loc="left")
    ax.tick_params(labelsize=7)
    _time_ticks(ax, tokens, steps)
    return fig
