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
from lstmviz_cli.tracing.sample import trace_sample

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
    from lstmviz_cli.page.build import report_page
    from lstmviz_cli.page.outline import outline
    from lstmviz_cli.page.view import resolve_view

    view = resolve_view(ViewOptions(steps="4:8"), run)
    assert view.window == (4, 8)
    assert "8 (sequence 0: 6 valid, then padding)" in str(outline(report_page(run, analysis, ViewOptions())))
    with pytest.raises(InputError, match="later steps are padding"):
        resolve_view(ViewOptions(at_step=7), run)


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
    # QA S10: lengths saved under another name are suggested, not silently replaced by full lengths.
    lens = load_and_trace(_options(path, models_py, "RNN", tmp_path / "renamed.npz"))
    assert lens.trace.meta.notes[0] == ("RNN.forward takes 'text_lengths'; the input has no 'lengths', so every "
                                        "sequence was given its full length; if 'lens' holds them, pass "
                                        "--forward-arg text_lengths=lens")
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
    assert cases["memory horizon (context ablation)"]["skipped"]
    # Four sequences of one step are four values per unit: judged again.
    np.save(tmp_path / "four.npy", np.random.default_rng(3).random((4, 1, 30)).astype(np.float32))
    four = analyze_run(load_and_trace(_options(path, models_py, "TfidfRNN", tmp_path / "four.npy")), AnalysisOptions())
    assert four.unjudged == {}


# -- cells in a loop ------------------------------------------------------------------------------------


def test_cell_loop_is_one_architecture_box(models_py: Path, tmp_path: Path) -> None:
    from lstmviz_cli.page.sections.architecture import read_path
    from lstmviz_cli.render.diagrams import architecture_graph

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
    started = [(subprocess.Popen([script, *args, *model], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                 cwd=tmp_path), expected) for args, expected in runs]  # at once: two cores
    for process, expected in started:
        _, stderr = process.communicate(timeout=300)
        assert process.returncode in expected, stderr
        assert "Warning" not in stderr and "warn" not in stderr.lower(), stderr
    notes = json.loads((tmp_path / "one.json").read_text())["notes"]
    assert "the model warned while it ran: UserWarning: this model is deprecated, use v2" in notes


# -- QA of issues 13/14: tracing defects (D4, D5, D8, D9, D12–D14, S4, S12–S14) and the tolerance ----------

QA_MODELS = '''
import torch
from torch import nn


class RandInit(nn.Module):
    """Tutorials that draw h0 with torch.randn on every forward."""

    def __init__(self, feat=4, hidden=8):
        super().__init__()
        self.hidden = hidden
        self.lstm = nn.LSTM(feat, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x):
        h0 = torch.randn(1, x.size(0), self.hidden)
        c0 = torch.randn(1, x.size(0), self.hidden)
        out, _ = self.lstm(x, (h0, c0))
        return self.fc(out[:, -1])


class Stateful(nn.Module):
    """Keeps its hidden state between calls, like char-rnn generation loops."""

    def __init__(self, feat=4, hidden=8):
        super().__init__()
        self.lstm = nn.LSTM(feat, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 2)
        self.hidden_state = None

    def forward(self, x):
        out, self.hidden_state = self.lstm(x, self.hidden_state)
        return self.fc(out[:, -1])


class GRUOtherZ(nn.Module):
    """A GRU written h = (1 - z) * h + z * n, as many blog posts do."""

    def __init__(self, feat=4, hidden=8):
        super().__init__()
        self.x2h = nn.Linear(feat, 3 * hidden)
        self.h2h = nn.Linear(hidden, 3 * hidden)
        self.hidden = hidden

    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.hidden)
        outs = []
        for t in range(x.shape[1]):
            xr, xz, xn = self.x2h(x[:, t]).chunk(3, 1)
            hr, hz, hn = self.h2h(h).chunk(3, 1)
            r = torch.sigmoid(xr + hr)
            z = torch.sigmoid(xz + hz)
            n = torch.tanh(xn + r * hn)
            h = (1 - z) * h + z * n
            outs.append(h)
        return torch.stack(outs, 1)


class LNLSTM(nn.Module):
    """A layer-normalised LSTM cell (Ba et al. 2016): h = o * tanh(LN(c))."""

    def __init__(self, feat=4, hidden=8):
        super().__init__()
        self.W = nn.Linear(feat + hidden, 4 * hidden)
        self.ln_c = nn.LayerNorm(hidden)
        self.hidden = hidden

    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.hidden)
        c = x.new_zeros(x.shape[0], self.hidden)
        outs = []
        for t in range(x.shape[1]):
            i, f, g, o = self.W(torch.cat([x[:, t], h], 1)).chunk(4, 1)
            input_gate, forget_gate, output_gate = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            c = forget_gate * c + input_gate * torch.tanh(g)
            h = output_gate * torch.tanh(self.ln_c(c))
            outs.append(h)
        return torch.stack(outs, 1)


class OddLSTM(nn.Module):
    """Gates named like an LSTM's, arithmetic that is not one (c gets + 0.1, tanh(c / 2))."""

    def __init__(self, feat=4, hidden=8):
        super().__init__()
        self.W = nn.Linear(feat + hidden, 4 * hidden)
        self.hidden = hidden

    def forward(self, x):
        h = x.new_zeros(x.shape[0], self.hidden)
        c = x.new_zeros(x.shape[0], self.hidden)
        outs = []
        for t in range(x.shape[1]):
            i, f, g, o = self.W(torch.cat([x[:, t], h], 1)).chunk(4, 1)
            input_gate, forget_gate, output_gate = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
            cell_candidate = torch.tanh(g)
            c = forget_gate * c + input_gate * cell_candidate + 0.1
            h = output_gate * torch.tanh(c * 0.5)
            outs.append(h)
        return torch.stack(outs, 1)


class Seq2Seq(nn.Module):
    """A GRU encoder over the tokens and a greedy GRU decoder run for 5 steps of its own."""

    def __init__(self, vocab=12, hidden=8):
        super().__init__()
        self.embedding = nn.Embedding(vocab, hidden)
        self.encoder = nn.GRU(hidden, hidden, batch_first=True)
        self.decoder = nn.GRU(hidden, hidden, batch_first=True)
        self.out = nn.Linear(hidden, vocab)

    def forward(self, src):
        _, h = self.encoder(self.embedding(src))
        inp = torch.zeros(src.shape[0], 1, dtype=torch.long)
        outs = []
        for _ in range(5):
            o, h = self.decoder(torch.relu(self.embedding(inp)), h)
            logits = self.out(o)
            outs.append(logits)
            inp = logits.argmax(-1)
        return torch.cat(outs, 1)


class D2LLSTM(nn.Module):
    """d2l.ai's LSTM from scratch: one-hot inputs (T, B, V), no nn.Embedding."""

    def __init__(self, vocab_size=10, num_hiddens=6):
        super().__init__()
        def three():
            return (nn.Parameter(torch.randn(vocab_size, num_hiddens) * 0.1),
                    nn.Parameter(torch.randn(num_hiddens, num_hiddens) * 0.1), nn.Parameter(torch.zeros(num_hiddens)))
        self.W_xi, self.W_hi, self.b_i = three()
        self.W_xf, self.W_hf, self.b_f = three()
        self.W_xo, self.W_ho, self.b_o = three()
        self.W_xc, self.W_hc, self.b_c = three()
        self.W_hq = nn.Parameter(torch.randn(num_hiddens, vocab_size) * 0.1)
        self.b_q = nn.Parameter(torch.zeros(vocab_size))
        self.num_hiddens = num_hiddens

    def forward(self, inputs):
        H = torch.zeros(inputs.shape[1], self.num_hiddens)
        C = torch.zeros(inputs.shape[1], self.num_hiddens)
        outputs = []
        for X in inputs:
            I = torch.sigmoid((X @ self.W_xi) + (H @ self.W_hi) + self.b_i)
            Fg = torch.sigmoid((X @ self.W_xf) + (H @ self.W_hf) + self.b_f)
            O = torch.sigmoid((X @ self.W_xo) + (H @ self.W_ho) + self.b_o)
            C_tilda = torch.tanh((X @ self.W_xc) + (H @ self.W_hc) + self.b_c)
            C = Fg * C + I * C_tilda
            H = O * torch.tanh(C)
            outputs.append((H @ self.W_hq) + self.b_q)
        return torch.cat(outputs, dim=0)


class LogFeatures(nn.Module):
    """log of its features before the LSTM: a negative feature is NaN from there on."""

    def __init__(self, feat=4, hidden=8):
        super().__init__()
        self.lstm = nn.LSTM(feat, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 1)

    def forward(self, x):
        out, _ = self.lstm(torch.log(x))
        return self.fc(out[:, -1])


class Sentiment(nn.Module):
    """Batch-first sentiment model whose forward takes the lengths (scripted in the tests)."""

    def __init__(self, vocab=20, embed=6, hidden=5):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.rnn = nn.LSTM(embed, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, 1)

    def forward(self, text, text_lengths):
        packed = nn.utils.rnn.pack_padded_sequence(self.embedding(text), text_lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, (hidden, _) = self.rnn(packed)
        return self.fc(torch.cat((hidden[-2], hidden[-1]), dim=1))
'''


@pytest.fixture(scope="module")
def qa_py(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("qa") / "qa_models.py"
    path.write_text(QA_MODELS)
    return path


def _features(tmp_path: Path, steps: int = 6, width: int = 4, seed: int = 2) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.random.default_rng(seed).standard_normal((steps, width)).astype(np.float32))
    return path


def test_a_model_that_draws_random_numbers_is_traced_reproducibly(qa_py: Path, tmp_path: Path) -> None:
    """D13: h0 = torch.randn(...) in forward: the traced run and the plain re-run start from one random state
    (verified exactly), two runs trace the same numbers, the page says so, the caller's RNG is left alone."""
    _model, path = _checkpoint(qa_py, "RandInit", tmp_path, seed=1)
    options = _options(path, qa_py, "RandInit", _features(tmp_path))
    first, second = load_and_trace(options), load_and_trace(options)
    before = torch.get_rng_state()  # the caller's random state, after building the model
    trace_sample(first.loaded, first.sample)
    assert torch.equal(torch.get_rng_state(), before)
    assert first.end_to_end is not None and first.end_to_end.status == "ok"
    np.testing.assert_array_equal(first.trace["lstm/l0/fwd/c"], second.trace["lstm/l0/fwd/c"])
    assert any(note.startswith("the model draws random numbers while it runs") for note in first.trace.meta.notes)
    assert any(note.startswith("your model's output depends on the random numbers it draws")
               for note in first.trace.meta.notes)


def test_a_model_that_keeps_state_between_calls_is_one_line(qa_py: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    """D13/S11: self.hidden_state kept between calls: one line saying so, exit 2 (not "internal error")."""
    _model, path = _checkpoint(qa_py, "Stateful", tmp_path)
    code = main(["trace", str(path), "--model-class", f"{qa_py}:Stateful", "-i", str(_features(tmp_path)),
                 "-o", str(tmp_path / "t.npz")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lstmviz: error: your model's output changes between two identical calls (by ")
    assert err.endswith("it keeps state between calls (self.hidden_state changes on every call), so no run of it "
                        "can be checked against another; reset that state at the start of forward\n")


def test_a_gru_written_the_other_way_round_is_verified_and_said(qa_py: Path, tmp_path: Path) -> None:
    """D4: h = (1 - z)·h + z·n: the badge names that formula, the note is on the page, and the layer says its
    z near 1 replaces the state (the unrolled diagram and the findings read it)."""
    _model, path = _checkpoint(qa_py, "GRUOtherZ", tmp_path, seed=3)
    run = load_and_trace(_options(path, qa_py, "GRUOtherZ", _features(tmp_path)))
    layer = run.trace.layer("GRUOtherZ/l0/fwd")
    assert not layer.keeps_when_high
    cell = run.trace.meta.custom_cells["GRUOtherZ"]
    assert cell.check == "recurrence h_t = (1−z)·h_(t−1) + z·n recomputed from the captured gates vs the returned h"
    z, n, h = (layer.series[k][0].astype(np.float64) for k in "znh")
    prev = np.zeros(z.shape[1])
    for t in range(z.shape[0]):  # the formula the badge names, from the recorded z
        prev = (1 - z[t]) * prev + z[t] * n[t]
        np.testing.assert_allclose(prev, h[t], atol=TOL)
    assert any("a z near 1 replaces the state here" in note for note in run.trace.meta.notes)


def test_a_layer_normalised_lstm_cell_is_verified(qa_py: Path, tmp_path: Path) -> None:
    """D5: h = o·tanh(LN(c)): c is the argument of the layer norm, the recurrence holds on it and is checked."""
    model, path = _checkpoint(qa_py, "LNLSTM", tmp_path, seed=3)
    x = _features(tmp_path)
    run = load_and_trace(_options(path, qa_py, "LNLSTM", x))
    cell = run.trace.meta.custom_cells["LNLSTM"]
    assert cell.family == "lstm" and cell.mapping == "structure" and cell.verify_error is not None
    assert cell.check.endswith("and h_t = o·tanh(layer_norm(c_t)) vs the returned h")
    layer = run.trace.layer("LNLSTM/l0/fwd")
    i, f, g, c = (layer.series[k][0].astype(np.float64) for k in "ifgc")
    np.testing.assert_allclose(c[1:], f[1:] * c[:-1] + i[1:] * g[1:], atol=TOL)
    with torch.no_grad():
        np.testing.assert_allclose(layer.series["h"][0], model(torch.from_numpy(np.load(x))[None])[0], atol=TOL)


def test_gates_named_only_are_refused_with_why_and_shown_with_no_verify(qa_py: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    """D5's kind: a cell whose equations do not check out is a model lstmviz cannot verify (exit 2, saying
    so), not "returns no hidden state"; with --no-verify its h is the hidden state it returned."""
    _model, path = _checkpoint(qa_py, "OddLSTM", tmp_path, seed=3)
    x = _features(tmp_path)
    args = ["--model-class", f"{qa_py}:OddLSTM", "-i", str(x), "-o", str(tmp_path / "t.npz"), "--force"]
    assert main(["trace", str(path), *args]) == 2
    assert capsys.readouterr().err == (
        "lstmviz: error: OddLSTM/l0/fwd: the LSTM equations (c_t = f·c_(t−1) + i·g, h_t = o·tanh(c_t)) do not hold "
        "on its sigmoid/tanh calls, so its gates are named from the source only, unverified; rerun with --no-verify "
        "to see the trace anyway\n")
    run = load_and_trace(_options(path, qa_py, "OddLSTM", x, verify=False))
    assert list(run.trace.layer("OddLSTM/l0/fwd").series) == ["i", "f", "g", "o", "h"]
    assert run.trace.meta.custom_cells["OddLSTM"].mapping == "names"


def test_a_decoders_output_is_read_at_its_own_last_step(qa_py: Path, tmp_path: Path) -> None:
    """D14: 4 input tokens, 5 decoder steps: the prediction is the 5th output, not the 4th."""
    model, path = _checkpoint(qa_py, "Seq2Seq", tmp_path, seed=13)
    np.save(tmp_path / "src.npy", np.array([2, 3, 4, 5]))
    run = load_and_trace(_options(path, qa_py, "Seq2Seq", tmp_path / "src.npy"))
    assert (run.trace.meta.output_steps, run.trace.meta.output_follows_input) == (5, False)
    prediction = analyze_run(run, AnalysisOptions()).prediction
    with torch.no_grad():
        own = model(torch.tensor([[2, 3, 4, 5]]))[0, 4].numpy()
    assert prediction.step == 4
    np.testing.assert_allclose([v for _, v in prediction.items], own[:len(prediction.items)], atol=TOL)


def test_a_from_scratch_lstm_with_a_vocabulary_reads_one_hot_rows(qa_py: Path, tmp_path: Path) -> None:
    """D9: d2l's LSTM (no Embedding, one-hot (T, B, V) input) saved with its vocabulary: text is fed as one-hot
    rows in the layout it loops over, and said; a one-hot array is the model's to read."""
    torch.manual_seed(30)
    model = _load_class(qa_py, "D2LLSTM")().eval()
    torch.save({"model": model.state_dict(), "vocab": list("abcdefghij")}, tmp_path / "d2l.pt")
    (tmp_path / "in.txt").write_text("bechdajff")
    run = load_and_trace(_options(tmp_path / "d2l.pt", qa_py, "D2LLSTM", tmp_path / "in.txt"))
    assert run.trace.meta.model_batch_first is False and run.sample.kind == "features"
    assert any(note.startswith("the model did not take token ids: it was fed their one-hot rows over the "
                               "10-token vocabulary, as (time, batch, vocabulary)") for note in run.trace.meta.notes)
    ids = [1, 4, 2, 7, 3, 0, 9, 5, 5]
    with torch.no_grad():
        h = model(torch.eye(10)[ids][:, None])  # (T, V) outputs: its own run, one sequence
    np.testing.assert_allclose(run.trace.output[0], h.numpy(), atol=TOL)
    np.save(tmp_path / "onehot.npy", np.eye(10, dtype=np.float32)[ids])
    assert load_and_trace(_options(tmp_path / "d2l.pt", qa_py, "D2LLSTM", tmp_path / "onehot.npy")).trace.layers


def test_nan_inside_the_model_names_the_layer_and_the_step(qa_py: Path, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    """D12: NaN appearing in activations (log of a negative feature): one line, the layer and its first step,
    exit 2 with or without --no-verify; no NaN is ever called padding."""
    _model, path = _checkpoint(qa_py, "LogFeatures", tmp_path)
    x = np.abs(np.random.default_rng(0).standard_normal((6, 4))).astype(np.float32) + 0.1
    x[3, 1] = -1.0
    np.save(tmp_path / "x.npy", x)
    for extra in ([], ["--no-verify"]):
        code = main(["report", str(path), "--model-class", f"{qa_py}:LogFeatures", "-i", str(tmp_path / "x.npy"),
                     "-o", str(tmp_path / "r.html"), *extra])
        assert (code, capsys.readouterr().err) == (2, (
            "lstmviz: error: lstm/l0/fwd is NaN from step 3 on (its hidden state): the model feeds it non-finite "
            "values there, or computes them; lstmviz cannot show a trace of NaN\n"))


@pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")
def test_torchscript_archive_that_takes_the_lengths_gets_them(qa_py: Path, tmp_path: Path) -> None:
    """D8: an archive's forward(text, text_lengths) gets the .npz's lengths (read from its schema)."""
    torch.manual_seed(21)
    model = _load_class(qa_py, "Sentiment")().eval()
    torch.jit.save(torch.jit.script(model), str(tmp_path / "sent.ts.pt"))
    text = np.zeros((3, 8), dtype=np.int64)
    text[0, :6], text[1, :3], text[2, :5] = [5, 6, 7, 8, 9, 10], [4, 4, 4], [3, 3, 3, 3, 3]
    lengths = np.array([6, 3, 5])
    np.savez(tmp_path / "batch.npz", input=text, lengths=lengths)
    run = load_and_trace(LoadOptions(checkpoint=tmp_path / "sent.ts.pt", input=tmp_path / "batch.npz",
                                     trust_torchscript=True))
    assert run.end_to_end is not None and run.end_to_end.status == "ok"
    with torch.no_grad():
        own = model(torch.from_numpy(text), torch.from_numpy(lengths)).numpy()
    np.testing.assert_allclose(run.trace.output, own, atol=TOL)


def test_the_tolerance_is_one_and_check_can_loosen_it(models_py: Path, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """One verification tolerance: report refuses over it suggesting --no-verify (which then shows the error in
    red); check refuses at --max-verify-error, looser or tighter, suggesting that flag."""
    from lstmviz_cli.tracing import gates
    from lstmviz_cli.tracing.verify import GATE_TOLERANCE

    _model, path = _checkpoint(models_py, "LSTMTagger", tmp_path)
    args = ["--model-class", f"{models_py}:LSTMTagger", "--tokens", "1,2,3,4,5"]
    assert main(["check", str(path), *args, "--max-verify-error", "1e-12", "--json", str(tmp_path / "c.json")]) == 1
    case = json.loads((tmp_path / "c.json").read_text())["cases"][0]
    assert case["check"] == "verify_error" and case["message"].endswith("pass a larger --max-verify-error to accept it")
    # A scan that forgets the previous cell state: c and h miss by far more than the tolerance.
    monkeypatch.setattr(gates, "scan_loop", lambda f, u, c0, reverse: u)
    capsys.readouterr()
    assert main(["trace", str(path), *args, "-o", str(tmp_path / "t.npz")]) == 3
    assert capsys.readouterr().err.endswith(f"(tolerance {GATE_TOLERANCE:.0e}); rerun with --no-verify to see the "
                                            "trace anyway\n")
    run = load_and_trace(LoadOptions(checkpoint=path, tokens="1,2,3,4,5", model_class=f"{models_py}:LSTMTagger",
                                     verify=False))
    assert run.trace.verify_error > GATE_TOLERANCE and run.trace.meta.verify_tolerance == GATE_TOLERANCE  # S12: shown
    assert main(["check", str(path), *args, "--max-verify-error", "100", "--fail-on", "never"]) == 0  # looser


def test_what_the_model_does_not_say_is_not_stated(qa_py: Path, tmp_path: Path) -> None:
    """S4: a rebuilt layer's batch_first is not known (a state dict does not say); a cell has no layout.
    S14: a packed batch on the path is the padded tensor it was packed from, in the module's own layout."""
    lstm = torch.nn.LSTM(4, 6)  # time-major in the user's code; the state dict does not say so
    torch.save(lstm.state_dict(), tmp_path / "sd.pt")
    run = load_and_trace(LoadOptions(checkpoint=tmp_path / "sd.pt", input=_features(tmp_path), recurrent_only=True))
    assert run.trace.modules["lstm"].batch_first is None
    assert run.trace.summary()["modules"]["lstm"]["batch_first"] is None
    from lstmviz_cli.tracing.tracer import trace

    packed = torch.nn.utils.rnn.pack_padded_sequence(torch.randn(8, 3, 4), torch.tensor([6, 3, 5]),
                                                     enforce_sorted=False)
    entry = trace(lstm, packed, total_length=8).meta.path[0]
    assert (entry["input"], entry["output"]) == ([8, 3, 4], [8, 3, 6])
