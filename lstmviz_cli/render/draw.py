"""Draws a page's figure from its spec: each kind of figure data to its plot function or diagram builder.

The page (`page.figuredata`) says what a figure shows; this module is the one place that knows which
pure function draws it. Every renderer goes through here: the HTML page (inline SVG, ids scoped
per figure) and `lstmviz figures` (files for papers), so they draw the same figure from the same data.
"""

from __future__ import annotations

from typing import NoReturn

import graphviz
from matplotlib.figure import Figure

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
    TimescalesData,
    TrajectoryData,
    UnitAblationData,
    UnitFeaturesData,
    UnrolledData,
    WeightHistogramsData,
    WeightsData,
)
from lstmviz_cli.page.model import FigureSpec
from lstmviz_cli.render import diagrams, diffplots, figures, figures_analysis, figures_explain
from lstmviz_cli.render.mpl import to_svg
from lstmviz_cli.render.svgids import scope_ids


def plot(data: PlotData) -> Figure | None:
    """The matplotlib Figure of one plot (None: nothing to draw for this data)."""
    if isinstance(data, HeatmapData):
        return figures.plot_gate_heatmaps(data.panels, start=data.start, width=data.width, tokens=data.tokens,
                                          mark=data.mark)
    if isinstance(data, WeightsData):
        return figures.plot_weights(data.layer)
    if isinstance(data, GateStatsData):
        return figures.plot_gate_stats(data.stats, data.prefixes, data.labels)
    if isinstance(data, SaturationData):
        return figures_analysis.plot_saturation(data.saturation, data.thresholds, data.title)
    if isinstance(data, SaliencyData):
        return figures_analysis.plot_saliency(data.saliency, data.tokens, horizon_mass=data.horizon_mass)
    if isinstance(data, MemoryProbeData):
        return figures_analysis.plot_memory_probe(data.probe)
    if isinstance(data, TrajectoryData):
        return figures_analysis.plot_trajectories(data.trajectories, data.tokens, data.title)
    if isinstance(data, ActivityData):
        return figures_analysis.plot_activity(data.prefix, data.h_range, data.c_peak, data.thresholds)
    if isinstance(data, UnitFeaturesData):
        return figures_analysis.plot_unit_features(data.panels, data.tokens)
    if isinstance(data, WeightHistogramsData):
        return diffplots.plot_weight_distributions(data.changes)
    if isinstance(data, SaturationChangeData):
        return diffplots.plot_saturation(data.changes, data.thresholds)
    if isinstance(data, AttributionData):
        return figures_explain.plot_attribution(data.panels, data.tokens, data.step)
    if isinstance(data, TimescalesData):
        return figures_explain.plot_timescales(data.layers, data.labels)
    if isinstance(data, ContextAblationData):
        return figures_explain.plot_context_ablation(data.ablation, data.saliency_horizon)
    if isinstance(data, UnitAblationData):
        return figures_explain.plot_unit_ablation(data.change, data.feature, data.title, data.tokens)
    _unknown(data)


def diagram(data: DiagramData) -> graphviz.Digraph:
    """The Graphviz graph of one diagram."""
    if isinstance(data, ArchitectureData):
        return diagrams.architecture_graph(data.path, data.modules)
    if isinstance(data, CellData):
        return diagrams.cell_graph(data.config, data.values, name=data.name, input_size=data.input_size)
    if isinstance(data, UnrolledData):
        return diagrams.unrolled_graph(data.rows, data.window, data.total, data.inputs, data.outputs,
                                       data.shade_name)
    _unknown(data)


def _unknown(data: NoReturn) -> NoReturn:
    """Every kind of figure data has its function above (mypy checks that this is unreachable)."""
    raise TypeError(f"no drawing function for {type(data).__name__}")


def figure_svg(spec: FigureSpec) -> str:
    """The figure as inline SVG, its ids its own (`render.svgids`); "" when there is nothing to draw."""
    data = spec.data
    if isinstance(data, ArchitectureData | CellData | UnrolledData):
        text = diagrams.to_svg(diagram(data))
    else:
        fig = plot(data)
        if fig is None:
            return ""
        text = to_svg(fig)
    return scope_ids(text, spec.id)
