"""The trace engine against PyTorch itself and against a plain per-step reference written here."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from lstmviz_cli import trace as public_trace
from lstmviz_cli.errors import ModelError, VerificationError
from lstmviz_cli.loading.records import LoadedModel, ModelInfo, SampleInput
from lstmviz_cli.tracing import gates as _gates
from lstmviz_cli.tracing import kernels
from lstmviz_cli.tracing.records import SERIES, Trace
from lstmviz_cli.tracing.sample import trace_sample
from lstmviz_cli.tracing.tracer import trace

TOL = 1e-5
KEY = re.compile(r"^[\w.]+/l\d+/(fwd|bwd)/[a-z]$")

# -- an independent reference: the per-step loop written straight from PyTorch's documentation --


def _sig(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _param(module: nn.Module, name: str) -> np.ndarray | None:
    value = getattr(module, name, None)
    return None if value is None else value.detach().double().numpy()


def _step(kind: str, p: dict, x: np.ndarray, h: np.ndarray, c: np.ndarray | None, nonlin: str):
    """One time step for one sequence (float64); returns the recorded series and the new state."""
    b_ih = p["b_ih"] if p["b_ih"] is not None else 0.0
    b_hh = p["b_hh"] if p["b_hh"] is not None else 0.0
    gi = p["w_ih"] @ x + b_ih
    gh = p["w_hh"] @ h + b_hh
    if kind == "lstm":
        hidden = p["w_hh"].shape[0] // 4
        pre = gi + gh
        i, f = _sig(pre[:hidden]), _sig(pre[hidden:2 * hidden])
        g, o = np.tanh(pre[2 * hidden:3 * hidden]), _sig(pre[3 * hidden:])
        c = f * c + i * g
        m = o * np.tanh(c)
        h = p["w_hr"] @ m if p["w_hr"] is not None else m
        out = {"i": i, "f": f, "g": g, "o": o, "c": c, "h": h}
        if p["w_hr"] is not None:
            out["m"] = m
        return out, h, c
    if kind == "gru":
        hidden = p["w_hh"].shape[0] // 3
        r = _sig(gi[:hidden] + gh[:hidden])
        z = _sig(gi[hidden:2 * hidden] + gh[hidden:2 * hidden])
        n = np.tanh(gi[2 * hidden:] + r * gh[2 * hidden:])
        h = (1 - z) * n + z * h
        return {"r": r, "z": z, "n": n, "h": h}, h, None
    a = gi + gh
    h = np.maximum(a, 0) if nonlin == "relu" else np.tanh(a)
    return {"a": a, "h": h}, h, None


def reference(module: nn.Module, x: np.ndarray, h0=None, c0=None, lengths=None) -> dict:
    """Series of every layer/direction of an nn.LSTM/GRU/RNN; x is batch-major (B, T, I)."""
    kind = type(module).__name__.lower()
    layers, dirs = module.num_layers, 2 if module.bidirectional else 1
    proj = getattr(module, "proj_size", 0)
    out_size = proj or module.hidden_size
    batch, steps, _ = x.shape
    lengths = np.full(batch, steps) if lengths is None else np.asarray(lengths)
    nonlin = getattr(module, "nonlinearity", "tanh")
    result = {}
    layer_in = x.astype(np.float64)
    for layer in range(layers):
        outputs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            p = {k: _param(module, n + sfx) for k, n in (("w_ih", "weight_ih"), ("w_hh", "weight_hh"),
                 ("b_ih", "bias_ih"), ("b_hh", "bias_hh"), ("w_hr", "weight_hr"))}
            series: dict[str, np.ndarray] = {}
            out = np.zeros((batch, steps, out_size))
            for b in range(batch):
                idx = layer * dirs + d
                h = np.zeros(out_size) if h0 is None else h0[idx, b].astype(np.float64)
                c = np.zeros(module.hidden_size) if c0 is None else c0[idx, b].astype(np.float64)
                order = range(lengths[b])[::-1] if d else range(lengths[b])
                for t in order:
                    rec, h, c = _step(kind, p, layer_in[b, t], h, c, nonlin)
                    for name, v in rec.items():
                        series.setdefault(name, np.full((batch, steps, v.shape[0]), np.nan))[b, t] = v
                    out[b, t] = h
            outputs.append(out)
            result[f"l{layer}/{'bwd' if d else 'fwd'}"] = series
        layer_in = np.concatenate(outputs, axis=2)
    return result


def assert_matches(tr: Trace, module_name: str, ref: dict) -> None:
    for prefix, series in ref.items():
        got = tr.layer(f"{module_name}/{prefix}").series
        assert set(got) == set(series), prefix
        for name, want in series.items():
            have = got[name]
            assert have.dtype == np.float32 and have.shape == want.shape, (prefix, name)
            np.testing.assert_array_equal(np.isnan(have), np.isnan(want))
            np.testing.assert_allclose(have, want, atol=TOL, rtol=0, equal_nan=True,
                                       err_msg=f"{prefix}/{name}")


def make(kind: str, *, inp=3, hidden=5, **kw) -> nn.Module:
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[kind]
    torch.manual_seed(1)
    return cls(inp, hidden, **kw)


# -- the configuration grid ----------------------------------------------------------------------

GRID = [
    ("lstm", {}),
    ("lstm", {"num_layers": 3, "bidirectional": True}),
    ("lstm", {"num_layers": 2, "proj_size": 2}),
    ("lstm", {"bidirectional": True, "proj_size": 3, "bias": False}),
    ("lstm", {"batch_first": True, "num_layers": 2}),
    ("lstm", {"bias": False}),
    ("gru", {}),
    ("gru", {"num_layers": 2, "bidirectional": True, "batch_first": True}),
    ("gru", {"bias": False, "num_layers": 3}),
    ("rnn", {}),
    ("rnn", {"nonlinearity": "relu", "num_layers": 2, "bidirectional": True}),
    ("rnn", {"bias": False, "batch_first": True}),
]


def _call_input(module: nn.Module, x: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(x)
    return t if module.batch_first else t.transpose(0, 1)


@pytest.mark.parametrize("with_state", [False, True])
@pytest.mark.parametrize(("kind", "kw"), GRID, ids=[f"{k}-{v}" for k, v in GRID])
def test_gates_match_reference_and_outputs(kind: str, kw: dict, with_state: bool) -> None:
    module = make(kind, **kw)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 3)).astype(np.float32)
    dirs = 2 if module.bidirectional else 1
    out_size = getattr(module, "proj_size", 0) or module.hidden_size
    h0 = c0 = None
    args = ()
    if with_state:
        h0 = rng.normal(size=(module.num_layers * dirs, 2, out_size)).astype(np.float32)
        c0 = rng.normal(size=(module.num_layers * dirs, 2, module.hidden_size)).astype(np.float32)
        hx = (torch.from_numpy(h0), torch.from_numpy(c0)) if kind == "lstm" else torch.from_numpy(h0)
        args = (hx,)
    with torch.no_grad():
        real = module(_call_input(module, x), *args)
    tr = trace(module, _call_input(module, x), *args)
    assert_matches(tr, kind, reference(module, x, h0, c0 if kind == "lstm" else None))
    assert tr.verify_error is not None and tr.verify_error < TOL
    np.testing.assert_allclose(tr.output, real[0].numpy(), atol=1e-6, rtol=0)
    assert set(tr.modules) == {kind}
    assert tr.modules[kind].num_layers == module.num_layers


@settings(max_examples=int(os.environ.get("LSTMVIZ_FUZZ_EXAMPLES", "20")), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=st.sampled_from(["lstm", "gru", "rnn"]),
    layers=st.integers(1, 3),
    bidirectional=st.booleans(),
    proj=st.integers(0, 2),
    bias=st.booleans(),
    batch_first=st.booleans(),
    batch=st.integers(1, 3),
    steps=st.integers(1, 7),
    packed=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_hypothesis_configurations(kind, layers, bidirectional, proj, bias, batch_first, batch,
                                   steps, packed, seed) -> None:
    kw = {"num_layers": layers, "bidirectional": bidirectional, "bias": bias,
          "batch_first": batch_first}
    if kind == "lstm" and proj:
        kw["proj_size"] = proj
    module = make(kind, hidden=4, **kw)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(batch, steps, 3)).astype(np.float32)
    lengths = None
    call = _call_input(module, x)
    if packed and batch > 1:
        lengths = rng.integers(1, steps + 1, size=batch)
        lengths[0] = steps
        call = pack_padded_sequence(call, torch.as_tensor(lengths), batch_first=batch_first,
                                    enforce_sorted=False)
        x = x.copy()
        for b, n in enumerate(lengths):
            x[b, n:] = np.nan  # the reference must never read padding
    tr = trace(module, call)
    assert_matches(tr, kind, reference(module, x, lengths=lengths))
    assert tr.verify_error < TOL


# -- packed sequences ---------------------------------------------------------------------------


def test_packed_unequal_lengths_record_nan_padding_and_lengths() -> None:
    module = make("lstm", num_layers=2, bidirectional=True)
    x = np.random.default_rng(3).normal(size=(3, 6, 3)).astype(np.float32)
    lengths = np.array([4, 6, 2])
    packed = pack_padded_sequence(torch.from_numpy(x), torch.as_tensor(lengths), batch_first=True,
                                  enforce_sorted=False)
    with torch.no_grad():
        real_out, (real_h, real_c) = module(packed)
    tr = trace(module, packed)
    np.testing.assert_array_equal(tr.lengths["lstm"], lengths)
    assert "lstm/lengths" in tr.keys()
    c = tr["lstm/l1/bwd/c"]
    assert np.isnan(c[2, 2:]).all() and not np.isnan(c[2, :2]).any()
    assert_matches(tr, "lstm", reference(module, np.where(np.isnan(x), 0, x), lengths=lengths))
    # final states: the forward direction's last valid c, the backward direction's c at t = 0
    for b, n in enumerate(lengths):
        np.testing.assert_allclose(tr["lstm/l1/fwd/c"][b, n - 1], real_c[2, b].numpy(), atol=TOL)
        np.testing.assert_allclose(tr["lstm/l1/bwd/c"][b, 0], real_c[3, b].numpy(), atol=TOL)
        np.testing.assert_allclose(tr["lstm/l1/fwd/h"][b, n - 1], real_h[2, b].numpy(), atol=TOL)


def test_equal_lengths_store_no_lengths_key() -> None:
    module = make("gru")
    packed = pack_padded_sequence(torch.randn(4, 2, 3), torch.tensor([4, 4]))
    tr = trace(module, packed)
    assert tr.lengths == {} and not any(k.endswith("/lengths") for k in tr.keys())


# -- cells, several modules, extra arguments ----------------------------------------------------


class CellLoop(nn.Module):
    def __init__(self, cell: nn.Module) -> None:
        super().__init__()
        self.cell = cell
        self.head = nn.Linear(cell.hidden_size, 2)

    def forward(self, x: torch.Tensor, *, scale: float = 1.0) -> torch.Tensor:
        h = torch.zeros(x.shape[0], self.cell.hidden_size) + 0.1
        c = torch.zeros_like(h) - 0.2
        for t in range(x.shape[1]):
            if isinstance(self.cell, nn.LSTMCell):
                h, c = self.cell(x[:, t] * scale, (h, c))
            else:
                h = self.cell(x[:, t] * scale, h)
        return self.head(h)


@pytest.mark.parametrize("cls", [nn.LSTMCell, nn.GRUCell, nn.RNNCell])
def test_cells_in_a_user_loop(cls: type) -> None:
    torch.manual_seed(2)
    cell = cls(3, 4)
    model = CellLoop(cell)
    x = np.random.default_rng(1).normal(size=(2, 5, 3)).astype(np.float32)
    tr = trace(model, torch.from_numpy(x), scale=0.5)
    family = cls.__name__.lower().removesuffix("cell")
    assert set(tr.modules) == {"cell"} and tr.modules["cell"].kind == cls.__name__
    assert [k.rsplit("/", 1)[1] for k in tr.keys()] == list(SERIES[family])
    # reference: the same loop, step by step, in float64 NumPy
    p = {"w_ih": _param(cell, "weight_ih"), "w_hh": _param(cell, "weight_hh"),
         "b_ih": _param(cell, "bias_ih"), "b_hh": _param(cell, "bias_hh"), "w_hr": None}
    h, c = np.full((2, 4), 0.1), np.full((2, 4), -0.2)
    for t in range(5):
        for b in range(2):
            rec, hb, cb = _step(family, p, x[b, t] * 0.5, h[b], c[b], "tanh")
            for name, v in rec.items():
                np.testing.assert_allclose(tr[f"cell/l0/fwd/{name}"][b, t], v, atol=TOL)
            h[b] = hb
            if cb is not None:
                c[b] = cb
    assert tr.meta.path[0] == {"name": "cell", "type": cls.__name__, "input": [2, 3],
                                  "output": [2, 4], "calls": 5}
    assert tr.verify_error < TOL


class EncoderDecoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(4)
        self.embed = nn.Embedding(10, 3)
        self.encoder = nn.LSTM(3, 4, batch_first=True, bidirectional=True)
        self.decoder = nn.GRU(8, 5, batch_first=True)
        self.out = nn.Linear(5, 10)

    def forward(self, tokens: torch.Tensor, bias: torch.Tensor, *, temperature: float = 1.0):
        enc, _ = self.encoder(self.embed(tokens))
        dec, _ = self.decoder(enc + bias)
        return self.out(dec) / temperature, dec


def test_two_modules_and_extra_forward_arguments() -> None:
    model = EncoderDecoder()
    tokens = torch.tensor([[1, 2, 3, 4], [5, 6, 7, 0]])
    bias = torch.full((1, 1, 8), 0.25)
    with torch.no_grad():
        real = model(tokens, bias, temperature=2.0)
    tr = trace(model, tokens, bias, temperature=2.0)
    assert set(tr.modules) == {"encoder", "decoder"}
    np.testing.assert_allclose(tr.output, real[0].numpy(), atol=1e-6)
    with torch.no_grad():
        emb = model.embed(tokens).numpy()
        enc = model.encoder(model.embed(tokens))[0].numpy()
    assert_matches(tr, "encoder", reference(model.encoder, emb))
    assert_matches(tr, "decoder", reference(model.decoder, enc + 0.25))
    assert [(p["name"], p["type"], p["input"], p["output"]) for p in tr.meta.path] == [
        ("embed", "Embedding", [2, 4], [2, 4, 3]),
        ("encoder", "LSTM", [2, 4, 3], [2, 4, 8]),
        ("decoder", "GRU", [2, 4, 8], [2, 4, 5]),
        ("out", "Linear", [2, 4, 5], [2, 4, 10]),
    ]
    assert tr.meta.device == "cpu"
    assert [lt.prefix for lt in tr.layers] == ["encoder/l0/fwd", "encoder/l0/bwd", "decoder/l0/fwd"]


def test_a_module_called_step_by_step_is_concatenated_along_time() -> None:
    module = make("lstm", batch_first=True)
    x = torch.randn(2, 5, 3)

    class Stepper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = module

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            state, outs = None, []
            for t in range(x.shape[1]):
                out, state = self.lstm(x[:, t:t + 1], state)
                outs.append(out)
            return torch.cat(outs, 1)

    tr = trace(Stepper(), x)
    assert tr["lstm/l0/fwd/h"].shape == (2, 5, 5)
    assert_matches(tr, "lstm", reference(module, x.numpy()))


def test_unbatched_input_is_one_sequence() -> None:
    module = make("gru", num_layers=2)
    x = torch.randn(6, 3)
    with torch.no_grad():
        real_out, real_h = module(x)
    tr = trace(module, x)
    assert tr["gru/l1/fwd/h"].shape == (1, 6, 5)
    np.testing.assert_allclose(tr.output, real_out.numpy(), atol=1e-6)
    assert_matches(tr, "gru", reference(module, x.numpy()[None]))


# -- state restored, hooks removed, failures ----------------------------------------------------


def test_training_mode_restored_and_hooks_removed() -> None:
    model = EncoderDecoder().train()
    model.decoder.dropout = 0.0
    seen = []
    user_handle = model.encoder.register_forward_hook(lambda m, a, o: seen.append(1))
    tr = trace(model, torch.tensor([[1, 2]]), torch.zeros(1, 1, 8))
    assert tr.layers and seen == [1]
    assert model.training and all(m.training for m in model.modules())
    for module in model.modules():
        assert "forward" not in module.__dict__
        assert list(module._forward_hooks) == ([user_handle.id] if module is model.encoder else [])
    user_handle.remove()


def test_state_restored_when_the_forward_fails() -> None:
    model = EncoderDecoder().train()
    with pytest.raises(IndexError):
        trace(model, torch.tensor([[1, 99]]), torch.zeros(1, 1, 8))  # token 99 is out of range
    assert model.training
    assert all(not m._forward_hooks and "forward" not in m.__dict__ for m in model.modules())


def test_no_recurrent_module_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="no nn.LSTM"):
        trace(nn.Linear(2, 2), torch.zeros(1, 2))


def test_verification_failure_raises_unless_disabled(monkeypatch: pytest.MonkeyPatch) -> None:
    module = make("lstm")
    x = torch.randn(5, 1, 3)
    # A scan that forgets the previous cell state reconstructs the wrong c (and so the wrong h).
    monkeypatch.setattr(_gates, "scan_loop", lambda f, u, c0, reverse: u)
    with pytest.raises(VerificationError, match=r"lstm/l0/fwd .*tolerance"):
        trace(module, x, kernel="fused")
    tr = trace(module, x, verify=False, kernel="fused")
    assert tr.verify_error is None and tr.meta.verify_errors is None


def test_parallel_scan_equals_sequential_scan() -> None:
    gen = torch.Generator().manual_seed(0)
    f = torch.rand(37, 2, 3, generator=gen)
    u = torch.randn(37, 2, 3, generator=gen)
    c0 = torch.randn(2, 3, generator=gen)
    for reverse in (False, True):
        seq = _gates.scan_loop(f, u.clone(), c0, reverse)
        par = _gates.scan_parallel(f, u.clone(), c0, reverse)
        torch.testing.assert_close(par, seq, atol=1e-6, rtol=0)


def test_the_gpu_code_path_on_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """What CUDA runs (parallel scan, chunked host copies) checked here against the reference."""
    monkeypatch.setattr(_gates, "_direct", lambda spec, x: False)
    monkeypatch.setattr(_gates, "scan_loop", _gates.scan_parallel)
    module = make("lstm", num_layers=2, bidirectional=True)
    x = np.random.default_rng(8).normal(size=(3, 11, 3)).astype(np.float32)
    lengths = np.array([11, 4, 7])
    packed = pack_padded_sequence(torch.from_numpy(x), torch.as_tensor(lengths), batch_first=True,
                                  enforce_sorted=False)
    tr = trace(module, packed, chunk_steps=3, kernel="fused")
    assert_matches(tr, "lstm", reference(module, x, lengths=lengths))


@pytest.mark.parametrize("kernel", ["onednn-workspace", "fused"])
def test_workspace_and_rebuilt_gates_agree(kernel: str) -> None:
    module = make("lstm", hidden=64, num_layers=2, bidirectional=True)  # 4H = 256: padded rows
    x = torch.randn(9, 3, 3)
    tr = trace(module, x, chunk_steps=4, kernel=kernel)  # several time chunks, carried cell state
    assert_matches(tr, "lstm", reference(module, x.transpose(0, 1).numpy()))
    onednn = kernel == "onednn-workspace" and kernels.OneDnnWorkspaceKernel.usable(module, x, False)
    assert set(tr.meta.kernels.values()) == {"onednn-workspace" if onednn else "fused"}


def test_the_workspace_stride_is_onednns_good_leading_dimension() -> None:
    """oneDNN pads the gates' rows to 64 bytes, and by 64 more when that is a multiple of 256 floats."""
    assert [kernels.onednn_gates_ld(g) for g in (16, 20, 256, 512, 1024, 1000)] == [16, 32, 272, 528, 1040, 1008]


# -- memory options, contract, persistence ------------------------------------------------------


def test_float16_and_selected_series_and_units() -> None:
    module = make("lstm", hidden=6, num_layers=2, proj_size=3)
    x = torch.randn(7, 2, 3)
    full = trace(module, x)
    small = trace(module, x, store_dtype="float16", keep_series=("f", "c", "h"), keep_units=[4, 1])
    assert small.keys() == [f"lstm/l{k}/fwd/{s}" for k in (0, 1) for s in ("f", "c", "h")]
    assert small["lstm/l0/fwd/c"].dtype == np.float16 and small["lstm/l0/fwd/c"].shape == (2, 7, 2)
    np.testing.assert_allclose(small["lstm/l1/fwd/f"], full["lstm/l1/fwd/f"][..., [1, 4]], atol=1e-3)
    # h has only proj_size = 3 units: the selection keeps the units that exist
    np.testing.assert_allclose(small["lstm/l1/fwd/h"], full["lstm/l1/fwd/h"][..., [1]], atol=1e-3)
    assert small.meta.kept_units == [1, 4] and small.meta.store_dtype == "float16"
    assert small.verify_error == full.verify_error


def test_keys_follow_the_contract() -> None:
    module = make("lstm", num_layers=2, bidirectional=True, proj_size=2)
    tr = trace(module, torch.randn(4, 1, 3))
    assert tr.keys() == [f"lstm/l{k}/{d}/{s}" for k in (0, 1) for d in ("fwd", "bwd")
                         for s in ("i", "f", "g", "o", "c", "m", "h")]
    for key in tr.keys():
        assert KEY.match(key) and tr[key].dtype == np.float32 and tr[key].shape[:2] == (1, 4)
    lt = tr.layer("lstm/l1/bwd")
    assert set(lt.weights) == {"weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr"}
    np.testing.assert_array_equal(lt.weights["weight_hr"],
                                  module.weight_hr_l1_reverse.detach().numpy())


def test_save_npz_round_trips(tmp_path: Path) -> None:
    model = EncoderDecoder()
    tr = trace(model, torch.tensor([[1, 2, 3]]), torch.zeros(1, 1, 8))
    path = tmp_path / "t.npz"
    tr.save_npz(path)
    with np.load(path) as data:
        assert sorted(k for k in data.files if k != "__summary__") == sorted(tr.keys())
        for key in tr.keys():
            np.testing.assert_array_equal(data[key], tr[key])
        summary = json.loads(str(data["__summary__"]))
    assert summary["verify_error"] == tr.verify_error
    assert summary["modules"]["encoder"]["bidirectional"] is True
    assert summary["keys"]["decoder/l0/fwd/n"] == [1, 3, 5]


def test_public_import_is_the_function() -> None:
    assert public_trace is trace


# -- trace_sample with a hand-built LoadedModel --------------------------------------------------


def _info(n: int) -> ModelInfo:
    return ModelInfo(name="m.pt", path="m.pt", format="state_dict", size_bytes=1, n_params=n,
                     device="cpu", rebuilt=True)


def test_trace_sample_packs_unequal_lengths_for_a_bare_stack() -> None:
    module = make("lstm", num_layers=2)  # time-major, as rebuilt stacks are
    values = np.random.default_rng(5).normal(size=(2, 5, 3)).astype(np.float32)
    values[1, 3:] = 0.0
    sample = SampleInput(values=values, kind="features", labels=None, description="two sequences",
                         lengths=np.array([5, 3]))
    loaded = LoadedModel(model=module, info=_info(10))
    tr = trace_sample(loaded, sample)
    np.testing.assert_array_equal(tr.lengths["lstm"], [5, 3])
    assert np.isnan(tr["lstm/l1/fwd/h"][1, 3:]).all()
    assert_matches(tr, "lstm", reference(module, values, lengths=[5, 3]))
    assert tr.meta.sample == "two sequences" and tr.meta.packed is True


def test_trace_sample_time_major_features_and_tokens() -> None:
    module = make("gru")
    values = np.random.default_rng(6).normal(size=(1, 4, 3)).astype(np.float32)
    tr = trace_sample(LoadedModel(model=module, info=_info(1)),
                      SampleInput(values=values, kind="features", labels=["a"] * 4, description="d"))
    assert tr.output.shape == (1, 4, 5)  # batch-major again for the report
    assert_matches(tr, "gru", reference(module, values))
    assert tr.meta.labels == ["a"] * 4 and tr.meta.model_batch_first is False

    model = EncoderDecoder()

    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = model

        def forward(self, tokens: torch.Tensor) -> torch.Tensor:
            return self.inner(tokens, torch.zeros(1, 1, 8))[0]

    tokens = SampleInput(values=np.array([[1, 2, 3]]), kind="tokens", labels=None, description="t")
    tr = trace_sample(LoadedModel(model=Tokens(), info=_info(1)), tokens)
    assert tr.output.shape == (1, 3, 10) and "inner.encoder/l0/bwd/f" in tr.keys()


def test_trace_sample_turns_model_failures_into_model_errors() -> None:
    sample = SampleInput(values=np.zeros((1, 4, 7), np.float32), kind="features", labels=None,
                         description="wrong width")
    with pytest.raises(ModelError, match="wrong width"):
        trace_sample(LoadedModel(model=make("lstm"), info=_info(1)), sample)


# -- long sequences: bounded memory, measured by size (not by time) -----------------------------

LONG = textwrap.dedent("""
    import json, os, sys, threading, time, torch
    from torch import nn
    from lstmviz_cli import trace
    torch.set_num_threads(1)
    torch.manual_seed(0)
    steps, hidden = 20000, 128
    model = nn.LSTM(16, hidden).eval()
    x = torch.randn(steps, 1, 16)
    with torch.no_grad():
        model(x)
    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    base = rss()
    peak = [base]
    stop = threading.Event()
    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss())
            time.sleep(0.001)
    sampler = threading.Thread(target=sample)
    sampler.start()
    tr = trace(model, x, store_dtype=sys.argv[1], chunk_steps=2048)
    stop.set()
    sampler.join()
    peak[0] = max(peak[0], rss())
    stored = sum(a.nbytes for lt in tr.layers for a in lt.series.values())
    print(json.dumps({"stored": stored, "growth": peak[0] - base, "err": tr.verify_error}))
""")


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_long_sequence_memory_is_bounded(dtype: str) -> None:
    if not Path("/proc/self/statm").exists():
        pytest.skip("peak memory is read from /proc (Linux)")
    done = subprocess.run([sys.executable, "-c", LONG, dtype], capture_output=True, text=True,
                          check=True, timeout=300)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    per_value = 4 if dtype == "float32" else 2
    assert result["stored"] == 20000 * 128 * 6 * per_value  # i, f, g, o, c, h: nothing else kept
    assert result["err"] < 1e-4
    # Peak growth: the arrays, the kernel's own output and one chunk of workspace, not T x 4H temps.
    workspace = 20000 * 128 * 4 * 4 * 2  # a float32 copy of the gates and of the kernel's h
    assert result["stored"] <= result["growth"] < result["stored"] + workspace + 64 * 2**20, result


# -- GPU ----------------------------------------------------------------------------------------


@pytest.mark.gpu
def test_cuda_trace_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    module = make("lstm", num_layers=2, bidirectional=True, hidden=32)
    x = torch.randn(50, 3, 3)
    cpu = trace(module, x)
    gpu = trace(module.cuda(), x.cuda())
    assert gpu.meta.device.startswith("cuda")
    for key in cpu.keys():
        np.testing.assert_allclose(gpu[key], cpu[key], atol=1e-4)
    assert gpu.verify_error < 1e-4


def test_full_float32_turns_tf32_off_inside_and_restores_the_callers_settings() -> None:
    """A GPU run of the model must not use TF32 (its ~1e-3 errors fail the gates' 1e-4 verification);
    the caller's precision settings come back as they were, and a CPU trace gets no TF32 note."""
    from lstmviz_cli.tracing.precision import _rnn_precision, full_float32, tf32_note

    matmul = torch.backends.cuda.matmul
    before = (_rnn_precision(), str(matmul.fp32_precision))  # type: ignore[attr-defined]
    with full_float32():
        assert _rnn_precision() != "tf32" and str(matmul.fp32_precision) != "tf32"  # type: ignore[attr-defined]
        with full_float32():  # nested runs (a traced run inside a seeded block) keep it off
            assert _rnn_precision() != "tf32"
        with torch.backends.cudnn.flags(enabled=False):  # torch's own switch (saliency) still reads them
            pass
        assert _rnn_precision() != "tf32"
    assert (_rnn_precision(), str(matmul.fp32_precision)) == before  # type: ignore[attr-defined]
    assert tf32_note("cpu") is None
