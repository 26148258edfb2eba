"""`lstmviz check`: trace and analyze one checkpoint, judge it against the thresholds, write JSON/JUnit/report.

Every number compared comes from the analysis stage (`analysis.checks`); the outputs are
`render.checkresults`'s; the settings come from flags and config files (`commands.checkconfig`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lstmviz_cli.analysis.checks import CheckCase, CheckResult, evaluate
from lstmviz_cli.analysis.checksettings import CheckConfig
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.commands.progress import Steps
from lstmviz_cli.errors import VerificationError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.output import check_writable, write_atomic, write_json
from lstmviz_cli.page.build import build_page, select
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.checkresults import to_json, to_junit
from lstmviz_cli.render.html import render_html
from lstmviz_cli.render.jobs import default_workers


def write_outputs(results: list[CheckResult], *, json_path: Path | None, junit_path: Path | None, force: bool) -> None:
    """Write the JSON and JUnit files atomically (refusing to replace files lstmviz did not write)."""
    if json_path is not None:
        payload = to_json(results[0]) if len(results) == 1 else {
            "passed": all(r.passed for r in results), "models": [to_json(r) for r in results],
        }
        write_json(json_path, payload, force=force)
    if junit_path is not None:
        write_atomic(junit_path, to_junit(results), force=force)


# -- the command ---------------------------------------------------------------------------------------
def check_one(options: LoadOptions, config: CheckConfig, view: ViewOptions, *, report_path: Path | None = None,
              force: bool = False) -> CheckResult:
    """Trace and analyze one checkpoint and evaluate it; optionally also write its HTML report.

    The report page is built (not drawn) even without `report_path`: the JSON and JUnit link each case
    to its figure by the page's ids. A trace whose gates do not reproduce the model's outputs is a
    failed check, not a crash.
    """
    name = Path(options.checkpoint).name
    # The tracer verifies at its own tolerance (1e-4); --max-verify-error off skips verification.
    options = replace(options, verify=config.max_verify_error is not None)
    with Steps("check") as steps:
        steps.step(f"loading and tracing {name}")
        try:
            run = pipeline.load_and_trace(options)
        except VerificationError as error:
            case = CheckCase("verify_error", "verification error", None, None, config.max_verify_error, False,
                             error.message)
            return CheckResult(model=name, cases=[case], config=config)
        steps.step("analysing")
        analysis = analyze_run(run, AnalysisOptions())
        page = build_page(*select(run, analysis, view))
        if report_path is not None:
            write_atomic(report_path, render_html(page, workers=default_workers(), done=steps.figures), force=force)
    pipeline.announce(run)
    result = evaluate(run.trace, analysis, config, model=name)
    result.anchors = page.anchors()
    return result


def run_check(options: LoadOptions, config: CheckConfig, view: ViewOptions, *, json_path: Path | None = None,
              junit_path: Path | None = None, report_path: Path | None = None, force: bool = False) -> CheckResult:
    """`lstmviz check`: refuse unwritable outputs first, check, then write JSON/JUnit/report."""
    for path in (json_path, junit_path, report_path):
        if path is not None:
            check_writable(path, force=force)
    result = check_one(options, config, view, report_path=report_path, force=force)
    write_outputs([result], json_path=json_path, junit_path=junit_path, force=force)
    return result
