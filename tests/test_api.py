"""`lstmviz_cli.report` from Python: the CLI's page byte for byte, the model given back as it was, the CLI's errors,
inline display and the browser.
"""

from __future__ import annotations

import collections
import html
import importlib.util
import random
import re
import subprocess
import sys
import webbrowser
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import lstmviz_cli
from lstmviz_cli.analysis.measures import layer_prefixes, measures_json
from lstmviz_cli.cli import main
from lstmviz_cli.errors import InputError, ModelError

TEXT = "abc fed cab bad face"
VOCAB = list("abcdef ")
MODEL_SOURCE = '''\
import torch
from torch import nn


class TinyLM(nn.Module):
    """Embedding -> 2-layer LSTM (with dropout) -> Linear on every step."""

    def __init__(self, vocab_size=7, hidden=10):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, 5)
        self.lstm = nn.LSTM(5, hidden, num_layers=2, batch_first=True, dropout=0.25)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(hidden, vocab_size)

    def forward(self, x):
        out, _ = self.lstm(self.embedding(x))
        return self.fc(self.drop(out))
'''


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The model's source file, a checkpoint of it (with its vocabulary) and the sample as a text file."""
    root = tmp_path_factory.mktemp("api")
    (root / "tiny_models.py").write_text(MODEL_SOURCE, encoding="utf-8")
    (root / "sample.txt").write_text(TEXT, encoding="utf-8")
    model = _tiny(_models(root / "tiny_models.py"))
    torch.save({"model_state_dict": model.state_dict(), "vocab": VOCAB}, root / "tiny.pt")
    return {"root": root, "source": root / "tiny_models.py", "checkpoint": root / "tiny.pt",
            "sample": root / "sample.txt"}


def _models(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location("tiny_models_for_api_tests", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny(models: ModuleType) -> torch.nn.Module:
    torch.manual_seed(3)
    model: torch.nn.Module = models.TinyLM(len(VOCAB))
    return model


@pytest.fixture(scope="module")
def cli_page(files: dict[str, Path]) -> tuple[Path, list[str]]:
    """`lstmviz report --open` on the checkpoint, with the browser stubbed: the page and what was opened."""
    out = files["root"] / "cli.html"
    opened: list[str] = []
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
        code = main(["report", str(files["checkpoint"]), "--model-class", f"{files['source']}:TinyLM",
                     "--input", str(files["sample"]), "--title", "tiny", "--layers", "lstm/l1", "--units", "6",
                     "-o", str(out), "--open"])
    assert code == 0
    return out, opened


def test_report_open_opens_the_written_page_in_the_default_browser(cli_page: tuple[Path, list[str]]) -> None:
    out, opened = cli_page
    assert opened == [out.resolve().as_uri()]


def test_a_checkpoint_path_gives_the_cli_page_byte_for_byte(files: dict[str, Path], cli_page: tuple[Path, list[str]],
                                                             tmp_path: Path) -> None:
    report = lstmviz_cli.report(files["checkpoint"], input=files["sample"], model_class=f"{files['source']}:TinyLM",
                                title="tiny", layers="lstm/l1", units=6)
    saved = report.save(tmp_path / "api.html")
    assert saved.read_bytes() == cli_page[0].read_bytes()


def _summary(page: str) -> tuple[str, str]:
    """(the page without its summary section, the summary section)."""
    start = page.index('<section id="summary"')
    end = page.index("</section>", start) + len("</section>")
    return page[:start] + page[end:], page[start:end]


def _texts(markup: str) -> collections.Counter[str]:
    return collections.Counter(html.unescape(t).strip() for t in re.split(r"<[^>]+>", markup) if t.strip())


@pytest.fixture(scope="module")
def memory_report(files: dict[str, Path]) -> lstmviz_cli.Report:
    """The same model as an object, and the same sample as text, with the same options."""
    return lstmviz_cli.report(_tiny(_models(files["source"])), TEXT, vocab=VOCAB, title="tiny", layers="lstm/l1",
                              units=6)


def test_a_model_object_gives_the_cli_page_but_for_where_the_model_and_sample_came_from(
        memory_report: lstmviz_cli.Report, cli_page: tuple[Path, list[str]]) -> None:
    cli = cli_page[0].read_text(encoding="utf-8")
    memory = memory_report.html
    # Every section but the summary, every figure, the styles and the script: byte for byte.
    assert _summary(memory)[0] == _summary(cli)[0]
    # The summary differs only where it names the model's and the sample's source.
    only_cli = _texts(_summary(cli)[1]) - _texts(_summary(memory)[1])
    only_memory = _texts(_summary(memory)[1]) - _texts(_summary(cli)[1])
    assert set(only_memory) == {
        "Model", "model", "TinyLM, passed from Python (in memory; no file was read)", "text: 20 characters",
        "your model's own output (the model object passed from Python)",
        "your model object, passed from Python (lstmviz_cli.report), run as written",
    }
    expected_cli = [r"Checkpoint", r"file", r"tiny\.pt", r"format", r"dict-checkpoint", r"size", r"[\d.]+ KB",
                    r"weights", r"'model_state_dict' of the checkpoint dict", r"sample\.txt: 20 characters",
                    r"your model's own output \(--model-class\)",
                    r"your class .*tiny_models\.py:TinyLM \(--model-class\), run as written"]
    assert len(only_cli) == len(expected_cli)
    for text in only_cli:
        assert any(re.fullmatch(pattern, text) for pattern in expected_cli), text


def test_the_model_is_given_back_as_it_was(files: dict[str, Path]) -> None:
    model = _tiny(_models(files["source"]))
    model.train()
    model.lstm.eval()  # a mix of modes, as a training script may leave it
    for p in model.parameters():
        p.grad = torch.full_like(p, 0.5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    modes = [m.training for m in model.modules()]
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(11)
    np.random.seed(11)
    random.seed(11)
    with torch.no_grad():
        report = lstmviz_cli.report(model, TEXT, vocab=VOCAB)
        assert not torch.is_grad_enabled()
    assert report.summary.saliency is not None  # the analysis did run the model with gradients
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert all(torch.equal(p.grad, torch.full_like(p, 0.5)) for p in model.parameters() if p.grad is not None)
    assert torch.equal(torch.rand(3), expected[0])
    assert np.array_equal(np.random.rand(3), expected[1]) and random.random() == expected[2]
    # ... and it ran in eval mode: the traced output is the model's own, dropout off.
    model.eval()
    ids = torch.tensor([[VOCAB.index(ch) for ch in TEXT]])
    assert np.allclose(report.trace.output, model(ids).detach().numpy(), atol=1e-6)
    assert report.trace["lstm/l1/fwd/f"].shape == (1, len(TEXT), 10)


def test_errors_are_the_clis_own_with_its_one_line_messages(files: dict[str, Path], tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    model = _tiny(_models(files["source"]))
    with pytest.raises(InputError) as raised:
        lstmviz_cli.report(model, "abz", vocab=VOCAB)
    bad = tmp_path / "bad.txt"
    bad.write_text("abz", encoding="utf-8")
    assert main(["report", str(files["checkpoint"]), "--model-class", f"{files['source']}:TinyLM",
                 "--input", str(bad), "-o", str(tmp_path / "x.html")]) == 2
    cli_line = capsys.readouterr().err.strip()
    assert raised.value.message == "input 'text' has characters outside the model's vocabulary: 'z'"
    assert cli_line == f"lstmviz: error: {raised.value.message}".replace("'text'", repr(str(bad)))
    with pytest.raises(InputError, match=r"^--units '3,99': unit 99 is out of range; the selected layers have units 0–9$"):
        lstmviz_cli.report(model, TEXT, vocab=VOCAB, units="3,99")
    with pytest.raises(InputError, match="text needs a vocabulary"):
        lstmviz_cli.report(model, TEXT)
    sample_file = str(files["sample"])  # a file's name as a str is text: the message says how to pass a file
    with pytest.raises(InputError, match=re.escape(f"pass pathlib.Path({sample_file!r}) or input={sample_file!r}")):
        lstmviz_cli.report(model, sample_file)
    with pytest.raises(ModelError, match="not a dict"):
        lstmviz_cli.report({"weights": 1}, TEXT)  # type: ignore[arg-type]
    with pytest.raises(InputError, match="applies to a checkpoint's path"):
        lstmviz_cli.report(model, TEXT, vocab=VOCAB, trust_pickle=True)
    assert "\n" not in raised.value.message


def test_inline_display_show_figures_and_json(memory_report: lstmviz_cli.Report, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    report = memory_report
    frame = re.fullmatch(r'<iframe class="lstmviz-report" title="[^"]*" style="[^"]*" srcdoc="([^"]*)"></iframe>',
                         report._repr_html_())
    assert frame is not None and html.unescape(frame.group(1)) == report.html
    opened: list[str] = []
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: opened.append(url) or True)
    temporary = report.show()  # not saved yet: a page in the temporary folder
    assert temporary.read_text(encoding="utf-8") == report.html and opened == [temporary.resolve().as_uri()]
    saved = report.save(tmp_path / "mine.html")
    assert report.show() == saved and opened[-1] == saved.resolve().as_uri()
    monkeypatch.setattr(webbrowser, "open", lambda url, *a, **k: False)  # a server: no browser to start
    assert report.show() == saved
    assert capsys.readouterr().err == f"lstmviz: note: no browser could be started; open {saved} yourself\n"
    from matplotlib.figure import Figure

    drawn = report.figures()
    plots = [spec.id for spec in report.page.figures() if not spec.is_diagram]
    assert list(drawn) == plots and len(plots) >= 5
    assert all(isinstance(figure, Figure) for figure in drawn.values())
    summary = report.to_json()
    assert summary["model"]["source"] == "in-memory"  # type: ignore[index]
    assert summary["measures"] == measures_json(report.measures)  # the JSON's list is the Report's
    f_mean = float(np.nanmean(report.trace["lstm/l1/fwd/f"], dtype=np.float64))
    scalars = report.scalars()
    assert scalars["lstm/l1/fwd/gate_mean_f"] == pytest.approx(f_mean, rel=1e-5)  # 6 significant digits
    assert {m.scalar_name: m.value for m in report.measures if m.value is not None} == scalars
    assert layer_prefixes(report.measures) == ["lstm/l1/fwd"]  # cut to layers= like the page
    assert repr(report) == "<lstmviz Report of TinyLM: 1 recurrent layer, text: 20 characters>"  # layers="lstm/l1"


def test_the_package_resolves_the_api_lazily() -> None:
    from lstmviz_cli.api.monitor import Monitor
    from lstmviz_cli.api.report import Report, report

    assert lstmviz_cli.report is report and lstmviz_cli.Report is Report and lstmviz_cli.Monitor is Monitor
    assert {"report", "Report", "Monitor"} <= set(lstmviz_cli.__all__)
    assert "lstmviz_cli.api" not in sys.modules or True  # (import cost is tested in test_layout/test_cli)


def test_a_hand_written_cell_in_memory_is_opened_up_and_verified() -> None:
    """The tutorials' fused cell (chunk(4)) called once per step, passed as an object: its gates, checked."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sample_models"))
    try:
        from models import FusedCellDigitSum
    finally:
        sys.path.pop(0)
    torch.manual_seed(1)
    model = FusedCellDigitSum(hidden_size=8)
    report = lstmviz_cli.report(model, [6, 7, 0, 0, 1], task="classification")
    assert [layer.prefix for layer in report.trace.layers] == ["cell/l0/fwd"]
    levels = {level.level: level for level in report.summary.provenance.verification}  # type: ignore[union-attr]
    assert levels["recurrence"].status == "ok" and levels["model"].status == "ok"
    assert report.summary.prediction is not None and report.summary.prediction.note.startswith("most likely classes")
    assert report.trace["cell/l0/fwd/f"].shape == (1, 5, 8)


@pytest.mark.gpu
def test_a_model_on_the_gpu_is_reported_where_it_is() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.manual_seed(0)
    model = torch.nn.LSTM(3, 8, batch_first=True).cuda()
    sample = torch.randn(2, 6, 3, device="cuda")  # drawing it advances the CUDA generator: state taken after
    state = torch.cuda.get_rng_state()
    report = lstmviz_cli.report(model, sample)
    assert next(model.parameters()).is_cuda and torch.equal(torch.cuda.get_rng_state(), state)
    assert report.run.loaded.info.device.startswith("cuda") and report.trace.verify_error is not None
    with pytest.raises(InputError, match="the model is on cuda"):
        lstmviz_cli.report(model, torch.randn(6, 3), device="cpu")


def test_first_use_of_the_api_leaves_pythons_random_state_as_it_was() -> None:
    # A fresh process: the first `lstmviz_cli.report` imports the API (and rich, which draws from Python's
    # global random generator at import); a training script's random.shuffle must not notice.
    script = ("import random, lstmviz_cli\n"
              "random.seed(3)\n"
              "state = random.getstate()\n"
              "lstmviz_cli.report, lstmviz_cli.Monitor, lstmviz_cli.trace\n"
              "print(random.getstate() == state)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True)
    assert done.stdout.strip() == "True", done.stderr
