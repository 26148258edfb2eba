"""The HTML report: every section from the trace, self-contained, safe, deterministic, bounded, validated.

What a section says is checked on the page model (`test_page.py`, no drawing); the few tests here that
draw a whole page check what only the drawn page can show: figures, escaping inside SVG, ids, size.
"""

from __future__ import annotations

import base64
import hashlib
import html as htmllib
import os
import re
from collections import Counter
from dataclasses import replace
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from conftest import HOSTILE, TEXT, make_run, numpy_trace
from test_page import page_of, text_of

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.errors import InputError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.page.figuredata import CellData
from lstmviz_cli.page.model import FigureSpec
from lstmviz_cli.page.view import ViewOptions, resolve_view
from lstmviz_cli.render.draw import diagram
from lstmviz_cli.render.html import environment, render_html, templates_dir
from lstmviz_cli.tracing.records import Run

SECTIONS = ("summary", "architecture", "cell", "unrolled", "heatmaps", "weights", "gate-statistics", "diagnostics")
ROOT = Path(__file__).resolve().parent.parent


def render(run: Run, **view: object) -> str:
    return render_html(page_of(run, **view))


def ids_of(html: str) -> Counter[str]:
    """Every id attribute of a page, parsed as a browser would (SVG included)."""

    class Ids(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: Counter[str] = Counter()

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found.update(value for key, value in attrs if key == "id" and value is not None)

    parser = Ids()
    parser.feed(html)
    return parser.found


def cell_dot(spec: FigureSpec) -> str:
    """The DOT text of a cell diagram spec (what Graphviz draws; no `dot` run)."""
    assert isinstance(spec.data, CellData)
    return str(diagram(spec.data).source)


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


# -- content (on the page model) -----------------------------------------------------------------


def test_every_section_is_present_with_real_numbers(lstm_run: Run) -> None:
    page = page_of(lstm_run)
    ids = [section.id for section in page.sections]
    for section in (*SECTIONS, "tokens"):
        assert section in ids and (section, dict(page.toc())[section]) in page.toc()
    cell = next(spec for spec in page.figures() if spec.ref.kind == "cell")
    assert "4H×I = 24×3" in cell_dot(cell)  # the cell diagram carries this model's sizes
    assert "3.10e-07" in text_of(page)  # the verification error of the trace
    figure_ids = {spec.id for spec in page.figures()}
    assert {"heatmap-lstm-l0-fwd", "weights-lstm-l0-fwd", "fig-gate-statistics"} <= figure_ids
    assert page.title == "lstmviz report: charlm.pt"


def test_cell_values_are_the_analysis_means() -> None:
    trace = numpy_trace("LSTM", steps=8, hidden_size=3)
    run = make_run(trace)
    analysis = analyze_run(run, AnalysisOptions())
    page = page_of(run)
    mean_f = [s.mean for s in analysis.gate_stats if s.series == "f"][0]
    cell = next(spec for spec in page.figures() if spec.ref.kind == "cell")
    assert isinstance(cell.data, CellData) and cell.data.values is not None
    assert cell.data.values.values["f"] == mean_f and f"= {mean_f:.2f}" in cell_dot(cell)
    assert mean_f == pytest.approx(float(trace.layers[0].series["f"].mean()), abs=1e-6)


def test_at_step_writes_that_steps_values() -> None:
    trace = numpy_trace("LSTM", steps=8, hidden_size=3)
    page = page_of(make_run(trace), at_step=3)
    f3 = float(trace.layers[0].series["f"][0, 3].mean())
    cell = next(spec for spec in page.figures() if spec.ref.kind == "cell")
    assert "step 3, mean over units" in cell_dot(cell) and f"= {f3:.2f}" in cell_dot(cell)
    heatmap = next(spec for spec in page.figures() if spec.ref.kind == "heatmaps")
    assert "dashed line: step 3, shown on the cell diagram" in heatmap.caption


def test_gru_and_bidirectional_projected_models(gru_run: Run, bilstm_run: Run) -> None:
    gru = page_of(gru_run)
    assert "update gate" in text_of(gru) and "c carried" not in text_of(gru)
    assert "1 − z" in cell_dot(next(spec for spec in gru.figures() if spec.ref.kind == "cell"))
    bi = page_of(bilstm_run)
    ids = {spec.id for spec in bi.figures()}
    for prefix in ("lstm-l0-fwd", "lstm-l0-bwd", "lstm-l1-fwd", "lstm-l1-bwd"):
        assert f"heatmap-{prefix}" in ids and f"cell-{prefix}" in ids
    assert "P×H = 3×6" in cell_dot(next(spec for spec in bi.figures() if spec.ref.kind == "cell"))
    assert "backward rows run right to left" in text_of(bi)
    assert "tokens" not in [section.id for section in bi.sections]  # float features: no text to highlight


def test_view_selection_layers_units_steps(bilstm_run: Run) -> None:
    page = page_of(bilstm_run, layers="lstm/l1/bwd", units="0,2", steps="2:6", sort_units="cluster")
    ids = {spec.id for spec in page.figures()}
    assert "heatmap-lstm-l1-bwd" in ids and "heatmap-lstm-l0-fwd" not in ids
    heatmap = next(spec for spec in page.figures() if spec.ref.kind == "heatmaps")
    assert "units 0, 2 of 6" in heatmap.caption and "steps 2–5" in heatmap.caption
    assert "Steps 2–5 of 10" in text_of(page)


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


def test_unsafe_load_is_stamped(lstm_run: Run) -> None:
    run = Run(
        loaded=replace(lstm_run.loaded, info=replace(lstm_run.loaded.info, unsafe=True)),
        sample=lstm_run.sample,
        trace=lstm_run.trace,
    )
    assert "Loaded with unsafe deserialization" in text_of(page_of(run, layers="lstm"))


# -- the drawn page --------------------------------------------------------------------------------------


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


def test_drawn_page_has_every_section_and_figure(lstm_html: str) -> None:
    for section in (*SECTIONS, "tokens"):
        assert f'<section id="{section}"' in lstm_html and f'href="#{section}"' in lstm_html
    assert 'id="heatmap-lstm-l0-fwd"' in lstm_html and "charlm.pt" in lstm_html
    assert "He said" not in lstm_html.split("<body>")[0]
    assert lstm_html.count("<svg") == lstm_html.count("</svg>") == 11  # one per figure of the page
    assert "4H×I = 24×3" in lstm_html and '<div id="unit-picker">' in lstm_html


def test_no_duplicate_ids_on_a_page(lstm_html: str, hostile_html: str) -> None:
    """matplotlib and Graphviz repeat their SVG ids in every figure; scoped per figure, none repeats."""
    for html in (lstm_html, hostile_html):
        ids = ids_of(html)
        assert sum(ident.startswith("fig-") and "_" in ident for ident in ids) > 5  # clip paths, markers
        assert [key for key, count in ids.items() if count > 1] == []
    # Every reference inside an SVG still points at an id of its own figure.
    ids = ids_of(lstm_html)
    for target in re.findall(r'(?:url\(#|href="#)([^)"]+)', lstm_html):
        assert target in ids, target


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
    # Our script elements only: the hashed script and JSON data islands (the picker's, the excerpts' and
    # the hypothesis search's), which a browser never runs.
    tags = re.findall(r"<script\b[^>]*>", html, re.I)
    assert tags.count("<script>") == 1 and all(t == "<script>" or 'type="application/json"' in t for t in tags)
    assert len(tags) == 4
    for island in re.findall(r'<script type="application/json"[^>]*>(.*?)</script>', html, re.S):
        assert "<" not in island and ">" not in island
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


def test_bounded_for_a_very_long_sequence() -> None:
    steps = 20_000
    text = ("the quick (brown) fox said \"hi\". " * 700)[:steps]
    trace = numpy_trace("LSTM", steps=steps, hidden_size=8, seed=3)
    run = make_run(trace, text=text)
    page = page_of(run)
    words = text_of(page)
    assert "averaged over bins of 50 steps" in words  # 20,000 steps into 400 columns
    assert "Steps 0–19 of 20000" in words  # the unrolled diagram shows a window
    assert "showing steps 0–1999 of 0–19999" in words  # highlighted text is capped
    html = render_html(page)
    assert len(html.encode("utf-8")) < 3_000_000
    assert "… 19980 steps" in html


def test_environment_autoescapes_j2_and_is_strict() -> None:
    env = environment()
    assert env.from_string("{{ x }}").render(x="<b>") == "&lt;b&gt;"
    assert env.autoescape is True
    with pytest.raises(Exception, match="undefined"):
        env.from_string("{{ missing }}").render()


def test_templates_never_mark_anything_safe() -> None:
    """Only render.html hands Markup to the templates (the figures' SVG, the script): no `|safe` anywhere."""
    for path in sorted((ROOT / "templates").glob("*.j2")):
        assert not re.search(r"\|\s*safe\b", path.read_text()), path.name


def test_one_jinja_environment() -> None:
    """Every page renders through render.html.environment(); nothing else builds one."""
    for path in sorted((ROOT / "lstmviz_cli").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name != "html.py" or path.parent.name != "render":
            assert "Environment(" not in text, path


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
    assert [key for key, count in ids_of(html).items() if count > 1] == []
    if name == "gru_digitsum.safetensors":
        assert "update gate (z)" in html and "3H×I = 192×" in html
    if name == "sine.pt":
        assert 'id="heatmap-lstm-l1-bwd"' in html and "P×H = 16×32" in html
    if name == "charlm.pt":
        assert "most likely next tokens" in html


def test_templates_found_in_the_package_when_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel ships templates/ as lstmviz_cli/templates (force-include); the editable checkout uses the repo's."""
    import importlib.resources

    assert templates_dir() == ROOT / "templates"
    for name in re.findall(r'(?:include|import) "([^"]+)"', (ROOT / "templates" / "page.html.j2").read_text()):
        assert (ROOT / "templates" / name).is_file(), name
    (tmp_path / "templates").mkdir()
    monkeypatch.setattr(importlib.resources, "files", lambda package: tmp_path)
    assert templates_dir() == tmp_path / "templates"


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
        "from lstmviz_cli.page.view import ViewOptions; from lstmviz_cli.analysis.analyze import analyze_trace;"
        "from lstmviz_cli.page.build import report_page; from lstmviz_cli.render.html import render_html;"
        "run = make_run(numpy_trace('LSTM', steps=len(TEXT), hidden_size=4, bidirectional=True), text=TEXT);"
        "page = report_page(run, analyze_trace(run.trace, tokens=list(TEXT)), ViewOptions());"
        "sys.stdout.write(render_html(page, workers=int(sys.argv[1])))"
    )
    outputs = []
    for seed, workers in (("1", "1"), ("2", "2")):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        done = subprocess.run([sys.executable, "-c", script, workers], cwd=ROOT, env=env, capture_output=True,
                              check=True)
        outputs.append(done.stdout)
    assert outputs[0] == outputs[1] and len(outputs[0]) > 10_000


def test_page_model_is_the_same_in_two_processes() -> None:
    """The page model (ids, captions, every word) does not depend on the interpreter's hash seed."""
    import subprocess
    import sys

    script = (
        "import sys, json; sys.path.insert(0, 'tests');"
        "from conftest import numpy_trace, make_run, TEXT;"
        "from lstmviz_cli.analysis.analyze import analyze_trace; from lstmviz_cli.page.build import report_page;"
        "from lstmviz_cli.page.outline import outline; from lstmviz_cli.page.view import ViewOptions;"
        "run = make_run(numpy_trace('LSTM', steps=len(TEXT), hidden_size=5, num_layers=2), text=TEXT);"
        "page = report_page(run, analyze_trace(run.trace, tokens=list(TEXT)), ViewOptions(sort_units='cluster'));"
        "sys.stdout.write(json.dumps(outline(page)))"
    )
    outputs = [
        subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**os.environ, "PYTHONHASHSEED": seed},
                       capture_output=True, check=True).stdout
        for seed in ("3", "4")
    ]
    assert outputs[0] == outputs[1] and len(outputs[0]) > 5_000


def test_long_labels_and_tokens_leave_numbers_exact() -> None:
    """Numbers the summary shows are the analysis' (one source), not a second computation."""
    trace = numpy_trace("LSTM", steps=10, hidden_size=3, seed=9)
    run = make_run(trace)
    analysis = analyze_run(run, AnalysisOptions())
    words = text_of(page_of(run))
    for stat in analysis.gate_stats:
        assert f"{stat.mean:.3f}" in words
    assert np.isfinite([s.mean for s in analysis.gate_stats]).all()
