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
from matplotlib.ticker import LogFormatter

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
from lstmviz_cli.render.mpl import margins, new_figure
from lstmviz_cli.render.palette import GATE_COLORS

MAX_POINTS = 600  # time steps drawn per curve before aggregation
MAX_LABELS = 40  # token labels on a time axis
MAX_ANNOTATIONS = 24  # tokens written next to trajectory points
RASTER_POINTS = 300  # scatter plots with more points are rasterised (bounded SVG size)
# Quantities that are not a gate get neutral ink: gate hues mean gates everywhere in the report.
NEUTRAL = "#222222"
NEUTRAL_SHADE = "#e3e3e3"
MAX_MARKERS = 200  # trajectory markers per panel (the path itself keeps every step)


def plain(text: str) -> str:
    """User text as literal matplotlib text: `$` would start mathtext (and can fail to parse);
    control characters have no glyph, so they are written as escapes."""
    return display_token(str(text)).replace("$", r"\$")


def _plain_log_labels(ax: Axes) -> None:
    """Log-axis labels as plain numbers ("0.01", "0.3"): mathtext is slow to parse and, on the minor
    ticks of a short range, wider than the fixed margin."""
    ax.yaxis.set_major_formatter(LogFormatter())
    ax.yaxis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.4)))


def _time_labels(tokens: Sequence[str] | None, steps: int) -> list[str] | None:
    """Token labels for a time axis when they fit (at most 8 characters each), else None: step numbers."""
    if tokens is None or steps > MAX_LABELS:
        return None
    return [plain(t)[:8] for t in list(tokens)[:steps]]


def _label_height(labels: list[str] | None) -> float:
    """Inches the time axis' tick labels take (standing up when longer than 2 characters)."""
    longest = max((len(label) for label in labels or []), default=0)
    return 0.15 + 0.055 * longest if longest > 2 else 0.15


def _time_ticks(ax: Axes, tokens: Sequence[str] | None, steps: int) -> None:
    """Token labels on a time axis when they fit, else step numbers; words stand up so they never overlap."""
    labels = _time_labels(tokens, steps)
    if labels is not None:
        rotation = 90 if max((len(label) for label in labels), default=0) > 2 else 0
        ax.set_xticks(range(steps), labels, fontsize=7, rotation=rotation)
    ax.set_xlabel("time step" + (" (input token below)" if labels is not None else ""))


def _aggregate(values: FloatArray, limit: int = MAX_POINTS) -> tuple[FloatArray, FloatArray]:
    """(x, y) with at most `limit` points: the max of each bin keeps peaks visible."""
    n = len(values)
    if n <= limit:
        return np.arange(n, dtype=np.float64), values
    edges = np.linspace(0, n, limit + 1).astype(int)
    y = np.array([values[a:b].max() for a, b in zip(edges[:-1], edges[1:], strict=True)])
    return (edges[:-1] + edges[1:] - 1) / 2, y


def plot_saturation(sats: Sequence[Saturation], thresholds: Thresholds, title: str) -> Figure:
    """Karpathy et al. (2015) saturation plot: one point per unit, one panel per gate of a layer."""
    fig = new_figure(2.6 * len(sats) + 0.4, 3.4, fixed=True)
    margins(fig, left=0.6, right=0.15, top=0.5, bottom=0.5, wspace=0.25)
    axes = fig.subplots(1, len(sats), squeeze=False)[0]
    for ax, sat in zip(axes, sats, strict=True):
        ax.plot([0, 1], [1, 0], color="#999999", linestyle="--", linewidth=0.8)  # the reachable edge
        ax.scatter(sat.frac_low, sat.frac_high, s=12, alpha=0.7, color=GATE_COLORS.get(sat.series, "#444444"),
                   edgecolors="none", rasterized=len(sat.frac_low) > RASTER_POINTS)
        ax.set_xlim(-0.02, 1.02)
        ax.set_ylim(-0.02, 1.02)
        ax.set_aspect("equal")
        ax.set_title(SERIES_NAMES.get(sat.series, sat.series), fontsize=9, color=GATE_COLORS.get(sat.series))
        ax.set_xlabel(f"share of steps < {thresholds.saturation_low:g}", fontsize=8)  # short: fits in print
        ax.tick_params(labelsize=7)
    axes[0].set_ylabel(f"share of steps > {thresholds.saturation_high:g}", fontsize=8)
    fig.suptitle(plain(title), fontsize=9)
    return fig


def plot_saliency(result: SaliencyResult, tokens: Sequence[str] | None, *,
                  horizon_mass: float = Thresholds.horizon_mass) -> Figure:
    """‖∂y/∂x_t‖ over input steps, linear and log scale, with the memory horizon (the fewest last steps
    holding `horizon_mass` of the saliency) shaded."""
    values = np.nan_to_num(np.asarray(result.values, dtype=np.float64))
    peak = values.max() if values.size and values.max() > 0 else 1.0
    x, y = _aggregate(values / peak)
    title = textwrap.wrap(
        plain(f"saliency of the {result.target}; shaded: the {result.horizon} steps holding {share(horizon_mass)} of it"),
        120
    )
    fig = new_figure(7.5, 3.6 + 0.15 * (len(title) - 1), fixed=True)
    margins(fig, left=0.75, right=0.15, top=0.15 + 0.15 * len(title),
            bottom=0.3 + _label_height(_time_labels(tokens, len(values))), hspace=0.12)
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
                 transform=top.transAxes, ha="left", va="center", fontsize=6, color="#666666")
    top.fill_between(x, y, step="mid", color=NEUTRAL, alpha=0.3, linewidth=0)
    top.step(x, y, where="mid", color=NEUTRAL, linewidth=0.9)
    top.set_ylabel("relative ‖∂y/∂x_t‖", fontsize=8)
    top.set_ylim(0, 1.05)
    positive = y[y > 0]
    # Down to the smallest value (whole decades), never below 1e-8: the log panel shows the decay.
    floor = max(1e-8, 10.0 ** np.floor(np.log10(positive.min()))) if len(positive) else 1e-8
    floor = min(floor, 0.1)
    bottom.step(x, np.maximum(y, floor), where="mid", color=NEUTRAL, linewidth=0.9)
    bottom.set_yscale("log")
    _plain_log_labels(bottom)
    bottom.set_ylim(floor, 2)
    bottom.set_ylabel("log scale", fontsize=8)
    _time_ticks(bottom, tokens, len(values))
    top.set_title("\n".join(title), fontsize=8)
    for ax in (top, bottom):
        ax.tick_params(labelsize=7)
    return fig


def plot_memory_probe(probe: MemoryProbe) -> Figure:
    """Share of the final state decided by step 0, against the sequence length."""
    fig = new_figure(5.5, 2.8)
    ax = fig.add_subplot()
    ax.plot(probe.lengths, probe.dependence, marker="o", color=GATE_COLORS.get(probe.state, NEUTRAL), linewidth=1.2)
    ax.set_xscale("log", base=2)
    ax.set_ylim(0, max(1.0, max(probe.dependence) * 1.05))
    ax.set_xlabel("sequence length (key at step 0, sample as filler)", fontsize=8)
    ax.set_ylabel(f"key's share of final {probe.state}", fontsize=8)
    ax.set_title(plain(f"memory-length probe · {probe.prefix}"), fontsize=9)
    ax.grid(alpha=0.3)
    ax.tick_params(labelsize=7)
    return fig


def plot_trajectories(trajs: Sequence[Trajectory], tokens: Sequence[str] | None, title: str) -> Figure:
    """PCA trajectories of c and h side by side: points coloured by time, some tokens written on."""
    fig = new_figure(3.4 * len(trajs) + 0.8, 3.4, fixed=True)
    margins(fig, left=0.6, right=0.2, top=0.5, bottom=0.5, wspace=0.3)
    axes = fig.subplots(1, len(trajs), squeeze=False)[0]
    scatter = None
    for ax, traj in zip(axes, trajs, strict=True):
        coords = traj.coords
        n = len(coords)
        path = np.unique(np.linspace(0, n - 1, min(n, 1500)).round().astype(int))
        ax.plot(coords[path, 0], coords[path, 1], color="#bbbbbb", linewidth=0.6, zorder=1)
        # Markers cost bytes each: at most MAX_MARKERS of them, evenly spread in time.
        keep = np.unique(np.linspace(0, n - 1, min(n, MAX_MARKERS)).round().astype(int))
        scatter = ax.scatter(coords[keep, 0], coords[keep, 1], c=keep, cmap="viridis", s=10, zorder=2, vmin=0,
                             vmax=max(n - 1, 1))
        if tokens is not None:
            marks = np.unique(np.linspace(0, n - 1, min(n, MAX_ANNOTATIONS)).round().astype(int))
            for k in marks:
                if k < len(tokens):
                    ax.annotate(plain(tokens[k]), coords[k], fontsize=6, xytext=(2, 2), textcoords="offset points",
                                color="#333333")
        ax.set_title(
            f"{SERIES_NAMES.get(traj.series, traj.series)} · jumpiness {traj.jumpiness:.2f}", fontsize=9
        )
        ax.set_xlabel(f"PC1 ({100 * traj.explained[0]:.0f}% of variance)", fontsize=8)
        ax.set_ylabel(f"PC2 ({100 * traj.explained[1]:.0f}%)", fontsize=8)
        ax.tick_params(labelsize=7)
    if scatter is not None:
        bar = fig.colorbar(scatter, ax=list(axes), shrink=0.8)
        bar.set_label("time step", fontsize=8)
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(plain(title), fontsize=9)
    return fig


def plot_activity(
    prefix: str, h_range: FloatArray | None, c_peak: FloatArray | None, thresholds: Thresholds
) -> Figure:
    """Per unit: how far h moves (dead units sit under the band) and how large |c| gets."""
    panels: list[tuple[str, FloatArray]] = [(name, v) for name, v in (("h", h_range), ("c", c_peak)) if v is not None]
    fig = new_figure(7.0, 1.6 * len(panels) + 0.5, fixed=True)
    margins(fig, left=0.9, right=0.15, top=0.35, bottom=0.45, hspace=0.25)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, (name, values) in zip(axes, panels, strict=True):
        units = np.arange(len(values))
        limit = thresholds.dead_range if name == "h" else thresholds.cell_max
        bad = values < limit if name == "h" else values > limit
        # Two filled step outlines (within / past the threshold), not one rectangle artist per unit.
        base = 1e-4 if name == "h" else 0.0
        edges = np.append(units, len(values)) - 0.5
        ax.stairs(np.where(bad, base, np.maximum(values, base)), edges, baseline=base, fill=True, color=GATE_COLORS[name])
        if bad.any():
            ax.stairs(np.where(bad, np.maximum(values, base), base), edges, baseline=base, fill=True, color="#D55E00")
        far = name == "c" and limit > 3 * float(values.max(initial=0.0))
        if far:  # a threshold far above every bar would flatten them: say where it is instead
            ax.text(0.99, 0.95, f"threshold {limit:g} is off the scale", transform=ax.transAxes, ha="right",
                    va="top", fontsize=7, color="#D55E00")
        else:
            ax.axhline(limit, color="#D55E00", linestyle="--", linewidth=0.8)
        if name == "h":
            ax.set_ylabel("range of h\n(max − min)", fontsize=8)
            ax.set_yscale("log")
            _plain_log_labels(ax)
            ax.set_ylim(max(1e-4, float(values.min()) * 0.5 if values.min() > 0 else 1e-4), 2.2)
        else:
            ax.set_ylabel("max |c|", fontsize=8)
            ax.set_ylim(0, (float(values.max(initial=0.0)) if far else max(float(values.max()), limit)) * 1.1 or 1.0)
        ax.set_xlim(-0.5, len(values) - 0.5)
        ax.tick_params(labelsize=7)
    axes[-1].set_xlabel("unit", fontsize=8)
    fig.suptitle(plain(f"unit activity · {prefix} (red: past the threshold, dashed)"), fontsize=9)
    return fig


def plot_unit_features(panels: Sequence[UnitPanel], tokens: Sequence[str] | None) -> Figure:
    """Each panel: a unit's activation over time on twin axes with the feature it tracks. One
    figure for all panels (glyph outlines are stored once per SVG)."""
    fig = new_figure(7.5, 1.75 * len(panels) + 0.3)
    axes = fig.subplots(len(panels), 1, squeeze=False)[:, 0]
    for ax, panel in zip(axes, panels, strict=True):
        activation, feature, title = panel.activation, panel.feature, panel.title
        steps = min(len(activation), len(feature), MAX_POINTS)
        x = np.arange(steps)
        ax.step(x, feature[:steps], where="mid", color="#999999", linewidth=0.9)
        ax.fill_between(x, feature[:steps], step="mid", color="#dddddd", linewidth=0)
        ax.set_ylabel("feature", fontsize=8, color="#777777")
        twin = ax.twinx()
        twin.plot(x, activation[:steps], color=NEUTRAL, linewidth=1.0)
        twin.set_ylabel("activation", fontsize=8, color=NEUTRAL)
        _time_ticks(ax, tokens, steps)
        ax.set_xlim(-0.5, steps - 0.5)
        more = f" (first {steps} steps)" if steps < len(activation) else ""
        ax.set_title(plain(title) + more, fontsize=8)
        for a in (ax, twin):
            a.tick_params(labelsize=7)
    return fig
