"""The HTML report: every section from the trace, self-contained, safe, deterministic, bounded, validated."""

from __future__ import annotations

import base64
import hashlib
import html as htmllib
import os
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE, TEXT, make_run, numpy_trace, split_options

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.errors import InputError
from lstmviz_cli.page.report import render_report, resolve_view
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.render.html import environment
from lstmviz_cli.tracing.records import Run

SECTIONS = ("summary", "architecture", "cell", "unrolled", "heatmaps", "weights", "gate-plots")
ROOT = Path(__file__).resolve().parent.parent


def render(run: Run, **view: object) -> str:
    from lstmviz_cli.explain.orchestrate import analyze_run

    view_options, analysis_options = split_options(**view)
    return render_report(run, analyze_run(run, analysis_options), view_options)


@pytest.fixture
def core_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Skip the analysis engineer's sections (tested in their files) where a test checks only ours."""
    from lstmviz_cli.page import report

    monkeypatch.setattr(report, "_analysis_context", lambda run, analysis, view: None)


@pytest.fixture(scope="module")
def lstm_html() -> str:
    trace = numpy_trace("LSTM", steps=len(TEXT), hidden_size=6)
    return render(make_run(trace, name="charlm.pt", text=TEXT, vocab=tuple("abcde"), task="char-lm"))


@pytest.fixture(scope="module")
def hostile_html() -> str:
    tokens = [HOSTILE, "</script>", "<script>document.documentElement.setAttribute('data-pwned','1')</script>",
              "<b>x</b>", '"', "\u05e9\u05dc\u05d5\u05dd", "\x00", "$x$", "\\l"]
    trace = numpy_trace("LSTM", steps=len(tokens), hidden_size=4, module=HOSTILE)
    trace.meta.path[1]["name"] = "</svg><script>alert(2)</script>"
    run = make_run(trace, name=HOSTILE + ".pt", labels=tokens, kind="tokens", vocab=tuple(tokens))
    run.sample.description = HOSTILE
    return render(run, title=HOSTILE)


# -- content ------------------------------------------------------------------------------------


def test_every_section_is_present_with_real_numbers(lstm_html: str) -> None:
    for section in (*SECTIONS, "tokens"):
        assert f'<section id="{section}"' in lstm_html
        assert f'href="#{section}"' in lstm_html  # and in the table of contents
    assert "W_ih 4H×I = 24×3" in lstm_html  # the cell diagram carries this model's sizes
    assert "3.10e-07" in lstm_html  # the verification error of the trace
    assert 'id="heatmap-lstm-l0-fwd"' in lstm_html and 'id="weights-lstm-l0-fwd"' in lstm_html
    assert "charlm.pt" in lstm_html and "He said" not in lstm_html.split("<body>")[0]


def test_cell_values_are_the_analysis_means(core_only: None) -> None:
    from lstmviz_cli.explain.orchestrate import analyze_run

    trace = numpy_trace("LSTM", steps=8, hidden_size=3)
    run = make_run(trace)
    analysis = analyze_run(run, AnalysisOptions())
    html = render_report(run, analysis, ViewOptions())
    mean_f = [s.mean for s in analysis.gate_stats if s.series == "f"][0]
    assert f"= {mean_f:.2f}" in html
    assert mean_f == pytest.approx(float(trace.layers[0].series["f"].mean()), abs=1e-6)


def test_at_step_writes_that_steps_values(core_only: None) -> None:
    trace = numpy_trace("LSTM", steps=8, hidden_size=3)
    html = render(make_run(trace), at_step=3)
    f3 = float(trace.layers[0].series["f"][0, 3].mean())
    assert "step 3, mean over units" in html and f"= {f3:.2f}" in html
    assert "dashed line: step 3, shown on the cell diagram" in html


def test_token_highlighting_colours_by_the_unit(core_only: None) -> None:
    from lstmviz_cli.render.highlight import LEVELS

    trace = numpy_trace("LSTM", steps=len(TEXT), hidden_size=6)
    html = render(make_run(trace, text=TEXT))
    block = re.search(r'<div class="highlight" id="tokens-lstm-l0-fwd-c-(\d+)(-ranked)?">.*?</pre>', html, re.S)
    unit = int(block.group(1))
    cells = trace.layers[0].series["c"][0]
    top = int(np.argmax(cells.var(axis=0)))
    assert re.search(rf'id="tokens-lstm-l0-fwd-c-{top}(-ranked)?"', html)  # the highest-variance unit is shown
    c = cells[:, unit].astype(np.float64)
    levels = [int(v) for v in re.findall(r'<span class="v(-?\d+)"', block.group(0))]
    expected = [round((v / np.abs(c).max() + 1) / 2 * (LEVELS - 1)) for v in c]
    assert levels == expected and len(levels) == len(TEXT)
    assert f"colour scale ±{np.abs(c).max():.3g}" in block.group(0)
    assert '<div id="unit-picker">' in html


def test_gru_and_bidirectional_projected_models(gru_run: Run, bilstm_run: Run, core_only: None) -> None:
    gru = render(gru_run)
    assert "update gate (z)" in gru and "1 − z" in gru and "c carried" not in gru
    bi = render(bilstm_run)
    for prefix in ("lstm-l0-fwd", "lstm-l0-bwd", "lstm-l1-fwd", "lstm-l1-bwd"):
        assert f'id="heatmap-{prefix}"' in bi and f'id="cell-{prefix}"' in bi
    assert "W_hr P×H = 3×6" in bi and "backward rows run right to left" in bi
    assert 'id="tokens"' not in bi  # float features: no text to highlight


def test_view_selection_layers_units_steps(bilstm_run: Run, core_only: None) -> None:
    html = render(bilstm_run, layers="lstm/l1/bwd", units="0,2", steps="2:6", sort_units="cluster")
    assert 'id="heatmap-lstm-l1-bwd"' in html and 'id="heatmap-lstm-l0-fwd"' not in html
    assert "units 0, 2 of 6" in html and "steps 2–5" in html and "Steps 2–5 of 10" in html


@pytest.mark.parametrize(
    "view, message",
    [
        ({"steps": "5:2"}, "--steps '5:2': expected START:STOP with 0 <= START < STOP <= 10"),
        ({"steps": "0:11"}, "--steps '0:11'"),
        ({"steps": "a:b"}, "--steps 'a:b'"),
        ({"layers": "gru"}, "--layers 'gru' matches no recurrent layer; choose from: lstm/l0/fwd, lstm/l0/bwd, lstm/l1/fwd, lstm/l1/bwd"),
        ({"units": "0,99"}, "unit 99 is out of range; the selected layers have units 0–5"),
        ({"units": "-3"}, "--units '-3'"),
        ({"units": "many"}, "--units 'many'"),
        ({"sort_units": "random"}, "--sort-units 'random': choose one of none, variance, cluster"),
        ({"at_step": 10}, "--at-step 10: the sample has steps 0–9"),
    ],
)
def test_bad_view_options_are_one_line_errors(bilstm_run: Run, view: dict, message: str) -> None:
    with pytest.raises(InputError) as error:
        resolve_view(ViewOptions(**view), bilstm_run)
    assert message in error.value.message and "\n" not in error.value.message


def test_tolerates_a_minimal_analysis(lstm_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the analysis module's view (or with an analysis lacking optional parts) sections are omitted."""
    from types import SimpleNamespace

    from lstmviz_cli.page import report

    monkeypatch.setattr(report, "_analysis_context", lambda run, analysis, view: None)
    html = render_report(lstm_run, SimpleNamespace(gate_stats=[], prediction=None), ViewOptions())
    assert '<section id="gate-plots"' not in html and "No prediction" in html
    assert '<section id="heatmaps"' in html


# -- properties ---------------------------------------------------------------------------------


def external_references(html: str) -> list[str]:
    """Everything that would make the browser reach outside the file."""
    found = []
    text = re.sub(r'\sxmlns(:\w+)?="[^"]*"', "", html)  # XML namespace names are not fetched
    found += re.findall(r"https?://[^\s\"'<>]*", text)
    found += re.findall(r"//cdn[^\s\"'<>]*", text)
    found += re.findall(r"file:[^\s\"'<>]*", text)
    for attr, value in re.findall(r"\s(src|href|xlink:href|action|poster)\s*=\s*[\"']([^\"']*)[\"']", html):
        if not (value.startswith("#") or value.startswith("data:")):
            found.append(f"{attr}={value}")
    found += re.findall(r"url\((?!\s*[\"']?#|\s*[\"']?data:)[^)]*\)", html)
    found += re.findall(r"@import", html)
    return found


def test_self_contained(lstm_html: str, hostile_html: str) -> None:
    assert external_references(lstm_html) == []
    assert external_references(hostile_html) == []
    assert external_references('<img src="x.png"><a href="http://e.com">') == ["http://e.com", "src=x.png", "href=http://e.com"]


def test_generator_marker_and_csp(lstm_html: str) -> None:
    from lstmviz_cli.output import GENERATOR_MARKER

    assert f'<meta name="generator" content="{GENERATOR_MARKER}' in lstm_html
    csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]*)">', lstm_html).group(1)
    csp = htmllib.unescape(csp)  # the attribute is escaped like any other; the browser decodes it
    assert "default-src 'none'" in csp and "https:" not in csp and "'unsafe-eval'" not in csp
    script_src = re.search(r"script-src ([^;]*)", csp).group(1)
    assert "'unsafe-inline'" not in script_src
    # The one executable script is allowed by its hash; nothing else can run.
    scripts = re.findall(r"<script>(.*?)</script>", lstm_html, re.S)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert script_src == f"'sha256-{digest}'"
    assert "innerHTML" not in scripts[0] and "textContent" in scripts[0]


def test_hostile_strings_are_text_never_markup(hostile_html: str) -> None:
    html = hostile_html
    # Exactly our two script elements: the JSON data island and the hashed script.
    assert len(re.findall(r"<script\b", html, re.I)) == 2
    assert "<script>alert" not in html and "<b>x</b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "</svg><script>" not in html and "&lt;/svg&gt;&lt;script&gt;alert(2)" in html
    # Bidi overrides and control characters are shown, not obeyed.
    assert "\u202e" not in html and "\\u202e" in html
    assert "\x07" not in html and "\x00" not in html
    assert "\U0001f600" in html  # emoji survive as text
    # The data island cannot be closed early: tojson escapes < > & '.
    island = re.search(r'<script type="application/json" id="lstmviz-picker">(.*?)</script>', html, re.S).group(1)
    assert "<" not in island and ">" not in island
    # Every svg element is closed by its own end tag: no label broke out of its diagram.
    assert html.count("<svg") == html.count("</svg>")


def test_deterministic(lstm_run: Run) -> None:
    assert render(lstm_run) == render(lstm_run)


def test_bounded_for_a_very_long_sequence() -> None:
    steps = 20_000
    text = ("the quick (brown) fox said \"hi\". " * 700)[:steps]
    trace = numpy_trace("LSTM", steps=steps, hidden_size=8, seed=3)
    html = render(make_run(trace, text=text))
    size = len(html.encode("utf-8"))
    assert size < 3_000_000, size
    assert "averaged over bins of 50 steps" in html  # 20,000 steps into 400 columns
    assert "Steps 0–19 of 20000" in html  # the unrolled diagram shows a window
    assert "… 19980 steps" in html
    assert "showing steps 0–1999 of 0–19999" in html  # highlighted text is capped


def test_environment_autoescapes_j2_and_is_strict() -> None:
    env = environment()
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert env.autoescape is True
    with pytest.raises(Exception, match="undefined"):
        env.from_string("{{ missing }}").render()
    assert not re.search(r"\|\s*safe", (ROOT / "templates" / "_summary.html.j2").read_text())


def test_templates_never_mark_user_text_safe() -> None:
    """`|safe` appears only on SVG produced by matplotlib/Graphviz (figure/diagram fields)."""
    for path in sorted((ROOT / "templates").glob("*.j2")):
        if path.name == "_analysis.html.j2":
            continue
        for match in re.finditer(r"\{\{\s*([^}|]+?)\s*\|\s*safe", path.read_text()):
            assert match.group(1).endswith(("svg",)), (path.name, match.group(0))


def test_unsafe_load_is_stamped(lstm_run: Run, core_only: None) -> None:
    run = Run(
        loaded=replace(lstm_run.loaded, info=replace(lstm_run.loaded.info, unsafe=True)),
        sample=lstm_run.sample,
        trace=lstm_run.trace,
    )
    assert "Loaded with unsafe deserialization" in render(run, layers="lstm")


# -- end to end through the CLI -------------------------------------------------------------------

SAMPLES = ROOT / "sample_models"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["charlm.pt", "sine.pt", "gru_digitsum.safetensors"])
def test_sample_model_report_end_to_end(name: str, tmp_path: Path) -> None:
    from lstmviz_cli.cli import main

    checkpoint = SAMPLES / name
    if not checkpoint.exists():
        pytest.skip(f"{checkpoint} not trained yet")
    out = tmp_path / "report.html"
    assert main(["report", str(checkpoint), "-o", str(out)]) == 0
    html = out.read_text(encoding="utf-8")
    for section in SECTIONS:
        assert f'<section id="{section}"' in html, section
    assert ('<section id="tokens"' in html) == (name != "sine.pt")  # text/token inputs only
    assert external_references(html) == []
    assert len(html.encode()) < 8_000_000
    if name == "gru_digitsum.safetensors":
        assert "update gate (z)" in html and "W_ih 3H×I" in html
    if name == "sine.pt":
        assert 'id="heatmap-lstm-l1-bwd"' in html and "W_hr P×H = 16×32" in html
    if name == "charlm.pt":
        assert "most likely next tokens" in html


def test_templates_found_in_the_package_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel ships templates/ as lstmviz_cli/templates (force-include); the editable checkout uses the repo's."""
    import importlib.resources

    from lstmviz_cli.page import report

    assert report.templates_dir() == ROOT / "templates"
    for name in re.findall(r'include "([^"]+)"', (ROOT / "templates" / "report.html.j2").read_text()):
        assert (ROOT / "templates" / name).is_file(), name
    (tmp_path / "templates").mkdir()
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)
    assert report.templates_dir() == tmp_path / "templates"


@pytest.mark.slow
def test_byte_identical_across_processes(tmp_path: Path) -> None:
    """Separate interpreters (different hash seeds) write the same bytes: no set order, ids or dates leak.

    The second one draws its figures in two worker processes: the page must not depend on that either.
    """
    import subprocess
    import sys

    script = (
        "import sys; sys.path.insert(0, 'tests');"
        "from conftest import numpy_trace, make_run, TEXT;"
        "from lstmviz_cli.page.view import ViewOptions; from lstmviz_cli.analysis.options import AnalysisOptions; from lstmviz_cli.explain.orchestrate import analyze_run;"
        "from lstmviz_cli.page.report import render_report;"
        "run = make_run(numpy_trace('LSTM', steps=len(TEXT), hidden_size=4, num_layers=2, bidirectional=True), text=TEXT);"
        "v = ViewOptions(); sys.stdout.write(render_report(run, analyze_run(run, AnalysisOptions()), v, workers=int(sys.argv[1])))"
    )
    outputs = []
    for seed, workers in (("1", "1"), ("2", "2")):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script, workers], cwd=ROOT, env=env, capture_output=True,
                              check=True)
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and len(outputs[0]) > 10_000
