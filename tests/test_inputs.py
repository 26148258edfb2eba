"""Sample inputs: every file kind lands in the one (batch, time[, features]) convention, or one clear error."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import loader_fixtures as fx
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from lstmviz_cli.cli import main
from lstmviz_cli.errors import InputError
from lstmviz_cli.loading.budget import (
    default_memory_budget,
    estimate_trace_bytes,
    parse_memory_size,
)
from lstmviz_cli.loading.checkpoint import load_checkpoint
from lstmviz_cli.loading.inputs import load_sample
from lstmviz_cli.loading.modules import recurrent_configs
from lstmviz_cli.loading.records import LoadedModel, RecurrentConfig

FEATURE_SAMPLE = [[0.5, -1.0, 2.0], [0.25, 0.0, 1.0]]


@pytest.fixture
def char_ckpt(tmp_path: Path) -> Path:
    path = tmp_path / "charlm.pt"
    meta = {"vocab": fx.VOCAB, "task": "char-lm", "input_format": "text", "sample_input": "abcabc"}
    torch.save({"model_state_dict": fx.token_model().state_dict(), **meta}, path)
    return path


@pytest.fixture
def char_model(char_ckpt: Path) -> LoadedModel:
    return load_checkpoint(char_ckpt)


@pytest.fixture
def feature_ckpt(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    path = tmp_path / "gru.pt"
    torch.save({"state_dict": nn.GRU(3, 4).state_dict(), "sample_input": FEATURE_SAMPLE, "task": "regression"}, path)
    return path


@pytest.fixture
def feature_model(feature_ckpt: Path) -> LoadedModel:
    return load_checkpoint(feature_ckpt)


def _write(tmp: Path, name: str, content: str | bytes) -> Path:
    path = tmp / name
    if isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    else:
        path.write_bytes(content)
    return path


def _npy(tmp: Path, name: str, array: np.ndarray) -> Path:
    np.save(tmp / name, array)
    return tmp / name


# -- token models ------------------------------------------------------------------------------------
def test_text_file_encoding_values(char_model: LoadedModel, tmp_path: Path) -> None:
    sample = load_sample(char_model, path=_write(tmp_path, "in.txt", "badge\r\n"))
    np.testing.assert_array_equal(sample.values, [[1, 0, 3, 6, 4]])  # the editor's final newline is dropped
    assert sample.labels == ["b", "a", "d", "g", "e"]
    assert sample.text == "badge"
    assert sample.description == "in.txt: 5 characters"
    assert sample.trace_bytes == 1 * 5 * 576  # 2 layers x 2 directions x 6 series x 6 units x 4 B


def test_inline_tokens_and_checkpoint_sample(char_model: LoadedModel) -> None:
    sample = load_sample(char_model, tokens="6, 7,0")
    np.testing.assert_array_equal(sample.values, [[6, 7, 0]])
    assert sample.labels == ["g", "h", "a"] and sample.description == "inline tokens: 3 tokens" and sample.text is None
    own = load_sample(char_model)
    np.testing.assert_array_equal(own.values, [[0, 1, 2, 0, 1, 2]])
    assert own.description == "sample input from the checkpoint: 6 characters" and own.text == "abcabc"


def test_integer_arrays_follow_the_convention(char_model: LoadedModel, tmp_path: Path) -> None:
    one = load_sample(char_model, path=_npy(tmp_path, "one.npy", np.array([3, 4, 5], dtype=np.int32)))
    assert one.values.shape == (1, 3) and one.values.dtype == np.int64
    batch = load_sample(char_model, path=_npy(tmp_path, "two.npy", np.array([[1, 2], [3, 4], [5, 6]])))
    assert batch.values.shape == (3, 2) and batch.batch == 3 and batch.steps == 2
    assert batch.labels == ["b", "c"] and batch.description == "two.npy: 3 sequences × 2 tokens"
    column = load_sample(char_model, path=_write(tmp_path, "ids.csv", "id\n2\n11\n"))
    np.testing.assert_array_equal(column.values, [[2, 11]])  # a CSV for a token model: one id per row
    row = load_sample(char_model, path=_write(tmp_path, "row.csv", "2,11,0\n"))
    np.testing.assert_array_equal(row.values, [[2, 11, 0]])
    with pytest.raises(InputError, match="one sequence of token ids"):
        load_sample(char_model, path=_write(tmp_path, "grid.csv", "1,2\n3,4\n"))


def test_word_vocabulary_splits_on_whitespace(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Module()
    model.emb = nn.Embedding(3, 4)
    model.lstm = nn.LSTM(4, 4, batch_first=True)
    torch.save({"state_dict": model.state_dict(), "vocab": ["the", "cat", "sat"], "input_format": "tokens"}, tmp_path / "w.pt")
    loaded = load_checkpoint(tmp_path / "w.pt")
    sample = load_sample(loaded, path=_write(tmp_path, "s.txt", "the cat  sat\n"))
    np.testing.assert_array_equal(sample.values, [[0, 1, 2]])
    assert sample.labels == ["the", "cat", "sat"] and sample.description == "s.txt: 3 words"
    with pytest.raises(InputError, match="words outside the model's vocabulary: 'dog'"):
        load_sample(loaded, path=_write(tmp_path, "d.txt", "the dog"))


# -- feature models ----------------------------------------------------------------------------------
def test_feature_files_of_every_kind(feature_model: LoadedModel, tmp_path: Path) -> None:
    array = np.array(FEATURE_SAMPLE, dtype=np.float64)
    torch.save(torch.tensor(array, dtype=torch.float32), tmp_path / "x.pt")
    np.savez(tmp_path / "x.npz", other=np.zeros((1, 3)), input=array)
    files = [
        _npy(tmp_path, "x.npy", array),
        tmp_path / "x.npz",
        _write(tmp_path, "x.csv", "a,b,c\n0.5,-1,2\n0.25,0,1\n"),
        _write(tmp_path, "nohdr.csv", "0.5,-1,2\n0.25,0,1\n"),
        tmp_path / "x.pt",
    ]
    for path in files:
        sample = load_sample(feature_model, path=path)
        assert sample.values.dtype == np.float32 and sample.kind == "features"
        np.testing.assert_array_equal(sample.values, array[None].astype(np.float32), err_msg=path.name)
        assert sample.labels == ["0.5", "0.25"]
        assert sample.description == f"{path.name}: 2 steps × 3 features"
    own = load_sample(feature_model)
    np.testing.assert_array_equal(own.values[0], array)
    assert own.trace_bytes == 2 * 4 * 4 * 4  # 2 steps x GRU's 4 series x 4 units x 4 B


def test_three_d_floats_are_a_batch(feature_model: LoadedModel, tmp_path: Path) -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 4, 3)
    sample = load_sample(feature_model, path=_npy(tmp_path, "b.npy", array))
    np.testing.assert_array_equal(sample.values, array)
    assert sample.description == "b.npy: 2 sequences × 4 steps × 3 features"
    assert sample.labels == ["0", "3", "6", "9"]


# -- the bad-input matrix ----------------------------------------------------------------------------
Case = tuple[str, Callable[[Path], dict], str]
FEATURE_CASES: list[Case] = [
    ("wrong feature count", lambda t: {"path": _npy(t, "f.npy", np.zeros((4, 5), np.float32))},
     r"5 features per step, but the model's first recurrent layer expects 3"),
    ("wrong dtype (ints for features)", lambda t: {"path": _npy(t, "i.npy", np.zeros((4, 3), np.int64))},
     r"got integers of shape \(4, 3\), but the model reads float features of shape \(time, 3\)"),
    ("bool dtype", lambda t: {"path": _npy(t, "b.npy", np.zeros((4, 3), bool))}, "unsupported dtype bool"),
    ("NaN", lambda t: {"path": _npy(t, "n.npy", np.array([[0, 1, 2], [3, np.nan, 5]], np.float32))},
     r"1 value\(s\) are NaN or Inf, the first \(NaN\) at \(batch, step, feature\) \(0, 1, 1\)"),
    ("Inf", lambda t: {"path": _npy(t, "inf.npy", np.array([[0, np.inf, 2]]))}, r"\(Inf"),
    ("too large for float32", lambda t: {"path": _npy(t, "big.npy", np.array([[0, 1e300, 2]]))}, "too large for float32"),
    ("empty array", lambda t: {"path": _npy(t, "e.npy", np.zeros((0, 3), np.float32))}, r"the input is empty \(shape \(0, 3\)\)"),
    ("zero-length sequence", lambda t: {"path": _npy(t, "z.npy", np.zeros((2, 0, 3), np.float32))}, "expected at least one time step"),
    ("1-D floats", lambda t: {"path": _npy(t, "v.npy", np.zeros(4, np.float32))}, r"must be 2-D \(time, 3\)"),
    ("4-D floats", lambda t: {"path": _npy(t, "q.npy", np.zeros((1, 1, 2, 3), np.float32))}, r"got shape \(1, 1, 2, 3\)"),
    ("object array", lambda t: {"path": _npy(t, "o.npy", np.array([1, "a"], dtype=object))}, "cannot read input"),
    ("missing file", lambda t: {"path": t / "nope.npy"}, "does not exist"),
    ("directory", lambda t: {"path": t}, "is a directory"),
    ("empty file", lambda t: {"path": _write(t, "e.csv", "")}, "is empty"),
    ("unsupported suffix", lambda t: {"path": _write(t, "x.wav", b"RIFF")}, "unsupported file type '.wav'"),
    ("csv non-number", lambda t: {"path": _write(t, "c.csv", "1,2,3\n4,x,6\n")}, "data row 2 has a non-number 'x'"),
    ("csv ragged", lambda t: {"path": _write(t, "r.csv", "1,2,3\n4,5\n")}, "data row 2 has 2 columns"),
    ("csv header only", lambda t: {"path": _write(t, "h.csv", "a,b,c\n")}, "has no data rows"),
    ("pt holding a list", lambda t: _pt(t, [1.0, 2.0]), "holds a list; save one tensor"),
    ("pt holding a module", lambda t: _pt(t, nn.Linear(2, 2)), "weights-only load"),
    ("text for a feature model", lambda t: {"path": _write(t, "x.txt", "abc")}, "has no vocabulary"),
]
TOKEN_CASES: list[Case] = [
    ("chars outside the vocabulary", lambda t: {"path": _write(t, "x.txt", "abzé!z")},
     r"characters outside the model's vocabulary: '!', 'z', 'é'"),
    ("token id too large", lambda t: {"tokens": "1,12,3"}, r"token id 12 at \(batch, step\) \(0, 1\) is outside the vocabulary \(0..11\)"),
    ("negative token id", lambda t: {"tokens": "-1"}, "token id -1"),
    ("wrong dtype (floats for tokens)", lambda t: {"path": _npy(t, "f.npy", np.zeros((2, 3), np.float32))},
     "got floats of dtype float32, but the model reads integer token ids"),
    ("malformed tokens", lambda t: {"tokens": "1,x,2"}, "'x' is not one"),
    ("empty tokens", lambda t: {"tokens": " , "}, "--tokens is empty"),
    ("zero-length token batch", lambda t: {"path": _npy(t, "z.npy", np.zeros((2, 0), np.int64))}, "the input is empty"),
    ("empty text", lambda t: {"path": _write(t, "e.txt", "\n")}, "is empty"),
    ("not utf-8", lambda t: {"path": _write(t, "l.txt", b"caf\xe9")}, "not UTF-8 text"),
    ("3-D ints", lambda t: {"path": _npy(t, "i3.npy", np.zeros((1, 2, 3), np.int64))}, r"1-D \(time\) or 2-D \(batch, time\)"),
    ("input and tokens", lambda t: {"tokens": "1", "path": _write(t, "x.txt", "a")}, "either --input or --tokens"),
]


def _pt(tmp: Path, obj: object) -> dict:
    torch.save(obj, tmp / "in.pt")
    return {"path": tmp / "in.pt"}


@pytest.mark.parametrize("case", FEATURE_CASES, ids=[c[0] for c in FEATURE_CASES])
def test_bad_feature_input(case: Case, feature_model: LoadedModel, tmp_path: Path) -> None:
    _name, build, fragment = case
    with pytest.raises(InputError, match=fragment) as info:
        load_sample(feature_model, **build(tmp_path))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("case", TOKEN_CASES, ids=[c[0] for c in TOKEN_CASES])
def test_bad_token_input(case: Case, char_model: LoadedModel, tmp_path: Path) -> None:
    _name, build, fragment = case
    with pytest.raises(InputError, match=fragment) as info:
        load_sample(char_model, **build(tmp_path))
    assert "\n" not in str(info.value)


def _cli_args(kwargs: dict) -> list[str]:
    args = []
    if "path" in kwargs:
        args += ["--input", str(kwargs["path"])]
    if "tokens" in kwargs:
        args += [f"--tokens={kwargs['tokens']}"]
    return args


@pytest.mark.parametrize("case", FEATURE_CASES + TOKEN_CASES, ids=[c[0] for c in FEATURE_CASES + TOKEN_CASES])
def test_bad_input_through_the_cli(
    case: Case, char_ckpt: Path, feature_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _name, build, _fragment = case
    ckpt = feature_ckpt if case in FEATURE_CASES else char_ckpt
    work = tmp_path / "work"
    work.mkdir()
    out = tmp_path / "t.npz"
    assert main(["trace", str(ckpt), *_cli_args(build(work)), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lstmviz: error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()


def test_no_input_and_no_sample_says_what_to_pass(tmp_path: Path) -> None:
    torch.save(nn.GRU(3, 4).state_dict(), tmp_path / "g.pt")
    with pytest.raises(InputError, match=r"no input given.*--input FILE \(.npy .npz .csv .pt .txt\) or --tokens"):
        load_sample(load_checkpoint(tmp_path / "g.pt"))


# -- the memory budget -------------------------------------------------------------------------------
def test_estimate_trace_bytes_counts_every_series() -> None:
    lstm = RecurrentConfig(kind="LSTM", input_size=5, hidden_size=6, num_layers=2, bidirectional=True)
    assert estimate_trace_bytes([lstm], batch=2, steps=10) == 2 * 10 * (6 * 6 * 2 * 2) * 4
    proj = RecurrentConfig(kind="LSTM", input_size=5, hidden_size=5, proj_size=2)
    assert estimate_trace_bytes([proj], batch=1, steps=1) == (6 * 5 + 2) * 4  # m is 5 wide, h 2 wide
    cell = RecurrentConfig(kind="GRUCell", input_size=3, hidden_size=4)
    rnn = RecurrentConfig(kind="RNN", input_size=3, hidden_size=4, num_layers=3)
    assert estimate_trace_bytes([cell, rnn], batch=1, steps=1) == (4 * 4 + 2 * 4 * 3) * 4


def test_memory_budget_refuses_long_inputs(char_model: LoadedModel) -> None:
    configs = list(recurrent_configs(char_model.model).values())
    per_step = estimate_trace_bytes(configs, 1, 1)
    assert per_step == 576
    tokens = ",".join(["1"] * 100)
    assert load_sample(char_model, tokens=tokens, max_memory_bytes=100 * per_step).steps == 100
    with pytest.raises(InputError, match=r"56.2 KiB, over the memory budget of 5.6 KiB.*at most 10 steps.*--max-memory"):
        load_sample(char_model, tokens=tokens, max_memory_bytes=10 * per_step)


# -- end to end with the tracer ---------------------------------------------------------------------
def test_trace_command_runs_on_the_checkpoint_sample(char_ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, summary = tmp_path / "t.npz", tmp_path / "t.json"
    assert main(["trace", str(char_ckpt), "-o", str(out), "--json", str(summary)]) == 0, capsys.readouterr().err
    with np.load(out) as arrays:
        assert arrays["lstm/l1/bwd/h"].shape == (1, 6, 6)
    report = json.loads(summary.read_text())
    assert report["verify_error"] < 1e-5
    assert report["modules"]["lstm"]["bidirectional"] is True


def test_parse_memory_size() -> None:
    assert parse_memory_size("1000") == 1000
    assert parse_memory_size("512M") == parse_memory_size("512MiB") == 512 << 20
    assert parse_memory_size("1.5GB") == 3 << 29
    assert parse_memory_size("100%") == default_memory_budget() * 4
    for bad in ("", "x", "0", "-1G", "150%", "2X"):
        with pytest.raises(InputError, match="--max-memory must be a positive size like 2G"):
            parse_memory_size(bad)


# -- fuzzing -------------------------------------------------------------------------------------------
FUZZ_EXAMPLES = int(os.environ.get("LSTMVIZ_FUZZ_EXAMPLES", "20"))


@settings(
    max_examples=FUZZ_EXAMPLES, deadline=None, derandomize="LSTMVIZ_FUZZ_EXAMPLES" not in os.environ,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(suffix=st.sampled_from([".npy", ".npz", ".csv", ".pt", ".txt"]), data=st.binary(max_size=512),
       prefix=st.sampled_from([b"", b"\x93NUMPY\x01\x00", b"PK\x03\x04", b"a,b,c\n"]))
def test_fuzz_input_files(char_model: LoadedModel, feature_model: LoadedModel, tmp_path: Path,
                          suffix: str, data: bytes, prefix: bytes) -> None:
    path = _write(tmp_path, f"fuzz{suffix}", prefix + data)
    for loaded in (char_model, feature_model):
        try:
            sample = load_sample(loaded, path=path)
        except InputError as error:
            assert "\n" not in error.message
        else:
            assert sample.values.ndim in (2, 3) and sample.steps > 0


def test_text_into_a_model_without_embedding_is_one_hot(tmp_path: Path) -> None:
    torch.manual_seed(0)
    torch.save({"state_dict": nn.GRU(4, 3).state_dict(), "vocab": list("abcd"), "input_format": "text"}, tmp_path / "oh.pt")
    loaded = load_checkpoint(tmp_path / "oh.pt")
    assert loaded.meta["one_hot"] is True and loaded.meta["vocab_size"] == 4
    sample = load_sample(loaded, tokens="3,0")
    np.testing.assert_array_equal(sample.values, [[[0, 0, 0, 1], [1, 0, 0, 0]]])
    assert sample.kind == "features" and sample.labels == ["d", "a"]
    text = load_sample(loaded, path=_write(tmp_path, "t.txt", "bad"))
    assert text.values.shape == (1, 3, 4) and text.text == "bad"
    floats = load_sample(loaded, path=_npy(tmp_path, "f.npy", np.full((2, 4), 0.25)))
    assert floats.kind == "features" and floats.values.shape == (1, 2, 4)
    with pytest.raises(InputError, match="outside the vocabulary"):
        load_sample(loaded, tokens="4")


def test_npz_lengths_mark_unequal_sequences(feature_model: LoadedModel, tmp_path: Path) -> None:
    x = np.arange(2 * 4 * 3, dtype=np.float32).reshape(2, 4, 3)
    np.savez(tmp_path / "p.npz", lengths=np.array([4, 2]), x=x)
    sample = load_sample(feature_model, path=tmp_path / "p.npz")
    np.testing.assert_array_equal(sample.values, x)
    np.testing.assert_array_equal(sample.lengths, [4, 2])
    np.savez(tmp_path / "bad.npz", x=x, lengths=np.array([5, 2]))
    with pytest.raises(InputError, match=r"'lengths' must lie in 1..4"):
        load_sample(feature_model, path=tmp_path / "bad.npz")
    np.savez(tmp_path / "bad2.npz", x=x, lengths=np.array([2.0, 1.0]))
    with pytest.raises(InputError, match="'lengths' must be 2 integers"):
        load_sample(feature_model, path=tmp_path / "bad2.npz")


def test_estimate_equals_the_real_trace_size(tmp_path: Path) -> None:
    from lstmviz_cli.tracing.sample import trace_sample

    torch.manual_seed(0)
    lstm = nn.LSTM(3, 5, num_layers=2, bidirectional=True, proj_size=2, batch_first=True)
    torch.save({"state_dict": lstm.state_dict(), "sample_input": np.ones((4, 3)).tolist()}, tmp_path / "p.pt")
    loaded = load_checkpoint(tmp_path / "p.pt")
    sample = load_sample(loaded)
    trace = trace_sample(loaded, sample, verify=True)
    actual = sum(trace[key].nbytes for key in trace.keys() if not key.endswith("/lengths"))
    assert sample.trace_bytes == actual == 4 * 2 * 2 * (6 * 5 + 2) * 4
