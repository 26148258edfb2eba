"""Draws a page's figure from its spec: each kind of figure data to its plot function or diagram builder.

The page (`page.figuredata`) says what a figure shows; this module is the one place that knows which
pure function draws it. Every renderer goes through here: the HTML page (inline SVG, ids scoped
per figure) and `lstmviz figures` (files for papers), so they draw the same figure from the same data.
"""

from __future__ import annotations

import base64
import html
from typing import NoReturn

import graphviz
import numpy as np
from matplotlib.figure import Figure

from lstmviz_cli.families import SERIES_NAMES
from lstmviz_cli.glyphs import visible
from lstmviz_cli.output import compact_json
from lstmviz_cli.page.figuredata import (
    ActivityData,
    ArchitectureData,
    AttributionData,
    CellData,
    ContextAblationData,
    DiagramData,
    GateStatsData,
    HeatmapData,
    MemoryProbeData,
    PlotData,
    SaliencyData,
    SaturationChangeData,
    SaturationData,
    TimelineData,
    TimescalesData,
    TrajectoryData,
    UnitAblationData,
    UnitFeaturesData,
    UnrolledData,
    WeightHistogramsData,
    WeightsData,
)
from lstmviz_cli.page.model import FigureSpec
from lstmviz_cli.render import (
    diagrams,
    diffplots,
    figures,
    figures_analysis,
    figures_explain,
    timeline,
)
from lstmviz_cli.render.mpl import SCREEN, Canvas, to_svg
from lstmviz_cli.render.svgids import scope_ids


def plot(data: PlotData, canvas: Canvas = SCREEN) -> Figure | None:
    """The matplotlib Figure of one plot laid out for `canvas` (None: nothing to draw for this data)."""
    if isinstance(data, HeatmapData):
        return figures.plot_gate_heatmaps(data.panels, start=data.start, width=data.width, tokens=data.tokens,
                                          mark=data.mark, canvas=canvas)
    if isinstance(data, WeightsData):
        return figures.plot_weights(data.layer, canvas=canvas)
    if isinstance(data, GateStatsData):
        return figures.plot_gate_stats(data.stats, data.prefixes, data.labels, canvas=canvas)
    if isinstance(data, SaturationData):
        return figures_analysis.plot_saturation(data.saturation, data.thresholds, data.title, canvas=canvas)
    if isinstance(data, SaliencyData):
        return figures_analysis.plot_saliency(data.saliency, data.tokens, horizon_mass=data.horizon_mass,
                                              canvas=canvas)
    if isinstance(data, MemoryProbeData):
        return figures_analysis.plot_memory_probe(data.probe, canvas=canvas)
    if isinstance(data, TrajectoryData):
        return figures_analysis.plot_trajectories(data.trajectories, data.tokens, data.title, canvas=canvas)
    if isinstance(data, ActivityData):
        return figures_analysis.plot_activity(data.prefix, data.h_range, data.c_peak, data.thresholds,
                                              unjudged=data.unjudged, canvas=canvas)
    if isinstance(data, UnitFeaturesData):
        return figures_analysis.plot_unit_features(data.panels, data.tokens, canvas=canvas)
    if isinstance(data, WeightHistogramsData):
        return diffplots.plot_weight_distributions(data.changes, canvas=canvas)
    if isinstance(data, SaturationChangeData):
        return diffplots.plot_saturation(data.changes, data.thresholds, canvas=canvas)
    if isinstance(data, TimelineData):
        return timeline.plot_timeline(data, canvas=canvas)
    if isinstance(data, AttributionData):
        return figures_explain.plot_attribution(data.panels, data.tokens, data.step, canvas=canvas)
    if isinstance(data, TimescalesData):
        return figures_explain.plot_timescales(data.layers, data.labels, canvas=canvas)
    if isinstance(data, ContextAblationData):
        return figures_explain.plot_context_ablation(data.ablation, data.saliency_horizon, canvas=canvas)
    if isinstance(data, UnitAblationData):
        return figures_explain.plot_unit_ablation(data.change, data.feature, data.title, data.tokens, canvas=canvas)
    _unknown(data)


def diagram(data: DiagramData, canvas: Canvas | None = None) -> graphviz.Digraph:
    """The Graphviz graph of one diagram: at the page's size, or laid out for a paper's `canvas`
    (its font size; a narrow column stacks the cell and the architecture top to bottom and draws as
    many unrolled steps as fit)."""
    font = diagrams.SCREEN_FONT if canvas is None else canvas.font
    narrow = canvas is not None and canvas.narrow
    if isinstance(data, ArchitectureData):
        return diagrams.architecture_graph(data.path, data.modules, font=font, narrow=narrow)
    if isinstance(data, CellData):
        return diagrams.cell_graph(data.config, data.values, name=data.name, input_size=data.input_size, font=font,
                                   narrow=narrow)
    if isinstance(data, UnrolledData):
        return diagrams.unrolled_graph(data.rows, data.window, data.total, data.inputs, data.outputs,
                                       data.shade_name, font=font,
                                       max_width=None if canvas is None else canvas.width, legend=canvas is not None)
    _unknown(data)


def _unknown(data: NoReturn) -> NoReturn:
    """Every kind of figure data has its function above (mypy checks that this is unreachable)."""
    raise TypeError(f"no drawing function for {type(data).__name__}")


def figure_svg(spec: FigureSpec) -> str:
    """The figure as inline SVG, its ids its own (`render.svgids`); "" when there is nothing to draw.

    A heatmap carries the values it draws (`hover_payload`), so the page can name the unit, step,
    token and value under the pointer.
    """
    data = spec.data
    if isinstance(data, ArchitectureData | CellData | UnrolledData):
        text = diagrams.to_svg(diagram(data))
    else:
        fig = plot(data)
        if fig is None:
            return ""
        text = to_svg(fig)
        if isinstance(data, HeatmapData):
            payload = html.escape(compact_json(hover_payload(fig, data)))
            text = text.replace("<svg ", f'<svg data-heat="{payload}" ', 1)
    return scope_ids(text, spec.id)


HOVER_FLOAT32_LIMIT = 250_000  # values per figure kept as float32; more are quantised to 16 bits per value


def hover_payload(fig: Figure, data: HeatmapData) -> dict[str, object]:
    """What the page's script needs to read a heatmap under the pointer: each panel's box (SVG
    points from the top left, after layout), its units and its values (base64, row-major).

    Values are float32 ("f4"); a figure with more than HOVER_FLOAT32_LIMIT values stores each as
    16 bits between the panel's finite min and max ("u2", 65535 = NaN), and the tooltip says "≈".
    """
    width, height = (float(v) * 72 for v in fig.get_size_inches())
    boxes = {str(ax.get_label()): ax.get_position() for ax in fig.axes if str(ax.get_label()).startswith("heat:")}
    total = sum(panel.values.size for panel in data.panels)
    panels = []
    for k, panel in enumerate(data.panels):
        box = boxes.get(f"heat:{k}")
        if box is None:
            continue
        values = np.asarray(panel.values, dtype=np.float32)
        entry: dict[str, object] = {
            "s": panel.series, "name": SERIES_NAMES.get(panel.series, panel.series), "units": [int(u) for u in panel.units],
            "box": [round(box.x0 * width, 2), round((1 - box.y1) * height, 2), round(box.x1 * width, 2),
                    round((1 - box.y0) * height, 2)],
            "cols": int(values.shape[1]),
        }
        if total <= HOVER_FLOAT32_LIMIT:
            entry["f4"] = base64.b64encode(values.astype("<f4").tobytes()).decode("ascii")
        else:
            finite = values[np.isfinite(values)]
            low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
            span = high - low or 1.0
            levels = np.where(np.isfinite(values), np.round((np.nan_to_num(values) - low) / span * 65534), 65535)
            entry["u2"] = base64.b64encode(levels.astype("<u2").tobytes()).decode("ascii")
            entry["lo"], entry["hi"] = low, high
        panels.append(entry)
    return {"w": round(width, 2), "h": round(height, 2), "start": data.start, "bin": data.width,
            "tokens": None if data.tokens is None else [visible(t, 12) for t in data.tokens],
            "label": data.label, "panels": panels}
