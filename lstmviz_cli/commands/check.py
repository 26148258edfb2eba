"""`lstmviz check`: trace and analyze one checkpoint, judge it against the thresholds (and a baseline), write
JSON/JUnit/Markdown and the report.

Every number compared comes from the analysis stage (`analysis.checks`, `analysis.measures`,
`analysis.baseline`); the outputs are `render.checkresults`'s; the settings come from flags and config
files (`commands.checkconfig`). The report of `--report` is the analysis as the check judged it
(`analysis.checks.judge_analysis`), opened by the check's verdict (`page.sections.check`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from lstmviz_cli.analysis.baseline import Baseline, compare, ensure_comparable, read_baseline
from lstmviz_cli.analysis.checks import (
    CheckCase,
    CheckResult,
    evaluate,
    judge_analysis,
    validate_horizon,
)
from lstmviz_cli.analysis.measures import architecture, measure_run, sample_fingerprint
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.checkconfig import CheckSettings
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.commands.progress import Steps
from lstmviz_cli.errors import InputError, OutputError, VerificationError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.output import check_distinct, check_writable, write_atomic, write_json
from lstmviz_cli.page.build import REPORT_SECTIONS, build_page, select
from lstmviz_cli.page.model import Page
from lstmviz_cli.page.sections.check import KNOWLEDGE_ID, check_only_page, check_section
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.checkresults import to_json, to_junit, to_markdown
from lstmviz_cli.render.folder import INDEX, check_folder_writable, write_folder
from lstmviz_cli.render.html import render_html
from lstmviz_cli.render.jobs import Done, default_workers
from lstmviz_cli.tracing.records import Run
from lstmviz_cli.tracing.verify import VerifyPolicy


@dataclass(frozen=True)
class CheckOutputs:
    """Where `lstmviz check` writes: files, the report (one file or a folder) and the CI summaries."""

    json: Path | None = None
    junit: Path | None = None
    markdown: Path | None = None  # --markdown: the summary as a file
    step_summary: Path | None = None  # $GITHUB_STEP_SUMMARY: the summary appended to GitHub's job summary
    report: Path | None = None
    report_format: str = "html"  # "html": one self-contained file; "dir": a folder (render.folder)
    report_url: str | None = None  # where the report will be served: the summaries link its sections there
    artifacts_url: str | None = None  # where the CI keeps the run's artifacts (GitHub's run page)
    force: bool = False

    def report_reference(self) -> str | None:
        """How the summaries point at the report: its URL, else its file (a folder's index.html)."""
        if self.report_url:
            return self.report_url
        if self.report is None:
            return None
        return str(self.report / INDEX) if self.report_format == "dir" else str(self.report)


def check_outputs_writable(outputs: CheckOutputs, settings: CheckSettings, options: LoadOptions) -> None:
    """Refuse before any work an output that cannot or must not be written: a file lstmviz did not write, two
    options naming one file, an output over the baseline or the sample the run reads (OutputError)."""
    check_distinct({"--json": outputs.json, "--junit": outputs.junit, "--markdown": outputs.markdown,
                    "--report": outputs.report}, inputs={"baseline": settings.baseline, "--input": options.input})
    for path in (outputs.json, outputs.junit, outputs.markdown):
        if path is not None:
            check_writable(path, force=outputs.force)
    if outputs.report is not None:
        if outputs.report_format == "dir":
            check_folder_writable(outputs.report)
        else:
            check_writable(outputs.report, force=outputs.force)


def read_baseline_file(path: Path, *, model: str) -> Baseline:
    """The baseline in an `lstmviz check --json` file (InputError, one line, when it is missing or no baseline)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"baseline {str(path)!r} does not exist; write one with `lstmviz check MODEL --json "
                         f"{path}` on the model to compare against") from None
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"cannot read baseline {str(path)!r}: {error}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as error:
        raise InputError(f"baseline {str(path)!r} is not JSON ({error.msg} at line {error.lineno}); a baseline is "
                         "the --json output of lstmviz check") from None
    return read_baseline(document, str(path), model=model)


def write_outputs(results: list[CheckResult], outputs: CheckOutputs, *, extra: Mapping[str, object] | None = None) -> None:
    """Write the JSON, JUnit and Markdown files atomically (refusing to replace files lstmviz did not write),
    then append the Markdown summary to GitHub's job summary when there is one.

    `extra`: more keys of a several-checkpoint JSON (the timeline, `commands.timeline`).
    """
    if outputs.json is not None:
        payload = to_json(results[0]) if len(results) == 1 else {
            "passed": all(r.passed for r in results), "models": [to_json(r) for r in results], **(extra or {}),
        }
        write_json(outputs.json, payload, force=outputs.force)
    reference = outputs.report_reference()
    if outputs.junit is not None:
        write_atomic(outputs.junit, to_junit(results, report=reference), force=outputs.force)
    if outputs.markdown is None and outputs.step_summary is None:
        return
    text = to_markdown(results, report=reference, artifacts=outputs.artifacts_url)
    if outputs.markdown is not None:
        write_atomic(outputs.markdown, text, force=outputs.force)
    if outputs.step_summary is not None:
        try:
            with open(outputs.step_summary, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
        except OSError as error:
            raise OutputError(f"cannot append the summary to $GITHUB_STEP_SUMMARY ({str(outputs.step_summary)!r}): "
                              f"{error.strerror or error}") from error


def _write_report(page: Page, outputs: CheckOutputs, done: Done | None = None) -> None:
    if outputs.report is None:
        return
    if outputs.report_format == "dir":
        write_folder(page, outputs.report, workers=default_workers(), done=done)
    else:
        write_atomic(outputs.report, render_html(page, workers=default_workers(), done=done), force=outputs.force)


# -- the command ---------------------------------------------------------------------------------------
def check_page(run: Run, analysis: Analysis, result: CheckResult, view: ViewOptions) -> Page:
    """The page of `check --report`: the check's verdict first, then the report of the analysis as the check
    judged it. Sets `result.anchors` and `result.verification_anchor` (how the JSON and JUnit link to it)."""
    judged = judge_analysis(analysis, result)
    view = view if view.title else replace(view, title=f"lstmviz check: {result.model}")
    shown_run, shown_analysis, shown = select(run, judged, view)
    page = build_page(shown_run, shown_analysis, shown, sections=(check_section(result), *REPORT_SECTIONS))
    result.anchors = page.anchors()
    result.verification_anchor = KNOWLEDGE_ID if page.has_id(KNOWLEDGE_ID) else None
    return page


def check_one(options: LoadOptions, settings: CheckSettings, view: ViewOptions, *, baseline: Baseline | None = None,
              outputs: CheckOutputs | None = None, name: str | None = None) -> CheckResult:
    """Trace and analyze one checkpoint, evaluate it (and compare it with `baseline`); write its report.

    The report page is built (not drawn) even without a report to write: the JSON and JUnit link each
    case to its evidence by the page's ids. A trace whose gates do not reproduce the model's outputs
    is a failed check, not a crash (its report is the verdict alone). A --min-memory-horizon longer
    than the sample is refused (InputError) before anything is written. `name`: how the outputs name the
    checkpoint (default: its file name).
    """
    outputs = outputs or CheckOutputs()
    config = settings.config
    name = name or Path(options.checkpoint).name
    source = None if settings.source is None else str(settings.source)
    baseline_source = None if baseline is None else baseline.source
    with Steps("check") as steps:
        steps.step(f"loading and tracing {name}")
        # The tracer verifies at --max-verify-error (looser or tighter than the default) and refuses over it,
        # suggesting that flag: the refusal is this check's failed case. Off: every error computed, none refused.
        try:
            run = pipeline.load_and_trace(options, policy=VerifyPolicy.for_check(config.max_verify_error))
        except VerificationError as error:
            case = CheckCase("verify_error", "verification error", None, error.measured, config.max_verify_error,
                             False, error.message)
            result = CheckResult(model=name, cases=[case], config=config, settings_source=source,
                                 baseline=baseline_source)
            _write_report(check_only_page(result, view.title or f"lstmviz check: {name}"), outputs)
            return result
        steps.step("analysing")
        analysis = analyze_run(run, AnalysisOptions())
        validate_horizon(config, analysis, run.sample.steps)
        result = evaluate(run.trace, analysis, config, model=name)
        result.measures = measure_run(run.trace, analysis)
        result.architecture = architecture(run.trace)
        result.sample = sample_fingerprint(run.sample)
        result.settings_source = source
        if baseline is not None:
            ensure_comparable(baseline, result.architecture, result.sample)
            result.cases.extend(compare(result.measures, baseline, config.tolerances))
            result.baseline = baseline.source
        page = check_page(run, analysis, result, view)
        _write_report(page, outputs, done=steps.figures)
    pipeline.announce(run)
    return result


def run_check(options: LoadOptions, settings: CheckSettings, view: ViewOptions, outputs: CheckOutputs) -> CheckResult:
    """`lstmviz check`: refuse unwritable outputs and unusable baselines first, check, then write every output."""
    check_outputs_writable(outputs, settings, options)
    name = Path(options.checkpoint).name
    baseline = None if settings.baseline is None else read_baseline_file(settings.baseline, model=name)
    result = check_one(options, settings, view, baseline=baseline, outputs=outputs)
    write_outputs([result], outputs)
    return result
