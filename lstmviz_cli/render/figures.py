"""Matplotlib figures as pure functions of NumPy data: gate heatmaps, weights, gate statistics.

No pyplot: every function returns a `Figure` that `render.mpl.to_svg` renders byte-stably. Colours come
from `palette` so a gate looks the same in every figure, diagram and table. Which units and steps a
heatmap shows is the page's choice (`page.unitorder`); these functions draw what they are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import Normalize, TwoSlopeNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lstmviz_cli.analysis.records import GateStat
from lstmviz_cli.families import FAMILIES, GATE_SERIES, SERIES_NAMES
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.figuredata import HeatPanel
from lstmviz_cli.render.mpl import new_figure
from lstmviz_cli.render.palette import GATE_CMAP, GATE_COLORS, STATE_CMAP
from lstmviz_cli.tracing.records import LayerTrace

TOKEN_TICKS = 120  # label every step with its token up to this many columns


# -- gate heatmaps -----------------------------------------------------------------------------


def cell_state_limit(values: np.ndarray | None) -> float:
    """Symmetric colour limit for c: the 99th percentile of |c| (1.0 when there is nothing finite)."""
    if values is None or not np.isfinite(values).any():
        return 1.0
    return float(np.nanpercentile(np.abs(values), 99)) or 1.0


def _norm(series: str, values: np.ndarray, c_limit: float) -> tuple[Normalize, str, str]:
    if series in GATE_SERIES:
        return Normalize(0.0, 1.0), GATE_CMAP, "gate"
    if series == "c":
        return TwoSlopeNorm(0.0, -c_limit, c_limit), STATE_CMAP, "c"
    return TwoSlopeNorm(0.0, -1.0, 1.0), STATE_CMAP, series


def time_ticks(columns: int, start: int, width: int, tokens: Sequence[str] | None) -> tuple[list[int], list[str]]:
    """Tick positions and labels for the time axis: every token when few, else a readable subset."""
    if width == 1 and tokens is not None and columns <= TOKEN_TICKS:
        return list(range(columns)), [visible(tok, 8) for tok in tokens]
    every = max(1, -(-columns // 24))
    positions = list(range(0, columns, every))
    labels = []
    for p in positions:
        step = start + p * width
        if width == 1 and tokens is not None:
            labels.append(f"{step}\n{visible(tokens[p], 6)}")
        else:
            labels.append(str(step))
    return positions, labels


def plot_gate_heatmaps(
    panels: Sequence[HeatPanel],
    *,
    start: int,
    width: int,
    tokens: Sequence[str] | None,
    mark: int | None = None,
) -> Figure:
    """Stacked units × time heatmaps of one layer and direction with shared, labelled colour scales.

    `mark` (a column index) draws a line at the step the cell diagram shows (`--at-step`).

    Gates share [0, 1] (viridis); g, h and n share [−1, 1]; c is symmetric around 0 at the 99th
    percentile of |c| (a few runaway units would otherwise wash every other unit out to white);
    values beyond it take the end colours, shown by the colour bar's arrows.
    """
    columns = panels[0].values.shape[1]
    c_limit = cell_state_limit(next((p.values for p in panels if p.series == "c"), None))
    heights = [min(2.6, 0.35 + 0.03 * len(p.units)) for p in panels]
    gap, top, bottom = 0.32, 0.3, 0.75  # inches: panel titles, figure top, time-axis labels
    total = sum(heights) + gap * len(panels) + top + bottom
    fig = new_figure(11.0, total, fixed=True)
    grid = fig.add_gridspec(
        len(panels), 2, width_ratios=[1, 0.012], height_ratios=heights, left=0.055, right=0.92,
        top=1 - top / total, bottom=bottom / total, hspace=gap * len(panels) / sum(heights), wspace=0.02,
    )
    axes = []
    for row, panel in enumerate(panels):
        ax = fig.add_subplot(grid[row, 0])
        axes.append(ax)
        norm, cmap, bar_label = _norm(panel.series, panel.values, c_limit)
        image = ax.imshow(
            panel.values, aspect="auto", interpolation="none", cmap=cmap, norm=norm,
            extent=(-0.5, columns - 0.5, len(panel.units) - 0.5, -0.5),
        )
        name = SERIES_NAMES.get(panel.series, panel.series)
        if panel.source_name and panel.source_name != panel.series:
            name += f" · {panel.source_name}"
        ax.set_title(f"{panel.series} · {name}", loc="left", fontsize=9, color=GATE_COLORS.get(panel.series, "#222"),
                     fontweight="bold", pad=3)
        rows = len(panel.units)
        every = max(1, -(-rows // max(1, int(heights[row] * 6))))  # about 6 labels per inch
        ax.set_yticks(range(0, rows, every), [str(panel.units[r]) for r in range(0, rows, every)], fontsize=6)
        ax.set_ylabel("unit", fontsize=7)
        if mark is not None:
            ax.axvline(mark, color="#e11d48", linewidth=1.2, linestyle=(0, (3, 2)))
        if row < len(panels) - 1:
            ax.set_xticks([])
        clipped = panel.series == "c" and bool(np.nanmax(np.abs(panel.values), initial=0.0) > c_limit)
        bar = fig.colorbar(image, cax=fig.add_subplot(grid[row, 1]), extend="both" if clipped else "neither")
        low, high = float(norm.vmin or 0.0), float(norm.vmax or 0.0)
        bar.set_ticks([low, (low + high) / 2, high], labels=[f"{v:.2g}" for v in (low, (low + high) / 2, high)])
        bar.set_label(bar_label, fontsize=6)
        bar.ax.tick_params(labelsize=6)
    positions, labels = time_ticks(columns, start, width, tokens)
    fontsize = 7 if len(positions) <= 60 else 5
    # Words and numbers do not fit side by side: stand them up.
    rotation = 90 if max((len(label) for label in labels), default=0) > 2 and "\n" not in "".join(labels) else 0
    axes[-1].set_xticks(positions, labels, fontsize=fontsize, parse_math=False, rotation=rotation)
    axes[-1].set_xlabel(
        "time step" + (f" (means over bins of {width} steps)" if width > 1 else ""), fontsize=7
    )
    return fig


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


def plot_weights(layer: LayerTrace) -> Figure:
    """W_ih and W_hh with their gate blocks side by side (one shared symmetric scale), the biases
    of every gate in one bar chart, and weight histograms per gate.

    One axes per matrix rather than per gate block: the same picture at a third of the drawing
    cost. Blocks larger than MAX_WEIGHT_ROWS show their top-left corner (the label gives the full
    size); histograms and the colour scale use every weight.
    """
    family = FAMILIES.get(layer.family)
    gates = family.gates if family is not None else ("a",)
    hidden = layer.config.hidden_size
    w_ih = layer.weights.get("weight_ih")
    w_hh = layer.weights.get("weight_hh")
    mats = [m for m in (w_ih, w_hh) if m is not None]
    limit = float(np.percentile(np.abs(np.concatenate([m.ravel() for m in mats])), 99)) if mats else 1.0
    limit = limit or 1.0
    fig = new_figure(11.0, 6.6, fixed=True)
    grid = fig.add_gridspec(4, 1, height_ratios=[2.2, 2.2, 1.0, 1.2], left=0.06, right=0.9, top=0.95,
                            bottom=0.08, hspace=0.62)
    norm = TwoSlopeNorm(0.0, -limit, limit)
    image = None
    for row, (name, matrix, columns) in enumerate((("W_ih", w_ih, "input feature"), ("W_hh", w_hh, "previous h"))):
        if matrix is None:
            continue
        ax = fig.add_subplot(grid[row])
        picture, centres, shapes = gate_blocks(np.asarray(matrix), gates, hidden)
        image = ax.imshow(picture, aspect="auto", interpolation="none", cmap=STATE_CMAP, norm=norm)
        labels = [f"{gate} ({r}×{c})" for gate, (r, c) in zip(gates, shapes, strict=True)]
        ax.set_xticks(centres, labels, fontsize=7)
        for tick, gate in zip(ax.get_xticklabels(), gates, strict=True):
            tick.set_color(GATE_COLORS.get(gate, "#222"))
        cropped = any(max(shape) > MAX_WEIGHT_ROWS for shape in shapes)
        ax.set_title(f"{name}: one block per gate, columns = {columns}" + (" (first 128 shown)" if cropped else ""),
                     fontsize=8, loc="left")
        ax.set_ylabel("unit", fontsize=7)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, nbins=6))
        ax.tick_params(axis="y", labelsize=6)
    if image is not None:
        bar = fig.colorbar(image, cax=fig.add_axes((0.92, 0.5, 0.012, 0.42)))
        bar.set_label(f"weight (clipped at 99th pct |w| = {limit:.2g})", fontsize=6)
        bar.ax.tick_params(labelsize=6)
    b_ih = layer.weights.get("bias_ih")
    b_hh = layer.weights.get("bias_hh")
    bias = None if b_ih is None and b_hh is None else (0 if b_ih is None else b_ih) + (0 if b_hh is None else b_hh)
    ax = fig.add_subplot(grid[2])
    gap = max(1, round(0.04 * hidden * len(gates)))
    if bias is not None:
        for k, gate in enumerate(gates):
            values = np.asarray(bias)[k * hidden : (k + 1) * hidden]
            # One filled step outline per gate, not one rectangle artist per unit (hidden 512: 2048).
            edges = k * (hidden + gap) + np.arange(len(values) + 1) - 0.5
            ax.stairs(values, edges, baseline=0.0, fill=True, color=GATE_COLORS.get(gate, "#444"), label=gate)
        ax.axhline(0, color="#888", linewidth=0.5)
    ax.set_xticks([k * (hidden + gap) + (hidden - 1) / 2 for k in range(len(gates))], list(gates), fontsize=7)
    for tick, gate in zip(ax.get_xticklabels(), gates, strict=True):
        tick.set_color(GATE_COLORS.get(gate, "#222"))
    ax.set_xlim(-0.5 - gap / 2, len(gates) * (hidden + gap) - gap / 2 - 0.5)
    ax.set_title("bias per unit (b_ih + b_hh), one block per gate", fontsize=8, loc="left")
    ax.tick_params(axis="y", labelsize=6)
    ax = fig.add_subplot(grid[3])
    if mats:
        edges = np.linspace(-limit * 1.5, limit * 1.5, 61)
        for k, gate in enumerate(gates):
            values = np.concatenate([m[k * hidden : (k + 1) * hidden].ravel() for m in mats])
            ax.hist(np.clip(values, edges[0], edges[-1]), bins=list(edges), histtype="step", linewidth=1.4,
                    color=GATE_COLORS.get(gate, "#444"), label=f"{gate} · {SERIES_NAMES.get(gate, gate)}")
        ax.legend(fontsize=7, frameon=False, ncols=len(gates), loc="upper left")
        ax.set_ylim(0, ax.get_ylim()[1] * 1.25)
    ax.set_title("weight distribution per gate (W_ih and W_hh)", fontsize=8, loc="left")
    ax.set_xlabel("weight", fontsize=7)
    ax.set_ylabel("count", fontsize=7)
    ax.tick_params(labelsize=6)
    return fig


# -- gate statistics ---------------------------------------------------------------------------


def plot_gate_stats(stats: Sequence[GateStat], prefixes: Sequence[str], labels: Mapping[str, str]) -> Figure:
    """Small multiples per layer: mean ± std of each series, and the saturated fractions of each gate."""
    n = max(1, len(prefixes))
    cols = min(n, 4)
    rows = -(-n // cols)
    fig = new_figure(2.75 * cols, 3.4 * rows, fixed=True)
    width, height = fig.get_size_inches()
    grid = fig.add_gridspec(2 * rows, cols, height_ratios=[1.2, 1.0] * rows, left=0.6 / width, right=1 - 0.1 / width,
                            top=1 - 0.3 / height, bottom=0.3 / height, wspace=0.55, hspace=0.45)
    for index, prefix in enumerate(prefixes):
        r, c = divmod(index, cols)
        # The unbounded cell state (and m) would flatten every gate: it has its own table column.
        mine = [s for s in stats if s.prefix == prefix and s.series not in ("c", "m")]
        names = [s.series for s in mine]
        colours = [GATE_COLORS.get(s, "#444") for s in names]
        ax = fig.add_subplot(grid[2 * r, c])
        ax.bar(names, [s.mean for s in mine], yerr=[s.std for s in mine], color=colours, capsize=2,
               error_kw={"elinewidth": 0.8, "ecolor": "#555"})
        ax.axhline(0, color="#888", linewidth=0.5)
        ax.set_title(visible(labels.get(prefix, prefix), 42), fontsize=8, loc="left")
        ax.set_ylabel("mean ± std", fontsize=7)
        ax.tick_params(labelsize=7)
        gates = [s for s in mine if s.frac_low is not None]
        ax2 = fig.add_subplot(grid[2 * r + 1, c])
        if gates:
            xs = np.arange(len(gates))
            low = [s.frac_low or 0.0 for s in gates]
            high = [s.frac_high or 0.0 for s in gates]
            gate_colours = [GATE_COLORS.get(s.series, "#444") for s in gates]
            ax2.bar(xs, low, color=gate_colours, alpha=0.35, label="< low")
            ax2.bar(xs, high, bottom=low, color=gate_colours, label="> high")
            ax2.set_xticks(xs, [s.series for s in gates])
            ax2.set_ylim(0, 1)
        ax2.set_ylabel("saturated", fontsize=7)
        ax2.tick_params(labelsize=7)
    return fig
