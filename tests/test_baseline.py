"""The baseline ratchet (`check --baseline`), the measures it compares and the CI summaries that report it.

Measures are checked against the trace's own numbers; a baseline is the check's own `--json`; a perturbed
forget gate fails and is named, with its delta; the Markdown summary is pinned as text.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE, make_run, numpy_trace
from conftest_papers import junit_schema, sample

from lstmviz_cli.analysis.baseline import read_baseline
from lstmviz_cli.analysis.checks import CheckCase, CheckConfig, CheckResult, evaluate
from lstmviz_cli.analysis.measures import measure_run
from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.analysis.records import FigureRef
from lstmviz_cli.cli import main
from lstmviz_cli.commands import pipeline
from lstmviz_cli.errors import EXIT_CHECK_FAILED, InputError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.render.checkresults import to_markdown


def _trace(hidden: int = 6, steps: int = 20, shift: float = 0.0):  # noqa: ANN202
    trace = numpy_trace("LSTM", steps=steps, hidden_size=hidden)
    if shift:  # the forget gate moved, as a retrain with another forget-gate bias would move it
        f = trace.layers[0].series["f"]
        f[:] = np.clip(f + shift, 0.0, 1.0)
    return trace


def _use(monkeypatch: pytest.MonkeyPatch, trace) -> None:  # noqa: ANN001
    run = make_run(trace, name="tiny.pt")
    monkeypatch.setattr(pipeline, "load_and_trace", lambda options, **_kwargs: run)


# -- measures ---------------------------------------------------------------------------------------------
def test_measures_read_the_trace() -> None:
    trace = _trace()
    run = make_run(trace)
    measures = {m.name: m for m in measure_run(trace, analyze_run(run, AnalysisOptions()))}
    f = trace.layers[0].series["f"].astype(np.float64)
    assert measures["gate mean lstm/l0/fwd f"].value == pytest.approx(f.mean(), rel=1e-5)
    assert measures["gate std lstm/l0/fwd f"].value == pytest.approx(f.std(), rel=1e-4)
    i = trace.layers[0].series["i"]
    assert measures["saturation lstm/l0/fwd i"].value == pytest.approx(float(((i < 0.1) | (i > 0.9)).mean()), abs=1e-6)
    assert measures["dead units lstm/l0/fwd"].value == 0.0
    assert measures["memory horizon"].value is None  # no model to differentiate: not measured
    assert measures["verification error"].value == pytest.approx(trace.verify_error or 0.0)
    assert "gate mean lstm/l0/fwd c" not in measures and "saturation lstm/l0/fwd g" not in measures
    assert measures["saturation lstm/l0/fwd f"].figure == FigureRef("saturation", "lstm/l0/fwd")


# -- the ratchet through the command ------------------------------------------------------------------------
def test_check_json_is_a_baseline_and_a_moved_forget_gate_fails(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    before = _trace()
    _use(monkeypatch, before)
    assert main(["check", "tiny.pt", "--json", "base.json"]) == 0
    document = json.loads((tmp_path / "base.json").read_text())
    assert document["schema"] == 2 and document["architecture"][0]["hidden_size"] == 6
    assert len(document["sample"]["sha256"]) == 64
    capsys.readouterr()

    # The same model against its own JSON: every measure compared, each delta exactly 0.
    assert main(["check", "tiny.pt", "--baseline", "base.json", "--json", "same.json"]) == 0
    cases = [c for c in json.loads((tmp_path / "same.json").read_text())["cases"] if c["check"].startswith("baseline:")]
    assert len(cases) == 4 + 4 + 3 + 1 + 1 + 1  # means, stds, saturations, dead units, horizon, error
    assert all(c["passed"] for c in cases) and {c["delta"] for c in cases if not c["skipped"]} == {0.0}
    assert [c["name"] for c in cases if c["skipped"]] == ["memory horizon (saliency) vs baseline"]  # measured in neither
    assert "baseline: base.json" in capsys.readouterr().out

    after = _trace(shift=0.2)
    _use(monkeypatch, after)
    code = main(["check", "tiny.pt", "--baseline", "base.json", "--json", "moved.json", "--junit", "moved.xml",
                 "--markdown", "moved.md"])
    assert code == EXIT_CHECK_FAILED
    out = " ".join(capsys.readouterr().out.split())
    assert "gate mean lstm/l0/fwd f vs baseline" in out and "FAIL" in out
    moved = {c["name"]: c for c in json.loads((tmp_path / "moved.json").read_text())["cases"]}
    mean = moved["gate mean lstm/l0/fwd f vs baseline"]
    expected = float(after.layers[0].series["f"].astype(np.float64).mean() - before.layers[0].series["f"].astype(
        np.float64).mean())
    assert not mean["passed"] and mean["delta"] == pytest.approx(expected, abs=2e-6) and mean["threshold"] == 0.05
    assert mean["baseline"] == pytest.approx(float(before.layers[0].series["f"].astype(np.float64).mean()), rel=1e-5)
    assert moved["gate mean lstm/l0/fwd i vs baseline"]["passed"]  # the other gates did not move
    junit_schema().validate(str(tmp_path / "moved.xml"))
    xml = (tmp_path / "moved.xml").read_text()
    assert f"delta: +{expected:.3g}" in xml and '<property name="baseline" value="base.json"/>' in xml
    assert f"| gate mean lstm/l0/fwd f vs baseline | {mean['value']:.3g} | ±0.05 | {mean['baseline']:.3g} | " \
           f"**+{expected:.3g}** | ❌ **FAIL** |" in (tmp_path / "moved.md").read_text()

    # Tolerances per measure: wide enough, the same move passes.
    wide = ["--tolerance", "gate-mean=0.5", "--tolerance", "gate-std=0.5", "--tolerance", "saturation=0.5"]
    assert main(["check", "tiny.pt", "--baseline", "base.json", *wide]) == 0


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("missing", "baseline 'base.json' does not exist; write one with `lstmviz check MODEL --json base.json`"),
        ("not-json", "baseline 'base.json' is not JSON"),
        ("report", "baseline 'base.json' is the --json of lstmviz report; a baseline is the --json of lstmviz check"),
        ("schema-1", "baseline 'base.json' was written by an earlier lstmviz (check JSON schema 1); this lstmviz "
                     "reads schema 2: write a new baseline with `lstmviz check MODEL --json base.json`"),
        ("architecture", "baseline 'base.json' is of another architecture: lstm/l0/fwd is LSTM 3→8 there, LSTM 3→6 here"),
        ("sample", "baseline 'base.json' was measured on another sample (1×12 steps, sha256"),
    ],
)
def test_an_unusable_baseline_is_one_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
                                          tmp_path: Path, setup: str, message: str) -> None:
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "base.json"
    if setup in ("architecture", "sample", "schema-1"):
        _use(monkeypatch, _trace(hidden=8) if setup == "architecture" else _trace(steps=12))
        assert main(["check", "tiny.pt", "--json", "base.json"]) == 0
        if setup == "schema-1":  # what lstmviz wrote before baselines existed: no schema, no measures
            document = json.loads(base.read_text())
            for key in ("schema", "measures", "lstmviz"):
                document.pop(key)
            base.write_text(json.dumps(document))
    elif setup == "not-json":
        base.write_text("<xml/>")
    elif setup == "report":
        base.write_text(json.dumps({"generator": "lstmviz-generated", "gate_stats": []}))
    capsys.readouterr()
    _use(monkeypatch, _trace())
    assert main(["check", "tiny.pt", "--baseline", "base.json", "--json", "out.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "out.json").exists()


# -- summaries where CI shows them --------------------------------------------------------------------------
def _summary_result() -> CheckResult:
    result = CheckResult(model=HOSTILE + ".pt", config=CheckConfig(max_saturated=0.5), baseline="base.json")
    result.cases = [
        CheckCase("saturation", "saturation lstm/l0/fwd f", "lstm/l0/fwd", 0.98, 0.5, False, "98% saturated > 50%",
                  FigureRef("saturation", "lstm/l0/fwd")),
        CheckCase("baseline:gate_mean", "gate mean lstm/l0/fwd f vs baseline", "lstm/l0/fwd", 0.75, 0.05, False,
                  "moved", FigureRef("gate-stats"), baseline=0.5),
        CheckCase("verify_error", "verification error", None, 3e-07, 1e-4, True, "ok"),
        CheckCase("dead_units", "dead units lstm/l0/fwd", "lstm/l0/fwd", None, 0.25, True, "skipped: 1 value",
                  FigureRef("activity", "lstm/l0/fwd"), skipped=True),
    ]
    result.anchors = {FigureRef("saturation", "lstm/l0/fwd"): "fig-saturation-lstm-l0-fwd",
                      FigureRef("gate-stats"): "fig-gate-statistics"}
    result.verification_anchor = "model-knowledge"
    return result


def test_markdown_summary_text() -> None:
    text = to_markdown([_summary_result()], report="lstmviz.html",
                       artifacts="https://github.com/team/model/actions/runs/7")
    name = r"\<script\>alert(1)\</script\>\</script\>\</svg\>" + "\"'&amp;" + r"\\u202eevil\\u202c😀\\x07.pt"
    header = "| check | value | limit | baseline | Δ | result | evidence |\n|---|--:|--:|--:|--:|:-:|---|\n"
    assert text == (
        "<!-- lstmviz-generated -->\n"
        f"### ❌ lstmviz check: {name} — 2 of 4 checks failed\n\n"
        + header +
        "| saturation lstm/l0/fwd f | 0.98 | ≤ 0.5 |  |  | ❌ **FAIL** | lstmviz.html#fig-saturation-lstm-l0-fwd |\n"
        "| gate mean lstm/l0/fwd f vs baseline | 0.75 | ±0.05 | 0.5 | **+0.25** | ❌ **FAIL** | "
        "lstmviz.html#fig-gate-statistics |\n\n"
        "<details><summary>1 check passed, 1 skipped</summary>\n\n"
        + header +
        "| verification error | 3e-07 | ≤ 0.0001 |  |  | ✅ pass | lstmviz.html#model-knowledge |\n"
        "| dead units lstm/l0/fwd | – | ≤ 0.25 |  |  | skipped |  |\n\n"
        "</details>\n\n"
        "Thresholds: max-saturated 0.5, max-dead-units 25%, min-memory-horizon off, max-verify-error 0.0001, "
        "fail-on error. Baseline: base.json.\n\n"
        "Evidence: lstmviz.html — in this run's artifacts: https://github.com/team/model/actions/runs/7.\n\n"
    )
    # Served somewhere (--report-url): every evidence a link straight to its figure.
    linked = to_markdown([_summary_result()], report="https://ci.example/job/1/artifact/lstmviz-report/index.html")
    assert "[saturation](https://ci.example/job/1/artifact/lstmviz-report/index.html#fig-saturation-lstm-l0-fwd)" in linked


def test_github_job_summary_is_appended(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    summary = tmp_path / "step_summary.md"
    summary.write_text("## an earlier step\n")
    for name, value in (("GITHUB_STEP_SUMMARY", str(summary)), ("GITHUB_SERVER_URL", "https://github.com"),
                        ("GITHUB_REPOSITORY", "team/model"), ("GITHUB_RUN_ID", "42")):
        monkeypatch.setenv(name, value)
    trace = _trace()
    trace.layers[0].series["f"][:] = 0.999
    _use(monkeypatch, trace)
    assert main(["check", "tiny.pt", "--report", "lstmviz.html"]) == EXIT_CHECK_FAILED
    text = summary.read_text()
    assert text.startswith("## an earlier step\n<!-- lstmviz-generated -->\n### ❌ lstmviz check: tiny.pt — 1 of 5")
    assert "| saturation lstm/l0/fwd f | 1 | ≤ 0.95 | ❌ **FAIL** | lstmviz.html#fig-saturation-lstm-l0-fwd |" in text
    assert "in this run's artifacts: https://github.com/team/model/actions/runs/42" in text
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(tmp_path / "missing" / "summary.md"))
    assert main(["check", "tiny.pt"]) == 2
    assert "cannot append the summary to $GITHUB_STEP_SUMMARY" in capsys.readouterr().err


# -- end to end on a sample model -------------------------------------------------------------------------
@pytest.mark.slow
def test_sample_model_baseline_passes_and_a_perturbed_forget_bias_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    monkeypatch.chdir(tmp_path)
    healthy = sample("digitsum.pt")
    digits = ["--input", str(sample("digitsum.npy"))]
    assert main(["check", str(healthy), *digits, "--json", "base.json"]) == 0
    assert main(["check", str(healthy), *digits, "--baseline", "base.json"]) == 0
    # The same checkpoint with its forget-gate biases raised by 1: a retrain that broke the forget gates.
    state = torch.load(healthy, map_location="cpu", weights_only=True)
    params = state.get("model_state_dict", state)
    for key, value in params.items():
        if ".bias_ih_l" in key:
            hidden = value.shape[0] // 4
            value[hidden:2 * hidden] += 1.0  # PyTorch's gate order is i, f, g, o
    torch.save(state, tmp_path / "retrained.pt")
    shutil.copy(tmp_path / "base.json", tmp_path / "base-copy.json")
    capsys.readouterr()
    code = main(["check", str(tmp_path / "retrained.pt"), *digits, "--baseline", "base.json", "--json", "after.json"])
    assert code == EXIT_CHECK_FAILED
    assert "gate mean lstm/l0/fwd f vs baseline" in capsys.readouterr().out
    failed = {c["name"]: c for c in json.loads((tmp_path / "after.json").read_text())["cases"] if not c["passed"]}
    assert failed["gate mean lstm/l0/fwd f vs baseline"]["delta"] > 0.05  # the forget gate opened
    assert not any(name.startswith("gate mean lstm/l0/fwd i") for name in failed)  # the input gate did not move much


def test_evaluate_keeps_its_cases_without_a_baseline() -> None:
    run = make_run(_trace())
    result = evaluate(run.trace, analyze_run(run, AnalysisOptions()), CheckConfig(), model="tiny.pt")
    assert not any(case.is_baseline for case in result.cases) and all(case.baseline is None for case in result.cases)


def test_markdown_without_a_report_has_no_evidence_column() -> None:
    text = to_markdown([_summary_result()])
    assert "| check | value | limit | baseline | Δ | result |\n" in text and "evidence" not in text.lower()
    assert "| saturation lstm/l0/fwd f | 0.98 | ≤ 0.5 |  |  | ❌ **FAIL** |\n" in text


def test_a_baseline_holding_two_checkpoints_of_the_asked_name_is_refused_not_guessed() -> None:
    entry = {"model": "model.pt", "schema": 2, "cases": [], "measures": [{"name": "memory horizon", "value": 3}]}
    with pytest.raises(InputError, match="holds 2 checks of checkpoints named model.pt; write one with the "
                                         "checkpoints' folders in their names"):
        read_baseline({"models": [entry, dict(entry)]}, "old.json", model="model.pt")
    assert read_baseline({"models": [entry, {**entry, "model": "b/model.pt"}]}, "b.json",
                         model="model.pt").measures == {"memory horizon": 3.0}


def test_an_empty_report_url_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """--report-url "" (an unset CI variable) would link every failure to '#anchor' on no page: one line, exit 2."""
    assert main(["check", "tiny.pt", "--report-url", " "]) == 2
    assert capsys.readouterr().err.strip() == ("lstmviz: error: --report-url is empty: give the address the report "
                                               "will be served at, or leave it out")
