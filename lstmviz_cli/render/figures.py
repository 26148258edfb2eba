"""Matplotlib figures as pure functions of NumPy data: gate heatmaps, weights, gate statistics.

No pyplot: every function returns a `Figure` that `render.mpl.to_svg` renders byte-stably. Colours come
from `palette` so a gate looks the same in every figure, diagram and table. Which units and steps a
heatmap shows is the page's choice (`page.unitorder`); these functions draw what they are given.
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lstmviz_cli.analysis.records import GateStat
from lstmviz_cli.families import FAMILIES, GATE_SERIES, SERIES_NAMES
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.figuredata import HeatPanel
from lstmviz_cli.render.mpl import SCREEN, Canvas, new_figure
from lstmviz_cli.render.palette import GATE_CMAP, GATE_COLORS, STATE_CMAP
from lstmviz_cli.tracing.records import LayerTrace

LABEL_EVERY_ROW = 64  # panels with at most this many rows label every row
NICE_STRIDES = (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 2500, 5000, 10000, 20000, 25000, 50000)


def cell_state_limit(values: np.ndarray | None) -> float:
    """Symmetric colour limit for c: the 99th percentile of |c| (1.0 when there is nothing finite)."""
    if values is None or not np.isfinite(values).any():
        return 1.0
    return float(np.nanpercentile(np.abs(values), 99)) or 1.0


def panel_norm(panel: HeatPanel, c_limit: float) -> tuple[Normalize, str, str]:
    """The colour scale of one panel: its norm, its colormap and a short name of the scale."""
    if panel.limits is not None:
        low, high = panel.limits
        high = high if high > low else low + 1e-6
        cmap = GATE_CMAP if panel.series in GATE_SERIES else STATE_CMAP
        if panel.series not in GATE_SERIES and low < 0.0 < high:
            return TwoSlopeNorm(0.0, low, high), cmap, panel.scale
        return Normalize(low, high), cmap, panel.scale
    if panel.series in GATE_SERIES:
        return Normalize(0.0, 1.0), GATE_CMAP, panel.scale or "[0, 1]"
    if panel.series == "c":
        return TwoSlopeNorm(0.0, -c_limit, c_limit), STATE_CMAP, panel.scale or "±99th pct of |c|"
    return TwoSlopeNorm(0.0, -1.0, 1.0), STATE_CMAP, panel.scale or "[−1, 1]"


def nice_stride(minimum: float) -> int:
    """The smallest of 1, 2, 5, 10, 20, 25, 50... that is at least `minimum`."""
    return next((n for n in NICE_STRIDES if n >= minimum), NICE_STRIDES[-1])


def time_ticks(columns: int, start: int, width: int, tokens: Sequence[str] | None, *,
               column_width: float = 1.0, canvas: Canvas = SCREEN) -> tuple[list[float], list[str], bool]:
    """Tick positions and labels of a time axis: step numbers at a round stride that fits
    (`column_width`: inches per column), with the token under each where there is one.

    Binned columns (`width` steps each) are labelled at round step numbers too, each placed at its
    own step inside its bin (a fractional column), never at a bin's first step (0, 195, 390 ...).

    The third value says whether the tokens get a row of their own (every column, `token_row`),
    or sit under the step numbers of the labelled columns.
    """
    last = start + (columns - 1) * width
    digits = len(str(last))
    need = (canvas.text_width(digits) + 4 / 72) / max(column_width, 1e-9)  # columns per label
    stride = nice_stride(need * width)  # in steps
    if width > 1:
        first = -(-start // stride) * stride
        # Up to the last bin's first step, which always exists (the last bin may be partly padding).
        steps = list(range(first, last + 1, stride)) or [start]
        # Step s lies in column (s − start) // width, at its own place within that bin.
        return [(s - start + 0.5) / width - 0.5 for s in steps], [str(s) for s in steps], False
    positions: list[float] = [p for p in range(columns) if (start + p) % stride == 0] or [0]
    numbers = [str(start + int(p)) for p in positions]
    if tokens is None:
        return positions, numbers, False
    if token_row_fits(tokens, column_width, canvas):
        return positions, numbers, True
    return positions, [f"{n}\n{visible(tokens[int(p)], 6)}" for n, p in zip(numbers, positions, strict=True)], False


def time_axis(ax: Axes, columns: int, start: int, width: int, tokens: Sequence[str] | None, *,
              column_width: float, canvas: Canvas) -> None:
    """Label a time axis (`time_ticks`): step numbers, and the tokens in their own row under every
    column or under each numbered step; the axis label says what the rows are."""
    positions, labels, token_row = time_ticks(columns, start, width, tokens, column_width=column_width, canvas=canvas)
    limits = None if ax.get_autoscalex_on() else ax.get_xlim()
    ax.set_xticks(positions, labels, fontsize=canvas.small)
    ax.tick_params(axis="x", which="major", length=3, pad=2 + (canvas.small * 1.2 if token_row else 0))
    if token_row and tokens is not None:
        ax.xaxis.remove_overlapping_locs = False  # a token at every step, numbered ones included
        ax.set_xticks(range(columns), [visible(t, 2) for t in tokens[:columns]], minor=True, fontsize=canvas.small,
                      family="DejaVu Sans Mono")
        ax.tick_params(axis="x", which="minor", length=0, pad=2)
    for label in ax.get_xticklabels(which="both"):
        label.set_parse_math(False)
    if limits is not None:  # ticks outside a zoomed view must not widen it
        ax.set_xlim(limits)
    binned = f" (means over bins of {width} steps)" if width > 1 else ""
    where = (" (input tokens in the row above)" if token_row else " · input token below" if tokens is not None and width == 1
             else "")
    ax.set_xlabel(f"time step{binned}{where}", fontsize=canvas.small, labelpad=2)


def token_row_fits(tokens: Sequence[str], column_width: float, canvas: Canvas) -> bool:
    """Whether every column can carry its own token (one or two characters each)."""
    longest = max((len(visible(t, 3)) for t in tokens), default=0)
    return 0 < longest <= 2 and canvas.text_width(longest) + 1.5 / 72 <= column_width


def row_pitch(canvas: Canvas) -> float:
    """Inches per heatmap row when every row carries its unit number (labels a point below `small`)."""
    return (canvas.small - 0.5) * 1.02 / 72


def row_labels(units: Sequence[int], height: float, canvas: Canvas) -> tuple[list[int], list[str]]:
    """Which rows of a panel get their unit number: all when they fit the panel's height, else a
    round stride of them (the page's hover names every row)."""
    rows = len(units)
    pitch = row_pitch(canvas)
    stride = 1 if rows * pitch <= height + 1e-9 else nice_stride(rows * pitch / max(height, 1e-9))
    positions = list(range(0, rows, stride))
    return positions, [str(units[r]) for r in positions]


def heatmap_heights(panels: Sequence[HeatPanel], canvas: Canvas, fixed: float) -> list[float]:
    """Inches per panel: a row per label line up to LABEL_EVERY_ROW rows, so every unit is named;
    larger panels a fixed band. Shrunk together to fit `canvas.max_height`."""
    pitch = row_pitch(canvas)
    heights = []
    for panel in panels:
        rows = len(panel.units)
        heights.append(max(0.35, rows * pitch) if rows <= LABEL_EVERY_ROW else min(3.0, max(2.0, rows * 0.012)))
    if canvas.max_height is not None and sum(heights) + fixed > canvas.max_height:
        scale = max(canvas.max_height - fixed, 0.3 * len(panels)) / sum(heights)
        heights = [max(0.3, h * scale) for h in heights]
    return heights


def plot_gate_heatmaps(
    panels: Sequence[HeatPanel],
    *,
    start: int,
    width: int,
    tokens: Sequence[str] | None,
    mark: int | None = None,
    canvas: Canvas = SCREEN,
) -> Figure:
    """Stacked units × time heatmaps of one layer and direction, each with its colour bar and scale.

    `mark` (a column index) draws a line at the step the cell diagram shows (`--at-step`). Every row
    is labelled with its unit while they fit; the time axis shows step numbers, and the input token
    under each where there is one. Axes are placed in inches from `canvas` (no layout engine):
    each panel's axes carries the label "heat:<k>" so the page can map a pointer to a cell.

    Scales (unless the panel sets `limits`): gates [0, 1] (viridis); g, h and n [−1, 1]; c symmetric
    around 0 at the 99th percentile of |c|; values beyond a scale take the end colours, shown by the
    colour bar's arrows.
    """
    c = canvas
    columns = panels[0].values.shape[1]
    c_limit = cell_state_limit(next((p.values for p in panels if p.series == "c"), None))
    widest = max((len(str(u)) for p in panels for u in p.units), default=1)
    left = c.line + c.text_width(widest) + 0.12
    right = 0.1 + 0.1 + 0.06 + c.text_width(5)
    plot_width = c.width - left - right
    column_width = plot_width / max(columns, 1)
    label_lines = 2 if tokens is not None and width == 1 else 1
    title = c.line + 0.05
    bottom = 0.06 + label_lines * c.small_line + c.line + 0.08
    top = 0.04
    gap = 0.1
    heights = heatmap_heights(panels, c, top + bottom + len(panels) * (title + gap))
    total = top + bottom + sum(heights) + len(panels) * title + (len(panels) - 1) * gap
    fig = new_figure(c.width, total, fixed=True)
    y = total - top
    axes = []
    for row, (panel, height) in enumerate(zip(panels, heights, strict=True)):
        y -= title + height
        ax = fig.add_axes((left / c.width, y / total, plot_width / c.width, height / total), label=f"heat:{row}")
        y -= gap
        axes.append(ax)
        norm, cmap, scale = panel_norm(panel, c_limit)
        rows = len(panel.units)
        image = ax.imshow(
            panel.values, aspect="auto", interpolation="none", cmap=cmap, norm=norm,
            extent=(-0.5, columns - 0.5, rows - 0.5, -0.5),
        )
        name = SERIES_NAMES.get(panel.series, panel.series)
        if panel.source_name and panel.source_name != panel.series:
            name += f" · {panel.source_name}"
        ax.set_title(f"{panel.series} · {name}", loc="left", fontsize=c.font, color=GATE_COLORS.get(panel.series, "#222"),
                     fontweight="bold", pad=3)
        ax.set_title(f"scale {scale}", loc="right", fontsize=c.small, color="#555555", pad=3)
        ticks, names = row_labels(panel.units, height, c)
        ax.set_yticks(ticks, names, fontsize=c.small - 0.5)
        ax.tick_params(axis="y", length=2, pad=1.5)
        ax.set_ylabel("unit", fontsize=c.small, labelpad=2)
        if mark is not None:
            ax.axvline(mark, color="#e11d48", linewidth=1.2, linestyle=(0, (3, 2)))
        if row < len(panels) - 1:
            ax.set_xticks([])
        values = panel.values[np.isfinite(panel.values)]
        over = bool(values.size) and float(values.max()) > float(norm.vmax or 0.0)
        under = bool(values.size) and float(values.min()) < float(norm.vmin or 0.0)
        extend = "both" if over and under else "max" if over else "min" if under else "neither"
        cax = fig.add_axes(((left + plot_width + 0.1) / c.width, y / total + gap / total + 0.0,
                            0.1 / c.width, height / total))
        bar = fig.colorbar(image, cax=cax, extend=extend)
        low, high = float(norm.vmin or 0.0), float(norm.vmax or 0.0)
        middle = 0.0 if low < 0.0 < high else (low + high) / 2
        bar.set_ticks([low, middle, high], labels=[_short(v) for v in (low, middle, high)])
        bar.ax.tick_params(labelsize=c.small, length=2, pad=1.5)
    time_axis(axes[-1], columns, start, width, tokens, column_width=column_width, canvas=c)
    return fig


def _short(value: float) -> str:
    """A colour-bar label: 2 significant digits, no '-0'."""
    text = f"{value:.2g}"
    return "0" if text in ("-0", "0.0") else text.replace("-", "−")


# -- weights -----------------------------------------------------------------------------------

MAX_WEIGHT_ROWS = 128  # larger gate blocks show their first 128 rows and columns (file size)


def gate_blocks(matrix: np.ndarray, gates: Sequence[str], hidden: int) -> tuple[np.ndarray, list[float], list[tuple[int, int]]]:
    """PyTorch's stacked (gates·hidden, n) weight as its gate blocks side by side, one image.

    Each block is cropped to MAX_WEIGHT_ROWS × MAX_WEIGHT_ROWS; NaN columns separate the blocks.
    Returns the image, each block's centre column and each block's full (rows, columns).
    """
    blocks = [matrix[k * hidden : (k + 1) * hidden] for k in range(len(gates))]
    shown = [b[:MAX_WEIGHT_ROWS, :MAX_WEIGHT_ROWS].astype(np.float32) for b in blocks]
    gap = max(1, round(0.04 * sum(b.shape[1] for b in shown)))
    separator = np.full((shown[0].shape[0], gap), np.nan, dtype=np.float32)
    parts, centres, left = [], [], 0
    for k, block in enumerate(shown):
        if k:
            parts.append(separator)
            left += gap
        parts.append(block)
        centres.append(left + (block.shape[1] - 1) / 2)
        left += block.shape[1]
    return np.concatenate(parts, axis=1), centres, [b.shape for b in blocks]


def plot_weights(layer: LayerTrace, *, canvas: Canvas = SCREEN) -> Figure:
    """W_ih and W_hh with their gate blocks side by side (one shared symmetric scale, its colour bar
    beside them), the biases of every gate in one bar chart, and weight histograms per gate.

    One axes per matrix rather than per gate block: the same picture at a third of the drawing
    cost. Blocks larger than MAX_WEIGHT_ROWS show their top-left corner (the title gives the full
    size); histograms and the colour scale use every weight. Laid out by constrained layout.
    """
    c = canvas
    family = FAMILIES.get(layer.family)
    gates = family.gates if family is not None else ("a",)
    hidden = layer.config.hidden_size
    w_ih = layer.weights.get("weight_ih")
    w_hh = layer.weights.get("weight_hh")
    mats = [m for m in (w_ih, w_hh) if m is not None]
    limit = float(np.percentile(np.abs(np.concatenate([m.ravel() for m in mats])), 99)) if mats else 1.0
    limit = limit or 1.0
    image_height = 1.0 if c.narrow else 1.5
    heights = [image_height] * len(mats) + [0.75 if c.narrow else 0.9, 1.0 if c.narrow else 1.2]
    fig = new_figure(c.width, sum(heights) + 0.35 * len(heights) + 0.2)
    grid = fig.add_gridspec(len(heights), 1, height_ratios=heights)
    norm = TwoSlopeNorm(0.0, -limit, limit)
    image = None
    image_axes = []
    row = 0
    for name, matrix, columns in (("ih", w_ih, "input feature"), ("hh", w_hh, "previous h")):
        if matrix is None:
            continue
        ax = fig.add_subplot(grid[row])
        row += 1
        image_axes.append(ax)
        picture, centres, shapes = gate_blocks(np.asarray(matrix), gates, hidden)
        image = ax.imshow(picture, aspect="auto", interpolation="none", cmap=STATE_CMAP, norm=norm)
        ax.set_xticks(centres, list(gates), fontsize=c.font)
        for tick, gate in zip(ax.get_xticklabels(), gates, strict=True):
            tick.set_color(GATE_COLORS.get(gate, "#222"))
            tick.set_fontweight("bold")
        ax.tick_params(axis="x", length=0, pad=2)
        rows, cols = shapes[0]
        cropped = " (first 128 shown)" if max(rows, cols) > MAX_WEIGHT_ROWS else ""
        where = "" if c.narrow else f", columns = {columns}"
        ax.set_title(f"$W_{{{name}}}$: {rows}×{cols} per gate{where}{cropped}", fontsize=c.font, loc="left", pad=3)
        ax.set_ylabel("unit", fontsize=c.small)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=4))
        ax.tick_params(axis="y", labelsize=c.small, length=2)
    if image is not None:
        bar = fig.colorbar(image, ax=image_axes, extend="both", fraction=0.04, pad=0.015, aspect=15)
        bar.set_label("weight", fontsize=c.small)
        bar.ax.tick_params(labelsize=c.small, length=2)
    b_ih = layer.weights.get("bias_ih")
    b_hh = layer.weights.get("bias_hh")
    bias = None if b_ih is None and b_hh is None else (0 if b_ih is None else b_ih) + (0 if b_hh is None else b_hh)
    ax = fig.add_subplot(grid[row])
    gap = max(1, round(0.04 * hidden * len(gates)))
    if bias is not None:
        for k, gate in enumerate(gates):
            values = np.asarray(bias)[k * hidden : (k + 1) * hidden]
            # One filled step outline per gate, not one rectangle artist per unit (hidden 512: 2048).
            edges = k * (hidden + gap) + np.arange(len(values) + 1) - 0.5
            ax.stairs(values, edges, baseline=0.0, fill=True, color=GATE_COLORS.get(gate, "#444"), label=gate)
        ax.axhline(0, color="#888", linewidth=0.5)
    ax.set_xticks([k * (hidden + gap) + (hidden - 1) / 2 for k in range(len(gates))], list(gates), fontsize=c.font)
    for tick, gate in zip(ax.get_xticklabels(), gates, strict=True):
        tick.set_color(GATE_COLORS.get(gate, "#222"))
        tick.set_fontweight("bold")
    ax.tick_params(axis="x", length=0, pad=2)
    ax.set_xlim(-0.5 - gap / 2, len(gates) * (hidden + gap) - gap / 2 - 0.5)
    ax.set_title("bias per unit ($b_{ih} + b_{hh}$)", fontsize=c.font, loc="left", pad=3)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=3))
    ax.tick_params(axis="y", labelsize=c.small, length=2)
    ax = fig.add_subplot(grid[row + 1])
    if mats:
        edges = np.linspace(-limit * 1.5, limit * 1.5, 61)
        for k, gate in enumerate(gates):
            values = np.concatenate([m[k * hidden : (k + 1) * hidden].ravel() for m in mats])
            ax.hist(np.clip(values, edges[0], edges[-1]), bins=list(edges), histtype="step", linewidth=1.2,
                    color=GATE_COLORS.get(gate, "#444"), label=f"{gate} · {SERIES_NAMES.get(gate, gate)}")
        # Above the plot, never over the bars.
        ax.legend(fontsize=c.small, frameon=False, loc="lower left", bbox_to_anchor=(0.0, 1.0), borderaxespad=0.2,
                  handlelength=1.2, ncols=2 if c.narrow else len(gates), columnspacing=1.0)
    ax.set_xlabel("weight ($W_{ih}$ and $W_{hh}$; the end bins hold the values beyond)" if not c.narrow
                  else "weight (end bins: the values beyond)", fontsize=c.small)
    ax.set_ylabel("count", fontsize=c.small)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=3, integer=True))
    ax.tick_params(labelsize=c.small, length=2)
    return fig


# -- gate statistics ---------------------------------------------------------------------------


def plot_gate_stats(stats: Sequence[GateStat], prefixes: Sequence[str], labels: Mapping[str, str], *,
                    canvas: Canvas = SCREEN) -> Figure:
    """Small multiples per layer: the mean ± std of each bounded series (the saturated shares are
    the table's and the saturation section's: not drawn a third time)."""
    c = canvas
    n = max(1, len(prefixes))
    cols = min(n, 2 if c.narrow else 4)
    rows = -(-n // cols)
    panel = min(2.6, (c.width - 0.2) / cols)
    fig = new_figure(c.span(cols * 2.6 + 0.6), rows * (1.35 + c.line * 2) + 0.15)
    axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
    for index in range(rows * cols):
        r, k = divmod(index, cols)
        ax = axes[r, k]
        if index >= n:
            ax.set_visible(False)
            continue
        prefix = prefixes[index]
        # The unbounded cell state (and m) would flatten every gate: it has its own table column.
        mine = [s for s in stats if s.prefix == prefix and s.series not in ("c", "m")]
        names = [s.series for s in mine]
        colours = [GATE_COLORS.get(s, "#444") for s in names]
        ax.bar(names, [s.mean for s in mine], yerr=[s.std for s in mine], color=colours, capsize=2, width=0.7,
               error_kw={"elinewidth": 0.8, "ecolor": "#555"})
        ax.axhline(0, color="#888", linewidth=0.5)
        chars = max(12, int(panel / c.text_width(1, small=False)))
        ax.set_title("\n".join(textwrap.wrap(visible(labels.get(prefix, prefix), 2 * chars), chars)[:2]),
                     fontsize=c.font, loc="left", pad=3)
        if k == 0:
            ax.set_ylabel("mean ± std", fontsize=c.small)
        ax.tick_params(labelsize=c.small, length=2)
        ax.set_ylim(-1.15, 1.15)
    return fig
