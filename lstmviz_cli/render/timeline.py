"""The timeline's line charts (one measure over checkpoints or epochs, a line per layer and gate) and its terminal table.

A pure function from `page.figuredata.TimelineData` to a matplotlib Figure. Lines of a gate take the
gate's colour (`palette`), so a saturation chart reads like the report's; the layers of one chart
differ by line style and marker. A point without a value (a failed checkpoint, a layer too short to
judge) is a gap in its line, never a zero.
"""

from __future__ import annotations

import math

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator, PercentFormatter
from rich.table import Table
from rich.text import Text

from lstmviz_cli.analysis.timeline import Timeline, lines
from lstmviz_cli.page.figuredata import TimelineData
from lstmviz_cli.render.figures_analysis import NEUTRAL, plain
from lstmviz_cli.render.mpl import SCREEN, Canvas, new_figure
from lstmviz_cli.render.palette import GATE_COLORS

_STYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P")
# Layers of a measure that is not a gate (dead units, |c|) differ in grey level as well as style.
_GREYS = ("#222222", "#6b6b6b", "#9a9a9a", "#444444")
MAX_TICK_LABELS = 24  # checkpoint names written under the axis; more would overlap


def plot_timeline(data: TimelineData, *, canvas: Canvas = SCREEN) -> Figure | None:
    """A line chart of one measure: x the epochs (or checkpoints in order), a line per layer and gate,
    laid out for `canvas` (the page's screen or a paper's column)."""
    if not data.lines:
        return None
    c = canvas
    fig = new_figure(c.span(7.2), 2.7)
    ax = fig.add_subplot(1, 1, 1)
    x = np.asarray(data.x, dtype=np.float64)
    prefixes = list(dict.fromkeys(line.prefix for line in data.lines))
    for line in data.lines:
        k = prefixes.index(line.prefix)
        y = np.array([math.nan if v is None else v for v in line.values], dtype=np.float64)
        colour = GATE_COLORS[line.gate] if line.gate else (_GREYS[k % len(_GREYS)] if len(prefixes) > 1 else NEUTRAL)
        ax.plot(x, y, _STYLES[k % len(_STYLES)], color=colour, marker=_MARKERS[k % len(_MARKERS)], markersize=4,
                linewidth=1.4, label=plain(line.label))
    if data.reference is not None and _near(data.reference[0], data):
        value, label = data.reference
        ax.axhline(value, color="#888888", linestyle=(0, (4, 3)), linewidth=1.0, label=plain(label))
    if data.limits is not None:
        ax.set_ylim(*data.limits)
    elif data.floor is not None:
        ax.set_ylim(bottom=data.floor)
    if data.percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0, decimals=None))
    if data.integer:
        ax.yaxis.set_major_locator(MaxNLocator(integer=True))
        low, high = ax.get_ylim()
        ax.set_ylim(min(low, -0.5), max(high, 1.5))
    if data.ticks is not None:
        step = max(1, math.ceil(len(data.ticks) / MAX_TICK_LABELS))
        shown = list(range(0, len(data.ticks), step))
        longest = max((len(data.ticks[k]) for k in shown), default=0)
        ax.set_xticks([float(x[k]) for k in shown], [plain(data.ticks[k])[:18] for k in shown],
                      rotation=30 if longest > 6 else 0, ha="right" if longest > 6 else "center", fontsize=c.small)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(x) == 1:
        ax.set_xlim(float(x[0]) - 1, float(x[0]) + 1)
    ax.set_xlabel(data.axis, fontsize=c.font)
    ax.set_ylabel(data.ylabel, fontsize=c.font)
    ax.tick_params(labelsize=c.small)
    ax.grid(True, color="#e5e5e5", linewidth=0.6)
    ax.spines[["top", "right"]].set_visible(False)
    count = len(data.lines) + (data.reference is not None)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=c.small, frameon=False,
              ncol=1 if count <= 10 else 2)
    return fig


def _near(value: float, data: TimelineData) -> bool:
    """A reference line is drawn when it lies within the data's range widened by that range (or by its size):
    a threshold far above every point (|c| = 50 over values near 2) would squash the lines flat."""
    if data.limits is not None:
        return data.limits[0] <= value <= data.limits[1]
    values = [v for line in data.lines for v in line.values if v is not None and math.isfinite(v)]
    if not values:
        return False
    low, high = min(values), max(values)
    span = max(high - low, abs(high), abs(low), 1e-12)
    return low - span <= value <= high + span


def timeline_table(timeline: Timeline) -> Table:
    """One screen for the terminal: a row per checkpoint, the mean memory gate per layer and the worst of the rest.

    Read from each point's measures by kind, as the page's charts are; the page (`check --report`) and the
    JSON (`"timeline"`) hold every layer and gate.
    """
    table = Table(title=f"gate statistics by {timeline.axis}", show_lines=False, expand=False)
    table.add_column(timeline.axis)
    memory = lines(timeline, "memory_gate")
    for line in memory:
        table.add_column(f"mean {line.gate} {line.prefix}", justify="right")
    for title in ("most saturated", "dead units", "largest |c|", "|c| growth", "memory horizon"):
        table.add_column(title, justify="right")
    for k, point in enumerate(timeline.points):
        name = str(point.step) if point.step is not None and timeline.axis != "checkpoint" else point.label
        if point.measures is None:
            table.add_row(Text(name), *(["-"] * (len(memory) + 4)), Text(f"failed: {point.error or ''}", style="red"))
            continue
        cells = [_fmt(line.values[k], "{:.3f}") for line in memory]
        valued = [(m, m.value) for m in point.measures if m.value is not None]
        shares = [(value, f"{m.prefix} {m.series}") for m, value in valued if m.measure == "saturation"]
        worst = max(shares, default=None)
        cells.append("-" if worst is None else f"{100 * worst[0]:.1f}%" + (f" ({worst[1]})" if worst[0] > 0 else ""))
        dead = [value for m, value in valued if m.measure == "dead_units"]
        cells.append(f"{sum(dead):.0f}" if dead else "-")
        cells.append(_fmt(max((value for m, value in valued if m.measure == "cell_max"), default=None), "{:.3g}"))
        cells.append(_fmt(max((value for m, value in valued if m.measure == "cell_growth"), default=None), "{:.2f}"))
        cells.append(_fmt(next((value for m, value in valued if m.measure == "memory_horizon"), None), "{:.0f}"))
        table.add_row(Text(name), *cells)
    return table


def _fmt(value: float | None, pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
