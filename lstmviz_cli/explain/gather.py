"""The evidence `lstmviz report` gathers beyond the trace's own numbers (issue 18), within budgets.

`gather_evidence(run, analysis, options, context)` takes the analysis of the trace (with its
saliency) and adds, each with a time or memory bound and a note when skipped:

=========================  =========  ================================================================
what                       default    bound
=========================  =========  ================================================================
corpus pooling             --corpus   bounded memory whatever the corpus (`explain.corpus`)
forget timescales          always     NumPy over the trace (or the corpus's pooled means)
context ablation           always     at most CONTEXT_POINTS context lengths (in batches) and
                                      CONTEXT_STEP_BUDGET steps in all: fewer lengths on long inputs,
                                      skipped with a note when MIN_CONTEXT_POINTS do not fit
LRP                        always     O(T): one backward sweep over the trace
contextual decomposition   short      O(T^2): automatic when its work is under CD_AUTO_WORK, else
                                      skipped with a note (`--attribution cd` runs it up to 1 GiB)
unit p-values              always     the first `significance_steps` steps (about half a second)
untrained control          always     one trace of an untrained copy over the same steps
unit ablation              top 3      the top-ranked units, all in one stepped run (one batch row
                                      each), inputs up to ABLATE_MAX_STEPS steps; `--ablate` always
=========================  =========  ================================================================

A method that cannot run on this model is a note (`MethodNote`), never an error: the rest of the
report stands. What the user asked for by name (`--ablate`, `--attribution cd`) fails loudly
when it is impossible, with one line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
from torch import nn

from lstmviz_cli.analysis.evidence import (
    Attribution,
    ContextAblation,
    MethodNote,
    UnitAblation,
    UnitCorrelation,
    UnitSpec,
)
from lstmviz_cli.analysis.findings import diagnose, unjudged_note
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.pooled import Pooled, pooled_trajectories, sample_excerpts
from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.analysis.units import UNIT_SERIES
from lstmviz_cli.errors import ConservationError, ExplainError, InputError, first_line
from lstmviz_cli.explain.attribution import METHOD_NAMES
from lstmviz_cli.explain.context import context_ablation
from lstmviz_cli.explain.contextual import contextual_decomposition
from lstmviz_cli.explain.control import control_correlations, window_control
from lstmviz_cli.explain.corpus import Progress, reduce_corpus
from lstmviz_cli.explain.intervention import ablate_variants, feature_clamp, parse_unit_spec
from lstmviz_cli.explain.lrp import layerwise_relevance
from lstmviz_cli.explain.significance import (
    PERMUTATION_SEED,
    SIGNIFICANCE_LEVEL,
    evidence_for_units,
    significance_steps,
    unit_significance,
)
from lstmviz_cli.explain.timescales import forget_timescales, layer_timescales
from lstmviz_cli.loading.corpus import open_corpus
from lstmviz_cli.loading.modules import LAYER_TYPES
from lstmviz_cli.tracing.records import Run

# Contextual decomposition costs about (steps^2 / 2) x gate rows x layers x directions float
# operations on decomposed arrays (about 0.2 us each in NumPy): above this much work it is not run
# by default (the sample char model's 393 steps are 59 million: 12 s).
CD_AUTO_WORK = 3e6
CONTEXT_POINTS = 64  # context lengths evaluated by default (every one up to it, geometric beyond)
CONTEXT_STEP_BUDGET = 200_000  # steps run in all by the context ablation (points x steps)
MIN_CONTEXT_POINTS = 16  # fewer do not draw a curve: above 12,500 steps the ablation is not run
ABLATE_MAX_STEPS = 5000  # the default causal checks step the ablated layer one step at a time
METHODS = ("lrp", "cd")


@dataclass(frozen=True)
class ModelContext:
    """How the model is run for the explanations: batch element 0's valid steps, its layout and output.

    values: (1, steps) token ids or (1, steps, features); step: the output step explained (None:
    the last / no time axis); quantity_task: the task that picks the watched quantity ("regression"
    watches the value, else a log-probability) and the loss ("char-lm": next-token).
    """

    model: nn.Module | None
    values: np.ndarray
    batch_first: bool
    step: int | None
    task: str | None
    output_labels: Sequence[str]
    has_prediction: bool


def parse_attribution(text: str) -> tuple[str, ...] | None:
    """--attribution: "auto" -> None (LRP, CD when cheap), "none" -> (), "cd,lrp" -> ("lrp", "cd")."""
    words = [w.strip().lower() for w in re.split(r"[,\s]+", text) if w.strip()]
    if words == ["auto"]:
        return None
    if words == ["none"]:
        return ()
    bad = [w for w in words if w not in METHODS]
    if bad or not words:
        raise InputError(f"--attribution {text!r}: give auto, none, or a list of {', '.join(METHODS)}")
    return tuple(m for m in METHODS if m in words)


def gather_evidence(run: Run, analysis: Analysis, options: AnalysisOptions, ctx: ModelContext, *,
                    progress: Progress | None = None) -> Analysis:
    """`analysis` with the issue-18 evidence added (module docstring); `run` and `analysis` unchanged."""
    notes: list[MethodNote] = []
    pooled = None
    if options.corpus is not None:
        analysis, pooled = _pool_corpus(run, analysis, options, progress)
    else:
        tokens = _token_ids(run)
        vocab = run.loaded.info.vocab
        timescales = forget_timescales(run.trace)
        excerpts = []
        if tokens is not None:
            excerpts = sample_excerpts(run.trace, tokens, lambda i: vocab[i] if vocab and 0 <= i < len(vocab) else str(i))
        analysis = replace(analysis, timescales=timescales, excerpts=excerpts)
    analysis = _test_units(run, analysis, options, ctx, notes, pooled)
    context = None
    attributions: list[Attribution] = []
    ablations: list[UnitAblation] = []
    if ctx.model is None:
        notes.append(MethodNote("model", "unavailable", "the model is not available to run (a trace only)"))
    elif not ctx.has_prediction:
        notes.append(MethodNote("attribution", "unavailable",
                                "the model's output is no prediction (no known head): nothing to decompose"))
    else:
        context = _context(ctx, notes)
        attributions = _attributions(ctx, options, notes)
    if ctx.model is not None:
        ablations = _ablations(run, analysis, options, ctx, notes)
    return replace(analysis, attributions=attributions, context_ablation=context, ablations=ablations,
                   explain_notes=list(analysis.explain_notes) + notes)


# -- corpus ------------------------------------------------------------------------------------------
def _token_ids(run: Run) -> np.ndarray | None:
    """The sample's token ids (batch, time) for excerpts, or None for feature inputs."""
    sample = run.sample
    if sample.kind != "tokens" or run.loaded.info.vocab is None:
        return None
    return np.asarray(sample.values, dtype=np.int64)


def _units_of(run: Run) -> int:
    return sum(layer.series[s].shape[2] for layer in run.trace.layers for s in UNIT_SERIES if s in layer.series)


def _pool_corpus(run: Run, analysis: Analysis, options: AnalysisOptions,
                 progress: Progress | None) -> tuple[Analysis, Pooled]:
    """The analysis's per-layer records replaced by the same records pooled over the whole corpus."""
    assert options.corpus is not None
    loaded = run.loaded
    corpus = open_corpus(loaded, options.corpus)
    th = analysis.thresholds
    window = significance_steps(len(analysis.features), _units_of(run), max(options.permutations, 1))
    pooled, info = reduce_corpus(loaded, corpus, run.sample, run.trace, th, text_features=run.sample.text is not None,
                                 window_steps=window if options.permutations > 0 else 0, progress=progress)
    findings = diagnose(run.trace, saturation=pooled.saturation, saliency=analysis.saliency, thresholds=th,
                        pooled=pooled.layers)
    sample_unjudged = {unjudged_note(p, n, th) for p, n in analysis.unjudged.items()}
    unjudged = {p: c.values for p, c in pooled.layers.items() if c.values < th.min_steps}
    notes = [n for n in analysis.notes if n not in sample_unjudged]
    notes += [unjudged_note(p, n, th) for p, n in unjudged.items()]
    timescales = [layer_timescales(prefix, gate, mean) for prefix, (gate, mean) in pooled.keep_gate_means.items()]
    return replace(
        analysis, gate_stats=pooled.gate_stats, saturation=pooled.saturation, findings=findings,
        units=pooled.units, trajectories=pooled_trajectories(pooled, run.trace), unjudged=unjudged, notes=notes,
        timescales=timescales, excerpts=pooled.excerpts, corpus=info,
    ), pooled


# -- units with evidence -------------------------------------------------------------------------------
def _test_units(run: Run, analysis: Analysis, options: AnalysisOptions, ctx: ModelContext,
                notes: list[MethodNote], pooled: Pooled | None) -> Analysis:
    """Permutation p-values and untrained controls for the ranked units; analysis.units becomes the
    significant ones (strongest first)."""
    if not analysis.features or not analysis.units:
        return analysis
    if options.permutations <= 0:
        notes.append(MethodNote("significance", "skipped", "--permutations 0: the ranked units carry no p-values"))
        return analysis
    control: dict[str, float] | None = None
    if ctx.model is not None:
        try:
            if pooled is not None:
                control = window_control(ctx.model, pooled.window_inputs, pooled.window_features,
                                         batch_first=ctx.batch_first)
            else:
                control = control_correlations(ctx.model, ctx.values, analysis.features, batch_first=ctx.batch_first)
        except Exception as error:  # noqa: BLE001 - the user's model code: lose the control only
            notes.append(MethodNote("control", "unavailable", f"untrained control not computed: {first_line(error)}"))
    if pooled is not None:
        tests = evidence_for_units(pooled.window, pooled.window_features, analysis.units,
                                   permutations=options.permutations, alpha=SIGNIFICANCE_LEVEL, seed=PERMUTATION_SEED,
                                   control=control)
    else:
        tests = unit_significance(run.trace, analysis.features, permutations=options.permutations, control=control)
    return replace(analysis, units=list(tests.ranked), unit_tests=tests)


# -- memory ------------------------------------------------------------------------------------------
def _context(ctx: ModelContext, notes: list[MethodNote]) -> ContextAblation | None:
    assert ctx.model is not None
    steps = int(ctx.values.shape[1])
    if steps * MIN_CONTEXT_POINTS > CONTEXT_STEP_BUDGET:
        notes.append(MethodNote("context", "skipped", (
            f"context ablation not run: it runs the model over the sample once per context length, and "
            f"{MIN_CONTEXT_POINTS} lengths of {steps:,} steps exceed its budget of {CONTEXT_STEP_BUDGET:,} steps; "
            "memory is read from the other measures")))
        return None
    points = min(CONTEXT_STEP_BUDGET // max(steps, 1), CONTEXT_POINTS)
    try:
        return context_ablation(ctx.model, ctx.values, step=ctx.step, task=ctx.task, batch_first=ctx.batch_first,
                                output_labels=ctx.output_labels, max_points=points)
    except Exception as error:  # noqa: BLE001 - as above
        notes.append(MethodNote("context", "unavailable", f"context ablation not computed: {first_line(error)}"))
        return None


# -- attribution ------------------------------------------------------------------------------------
def cd_work(steps: int, gate_rows: int, layers: int, directions: int, causal: bool) -> float:
    """The work of a contextual decomposition, in decomposed-array elements (module constants)."""
    return steps * steps * gate_rows * layers * directions / (2.0 if causal else 1.0)


def _attributions(ctx: ModelContext, options: AnalysisOptions, notes: list[MethodNote]) -> list[Attribution]:
    assert ctx.model is not None
    asked = parse_attribution(options.attribution)
    methods = METHODS if asked is None else asked
    result = []
    for method in methods:
        if method == "cd" and asked is None:
            work = _cd_work(ctx)
            if work is not None and work > CD_AUTO_WORK:
                notes.append(MethodNote("cd", "skipped", (
                    f"not run by default: its cost grows with the square of the steps "
                    f"({int(ctx.values.shape[1])} here, about {work / 5e6:.0f} s); pass --attribution cd,lrp "
                    "to run it")))
                continue
        function = contextual_decomposition if method == "cd" else layerwise_relevance
        try:
            result.append(function(ctx.model, ctx.values, step=ctx.step, batch_first=ctx.batch_first,
                                   output_labels=ctx.output_labels))
        except ConservationError as error:
            notes.append(MethodNote(method, "refused", error.message))
        except ExplainError as error:
            if asked is not None and "needs about" in error.message:  # over the memory budget, asked by name
                raise
            notes.append(MethodNote(method, "unavailable", f"{METHOD_NAMES[method]}: {error.message}"))
        except Exception as error:  # noqa: BLE001 - the user's model code
            notes.append(MethodNote(method, "unavailable", f"{METHOD_NAMES[method]}: {first_line(error)}"))
    return result


def _cd_work(ctx: ModelContext) -> float | None:
    """The decomposition's work for the model's one recurrent stack (None: none found)."""
    assert ctx.model is not None
    stacks = [m for m in ctx.model.modules() if isinstance(m, LAYER_TYPES)]
    if len(stacks) != 1 or isinstance(stacks[0], nn.RNN):  # the decomposition opens LSTM and GRU stacks
        return None
    stack = stacks[0]
    gates = (4 if isinstance(stack, nn.LSTM) else 3) * stack.hidden_size
    dirs = 2 if stack.bidirectional else 1
    return cd_work(int(ctx.values.shape[1]), gates, stack.num_layers, dirs, causal=dirs == 1)


# -- causal checks -------------------------------------------------------------------------------------
def _ablations(run: Run, analysis: Analysis, options: AnalysisOptions, ctx: ModelContext,
               notes: list[MethodNote]) -> list[UnitAblation]:
    """The default checks of the top-ranked units (and the other mode for the first), then --ablate's.

    The default checks run together, one batch row each (`intervention.ablate_variants`); the
    units asked for by name run after them, and their errors are the command's.
    """
    assert ctx.model is not None
    steps = int(ctx.values.shape[1])
    ranked = analysis.unit_tests.ranked if analysis.unit_tests is not None else ()
    top = _top_units(ranked, options.ablate_top)
    if top and steps > ABLATE_MAX_STEPS:
        notes.append(MethodNote("ablation", "skipped", (
            f"the top units were not ablated: the check steps the ablated layer one step at a time, and "
            f"the sample has {steps:,} steps (more than {ABLATE_MAX_STEPS:,}); pass --ablate to check a unit")))
        top = []
    other = "zero" if options.ablate_mode == "clamp" else "clamp"
    planned: list[tuple[UnitSpec, str | None, str]] = []
    for k, row in enumerate(top):
        for mode in (options.ablate_mode, other) if k == 0 else (options.ablate_mode,):
            try:  # the value a unit is held at may not exist (no step without its feature): lose that check only
                planned.append(_variant(run, analysis, UnitSpec(row.prefix, row.unit), row.feature, mode))
            except ExplainError as error:
                notes.append(MethodNote("ablation", "unavailable",
                                        f"unit {row.unit} of {row.prefix} not ablated: {error.message}"))
                break
    result: list[UnitAblation] = []
    try:
        result = _run_checks(analysis, ctx, planned)
    except Exception as error:  # noqa: BLE001 - the user's model code, or a unit it cannot reach
        notes.append(MethodNote("ablation", "unavailable", f"the top units were not ablated: {first_line(error)}"))
    named = []
    for text in options.ablate:  # asked by name: an error is the command's
        spec = parse_unit_spec(text)
        feature = next((r.feature for r in ranked if (r.prefix, r.unit) == (spec.prefix, spec.unit)), None)
        named.append(_variant(run, analysis, spec, feature, "value" if spec.value is not None else options.ablate_mode))
    return result + _run_checks(analysis, ctx, named)


def _top_units(ranked: Sequence[UnitCorrelation], count: int) -> list[UnitCorrelation]:
    """The strongest significant row of each of the first `count` distinct units (c and h of a unit count once)."""
    chosen: list[UnitCorrelation] = []
    for row in ranked:
        if len(chosen) >= count:
            break
        if all((c.prefix, c.unit) != (row.prefix, row.unit) for c in chosen):
            chosen.append(row)
    return chosen


def _run_checks(analysis: Analysis, ctx: ModelContext,
                planned: Sequence[tuple[UnitSpec, str | None, str]]) -> list[UnitAblation]:
    """The causal checks `planned` ((unit held at its value, feature, what was done), from `_variant`)
    in one stepped run, with the loss change where the feature is present / absent."""
    assert ctx.model is not None
    if not planned:
        return []
    results = ablate_variants(ctx.model, ctx.values, [[spec] for spec, _, _ in planned],
                              step=ctx.step if ctx.has_prediction else None, task=ctx.task,
                              batch_first=ctx.batch_first, output_labels=ctx.output_labels)
    checks = []
    for result, (_, feature, how) in zip(results, planned, strict=True):
        values = analysis.features.get(feature) if feature is not None else None
        present = absent = None
        if values is not None and result.step_loss_before is not None and result.step_loss_after is not None:
            change = result.step_loss_after - result.step_loss_before  # step t predicts token t + 1
            f = np.asarray(values, dtype=np.float64)[: len(change)]
            on = f > f.min()
            if on.any() and (~on).any():
                present, absent = float(change[on].mean()), float(change[~on].mean())
        checks.append(replace(result, how=how, feature=feature, present_change=present, absent_change=absent))
    return checks


def _variant(run: Run, analysis: Analysis, spec: UnitSpec, feature: str | None,
             mode: str) -> tuple[UnitSpec, str | None, str]:
    """One check: the unit with the value it is held at (clamped to its mean where its feature is
    absent, else its mean; set to zero; or the value the spec gives), its feature, and what was done
    in words. ExplainError when the unit is not in the trace or its feature is never absent."""
    values = analysis.features.get(feature) if feature is not None else None
    if mode == "value":
        return spec, feature, f"set to {spec.value:+.3g} (--ablate)"
    if mode == "zero":
        return UnitSpec(spec.prefix, spec.unit), feature, "set to 0"
    # Corpus mode: the check runs on the sample shown, the corpus's first sequence, and its mean is that one's.
    where = " of the first sequence" if analysis.corpus is not None else ""
    if values is not None and feature is not None:
        clamped = feature_clamp(run.trace, spec, values, present=False)
        return clamped, feature, (f"clamped to {clamped.value:+.3g}, its mean where {feature.replace('_', ' ')} is "
                                  f"absent{where}")
    clamped = _mean_clamp(run, spec)
    return clamped, feature, f"clamped to {clamped.value:+.3g}, its mean over the sample{where}"


def _mean_clamp(run: Run, spec: UnitSpec) -> UnitSpec:
    """`spec` clamped to the unit's mean h over batch element 0 (mean ablation)."""
    key = f"{spec.prefix}/h"
    if key not in run.trace.keys():
        raise ExplainError(f"unit {str(spec)!r}: the trace has no series {key!r}")
    h = np.asarray(run.trace[key][0], dtype=np.float64)
    if not 0 <= spec.unit < h.shape[1]:
        raise ExplainError(f"unit {str(spec)!r}: the layer has units 0..{h.shape[1] - 1}")
    column = h[:, spec.unit]
    column = column[np.isfinite(column)]
    if not column.size:
        raise ExplainError(f"unit {str(spec)!r}: no step of the sample has a value to clamp it to")
    return UnitSpec(spec.prefix, spec.unit, float(column.mean()))

