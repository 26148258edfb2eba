"""Memory over time, measured three ways: context ablation (the verdict), gradient saliency, forget timescales; the probe."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.families import SERIES_NAMES
from lstmviz_cli.glyphs import display_token
from lstmviz_cli.page import captions
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.figuredata import (
    ContextAblationData,
    FloatArray,
    MemoryProbeData,
    SaliencyData,
    TimescalesData,
)
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


def memory_verdict(analysis: Analysis) -> str:
    """The memory verdict, from the measure it rests on: context ablation when computed, else saliency."""
    ablation = analysis.context_ablation
    sal = analysis.saliency
    if ablation is not None:
        text = (f"Verdict (by context ablation, the measure lstmviz check --min-memory-horizon also uses): the "
                f"prediction at step {ablation.step} reads about {ablation.horizon} steps back. Zeroing the input "
                f"older than that changes its {ablation.quantity} by at most {captions.share(ablation.tolerance)} of "
                f"the largest change ({ablation.reference:.3g}, when every step is zeroed).")
        if sal is not None and sal.horizon != ablation.horizon:
            text += (f" Gradient saliency alone would say {sal.horizon} steps: a gradient can fade with distance "
                     "(or linger) while the output's real dependence does not.")
        return text
    if sal is not None:
        return (f"Verdict (by gradient saliency: no context ablation was run): the last {sal.horizon} of "
                f"{sal.step + 1} steps hold {captions.horizon_share(analysis.thresholds)} of the saliency.")
    return ""


def timescale_reading(analysis: Analysis, labels: dict[str, str]) -> str:
    parts = []
    for t in analysis.timescales:
        median = t.median
        long = int((t.tau >= 16).sum())
        parts.append(f"{labels.get(t.prefix, t.prefix)}: median τ = {median:.3g} steps, {long} of {len(t.tau)} "
                     "units keep their state 16 steps or more")
    return ("Forget timescales (τ = −1/ln of each unit's mean " + ("forget" if analysis.timescales[0].gate == "f"
            else "update") + " gate): " + "; ".join(parts) + ".") if parts else ""


def _three_ways(analysis: Analysis) -> Table:
    """One row per measure of memory: what it says and what it rests on."""
    rows = []
    ablation, sal = analysis.context_ablation, analysis.saliency
    if ablation is not None:
        rows.append(Row((Cell(("context ablation",)), Cell((f"{ablation.horizon} steps",), numeric=True),
                         Cell((f"older input zeroed; the {ablation.quantity} of {ablation.target_label} moves by at "
                               f"most {captions.share(ablation.tolerance)} of its largest change",)),
                         Cell(("yes: verdict and check",)))))
    if sal is not None:
        rows.append(Row((Cell(("gradient saliency",)), Cell((f"{sal.horizon} steps",), numeric=True),
                         Cell((f"the last steps holding {captions.horizon_share(analysis.thresholds)} of ‖∂y/∂x_t‖; a "
                               "gradient, known to fade with distance",)),
                         Cell(("yes" if ablation is None else "no",)))))
    for t in analysis.timescales:
        rows.append(Row((Cell((f"forget timescale · {t.prefix}",)), Cell((f"median {t.median:.3g} steps",),
                         numeric=True), Cell((f"τ = −1/ln(mean {t.gate}) per unit, over every step read",)),
                         Cell(("no: a property of the units, not of one output",)))))
    return Table(("measure", "memory", "what it rests on", "used for the verdict"), tuple(rows),
                 numeric=(False, True, False, False), caption="Memory measured three ways", analysis=True)


def memory_section(ctx: PageContext) -> Section | None:
    """Memory three ways: context ablation (the verdict), gradient saliency, forget timescales; the probe."""
    analysis = ctx.analysis
    ablation = analysis.context_ablation
    if analysis.saliency is None and analysis.memory_probe is None and ablation is None and not analysis.timescales:
        return None
    section_id = ctx.ids.take("memory-over-time")
    th = analysis.thresholds
    labels = {layer.prefix: layer.label for layer in ctx.layers}
    text = " ".join(p for p in (memory_verdict(analysis),
                                saliency_reading(analysis) if analysis.saliency is not None else "",
                                timescale_reading(analysis, labels)) if p)
    definitions = [
        ("context ablation", "the output recomputed with the input older than k steps replaced by zero vectors "
         "(a neutral input: the gates see only their biases and the recurrence), for every k; the horizon is the "
         "smallest k from which the change stays small (Khandelwal et al. 2018)"),
        ("forget timescale τ", "−1 / ln f̄ for a unit whose forget gate is f̄ on average: its state decays like "
         "exp(−t/τ), so τ is how many steps it keeps about a third of what it held (Mahto et al. 2021; a GRU's "
         "update gate z plays the forget gate's role)"),
        ("‖∂y/∂x_t‖", "how much the output y changes per unit change of the input at step t (the embedding "
         "vector for token models); a gradient saliency, computed in one backward pass"),
        ("y", "the log-probability of the predicted class or token (classifiers, language models), or the "
         "predicted value (regression)"),
        ("memory horizon", captions.horizon_definition(th)),
    ]
    figures: list[Block] = []
    if ablation is not None:
        figures.append(FigureSpec(
            id=ctx.ids.take("fig", "context-ablation"), ref=FigureRef("context-ablation"),
            data=ContextAblationData(ablation, analysis.saliency.horizon if analysis.saliency is not None else None),
            description="Context ablation: how much the prediction changes as older input is zeroed.",
            caption="context ablation: change of the prediction against the context kept (older input zeroed)",
            frame="analysis",
        ))
    if analysis.timescales:
        figures.append(FigureSpec(
            id=ctx.ids.take("fig", "timescales"), ref=FigureRef("timescales"),
            data=TimescalesData(tuple(analysis.timescales), labels),
            description="Forget timescales: how many units keep their state for how many steps, per layer.",
            caption="forget timescales per layer: units per timescale bin (τ = −1/ln of the unit's mean forget gate)",
            frame="analysis",
        ))
    sal_figures, highlights, tables = _saliency_blocks(ctx) if analysis.saliency is not None else ([], [], [])
    figures.extend(sal_figures)
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
    notes = [Paragraph((f"{n.reason}",), role="note") for n in analysis.explain_notes if n.method == "context"]
    three = [_three_ways(analysis)] if ablation is not None or analysis.timescales else []
    blocks = (Paragraph((text,), role="reading"), *notes, *three, *figures, *tables, *highlights,
              Definitions(tuple(definitions)))
    return Section(section_id, "Memory over time", blocks, analysis=True)
