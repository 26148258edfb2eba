"""Memory over time: gradient saliency over input steps, the memory horizon, gradient norms, the probe."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.families import SERIES_NAMES
from lstmviz_cli.glyphs import display_token
from lstmviz_cli.page import captions
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import FloatArray, MemoryProbeData, SaliencyData
from lstmviz_cli.page.highlight import MAX_TOKENS, highlight
from lstmviz_cli.page.model import (
    Block,
    Cell,
    Definitions,
    FigureRef,
    FigureSpec,
    Paragraph,
    Row,
    Section,
    Table,
)
from lstmviz_cli.page.numbers import percent

MAX_PARAMETERS = 20  # rows of the per-parameter gradient norms


def saliency_reading(analysis: Analysis) -> str:
    sal = analysis.saliency
    assert sal is not None
    values = np.nan_to_num(np.asarray(sal.values[: sal.step + 1], dtype=np.float64))
    total = values.sum()
    if total <= 0:
        return f"The {sal.target} has zero gradient with respect to every input step."
    tokens = None if analysis.tokens is None else [display_token(t) for t in analysis.tokens]
    top = np.argsort(-values, kind="stable")[:3]

    def name(t: int) -> str:
        return f"step {t}" + (f" ({tokens[t]!r})" if tokens is not None and t < len(tokens) else "")

    parts = [
        f"The gradient of the {sal.target} is largest at "
        + ", ".join(f"{name(int(t))}: {percent(values[t] / total)}" for t in top) + " of the total.",
        f"The last {sal.horizon} of {sal.step + 1} steps hold {captions.horizon_share(analysis.thresholds)} of it "
        "(the effective memory horizon).",
    ]
    if sal.window_start > 0:
        parts.append(
            f"Only steps {sal.window_start}–{sal.step} were differentiated: all {sal.step + 1} would not fit "
            "the memory budget, so earlier steps have no value (exact for the steps shown)."
        )
    rest = values[2:].mean() if len(values) > 2 else 0.0
    if sal.window_start == 0 and rest > 0 and values[:2].mean() >= 1.5 * rest:
        # The long-memory case (e.g. digitsum, where the answer lives in the first two steps).
        parts.append(f"The first two steps stand out: they average {values[:2].mean() / rest:.1f}× the later steps.")
    return " ".join(parts)


def probe_reading(analysis: Analysis) -> str:
    probe = analysis.memory_probe
    assert probe is not None
    dep = probe.dependence
    half = next((n for n, d in zip(probe.lengths, dep, strict=True) if d < dep[0] / 2), None)
    text = (
        f" Memory-length probe on {probe.prefix}: the key at step 0 decides {percent(dep[0])} of the final "
        f"{probe.state} at length {probe.lengths[0]} and {percent(dep[-1])} at length {probe.lengths[-1]}; "
    )
    return text + (f"its share halves by length {half}." if half is not None
                   else "it never drops below half within the lengths tried.")


def saliency_titles(values: FloatArray, tokens: Sequence[str]) -> list[str]:
    """Each token's tooltip: its step, the saliency value and its share of the total (over every step of
    `values`) and of the peak."""
    total = float(values.sum()) or 1.0
    peak = float(values.max()) if values.size and values.max() > 0 else 1.0
    return [f"step {t} {display_token(token)!r}: ‖∂y/∂x‖ = {float(values[t]):.3g}, {percent(float(values[t]) / total)} "
            f"of the total, {float(values[t]) / peak:.2g} of the peak" for t, token in enumerate(tokens)]


def _saliency_blocks(ctx: PageContext) -> tuple[list[Block], list[Block], list[Block]]:
    """The saliency figure, the sample coloured by saliency, and the gradient-norm tables."""
    analysis = ctx.analysis
    sal = analysis.saliency
    assert sal is not None
    figures: list[Block] = [FigureSpec(
        id=ctx.ids.take("fig", "saliency"), ref=FigureRef("saliency"),
        data=SaliencyData(sal, ctx.display_tokens(), analysis.thresholds.horizon_mass),
        description=f"Gradient saliency over input steps ({sal.target}).",
        caption=f"saliency over input steps ({sal.target}), linear and log scale", frame="analysis",
    )]
    highlights: list[Block] = []
    if analysis.tokens is not None:
        separator = "" if ctx.run.sample.text is not None else " "
        values = np.nan_to_num(np.asarray(sal.values, dtype=np.float64))
        peak = values.max() if values.max() > 0 else 1.0
        positive = values[values > 0]
        # Log-scaled over the range the values really span (1 to 8 decades), so that both a
        # decay over many orders of magnitude and a two-fold difference stay visible.
        decades = float(np.clip(np.log10(peak / positive.min()), 1.0, 8.0)) if len(positive) else 1.0
        shade = np.clip(1 + np.log10(np.maximum(values / peak, 1e-300)) / decades, 0, 1)
        n = min(len(analysis.tokens), len(shade), MAX_TOKENS)
        highlights.append(highlight(
            None, f"the sample coloured by saliency (log scale: white ≤ {10 ** -decades:.0e} of the peak, darkest = peak)",
            analysis.tokens[:n], shade[:n], saliency_titles(values, analysis.tokens[:n]),
            scale="sequential", separator=separator,
        ))
    tables: list[Block] = []
    if sal.gate_norms:
        gate_names = list(dict.fromkeys(g for gates in sal.gate_norms.values() for g in gates))
        tables.append(Table(
            ("layer", *[f"{g} ({SERIES_NAMES.get(g, g)})" for g in gate_names]),
            tuple(Row((Cell((prefix,)), *[Cell((f"{gates[g]:.3g}" if g in gates else "–",)) for g in gate_names]))
                  for prefix, gates in sal.gate_norms.items()),
            caption="Gradient norm of y reaching each gate's weights and biases", analysis=True,
        ))
    norms = sorted(sal.param_norms.items(), key=lambda kv: (-kv[1], kv[0]))[:MAX_PARAMETERS]
    if norms:
        tables.append(Table(
            ("parameter", "‖∂y/∂θ‖"), tuple(Row((Cell((name,)), Cell((f"{value:.3g}",)))) for name, value in norms),
            caption="Gradient norm of y per parameter (largest first)", analysis=True,
        ))
    return figures, highlights, tables


def memory_section(ctx: PageContext) -> Section | None:
    """Gradient saliency over input steps, the horizon, parameter gradient norms, and the probe."""
    analysis = ctx.analysis
    if analysis.saliency is None and analysis.memory_probe is None:
        return None
    section_id = ctx.ids.take("memory-over-time")
    th = analysis.thresholds
    text = saliency_reading(analysis) if analysis.saliency is not None else ""
    definitions = [
        ("‖∂y/∂x_t‖", "how much the output y changes per unit change of the input at step t (the embedding "
         "vector for token models); a gradient saliency, computed in one backward pass"),
        ("y", "the log-probability of the predicted class or token (classifiers, language models), or the "
         "predicted value (regression)"),
        ("memory horizon", captions.horizon_definition(th)),
    ]
    figures, highlights, tables = _saliency_blocks(ctx) if analysis.saliency is not None else ([], [], [])
    probe = analysis.memory_probe
    if probe is not None:
        text = (text + probe_reading(analysis)).strip()
        definitions.append(
            ("key's share", f"spread of the final {probe.state} across up to 8 different step-0 keys "
             "divided by its overall size (1: the key decides everything, 0: forgotten)")
        )
        figures.append(FigureSpec(
            id=ctx.ids.take("fig", "memory-probe"), ref=FigureRef("memory-probe"), data=MemoryProbeData(probe),
            description="Memory-length probe: how long the recurrent stack keeps step 0.",
            caption="memory-length probe: how long the stack keeps step 0", frame="analysis",
        ))
    blocks = (Paragraph((text,), role="reading"), *figures, *tables, *highlights, Definitions(tuple(definitions)))
    return Section(section_id, "Memory over time", blocks, analysis=True)
