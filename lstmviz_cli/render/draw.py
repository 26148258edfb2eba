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
    CellData,
    DiagramData,
    GateStatsData,
    HeatmapData,
    MemoryProbeData,
    PlotData,
    SaliencyData,
    SaturationChangeData,
    SaturationData,
    TrajectoryData,
    UnitFeaturesData,
    UnrolledData,
    WeightHistogramsData,
    WeightsData,
)
from lstmviz_cli.page.model import FigureSpec
from lstmviz_cli.render import diagrams, diffplots, figures, figures_analysis
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
        return figures_analysis.plot_activity(data.prefix, data.h_range, data.c_peak, data.thresholds, canvas=canvas)
    if isinstance(data, UnitFeaturesData):
        return figures_analysis.plot_unit_features(data.panels, data.tokens, canvas=canvas)
    if isinstance(data, WeightHistogramsData):
        return diffplots.plot_weight_distributions(data.changes, canvas=canvas)
    if isinstance(data, SaturationChangeData):
        return diffplots.plot_saturation(data.changes, data.thresholds, canvas=canvas)
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
                                       max_width=None if canvas is None else canvas.width)
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
