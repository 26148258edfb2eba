"""Figures of the analysis sections: pure functions from analysis data to matplotlib Figures.

No pyplot state (figures come from `render.mpl.new_figure`); gate colours from `palette`. Long inputs
are subsampled or aggregated so that a figure's size does not grow with the sequence.
"""

from __future__ import annotations

import textwrap
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from lstmviz_cli.analysis.records import (
    MemoryProbe,
    SaliencyResult,
    Saturation,
    Trajectory,
)
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.families import SERIES_NAMES
from lstmviz_cli.glyphs import display_token
from lstmviz_cli.page.captions import share
from lstmviz_cli.page.figuredata import FloatArray, UnitPanel
from lstmviz_cli.render.figures import time_axis
from lstmviz_cli.render.mpl import SCREEN, Canvas, new_figure
from lstmviz_cli.render.palette import GATE_COLORS

MAX_POINTS = 600  # time steps drawn per curve before aggregation
MAX_LABELS = 40  # token labels on a time axis
MAX_ANNOTATIONS = 24  # tokens written next to trajectory points
RASTER_POINTS = 300  # scatter plots with more points are rasterised (bounded SVG size)
# Quantities that are not a gate get neutral ink: gate hues mean gates everywhere in the report.
NEUTRAL = "#222222"
NEUTRAL_SHADE = "#e3e3e3"
BAD = "#D55E00"  # past a threshold
MAX_MARKERS = 200  # trajectory markers per panel (the path itself keeps every step)


def plain(text: str) -> str:
    """User text as literal matplotlib text: `$` would start mathtext (and can fail to parse);
    control characters have no glyph, so they are written as escapes."""
    return display_token(str(text)).replace("$", r"\$")


def _plain_log_labels(ax: Axes, canvas: Canvas) -> None:
    """Log-axis labels at whole decades only, as plain numbers ("0.01", "1"); minor ticks unlabelled.

    Minor labels of a short range crowd the axis and come out larger than the major ones.
    """
    ax.yaxis.set_major_locator(LogLocator(base=10, numticks=6))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.tick_params(axis="y", which="both", labelsize=canvas.small)


def _time_labels(tokens: Sequence[str] | None, steps: int) -> list[str] | None:
    """Token labels for a time axis when there are few steps (at most MAX_LABELS), else None."""
    if tokens is None or steps > MAX_LABELS:
        return None
    return [plain(t)[:6] for t in list(tokens)[:steps]]


def _time_ticks(ax: Axes, tokens: Sequence[str] | None, steps: int, canvas: Canvas) -> None:
    """Step numbers on a time axis at a round stride that fits, with the input token under each
    labelled step (or a row of tokens) when the sample has tokens and few steps (`figures.time_axis`)."""
    labels = _time_labels(tokens, steps)
    time_axis(ax, steps, 0, 1, labels, column_width=(canvas.width - 1.1) / max(steps, 1), canvas=canvas)


def _aggregate(values: FloatArray, limit: int = MAX_POINTS) -> tuple[FloatArray, FloatArray]:
    """(x, y) with at most `limit` points: the max of each bin keeps peaks visible."""
    n = len(values)
    if n <= limit:
        return np.arange(n, dtype=np.float64), values
    edges = np.linspace(0, n, limit + 1).astype(int)
    y = np.array([values[a:b].max() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    return (edges[:-1] + edges[1:] - 1) / 2, y


def _wrap(text: str, canvas: Canvas, width: float | None = None, *, small: bool = False) -> str:
    """Text wrapped to lines that fit `width` inches (default the canvas) at the title's size."""
    chars = max(16, int((width or canvas.width - 0.1) / canvas.text_width(1, small=small)))
    return "\n".join(textwrap.wrap(text, chars)) or text


def plot_saturation(sats: Sequence[Saturation], thresholds: Thresholds, title: str, *,
                    canvas: Canvas = SCREEN) -> Figure:
    """Karpathy et al. (2015) saturation plot: one point per unit, one panel per gate of a layer."""
    c = canvas
    n = max(1, len(sats))
    cols = min(n, 2 if c.narrow else 4)
    rows = -(-n // cols)
    side = min(2.3, (c.width - 0.6) / cols - 0.25)
    fig = new_figure(c.width if c.narrow else c.span(cols * (side + 0.45) + 0.5),
                     rows * (side + c.line + 0.15) + 2 * c.line + 0.35)
    axes = fig.subplots(rows, cols, squeeze=False)
    for index in range(rows * cols):
        ax = axes[index // cols, index % cols]
        if index >= n:
            ax.set_visible(False)
            continue
        sat = sats[index]
        ax.plot([0, 1], [1, 0], color="#999999", linestyle="--", linewidth=0.8)  # the reachable edge
        ax.scatter(sat.frac_low, sat.frac_high, s=10, alpha=0.7, color=GATE_COLORS.get(sat.series, "#444444"),
                   edgecolors="none", rasterized=len(sat.frac_low) > RASTER_POINTS)
        ax.set_xlim(-0.03, 1.03)
        ax.set_ylim(-0.03, 1.03)
        ax.set_aspect("equal")
        ax.set_xticks([0, 0.5, 1], ["0", "0.5", "1"])
        ax.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
        ax.set_title(SERIES_NAMES.get(sat.series, sat.series), fontsize=c.font, color=GATE_COLORS.get(sat.series),
                     pad=3)
        ax.tick_params(labelsize=c.small, length=2)
    fig.supxlabel(f"share of steps below {thresholds.saturation_low:g} (left-saturated)", fontsize=c.small)
    fig.supylabel(f"share above {thresholds.saturation_high:g}", fontsize=c.small)
    fig.suptitle(plain(title), fontsize=c.font)
    return fig


def plot_saliency(result: SaliencyResult, tokens: Sequence[str] | None, *,
                  horizon_mass: float = Thresholds.horizon_mass, canvas: Canvas = SCREEN) -> Figure:
    """‖∂y/∂x_t‖ over input steps, linear and log scale, with the memory horizon (the fewest last steps
    holding `horizon_mass` of the saliency) shaded."""
    c = canvas
    values = np.nan_to_num(np.asarray(result.values, dtype=np.float64))
    peak = values.max() if values.size and values.max() > 0 else 1.0
    x, y = _aggregate(values / peak)
    title = _wrap(plain(f"saliency of the {result.target}; shaded: the last {result.horizon} steps, which hold "
                        f"{share(horizon_mass)} of it"), c)
    fig = new_figure(c.width, (2.6 if c.narrow else 3.2) + c.line * title.count("\n"))
    top, bottom = fig.subplots(2, 1, sharex=True)
    start = result.step - result.horizon + 1
    for ax in (top, bottom):
        if result.horizon > 0:
            ax.axvspan(start - 0.5, result.step + 0.5, color=NEUTRAL_SHADE, linewidth=0)
        if result.window_start > 0:  # not differentiated (memory budget): no value, not zero
            ax.axvspan(-0.5, result.window_start - 0.5, facecolor="none", edgecolor="#bbbbbb", hatch="///",
                       linewidth=0)
        ax.axvline(result.step, color=NEUTRAL, linewidth=0.8, linestyle=":")
    if result.window_start > 0:
        # Zoom on the window, with a sliver of the hatched steps before it at the left edge.
        span = result.step + 1 - result.window_start
        top.set_xlim(result.window_start - 0.5 - 0.08 * span, result.step + 0.5 + 0.02 * span)
        top.text(0.01, 0.5, f"steps < {result.window_start}:\nnot differentiated\n(memory budget)",
                 transform=top.transAxes, ha="left", va="center", fontsize=c.small, color="#666666")
    else:
        top.set_xlim(-0.5, len(values) - 0.5)
    top.fill_between(x, y, step="mid", color=NEUTRAL, alpha=0.3, linewidth=0)
    top.step(x, y, where="mid", color=NEUTRAL, linewidth=0.9)
    top.set_ylabel("relative\n‖∂y/∂x$_t$‖", fontsize=c.small)
    top.set_ylim(0, 1.05)
    top.set_yticks([0, 0.5, 1], ["0", "0.5", "1"])
    positive = y[y > 0]
    # Down to the smallest value (whole decades), never below 1e-8: the log panel shows the decay.
    floor = max(1e-8, 10.0 ** np.floor(np.log10(positive.min()))) if len(positive) else 1e-8
    floor = min(floor, 0.1)
    bottom.step(x, np.maximum(y, floor), where="mid", color=NEUTRAL, linewidth=0.9)
    bottom.set_yscale("log")
    _plain_log_labels(bottom, c)
    bottom.set_ylim(floor, 2)
    bottom.set_ylabel("log scale", fontsize=c.small)
    _time_ticks(bottom, tokens, len(values), c)
    top.set_title(title, fontsize=c.font, loc="left", pad=3)
    for ax in (top, bottom):
        ax.tick_params(labelsize=c.small, length=2)
    return fig


def plot_memory_probe(probe: MemoryProbe, *, canvas: Canvas = SCREEN) -> Figure:
    """Share of the final state decided by step 0, against the sequence length."""
    c = canvas
    fig = new_figure(c.span(6.0), 2.4 if c.narrow else 2.8)
    ax = fig.add_subplot()
    ax.plot(probe.lengths, probe.dependence, marker="o", color=GATE_COLORS.get(probe.state, NEUTRAL), linewidth=1.2)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_ylim(0, max(1.0, max(probe.dependence) * 1.05))
    ax.set_xlabel("sequence length (key at step 0, sample as filler)", fontsize=c.small)
    ax.set_ylabel(f"key's share of final {probe.state}", fontsize=c.small)
    ax.set_title(_wrap(plain(f"memory-length probe · {probe.prefix}"), c), fontsize=c.font)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=c.small, length=2)
    return fig


def plot_trajectories(trajs: Sequence[Trajectory], tokens: Sequence[str] | None, title: str, *,
                      canvas: Canvas = SCREEN) -> Figure:
    """PCA trajectories of c and h side by side (stacked in a narrow column): points coloured by
    time, some tokens written on."""
    c = canvas
    n = max(1, len(trajs))
    stacked = c.narrow and n > 1
    side = 2.2 if c.narrow else min(3.0, (c.width - 1.4) / n)
    fig = new_figure(c.width if c.narrow else c.span(n * (side + 0.7) + 1.0),
                     (n * (side + 0.55) if stacked else side + 0.75) + c.line + 0.2)
    axes = (fig.subplots(n, 1, squeeze=False)[:, 0] if stacked else fig.subplots(1, n, squeeze=False)[0])
    scatter = None
    for ax, traj in zip(axes, trajs, strict=True):
        coords = traj.coords
        steps = len(coords)
        path = np.unique(np.linspace(0, steps - 1, min(steps, 1500)).round().astype(int))
        ax.plot(coords[path, 0], coords[path, 1], color="#bbbbbb", linewidth=0.6, zorder=1)
        # Markers cost bytes each: at most MAX_MARKERS of them, evenly spread in time.
        keep = np.unique(np.linspace(0, steps - 1, min(steps, MAX_MARKERS)).round().astype(int))
        scatter = ax.scatter(coords[keep, 0], coords[keep, 1], c=keep, cmap="viridis", s=8, zorder=2, vmin=0,
                             vmax=max(steps - 1, 1))
        if tokens is not None:
            count = MAX_ANNOTATIONS // (2 if c.narrow else 1)
            marks = np.unique(np.linspace(0, steps - 1, min(steps, count)).round().astype(int))
            for k in marks:
                if k < len(tokens):
                    ax.annotate(plain(tokens[k]), coords[k], fontsize=c.small - 1, xytext=(2, 2),
                                textcoords="offset points", color="#333333")
        ax.set_title(f"{SERIES_NAMES.get(traj.series, traj.series)} · jumpiness {traj.jumpiness:.2f}",
                     fontsize=c.font, pad=3)
        ax.set_xlabel(f"PC1 ({100 * traj.explained[0]:.0f}% of variance)", fontsize=c.small)
        ax.set_ylabel(f"PC2 ({100 * traj.explained[1]:.0f}%)", fontsize=c.small)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.tick_params(labelsize=c.small, length=2)
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=list(axes), shrink=0.8, aspect=25)
        bar.set_label("time step", fontsize=c.small)
        bar.ax.tick_params(labelsize=c.small, length=2)
    fig.suptitle(plain(title), fontsize=c.font)
    return fig


def plot_activity(
    prefix: str, h_range: FloatArray | None, c_peak: FloatArray | None, thresholds: Thresholds, *,
    unjudged: int | None = None, canvas: Canvas = SCREEN,
) -> Figure:
    """Per unit: how far h moves (dead units sit under the dashed threshold, in red, marked below the
    axis) and how large |c| gets (red past its threshold). `unjudged` (values per unit of a layer too
    short to judge): the bars alone, no threshold and no unit marked."""
    c = canvas
    panels: list[tuple[str, FloatArray]] = [(name, v) for name, v in (("h", h_range), ("c", c_peak)) if v is not None]
    fig = new_figure(c.width, (1.25 if c.narrow else 1.5) * len(panels) + 2 * c.line + 0.3)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, panels, strict=True):
        values = np.nan_to_num(np.asarray(values, dtype=np.float64))
        units = np.arange(len(values))
        limit = thresholds.dead_range if name == "h" else thresholds.cell_max
        bad = values < limit if name == "h" else values > limit
        if unjudged is not None:  # one step has no range: that is no dead unit
            bad = np.zeros(len(values), dtype=bool)
        edges = np.append(units, len(values)) - 0.5
        if name == "h":
            positive = values[values > 0]
            # Whole decades below the smallest range and the threshold: a dead unit is a visible bar.
            low = min(float(positive.min()) if len(positive) else limit, limit) / 4
            base = max(1e-9, 10.0 ** np.floor(np.log10(low)))
        else:
            base = 0.0
        shown = np.maximum(values, base)
        # Two filled step outlines (within / past the threshold), not one rectangle artist per unit.
        ax.stairs(np.where(bad, base, shown), edges, baseline=base, fill=True, color=GATE_COLORS[name])
        if bad.any():
            ax.stairs(np.where(bad, shown, base), edges, baseline=base, fill=True, color=BAD)
            ax.plot(units[bad], np.full(int(bad.sum()), base), linestyle="none", marker="^", markersize=4,
                    color=BAD, clip_on=False, zorder=3)
        # A threshold far above every bar would flatten them: say where it is instead (none when not judged).
        far = name == "c" and (unjudged is not None or limit > 3 * float(values.max(initial=0.0)))
        if unjudged is None and far:
            ax.text(0.99, 0.95, f"threshold {limit:g} is off the scale", transform=ax.transAxes, ha="right",
                    va="top", fontsize=c.small, color=BAD)
        elif unjudged is None:
            ax.axhline(limit, color=BAD, linestyle="--", linewidth=0.8)
        if name == "h":
            ax.set_ylabel("range of h", fontsize=c.small)
            ax.set_yscale("log")
            ax.set_ylim(base, 2.5)
            _plain_log_labels(ax, c)
        else:
            ax.set_ylabel("max |c|", fontsize=c.small)
            ax.set_ylim(0, (float(values.max(initial=0.0)) if far else max(float(values.max()), limit)) * 1.1 or 1.0)
            ax.yaxis.set_major_locator(MaxNLocator(nbins=4))
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, nbins=8 if c.narrow else 16))
        ax.tick_params(labelsize=c.small, length=2)
    axes[-1].set_xlabel("unit", fontsize=c.small)
    dead = "h: range (max − min) over the sample; red ▲: dead, below the dashed threshold"
    if len(panels) > 1:
        dead += "; |c| red past its threshold"
    if unjudged is not None:
        dead = (f"h: range (max − min) over the sample; not judged: {unjudged} value{'s' if unjudged != 1 else ''} "
                f"per unit, fewer than the {thresholds.min_steps} needed")
    fig.suptitle(_wrap(plain(f"unit activity · {prefix}. {dead}"), c, small=True), fontsize=c.small)
    return fig


def plot_unit_features(panels: Sequence[UnitPanel], tokens: Sequence[str] | None, *,
                       canvas: Canvas = SCREEN) -> Figure:
    """Each panel: a unit's activation over time on twin axes with the feature it tracks. One
    figure for all panels (glyph outlines are stored once per SVG)."""
    c = canvas
    fig = new_figure(c.width, (1.35 if c.narrow else 1.5) * len(panels) + 0.4)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for k, (ax, panel) in enumerate(zip(axes, panels, strict=True)):
        activation, feature, title = panel.activation, panel.feature, panel.title
        steps = min(len(activation), len(feature), MAX_POINTS)
        x = np.arange(steps)
        ax.step(x, feature[:steps], where="mid", color="#999999", linewidth=0.9)
        ax.fill_between(x, feature[:steps], step="mid", color="#dddddd", linewidth=0)
        ax.set_ylabel("feature", fontsize=c.small, color="#777777")
        twin = ax.twinx()
        twin.plot(x, activation[:steps], color=NEUTRAL, linewidth=0.9)
        twin.set_ylabel("activation", fontsize=c.small, color=NEUTRAL)
        if k == len(panels) - 1:
            _time_ticks(ax, tokens, steps, c)
        else:
            ax.tick_params(labelbottom=False)
        ax.set_xlim(-0.5, steps - 0.5)
        more = f" (first {steps} steps)" if steps < len(activation) else ""
        ax.set_title(_wrap(plain(title) + more, c), fontsize=c.font, loc="left", pad=3)
        for a in (ax, twin):
            a.yaxis.set_major_locator(MaxNLocator(nbins=3))
            a.tick_params(labelsize=c.small, length=2)
    return fig
