"""The report in a real browser: headless Chromium renders it, runs only our script, logs nothing."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import HOSTILE, TEXT, make_run, numpy_trace

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.page.view import ViewOptions

pytestmark = pytest.mark.browser

SECTIONS = ("summary", "architecture", "cell", "unrolled", "heatmaps", "tokens", "weights", "gate-statistics", "diagnostics")
MARKER = "<script>document.documentElement.setAttribute('data-pwned','1')</script>"


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None


CHROMIUM = _chromium()
if CHROMIUM is None:
    pytest.skip("headless Chromium is not installed (make browser installs it)", allow_module_level=True)


def run_chromium(page: Path, profile: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    command = [
        CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
        "--enable-logging=stderr", "--v=0", *extra, page.as_uri(),
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def pages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from lstmviz_cli.explain.orchestrate import analyze_run
    from lstmviz_cli.page.build import report_page
    from lstmviz_cli.render.html import render_html

    root = tmp_path_factory.mktemp("browser")
    tokens = [HOSTILE, MARKER, "</script>", "<b>x</b>", '"', "\u05e9\u05dc\u05d5\u05dd", "\x00", "a", "b"]
    hostile = make_run(numpy_trace("LSTM", steps=len(tokens), hidden_size=4, module=MARKER),
                       name=MARKER + ".pt", labels=tokens, kind="tokens", vocab=tuple(tokens))
    hostile.sample.description = MARKER
    normal = make_run(numpy_trace("LSTM", steps=len(TEXT), hidden_size=6, num_layers=2), name="charlm.pt", text=TEXT)
    out = {}
    for name, run in (("normal", normal), ("hostile", hostile)):
        view = ViewOptions(title=MARKER if name == "hostile" else None)
        path = root / f"{name}.html"
        path.write_text(render_html(report_page(run, analyze_run(run, AnalysisOptions()), view)), encoding="utf-8")
        out[name] = path
    return out


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if ":CONSOLE" in line]


@pytest.mark.parametrize("name", ["normal", "hostile"])
def test_dom_script_ran_and_nothing_injected(pages: dict[str, Path], name: str, tmp_path: Path) -> None:
    result = run_chromium(pages[name], tmp_path / "profile", "--dump-dom")
    dom = result.stdout
    assert result.returncode == 0, result.stderr[-2000:]
    # Our hashed script ran under the Content-Security-Policy ...
    assert re.search(r'<html[^>]*data-lstmviz="ready"', dom)
    # ... and no token's script did: the marker attribute was never set.
    assert not re.search(r'<html[^>]*data-pwned', dom)
    for section in SECTIONS:
        assert f'id="{section}"' in dom
    if name == "normal":
        assert "<select>" in dom  # the unit picker, built by the script with textContent
    assert console_lines(result.stderr) == [], "console messages (CSP violations, script errors)"


def test_screenshot_is_not_blank(pages: dict[str, Path], tmp_path: Path) -> None:
    from PIL import Image, ImageStat

    shot = tmp_path / "report.png"
    result = run_chromium(pages["normal"], tmp_path / "profile", f"--screenshot={shot}", "--window-size=1280,4000",
                          "--hide-scrollbars")
    assert shot.exists(), result.stderr[-2000:]
    assert console_lines(result.stderr) == []
    image = Image.open(shot).convert("L")
    assert image.size == (1280, 4000)
    # Ink on the page: many non-white pixels and real contrast, in the top and the bottom half.
    for box in ((0, 0, 1280, 2000), (0, 2000, 1280, 4000)):
        part = image.crop(box)
        dark = sum(part.histogram()[:200]) / (part.size[0] * part.size[1])
        assert dark > 0.02, (box, dark)
        assert ImageStat.Stat(part).stddev[0] > 20


def test_hover_a_heatmap_cell_reads_its_value(tmp_path: Path) -> None:
    """The mouse over a heatmap cell shows its unit, step, token and value: the trace's own number."""
    from cdp import Browser

    from lstmviz_cli.explain.orchestrate import analyze_run
    from lstmviz_cli.glyphs import visible
    from lstmviz_cli.page.build import report_page
    from lstmviz_cli.page.figuredata import HeatmapData
    from lstmviz_cli.render.html import render_html

    trace = numpy_trace("LSTM", steps=len(TEXT), hidden_size=6, num_layers=1, seed=3)
    run = make_run(trace, name="charlm.pt", text=TEXT)
    page = report_page(run, analyze_run(run, AnalysisOptions()), ViewOptions(units="5,1,3"))
    path = tmp_path / "page.html"
    path.write_text(render_html(page), encoding="utf-8")
    spec = next(s for s in page.figures() if isinstance(s.data, HeatmapData))
    assert isinstance(spec.data, HeatmapData)
    panel_index, row, column = 1, 2, 7  # the forget gate, third row, step 7
    panel = spec.data.panels[panel_index]
    unit = panel.units[row]
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open(path)
        x, y = browser.evaluate(f"""(function () {{
            var svg = document.querySelector('#{spec.id} svg[data-heat]');
            svg.scrollIntoView({{block: 'center'}});
            var d = JSON.parse(svg.getAttribute('data-heat')), r = svg.getBoundingClientRect();
            var p = d.panels[{panel_index}], b = p.box;
            var x = b[0] + (b[2] - b[0]) * ({column} + 0.5) / p.cols, y = b[1] + (b[3] - b[1]) * ({row} + 0.5) / p.units.length;
            return [r.left + x * r.width / d.w, r.top + y * r.height / d.h];
        }})()""")
        browser.mouse(x, y)
        tip = browser.evaluate("(function(){var t=document.querySelector('.lv-tip');return t&&!t.hidden?t.textContent:null})()")
        # A finding-style link outlines the unit's row in every panel of the heatmap.
        marks = browser.evaluate(f"""(function () {{
            var a = document.createElement('a'); a.href = '#{spec.id}'; a.setAttribute('data-unit', '{unit}');
            a.textContent = 'unit'; document.body.appendChild(a); a.click();
            return document.querySelectorAll('#{spec.id} .lv-row-mark').length;
        }})()""")
        # The find box: a unit shown is outlined; one not shown says how to show it; a negative one says
        # units start at 0 (it said "choose it with --units -3,", which the command refuses).
        def find(text: str) -> str:
            return str(browser.evaluate(f"""(function () {{
                var box = document.querySelector('#{spec.id} .lv-find input');
                box.value = '{text}'; box.dispatchEvent(new Event('input'));
                return document.querySelector('#{spec.id} .lv-find-note').textContent;
            }})()"""))
        found = {text: find(text) for text in (str(unit), "4", "-3")}
        assert browser.console == []
    assert found[str(unit)] == f"unit {unit} outlined in every panel"
    assert found["4"] == "unit 4 is not among the rows shown (choose it with --units 4,)"
    assert found["-3"] == "units are numbered from 0"
    expected = float(trace.layers[0].series["f"][0, column, unit])
    assert tip is not None, "no tooltip"
    assert f"unit {unit} · step {column} · input {json_string(visible(TEXT[column]))}" in tip
    value = float(re.search(r"value (−?[0-9.]+)", tip).group(1).replace("−", "-"))
    assert value == pytest.approx(expected, abs=5e-5)
    assert marks == len(spec.data.panels)


def json_string(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def test_the_sequence_picker_shows_the_chosen_sequence(tmp_path: Path) -> None:
    """A batch of three: sequence 0's heatmap shows; choosing sequence 2 shows its figure alone, and hovering
    a cell of it reads sequence 2's own value."""
    import numpy as np
    from cdp import Browser

    from lstmviz_cli.explain.orchestrate import analyze_run
    from lstmviz_cli.page.build import report_page
    from lstmviz_cli.page.figuredata import HeatmapData
    from lstmviz_cli.render.html import render_html

    trace = numpy_trace("LSTM", steps=8, hidden_size=4, batch=3, seed=11)
    run = make_run(trace)
    run.sample.values = np.zeros((3, 8, 3), dtype=np.float32)
    page = report_page(run, analyze_run(run, AnalysisOptions()), ViewOptions(units="all"))
    html = render_html(page)
    assert "<figure id=\"heatmap-lstm-l0-fwd-seq2\" data-sequence=\"2\">" in html  # shown without the script
    path = tmp_path / "page.html"
    path.write_text(html, encoding="utf-8")
    spec = next(s for s in page.figures() if s.sequence == 2)
    assert isinstance(spec.data, HeatmapData)
    row, column = 1, 5
    unit = spec.data.panels[0].units[row]
    visible = "Array.prototype.filter.call(document.querySelectorAll('figure[data-sequence]'), " \
              "function (f) { return !f.hidden && f.offsetHeight > 0; }).map(function (f) { return f.id; })"
    with Browser(CHROMIUM, tmp_path / "profile") as browser:
        browser.open(path)
        before = browser.evaluate(visible)
        options = browser.evaluate("Array.prototype.map.call(document.querySelectorAll('.sequence-picker option'), "
                                   "function (o) { return o.textContent; })")
        after = browser.evaluate(f"""(function () {{
            var s = document.querySelector('.sequence-picker select'); s.value = '2';
            s.dispatchEvent(new Event('change')); return {visible}; }})()""")
        x, y = browser.evaluate(f"""(function () {{
            var svg = document.querySelector('#{spec.id} svg[data-heat]');
            svg.scrollIntoView({{block: 'center'}});
            var d = JSON.parse(svg.getAttribute('data-heat')), r = svg.getBoundingClientRect();
            var p = d.panels[0], b = p.box;
            var x = b[0] + (b[2] - b[0]) * ({column} + 0.5) / p.cols, y = b[1] + (b[3] - b[1]) * ({row} + 0.5) / p.units.length;
            return [r.left + x * r.width / d.w, r.top + y * r.height / d.h];
        }})()""")
        browser.mouse(x, y)
        tip = browser.evaluate("(function(){var t=document.querySelector('.lv-tip');return t&&!t.hidden?t.textContent:null})()")
        assert browser.console == []
    assert before == ["heatmap-lstm-l0-fwd"]
    assert options == [f"sequence {k} of 3 (valid steps 8)" for k in range(3)]
    assert after == ["heatmap-lstm-l0-fwd-seq2"]
    assert tip is not None and "sequence 2" in tip and f"unit {unit} · step {column}" in tip
    value = float(re.search(r"value (−?[0-9.]+)", tip).group(1).replace("−", "-"))
    assert value == pytest.approx(float(trace.layers[0].series["i"][2, column, unit]), abs=5e-5)
    assert value != pytest.approx(float(trace.layers[0].series["i"][0, column, unit]), abs=5e-5)
