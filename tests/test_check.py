"""`lstmviz check`: config precedence, thresholds on known traces, JUnit/JSON outputs, exit codes."""

from __future__ import annotations

import json
import re
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE, make_run, numpy_trace
from conftest_papers import junit_schema, sample, write_pinned_forget

from lstmviz_cli.analysis.checks import CheckConfig, evaluate, parse_dead_limit, validate_horizon
from lstmviz_cli.analysis.checksettings import Tolerances
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.records import FigureRef, SaliencyResult
from lstmviz_cli.cli import main
from lstmviz_cli.commands import pipeline
from lstmviz_cli.commands.checkconfig import parse_tolerance_flags, resolve_config
from lstmviz_cli.errors import EXIT_CHECK_FAILED, InputError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.checkresults import to_json, to_junit

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

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
README = Path(__file__).resolve().parents[1] / "README.md"


def readme_toml_snippets() -> list[str]:
    """Every ```toml block of the README's `lstmviz check` section, exactly as a user copies it."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### `lstmviz check` (CI)"):text.index("### CI recipes")]
    return re.findall(r"```toml\n(.*?)```", section, re.S)


def _expected(snippet: str) -> tuple[dict[str, object], dict[str, object]]:
    """What a snippet sets, read with tomllib (independently of lstmviz): thresholds and tolerances."""
    document = tomllib.loads(snippet)
    table = document.get("check") or document["tool"]["lstmviz"]["check"]
    tolerances = table.pop("tolerance", {})
    table.pop("baseline", None)
    return table, tolerances


def _in_force(config: CheckConfig, key: str) -> object:
    return getattr(config, key.replace("-", "_"))


@pytest.mark.parametrize("index", range(2))
@pytest.mark.parametrize("file", ["lstmviz.toml", "pyproject.toml"])
def test_readme_config_snippets_are_in_force_in_both_files(tmp_path: Path, file: str, index: int) -> None:
    """Issue 17: the README's [tool.lstmviz.check] in lstmviz.toml left the defaults in force."""
    snippets = readme_toml_snippets()
    assert len(snippets) == 2, "the README's check section holds the table and its short form"
    snippet = snippets[index]
    if file == "pyproject.toml":
        snippet = '[project]\nname = "team-model"\n\n' + snippet
    (tmp_path / file).write_text(snippet, encoding="utf-8")
    if file == "pyproject.toml" and snippet.count("[check]"):
        with pytest.raises(InputError, match=r"top-level \[check\] table is not read in pyproject.toml; lstmviz reads "
                                             r"\[tool.lstmviz.check\]"):
            resolve_config({}, cwd=tmp_path)
        return
    (tmp_path / "sub").mkdir()
    settings = resolve_config({}, cwd=tmp_path / "sub")  # found from a subdirectory, as in a project
    thresholds, tolerances = _expected(snippet)
    assert thresholds, "the snippet sets thresholds"
    for key, value in thresholds.items():
        assert _in_force(settings.config, key) == (str(value) if key == "max-dead-units" else value), key
    for key, value in tolerances.items():
        assert getattr(settings.config.tolerances, key.replace("-", "_")) == value, key
    assert settings.source == tmp_path / file
    assert set(settings.from_file) >= set(thresholds)
    if "baseline" in snippet:
        assert settings.baseline == tmp_path / "lstmviz-baseline.json"  # relative to the config file
    # A flag wins, and the file no longer claims a setting it did not supply.
    key = next(iter(thresholds))
    flags = {key.replace("-", "_"): "3" if key == "max-dead-units" else
             1 if key == "min-memory-horizon" else "never" if key == "fail-on" else 0.5}
    overridden = resolve_config(flags, cwd=tmp_path)
    assert key not in overridden.from_file


def test_a_file_that_supplies_nothing_is_not_named(tmp_path: Path) -> None:
    (tmp_path / "lstmviz.toml").write_text("[check]\n")
    settings = resolve_config({}, cwd=tmp_path)
    assert settings.source is None and settings.source_text() == "" and settings.config == CheckConfig()
    (tmp_path / "lstmviz.toml").write_text("[check]\nmax-saturated = 0.5\n")
    assert resolve_config({"max_saturated": 0.8}, cwd=tmp_path).source is None  # every setting overridden
    both = resolve_config({"max_saturated": None, "fail_on": "warning"}, cwd=tmp_path)
    assert both.source_text() == f"settings from {tmp_path / 'lstmviz.toml'}: max-saturated"


def test_defaults_without_any_config(tmp_path: Path) -> None:
    settings = resolve_config({}, cwd=tmp_path)
    assert settings.source is None and settings.config == CheckConfig() and settings.baseline is None


@pytest.mark.parametrize(
    ("file", "toml", "message"),
    [
        ("lstmviz.toml", "max-saturated = 0.5\n",
         "lstmviz.toml: 'max-saturated' must be inside a table: put it under [check] (or [tool.lstmviz.check])"),
        ("lstmviz.toml", "[report]\nunits = 3\n",
         "lstmviz.toml: unknown table [report]; lstmviz reads [check] (or [tool.lstmviz.check])"),
        ("lstmviz.toml", "[tool.black]\nline-length = 3\n",
         "lstmviz.toml: unknown table [tool.black]; lstmviz reads [check] (or [tool.lstmviz.check])"),
        ("lstmviz.toml", "[check]\nmax-saturatd = 0.5\n", "lstmviz.toml: unknown setting 'max-saturatd' in [check]; known:"),
        ("lstmviz.toml", "[tool.lstmviz.check]\nmax-saturatd = 0.5\n",
         "unknown setting 'max-saturatd' in [tool.lstmviz.check]; known: max-saturated, max-dead-units"),
        ("lstmviz.toml", "[check.extra]\na = 1\n", "unknown table [check.extra] in [check]"),
        ("lstmviz.toml", "[check]\nmax-saturated = 0.5\n[tool.lstmviz.check]\nfail-on = 'never'\n",
         "both [check] and [tool.lstmviz.check] are set; keep one"),
        ("lstmviz.toml", "[check.tolerance]\ngate-men = 0.1\n", "unknown measure 'gate-men'; measures: gate-mean"),
        ("lstmviz.toml", "[check]\nmax-saturated = \"lots\"\n", "max-saturated = 'lots' must be a fraction"),
        ("lstmviz.toml", "[check]\nmin-memory-horizon = 2.5\n", "min-memory-horizon = 2.5 must be a whole number"),
        # Values out of range name the file and table they came from, not a flag the user never gave.
        ("lstmviz.toml", "[check]\nmax-saturated = 1.5\n",
         "lstmviz.toml: [check] max-saturated = 1.5 must be a fraction between 0 and 1 (or \"off\")"),
        ("lstmviz.toml", '[check]\nmax-dead-units = "lots"\n', "lstmviz.toml: [check] max-dead-units = 'lots' must be a count"),
        ("lstmviz.toml", '[check]\nmax-dead-units = "150%"\n', "[check] max-dead-units = '150%' must be a count"),
        ("lstmviz.toml", '[check]\nfail-on = "sometimes"\n',
         "lstmviz.toml: [check] fail-on = 'sometimes' must be \"error\", \"warning\" or \"never\""),
        ("lstmviz.toml", "[check]\nmin-memory-horizon = -1\n", "[check] min-memory-horizon = -1 must be a whole number"),
        ("pyproject.toml", "[tool.lstmviz.check]\nmax-verify-error = -1e-3\n",
         "pyproject.toml: [tool.lstmviz.check] max-verify-error = -0.001 must be a number >= 0"),
        ("lstmviz.toml", "[check.tolerance]\ngate-mean = -0.1\n",
         "lstmviz.toml: check.tolerance: gate-mean = -0.1 must be a number >= 0"),
        ("lstmviz.toml", "[check]\nmax-saturated = [\n", "cannot read config"),
        ("pyproject.toml", "[tool.lstmviz.report]\nunits = 3\n",
         "pyproject.toml: unknown table [tool.lstmviz.report] in [tool.lstmviz]; lstmviz reads [tool.lstmviz.check]"),
        ("pyproject.toml", "[tool.lstmviz]\nmax-saturated = 0.5\n",
         "pyproject.toml: 'max-saturated' must be inside [tool.lstmviz.check], not directly in [tool.lstmviz]"),
        ("pyproject.toml", "[tool.lstmviz.check]\nbaseline = 3\n", "baseline = 3 must be a file name"),
    ],
)
def test_bad_config_is_one_actionable_line(tmp_path: Path, file: str, toml: str, message: str) -> None:
    (tmp_path / file).write_text(toml)
    with pytest.raises(InputError) as caught:
        resolve_config({}, cwd=tmp_path)
    assert message in caught.value.message and "\n" not in caught.value.message


def test_every_threshold_flag_takes_off_and_refuses_other_words(tmp_path: Path) -> None:
    (tmp_path / "lstmviz.toml").write_text("[check]\nmax-saturated = 0.5\nmin-memory-horizon = 4\n")
    flags = {"max_saturated": "off", "max_dead_units": "off", "min_memory_horizon": "OFF", "max_verify_error": "off"}
    settings = resolve_config(flags, cwd=tmp_path)
    config = settings.config
    assert (config.max_saturated, config.max_dead_units, config.min_memory_horizon, config.max_verify_error) == (
        None, None, None, None)
    assert settings.source is None  # the file's two settings were both turned off by flags
    assert resolve_config({"max_saturated": "0.8", "min_memory_horizon": "3"}, cwd=tmp_path).config == CheckConfig(
        max_saturated=0.8, min_memory_horizon=3)
    for flags, message in (({"max_saturated": "abc"}, "--max-saturated 'abc' must be a fraction between 0 and 1"),
                           ({"min_memory_horizon": "2.5"}, "--min-memory-horizon '2.5' must be a whole number"),
                           ({"fail_on": "off"}, "--fail-on 'off': use --fail-on never")):
        with pytest.raises(InputError, match=re.escape(message)):
            resolve_config(flags, cwd=tmp_path)


def test_two_config_files_in_one_directory_are_refused(tmp_path: Path) -> None:
    (tmp_path / "lstmviz.toml").write_text("[check]\nmax-saturated = 0.5\n")
    (tmp_path / "pyproject.toml").write_text("[tool.lstmviz.check]\nfail-on = 'never'\n")
    with pytest.raises(InputError, match="hold check settings; keep them in one file"):
        resolve_config({}, cwd=tmp_path)
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')  # no lstmviz table: lstmviz.toml alone
    assert resolve_config({}, cwd=tmp_path).config.max_saturated == 0.5


def test_explicit_config_must_hold_the_check_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n')
    with pytest.raises(InputError, match=r"holds no \[tool.lstmviz.check\] table"):
        resolve_config({}, config_path=tmp_path / "pyproject.toml")
    with pytest.raises(InputError, match="does not exist"):
        resolve_config({}, config_path=tmp_path / "missing.toml")
    (tmp_path / "ci.toml").write_text("[check]\nfail-on = 'never'\n[check.tolerance]\ngate-mean = 'off'\n")
    settings = resolve_config({}, tolerances={"gate_std": 0.3}, config_path=tmp_path / "ci.toml")
    assert settings.config.fail_on == "never" and settings.config.tolerances.gate_mean is None
    assert settings.config.tolerances.gate_std == 0.3 and settings.from_file == ("fail-on", "tolerance.gate-mean")


def test_tolerance_flags() -> None:
    assert parse_tolerance_flags(["gate-mean=0.02", "dead-units=off", "memory-horizon=3"]) == {
        "gate_mean": 0.02, "dead_units": None, "memory_horizon": 3.0}
    for bad, message in (("gate-mean", "must be MEASURE=VALUE"), ("gate-men=1", "unknown measure 'gate-men'"),
                         ("gate-mean=x", "must be a number")):
        with pytest.raises(InputError, match=message):
            parse_tolerance_flags([bad])
    with pytest.raises(InputError, match="must be a number >= 0"):
        CheckConfig(tolerances=Tolerances(gate_mean=-1.0))


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
    (tmp_path / "lstmviz.toml").write_text("[tool.lstmviz.check]\nmax-saturated = 1.0\n")
    monkeypatch.setattr(pipeline, "load_and_trace", _fake_load(_pinned_run()))
    assert main(["check", "pinned.pt"]) == 0
    out = capsys.readouterr().out
    assert f"pinned.pt: settings from {tmp_path / 'lstmviz.toml'}: max-saturated" in " ".join(out.split())
    # The same file, but the flag decides: the file supplied nothing in force and is not named.
    assert main(["check", "pinned.pt", "--max-saturated", "0.5"]) == EXIT_CHECK_FAILED
    assert "settings from" not in capsys.readouterr().out
    (tmp_path / "lstmviz.toml").write_text("[tool.lstmviz.check]\nmax-saturatd = 1.0\n")
    assert main(["check", "pinned.pt"]) == 2
    assert "unknown setting 'max-saturatd' in [tool.lstmviz.check]" in capsys.readouterr().err


def test_memory_horizon_longer_than_the_sample_is_refused(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Issue 17: --min-memory-horizon 12 on a 10-step sample could never pass and did not say why."""
    run = _run()  # 20 steps
    analysis = analyze_run(run, AnalysisOptions())
    validate_horizon(CheckConfig(min_memory_horizon=20), analysis, 20)  # the whole sample: possible
    with pytest.raises(InputError, match="--min-memory-horizon 21 can never pass: the sample has only 20 steps; "
                                         "choose at most 20 or a longer --input"):
        validate_horizon(CheckConfig(min_memory_horizon=21), analysis, 20)
    analysis.saliency = SaliencyResult(step=11, target="y", values=np.ones(20), horizon=3)
    with pytest.raises(InputError, match="the output whose saliency is measured is at step 11, so at most 12 steps"):
        validate_horizon(CheckConfig(min_memory_horizon=13), analysis, 20)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(pipeline, "load_and_trace", _fake_load(run))
    assert main(["check", "tiny.pt", "--min-memory-horizon", "25", "--json", "c.json"]) == 2
    assert "can never pass: the sample has only 20 steps" in capsys.readouterr().err
    assert not (tmp_path / "c.json").exists()


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
    assert anchors["verification error"] == "model-knowledge"  # the card with the verification badges
    for anchor in filter(None, anchors.values()):
        assert f'id="{anchor}"' in page
    # The page opens with the check's verdict, and its rows link to the same ids.
    assert page.index('id="check-verdict"') < page.index('id="summary"')
    assert 'Check failed: 1 of 5 checks failed' in page and '<a href="#fig-saturation-lstm-l0-fwd">see figure</a>' in page
    assert "report section: report.html#fig-saturation-lstm-l0-fwd" in (tmp_path / "check.xml").read_text()
    assert main(["check", "pinned.pt", "--max-verify-error", "-1"]) == 2  # bad value: usage error, no trace


def test_summary_table_exact_output() -> None:
    from rich.console import Console

    from lstmviz_cli.render.checkresults import summary_table

    console = Console(width=90, record=True, color_system=None)
    console.print(summary_table([_evaluate(_pinned_run())]))
    assert console.export_text().splitlines()[4:9] == [
        "│ pinned.pt │ saturation lstm/l0/fwd f              │       1 │   ≤ 0.95 │ FAIL   │",
        "│ pinned.pt │ verification error                    │ 3.1e-07 │ ≤ 0.0001 │ ok     │",
        "│ pinned.pt │ saturation: 2 ok, worst lstm/l0/fwd i │   0.025 │   ≤ 0.95 │ ok     │",
        "│ pinned.pt │ dead units lstm/l0/fwd                │       0 │   ≤ 0.25 │ ok     │",
        "└───────────┴───────────────────────────────────────┴─────────┴──────────┴────────┘",
    ]


def test_a_sample_too_short_to_judge_skips_the_horizon_instead_of_refusing_it() -> None:
    run = _run(numpy_trace("LSTM", steps=3, hidden_size=4))
    analysis = analyze_run(run, AnalysisOptions())
    validate_horizon(CheckConfig(min_memory_horizon=12), analysis, 3)  # fewer than min_steps: no refusal
    analysis.saliency = SaliencyResult(step=2, target="y", values=np.ones(3), horizon=3)
    (case,) = [c for c in evaluate(run.trace, analysis, CheckConfig(min_memory_horizon=12), model="m").cases
               if c.check == "memory_horizon"]
    assert case.skipped and case.passed and "fewer than the 4 needed to judge" in case.message


def test_summary_table_names_a_group_of_dead_unit_cases_in_words() -> None:
    from rich.console import Console

    from lstmviz_cli.analysis.checks import CheckCase, CheckResult
    from lstmviz_cli.render.checkresults import summary_table

    cases = [CheckCase("dead_units", f"dead units lstm/l{k}/fwd", f"lstm/l{k}/fwd", share, 0.25, True, "")
             for k, share in ((0, 0.0), (1, 0.125))]
    console = Console(width=90, record=True, color_system=None)
    console.print(summary_table([CheckResult(model="m.pt", cases=cases)]))
    text = console.export_text()
    assert "│ dead units: 2 ok, worst lstm/l1/fwd │ 0.125 │" in text and "dead_units" not in text


def test_a_zero_verify_tolerance_fails_with_the_error_measured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--max-verify-error 0: float32 gates never match to 0, so the check fails, and says by how much
    (the case's value is the error the tracer measured, not null; the tolerance reads 0, not 0e+00)."""
    monkeypatch.chdir(tmp_path)
    model = Path(__file__).resolve().parents[1] / "sample_models" / "digitsum.pt"
    assert main(["check", str(model), "--max-verify-error", "0", "--json", "out.json"]) == EXIT_CHECK_FAILED
    case = next(c for c in json.loads(Path("out.json").read_text())["cases"] if c["check"] == "verify_error")
    assert case["passed"] is False and case["value"] is not None and 0 < case["value"] < 1e-5
    assert "(tolerance 0)" in case["message"]
