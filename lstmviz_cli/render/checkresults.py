"""The check's results as JSON, JUnit XML, a short terminal table and a Markdown summary (GitHub's job summary).

`--json` writes (floats rounded to 6 significant digits, keys sorted) — and is a valid `--baseline`:

    {"generator": "lstmviz-generated", "schema": 2, "lstmviz": "0.1.0", "model": "charlm.pt",
     "passed": bool, "failures": int,
     "config": {"max_saturated", "max_dead_units", "min_memory_horizon", "max_verify_error", "fail_on",
                "tolerances": {"gate_mean", "gate_std", "saturation", "dead_units", "cell_max", "cell_growth",
                               "memory_horizon", "verify_error"}},   # null: not compared
     "settings_source": null | "pyproject.toml",   # the config file that supplied a setting in force
     "baseline": null | "previous.json",           # the --baseline compared against
     "recurrent_only": bool,       # checked with --recurrent-only: the recurrent layers alone
     "verification": [{"level": "gates"|"recurrence"|"names"|"model", "label", "error", "status", "detail"}],
     "provenance": the report JSON's "model" object (source, tensors, head, verification) or null,
     "architecture": [{"prefix", "kind", "input_size", "hidden_size", "proj_size"}],
     "sample": {"batch", "steps", "sha256"},
     "measures": [{"name": "gate mean lstm/l0/fwd f", "measure": "gate_mean" | "gate_std" | "saturation"
                   | "dead_units" | "cell_max" | "cell_growth" | "memory_horizon" | "verify_error",
                   "prefix", "series", "value"}],   # analysis.measures; empty when the run stopped before
                                                    # it was measured; the report JSON's "measures" too
     "cases": [{"check": "saturation" | "dead_units" | "memory_horizon" | "verify_error" | "model_output"
                         | "finding:<code>" | "baseline:<measure>",
                "name": "saturation lstm/l0/fwd f", "prefix", "value", "threshold", "passed", "skipped",
                "baseline", "delta",   # baseline cases: the baseline's value and value - baseline
                "message", "anchor": the report's HTML id of what shows it}]}

`lstmviz check A.pt B.pt ...` (several checkpoints) writes {"passed", "models": [each one's object above],
"timeline": {"axis", "points": [{"label", "step", "passed", "error", "link", "measures"}]}}, each point's
"measures" that checkpoint's own (null when it could not be measured: "error" says why).

`schema` changes when a measure's name or meaning does; a baseline of another schema is refused (a new
measure is no change: a baseline without it skips its comparison).
JUnit XML carries the same verification levels as `<properties>` of each testsuite
("verification: gates vs layer outputs" = "3.10e-07", ...; "recurrent-only" = "true" when set;
"baseline" = the file), and each failure's text names the value, threshold, baseline and delta and
the report section that shows it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from rich.table import Table
from rich.text import Text

from lstmviz_cli import __version__
from lstmviz_cli.analysis.baseline import CHECK_SCHEMA, delta_text
from lstmviz_cli.analysis.checks import CheckCase, CheckResult, limit_text
from lstmviz_cli.analysis.checksettings import number_text
from lstmviz_cli.analysis.measures import measures_json
from lstmviz_cli.glyphs import for_terminal, visible
from lstmviz_cli.output import GENERATOR_MARKER, json_number


# -- JSON ---------------------------------------------------------------------------------------------
def to_json(result: CheckResult) -> dict[str, Any]:
    """JSON-ready and deterministic: the verdict, the settings used, every case and every measure."""
    return {
        "generator": GENERATOR_MARKER,
        "schema": CHECK_SCHEMA,
        "lstmviz": __version__,
        "model": result.model,
        "passed": result.passed,
        "failures": len(result.failures),
        "config": result.config.to_json(),
        "settings_source": result.settings_source,
        "baseline": result.baseline,
        "recurrent_only": result.recurrent_only,
        "verification": [v.to_json() for v in result.verification],
        "provenance": None if result.provenance is None else result.provenance.to_json(),
        "architecture": result.architecture,
        "sample": result.sample,
        "measures": measures_json(result.measures),
        "cases": [
            {"check": case.check, "name": case.name, "prefix": case.prefix, "passed": case.passed,
             "skipped": case.skipped, "message": case.message, "anchor": evidence_anchor(result, case),
             "value": json_number(case.value), "threshold": json_number(case.threshold),
             "baseline": json_number(case.baseline), "delta": json_number(case.delta)}
            for case in result.cases
        ],
    }


def evidence_anchor(result: CheckResult, case: CheckCase) -> str | None:
    """The report's id of what shows the case: its figure, or the verification card (None: no page built)."""
    if case.figure is not None:
        return result.anchors.get(case.figure)
    if case.check in ("verify_error", "model_output", "baseline:verify_error"):
        return result.verification_anchor
    return None


def evidence_link(result: CheckResult, case: CheckCase, report: str | None) -> str | None:
    """Where the evidence is: `report#anchor` (report: a URL or the report's file name), or None."""
    anchor = evidence_anchor(result, case)
    if anchor is None:
        return None
    return f"{report}#{anchor}" if report else f"#{anchor}"


# -- JUnit --------------------------------------------------------------------------------------------
_XML_INVALID = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml_safe(text: str) -> str:
    """XML 1.0 cannot hold most control characters (even escaped): show them as \\xNN instead."""
    return _XML_INVALID.sub(lambda m: f"\\x{ord(m.group(0)):02x}", text)


def _attr(text: str) -> str:
    return quoteattr(_xml_safe(text))


def _text(text: str) -> str:
    return escape(_xml_safe(text))


def to_junit(results: list[CheckResult], *, report: str | None = None) -> str:
    """JUnit XML (the Ant/Surefire format CI systems read): one testsuite per model, one testcase per check.

    `report`: the report's URL or file name, so a failure names where its evidence is. No timestamps
    or hostnames, so a rerun is byte-identical.
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
        if result.baseline is not None:
            properties.append(("baseline", result.baseline))
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
                    f"{_text(_failure_text(result, case, report))}</failure>"
                )
                lines.append("    </testcase>")
        lines.append("  </testsuite>")
    lines.append("</testsuites>")
    return "\n".join(lines) + "\n"


def _failure_text(result: CheckResult, case: CheckCase, report: str | None) -> str:
    parts = [case.message]
    if case.value is not None:
        parts.append(f"value: {case.value:.6g}")
    if case.threshold is not None:
        parts.append(f"{'tolerance' if case.is_baseline else 'threshold'}: {limit_text(case)}")
    if case.baseline is not None:
        parts.append(f"baseline: {case.baseline:.6g}")
    if case.delta is not None:
        parts.append(f"delta: {delta_text(case.delta)}")
    link = evidence_link(result, case, report)
    if link:
        parts.append(f"report section: {link}")
    return "\n".join(parts)


# -- the terminal table -------------------------------------------------------------------------------
def summary_table(results: list[CheckResult]) -> Table:
    """A short rich Table: failures first, then skipped cases, then one line per kind of passing check.

    With a baseline, two more columns: each case's baseline value and its delta.
    """
    with_baseline = any(case.baseline is not None for r in results for case in r.cases)
    table = Table(title="lstmviz check", show_lines=False, expand=False)
    table.add_column("model")
    table.add_column("check")
    table.add_column("value", justify="right")
    table.add_column("limit", justify="right")
    if with_baseline:
        table.add_column("baseline", justify="right")
        table.add_column("Δ", justify="right")
    table.add_column("result")

    def add(result: CheckResult, label: str, case: CheckCase, value: str, verdict: str) -> None:
        extra = [_fmt(case.baseline), "-" if case.delta is None else delta_text(case.delta)] if with_baseline else []
        # The model's and its modules' names as text: no escape sequence, no rich markup.
        table.add_row(Text(for_terminal(result.model)), Text(for_terminal(label)), value, limit_text(case) or "-", *extra,
                      verdict)

    for result in results:
        for case in result.failures:
            add(result, case.name, case, _fmt(case.value), "[red]FAIL[/red]")
        for case in result.cases:
            if case.skipped:
                add(result, case.name, case, "-", "[yellow]skipped[/yellow]")
        grouped: dict[str, list[CheckCase]] = {}
        for case in result.cases:
            if case.passed and not case.skipped:
                grouped.setdefault(case.check, []).append(case)
        for check, cases in grouped.items():
            worst = max(cases, key=_badness)
            label = worst.name if len(cases) == 1 else f"{_kind(check)}: {len(cases)} ok, worst {_rest(worst)}"
            add(result, label, worst, _fmt(worst.value), "[green]ok[/green]")
    return table


def _badness(case: CheckCase) -> float:
    """How close a passing case came to its limit (the table's "worst")."""
    if case.is_baseline:
        if case.delta is None or not case.threshold:
            return -math.inf if case.delta is None else abs(case.delta)
        return abs(case.delta) / case.threshold
    if case.value is None:
        return -math.inf
    return -case.value if case.check == "memory_horizon" else case.value


def _kind(check: str) -> str:
    """ "saturation", "baseline: gate mean": a group of cases in the table."""
    if check.startswith("baseline:"):
        return "baseline " + check.removeprefix("baseline:").replace("_", " ")
    return check.replace("_", " ")


def _rest(case: CheckCase) -> str:
    """The part of a case's name that tells it from the others of its kind ("lstm/l0/fwd i")."""
    name = case.name.removesuffix(" vs baseline")
    for prefix in ("gate mean", "gate std", "saturation", "dead units", "memory horizon", "verification error"):
        if name.startswith(prefix):
            return name.removeprefix(prefix).strip() or name
    return name


def _fmt(value: float | None) -> str:
    return "-" if value is None else number_text(value)


# -- Markdown (GitHub's job summary) ------------------------------------------------------------------
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md(text: str) -> str:
    """User text safe in a Markdown table cell: controls and bidi overrides shown, never obeyed (`visible`),
    Markdown's and HTML's punctuation escaped, `&` as an entity, one line."""
    flat = visible(" ".join(str(text).split()), 500)
    return _MD_SPECIAL.sub(r"\\\1", flat.replace("&", "&amp;"))


def to_markdown(results: Sequence[CheckResult], *, report: str | None = None, artifacts: str | None = None) -> str:
    """The check as Markdown for a CI job summary: the verdict, failures first with value, limit, baseline
    and delta and a link to their evidence, the passing checks folded away, the settings in force.

    `report`: the report's URL (links) or file name (shown); `artifacts`: where the report is kept
    (a URL, e.g. the GitHub run page), said under the table.
    """
    lines = [f"<!-- {GENERATOR_MARKER} -->"]
    for result in results:
        lines.extend(_markdown_one(result, report=report, artifacts=artifacts))
    return "\n".join(lines) + "\n"


def _markdown_one(result: CheckResult, *, report: str | None, artifacts: str | None) -> list[str]:
    icon = "✅" if result.passed else "❌"
    lines = [f"### {icon} lstmviz check: {md(result.model)} — {result.verdict()}", ""]
    with_baseline = any(case.baseline is not None for case in result.cases)
    evidence = report is not None  # without a report there is nothing to point at
    columns = ["check", "value", "limit", *(["baseline", "Δ"] if with_baseline else []), "result",
               *(["evidence"] if evidence else [])]
    align = ["---", "--:", "--:", *(["--:", "--:"] if with_baseline else []), ":-:", *(["---"] if evidence else [])]
    header = ["| " + " | ".join(columns) + " |", "|" + "|".join(align) + "|"]
    failed = [case for case in result.cases if not case.passed]
    skipped = [case for case in result.cases if case.skipped]
    passed = [case for case in result.cases if case.passed and not case.skipped]
    if failed:
        lines += header + [_md_row(result, case, with_baseline, report) for case in failed] + [""]
    rest = passed + skipped
    if rest:
        summary = f"{len(passed)} check{'s' if len(passed) != 1 else ''} passed" + (
            f", {len(skipped)} skipped" if skipped else "")
        lines += ["<details><summary>" + summary + "</summary>", ""]
        lines += header + [_md_row(result, case, with_baseline, report) for case in rest]
        lines += ["", "</details>", ""]
    facts = [f"Thresholds: {md(result.config.settings_text())}."]
    if result.baseline is not None:
        facts.append(f"Baseline: {md(result.baseline)}.")
    if result.settings_source is not None:
        facts.append(f"Settings from {md(result.settings_source)}.")
    if result.recurrent_only:
        facts.append("Checked with --recurrent-only: the recurrent layers alone.")
    lines.append(" ".join(facts))
    if report or artifacts:
        where = f"[{md(report)}]({report})" if report and _is_url(report) else (md(report) if report else "the report")
        kept = f" — in this run's artifacts: {artifacts}" if artifacts else ""
        lines += ["", f"Evidence: {where}{kept}."]
    lines.append("")
    return lines


def _md_row(result: CheckResult, case: CheckCase, with_baseline: bool, report: str | None) -> str:
    verdict = "skipped" if case.skipped else ("✅ pass" if case.passed else "❌ **FAIL**")
    delta = "" if case.delta is None else delta_text(case.delta)
    cells = [md(case.name), _fmt(case.value) if case.value is not None else "–", md(limit_text(case)) or "–"]
    if with_baseline:
        cells += ["" if case.baseline is None else _fmt(case.baseline),
                  (f"**{delta}**" if delta and not case.passed else delta)]
    cells.append(verdict)
    if report is not None:
        link = evidence_link(result, case, report)
        cells.append("" if link is None else f"[{_evidence_label(case)}]({link})" if _is_url(report) else md(link))
    return "| " + " | ".join(cells) + " |"


def _evidence_label(case: CheckCase) -> str:
    if case.figure is None:
        return "verification"
    return {"gate-stats": "gate statistics", "activity": "unit activity"}.get(case.figure.kind, case.figure.kind)


def _is_url(text: str) -> bool:
    return text.startswith(("http://", "https://"))
