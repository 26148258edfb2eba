"""The check's results as JSON, JUnit XML and a short terminal table.

`--json` writes (floats rounded to 6 significant digits, keys sorted):

    {"generator": "lstmviz-generated", "model": "charlm.pt", "passed": bool, "failures": int,
     "config": {"max_saturated", "max_dead_units", "min_memory_horizon", "max_verify_error", "fail_on"},
     "recurrent_only": bool,       # checked with --recurrent-only: the recurrent layers alone
     "verification": [{"level": "gates"|"recurrence"|"names"|"model", "label", "error", "status", "detail"}],
     "provenance": the report JSON's "model" object (source, tensors, head, verification) or null,
     "measures": the report JSON's "measures" (analysis.timeline: memory gate, saturation, dead units,
                 |c|, memory horizon) or null when the run stopped before its analysis,
     "cases": [{"check": "saturation" | "dead_units" | "memory_horizon" | "verify_error" | "model_output"
                         | "finding:<code>",
                "name": "saturation lstm/l0/fwd f", "prefix", "value", "threshold", "passed",
                "message", "anchor": the report's HTML id of the figure that shows it}]}

JUnit XML carries the same verification levels as `<properties>` of each testsuite
("verification: gates vs layer outputs" = "3.10e-07", ...; "recurrent-only" = "true" when set).
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from rich.table import Table

from lstmviz_cli.analysis.checks import CheckCase, CheckResult
from lstmviz_cli.output import GENERATOR_MARKER


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
        "measures": None if result.measures is None else result.measures.to_json(),
        "cases": [
            {**{k: v for k, v in asdict(case).items() if k != "figure"}, "anchor": _anchor(result, case),
             "value": _round(case.value), "threshold": _round(case.threshold)}
            for case in result.cases
        ],
    }


def _anchor(result: CheckResult, case: CheckCase) -> str | None:
    """The report's id of the figure that shows the case (None: no figure, or no page built)."""
    return None if case.figure is None else result.anchors.get(case.figure)


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
                    f"{_text(_failure_text(result, case))}</failure>"
                )
                lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"


def _failure_text(result: CheckResult, case: CheckCase) -> str:
    parts = [case.message]
    if case.value is not None:
        parts.append(f"value: {case.value:.6g}")
    if case.threshold is not None:
        parts.append(f"threshold: {case.threshold:.6g}")
    anchor = _anchor(result, case)
    if anchor:
        parts.append(f"report section: #{anchor}")
    return "\n".join(parts)


def summary_table(results: list[CheckResult]) -> Table:
    """A short rich Table: failures first, then one line per kind of passing check."""
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
