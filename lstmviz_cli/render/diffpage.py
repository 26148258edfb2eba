"""The diff page: the weight histograms and saturation bars of two checkpoints, in one self-contained HTML file."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from lstmviz_cli.analysis.diff import DiffResult, GateStatChange, WeightChange
from lstmviz_cli.output import GENERATOR_MARKER
from lstmviz_cli.render.html import template_environment
from lstmviz_cli.render.mpl import new_figure, to_svg
from lstmviz_cli.render.palette import GATE_COLORS
from lstmviz_cli.tracing.records import GATE_SERIES, SERIES_NAMES


# -- figures and page ------------------------------------------------------------------------------------
def plot_weight_distributions(changes: list[WeightChange]) -> Any:
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


def plot_saturation(changes: list[GateStatChange]) -> Any:
    """Share of saturated gate values per layer and gate, before vs after (grouped bars)."""
    gates = [c for c in changes if c.series in GATE_SERIES and c.before_low is not None]
    fig = new_figure(max(3.0, 0.6 * len(gates) + 1.5), 2.6)
    ax = fig.subplots()
    x = np.arange(len(gates))
    before = [c.before_low + c.before_high for c in gates]  # type: ignore[operator]
    after = [c.after_low + c.after_high for c in gates]  # type: ignore[operator]
    colors = [GATE_COLORS.get(c.series, "#444444") for c in gates]
    ax.bar(x - 0.2, before, 0.4, color=colors, alpha=0.35, label="before")
    ax.bar(x + 0.2, after, 0.4, color=colors, label="after")
    ax.set_xticks(x, [f"{c.prefix}\n{c.series}" for c in gates], fontsize=7)
    ax.set_ylim(0, 1)
    ax.set_ylabel("share saturated (<0.1 or >0.9)")
    ax.legend(fontsize=7, frameon=False)
    return fig


def render_diff(result: DiffResult) -> str:
    """The diff as one self-contained HTML page (inline SVG, autoescaped template)."""
    by_layer: dict[str, list[WeightChange]] = {}
    for change in result.weights:
        by_layer.setdefault(change.prefix, []).append(change)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # glyphs missing from DejaVu (emoji) draw as boxes
        weight_svgs = {prefix: to_svg(plot_weight_distributions(changes)) for prefix, changes in by_layer.items()}
        saturation_svg = to_svg(plot_saturation(result.gate_stats)) if result.gate_stats else None
    env = template_environment()
    return env.get_template("diff.html.j2").render(
        r=result, generator=GENERATOR_MARKER, weight_svgs=weight_svgs, saturation_svg=saturation_svg,
        series_names=SERIES_NAMES, gate_series=GATE_SERIES,
    )
