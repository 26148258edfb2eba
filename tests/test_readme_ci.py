"""The README's CI recipes, copied from the README by the test and run unchanged (GitHub Actions, GitLab CI,
Jenkins): every `lstmviz` line works, writes what the recipe then uploads, and a moved measure is named with
its delta where that CI shows it (job summary, JUnit), linked to its evidence."""

from __future__ import annotations

import glob
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest
from conftest import make_run, numpy_trace
from test_page import stub_svg

import lstmviz_cli.render.folder as folder_module
import lstmviz_cli.render.html as html_module
from lstmviz_cli.cli import main
from lstmviz_cli.commands import pipeline

README = Path(__file__).resolve().parents[1] / "README.md"
ENV = {
    "GITHUB_SERVER_URL": "https://github.com", "GITHUB_REPOSITORY": "team/model", "GITHUB_RUN_ID": "42",
    "CI_JOB_URL": "https://gitlab.example/team/model/-/jobs/7", "BUILD_URL": "https://jenkins.example/job/model/3/",
}


def recipes() -> dict[str, str]:
    """The code blocks of the README's "CI recipes" section, by the CI they are for."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### CI recipes"):]
    section = section[:section.index("\n## ")]
    blocks = re.findall(r"```(yaml|groovy)\n(.*?)```", section, re.S)
    assert [lang for lang, _ in blocks] == ["yaml", "yaml", "groovy"]
    return {"github": blocks[0][1], "gitlab": blocks[1][1], "jenkins": blocks[2][1]}


def lstmviz_lines(recipe: str) -> list[str]:
    """The lstmviz command lines of a recipe, as its shell would receive them."""
    lines = []
    for line in recipe.splitlines():
        found = re.search(r"(?:- run: |- |sh ')(lstmviz .*?)'?$", line.strip())
        if found:
            lines.append(found.group(1))
    return lines


def run_line(line: str, monkeypatch: pytest.MonkeyPatch) -> int:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    words = [re.sub(r"\$\{?(\w+)\}?", lambda m: ENV.get(m.group(1), m.group(0)), word) for word in shlex.split(line)]
    assert words[0] == "lstmviz"
    return main(words[1:])


def _trace(shift: float = 0.0):  # noqa: ANN202
    trace = numpy_trace("LSTM", steps=20, hidden_size=6)
    if shift:
        f = trace.layers[0].series["f"]
        f[:] = np.clip(f + shift, 0.0, 1.0)
    return trace


@pytest.mark.parametrize("ci", ["github", "gitlab", "jenkins"])
def test_readme_ci_recipe_runs_unchanged(ci: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "model.pt").write_bytes(b"")  # the recipes' checkpoint; its trace is the test's
    monkeypatch.setattr(html_module, "draw_figures", lambda specs, workers, drawer, done=None: [stub_svg(s) for s in specs])
    monkeypatch.setattr(folder_module, "draw_figures", lambda specs, workers, drawer, done=None: [stub_svg(s) for s in specs])
    summary = tmp_path / "job-summary.md"
    if ci == "github":
        monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    text = README.read_text(encoding="utf-8")
    create = re.search(r"`(lstmviz check models/model.pt --json lstmviz-baseline.json)`", text)
    assert create, "the recipes say how the baseline is written"
    recipe = recipes()[ci]
    (line,) = [line for line in lstmviz_lines(recipe) if line.startswith("lstmviz check")]

    trusted = make_run(_trace(), name="model.pt")
    monkeypatch.setattr(pipeline, "load_and_trace", lambda options, **_kwargs: trusted)
    assert run_line(create.group(1), monkeypatch) == 0
    assert run_line(line, monkeypatch) == 0, capsys.readouterr()

    retrained = make_run(_trace(shift=0.2), name="model.pt")  # a retrain moved the forget gate
    monkeypatch.setattr(pipeline, "load_and_trace", lambda options, **_kwargs: retrained)
    assert run_line(line, monkeypatch) == 1
    junit = (tmp_path / "lstmviz.xml").read_text()
    assert 'failure type="baseline:gate_mean" message="gate mean lstm/l0/fwd f:' in junit
    cases = {c["name"]: c for c in json.loads((tmp_path / "lstmviz.json").read_text())["cases"]}
    delta = cases["gate mean lstm/l0/fwd f vs baseline"]["delta"]
    assert delta > 0.05

    if ci == "github":  # the job summary names the measure and its delta; the artifact holds what it cites
        shown = summary.read_text()
        assert "### ✅ lstmviz check: model.pt — healthy" in shown  # the first, passing run
        assert re.search(r"\| gate mean lstm/l0/fwd f vs baseline \| [\d.]+ \| ±0\.05 \| [\d.]+ \| "
                         rf"\*\*\+{delta:.3g}\*\* \| ❌ \*\*FAIL\*\* \| lstmviz\.html#fig-gate-statistics \|", shown)
        assert "in this run's artifacts: https://github.com/team/model/actions/runs/42" in shown
        paths = re.search(r"path: \|\n((?:\s+\S+\n)+)", recipe)
        assert paths
        uploaded = paths.group(1).split()
        assert uploaded and all((tmp_path / name).is_file() for name in uploaded)
        assert 'id="fig-gate-statistics"' in (tmp_path / "lstmviz.html").read_text()
    elif ci == "gitlab":  # JUnit for the merge request, each failure linked to its figure in the exposed report
        assert "report section: https://gitlab.example/team/model/-/jobs/7/artifacts/file/lstmviz.html#fig-gate-statistics" in junit
        listed = re.search(r"paths: \[(.*?)\]", recipe)
        assert listed and all((tmp_path / name.strip()).is_file() for name in listed.group(1).split(","))
        assert re.search(r"junit: lstmviz.xml", recipe)
    else:  # Jenkins: the report as a folder for its strict CSP, JUnit failures linked into it
        assert "report section: https://jenkins.example/job/model/3/artifact/lstmviz-report/index.html#fig-gate-statistics" in junit
        index = (tmp_path / "lstmviz-report" / "index.html").read_text()
        assert "<style" not in index and 'id="fig-gate-statistics"' in index
        archived = re.search(r"archiveArtifacts artifacts: '([^']*)'", recipe)
        assert archived
        for pattern in archived.group(1).split(","):
            assert glob.glob(pattern.strip(), recursive=True), pattern
        assert re.search(r"junit 'lstmviz.xml'", recipe)
