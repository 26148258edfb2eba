"""Gate-health thresholds over the analysis: one pass/fail case per layer and gate, per layer, per finding.

Every number compared here comes from the analysis stage (`analysis.gate_stats`, its findings and
saliency) or the trace's own verification error; nothing is recomputed, so the check and the
report always agree. `judge_analysis` gives the analysis as the check judged it (verification
levels against `--max-verify-error`, findings against the check's thresholds, every failed case a
finding), which is what the `check --report` page shows.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from lstmviz_cli.analysis.checksettings import CheckConfig, number_text, parse_dead_limit
from lstmviz_cli.analysis.findings import dead_units_by_layer
from lstmviz_cli.analysis.measures import Measure
from lstmviz_cli.analysis.records import Analysis, FigureRef, Finding
from lstmviz_cli.errors import InputError
from lstmviz_cli.tracing.provenance import Provenance
from lstmviz_cli.tracing.records import Trace
from lstmviz_cli.tracing.verify import OUTPUT_TOLERANCE, Verification

_SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}


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
    baseline: float | None = None  # "baseline:<measure>" cases: the measure's value in the baseline

    @property
    def delta(self) -> float | None:
        """value - baseline (baseline cases with both numbers), else None."""
        if self.baseline is None or self.value is None:
            return None
        return self.value - self.baseline

    @property
    def is_baseline(self) -> bool:
        return self.check.startswith("baseline:")


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
    verification_anchor: str | None = None  # the page's id of the verification card (what the badges say)
    # What the run measured (`analysis.measures`): the JSON's `measures`, what a later --baseline reads.
    measures: list[Measure] = field(default_factory=list)
    architecture: list[dict[str, str | int]] = field(default_factory=list)
    sample: dict[str, str | int] = field(default_factory=dict)
    layer_units: dict[str, int] = field(default_factory=dict)  # units per layer prefix (dead-unit limits)
    baseline: str | None = None  # the --baseline file compared against, as given
    settings_source: str | None = None  # the config file whose settings are in force, when one supplied any

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

    def verdict(self) -> str:
        """ "healthy" or "3 of 10 checks failed": the one-line result every output states."""
        if self.passed:
            return "healthy"
        return f"{len(self.failures)} of {len(self.cases)} checks failed"


# -- evaluation -----------------------------------------------------------------------------------------
def evaluate(trace: Trace, analysis: Analysis, config: CheckConfig, *, model: str) -> CheckResult:
    """Compare the analysis's numbers with the thresholds: one case per layer and gate, per layer, per finding."""
    provenance = analysis.provenance
    result = CheckResult(model=model, config=config, provenance=provenance,
                         layer_units={layer.prefix: layer.units for layer in trace.layers})
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
        # The case names its measure: a baseline's memory horizon is the saliency's (analysis.measures),
        # and one table showing "memory horizon 3" and "memory horizon 8" would contradict itself.
        by_ablation, by_saliency = "memory horizon (context ablation)", "memory horizon (saliency)"
        if ablation is not None and int(ablation.kept[-1]) < minimum:
            cases.append(_skipped("memory_horizon", by_ablation, None, float(config.min_memory_horizon),
                                  int(ablation.kept[-1]), minimum, FigureRef("context-ablation"),
                                  what="input steps of the context ablation"))
        elif ablation is not None:
            ok = ablation.horizon >= config.min_memory_horizon
            cases.append(CheckCase(
                "memory_horizon", by_ablation, None, float(ablation.horizon), float(config.min_memory_horizon),
                ok, f"context ablation: the output reads {ablation.horizon} steps back (zeroing older input changes "
                f"it by at most {ablation.tolerance:.0%} of the largest change)"
                + ("" if ok else f" < {config.min_memory_horizon}"),
                FigureRef("context-ablation"),
            ))
        elif saliency is None:
            cases.append(CheckCase("memory_horizon", by_saliency, None, None, config.min_memory_horizon, False,
                                   "memory horizon unavailable (saliency could not be computed for this model)"))
        elif sum(math.isfinite(float(v)) for v in saliency.values) < minimum:
            counted = sum(math.isfinite(float(v)) for v in saliency.values)
            cases.append(_skipped("memory_horizon", by_saliency, None, float(config.min_memory_horizon),
                                  counted, minimum, FigureRef("saliency"), what="input steps of saliency"))
        else:
            horizon = int(saliency.horizon)
            ok = horizon >= config.min_memory_horizon
            cases.append(CheckCase(
                "memory_horizon", by_saliency, None, float(horizon), float(config.min_memory_horizon), ok,
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


def _unit_list(units: list[int], limit: int = 8) -> str:
    shown = ", ".join(str(u) for u in units[:limit])
    return shown + (f", … ({len(units)} in all)" if len(units) > limit else "")


def _finite(value: float) -> float | None:
    number = float(value)
    return number if math.isfinite(number) else None


# -- thresholds that cannot pass, and how a limit reads ------------------------------------------------
def validate_horizon(config: CheckConfig, analysis: Analysis, steps: int) -> None:
    """Refuse a --min-memory-horizon longer than the sample: the horizon counts steps back from the output,
    so it can never exceed the steps before it (a threshold that can never pass is a mistake, not a check).

    `steps`: the sample's steps (the saliency's output step, when there is one, bounds it instead).
    A sample too short to judge any horizon (fewer than `min_steps`) is not refused: its case is
    skipped, and says so. Raises InputError.
    """
    wanted = config.min_memory_horizon
    if wanted is None:
        return
    saliency = analysis.saliency
    available = saliency.step + 1 if saliency is not None else steps
    if wanted <= available or available < analysis.thresholds.min_steps:
        return  # possible; or too few steps to judge any horizon: the case is skipped and says so
    if saliency is not None and available < steps:
        where = (f"the sample has {steps} steps and the output whose saliency is measured is at step "
                 f"{saliency.step}, so at most {available} steps lie behind it")
    else:
        where = f"the sample has only {available} step{'s' if available != 1 else ''}"
    raise InputError(f"--min-memory-horizon {wanted} can never pass: {where}; choose at most {available} "
                     "or a longer --input")


def limit_text(case: CheckCase) -> str:
    """How a case's threshold reads: "≤ 0.95", "≥ 12", "±0.05" (a baseline tolerance), "0.75" (a finding's)."""
    if case.threshold is None:
        return ""
    number = number_text(case.threshold)
    if case.check == "baseline:verify_error":
        return f"+{number}"
    if case.is_baseline:
        return f"±{number}"
    if case.check == "memory_horizon":
        return f"≥ {number}"
    if case.check.startswith("finding:"):
        return number
    return f"≤ {number}"


# -- the analysis as the check judged it (the check --report page) ---------------------------------------
# Failed cases that no analysis finding states: they become findings of their own on the judged page.
_OWN_FINDINGS = ("saturation", "memory_horizon", "verify_error", "model_output")


def judge_analysis(analysis: Analysis, result: CheckResult) -> Analysis:
    """The analysis as `lstmviz check` judged it, for the page of `check --report`.

    - verification levels of the recurrent layers are judged against --max-verify-error (a badge says
      "differs" when the check failed it, "ok" when the check passed it);
    - a dead-units finding is an error when its layer failed --max-dead-units and info when the check
      allows it; a finding that fails the check by --fail-on says so;
    - every failed case no finding states (saturation share, memory horizon, verification, model
      output, a measure that moved from the baseline) is an error finding with the check's numbers.
    `analysis` is not changed.
    """
    config = result.config
    provenance = analysis.provenance
    if provenance is not None and config.max_verify_error is not None:
        provenance = replace(provenance, verification=tuple(
            _judged_level(level, config.max_verify_error) for level in provenance.verification))
    dead_cases = {case.prefix: case for case in result.cases if case.check == "dead_units" and not case.skipped}
    failing = {(case.check.removeprefix("finding:"), case.prefix) for case in result.failures
               if case.check.startswith("finding:")}
    findings: list[Finding] = []
    for finding in analysis.findings:
        case = dead_cases.get(finding.prefix) if finding.code == "dead_units" else None
        if case is not None and case.threshold is not None:
            share = case.threshold if str(config.max_dead_units).endswith("%") else \
                case.threshold / max(result.layer_units.get(finding.prefix, 1), 1)
            verdict = ("fails the check: more than --max-dead-units " if not case.passed
                       else "within the check's --max-dead-units ") + str(config.max_dead_units)
            by_severity = (finding.code, finding.prefix) in failing
            if by_severity:
                verdict += f"; fails the check (--fail-on {config.fail_on})"
            findings.append(replace(finding, severity="error" if not case.passed or by_severity else "info",
                                    threshold=share, message=f"{finding.message}; {verdict}"))
        elif (finding.code, finding.prefix) in failing:
            findings.append(replace(finding, message=f"{finding.message}; fails the check (--fail-on {config.fail_on})"))
        else:
            findings.append(finding)
    for case in result.failures:
        if case.check in _OWN_FINDINGS or case.is_baseline:
            code = "baseline" if case.is_baseline else case.check
            findings.append(Finding(
                code, "error", case.prefix or "", [], math.nan if case.value is None else case.value,
                math.nan if case.threshold is None else case.threshold, f"fails the check: {case.message}",
                case.figure,
            ))
    return replace(analysis, findings=findings, provenance=provenance, check=config)


def _judged_level(level: Verification, limit: float) -> Verification:
    """A recurrent level (gates, hand-written cell) judged against the check's --max-verify-error."""
    if level.level == "model" or level.error is None or level.status == "not-checked":
        return level
    ok = math.isfinite(level.error) and level.error <= limit
    return replace(level, status="ok" if ok else "bad",
                   detail=f"{'within' if ok else 'over'} the check's --max-verify-error {number_text(limit)}")
