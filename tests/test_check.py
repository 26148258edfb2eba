"""`lstmviz check`: config precedence, thresholds on known traces, JUnit/JSON outputs, exit codes."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE, make_run, numpy_trace
from conftest_papers import junit_schema, sample, write_pinned_forget

from lstmviz_cli.analysis.checks import CheckConfig, evaluate, parse_dead_limit
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.records import FigureRef, SaliencyResult
from lstmviz_cli.cli import main
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.checkconfig import resolve_config
from lstmviz_cli.errors import EXIT_CHECK_FAILED, InputError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.checkresults import to_json, to_junit

VIEW = ViewOptions()


def _run(trace=None, name: str = "tiny.pt"):  # noqa: ANN001, ANN202
    return make_run(trace if trace is not None else numpy_trace("LSTM", steps=20, hidden_size=6), name=name)


def _evaluate(run, **config):  # noqa: ANN001, ANN003, ANN202
    return evaluate(run.trace, analyze_run(run, AnalysisOptions()), CheckConfig(**config), model=run.loaded.info.name)


def _pinned_run():  # noqa: ANN202
    trace = numpy_trace("LSTM", steps=20, hidden_size=6)
    trace.layers[0].series["f"][:] = 0.999
    return _run(trace, name="pinned.pt")


# -- configuration --------------------------------------------------------------------------------
def test_config_file_then_flags(tmp_path: Path) -> None:
    (tmp_path / "lstmviz.toml").write_text('max-saturated = 0.5\nmax-dead-units = 3\nfail-on = "warning"\n')
    config, source = resolve_config({}, cwd=tmp_path)
    assert source == tmp_path / "lstmviz.toml"
    assert (config.max_saturated, config.max_dead_units, config.fail_on) == (0.5, "3", "warning")
    config, _ = resolve_config({"max_saturated": 0.8, "fail_on": None}, cwd=tmp_path)
    assert (config.max_saturated, config.fail_on) == (0.8, "warning")  # a flag wins; an absent one does not


def test_pyproject_table_found_from_a_subdirectory(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.lstmviz.check]\nmin-memory-horizon = 4\nmax-verify-error = "off"\n')
    (tmp_path / "sub").mkdir()
    config, source = resolve_config({}, cwd=tmp_path / "sub")
    assert source == tmp_path / "pyproject.toml"
    assert config.min_memory_horizon == 4 and config.max_verify_error is None
    assert config.max_saturated == 0.95  # untouched default


def test_defaults_without_any_config(tmp_path: Path) -> None:
    config, source = resolve_config({}, cwd=tmp_path)
    assert source is None and config == CheckConfig()


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ("max-saturatd = 0.5\n", "unknown setting 'max-saturatd'"),
        ("max-saturated = 1.5\n", "--max-saturated 1.5 must be a fraction"),
        ("max-dead-units = \"lots\"\n", "--max-dead-units 'lots' must be a count"),
        ('fail-on = "sometimes"\n', "--fail-on 'sometimes' must be one of error, warning, never"),
        ("max-saturated = [\n", "cannot read config"),
    ],
)
def test_bad_config_is_one_actionable_line(tmp_path: Path, toml: str, message: str) -> None:
    (tmp_path / "lstmviz.toml").write_text(toml)
    with pytest.raises(InputError) as caught:
        resolve_config({}, cwd=tmp_path)
    assert message in caught.value.message and "\n" not in caught.value.message


def test_dead_limit_parsing() -> None:
    assert parse_dead_limit("3") == (3.0, False)
    assert parse_dead_limit("10%") == (pytest.approx(0.1), True)
    for bad in ("-1", "2.5", "150%", "x"):
        with pytest.raises(InputError):
            parse_dead_limit(bad)


# -- evaluation on traces with known answers ---------------------------------------------------------
def test_healthy_trace_passes_every_check() -> None:
    result = _evaluate(_run())
    assert result.passed, [c.message for c in result.failures]
    kinds = [c.check for c in result.cases]
    assert kinds.count("saturation") == 3  # i, f, o of the single layer
    assert kinds.count("dead_units") == 1 and kinds.count("verify_error") == 1


def test_pinned_forget_gate_fails_saturation_with_the_analysis_numbers() -> None:
    run = _pinned_run()
    analysis = analyze_run(run, AnalysisOptions())
    result = evaluate(run.trace, analysis, CheckConfig(), model="pinned.pt")
    assert not result.passed
    (failure,) = result.failures
    assert failure.name == "saturation lstm/l0/fwd f"
    stat = next(s for s in analysis.gate_stats if s.series == "f")
    assert failure.value == pytest.approx(stat.frac_low + stat.frac_high) == pytest.approx(1.0)
    assert "100% of gate values saturated" in failure.message and failure.figure == FigureRef("saturation", "lstm/l0/fwd")


def test_fail_on_warning_turns_analysis_findings_into_failures() -> None:
    run = _pinned_run()
    lenient = _evaluate(run, max_saturated=None)
    assert lenient.passed  # the pinned-forget finding is a warning; the default fails only on errors
    strict = _evaluate(run, max_saturated=None, fail_on="warning")
    codes = [c.check for c in strict.failures]
    assert codes == ["finding:forget_pinned_high"]
    assert "pinned near 1" in strict.failures[0].message


def test_dead_units_count_and_share() -> None:
    trace = numpy_trace("LSTM", steps=20, hidden_size=6)
    trace.layers[0].series["h"][:, :, :3] = 0.25  # units 0, 1, 2 never move
    run = _run(trace)
    share = _evaluate(run)
    (failure,) = share.failures
    assert failure.check == "dead_units" and failure.value == pytest.approx(0.5)
    assert "3/6 units dead (units 0, 1, 2)" in failure.message
    assert _evaluate(run, max_dead_units="3").passed
    assert not _evaluate(run, max_dead_units="2").passed
    assert _evaluate(run, max_dead_units=None).passed


def test_verify_error_threshold() -> None:
    trace = numpy_trace("LSTM", steps=20, hidden_size=6)
    trace.verify_error = 2e-3
    result = _evaluate(_run(trace))
    assert [c.check for c in result.failures] == ["verify_error"]
    assert "2.00e-03" in result.failures[0].message
    assert _evaluate(_run(trace), max_verify_error=None).passed


def test_memory_horizon_reads_the_saliency_result() -> None:
    run = _run()
    analysis = analyze_run(run, AnalysisOptions())
    analysis.saliency = SaliencyResult(step=19, target="y", values=np.ones(20), horizon=3)
    low = evaluate(run.trace, analysis, CheckConfig(min_memory_horizon=5), model="m")
    assert [c.value for c in low.failures] == [3.0]
    assert evaluate(run.trace, analysis, CheckConfig(min_memory_horizon=3), model="m").passed
    analysis.saliency = None
    missing = evaluate(run.trace, analysis, CheckConfig(min_memory_horizon=3), model="m")
    assert "unavailable" in missing.failures[0].message


# -- outputs ------------------------------------------------------------------------------------------
def test_junit_validates_and_carries_the_finding_message() -> None:
    trace = numpy_trace("LSTM", steps=12, hidden_size=4, module=HOSTILE)
    trace.layers[0].series["f"][:] = 0.999
    result = _evaluate(_run(trace, name=HOSTILE + ".pt"), fail_on="warning")
    xml = to_junit([result])
    junit_schema().validate(xml)  # raises on any violation
    root = ET.fromstring(xml)
    suite = root.find("testsuite")
    assert suite is not None
    cases = suite.findall("testcase")
    assert len(cases) == len(result.cases) == int(suite.get("tests"))
    failures = [case.find("failure") for case in cases if case.find("failure") is not None]
    assert len(failures) == len(result.failures) == int(suite.get("failures")) == 2
    assert {f.get("message") for f in failures} == {c.message.replace("\x07", "\\x07") for c in result.failures}
    assert suite.get("name") == "lstmviz check " + HOSTILE.replace("\x07", "\\x07") + ".pt"
    assert "timestamp" not in xml and "hostname" not in xml  # a rerun is byte-identical: test_determinism.py


def test_json_is_complete() -> None:
    result = _evaluate(_pinned_run())
    document = to_json(result)
    assert document["passed"] is False and document["failures"] == 1
    assert document["config"]["max_saturated"] == 0.95
    names = [case["name"] for case in document["cases"]]
    assert "saturation lstm/l0/fwd f" in names
    json.dumps(document, allow_nan=False)  # JSON-ready (byte-identical across interpreters: test_determinism.py)


# -- the command --------------------------------------------------------------------------------------
def _fake_load(run):  # noqa: ANN001, ANN202
    def load(options, **_):  # noqa: ANN001, ANN003, ANN202
        return run

    return load


def test_cli_exit_codes_table_and_files(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "load_and_trace", _fake_load(_run()))
    assert main(["check", "tiny.pt", "--junit", "ok.xml", "--json", "ok.json"]) == 0
    out = capsys.readouterr().out
    assert "tiny.pt: healthy" in out and "FAIL" not in out
    junit_schema().validate(str(tmp_path / "ok.xml"))
    assert json.loads((tmp_path / "ok.json").read_text())["passed"] is True

    monkeypatch.setattr(pipeline, "load_and_trace", _fake_load(_pinned_run()))
    assert main(["check", "pinned.pt", "--junit", "ok.xml"]) == EXIT_CHECK_FAILED  # replaces its own file
    out = capsys.readouterr().out
    assert "FAIL" in out and "1 of 5 checks failed" in out
    assert 'failures="1"' in (tmp_path / "ok.xml").read_text()
    # A threshold from the command line beats the default and turns the verdict around.
    assert main(["check", "pinned.pt", "--max-saturated", "1"]) == 0


def test_cli_refuses_to_overwrite_a_foreign_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.xml").write_text("<my-own/>")
    monkeypatch.setattr(pipeline, "load_and_trace", _fake_load(_run()))
    assert main(["check", "tiny.pt", "--junit", "mine.xml"]) == 2
    assert "pass --force" in capsys.readouterr().err
    assert (tmp_path / "mine.xml").read_text() == "<my-own/>"


def test_cli_reads_lstmviz_toml(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "lstmviz.toml").write_text("[check]\nmax-saturated = 1.0\n")
    monkeypatch.setattr(pipeline, "load_and_trace", _fake_load(_pinned_run()))
    assert main(["check", "pinned.pt"]) == 0
    assert "settings from" in capsys.readouterr().out


# -- end to end on the sample models ---------------------------------------------------------------------
@pytest.mark.slow
def test_sample_model_passes_and_its_broken_copy_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    healthy = sample("digitsum.pt")
    assert main(["check", str(healthy), "--junit", "healthy.xml"]) == 0
    assert "digitsum.pt: healthy" in capsys.readouterr().out
    junit_schema().validate(str(tmp_path / "healthy.xml"))

    broken = write_pinned_forget(healthy, tmp_path / "pinned.pt")
    digits = ["--input", str(sample("digitsum.npy"))]  # the copy has no sample beside it
    assert main(["check", str(broken), *digits, "--junit", "broken.xml", "--json", "broken.json"]) == EXIT_CHECK_FAILED
    junit_schema().validate(str(tmp_path / "broken.xml"))
    document = json.loads((tmp_path / "broken.json").read_text())
    failed = {case["name"]: case for case in document["cases"] if not case["passed"]}
    assert "saturation lstm/l0/fwd f" in failed
    assert failed["saturation lstm/l0/fwd f"]["value"] > 0.99


def test_cli_report_from_the_same_trace(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls = []

    def load(options, **_):  # noqa: ANN001, ANN003, ANN202
        calls.append(options)
        return _pinned_run()

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "load_and_trace", load)
    assert main(["check", "pinned.pt", "--report", "report.html", "--json", "check.json", "--junit", "check.xml"]) \
        == EXIT_CHECK_FAILED
    assert len(calls) == 1 and calls[0].verify is True  # one trace feeds both; verified by default
    page = (tmp_path / "report.html").read_text()
    assert "lstmviz-generated" in page and "pinned.pt" in page
    # Every case links to the page's figure by the id the page gave it (one page, one set of ids).
    anchors = {case["name"]: case["anchor"] for case in json.loads((tmp_path / "check.json").read_text())["cases"]}
    assert anchors["saturation lstm/l0/fwd f"] == "fig-saturation-lstm-l0-fwd"
    assert anchors["dead units lstm/l0/fwd"] == "fig-activity-lstm-l0-fwd"
    for anchor in filter(None, anchors.values()):
        assert f'<figure id="{anchor}"' in page
    assert "report section: #fig-saturation-lstm-l0-fwd" in (tmp_path / "check.xml").read_text()
    assert main(["check", "pinned.pt", "--max-verify-error", "-1"]) == 2  # bad value: usage error, no trace


def test_summary_table_exact_output() -> None:
    from rich.console import Console

    from lstmviz_cli.render.checkresults import summary_table

    console = Console(width=90, record=True, color_system=None)
    console.print(summary_table([_evaluate(_pinned_run())]))
    assert console.export_text().splitlines()[4:9] == [
        "│ pinned.pt │ saturation lstm/l0/fwd f              │       1 │   0.95 │ FAIL   │",
        "│ pinned.pt │ verification error                    │ 3.1e-07 │ 0.0001 │ ok     │",
        "│ pinned.pt │ saturation: 2 ok, worst lstm/l0/fwd i │   0.025 │   0.95 │ ok     │",
        "│ pinned.pt │ dead units lstm/l0/fwd                │       0 │   0.25 │ ok     │",
        "└───────────┴───────────────────────────────────────┴─────────┴────────┴────────┘",
    ]
