"""The report's figures as a list of unbuilt `FigureItem`s, for `lstmviz figures`.

Built from the report's own figure functions and view resolution (`page.report`); the typed page model
replaces this list with `page.figures()`, so the report and the exported files cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from lstmviz_cli.page import report
from lstmviz_cli.render import diagrams, figures
from lstmviz_cli.render import figures_analysis as fa
from lstmviz_cli.render.paper import FigureItem


# -- the command -----------------------------------------------------------------------------------
def collect_items(run: Any, analysis: Any, view: Any) -> list[FigureItem]:
    """Every figure of the report for this run, as unbuilt items (the report's own figure functions)."""
    return _report_items(run, analysis, view)


def _report_items(run: Any, analysis: Any, view: Any) -> list[FigureItem]:
    """The report's figures and diagrams, from the report's own builders and view resolution.

    The report renders SVG inside its section functions, so the few lines of glue that feed the
    heatmap builder are mirrored here (same helpers, same order); every plot is the report's function.
    """
    trace = run.trace
    rv = report.resolve_view(view, run)
    tokens = report._tokens(run, report._total_steps(trace))
    items: list[FigureItem] = [
        FigureItem(
            "architecture", None, "Architecture: the model's modules along the data path with tensor shapes.",
            lambda: diagrams.architecture_graph(diagrams.read_path(trace.meta.path, trace.modules), trace.modules),
            kind="diagram",
        )
    ]
    items.append(FigureItem(
        "unrolled", None, "The recurrent layers unrolled over the first steps, each cell shaded by its mean "
        "forget (LSTM) or update (GRU) gate, inputs below and outputs above.",
        lambda: report.unrolled_diagram(run, rv, tokens)[0], kind="diagram",
    ))
    for k, layer in enumerate(rv.layers):
        family = layer.family.upper()
        items.append(FigureItem(
            "cell", layer.prefix,
            f"{family} cell of {layer.label} with its gates, sized with this model's dimensions and the mean of each gate.",
            lambda layer=layer, k=k: diagrams.cell_graph(
                layer.config, report._cell_values(layer, analysis, rv, tokens), name=f"cell{k}",
                input_size=layer.input_width),
            kind="diagram",
        ))
        items.append(FigureItem(
            "heatmaps", layer.prefix, f"Units x time heatmaps of every gate and state of {layer.label}.",
            lambda layer=layer: report.layer_heatmap(run, layer, rv, tokens)[0].figure(),
        ))
        if layer.weights:
            items.append(FigureItem(
                "weights", layer.prefix, f"W_ih and W_hh split per gate, biases and weight histograms of {layer.label}.",
                lambda layer=layer: figures.plot_weights(layer),
            ))
    prefixes = [layer.prefix for layer in rv.layers]
    labels = {layer.prefix: layer.label for layer in rv.layers}
    if analysis.gate_stats:
        items.append(FigureItem(
            "gate-stats", None, "Gate statistics per layer: mean, spread and saturated share of each gate.",
            lambda: figures.plot_gate_stats(analysis.gate_stats, prefixes, labels),
        ))
    th = analysis.thresholds
    for prefix in dict.fromkeys(s.prefix for s in analysis.saturation):
        if prefix in labels:
            sats = [s for s in analysis.saturation if s.prefix == prefix]
            items.append(FigureItem(
                "saturation", prefix, f"Gate saturation per unit of {labels[prefix]} (after Karpathy et al. 2015).",
                lambda sats=sats, prefix=prefix: fa.plot_saturation(sats, th, prefix),
            ))
    display = None if analysis.tokens is None else list(tokens or analysis.tokens)
    if analysis.saliency is not None:
        items.append(FigureItem(
            "saliency", None, f"Gradient saliency over input steps ({analysis.saliency.target}).",
            lambda: fa.plot_saliency(analysis.saliency, display),
        ))
    if analysis.memory_probe is not None:
        items.append(FigureItem(
            "memory-probe", None, "Memory-length probe: how long the recurrent stack keeps step 0.",
            lambda: fa.plot_memory_probe(analysis.memory_probe),
        ))
    for prefix in dict.fromkeys(t.prefix for t in analysis.trajectories):
        if prefix in labels:
            trajs = [t for t in analysis.trajectories if t.prefix == prefix]
            items.append(FigureItem(
                "trajectories", prefix, f"States of {labels[prefix]} on their first two principal components.",
                lambda trajs=trajs, prefix=prefix: fa.plot_trajectories(trajs, display, prefix),
            ))
    return items
