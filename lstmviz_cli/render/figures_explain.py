"""Figures of the explanations with evidence (issue 18): pure functions from page data to matplotlib Figures.

Attribution beside saliency, the forget-timescale histograms, the context-ablation curve and a
unit's causal check. No pyplot state; each is laid out for a `render.mpl.Canvas` (the page's screen
or a paper's column: its width and font sizes; `render.mpl.finish` lays it out and thins tick labels
that would overlap); long inputs are binned so that a figure's size does not grow with the sequence. Decompositions are additive,
so a bin shows the sum of its steps' shares: the bars still add up to the output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from lstmviz_cli.analysis.evidence import ContextAblation, LayerTimescales
from lstmviz_cli.page.figuredata import AttributionPanel, FloatArray
from lstmviz_cli.render.figures_analysis import _time_ticks, _wrap, plain
from lstmviz_cli.render.mpl import SCREEN, Canvas, new_figure
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


def _bars(ax: Axes, x: FloatArray, y: FloatArray, width: float, colours: Sequence[str]) -> None:
    """Bars from 0 to `y` centred on `x`, as one PolyCollection: a few hundred bars drawn as one artist
    (Axes.bar makes a patch per bar: 0.4 s per figure of 400, most of a report's drawing time)."""
    half = width / 2
    polygons = [((xi - half, 0.0), (xi - half, yi), (xi + half, yi), (xi + half, 0.0)) for xi, yi in zip(
        x.tolist(), y.tolist(), strict=True)]
    ax.add_collection(PolyCollection(polygons, facecolors=list(colours), linewidths=0))
    if len(x):
        low, high = float(np.nanmin(y, initial=0.0)), float(np.nanmax(y, initial=0.0))
        ax.update_datalim([(float(x.min()) - half, min(low, 0.0)), (float(x.max()) + half, max(high, 0.0))])
    ax.autoscale_view()


def _signed(y: FloatArray) -> list[str]:
    """Red where a value pushes the output up (or is zero), blue where it pushes it down."""
    return [POSITIVE if v >= 0 else NEGATIVE for v in y.tolist()]


def plot_attribution(panels: Sequence[AttributionPanel], tokens: Sequence[str] | None, step: int, *,
                     canvas: Canvas = SCREEN) -> Figure:
    """One panel per method, sharing the input-step axis: saliency's share, then each decomposition's
    signed parts (red: towards the output, blue: against it). The predicted step is marked."""
    c = canvas
    steps = max(len(p.values) for p in panels)
    titles = [_wrap(plain(p.title), c, small=True) for p in panels]
    panel = 1.1 if c.narrow else 1.35
    fig = new_figure(c.width, sum(panel + c.small_line * (t.count("\n") + 1) for t in titles) + 0.6)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    for ax, data, title in zip(axes, panels, titles, strict=True):
        x, y, width = _bins(data.values)
        _bars(ax, x, y, 0.9 * width, _signed(y) if data.signed else [UNSIGNED] * len(y))
        ax.axhline(0, color="#999999", linewidth=0.6)
        ax.axvline(step, color=INK, linewidth=0.7, linestyle=":")
        unit = "" if width == 1 else f"\n(sum of {width} steps)"
        ax.set_ylabel(("share" if not data.signed else "part of y") + unit, fontsize=c.small)
        ax.set_title(title, fontsize=c.small, loc="left", pad=3)
        ax.tick_params(labelsize=c.small, length=2)
        ax.set_xlim(-0.5, steps - 0.5)
    _time_ticks(axes[-1], tokens, steps, c)
    return fig


def plot_timescales(layers: Sequence[LayerTimescales], labels: Mapping[str, str], *,
                    canvas: Canvas = SCREEN) -> Figure:
    """Per layer, units per forget timescale bin ([1, 2), [2, 4), ... steps) with the median marked."""
    c = canvas
    fig = new_figure(c.span(7.0), (1.1 if c.narrow else 1.35) * len(layers) + 0.9)
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
            ax.text(0.99, 0.9, f"{beyond} more beyond", transform=ax.transAxes, ha="right", fontsize=c.small)
        median = layer.median
        title = f"{labels.get(layer.prefix, layer.prefix)} · {layer.gate} · {len(layer.tau)} units"
        if np.isfinite(median):
            position = float(np.searchsorted(layer.edges, median, side="right") - 1)
            ax.axvline(position, color=INK, linestyle="--", linewidth=0.8)
            title += f" · median τ = {median:.3g} steps (dashed)"
        ax.set_title(_wrap(plain(title), c, c.span(7.0), small=True), fontsize=c.small, loc="left", pad=3)
        ax.set_ylabel("units", fontsize=c.small)
        ax.tick_params(labelsize=c.small, length=2)
    axes[-1].set_xticks(np.arange(bins), names, rotation=90, fontsize=c.small)
    axes[-1].set_xlabel("forget timescale τ = −1 / ln(mean gate), in steps", fontsize=c.small)
    return fig


def plot_context_ablation(ablation: ContextAblation, saliency_horizon: int | None, *,
                          canvas: Canvas = SCREEN) -> Figure:
    """|Δy| against the context kept k, the ablation horizon marked (solid) and the saliency's (dashed)."""
    c = canvas
    fig = new_figure(c.span(7.0), 2.5 if c.narrow else 2.9)
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
    ax.set_xlabel("steps of context kept before the output (older input zeroed)", fontsize=c.small)
    what = "log-probability" if ablation.quantity == "log-probability" else "value"
    ax.set_ylabel(f"|change of the {what}|", fontsize=c.small)
    title = (f"context ablation of {ablation.target_label} at step {ablation.step}: reads {ablation.horizon} "
             f"steps back (solid)" + (f"; saliency horizon {saliency_horizon} (dashed)" if saliency_horizon else "")
             + f"; shaded: under {ablation.tolerance:.0%} of the largest change")
    ax.set_title(_wrap(plain(title), c, c.span(7.0), small=True), fontsize=c.small, loc="left", pad=3)
    ax.tick_params(labelsize=c.small, length=2)
    return fig


def plot_unit_ablation(change: FloatArray, feature: FloatArray | None, title: str,
                       tokens: Sequence[str] | None, *, canvas: Canvas = SCREEN) -> Figure:
    """The loss change per predicted step when a unit is clamped; steps where its feature is present shaded."""
    c = canvas
    steps = len(change)
    heading = _wrap(plain(title), c, small=True)
    fig = new_figure(c.width, (2.0 if c.narrow else 2.4) + c.small_line * heading.count("\n"))
    ax: Axes = fig.add_subplot()
    if feature is not None:
        present = np.asarray(feature, dtype=np.float64)[:steps]
        on = present > present.min()
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(int), [0]])))
        for start, stop in zip(edges[::2], edges[1::2], strict=True):
            ax.axvspan(start - 0.5, stop - 0.5, color=SHADE, linewidth=0)
    x, y, width = _bins(change)
    _bars(ax, x, y, 0.9 * width, _signed(y))
    ax.axhline(0, color="#999999", linewidth=0.6)
    ax.set_xlim(-0.5, steps - 0.5)
    ax.set_ylabel("Δ loss (nats)" + ("" if width == 1 else f"\nsum of {width} steps"), fontsize=c.small)
    ax.set_title(heading, fontsize=c.small, loc="left", pad=3)
    ax.tick_params(labelsize=c.small, length=2)
    _time_ticks(ax, tokens, steps, c)
    return fig
