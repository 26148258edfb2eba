"""Gate-health thresholds over the analysis: one pass/fail case per layer and gate, per layer, per finding.

Every number compared here comes from the analysis stage (`analysis.gate_stats`, its findings and
saliency) or the trace's own verification error; nothing is recomputed, so the check and the
report always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lstmviz_cli.analysis.checksettings import CheckConfig, parse_dead_limit
from lstmviz_cli.analysis.records import Analysis, FigureRef
from lstmviz_cli.tracing.provenance import Provenance
from lstmviz_cli.tracing.records import Trace
from lstmviz_cli.tracing.verify import OUTPUT_TOLERANCE, Verification

_SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
# The analysis's finding code for dead units; the check reads its unit lists.
_DEAD_CODES = ("dead_units",)


@dataclass
class CheckCase:
    """One pass/fail line: a threshold against one layer's number, or one analysis finding."""

    check: str  # "saturation", "dead_units", "memory_horizon", "verify_error", "finding:<code>"
    name: str  # the test case name, e.g. "saturation lstm/l0/fwd f"
    prefix: str | None
    value: float | None
    threshold: float | None
    passed: bool
    message: str
    figure: FigureRef | None = None  # the report figure that shows it (the page gives its id)
    skipped: bool = False  # not judged (too few steps): passes, and says so


@dataclass
class CheckResult:
    """All cases of one checkpoint, in a stable order."""

    model: str
    cases: list[CheckCase] = field(default_factory=list)
    config: CheckConfig = field(default_factory=CheckConfig)
    provenance: Provenance | None = None  # what was verified, and whether the model was partial
    # The report page's HTML id of each figure the cases name (`page.model.Page.anchors`), set by the
    # command that builds the page; the JSON and JUnit writers link cases to the page with it.
    anchors: dict[FigureRef, str] = field(default_factory=dict)

    @property
    def recurrent_only(self) -> bool:
        return bool(self.provenance is not None and self.provenance.recurrent_only)

    @property
    def verification(self) -> list[Verification]:
        return list(self.provenance.verification) if self.provenance is not None else []

    @property
    def failures(self) -> list[CheckCase]:
        return [case for case in self.cases if not case.passed]

    @property
    def passed(self) -> bool:
        return not self.failures


# -- evaluation -----------------------------------------------------------------------------------------
def evaluate(trace: Trace, analysis: Analysis, config: CheckConfig, *, model: str) -> CheckResult:
    """Compare the analysis's numbers with the thresholds: one case per layer and gate, per layer, per finding."""
    provenance = analysis.provenance
    result = CheckResult(model=model, config=config, provenance=provenance)
    cases = result.cases
    levels = list(provenance.verification) if provenance is not None else []
    layer_level = " and ".join(dict.fromkeys(v.label for v in levels if v.level != "model")) or "gates vs layer outputs"
    if config.max_verify_error is not None:
        error = trace.verify_error
        if error is None:
            cases.append(CheckCase("verify_error", "verification error", None, None, config.max_verify_error, True,
                                   f"{layer_level}: not verified (the model's outputs could not be compared)"))
        else:
            ok = math.isfinite(error) and error <= config.max_verify_error
            cases.append(CheckCase(
                "verify_error", "verification error", None, float(error), config.max_verify_error, ok,
                f"{layer_level}: recorded gates reproduce the outputs within {error:.2e}" if ok else
                f"{layer_level}: recorded gates miss the real outputs by {error:.2e} > {config.max_verify_error:.0e}",
            ))
        for level in levels:
            if level.level == "model" and level.status != "not-checked":
                cases.append(CheckCase(
                    "model_output", level.label, None, level.error, OUTPUT_TOLERANCE, level.status == "ok",
                    level.text() + ("" if level.status == "ok" else " (relative to the output's size)"),
                ))
    unjudged = analysis.unjudged
    minimum = analysis.thresholds.min_steps
    if config.max_saturated is not None:
        for stat in analysis.gate_stats:
            if stat.frac_low is None or stat.frac_high is None:
                continue
            if stat.prefix in unjudged:
                cases.append(_skipped("saturation", f"saturation {stat.prefix} {stat.series}", stat.prefix,
                                      config.max_saturated, unjudged[stat.prefix], minimum,
                                      FigureRef("saturation", stat.prefix)))
                continue
            share = float(stat.frac_low) + float(stat.frac_high)
            ok = share <= config.max_saturated
            label = f"{stat.prefix} {stat.series}"
            cases.append(CheckCase(
                "saturation", f"saturation {label}", stat.prefix, share, config.max_saturated, ok,
                f"{label}: {share:.0%} of gate values saturated "
                f"({stat.frac_low:.0%} near 0, {stat.frac_high:.0%} near 1)"
                + ("" if ok else f" > {config.max_saturated:.0%}"),
                FigureRef("saturation", stat.prefix),
            ))
    if config.max_dead_units is not None:
        limit, is_share = parse_dead_limit(config.max_dead_units)
        dead = dead_units_by_layer(analysis)
        for layer in trace.layers:
            if layer.prefix in unjudged:
                cases.append(_skipped("dead_units", f"dead units {layer.prefix}", layer.prefix, limit,
                                      unjudged[layer.prefix], minimum, FigureRef("activity", layer.prefix)))
                continue
            units = dead.get(layer.prefix, [])
            count = len(units)
            total = max(layer.units, 1)
            value = count / total if is_share else float(count)
            ok = value <= limit + 1e-12
            shown = f"{count}/{layer.units} units dead"
            cases.append(CheckCase(
                "dead_units", f"dead units {layer.prefix}", layer.prefix, value, limit, ok,
                f"{layer.prefix}: {shown}" + (f" (units {_unit_list(units)})" if units else "")
                + ("" if ok else f" > {config.max_dead_units}"),
                FigureRef("activity", layer.prefix),
            ))
    if config.min_memory_horizon is not None:
        # The context-ablation horizon when the report computed one (issue 18: gradient saliency fades with
        # distance), else the saliency horizon; the message names the measure.
        ablation = analysis.context_ablation
        saliency = analysis.saliency
        if ablation is not None and int(ablation.kept[-1]) < minimum:
            cases.append(_skipped("memory_horizon", "memory horizon", None, float(config.min_memory_horizon),
                                  int(ablation.kept[-1]), minimum, FigureRef("context-ablation"),
                                  what="input steps of the context ablation"))
        elif ablation is not None:
            ok = ablation.horizon >= config.min_memory_horizon
            cases.append(CheckCase(
                "memory_horizon", "memory horizon", None, float(ablation.horizon), float(config.min_memory_horizon),
                ok, f"context ablation: the output reads {ablation.horizon} steps back (zeroing older input changes "
                f"it by at most {ablation.tolerance:.0%} of the largest change)"
                + ("" if ok else f" < {config.min_memory_horizon}"),
                FigureRef("context-ablation"),
            ))
        elif saliency is None:
            cases.append(CheckCase("memory_horizon", "memory horizon", None, None, config.min_memory_horizon, False,
                                   "memory horizon unavailable (saliency could not be computed for this model)"))
        elif sum(math.isfinite(float(v)) for v in saliency.values) < minimum:
            counted = sum(math.isfinite(float(v)) for v in saliency.values)
            cases.append(_skipped("memory_horizon", "memory horizon", None, float(config.min_memory_horizon),
                                  counted, minimum, FigureRef("saliency"), what="input steps of saliency"))
        else:
            horizon = int(saliency.horizon)
            ok = horizon >= config.min_memory_horizon
            cases.append(CheckCase(
                "memory_horizon", "memory horizon", None, float(horizon), float(config.min_memory_horizon), ok,
                f"gradient saliency (no context ablation for this model): {analysis.thresholds.horizon_mass:.0%} "
                f"of the saliency lies within the last {horizon} steps" + ("" if ok else f" < {config.min_memory_horizon}"),
                FigureRef("saliency"),
            ))
    if config.fail_on != "never":
        floor = _SEVERITY_RANK[config.fail_on]
        for finding in analysis.findings:
            if _SEVERITY_RANK.get(finding.severity, 0) >= floor:
                cases.append(CheckCase(
                    f"finding:{finding.code}", f"{finding.code} {finding.prefix}", finding.prefix,
                    _finite(finding.value), _finite(finding.threshold), False,
                    f"{finding.severity}: {finding.message}", finding.figure,
                ))
    return result


def _skipped(check: str, name: str, prefix: str | None, threshold: float | None, count: int, minimum: int,
             figure: FigureRef | None, *, what: str = "values per unit") -> CheckCase:
    """A case not judged (too few steps to tell): it passes, and its message says it was skipped."""
    if count == 1:
        what = what.replace("values", "value").replace("steps", "step")
    return CheckCase(check, name, prefix, None, threshold, True,
                     f"skipped: {count} {what}, fewer than the {minimum} needed to judge", figure, skipped=True)


def dead_units_by_layer(analysis: Analysis) -> dict[str, list[int]]:
    """Dead units per layer prefix, as the analysis's findings name them."""
    dead: dict[str, list[int]] = {}
    for finding in analysis.findings:
        if finding.code in _DEAD_CODES:
            dead.setdefault(finding.prefix, [])
            dead[finding.prefix] = sorted(set(dead[finding.prefix]) | {int(u) for u in finding.units})
    return dead


def _unit_list(units: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(u) for u in units[:limit])
    return shown + (f", … ({len(units)} in all)" if len(units) > limit else "")


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None
