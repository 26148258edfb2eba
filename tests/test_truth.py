"""Issue 13: every number on the page comes from the user's real model, or the page says it does not.

Each situation is a small model written the way public projects write theirs, saved with random
weights (keys and shapes as the issue describes). The model classes live in one source file that
each test writes to tmp_path, so `--model-class path.py:Class` runs the very code that made the
file, and the page's prediction can be compared with that model's own output.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from lstmviz_cli.analysis.options import AnalysisOptions  # noqa: E402
from lstmviz_cli.analysis.serialize import analysis_json  # noqa: E402
from lstmviz_cli.cli import main  # noqa: E402
from lstmviz_cli.commands import pipeline  # noqa: E402
from lstmviz_cli.commands.options import LoadOptions  # noqa: E402
from lstmviz_cli.explain.orchestrate import analyze_run  # noqa: E402
from lstmviz_cli.loading.records import TensorAccounting  # noqa: E402

SAMPLES = Path(__file__).resolve().parents[1] / "sample_models"
# The tests script models the way users do; torch's own advice to move off TorchScript is not ours.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

MODELS = '''
import torch
from torch import nn
from torch.nn import functional as F


class CharRNN(nn.Module):
    """A 3-layer char model whose head is fc -> relu -> output."""

    def __init__(self, vocab=28, embed=8, hidden=16, mid=12):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=3, batch_first=True)
        self.fc = nn.Linear(hidden, mid)
        self.output = nn.Linear(mid, vocab)

    def forward(self, x):
        out, _ = self.lstm(self.embedding(x))
        return self.output(F.relu(self.fc(out)))


class SeqRegressor(nn.Module):
    """lstm -> fc.0 (Linear 64->32) -> ReLU -> fc.2 (Linear 32->1) on the last step."""

    def __init__(self, features=3, hidden=64):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.fc = nn.Sequential(nn.Linear(hidden, 32), nn.ReLU(), nn.Linear(32, 1))

    def forward(self, x):
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class AttnClassifier(nn.Module):
    """Bidirectional LSTM, attention scorer attn (Linear 2H->1), classifier on the pooled output."""

    def __init__(self, features=3, hidden=6, classes=4):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True, bidirectional=True)
        self.attn = nn.Linear(2 * hidden, 1)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, x):
        out, _ = self.lstm(x)
        weights = torch.softmax(self.attn(out), dim=1)
        return self.fc((weights * out).sum(dim=1))


class BiClassifier(nn.Module):
    """Bidirectional classifier whose Linear reads cat(h_n[-2], h_n[-1])."""

    def __init__(self, vocab=20, embed=8, hidden=6, classes=3):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, classes)

    def forward(self, x):
        _, (h_n, _c) = self.lstm(self.embedding(x))
        return self.fc(torch.cat([h_n[-2], h_n[-1]], dim=1))


class NormFirst(nn.Module):
    """norm (BatchNorm1d) -> lstm -> fc."""

    def __init__(self, features=4, hidden=6):
        super().__init__()
        self.norm = nn.BatchNorm1d(features)
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, x):
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        out, _ = self.lstm(x)
        return self.fc(out[:, -1])


class ConvAttn(nn.Module):
    """conv -> lstm -> attn -> fc."""

    def __init__(self, features=3, channels=4, hidden=6):
        super().__init__()
        self.conv = nn.Conv1d(features, channels, kernel_size=3, padding=1)
        self.lstm = nn.LSTM(channels, hidden, batch_first=True)
        self.attn = nn.Linear(hidden, 1)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, x):
        x = torch.relu(self.conv(x.transpose(1, 2))).transpose(1, 2)
        out, _ = self.lstm(x)
        weights = torch.softmax(self.attn(out), dim=1)
        return self.fc((weights * out).sum(dim=1))


class EncoderRNN(nn.Module):
    """A seq2seq encoder: Embedding -> GRU, returning (outputs, hidden)."""

    def __init__(self, vocab=30, embed=8, hidden=16):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True)

    def forward(self, x):
        return self.gru(self.embedding(x))


class ProjectedFirst(nn.Module):
    """Linear + ReLU before the LSTM (scripted in the tests)."""

    def __init__(self, features=3, width=5, hidden=6):
        super().__init__()
        self.proj = nn.Linear(features, width)
        self.lstm = nn.LSTM(width, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, x):
        out, _ = self.lstm(torch.relu(self.proj(x)))
        return self.fc(out[:, -1])


class ScaledInput(nn.Module):
    """Keys a rebuild places completely, code that does more: the input is scaled first."""

    def __init__(self, features=3, hidden=6):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, x):
        out, _ = self.lstm(x * 3.0)
        return self.fc(out[:, -1])


class Layers(nn.Module):
    """A recurrent layer under a ModuleDict key that is not an identifier."""

    def __init__(self, features=3, hidden=5):
        super().__init__()
        self.layers = nn.ModuleDict({"rnn-1": nn.GRU(features, hidden, batch_first=True)})
        self.fc = nn.Linear(hidden, 2)

    def forward(self, x):
        out, _ = self.layers["rnn-1"](x)
        return self.fc(out[:, -1])


class FusedCell(nn.Module):
    """A hand-written LSTM cell (fused weights, chunk(4)) called once per step."""

    def __init__(self, features=3, hidden=5):
        super().__init__()
        self.hidden = hidden
        self.x2h = nn.Linear(features, 4 * hidden)
        self.h2h = nn.Linear(hidden, 4 * hidden)

    def forward(self, x, state):
        h, c = state
        in_gate, forget_gate, cell_gate, out_gate = (self.x2h(x) + self.h2h(h)).chunk(4, dim=1)
        c = torch.sigmoid(forget_gate) * c + torch.sigmoid(in_gate) * torch.tanh(cell_gate)
        return torch.sigmoid(out_gate) * torch.tanh(c), c


class CellModel(nn.Module):
    def __init__(self, features=3, hidden=5):
        super().__init__()
        self.cell = FusedCell(features, hidden)
        self.fc = nn.Linear(hidden, 2)

    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.cell.hidden)
        c = x.new_zeros(x.shape[0], self.cell.hidden)
        for t in range(x.shape[1]):
            h, c = self.cell(x[:, t], (h, c))
        return self.fc(h)
'''


@pytest.fixture
def models(tmp_path: Path) -> Any:
    """The model classes, imported from the file that --model-class will name."""
    path = tmp_path / "models.py"
    path.write_text(MODELS)
    spec = importlib.util.spec_from_file_location("truth_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.PATH = path
    return module


def _make(cls: type, seed: int = 0, **kwargs: Any) -> nn.Module:
    torch.manual_seed(seed)
    model = cls(**kwargs).eval()
    for buffer_name, buffer in model.named_buffers():  # a trained BatchNorm, not the identity
        if buffer_name.endswith("running_mean"):
            buffer.normal_()
        elif buffer_name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    return model


def _features(steps: int = 6, features: int = 3, seed: int = 1) -> list[list[float]]:
    rng = np.random.default_rng(seed)
    return np.round(rng.normal(size=(steps, features)), 4).tolist()


def _analysis(path: Path, **options: Any) -> tuple[Any, dict[str, Any]]:
    """The run and the report's analysis JSON (what `report --json` writes), without drawing a page."""
    run = pipeline.load_and_trace(LoadOptions(checkpoint=path, **options))
    return run, analysis_json(analyze_run(run, AnalysisOptions()))


def _own_output(model: nn.Module, sample: Any) -> np.ndarray:
    x = torch.as_tensor(np.asarray(sample))
    x = x[None] if x.dtype == torch.int64 and x.dim() == 1 else x[None].float()
    with torch.no_grad():
        out = model(x)
    return (out[0] if isinstance(out, tuple) else out)[0].double().numpy()


def _values(prediction: dict[str, Any]) -> np.ndarray:
    return np.array([item["value"] for item in prediction["items"]])


def _probabilities(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    capsys.readouterr()  # only what this command writes
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _levels(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {v["level"]: v for v in document["model"]["verification"]}


# -- tensor accounting --------------------------------------------------------------------------------


def test_accounting_line_is_exact_and_module_level() -> None:
    assert TensorAccounting(total=7).line() == "rebuilt from weights: all 7 tensors placed"
    norm = tuple(f"norm.{p}" for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked"))
    acc = TensorAccounting(total=13, unused=(*norm, "fc.weight", "fc.bias"))
    assert acc.line() == (
        "rebuilt from weights: placed 6 of 13 tensors; not used (7): "
        "norm.{weight,bias,running_mean,running_var,num_batches_tracked}, fc.{weight,bias}"
    )
    many = TensorAccounting(total=20, unused=tuple(f"m{k}.weight" for k in range(8)) + ("h0",))
    assert many.unused_text() == "m0.weight, m1.weight, m2.weight, m3.weight, m4.weight, m5.weight, … and 3 more modules"


def test_char_model_with_fc_output_head_shows_no_classes(
    tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """A 3-layer char model with an fc -> output head: 16 hidden units are not 28 "classes"."""
    model = _make(models.CharRNN)
    vocab = list("abcdefghijklmnopqrstuvwxyz .")
    path = tmp_path / "char.pt"
    torch.save({"model_state_dict": model.state_dict(), "vocab": vocab, "sample_input": "a cab bade"}, path)
    code, out, err = _cli(capsys, "trace", path, "-o", tmp_path / "t.npz", "--json", tmp_path / "t.json")
    assert code == 0
    assert err == ("lstmviz: char.pt: rebuilt from weights: placed 13 of 17 tensors; not used (4): "
                   "fc.{weight,bias}, output.{weight,bias}\n")
    summary = json.loads((tmp_path / "t.json").read_text())["model"]
    assert summary["tensors"] == {"total": 17, "placed": 13, "front": [],
                                  "unused": ["fc.weight", "fc.bias", "output.weight", "output.bias"]}
    assert summary["head"] is None and "activation between them is not known" in summary["head_note"]
    with np.load(tmp_path / "t.npz") as arrays:
        assert json.loads(str(arrays["__summary__"]))["model"] == summary  # the npz says the same

    run, document = _analysis(path)
    assert document["prediction"] is None  # no softmax of a hidden state
    assert document["saliency"]["target"].startswith("norm ‖h‖ of the last recurrent layer's output")

    # Declaring the activation makes the head known; the prediction is then the model's own.
    torch.save({"model_state_dict": model.state_dict(), "vocab": vocab, "sample_input": "a cab bade",
                "config": {"head_activation": "relu", "head_on": "all"}}, path)
    run, document = _analysis(path)
    assert document["prediction"]["note"] == "most likely next tokens after step 9"
    want = _probabilities(_own_output(model, run.sample.values[0])[-1])
    np.testing.assert_allclose(_values(document["prediction"]), np.sort(want)[::-1][:5], atol=1e-5)

    run, document = _analysis(path, model_class=f"{models.PATH}:CharRNN")
    np.testing.assert_allclose(_values(document["prediction"]), np.sort(want)[::-1][:5], atol=1e-5)
    assert _levels(document)["model"]["status"] == "ok" and document["model"]["tensors"] is None


def test_sequential_head_with_a_relu_is_not_a_32_class_classifier(tmp_path: Path, models: Any) -> None:
    model = _make(models.SeqRegressor)
    path = tmp_path / "reg.pt"
    torch.save(model.state_dict(), path)
    (tmp_path / "reg.json").write_text(json.dumps({"sample_input": _features()}))
    run, document = _analysis(path)
    assert document["prediction"] is None
    assert document["model"]["tensors"]["unused"] == ["fc.0.weight", "fc.0.bias", "fc.2.weight", "fc.2.bias"]
    assert document["model"]["head_note"].startswith("fc.0 → fc.2 (2 Linears, 64→32→1) not rebuilt")

    own = _own_output(model, _features())
    run, document = _analysis(path, model_class=f"{models.PATH}:SeqRegressor")
    assert document["prediction"]["kind"] == "values" and document["prediction"]["note"] == "predicted value"
    np.testing.assert_allclose(_values(document["prediction"]), own, atol=1e-5)

    (tmp_path / "reg.json").write_text(json.dumps({"sample_input": _features(),
                                                   "config": {"head_activation": "relu", "head_on": "last"}}))
    run, document = _analysis(path)
    assert document["model"]["head"]["modules"] == ["fc.0", "fc.2"]
    assert document["prediction"]["basis"] == ("rebuilt head fc.0 → relu → fc.2 (Linear 64→32→1) reading the last "
                                               "step's output (the checkpoint's config 'head_on')")
    np.testing.assert_allclose(_values(document["prediction"]), own, atol=1e-5)


def test_attention_scorer_is_not_taken_as_the_head(tmp_path: Path, models: Any) -> None:
    model = _make(models.AttnClassifier)
    path = tmp_path / "attn.pt"
    torch.save({"state_dict": model.state_dict(), "sample_input": _features()}, path)
    run, document = _analysis(path)
    assert document["prediction"] is None
    assert "attn looks like an attention scorer" in document["model"]["head_note"]
    assert document["model"]["tensors"]["unused"] == ["attn.weight", "attn.bias", "fc.weight", "fc.bias"]
    assert document["gate_stats"]  # the recurrent layers are traced: nothing runs before them

    own = _own_output(model, _features())
    run, document = _analysis(path, model_class=f"{models.PATH}:AttnClassifier")
    prediction = document["prediction"]
    assert prediction["kind"] == "values" and prediction["note"].startswith("output values (width 4")
    np.testing.assert_allclose(_values(prediction), own, atol=1e-5)  # never softmaxed without cause
    torch.save({"state_dict": model.state_dict(), "sample_input": _features(), "task": "classification"}, path)
    run, document = _analysis(path, model_class=f"{models.PATH}:AttnClassifier")
    assert document["prediction"]["note"] == "most likely classes"
    np.testing.assert_allclose(_values(document["prediction"]), np.sort(_probabilities(own))[::-1], atol=1e-5)


def test_bidirectional_head_on_final_states(tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str]) -> None:
    model = _make(models.BiClassifier)
    tokens = [1, 5, 7, 3, 2, 9]
    path = tmp_path / "bi.pt"
    torch.save({"state_dict": model.state_dict(), "sample_input": tokens}, path)
    own = _own_output(model, tokens)

    run, document = _analysis(path)  # no metadata, no flag: the wiring is a guess, and says so
    assert document["model"]["head"]["assumed"] is True
    assert document["prediction"]["basis"] == (
        "assumed: rebuilt head fc (Linear 12→3) reading every step's output; pass --head all|last|final-states "
        "to choose")
    assert np.abs(_values(document["prediction"]) - own).max() > 1e-3  # which is why it is labelled

    run, document = _analysis(path, head="final-states")
    assert document["model"]["head"]["source"] == "option"
    np.testing.assert_allclose(_values(document["prediction"]), own, atol=1e-5)
    torch.save({"state_dict": model.state_dict(), "sample_input": tokens, "config": {"head_on": "final-states"}}, path)
    run, document = _analysis(path)
    assert "cat(h_n[-2], h_n[-1]) (the checkpoint's config 'head_on')" in document["prediction"]["basis"]
    np.testing.assert_allclose(_values(document["prediction"]), own, atol=1e-5)

    code, _, err = _cli(capsys, "trace", path, "--model-class", f"{models.PATH}:BiClassifier", "--head", "last",
                        "-o", tmp_path / "t.npz")
    assert code == 2 and err.count("\n") == 1
    assert err.startswith("lstmviz: error: --head applies to a model rebuilt from weights; with --model-class")
    code, _, err = _cli(capsys, "trace", path, "--head", "first", "-o", tmp_path / "t.npz")
    assert code == 2 and err == "lstmviz: error: --head 'first': choose one of all, last, final-states\n"


NORM_REFUSAL = (
    "lstmviz: error: 'norm.pt': norm (BatchNorm) may run before the recurrent layer 'lstm' and cannot be rebuilt "
    "from the state dict's weights (norm.{weight,bias,running_mean,running_var,num_batches_tracked}), so 'lstm' "
    "would not see the input your model gives it; pass --model-class file.py:Class to run your own model, or "
    "--recurrent-only to trace the recurrent layers alone with the sample as their direct input\n"
)


def test_norm_before_the_lstm_is_refused_or_traced_truthfully(
    tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _make(models.NormFirst)
    path = tmp_path / "norm.pt"
    torch.save({"state_dict": model.state_dict(), "sample_input": _features(features=4)}, path)
    for command in ("report", "check"):
        code, out, err = _cli(capsys, command, path, *(["-o", tmp_path / "r.html"] if command == "report" else []))
        assert (code, out, err) == (2, "", NORM_REFUSAL)
    assert not (tmp_path / "r.html").exists()

    # Opted in: the recurrent layers alone, stamped on the page and in the JSON.
    code, _, err = _cli(capsys, "report", path, "--recurrent-only", "-o", tmp_path / "r.html",
                        "--json", tmp_path / "r.json", "--jobs", "1")
    assert code == 0 and "placed 4 of 11 tensors" in err
    page = (tmp_path / "r.html").read_text()
    assert 'id="recurrent-only"' in page and "Recurrent layers only (--recurrent-only)" in page
    assert "No prediction: --recurrent-only traces the recurrent layers alone" in page
    document = json.loads((tmp_path / "r.json").read_text())
    assert document["model"]["recurrent_only"] is True and document["prediction"] is None
    assert document["model"]["tensors"]["front"] == ["norm"]
    assert any(note.startswith("--recurrent-only: the recurrent layers were fed the sample directly")
               for note in document["notes"])
    assert _levels(document)["model"]["detail"] == "not compared: --recurrent-only traces the recurrent layers alone"

    # With the user's class the LSTM sees what the model gives it, and the refusal was warranted.
    partial = pipeline.load_and_trace(LoadOptions(checkpoint=path, recurrent_only=True))
    run, document = _analysis(path, model_class=f"{models.PATH}:NormFirst")
    np.testing.assert_allclose(_values(document["prediction"]), _own_output(model, _features(features=4)), atol=1e-5)
    assert np.abs(run.trace["lstm/l0/fwd/h"] - partial.trace["lstm/l0/fwd/h"]).max() > 0.05


def test_check_on_a_recurrent_only_model_says_so(
    tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest_papers import junit_schema

    path = tmp_path / "norm.pt"
    torch.save({"state_dict": _make(models.NormFirst).state_dict(), "sample_input": _features(features=4)}, path)
    code, out, _ = _cli(capsys, "check", path, "--recurrent-only", "--fail-on", "never",
                        "--json", tmp_path / "c.json", "--junit", tmp_path / "c.xml")
    assert code == 0
    assert "norm.pt: checked with --recurrent-only: the recurrent layers alone, fed the sample directly" in out
    document = json.loads((tmp_path / "c.json").read_text())
    assert document["recurrent_only"] is True
    assert [v["label"] for v in document["verification"]] == ["gates vs layer outputs", "model output"]
    xml = (tmp_path / "c.xml").read_text()
    junit_schema().validate(xml)
    assert '<property name="recurrent-only" value="true' in xml
    assert '<property name="verification: gates vs layer outputs" value="' in xml


def test_conv_in_front_is_named_and_attention_after_is_not(
    tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "conv.pt"
    torch.save({"state_dict": _make(models.ConvAttn).state_dict(), "sample_input": _features()}, path)
    code, out, err = _cli(capsys, "trace", path, "-o", tmp_path / "t.npz")
    assert (code, out) == (2, "")
    assert err == (
        "lstmviz: error: 'conv.pt': conv (Conv) may run before the recurrent layer 'lstm' and cannot be rebuilt "
        "from the state dict's weights (conv.{weight,bias}), so 'lstm' would not see the input your model gives "
        "it; pass --model-class file.py:Class to run your own model, or --recurrent-only to trace the recurrent "
        "layers alone with the sample as their direct input\n"
    )
    # Alone, the LSTM takes its own input width (4 channels), not the model's 3 features.
    np.save(tmp_path / "lstm_input.npy", np.asarray(_features(features=4), dtype=np.float32))
    code, out, err = _cli(capsys, "trace", path, "--recurrent-only", "--input", tmp_path / "lstm_input.npy",
                          "-o", tmp_path / "t.npz", "--json", tmp_path / "t.json")
    assert code == 0, err
    facts = json.loads((tmp_path / "t.json").read_text())["model"]
    assert facts["recurrent_only"] and facts["tensors"]["front"] == ["conv"]
    assert facts["tensors"]["unused"] == ["conv.weight", "conv.bias", "attn.weight", "attn.bias", "fc.weight",
                                          "fc.bias"]


def test_seq2seq_encoder_states_are_not_classes(tmp_path: Path, models: Any) -> None:
    encoder = _make(models.EncoderRNN)
    path = tmp_path / "encoder.pt"
    torch.save(encoder.state_dict(), path)
    (tmp_path / "encoder.json").write_text(json.dumps({"sample_input": [3, 4, 5, 6]}))
    run, document = _analysis(path)
    assert document["prediction"] is None
    assert document["model"]["tensors"] == {"total": 5, "placed": 5, "unused": [], "front": []}
    assert document["model"]["head_note"] == "the state dict holds no output layer after the recurrent layers"
    # The user's encoder returns its states: its output is shown as output values, never as classes.
    run, document = _analysis(path, model_class=f"{models.PATH}:EncoderRNN")
    assert document["prediction"]["kind"] == "values"
    assert document["prediction"]["note"].startswith("output values at step 3 (width 16; not read as classes")
    np.testing.assert_allclose(_values(document["prediction"]), _own_output(encoder, [3, 4, 5, 6])[-1], atol=1e-5)


def test_module_dict_name_that_is_not_an_identifier(tmp_path: Path, models: Any) -> None:
    model = _make(models.Layers)
    path = tmp_path / "layers.pt"
    torch.save({"state_dict": model.state_dict(), "sample_input": _features(), "config": {"head_on": "last"}}, path)
    run, document = _analysis(path)
    assert "layers.rnn-1/l0/fwd/z" in run.trace.keys()
    assert document["model"]["tensors"]["unused"] == [] and _levels(document)["gates"]["status"] == "ok"
    np.testing.assert_allclose(_values(document["prediction"]), _own_output(model, _features()), atol=1e-5)


# -- TorchScript ----------------------------------------------------------------------------------------


def _script(model: nn.Module, path: Path, **meta: Any) -> Path:
    torch.jit.save(torch.jit.script(model), str(path), _extra_files={"lstmviz.json": json.dumps(meta)})
    return path


def test_torchscript_with_linear_relu_before_the_lstm_is_refused(
    tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _script(_make(models.ProjectedFirst), tmp_path / "proj.ts.pt", sample_input=_features())
    code, out, err = _cli(capsys, "report", path, "--trust-torchscript", "-o", tmp_path / "r.html")
    assert (code, out) == (2, "")
    assert err == (
        "lstmviz: error: 'proj.ts.pt': proj (Linear) may run before the recurrent layer 'lstm' and cannot be "
        "rebuilt from the TorchScript archive's weights (proj.{weight,bias}), so 'lstm' would not see the input "
        "your model gives it; pass --model-class with the eager class (file.py:Class) to run your own model, or "
        "--recurrent-only to trace the recurrent layers alone with the sample as their direct input\n"
    )


def test_torchscript_recurrent_only_is_not_compared_with_the_archive(
    tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _script(_make(models.ProjectedFirst), tmp_path / "proj.ts.pt")
    np.save(tmp_path / "x.npy", np.asarray(_features(features=5), dtype=np.float32))
    code, out, _ = _cli(capsys, "trace", path, "--trust-torchscript", "--recurrent-only", "--input", tmp_path / "x.npy",
                        "-o", tmp_path / "t.npz", "--json", tmp_path / "t.json")
    assert code == 0
    assert out.endswith("model output: not compared: --recurrent-only traces the recurrent layers alone)\n")
    facts = json.loads((tmp_path / "t.json").read_text())["model"]
    assert facts["source"] == "torchscript" and facts["recurrent_only"] and facts["tensors"]["front"] == ["proj"]


def test_check_with_your_model_has_a_model_output_case(
    tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    from conftest_papers import junit_schema

    path = tmp_path / "reg.pt"
    torch.save({"state_dict": _make(models.SeqRegressor).state_dict(), "sample_input": _features()}, path)
    code, _, _ = _cli(capsys, "check", path, "--model-class", f"{models.PATH}:SeqRegressor", "--fail-on", "never",
                      "--json", tmp_path / "c.json", "--junit", tmp_path / "c.xml")
    assert code == 0
    cases = {case["check"]: case for case in json.loads((tmp_path / "c.json").read_text())["cases"]}
    assert cases["model_output"]["passed"] and cases["model_output"]["name"] == "model output vs your model"
    assert cases["verify_error"]["message"].startswith("gates vs layer outputs: recorded gates reproduce")
    xml = (tmp_path / "c.xml").read_text()
    junit_schema().validate(xml)
    assert '<property name="verification: model output vs your model" value="' in xml


def test_torchscript_whose_code_the_rebuild_does_not_reproduce_is_refused(
    tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every key placed, a head declared, yet the archive scales its input: only running it shows that."""
    path = _script(_make(models.ScaledInput), tmp_path / "scaled.ts.pt", sample_input=_features(),
                   config={"head_on": "last"})
    code, out, err = _cli(capsys, "trace", path, "--trust-torchscript", "-o", tmp_path / "t.npz")
    assert (code, out) == (2, "")
    line = err.splitlines()[-1]
    assert line.startswith("lstmviz: error: 'scaled.ts.pt' (TorchScript): the archive's own output differs from "
                           "its rebuild from weights by ")
    assert line.endswith(": its code does something a rebuild from its weights does not reproduce; pass "
                         "--model-class with the eager class (file.py:Class) to trace the model as it runs, or "
                         "--recurrent-only to trace the recurrent layers alone with the sample as their direct input")
    assert float(line.split("weights by ")[1].split(":")[0]) > 1e-3
    assert not (tmp_path / "t.npz").exists()


def test_torchscript_head_wiring_is_read_from_the_archive(tmp_path: Path, models: Any) -> None:
    model = _make(models.BiClassifier)
    tokens = [1, 5, 7, 3, 2, 9]
    path = _script(model, tmp_path / "bi.ts.pt", sample_input=tokens)
    run, document = _analysis(path, trust_torchscript=True)
    head = document["model"]["head"]
    assert (head["wiring"], head["source"]) == ("final-states", "archive")
    assert _levels(document)["model"]["label"] == "model output vs the TorchScript archive"
    assert _levels(document)["model"]["status"] == "ok"
    np.testing.assert_allclose(_values(document["prediction"]), _own_output(model, tokens), atol=1e-5)


def test_bundled_torchscript_sample_is_verified_against_the_archive() -> None:
    run, document = _analysis(SAMPLES / "sine.ts.pt", trust_torchscript=True)
    levels = _levels(document)
    assert levels["gates"]["status"] == "ok" and levels["model"]["status"] == "ok"
    assert levels["model"]["error"] is not None and levels["model"]["error"] <= 1e-5
    scripted = torch.jit.load(str(SAMPLES / "sine.ts.pt"))
    with torch.no_grad():
        own = scripted(torch.as_tensor(np.asarray(run.sample.values, dtype=np.float32)))[0].double().numpy()
    np.testing.assert_allclose(_values(document["prediction"]), own, atol=1e-5)


# -- what was verified ----------------------------------------------------------------------------------


def test_hand_written_cell_badge_names_the_recurrence_it_checked(tmp_path: Path, models: Any) -> None:
    model = _make(models.CellModel)
    path = tmp_path / "cell.pt"
    torch.save({"state_dict": model.state_dict(), "sample_input": _features(steps=7)}, path)
    run, document = _analysis(path, model_class=f"{models.PATH}:CellModel")
    levels = document["model"]["verification"]
    assert [v["level"] for v in levels] == ["recurrence", "model"]
    assert levels[0]["label"] == ("cell: recurrence c_t = f·c_(t−1) + i·g recomputed from the captured gates, and "
                                  "h_t = o·tanh(c_t) vs the returned h")
    layer = run.trace.layer("cell/l0/fwd")
    s = {k: v[0].astype(np.float64) for k, v in layer.series.items()}
    recurrence = np.abs(s["c"][1:] - (s["f"][1:] * s["c"][:-1] + s["i"][1:] * s["g"][1:])).max()
    assert levels[0]["error"] == pytest.approx(recurrence, abs=1e-7) and levels[0]["status"] == "ok"
    assert levels[1]["label"] == "model output vs your model" and levels[1]["status"] == "ok"
    np.testing.assert_allclose(_values(document["prediction"]), _own_output(model, _features(steps=7)), atol=1e-5)


def test_end_to_end_check_catches_a_traced_output_that_is_not_the_models(models: Any) -> None:
    """The plain rerun is compared tensor by tensor: a difference is reported, and refused by default."""
    from lstmviz_cli.errors import VerificationError
    from lstmviz_cli.tracing.endtoend import CapturedCall, verify_user_model

    model = _make(models.SeqRegressor)
    x = torch.as_tensor(_features(), dtype=torch.float32)[None]
    with torch.no_grad():
        real = model(x)
    exact = verify_user_model(model, CapturedCall(args=(x,), output=real.clone(), done=True))
    assert exact.text() == "model output vs your model: exact"
    wrong = CapturedCall(args=(x,), output=real + 0.25, done=True)
    with pytest.raises(VerificationError, match=r"differs by 2.50e-01 from your model's own output"):
        verify_user_model(model, wrong)
    result = verify_user_model(model, wrong, verify=False)
    assert result.status == "bad" and result.text() == "model output vs your model: differs by 2.50e-01"


def test_sample_models_declare_their_wiring_and_place_every_tensor() -> None:
    for name, total, wiring in (("charlm.pt", 11, "all"), ("digitsum.pt", 7, "last"),
                                ("gru_digitsum.safetensors", 7, "last"), ("sine.pt", 22, "last")):
        from lstmviz_cli.loading.checkpoint import load_checkpoint

        info = load_checkpoint(SAMPLES / name).info
        assert info.accounting == TensorAccounting(total=total), name
        assert (info.head.wiring, info.head.source) == (wiring, "metadata"), name


def test_pickled_module_is_verified_end_to_end(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    sys.path.insert(0, str(SAMPLES))  # the pickled module's class lives in sample_models/models.py
    try:
        code, out, err = _cli(capsys, "trace", SAMPLES / "digitsum_module.pt", "--trust-pickle",
                              "-o", tmp_path / "t.npz")
    finally:
        sys.path.remove(str(SAMPLES))
    assert code == 0 and "gates vs layer outputs: " in out and "model output vs your model: " in out


# -- QA of issues 13/14: your own model takes its input; TorchScript without a head (D1, D3) ------------------


def test_your_model_with_an_input_projection_takes_its_own_input(
    tmp_path: Path, models: Any, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """D1: Linear(3, 5) -> relu -> LSTM(5, 6): with --model-class, --trust-pickle or the TorchScript archive run as
    your class, the sample's 3 features are the model's to read (not checked against the LSTM's 5)."""
    model = _make(models.ProjectedFirst)
    x = np.asarray(_features(), dtype=np.float32)
    np.save(tmp_path / "x.npy", x)
    monkeypatch.setitem(sys.modules, "truth_models", models)  # the pickled module's class
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    torch.save(model, tmp_path / "whole.pt")
    script = _script(model, tmp_path / "proj.ts.pt")
    own = _own_output(model, x)
    runs = [(tmp_path / "sd.pt", "--model-class", f"{models.PATH}:ProjectedFirst"),
            (tmp_path / "whole.pt", "--trust-pickle"),
            (script, "--trust-torchscript", "--model-class", f"{models.PATH}:ProjectedFirst")]
    for path, *flags in runs:
        _run, document = _analysis(path, input=tmp_path / "x.npy", model_class=flags[-1] if "--model-class" in flags else None,
                                   trust_pickle="--trust-pickle" in flags, trust_torchscript="--trust-torchscript" in flags)
        np.testing.assert_allclose(_values(document["prediction"]), own, atol=1e-5)
        assert _levels(document)["model"]["status"] == "ok" and document["model"]["source"] != "torchscript"
    # The model's own error on an input it cannot take is one line, exit 2.
    np.save(tmp_path / "wide.npy", np.zeros((4, 7), dtype=np.float32))
    code, _out, err = _cli(capsys, "trace", tmp_path / "sd.pt", "--model-class", f"{models.PATH}:ProjectedFirst",
                           "--input", tmp_path / "wide.npy", "-o", tmp_path / "t.npz")
    assert code == 2 and err.startswith("lstmviz: error: the model failed on the sample (wide.npy: 4 steps × 7 features): ")
    assert err.count("\n") == 1


def test_torchscript_archive_without_a_head_is_traced(tmp_path: Path, models: Any) -> None:
    """D3: an archive for which no head is rebuilt (a seq2seq encoder) is compared with the archive, no crash."""
    path = _script(_make(models.EncoderRNN), tmp_path / "enc.ts.pt", sample_input=[1, 4, 2, 9])
    run, document = _analysis(path, trust_torchscript=True)
    assert run.loaded.info.head is None and document["prediction"] is None
    assert _levels(document)["model"]["label"] == "model output vs the TorchScript archive"
    assert _levels(document)["model"]["status"] == "ok"


def test_a_head_module_named_head_is_not_written_twice() -> None:
    """The prediction's basis read "rebuilt head head (Linear 12→1)" for a module named `head`."""
    from lstmviz_cli.loading.records import HeadInfo

    named = HeadInfo(modules=("head",), widths=(12, 1), wiring="last", source="option")
    assert named.basis().startswith("rebuilt head (Linear 12→1) reading ")
    other = HeadInfo(modules=("fc",), widths=(12, 1), wiring="last", source="option")
    assert other.basis().startswith("rebuilt head fc (Linear 12→1) reading ")
