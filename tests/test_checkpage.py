"""The page of `check --report`, checked on the page model (no drawing): its verdict first, and every badge and
finding judged by the check's own thresholds. The drawn page in a browser: test_checkbrowser.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_run, numpy_trace

from lstmviz_cli.analysis.checks import CheckConfig, CheckResult, evaluate
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.commands.check import check_page
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.page.build import report_page
from lstmviz_cli.page.model import Page
from lstmviz_cli.page.outline import outline
from lstmviz_cli.page.sections.check import check_only_page
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.tracing.records import Run


def _run(dead: int = 0) -> Run:
    trace = numpy_trace("LSTM", steps=20, hidden_size=6)
    trace.layers[0].series["f"][:] = 0.999  # pinned open: 100% saturated
    trace.layers[0].series["h"][:, :, :dead] = 0.25  # these units never move
    trace.verify_error = 3e-7
    return make_run(trace, name="pinned.pt")


def checked(config: CheckConfig, dead: int = 0) -> tuple[Page, CheckResult]:
    run = _run(dead)
    analysis = analyze_run(run, AnalysisOptions())
    result = evaluate(run.trace, analysis, config, model="pinned.pt")
    return check_page(run, analysis, result, ViewOptions()), result


def _blocks(page: Page, section: str) -> list[dict[str, object]]:
    data = outline(page)
    return next(s["blocks"] for s in data["sections"] if s["id"] == section)


def _knowledge(page: Page) -> list[list[object]]:
    card = next(b for b in _blocks(page, "summary") if b.get("card") == "What lstmviz knows about this model")
    return card["blocks"][0]["keyvalues"]


def _findings(page: Page) -> list[list[object]]:
    return next(b["findings"] for b in _blocks(page, "diagnostics") if "findings" in b)


def test_the_page_opens_with_the_verdict_and_the_checks_table() -> None:
    page, result = checked(CheckConfig(max_verify_error=1e-9, max_saturated=0.5))
    data = outline(page)
    assert data["title"] == "lstmviz check: pinned.pt"
    assert data["toc"][0] == ["check", "Check: failed"] and data["sections"][0]["id"] == "check"
    banner, table = data["sections"][0]["blocks"][:2]
    assert banner["banner"] == "fail" and banner["title"] == "Check failed: 2 of 5 checks failed"
    assert "thresholds: max-saturated 0.5, max-dead-units 25%" in banner["text"]
    rows = table["checks"]
    assert [row[0] for row in rows] == ["fail", "fail", "pass", "pass", "pass"]  # failures first
    assert rows[0][:4] == ["fail", "verification error", "3e-07", "≤ 1e-09"]
    assert rows[1][:4] == ["fail", "saturation lstm/l0/fwd f", "1", "≤ 0.5"]
    # Each row's evidence is an id on this page: the verification card, the saturation figure.
    assert rows[0][6] == "model-knowledge" and rows[1][6] == "fig-saturation-lstm-l0-fwd"
    assert all(row[6] is None or page.has_id(row[6]) for row in rows)
    assert result.anchors and result.verification_anchor == "model-knowledge"


def test_badges_and_findings_are_judged_by_the_checks_thresholds() -> None:
    """Issue 17: a failed verification check showed a green "ok" badge; diagnostics used the default thresholds."""
    strict, _ = checked(CheckConfig(max_verify_error=1e-9))
    badge = next(row for row in _knowledge(strict) if row[0] == "verified")
    assert badge[2] == "differs" and "over the check's --max-verify-error 1e-09" in badge[1]
    lenient, _ = checked(CheckConfig(max_verify_error=1e-3))
    assert next(row for row in _knowledge(lenient) if row[0] == "verified")[2] == "ok"

    # A failed case no finding states becomes an error finding, with the check's numbers.
    page, _ = checked(CheckConfig(max_saturated=0.5, fail_on="warning"))
    findings = _findings(page)
    saturation = next(f for f in findings if f[2].startswith("fails the check: lstm/l0/fwd f: 100%"))
    assert saturation[0] == "error" and saturation[3:5] == ["1", "0.5"]
    assert saturation[6] == "fig-saturation-lstm-l0-fwd"
    pinned = next(f for f in findings if "pinned near 1" in f[2])
    assert pinned[0] == "warning" and pinned[2].endswith("; fails the check (--fail-on warning)")
    definitions = next(b["definitions"] for b in _blocks(page, "diagnostics") if "definitions" in b)
    assert ["check thresholds", "max-saturated 0.5, max-dead-units 25%, min-memory-horizon off, "
            "max-verify-error 0.0001, fail-on warning"] in definitions
    # The same run's plain report: no check, so no such words and the analysis's own severities.
    run = _run()
    plain = json.dumps(outline(report_page(run, analyze_run(run, AnalysisOptions()), ViewOptions())))
    assert "fails the check" not in plain and "check thresholds" not in plain


@pytest.mark.parametrize(("limit", "severity", "verdict"), [
    ("25%", "info", "within the check's --max-dead-units 25%"),  # 1 of 6 (17%): the analysis alone warns at 10%
    ("0", "error", "fails the check: more than --max-dead-units 0"),
])
def test_dead_unit_finding_follows_max_dead_units(limit: str, severity: str, verdict: str) -> None:
    page, _ = checked(CheckConfig(max_dead_units=limit, max_saturated=None), dead=1)
    (dead,) = [f for f in _findings(page) if "dead units" in f[2]]
    assert dead[0] == severity and dead[2].endswith(verdict)
    share = 0.25 if limit.endswith("%") else 0.0
    assert float(dead[4]) == pytest.approx(share)  # the threshold shown is the check's


def test_passing_check_banner_and_the_verification_failure_page() -> None:
    page, result = checked(CheckConfig(max_saturated=None))
    banner = outline(page)["sections"][0]["blocks"][0]
    assert result.passed and banner["banner"] == "pass" and banner["title"] == "Check passed: all 2 checks passed"
    from lstmviz_cli.analysis.checks import CheckCase

    failed = CheckResult(model="broken.pt", cases=[CheckCase(
        "verify_error", "verification error", None, None, 1e-4, False, "gates miss the outputs by 0.3")])
    only = outline(check_only_page(failed, "lstmviz check: broken.pt"))
    assert [s["id"] for s in only["sections"]] == ["check"]
    assert only["sections"][0]["blocks"][0]["title"] == "Check failed: 1 of 1 checks failed"


def test_report_and_check_write_a_folder_with_format_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """--format dir: a folder (index.html, lstmviz.css, lstmviz.js, figures/), replaced only when lstmviz wrote it."""
    from test_page import stub_svg

    import lstmviz_cli.render.folder as folder_module
    from lstmviz_cli.cli import main
    from lstmviz_cli.commands import pipeline

    monkeypatch.chdir(tmp_path)
    run = _run()
    monkeypatch.setattr(pipeline, "load_and_trace", lambda options, **kw: run)
    monkeypatch.setattr(folder_module, "draw_figures", lambda specs, workers, drawer, done=None: [stub_svg(s) for s in specs])
    assert main(["report", "pinned.pt", "--format", "dir"]) == 0  # the default name, as a folder
    assert "wrote report/index.html" in capsys.readouterr().out
    files = sorted(str(p.relative_to(tmp_path / "report")) for p in (tmp_path / "report").rglob("*") if p.is_file())
    assert files[:3] == ["figures/architecture-diagram.svg", "figures/cell-lstm-l0-fwd.svg",
                         "figures/fig-activity-lstm-l0-fwd.svg"] and files[-3:] == ["index.html", "lstmviz.css", "lstmviz.js"]
    first = (tmp_path / "report" / "index.html").read_text()
    assert main(["report", "pinned.pt", "--format", "dir"]) == 0  # its own folder: replaced, byte-identical
    assert (tmp_path / "report" / "index.html").read_text() == first
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    for args, message in (
        (["report", "pinned.pt", "--format", "dir", "-o", "mine"], "holds files lstmviz did not write"),
        (["report", "pinned.pt", "--format", "dir", "-o", "r.html"], "--format dir writes a folder: give -o a folder"),
        (["report", "pinned.pt", "--format", "pdf"], "--format 'pdf' must be one of html, dir"),
        (["check", "pinned.pt", "--report", "mine", "--format", "dir"], "holds files lstmviz did not write"),
        (["check", "pinned.pt", "--format", "dir"], "--format dir says how --report is written; add --report FOLDER"),
    ):
        assert main(args) == 2
        assert message in capsys.readouterr().err
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"
    assert main(["check", "pinned.pt", "--report", "checked", "--format", "dir", "--max-saturated", "1"]) == 0
    assert 'class="banner banner-pass"' in (tmp_path / "checked" / "index.html").read_text()


def test_a_dead_unit_finding_that_fails_by_fail_on_says_so() -> None:
    page, result = checked(CheckConfig(max_dead_units="25%", max_saturated=None, fail_on="warning"), dead=1)
    assert "finding:dead_units" in {case.check for case in result.failures}  # 17% dead: the analysis warns
    (dead,) = [f for f in _findings(page) if "dead units" in f[2]]
    assert dead[0] == "error" and dead[2].endswith(
        "within the check's --max-dead-units 25%; fails the check (--fail-on warning)")
