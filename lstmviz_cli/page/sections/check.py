"""The check's verdict, first on the page of `lstmviz check --report`: a pass/fail banner and every case.

`build_page(run, judged, view, sections=(check_section(result), *REPORT_SECTIONS))` puts it before the
report's sections (`commands.check`); the rest of that page shows the analysis as the check judged it
(`analysis.checks.judge_analysis`). Each row links to the figure that shows its number (resolved when
the page is drawn, as findings' links are) or, for verification, to the summary's verification card.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

from lstmviz_cli.analysis.baseline import delta_text
from lstmviz_cli.analysis.checks import CheckCase, CheckResult, limit_text
from lstmviz_cli.analysis.checksettings import number_text
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.context import PageContext
from lstmviz_cli.page.ids import Ids
from lstmviz_cli.page.model import (
    Banner,
    Block,
    CheckRow,
    Checks,
    Definitions,
    Inline,
    Page,
    Section,
    Span,
)

# The summary's "What lstmviz knows about this model" card (page/sections/summary.py): the verification
# badges, which the check's verification rows link to.
KNOWLEDGE_ID = "model-knowledge"
_VERIFICATION_CHECKS = ("verify_error", "model_output", "baseline:verify_error")


def check_section(result: CheckResult) -> Callable[[PageContext], Section]:
    """The section builder of the check's verdict, for `build_page(..., sections=(check_section(r), ...))`."""

    def build(ctx: PageContext) -> Section:
        return check_results_section(result, ctx.ids)

    return build


def _row(case: CheckCase) -> CheckRow:
    status: Literal["fail", "pass", "skipped"] = "skipped" if case.skipped else "pass" if case.passed else "fail"
    return CheckRow(
        name=visible(case.name, 200), message=visible(case.message, 600),
        value="–" if case.value is None else number_text(case.value), limit=limit_text(case) or "–",
        baseline="" if case.baseline is None else number_text(case.baseline),
        delta="" if case.delta is None else delta_text(case.delta), status=status, figure=case.figure,
        target=KNOWLEDGE_ID if case.check in _VERIFICATION_CHECKS else "",
    )


def check_results_section(result: CheckResult, ids: Ids) -> Section:
    """The banner (verdict, thresholds, baseline, settings file) and the table of every case, failures first."""
    section_id = ids.take("check")
    total = len(result.cases)
    failed = [case for case in result.cases if not case.passed]
    if failed:
        title = f"Check failed: {len(failed)} of {total} checks failed"
    else:
        title = f"Check passed: all {total} checks passed" if total != 1 else "Check passed"
    parts: list[Inline] = [f"{visible(result.model, 200)} · thresholds: {result.config.settings_text()}"]
    if result.baseline is not None:
        parts += [" · baseline ", Span(visible(result.baseline, 300))]
    if result.settings_source is not None:
        parts += [" · settings from ", Span(visible(result.settings_source, 300))]
    if result.recurrent_only:
        parts.append(" · checked with --recurrent-only: the recurrent layers alone")
    if failed:
        parts.append(". Every finding and badge below is judged by these thresholds; each failed row links to "
                     "its evidence.")
    banner = Banner("fail" if failed else "pass", title, tuple(parts), id=ids.take("check-verdict"))
    ordered = failed + [c for c in result.cases if c.skipped] + [c for c in result.cases if c.passed and not c.skipped]
    with_baseline = any(case.baseline is not None for case in result.cases)
    terms = [
        ("limit", "≤: the value may be at most this; ≥: at least this; a finding's own threshold without a sign"
         + ("; ±: how far a measure may move from the baseline (+: only grow)" if with_baseline else "")),
        ("evidence", "the figure on this page that shows the number, or the verification card"),
    ]
    if with_baseline:
        terms.append(("Δ", "the value minus the baseline's"))
    blocks: tuple[Block, ...] = (banner, Checks(tuple(_row(case) for case in ordered), baseline=with_baseline),
                                 Definitions(tuple(terms)))
    return Section(section_id, "lstmviz check", blocks, toc="Check: " + ("failed" if failed else "passed"))


def check_only_page(result: CheckResult, title: str) -> Page:
    """The check's page when no report can be built (the trace failed verification): its verdict alone."""
    ids = Ids()
    return Page(title=visible(title, 200), heading=(visible(title, 200),), sections=(check_results_section(result, ids),),
                subtitle="The model could not be traced faithfully, so no report is shown: the check's verdict only.")
