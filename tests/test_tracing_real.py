"""Models traced the way they run (issue 14): packed batches, time-major models, forward arguments,
hand-written cells fed time-major, one-step inputs, cells in a loop, and no warning on the terminal.

Each model is written here as users write theirs (public tutorials' code), saved as a state dict with
random weights, and loaded with `--model-class path.py:Class`. Gates are compared with a NumPy
reference written from the equations, predictions with the model's own output.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from lstmviz_cli.analysis.options import AnalysisOptions
from lstmviz_cli.cli import main
from lstmviz_cli.commands.options import LoadOptions
from lstmviz_cli.commands.pipeline import load_and_trace
from lstmviz_cli.errors import InputError
from lstmviz_cli.explain.orchestrate import analyze_run
from lstmviz_cli.page.view import ViewOptions
from lstmviz_cli.tracing.layout import locate_output_axes, to_batch_major

TOL = 1e-5
BIN = Path(sys.executable).parent

MODELS = '''
import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence


class LSTMTagger(nn.Module):
    """PyTorch tutorial "Sequence Models and LSTM Networks": time-major, one sentence."""

    def __init__(self, embedding_dim=6, hidden_dim=6, vocab_size=9, tagset_size=3):
        super().__init__()
        self.hidden_dim = hidden_dim
        self.word_embeddings = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim)
        self.hidden2tag = nn.Linear(hidden_dim, tagset_size)

    def forward(self, sentence):
        embeds = self.word_embeddings(sentence)
        lstm_out, _ = self.lstm(embeds.view(len(sentence), 1, -1))
        tag_space = self.hidden2tag(lstm_out.view(len(sentence), -1))
        tag_scores = F.log_softmax(tag_space, dim=1)
        return tag_scores


class RNN(nn.Module):
    """The classic torchtext sentiment model: forward(text, text_lengths), time-major, packed."""

    def __init__(self, vocab_size=20, embedding_dim=8, hidden_dim=6, output_dim=1, n_layers=2,
                 bidirectional=True, dropout=0.5, pad_idx=0):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim, padding_idx=pad_idx)
        self.rnn = nn.LSTM(embedding_dim, hidden_dim, num_layers=n_layers, bidirectional=bidirectional,
                           dropout=dropout)
        self.fc = nn.Linear(hidden_dim * 2, output_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, text, text_lengths):
        embedded = self.dropout(self.embedding(text))
        packed_embedded = nn.utils.rnn.pack_padded_sequence(embedded, text_lengths.to("cpu"))
        packed_output, (hidden, cell) = self.rnn(packed_embedded)
        output, output_lengths = nn.utils.rnn.pad_packed_sequence(packed_output)
        hidden = self.dropout(torch.cat((hidden[-2, :, :], hidden[-1, :, :]), dim=1))
        return self.fc(hidden)


class Masked(nn.Module):
    """A forward that needs an array lstmviz cannot invent."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x, mask):
        out, _ = self.lstm(x * mask[..., None])
        return out


class Packer(nn.Module):
    """Packs its own padded batch-first input and pads the output back to the input's length."""

    def __init__(self, features=3, hidden=5):
        super().__init__()
        self.lstm = nn.LSTM(features, hidden, batch_first=True)
        self.head = nn.Linear(hidden, 2)

    def forward(self, x, lengths):
        packed = pack_padded_sequence(x, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, _ = self.lstm(packed)
        out, _ = pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return self.head(out)


class LSTMScratch(nn.Module):
    """d2l.ai "Long Short-Term Memory (LSTM)", implementation from scratch: loops over time-major input."""

    def __init__(self, num_inputs=4, num_hiddens=5, sigma=0.5):
        super().__init__()
        self.num_hiddens = num_hiddens
        init_weight = lambda *shape: nn.Parameter(torch.randn(*shape) * sigma)
        triple = lambda: (init_weight(num_inputs, num_hiddens), init_weight(num_hiddens, num_hiddens),
                          nn.Parameter(torch.zeros(num_hiddens)))
        self.W_xi, self.W_hi, self.b_i = triple()  # Input gate
        self.W_xf, self.W_hf, self.b_f = triple()  # Forget gate
        self.W_xo, self.W_ho, self.b_o = triple()  # Output gate
        self.W_xc, self.W_hc, self.b_c = triple()  # Input node

    def forward(self, inputs, H_C=None):
        if H_C is None:
            H = torch.zeros((inputs.shape[1], self.num_hiddens), device=inputs.device)
            C = torch.zeros((inputs.shape[1], self.num_hiddens), device=inputs.device)
        else:
            H, C = H_C
        outputs = []
        for X in inputs:
            I = torch.sigmoid(torch.matmul(X, self.W_xi) + torch.matmul(H, self.W_hi) + self.b_i)
            F_ = torch.sigmoid(torch.matmul(X, self.W_xf) + torch.matmul(H, self.W_hf) + self.b_f)
            O = torch.sigmoid(torch.matmul(X, self.W_xo) + torch.matmul(H, self.W_ho) + self.b_o)
            C_tilde = torch.tanh(torch.matmul(X, self.W_xc) + torch.matmul(H, self.W_hc) + self.b_c)
            C = F_ * C + I * C_tilde
            H = O * torch.tanh(C)
            outputs.append(H)
        return outputs, (H, C)


class Broken(nn.Module):
    """Fails on any input with a shape error of its own."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x):
        out, _ = self.lstm(x)
        return out[:, :, 99]


class TfidfRNN(nn.Module):
    """An nn.RNN classifier fed one TF-IDF vector: a one-step sequence."""

    def __init__(self, features=30, hidden=8, classes=2):
        super().__init__()
        self.rnn = nn.RNN(features, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, classes)

    def forward(self, x):
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


class Warns(nn.Module):
    """A model that warns while it runs (as deprecated code paths do)."""

    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 4, batch_first=True)

    def forward(self, x):
        warnings.warn("this model is deprecated, use v2")
        out, _ = self.lstm(x)
        return out


class CellLoop(nn.Module):
    """embedding -> LSTMCell -> head, once per step in a Python loop."""

    def __init__(self, vocab=10, emb=4, hidden=6):
        super().__init__()
        self.embedding = nn.Embedding(vocab, emb)
        self.cell = nn.LSTMCell(emb, hidden)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, tokens):
        state = None
        outs = []
        for t in range(tokens.shape[1]):
            h, c = self.cell(self.embedding(tokens[:, t]), state)
            state = (h, c)
            outs.append(self.head(h))
        return torch.stack(outs, 1)
'''


@pytest.fixture(scope="module")
def models_py(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("user") / "models.py"
    path.write_text(textwrap.dedent(MODELS))
    return path


def _load_class(models_py: Path, name: str):  # noqa: ANN202 - a class from the user's file
    import importlib.util

    spec = importlib.util.spec_from_file_location("test_user_models", models_py)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


def _checkpoint(models_py: Path, name: str, tmp_path: Path, seed: int = 0) -> tuple[torch.nn.Module, Path]:
    """The model with random weights, saved as a plain state dict (what the CLI loads)."""
    torch.manual_seed(seed)
    model = _load_class(models_py, name)().eval()
    path = tmp_path / f"{name}.pt"
    torch.save(model.state_dict(), path)
    return model, path


def _options(path: Path, models_py: Path, name: str, inp: Path, **kw: object) -> LoadOptions:
    return LoadOptions(checkpoint=path, input=inp, model_class=f"{models_py}:{name}", **kw)


# -- an independent reference ------------------------------------------------------------------------


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _np_lstm(x: np.ndarray, w_ih: np.ndarray, w_hh: np.ndarray, b: np.ndarray, reverse: bool = False
             ) -> dict[str, np.ndarray]:
    """PyTorch's LSTM equations over one sequence x (time, in); series (time, units), float64."""
    hidden = w_hh.shape[1]
    h, c = np.zeros(hidden), np.zeros(hidden)
    out = {k: np.zeros((len(x), hidden)) for k in "ifgoch"}
    for t in (range(len(x) - 1, -1, -1) if reverse else range(len(x))):
        a = w_ih @ x[t] + w_hh @ h + b
        i, f, g, o = _sig(a[:hidden]), _sig(a[hidden:2 * hidden]), np.tanh(a[2 * hidden:3 * hidden]), _sig(a[3 * hidden:])
        c = f * c + i * g
        h = o * np.tanh(c)
        for k, v in zip("ifgoch", (i, f, g, o, c, h), strict=True):
            out[k][t] = v
    return out


def _weights(lstm: torch.nn.LSTM, layer: int = 0, suffix: str = "") -> tuple[np.ndarray, ...]:
    get = lambda n: getattr(lstm, f"{n}_l{layer}{suffix}").detach().double().numpy()  # noqa: E731
    return get("weight_ih"), get("weight_hh"), get("bias_ih") + get("bias_hh")


def _assert_gates(trace, prefix: str, b: int, expected: dict[str, np.ndarray]) -> None:
    for name, values in expected.items():
        got = trace[f"{prefix}/{name}"][b, : len(values)]
        np.testing.assert_allclose(got, values, atol=TOL, err_msg=f"{prefix}/{name}[{b}]")


# -- the output's time axis ----------------------------------------------------------------------------


def test_output_axes_follow_the_model_layout() -> None:
    def read(shape: tuple[int, ...], batch: int, steps: int, batch_first: bool) -> tuple:
        axes = locate_output_axes(shape, batch=batch, steps=steps, batch_first=batch_first)
        return axes.batch, axes.time, axes.flat

    assert read((5, 3), 1, 5, False) == (None, 0, False)  # the tagger: (time, tags)
    assert read((5, 1, 3), 1, 5, False) == (1, 0, False)  # (time, batch, units)
    assert read((3, 7, 2), 3, 7, True) == (0, 1, False)
    assert read((7, 3, 2), 3, 7, True) == (1, 0, False)  # a batch-first call whose output is time-major
    assert read((3, 2), 3, 7, False) == (0, None, False)  # a classifier: no time axis
    assert read((21, 2), 3, 7, True) == (0, 1, True)  # reshape(-1, C) of (batch, time, C)
    ambiguous = locate_output_axes((3, 3, 2), batch=3, steps=3, batch_first=False)
    assert (ambiguous.batch, ambiguous.time) == (1, 0) and "batch = steps = 3" in ambiguous.note
    x = np.arange(42).reshape(7, 3, 2)  # time-major, flattened time·batch
    flat = locate_output_axes((21, 2), batch=3, steps=7, batch_first=False)
    np.testing.assert_array_equal(to_batch_major(x.reshape(21, 2), flat, batch=3, steps=7), x.transpose(1, 0, 2))
    np.testing.assert_array_equal(
        to_batch_major(torch.as_tensor(x), locate_output_axes(x.shape, batch=3, steps=7, batch_first=False),
                       batch=3, steps=7).numpy(), x.transpose(1, 0, 2))


# -- packed sequences keep the input's length -----------------------------------------------------------


def test_packed_batch_keeps_the_padded_length(models_py: Path, tmp_path: Path) -> None:
    model, path = _checkpoint(models_py, "Packer", tmp_path)
    x = np.random.default_rng(0).normal(size=(3, 8, 3)).astype(np.float32)
    lengths = [6, 3, 5]
    np.savez(tmp_path / "batch.npz", x=x, lengths=np.array(lengths))
    run = load_and_trace(_options(path, models_py, "Packer", tmp_path / "batch.npz"))
    trace = run.trace
    assert trace["lstm/l0/fwd/h"].shape == (3, 8, 5) and trace["lstm/lengths"].tolist() == lengths
    for b, n in enumerate(lengths):
        for key in ("i", "f", "g", "o", "c", "h"):
            series = trace[f"lstm/l0/fwd/{key}"][b]
            assert np.isnan(series[n:]).all() and not np.isnan(series[:n]).any()
        _assert_gates(trace, "lstm/l0/fwd", b, _np_lstm(x[b, :n].astype(np.float64), *_weights(model.lstm)))
    assert trace.meta.forward_args.params == {"lengths": "lengths"}
    # The model's own per-step output, batch-major, and its prediction at sequence 0's last valid step.
    with torch.no_grad():
        own = model(torch.as_tensor(x), torch.as_tensor(lengths)).numpy()
    np.testing.assert_allclose(trace.output, own, atol=TOL)

    labels = tmp_path / "labels.csv"
    labels.write_text("feature\n" + "".join(f"{t % 2}\n" for t in range(8)))
    analysis = analyze_run(run, AnalysisOptions(labels=labels, saliency_step=5))
    assert analysis.prediction.step == 5
    assert [v for _, v in analysis.prediction.items] == pytest.approx(own[0, 5].tolist(), abs=TOL)
    assert analysis.saliency is not None and len(analysis.saliency.values) == 6
    with pytest.raises(InputError, match=r"--saliency-step 7 is padding of sequence 0, which has 6 valid steps of 8"):
        analyze_run(run, AnalysisOptions(saliency_step=7))
    from lstmviz_cli.page import report

    view = report.resolve_view(ViewOptions(steps="4:8"), run)
    assert view.window == (4, 8)
    assert report.steps_text(trace) == "8 (sequence 0: 6 valid, then padding)"
    with pytest.raises(InputError, match="later steps are padding"):
        report.resolve_view(ViewOptions(at_step=7), run)


def test_bare_stack_and_public_trace_pad_to_the_input(tmp_path: Path) -> None:
    from torch.nn.utils.rnn import pack_padded_sequence

    from lstmviz_cli import trace

    torch.manual_seed(3)
    lstm = torch.nn.LSTM(3, 4, batch_first=True)
    x = torch.randn(2, 8, 3)
    packed = pack_padded_sequence(x, torch.tensor([6, 6]), batch_first=True, enforce_sorted=False)
    t = trace(lstm, packed, total_length=8)
    # Equal lengths, yet padded: the padding is still there, and recorded as such.
    assert t["lstm/l0/fwd/h"].shape == (2, 8, 4) and t["lstm/lengths"].tolist() == [6, 6]
    assert np.isnan(t["lstm/l0/fwd/c"][:, 6:]).all() and t.output.shape == (2, 8, 4)
    assert trace(lstm, packed)["lstm/l0/fwd/h"].shape == (2, 6, 4)  # nothing says 8: as long as the longest
    np.savez(tmp_path / "b.npz", input=x.numpy(), lengths=np.array([6, 2]))
    from lstmviz_cli.loading.inputs import load_sample
    from lstmviz_cli.loading.records import LoadedModel, ModelInfo
    from lstmviz_cli.tracing.sample import trace_sample

    info = ModelInfo(name="m.pt", path="m.pt", format="state_dict", size_bytes=1, n_params=1, device="cpu")
    loaded = LoadedModel(model=lstm, info=info, meta={"input_size": 3, "input_format": "features"})
    sample = load_sample(loaded, path=tmp_path / "b.npz")
    t = trace_sample(loaded, sample)
    assert t.meta.packed and t["lstm/l0/fwd/h"].shape == (2, 8, 4)
    _assert_gates(t, "lstm/l0/fwd", 1, _np_lstm(x[1, :2].double().numpy(), *_weights(lstm)))


# -- time-major models ---------------------------------------------------------------------------------


def test_tutorial_tagger_prediction_and_saliency_at_its_steps(models_py: Path, tmp_path: Path) -> None:
    model, path = _checkpoint(models_py, "LSTMTagger", tmp_path)
    sentence = np.array([1, 4, 2, 7, 3])
    np.save(tmp_path / "sentence.npy", sentence)
    run = load_and_trace(_options(path, models_py, "LSTMTagger", tmp_path / "sentence.npy"))
    trace = run.trace
    assert trace["lstm/l0/fwd/h"].shape == (1, 5, 6) and run.trace.meta.model_batch_first is False
    with torch.no_grad():
        embeds = model.word_embeddings(torch.as_tensor(sentence)).double().numpy()
        scores = model(torch.as_tensor(sentence)).numpy()  # the tutorial's own call: (words, tags)
    _assert_gates(trace, "lstm/l0/fwd", 0, _np_lstm(embeds, *_weights(model.lstm)))
    assert trace.output.shape == (1, 5, 3)
    np.testing.assert_allclose(trace.output[0], scores, atol=TOL)
    analysis = analyze_run(run, AnalysisOptions())
    assert analysis.prediction.step == 4  # the last word, not the first
    assert [v for _, v in analysis.prediction.items] == pytest.approx(scores[4].tolist(), abs=TOL)
    assert len(analysis.saliency.values) == 5 and analysis.saliency.target.endswith("at step 4")
    assert analysis.saliency.values[0] > 0  # every word reaches the last tag through the LSTM
    assert any("one row per input step" in note for note in analysis.notes)
    first = analyze_run(run, AnalysisOptions(saliency_step=0))
    assert first.saliency.step == 0 and np.all(first.saliency.values[1:] == 0)  # the first tag sees word 0 only


# -- forward arguments -----------------------------------------------------------------------------------


def test_forward_with_text_lengths_gets_the_npz_lengths(models_py: Path, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    model, path = _checkpoint(models_py, "RNN", tmp_path)
    rng = np.random.default_rng(1)
    text = rng.integers(1, 20, size=(3, 7))
    lengths = [7, 5, 3]  # sorted, as torchtext's BucketIterator(sort_within_batch=True) gives them
    for b, n in enumerate(lengths):
        text[b, n:] = 0  # the padding index
    np.savez(tmp_path / "batch.npz", text=text, lengths=np.array(lengths))
    run = load_and_trace(_options(path, models_py, "RNN", tmp_path / "batch.npz"))
    trace = run.trace
    assert trace.meta.forward_args.params == {"text_lengths": "lengths"}
    assert trace["rnn/l1/bwd/h"].shape == (3, 7, 6) and np.isnan(trace["rnn/l1/bwd/h"][2, 3:]).all()
    with torch.no_grad():
        embedded = model.embedding(torch.as_tensor(text)).double().numpy()
        own = model(torch.as_tensor(text.T), torch.as_tensor(lengths)).numpy()  # time-major, as trained
    for b, n in enumerate(lengths):
        _assert_gates(trace, "rnn/l0/fwd", b, _np_lstm(embedded[b, :n], *_weights(model.rnn)))
        _assert_gates(trace, "rnn/l0/bwd", b, _np_lstm(embedded[b, :n], *_weights(model.rnn, 0, "_reverse"), reverse=True))
    np.testing.assert_allclose(trace.output, own, atol=TOL)
    analysis = analyze_run(run, AnalysisOptions())
    assert analysis.prediction.items[0][1] == pytest.approx(float(own[0, 0]), abs=TOL)
    assert len(analysis.saliency.values) == 7 and analysis.notes == []

    # Under another name: mapped by the user; without lengths: every sequence's full length, said.
    np.savez(tmp_path / "renamed.npz", text=text, lens=np.array(lengths))
    out = tmp_path / "t.npz"
    base = ["trace", str(path), "--model-class", f"{models_py}:RNN", "-o", str(out), "--force"]
    assert main([*base, "-i", str(tmp_path / "renamed.npz"), "--forward-arg", "text_lengths=lens"]) == 0
    np.testing.assert_array_equal(np.isnan(np.load(out)["rnn/l0/fwd/h"][:, :, 0]), np.isnan(trace["rnn/l0/fwd/h"][:, :, 0]))
    np.save(tmp_path / "one.npy", text[0])
    one = load_and_trace(_options(path, models_py, "RNN", tmp_path / "one.npy"))
    assert one.trace.meta.forward_args.full_lengths and "full length" in one.trace.meta.notes[0]
    capsys.readouterr()
    for extra, message in (
        (["--forward-arg", "text_lengths=nope"], "the input has no array 'nope'"),
        (["--forward-arg", "mask=lens"], "RNN.forward has no parameter 'mask'"),
        (["--forward-arg", "text_lengths"], "expected PARAMETER=ARRAY"),
    ):
        assert main([*base, "-i", str(tmp_path / "renamed.npz"), *extra]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and message in err and "Traceback" not in err


def test_a_required_argument_nobody_can_fill_is_one_line(models_py: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    _, path = _checkpoint(models_py, "Masked", tmp_path)
    np.save(tmp_path / "x.npy", np.ones((4, 3), np.float32))
    args = ["trace", str(path), "--model-class", f"{models_py}:Masked", "-o", str(tmp_path / "t.npz")]
    assert main([*args, "-i", str(tmp_path / "x.npy")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Masked.forward needs 'mask'" in err and "--forward-arg mask=ARRAY" in err
    np.savez(tmp_path / "xm.npz", x=np.ones((1, 4, 3), np.float32), mask=np.ones((1, 4), np.float32))
    assert main([*args, "-i", str(tmp_path / "xm.npz")]) == 0  # an array named after the parameter


def test_a_forward_without_lengths_runs_over_the_padding_and_says_so(models_py: Path, tmp_path: Path) -> None:
    _, path = _checkpoint(models_py, "Warns", tmp_path)
    np.savez(tmp_path / "b.npz", x=np.ones((2, 8, 3), np.float32), lengths=np.array([5, 8]))
    run = load_and_trace(_options(path, models_py, "Warns", tmp_path / "b.npz"))
    assert not np.isnan(run.trace["lstm/l0/fwd/h"]).any() and run.trace.lengths == {}
    analysis = analyze_run(run, AnalysisOptions())
    assert any("takes no lengths, so it ran over the padding" in note for note in analysis.notes)
    assert len(analysis.saliency.values) == 8 and analysis.prediction.step == 7  # every step the model ran


# -- hand-written cells fed time-major ------------------------------------------------------------------


def test_textbook_scratch_lstm_fed_time_major(models_py: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    model, path = _checkpoint(models_py, "LSTMScratch", tmp_path)
    x = np.random.default_rng(2).normal(size=(9, 4)).astype(np.float32)
    np.save(tmp_path / "seq.npy", x)  # (time, features): one sequence
    run = load_and_trace(_options(path, models_py, "LSTMScratch", tmp_path / "seq.npy"))
    trace = run.trace
    assert trace.meta.model_batch_first is False and trace["LSTMScratch/l0/fwd/h"].shape == (1, 9, 5)
    p = {k: v.detach().double().numpy() for k, v in model.named_parameters()}
    # d2l's X @ W_x + H @ W_h + b is PyTorch's layout transposed, gates stacked i, f, g, o.
    w_ih = np.concatenate([p["W_xi"].T, p["W_xf"].T, p["W_xc"].T, p["W_xo"].T])
    w_hh = np.concatenate([p["W_hi"].T, p["W_hf"].T, p["W_hc"].T, p["W_ho"].T])
    b = np.concatenate([p["b_i"], p["b_f"], p["b_c"], p["b_o"]])
    _assert_gates(trace, "LSTMScratch/l0/fwd", 0, _np_lstm(x.astype(np.float64), w_ih, w_hh, b))
    assert trace.meta.series_names["LSTMScratch/l0/fwd"]["f"] == "F_"
    assert trace.verify_error is not None and trace.verify_error < 1e-5
    assert any("(time, batch, …)" in note for note in trace.meta.notes)
    # Its output is a list of per-step H: stacked along time, so "the prediction" is the last step's.
    with torch.no_grad():
        outputs, _ = model(torch.as_tensor(x[:, None, :]))
    assert trace.output.shape == (1, 9, 5)
    np.testing.assert_allclose(trace.output[0], torch.cat(outputs).numpy(), atol=TOL)
    analysis = analyze_run(run, AnalysisOptions())
    assert analysis.prediction.step == 8 and len(analysis.saliency.values) == 9
    assert analysis.saliency.target.endswith("at step 8")

    np.save(tmp_path / "tbf.npy", x[:, None, :])  # (9, 1, 4) in the model's own layout
    capsys.readouterr()
    assert main(["report", str(path), "--model-class", f"{models_py}:LSTMScratch", "-i", str(tmp_path / "tbf.npy"),
                 "-o", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "steps through the first axis" in err and "(time, features)" in err


def test_shape_errors_in_the_model_are_one_line_exit_2(models_py: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    _, path = _checkpoint(models_py, "Broken", tmp_path)
    np.save(tmp_path / "x.npy", np.ones((4, 3), np.float32))
    assert main(["trace", str(path), "--model-class", f"{models_py}:Broken", "-i", str(tmp_path / "x.npy"),
                 "-o", str(tmp_path / "t.npz")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "the model failed on the sample" in err and "IndexError" not in err


# -- one-step sequences ----------------------------------------------------------------------------------


def test_one_step_rnn_is_not_dead_and_check_skips(models_py: Path, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _, path = _checkpoint(models_py, "TfidfRNN", tmp_path)
    np.save(tmp_path / "tfidf.npy", np.random.default_rng(3).random((1, 30)).astype(np.float32))
    run = load_and_trace(_options(path, models_py, "TfidfRNN", tmp_path / "tfidf.npy"))
    analysis = analyze_run(run, AnalysisOptions())
    assert analysis.unjudged == {"rnn/l0/fwd": 1} and not analysis.findings
    assert any("fewer than the 4 needed to judge" in note for note in analysis.notes)
    capsys.readouterr()
    code = main(["check", str(path), "--model-class", f"{models_py}:TfidfRNN", "-i", str(tmp_path / "tfidf.npy"),
                 "--min-memory-horizon", "3", "--json", str(tmp_path / "c.json")])
    assert code == 0
    out = capsys.readouterr().out
    assert "skipped" in out and "healthy" in out
    cases = {c["name"]: c for c in json.loads((tmp_path / "c.json").read_text())["cases"]}
    assert cases["dead units rnn/l0/fwd"]["skipped"] and cases["dead units rnn/l0/fwd"]["passed"]
    assert cases["memory horizon"]["skipped"]
    # Four sequences of one step are four values per unit: judged again.
    np.save(tmp_path / "four.npy", np.random.default_rng(3).random((4, 1, 30)).astype(np.float32))
    four = analyze_run(load_and_trace(_options(path, models_py, "TfidfRNN", tmp_path / "four.npy")), AnalysisOptions())
    assert four.unjudged == {}


# -- cells in a loop ------------------------------------------------------------------------------------


def test_cell_loop_is_one_architecture_box(models_py: Path, tmp_path: Path) -> None:
    from lstmviz_cli.render.diagrams import architecture_graph, read_path

    _, path = _checkpoint(models_py, "CellLoop", tmp_path)
    np.save(tmp_path / "tokens.npy", np.random.default_rng(4).integers(0, 10, 2000))
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--model-class", f"{models_py}:CellLoop", "-i", str(tmp_path / "tokens.npy"),
                 "-o", str(out), "--jobs", "1", "--json", str(tmp_path / "r.json")]) == 0
    page = out.read_text()
    saliency = json.loads((tmp_path / "r.json").read_text())["saliency"]
    assert len(saliency["values"]) == 2000 and saliency["step"] == 1999  # one embedding call per step
    assert len(page.encode()) < 2_000_000  # was 5.3 MB with one box per call
    run = load_and_trace(_options(path, models_py, "CellLoop", tmp_path / "tokens.npy"))
    steps = read_path(run.trace.meta.path, run.trace.modules)
    assert [(s.name, s.calls) for s in steps] == [("embedding", 2000), ("cell", 2000), ("head", 2000)]
    dot = architecture_graph(steps, run.trace.modules).source
    assert dot.count("×2000") == 3 and dot.count(" -> ") == 4
    widths = [float(w) for w in __import__("re").findall(r'<svg class="diagram" width="([\d.]+)pt"', page)]
    assert widths and max(widths) < 2000


# -- no warning on the terminal -----------------------------------------------------------------------------


def test_console_script_prints_no_warning_on_odd_inputs(models_py: Path, tmp_path: Path) -> None:
    _, warns = _checkpoint(models_py, "Warns", tmp_path)
    np.save(tmp_path / "one.npy", np.ones((1, 3), np.float32))  # one step
    np.save(tmp_path / "const.npy", np.zeros((12, 3), np.float32))  # constant input
    np.savez(tmp_path / "empty_row.npz", x=np.zeros((2, 5, 3), np.float32), lengths=np.array([5, 0]))
    script = str(BIN / "lstmviz")
    model = ["--model-class", f"{models_py}:Warns"]
    runs = [  # (arguments, allowed exit codes)
        (["report", str(warns), "-i", str(tmp_path / "one.npy"), "--json", str(tmp_path / "one.json"),
          "-o", str(tmp_path / "one.html")], {0}),
        (["check", str(warns), "-i", str(tmp_path / "const.npy"), "--report", str(tmp_path / "c.html")], {0, 1}),
        (["trace", str(warns), "-i", str(tmp_path / "empty_row.npz"), "-o", str(tmp_path / "t.npz")], {2}),
    ]
    for args, expected in runs:
        done = subprocess.run([script, *args, *model], capture_output=True, text=True, cwd=tmp_path)
        assert done.returncode in expected, done.stderr
        assert "Warning" not in done.stderr and "warn" not in done.stderr.lower(), done.stderr
    notes = json.loads((tmp_path / "one.json").read_text())["notes"]
    assert "the model warned while it ran: UserWarning: this model is deprecated, use v2" in notes
