"""lstmviz in a notebook, as a user runs it: a real Jupyter kernel executes a notebook that builds a model and
calls `lstmviz_cli.report(...)`; the cell's output is the report as text/html, isolated in an iframe;
headless Chromium renders that output inside a notebook-like page (the report is visible, its script
runs, its Content-Security-Policy holds inside the frame, and neither page's styles reach the other).

The kernel start is the cost (about 5 s with torch's import): one notebook run serves every test here.
Skipped when nbclient, nbformat or ipykernel is missing (`make setup` installs them from the test extras).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.notebook
nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

BUILD = '''\
import torch
from torch import nn
import lstmviz_cli

class CharModel(nn.Module):
    def __init__(self, vocab_size, hidden=12):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 6)
        self.lstm = nn.LSTM(6, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, vocab_size)

    def forward(self, x):
        out, _ = self.lstm(self.embedding(x))
        return self.fc(out)

torch.manual_seed(0)
vocab = list("abcdef ")
model = CharModel(len(vocab))'''
REPORT = 'lstmviz_cli.report(model, "abc fed cab bad face", vocab=vocab)'  # figures drawn in forked workers


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> object:
    """The notebook, run top to bottom by a real kernel (no network: everything is local)."""
    folder = tmp_path_factory.mktemp("notebook")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(BUILD), nbformat.v4.new_code_cell(REPORT)]
    client = nbclient.NotebookClient(notebook, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute()
    nbformat.write(notebook, folder / "report.ipynb")
    return notebook


def _html_output(notebook: object) -> str:
    cell = notebook.cells[1]  # type: ignore[attr-defined]
    results = [out for out in cell.outputs if out.output_type in ("execute_result", "display_data")]
    errors = [out for out in cell.outputs if out.output_type == "error"]
    assert not errors, errors
    assert len(results) == 1, cell.outputs
    assert "text/html" in results[0].data, list(results[0].data)
    return str(results[0].data["text/html"])


def test_the_cell_output_is_the_report_as_html_in_an_iframe(executed: object) -> None:
    output = _html_output(executed)
    frame = re.fullmatch(r'<iframe class="lstmviz-report" title="([^"]*)" style="[^"]*" srcdoc="([^"]*)"></iframe>',
                         output)
    assert frame is not None, output[:300]
    assert frame.group(1) == "lstmviz report: CharModel"
    page = html.unescape(frame.group(2))
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    # The page keeps its own Content-Security-Policy inside the frame, and says where the model came from.
    assert re.search(r'<meta http-equiv="Content-Security-Policy" content="default-src (&#39;|\')none', page)
    assert "CharModel, passed from Python (in memory; no file was read)" in page
    assert "your model object, passed from Python (lstmviz_cli.report), run as written" in page
    # Nothing of the page is outside the frame: no style or script reaches the notebook.
    outside = output.replace(frame.group(2), "")
    assert "<script" not in outside and "<style" not in outside
    # The notebook saved with its output opens again as a valid notebook.
    nbformat.validate(executed)


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


# A page standing in for the notebook: its own styles (a red h1 and a wide border on every iframe's
# contents would show if they leaked) and a script that records what it sees of the report's frame.
NOTEBOOK_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>notebook</title>
<style>
body {{ font-family: sans-serif; margin: 0 24px; }}
h1 {{ color: rgb(255, 0, 0); }}
.cell {{ border-left: 4px solid #1976d2; padding: 8px; margin: 12px 0; }}
.prompt {{ color: #303f9f; font-family: monospace; }}
</style></head>
<body>
<h1 id="nb-title">Untitled.ipynb</h1>
<h2 id="nb-heading">In the notebook</h2>
<div class="cell"><div class="prompt">In [2]:</div><pre>{source}</pre></div>
<div class="cell output"><div class="prompt">Out[2]:</div>{output}</div>
<script>
window.addEventListener("load", function () {{
  var frame = document.querySelector("iframe.lstmviz-report");
  var inner = frame.contentDocument;
  var marks = document.body.dataset;
  marks.reportScript = inner.documentElement.getAttribute("data-lstmviz") || "none";
  marks.reportTitle = inner.querySelector("h1") ? inner.querySelector("h1").textContent : "none";
  marks.reportH1Color = getComputedStyle(inner.querySelector("h1")).color;
  marks.notebookH2Border = getComputedStyle(document.getElementById("nb-heading")).borderBottomStyle;
  marks.notebookH1Color = getComputedStyle(document.getElementById("nb-title")).color;
  // An inline script added to the report's document must be refused by the report's own CSP.
  var injected = inner.createElement("script");
  injected.textContent = "document.documentElement.setAttribute('data-injected', 'ran')";
  inner.body.appendChild(injected);
  marks.injected = inner.documentElement.getAttribute("data-injected") || "blocked";
}});
</script>
</body></html>
"""


@pytest.mark.browser
def test_the_output_renders_in_a_browser_isolated_with_its_script_running(executed: object, tmp_path: Path) -> None:
    chromium = _chromium()
    if chromium is None:
        pytest.skip("headless Chromium is not installed (make browser installs it)")
    page = tmp_path / "notebook.html"
    page.write_text(NOTEBOOK_PAGE.format(source=html.escape(REPORT), output=_html_output(executed)), encoding="utf-8")
    base = [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'p'}",
            "--window-size=1200,1000"]
    dumped = subprocess.run([*base, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120,
                            check=False)
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    body = re.search(r"<body([^>]*)>", dumped.stdout)
    assert body is not None
    marks = dict(re.findall(r'data-([a-z0-9-]+)="([^"]*)"', body.group(1)))
    assert marks["report-script"] == "ready"  # the report's own script ran inside the frame
    assert marks["report-title"] == "lstmviz report: CharModel"
    assert marks["injected"] == "blocked"  # its CSP holds in the frame: no other inline script runs
    assert marks["report-h1-color"] != "rgb(255, 0, 0)"  # the notebook's styles do not reach the report
    assert marks["notebook-h1-color"] == "rgb(255, 0, 0)"
    assert marks["notebook-h2-border"] == "none"  # the report's styles (h2 underlined) do not reach the notebook
    shot = tmp_path / "notebook.png"
    taken = subprocess.run([*base, f"--screenshot={shot}", page.as_uri()], capture_output=True, text=True,
                           timeout=120, check=False)
    assert taken.returncode == 0 and shot.exists(), taken.stderr[-2000:]
    from matplotlib.image import imread

    pixels = imread(str(shot))[:, :, :3]
    # The frame (below the cell's source, about 800 px tall) shows the report: dark heading text and
    # coloured figures, not an empty box.
    region = pixels[260:1000, 40:1150]
    inked = (region.mean(axis=2) < 0.5).mean()
    assert inked > 0.01, f"the report's frame looks empty ({inked:.2%} dark pixels)"
