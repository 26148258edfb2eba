"""Gate-health thresholds over the analysis: one pass/fail case per layer and gate, per layer, per finding.

Every number compared here comes from the analysis stage (`analysis.gate_stats`, its findings and
saliency) or the trace's own verification error; nothing is recomputed, so the check and the
report always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from lstmviz_cli.analysis.anchors import figure_anchor
from lstmviz_cli.errors import InputError
from lstmviz_cli.tracing.verify import GATE_TOLERANCE, OUTPUT_TOLERANCE

FAIL_ON = ("error", "warning", "never")
_SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2}
# The analysis's finding code for dead units; the check reads its unit lists.
_DEAD_CODES = ("dead_units",)


@dataclass(frozen=True)
class CheckConfig:
    """The thresholds. None turns a check off. Flags override the config file, which overrides these."""

    max_saturated: float | None = 0.95  # share of a gate's values that are < low or > high
    max_dead_units: str | None = "25%"  # per layer: a count ("3") or a share of its units ("10%")
    min_memory_horizon: int | None = None  # steps back that hold 90% of the saliency (task-dependent)
    max_verify_error: float | None = GATE_TOLERANCE  # max |recorded - real| of the trace
    fail_on: str = "error"  # analysis findings of this severity or worse fail: error, warning, never

    def __post_init__(self) -> None:
        for name in ("max_saturated",):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InputError(f"{flag_name(name)} {value!r} must be a fraction between 0 and 1")
        if self.max_verify_error is not None and self.max_verify_error < 0:
            raise InputError(f"--max-verify-error {self.max_verify_error!r} must be >= 0")
        if self.min_memory_horizon is not None and self.min_memory_horizon < 0:
            raise InputError(f"--min-memory-horizon {self.min_memory_horizon!r} must be >= 0")
        if self.fail_on not in FAIL_ON:
            raise InputError(f"--fail-on {self.fail_on!r} must be one of {', '.join(FAIL_ON)}")
        if self.max_dead_units is not None:
            parse_dead_limit(self.max_dead_units)


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
    anchor: str | None = None
    skipped: bool = False  # not judged (too few steps): passes, and says so


@dataclass
class CheckResult:
    """All cases of one checkpoint, in a stable order."""

    model: str
    cases: list[CheckCase] = field(default_factory=list)
    config: CheckConfig = field(default_factory=CheckConfig)
    provenance: Any = None  # provenance.Provenance: what was verified, and whether the model was partial

    @property
    def recurrent_only(self) -> bool:
        return bool(self.provenance is not None and self.provenance.recurrent_only)

    @property
    def verification(self) -> list[Any]:
        return list(self.provenance.verification) if self.provenance is not None else []

    @property
    def failures(self) -> list[CheckCase]:
        return [case for case in self.cases if not case.passed]

    @property
    def passed(self) -> bool:
        return not self.failures


def flag_name(name: str) -> str:
    return "--" + name.replace("_", "-")


def parse_dead_limit(text: str) -> tuple[float, bool]:
    """'3' -> (3, False) a count; '10%' -> (0.1, True) a share of the layer's units."""
    raw = str(text).strip()
    try:
        if raw.endswith("%"):
            share = float(raw[:-1]) / 100.0
            if not 0.0 <= share <= 1.0:
                raise ValueError
            return share, True
        count = float(raw)
        if count < 0 or count != int(count):
            raise ValueError
        return count, False
    except ValueError:
        raise InputError(f"--max-dead-units {text!r} must be a count (e.g. 3) or a percentage (e.g. 10%)") from None


# -- evaluation -----------------------------------------------------------------------------------------
def evaluate(trace: Any, analysis: Any, config: CheckConfig, *, model: str) -> CheckResult:
    """Compare the analysis's numbers with the thresholds: one case per layer and gate, per layer, per finding."""
    provenance = getattr(analysis, "provenance", None)
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
    unjudged: dict[str, int] = dict(getattr(analysis, "unjudged", {}) or {})
    minimum = int(getattr(getattr(analysis, "thresholds", None), "min_steps", 0) or 0)
    if config.max_saturated is not None:
        for stat in analysis.gate_stats:
            if stat.frac_low is None or stat.frac_high is None:
                continue
            if stat.prefix in unjudged:
                cases.append(_skipped("saturation", f"saturation {stat.prefix} {stat.series}", stat.prefix,
                                      config.max_saturated, unjudged[stat.prefix], minimum,
                                      figure_anchor("saturation", stat.prefix)))
                continue
            share = float(stat.frac_low) + float(stat.frac_high)
            ok = share <= config.max_saturated
            label = f"{stat.prefix} {stat.series}"
            cases.append(CheckCase(
                "saturation", f"saturation {label}", stat.prefix, share, config.max_saturated, ok,
                f"{label}: {share:.0%} of gate values saturated "
                f"({stat.frac_low:.0%} near 0, {stat.frac_high:.0%} near 1)"
                + ("" if ok else f" > {config.max_saturated:.0%}"),
                figure_anchor("saturation", stat.prefix),
            ))
    if config.max_dead_units is not None:
        limit, is_share = parse_dead_limit(config.max_dead_units)
        dead = dead_units_by_layer(analysis)
        for layer in trace.layers:
            if layer.prefix in unjudged:
                cases.append(_skipped("dead_units", f"dead units {layer.prefix}", layer.prefix, limit,
                                      unjudged[layer.prefix], minimum, figure_anchor("activity", layer.prefix)))
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
                figure_anchor("activity", layer.prefix),
            ))
    if config.min_memory_horizon is not None:
        saliency = getattr(analysis, "saliency", None)
        if saliency is None:
            cases.append(CheckCase("memory_horizon", "memory horizon", None, None, config.min_memory_horizon, False,
                                   "memory horizon unavailable (saliency could not be computed for this model)"))
        elif sum(math.isfinite(float(v)) for v in saliency.values) < minimum:
            counted = sum(math.isfinite(float(v)) for v in saliency.values)
            cases.append(_skipped("memory_horizon", "memory horizon", None, float(config.min_memory_horizon),
                                  counted, minimum, figure_anchor("saliency"), what="input steps of saliency"))
        else:
            horizon = int(saliency.horizon)
            ok = horizon >= config.min_memory_horizon
            cases.append(CheckCase(
                "memory_horizon", "memory horizon", None, float(horizon), float(config.min_memory_horizon), ok,
                f"90% of the saliency lies within the last {horizon} steps"
                + ("" if ok else f" < {config.min_memory_horizon}"),
                figure_anchor("saliency"),
            ))
    if config.fail_on != "never":
        floor = _SEVERITY_RANK[config.fail_on]
        for finding in analysis.findings:
            if _SEVERITY_RANK.get(finding.severity, 0) >= floor:
                cases.append(CheckCase(
                    f"finding:{finding.code}", f"{finding.code} {finding.prefix}", finding.prefix,
                    _finite(finding.value), _finite(finding.threshold), False,
                    f"{finding.severity}: {finding.message}", finding.anchor,
                ))
    return result


def _skipped(check: str, name: str, prefix: str | None, threshold: float | None, count: int, minimum: int,
             anchor: str | None, *, what: str = "values per unit") -> CheckCase:
    """A case not judged (too few steps to tell): it passes, and its message says it was skipped."""
    if count == 1:
        what = what.replace("values", "value").replace("steps", "step")
    return CheckCase(check, name, prefix, None, threshold, True,
                     f"skipped: {count} {what}, fewer than the {minimum} needed to judge", anchor, skipped=True)


def dead_units_by_layer(analysis: Any) -> dict[str, list[int]]:
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


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
