"""`lstmviz check`: gate-health thresholds over the analysis, as a table, JSON and JUnit XML.

Every number compared here comes from the analysis stage (`analysis.gate_stats`, its findings and
saliency) or the trace's own verification error; nothing is recomputed, so the check and the
report always agree.

`--json` writes (floats rounded to 6 significant digits, keys sorted):

    {"generator": "lstmviz-generated", "model": "charlm.pt", "passed": bool, "failures": int,
     "config": {"max_saturated", "max_dead_units", "min_memory_horizon", "max_verify_error", "fail_on"},
     "recurrent_only": bool,       # checked with --recurrent-only: the recurrent layers alone
     "verification": [{"level": "gates"|"recurrence"|"names"|"model", "label", "error", "status", "detail"}],
     "provenance": the report JSON's "model" object (source, tensors, head, verification) or null,
     "cases": [{"check": "saturation" | "dead_units" | "memory_horizon" | "verify_error" | "model_output"
                         | "finding:<code>",
                "name": "saturation lstm/l0/fwd f", "prefix", "value", "threshold", "passed",
                "message", "anchor": the report's HTML id of the figure that shows it}]}

JUnit XML carries the same verification levels as `<properties>` of each testsuite
("verification: gates vs layer outputs" = "3.10e-07", ...; "recurrent-only" = "true" when set).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from lstmviz_cli.errors import InputError
from lstmviz_cli.output import GENERATOR_MARKER

try:
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG_FILE = "lstmviz.toml"
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
    max_verify_error: float | None = 1e-4  # max |recorded - real| of the trace
    fail_on: str = "error"  # analysis findings of this severity or worse fail: error, warning, never

    def __post_init__(self) -> None:
        for name in ("max_saturated",):
            value = getattr(self, name)
            if value is not None and not 0.0 <= value <= 1.0:
                raise InputError(f"{_flag(name)} {value!r} must be a fraction between 0 and 1")
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


def _flag(name: str) -> str:
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


# -- configuration ----------------------------------------------------------------------------------
def find_config(start: Path) -> tuple[Path, dict[str, Any]] | None:
    """The nearest `lstmviz.toml`, or `pyproject.toml` with a [tool.lstmviz] table, from `start` upwards."""
    for directory in [start, *start.parents]:
        candidate = directory / CONFIG_FILE
        if candidate.is_file():
            return candidate, _read_toml(candidate)
        pyproject = directory / "pyproject.toml"
        if pyproject.is_file():
            table = _read_toml(pyproject).get("tool", {}).get("lstmviz")
            if table is not None:
                return pyproject, table
    return None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"cannot read config {str(path)!r}: {error}") from None


def config_values(table: dict[str, Any], source: str) -> dict[str, Any]:
    """The check settings of a config table (a [check] sub-table, or keys at the top), validated."""
    table = table.get("check", table)
    known = {f.name for f in fields(CheckConfig)}
    values: dict[str, Any] = {}
    for key, value in table.items():
        name = key.replace("-", "_")
        if name not in known:
            if isinstance(value, dict):  # other commands' tables
                continue
            raise InputError(f"{source}: unknown setting {key!r}; known: {', '.join(sorted(_flag(k)[2:] for k in known))}")
        values[name] = None if value in ("off", "none", False) else value
    if "max_dead_units" in values and values["max_dead_units"] is not None:
        values["max_dead_units"] = str(values["max_dead_units"])
    return values


def resolve_config(flags: dict[str, Any], *, config_path: Path | None = None, cwd: Path | None = None) -> tuple[CheckConfig, Path | None]:
    """Defaults < config file < flags (flags that are None were not given)."""
    values: dict[str, Any] = {}
    source: Path | None = None
    if config_path is not None:
        if not config_path.is_file():
            raise InputError(f"config file {str(config_path)!r} does not exist")
        table = _read_toml(config_path)
        if config_path.name == "pyproject.toml":
            table = table.get("tool", {}).get("lstmviz", {})
        values.update(config_values(table, str(config_path)))
        source = config_path
    else:
        found = find_config((cwd or Path.cwd()).resolve())
        if found is not None:
            source, table = found
            values.update(config_values(table, str(source)))
    values.update({k: v for k, v in flags.items() if v is not None})
    try:
        return CheckConfig(**values), source
    except TypeError as error:
        raise InputError(f"invalid check settings: {error}") from None


# -- evaluation -----------------------------------------------------------------------------------------
def evaluate(trace: Any, analysis: Any, config: CheckConfig, *, model: str) -> CheckResult:
    """Compare the analysis's numbers with the thresholds: one case per layer and gate, per layer, per finding."""
    from lstmviz_cli.analysis.anchors import figure_anchor

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
                from lstmviz_cli.tracing.verify import OUTPUT_TOLERANCE

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


# -- outputs ------------------------------------------------------------------------------------------
def to_json(result: CheckResult) -> dict[str, Any]:
    """JSON-ready and deterministic: the verdict, the settings used and every case."""
    return {
        "generator": GENERATOR_MARKER,
        "model": result.model,
        "passed": result.passed,
        "failures": len(result.failures),
        "config": asdict(result.config),
        "recurrent_only": result.recurrent_only,
        "verification": [v.to_json() for v in result.verification],
        "provenance": None if result.provenance is None else result.provenance.to_json(),
        "cases": [
            {**asdict(case), "value": _round(case.value), "threshold": _round(case.threshold)}
            for case in result.cases
        ],
    }


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.6g}")


_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot hold most control characters (even escaped): show them as \\xNN instead."""
    return _XML_INVALID.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _attr(text: str) -> str:
    return quoteattr(_xml_safe(text))


def _text(text: str) -> str:
    return escape(_xml_safe(text))


def to_junit(results: list[CheckResult]) -> str:
    """JUnit XML (the Ant/Surefire format CI systems read): one testsuite per model, one testcase per check.

    No timestamps or hostnames, so a rerun is byte-identical.
    """
    total = sum(len(r.cases) for r in results)
    failed = sum(len(r.failures) for r in results)
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        f"<!-- {GENERATOR_MARKER} -->",
        f'<testsuites name="lstmviz check" tests="{total}" failures="{failed}" errors="0" time="0">',
    ]
    for result in results:
        skipped = sum(case.skipped for case in result.cases)
        lines.append(
            f"  <testsuite name={_attr('lstmviz check ' + result.model)} tests=\"{len(result.cases)}\" "
            f'failures="{len(result.failures)}" errors="0" skipped="{skipped}" time="0">'
        )
        properties = [(f"verification: {v.label}", v.text().removeprefix(f"{v.label}: ")) for v in result.verification]
        if result.recurrent_only:
            properties.append(("recurrent-only", "true: the recurrent layers alone, fed the sample directly"))
        if properties:
            lines.append("    <properties>")
            lines.extend(f"      <property name={_attr(n)} value={_attr(v)}/>" for n, v in properties)
            lines.append("    </properties>")
        # CI systems split classname at dots into package and class: keep the file name in one piece.
        classname = _attr("lstmviz." + result.model.replace(".", "_"))
        for case in result.cases:
            head = f"    <testcase classname={classname} name={_attr(case.name)} time=\"0\""
            if case.skipped:
                lines.append(head + ">")
                lines.append(f"      <skipped message={_attr(case.message)}/>")
                lines.append("    </testcase>")
            elif case.passed:
                lines.append(head + ">")
                lines.append(f"      <system-out>{_text(case.message)}</system-out>")
                lines.append("    </testcase>")
            else:
                lines.append(head + ">")
                lines.append(
                    f"      <failure type={_attr(case.check)} message={_attr(case.message)}>"
                    f"{_text(_failure_text(case))}</failure>"
                )
                lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"


def _failure_text(case: CheckCase) -> str:
    parts = [case.message]
    if case.value is not None:
        parts.append(f"value: {case.value:.6g}")
    if case.threshold is not None:
        parts.append(f"threshold: {case.threshold:.6g}")
    if case.anchor:
        parts.append(f"report section: #{case.anchor}")
    return "\n".join(parts)


def summary_table(results: list[CheckResult]) -> Any:
    """A short rich Table: failures first, then one line per kind of passing check."""
    from rich.table import Table

    table = Table(title="lstmviz check", show_lines=False, expand=False)
    table.add_column("model")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("limit", justify="right")
    table.add_column("result")
    for result in results:
        for case in result.failures:
            table.add_row(result.model, case.name, _fmt(case.value), _fmt(case.threshold), "[red]FAIL[/red]")
        for case in result.cases:
            if case.skipped:
                table.add_row(result.model, case.name, "-", _fmt(case.threshold), "[yellow]skipped[/yellow]")
        grouped: dict[str, list[CheckCase]] = {}
        for case in result.cases:
            if case.passed and not case.skipped:
                grouped.setdefault(case.check, []).append(case)
        for check, cases in grouped.items():
            worst = max(cases, key=lambda c: -math.inf if c.value is None else (
                -c.value if check == "memory_horizon" else c.value))
            label = worst.name if len(cases) == 1 else f"{check}: {len(cases)} ok, worst {worst.name.removeprefix(check.replace('_', ' ')).strip()}"
            table.add_row(result.model, label, _fmt(worst.value), _fmt(worst.threshold), "[green]ok[/green]")
    return table


def _fmt(value: float | None) -> str:
    if value is None:
        return "-"
    if value == int(value) and abs(value) >= 1:
        return str(int(value))
    return f"{value:.3g}"


def write_outputs(results: list[CheckResult], *, json_path: Path | None, junit_path: Path | None, force: bool) -> None:
    """Write the JSON and JUnit files atomically (refusing to replace files lstmviz did not write)."""
    from lstmviz_cli.output import write_atomic

    if json_path is not None:
        payload: Any = to_json(results[0]) if len(results) == 1 else {
            "generator": GENERATOR_MARKER, "passed": all(r.passed for r in results),
            "models": [to_json(r) for r in results],
        }
        write_atomic(json_path, json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n", force=force)
    if junit_path is not None:
        write_atomic(junit_path, to_junit(results), force=force)


# -- the command ---------------------------------------------------------------------------------------
def check_one(options: Any, config: CheckConfig, view: Any, *, report_path: Path | None = None,
              force: bool = False) -> CheckResult:
    """Trace and analyze one checkpoint and evaluate it; optionally also write its HTML report.

    A trace whose gates do not reproduce the model's outputs is a failed check, not a crash.
    """
    from dataclasses import replace

    from lstmviz_cli.commands.pipeline import announce, load_and_trace
    from lstmviz_cli.errors import VerificationError
    from lstmviz_cli.explain.orchestrate import analyze_run

    name = Path(options.checkpoint).name
    # The tracer verifies at its own tolerance (1e-4); --max-verify-error off skips verification.
    options = replace(options, verify=config.max_verify_error is not None)
    try:
        run = load_and_trace(options)
    except VerificationError as error:
        case = CheckCase("verify_error", "verification error", None, None, config.max_verify_error, False,
                         error.message)
        return CheckResult(model=name, cases=[case], config=config)
    analysis = analyze_run(run, view)
    if report_path is not None:
        from lstmviz_cli.output import write_atomic
        from lstmviz_cli.page.report import render_report
        from lstmviz_cli.render.jobs import default_workers

        write_atomic(report_path, render_report(run, analysis, view, workers=default_workers()), force=force)
    announce(run)
    return evaluate(run.trace, analysis, config, model=name)


def run_check(options: Any, config: CheckConfig, view: Any, *, json_path: Path | None = None,
              junit_path: Path | None = None, report_path: Path | None = None, force: bool = False) -> CheckResult:
    """`lstmviz check`: refuse unwritable outputs first, check, then write JSON/JUnit/report."""
    from lstmviz_cli.output import check_writable

    for path in (json_path, junit_path, report_path):
        if path is not None:
            check_writable(path, force=force)
    result = check_one(options, config, view, report_path=report_path, force=force)
    write_outputs([result], json_path=json_path, junit_path=junit_path, force=force)
    return result
