"""Hand-written cells in the styles users write: gates found, named from source, checked against torch.

Each cell below copies its weights from a stock nn.LSTMCell / nn.GRUCell, so every recorded series
is compared with values computed here from the stock cell's own weights and outputs.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lstmviz_cli.errors import ModelError, VerificationError
from lstmviz_cli.tracing import cells
from lstmviz_cli.tracing.cells import record_custom_cells, trace_custom, trace_custom_cells
from lstmviz_cli.tracing.records import LayerTrace

ROOT = Path(__file__).resolve().parents[1]
THIS = Path(__file__).name
B, T, IN, H = 3, 7, 5, 4


def _line(marker: str) -> int:
    """The line of this file that holds `marker` (a comment tag), for the stable fallback names."""
    for k, text in enumerate(Path(__file__).read_text().splitlines(), start=1):
        if text.rstrip().endswith(f"# {marker}"):
            return k
    raise AssertionError(marker)


# -- four styles of LSTM, one of GRU, and a shuffled one ------------------------------------------


class FusedChunkCell(nn.Module):
    """The tutorial cell: one Linear for x, one for h, gates split with chunk(4)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.x2h = nn.Linear(input_size, 4 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 4 * hidden_size)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        gates = self.x2h(x) + self.h2h(h)
        ingate, forgetgate, cellgate, outgate = gates.chunk(4, 1)
        ingate = torch.sigmoid(ingate)
        forgetgate = torch.sigmoid(forgetgate)
        cellgate = torch.tanh(cellgate)
        outgate = outgate.sigmoid()
        cy = forgetgate * c + ingate * cellgate
        hy = outgate * torch.tanh(cy)
        return hy, cy


class StepLoop(nn.Module):
    """A model that owns a cell and calls it once per time step."""

    def __init__(self, cell: nn.Module, hidden_size: int, with_c: bool = True) -> None:
        super().__init__()
        self.cell = cell
        self.hidden_size = hidden_size
        self.with_c = with_c

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.new_zeros(x.shape[0], self.hidden_size)
        c = x.new_zeros(x.shape[0], self.hidden_size)
        outs = []
        for t in range(x.shape[1]):
            if self.with_c:
                h, c = self.cell(x[:, t], (h, c))
            else:
                h = self.cell(x[:, t], h)
            outs.append(h)
        return torch.stack(outs, 1)


class SeparateParamsLSTM(nn.Module):
    """W_*, U_*, b_* per gate, looping over time inside forward (gates written in another order)."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        for gate in "ifco":
            setattr(self, f"W_{gate}", nn.Parameter(torch.zeros(input_size, hidden_size)))
            setattr(self, f"U_{gate}", nn.Parameter(torch.zeros(hidden_size, hidden_size)))
            setattr(self, f"b_{gate}", nn.Parameter(torch.zeros(hidden_size)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        h_t = x.new_zeros(x.shape[0], self.hidden_size)
        c_t = x.new_zeros(x.shape[0], self.hidden_size)
        seq = []
        for t in range(x.shape[1]):
            x_t = x[:, t, :]
            O_gate = torch.sigmoid(x_t @ self.W_o + h_t @ self.U_o + self.b_o)
            F_gate = torch.sigmoid(x_t @ self.W_f + h_t @ self.U_f + self.b_f)
            C_tilde = torch.tanh(x_t @ self.W_c + h_t @ self.U_c + self.b_c)
            I_gate = torch.sigmoid(x_t @ self.W_i + h_t @ self.U_i + self.b_i)
            c_t = F_gate * c_t + I_gate * C_tilde
            h_t = O_gate * torch.tanh(c_t)
            seq.append(h_t.unsqueeze(1))
        return torch.cat(seq, dim=1), (h_t, c_t)


class PeepholeCell(nn.Module):
    """Gers & Schmidhuber peepholes: i and f look at c_{t-1}, o looks at c_t; nn.Sigmoid modules."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.lin = nn.Linear(input_size + hidden_size, 4 * hidden_size)
        self.w_ci = nn.Parameter(torch.randn(hidden_size) * 0.5)
        self.w_cf = nn.Parameter(torch.randn(hidden_size) * 0.5)
        self.w_co = nn.Parameter(torch.randn(hidden_size) * 0.5)
        self.gate = nn.Sigmoid()

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h_prev, c_prev = state
        a_i, a_f, a_g, a_o = self.lin(torch.cat([x, h_prev], 1)).chunk(4, 1)
        input_gate = self.gate(a_i + self.w_ci * c_prev)
        forget_gate = self.gate(a_f + self.w_cf * c_prev)
        candidate = torch.tanh(a_g)
        c = forget_gate * c_prev + input_gate * candidate
        output_gate = self.gate(a_o + self.w_co * c)
        h = output_gate * torch.tanh(c)
        return h, c


class ManualGRUCell(nn.Module):
    """PyTorch's GRU equations written out: n = tanh(W_in x + r * (W_hn h + b_hn))."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.ih = nn.Linear(input_size, 3 * hidden_size)
        self.hh = nn.Linear(hidden_size, 3 * hidden_size)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = self.ih(x).chunk(3, 1)
        hr, hz, hn = self.hh(h).chunk(3, 1)
        reset = torch.sigmoid(xr + hr)
        update = torch.sigmoid(xz + hz)
        new = torch.tanh(xn + reset * hn)
        return (1 - update) * new + update * h


class CryptoCell(nn.Module):
    """Unhelpful names and several activations per line: only fallback names can describe it."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.p = nn.Linear(input_size, 4 * hidden_size)
        self.q = nn.Linear(hidden_size, 4 * hidden_size)

    def forward(self, x: torch.Tensor, s: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        a, b, d, e = (self.p(x) + self.q(s[0])).chunk(4, 1)
        k = torch.sigmoid(b) * s[1] + torch.sigmoid(a) * torch.tanh(d)  # crypto-1
        return torch.sigmoid(e) * torch.tanh(k), k  # crypto-2


class ThreeInOneCell(nn.Module):
    """One sigmoid call computes i, f and o together; the recorder splits it by the hidden size."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.x2h = nn.Linear(input_size, 4 * hidden_size)
        self.h2h = nn.Linear(hidden_size, 4 * hidden_size)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        z = self.x2h(x) + self.h2h(h)
        n = 3 * self.hidden_size
        sig = torch.sigmoid(z[:, :n])
        i, f, o = sig.chunk(3, 1)
        c = f * c + i * torch.tanh(z[:, n:])
        return o * torch.tanh(c), c


# -- references from stock cells -------------------------------------------------------------------


def _stock_lstm(seed: int = 0) -> nn.LSTMCell:
    torch.manual_seed(seed)
    return nn.LSTMCell(IN, H)


def _inputs(seed: int = 1) -> torch.Tensor:
    return torch.randn(B, T, IN, generator=torch.Generator().manual_seed(seed))


def _lstm_reference(stock: nn.LSTMCell, x: torch.Tensor) -> dict[str, np.ndarray]:
    """i, f, g, o from the stock cell's weights, c and h from the stock cell itself: (B, T, H)."""
    h = c = torch.zeros(B, H)
    out: dict[str, list[torch.Tensor]] = {k: [] for k in "ifgoch"}
    with torch.no_grad():
        for t in range(x.shape[1]):
            pre = x[:, t] @ stock.weight_ih.T + stock.bias_ih + h @ stock.weight_hh.T + stock.bias_hh
            i, f, g, o = pre.chunk(4, 1)
            h, c = stock(x[:, t], (h, c))
            for key, value in zip("ifgoch", (i.sigmoid(), f.sigmoid(), g.tanh(), o.sigmoid(), c, h), strict=True):
                out[key].append(value)
    return {k: torch.stack(v, 1).numpy() for k, v in out.items()}


def _fused_from(stock: nn.LSTMCell, cls: type[nn.Module] = FusedChunkCell) -> nn.Module:
    cell = cls(IN, H)
    names = ("x2h", "h2h") if hasattr(cell, "x2h") else ("p", "q")
    with torch.no_grad():
        getattr(cell, names[0]).weight.copy_(stock.weight_ih)
        getattr(cell, names[0]).bias.copy_(stock.bias_ih)
        getattr(cell, names[1]).weight.copy_(stock.weight_hh)
        getattr(cell, names[1]).bias.copy_(stock.bias_hh)
    return cell


def _assert_lstm_series(layer: LayerTrace, ref: dict[str, np.ndarray]) -> None:
    assert list(layer.series) == ["i", "f", "g", "o", "c", "h"]
    for key in "ifgoch":
        assert layer.series[key].shape == (B, T, H) and layer.series[key].dtype == np.float32
        np.testing.assert_allclose(layer.series[key], ref[key], atol=2e-6, err_msg=key)


# -- the styles ---------------------------------------------------------------------------------------


def test_fused_chunk_cell_called_per_step() -> None:
    stock = _stock_lstm()
    x = _inputs()
    trace = trace_custom(StepLoop(_fused_from(stock), H), x)
    layer = trace.layer("cell/l0/fwd")
    _assert_lstm_series(layer, _lstm_reference(stock, x))
    assert layer.config.kind == "LSTMCell" and layer.config.input_size == IN and layer.config.hidden_size == H
    info = trace.meta.custom_cells["cell"]
    assert info.class_name == "FusedChunkCell" and info.style == "cell" and info.mapping == "structure"
    assert info.names == {"i": "ingate", "f": "forgetgate", "g": "cellgate", "o": "outgate",
                             "c": "cy", "h": "hy"}
    assert trace.meta.series_names["cell/l0/fwd"] == info.names
    assert trace.verify_error is not None and trace.verify_error < 1e-6
    np.testing.assert_allclose(trace.output, _lstm_reference(stock, x)["h"], atol=2e-6)


def test_separate_parameters_with_internal_loop() -> None:
    stock = _stock_lstm(3)
    model = SeparateParamsLSTM(IN, H)
    with torch.no_grad():
        for k, gate in enumerate("ifco"):  # nn.LSTMCell stacks (i, f, g, o)
            rows = slice(k * H, (k + 1) * H)
            getattr(model, f"W_{gate}").copy_(stock.weight_ih[rows].T)
            getattr(model, f"U_{gate}").copy_(stock.weight_hh[rows].T)
            getattr(model, f"b_{gate}").copy_(stock.bias_ih[rows] + stock.bias_hh[rows])
    x = _inputs(4)
    trace = trace_custom(model, x)
    (layer,) = trace.layers
    assert layer.prefix == "SeparateParamsLSTM/l0/fwd" and layer.config.kind == "LSTM"
    _assert_lstm_series(layer, _lstm_reference(stock, x))
    info = trace.meta.custom_cells["SeparateParamsLSTM"]
    assert info.style == "loop"
    # Written in the order o, f, c, i: the mapping follows the arithmetic, the names follow the code.
    assert info.names == {"i": "I_gate", "f": "F_gate", "g": "C_tilde", "o": "O_gate", "c": "c_t", "h": "h_t"}
    assert [s.name for s in info.sites] == ["O_gate", "F_gate", "C_tilde", "I_gate", "h_t"]


def test_peephole_cell_with_sigmoid_modules() -> None:
    torch.manual_seed(5)
    cell = PeepholeCell(IN, H)
    x = _inputs(6)
    trace = trace_custom(StepLoop(cell, H), x)
    layer = trace.layer("cell/l0/fwd")
    # Reference: the peephole equations evaluated here from the cell's parameters.
    h = c = torch.zeros(B, H)
    ref: dict[str, list[torch.Tensor]] = {k: [] for k in "ifgoch"}
    with torch.no_grad():
        for t in range(T):
            a_i, a_f, a_g, a_o = cell.lin(torch.cat([x[:, t], h], 1)).chunk(4, 1)
            i, f, g = torch.sigmoid(a_i + cell.w_ci * c), torch.sigmoid(a_f + cell.w_cf * c), torch.tanh(a_g)
            c = f * c + i * g
            o = torch.sigmoid(a_o + cell.w_co * c)
            h = o * torch.tanh(c)
            for key, value in zip("ifgoch", (i, f, g, o, c, h), strict=True):
                ref[key].append(value)
    _assert_lstm_series(layer, {k: torch.stack(v, 1).numpy() for k, v in ref.items()})
    names = trace.meta.custom_cells["cell"].names
    assert names == {"i": "input_gate", "f": "forget_gate", "g": "candidate", "o": "output_gate", "c": "c", "h": "h"}


def test_gru_cell_written_by_hand() -> None:
    torch.manual_seed(7)
    stock = nn.GRUCell(IN, H)
    cell = ManualGRUCell(IN, H)
    with torch.no_grad():
        cell.ih.weight.copy_(stock.weight_ih)
        cell.ih.bias.copy_(stock.bias_ih)
        cell.hh.weight.copy_(stock.weight_hh)
        cell.hh.bias.copy_(stock.bias_hh)
    x = _inputs(8)
    trace = trace_custom(StepLoop(cell, H, with_c=False), x)
    layer = trace.layer("cell/l0/fwd")
    assert layer.family == "gru" and layer.config.kind == "GRUCell" and list(layer.series) == ["r", "z", "n", "h"]
    h = torch.zeros(B, H)
    ref: dict[str, list[torch.Tensor]] = {k: [] for k in "rznh"}
    with torch.no_grad():
        for t in range(T):
            gi = x[:, t] @ stock.weight_ih.T + stock.bias_ih
            gh = h @ stock.weight_hh.T + stock.bias_hh
            r = torch.sigmoid(gi[:, :H] + gh[:, :H])
            z = torch.sigmoid(gi[:, H:2 * H] + gh[:, H:2 * H])
            n = torch.tanh(gi[:, 2 * H:] + r * gh[:, 2 * H:])
            h = stock(x[:, t], h)
            for key, value in zip("rznh", (r, z, n, h), strict=True):
                ref[key].append(value)
    for key in "rznh":
        np.testing.assert_allclose(layer.series[key], torch.stack(ref[key], 1).numpy(), atol=2e-6, err_msg=key)
    assert trace.meta.custom_cells["cell"].names == {"r": "reset", "z": "update", "n": "new", "h": "h"}
    assert trace.verify_error < 1e-5


def test_unhelpful_names_get_stable_fallbacks() -> None:
    stock = _stock_lstm(9)
    x = _inputs(10)
    trace = trace_custom(StepLoop(_fused_from(stock, CryptoCell), H), x)
    _assert_lstm_series(trace.layer("cell/l0/fwd"), _lstm_reference(stock, x))
    info = trace.meta.custom_cells["cell"]
    one, two = _line("crypto-1"), _line("crypto-2")
    line_one = Path(__file__).read_text().splitlines()[one - 1]
    line_two = Path(__file__).read_text().splitlines()[two - 1]
    col = lambda text, expr: text.index(expr)  # noqa: E731
    expected = {
        "f": f"sigmoid@{THIS}:{one}:{col(line_one, 'torch.sigmoid(b)')}",
        "i": f"sigmoid@{THIS}:{one}:{col(line_one, 'torch.sigmoid(a)')}",
        "g": f"tanh@{THIS}:{one}:{col(line_one, 'torch.tanh(d)')}",
        "o": f"sigmoid@{THIS}:{two}:{col(line_two, 'torch.sigmoid(e)')}",
    }
    assert {k: info.names[k] for k in "ifgo"} == expected
    assert info.names["c"] == "k" and info.mapping == "structure"


def test_fallback_names_are_the_same_in_a_new_process() -> None:
    script = (
        "import json, sys, torch; sys.path.insert(0, 'tests'); import test_cells as tc; "
        "t = tc.trace_custom(tc.StepLoop(tc._fused_from(tc._stock_lstm(9), tc.CryptoCell), tc.H), tc._inputs(10)); "
        "print(json.dumps(t.meta.custom_cells['cell'].names))"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    here = trace_custom(StepLoop(_fused_from(_stock_lstm(9), CryptoCell), H), _inputs(10))
    assert json.loads(done.stdout.strip().splitlines()[-1]) == here.meta.custom_cells["cell"].names


def test_one_sigmoid_for_three_gates_is_split() -> None:
    stock = _stock_lstm(11)
    cell = ThreeInOneCell(IN, H)
    with torch.no_grad():  # ThreeInOneCell stacks (i, f, o, g): reorder the stock (i, f, g, o) rows
        order = torch.cat([torch.arange(0, 2 * H), torch.arange(3 * H, 4 * H), torch.arange(2 * H, 3 * H)])
        cell.x2h.weight.copy_(stock.weight_ih[order])
        cell.x2h.bias.copy_(stock.bias_ih[order])
        cell.h2h.weight.copy_(stock.weight_hh[order])
        cell.h2h.bias.copy_(stock.bias_hh[order])
    x = _inputs(12)
    trace = trace_custom(StepLoop(cell, H), x)
    _assert_lstm_series(trace.layer("cell/l0/fwd"), _lstm_reference(stock, x))
    names = trace.meta.custom_cells["cell"].names
    assert {k: names[k] for k in "ifo"} == {"i": "sig[0]", "f": "sig[1]", "o": "sig[2]"}


class InlineClassifier(nn.Module):
    """The whole model in one forward: the LSTM step is inline and only logits come out."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.gates = nn.Linear(input_size + hidden_size, 4 * hidden_size)
        self.head = nn.Linear(hidden_size, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = c = x.new_zeros(x.shape[0], self.hidden_size)
        for t in range(x.shape[1]):
            i, f, g, o = self.gates(torch.cat([x[:, t], h], 1)).chunk(4, 1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
        return torch.sigmoid(self.head(h))


def test_inline_loop_returning_only_logits_is_checked_by_the_recurrence() -> None:
    torch.manual_seed(13)
    model = InlineClassifier(IN, H)
    x = _inputs(14)
    trace = trace_custom(model, x)
    layer = trace.layer("InlineClassifier/l0/fwd")
    assert layer.config.kind == "LSTM"
    info = trace.meta.custom_cells["InlineClassifier"]
    assert "verified c_t = f*c_(t-1) + i*g" in info.notes[-1]
    assert any("left out" in note for note in info.notes)  # the head's one sigmoid is not a step
    with torch.no_grad():
        probs = torch.sigmoid(model.head(torch.from_numpy(layer.series["h"][:, -1])))
    np.testing.assert_allclose(trace.output, probs.numpy(), atol=1e-6)
    # The unhelpful-name fallback orders itself by the arithmetic, not the line order.
    with torch.no_grad():
        i, f, g, o = model.gates(torch.cat([x[:, 0], torch.zeros(B, H)], 1)).chunk(4, 1)
    np.testing.assert_allclose(layer.series["f"][:, 0], torch.sigmoid(f).numpy(), atol=1e-6)
    np.testing.assert_allclose(layer.series["o"][:, 0], torch.sigmoid(o).numpy(), atol=1e-6)


class ClassicGRUCell(nn.Module):
    """Cho et al.'s convention: h = z * h_tilde + (1 - z) * h_prev, reset applied before U."""

    def __init__(self, input_size: int, hidden_size: int) -> None:
        super().__init__()
        self.W = nn.Linear(input_size, 3 * hidden_size)
        self.U_zr = nn.Linear(hidden_size, 2 * hidden_size, bias=False)
        self.U_h = nn.Linear(hidden_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        wz, wr, wh = self.W(x).chunk(3, 1)
        uz, ur = self.U_zr(h).chunk(2, 1)
        z_t = torch.sigmoid(wz + uz)
        r_t = torch.sigmoid(wr + ur)
        h_tilde = torch.tanh(wh + self.U_h(r_t * h))
        return z_t * h_tilde + (1 - z_t) * h


def test_gru_with_the_other_update_convention() -> None:
    torch.manual_seed(15)
    cell = ClassicGRUCell(IN, H)
    x = _inputs(16)
    trace = trace_custom(StepLoop(cell, H, with_c=False), x)
    layer = trace.layer("cell/l0/fwd")
    info = trace.meta.custom_cells["cell"]
    assert layer.family == "gru" and info.names == {"r": "r_t", "z": "z_t", "n": "h_tilde", "h": "h"}
    assert any("(1-z)*h_prev + z*n" in note for note in info.notes)
    h = torch.zeros(B, H)
    hs, zs = [], []
    with torch.no_grad():
        for t in range(T):
            wz, _, _ = cell.W(x[:, t]).chunk(3, 1)
            uz, _ = cell.U_zr(h).chunk(2, 1)
            zs.append(torch.sigmoid(wz + uz))
            h = cell(x[:, t], h)
            hs.append(h)
    np.testing.assert_allclose(layer.series["z"], torch.stack(zs, 1).numpy(), atol=1e-6)
    np.testing.assert_allclose(layer.series["h"], torch.stack(hs, 1).numpy(), atol=1e-5)


# -- selection, verification, housekeeping ----------------------------------------------------------


class TwoCells(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.encoder = StepLoop(FusedChunkCell(IN, H), H)
        self.decoder = StepLoop(ManualGRUCell(H, H), H, with_c=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


def test_default_selection_finds_every_cell_and_module_picks_one() -> None:
    torch.manual_seed(0)
    model = TwoCells()
    x = _inputs()
    layers = trace_custom_cells(model, x)
    assert [(lt.prefix, lt.family) for lt in layers] == [("encoder.cell/l0/fwd", "lstm"), ("decoder.cell/l0/fwd", "gru")]
    (only,) = trace_custom_cells(model, x, module="decoder.cell")
    np.testing.assert_array_equal(only.series["h"], layers[1].series["h"])
    # Naming a parent opens up its loop as one module.
    (parent,) = trace_custom_cells(model, x, module="encoder")
    assert parent.module == "encoder" and parent.family == "lstm"


def test_unknown_module_and_models_without_cells_are_clear_errors() -> None:
    model = TwoCells()
    with pytest.raises(ModelError, match="'nope' is not a module of TwoCells; its modules: .*encoder.cell"):
        trace_custom(model, _inputs(), module="nope")
    with pytest.raises(ModelError, match="no sigmoid or tanh"):
        trace_custom(model, _inputs(), module="encoder.cell.x2h")

    class Stock(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(IN, H, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.lstm(x)[0])

    with pytest.raises(ModelError, match="no hand-written LSTM or GRU cell found in Stock"):
        trace_custom(Stock(), _inputs())


class LyingCell(FusedChunkCell):
    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = super().forward(x, state)
        return h * 0.5, c


def test_returned_state_that_disagrees_fails_verification() -> None:
    model = StepLoop(LyingCell(IN, H), H)
    with pytest.raises(VerificationError, match="cell/l0/fwd .*only to"):
        trace_custom(model, _inputs())
    trace = trace_custom(model, _inputs(), verify=False)
    assert trace.verify_error > 1e-2


def test_hooks_removed_and_training_mode_restored() -> None:
    model = StepLoop(FusedChunkCell(IN, H), H).train()
    trace_custom(model, _inputs())
    assert model.training
    for module in model.modules():
        assert not module._forward_hooks and not module._forward_pre_hooks
    assert not torch._C._is_torch_function_mode_enabled()  # the function mode is gone too


def test_trace_contract_round_trips_through_npz(tmp_path: Path) -> None:
    trace = trace_custom(StepLoop(_fused_from(_stock_lstm()), H), _inputs())
    trace.save_npz(tmp_path / "t.npz")
    with np.load(tmp_path / "t.npz") as saved:
        assert sorted(k for k in saved.files if k != "__summary__") == sorted(trace.keys())
        summary = json.loads(str(saved["__summary__"]))
    assert summary["modules"]["cell"]["kind"] == "LSTMCell"
    assert summary["meta"]["custom_cells"]["cell"]["names"]["f"] == "forgetgate"


# -- the two sample models -----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "module", "names"), [
    ("fused_cell_digitsum", "cell", {"i": "in_gate", "f": "forget_gate", "g": "cell_gate", "o": "out_gate"}),
    ("loop_lstm_digitsum", "rnn", {"i": "I_gate", "f": "F_gate", "g": "C_tilde", "o": "O_gate"}),
])
def test_sample_custom_models(name: str, module: str, names: dict[str, str]) -> None:
    sys.path.insert(0, str(ROOT / "sample_models"))
    try:
        import models
    finally:
        sys.path.remove(str(ROOT / "sample_models"))
    ckpt = torch.load(ROOT / "sample_models" / f"{name}.pt", weights_only=True)
    model = models.build(ckpt["config"]["model_class"], ckpt["model_kwargs"])
    model.load_state_dict(ckpt["model_state_dict"])
    x = torch.tensor([ckpt["sample_input"]])
    trace = trace_custom(model, x)
    info = trace.meta.custom_cells[module]
    assert {k: info.names[k] for k in "ifgo"} == names
    assert all(where.startswith("models.py:") for where in info.where.values())
    layer = trace.layer(f"{module}/l0/fwd")
    assert layer.series["h"].shape == (1, len(ckpt["sample_input"]), 64)
    assert trace.verify_error < 1e-6
    # The model's prediction (6 + 7) comes from the recorded final h.
    with torch.no_grad():
        logits = model.fc(torch.from_numpy(layer.series["h"][:, -1]))
    np.testing.assert_allclose(logits.numpy(), trace.output, atol=1e-5)
    assert int(logits.argmax()) == 13


def test_describe_site() -> None:
    cells_found, _ = record_custom_cells(StepLoop(FusedChunkCell(IN, H), H), _inputs())
    site = cells_found[0].sites[0].site
    assert cells.describe_site(site) == f"{THIS}:{site.lineno} in forward"


@pytest.mark.gpu
def test_cuda_trace_matches_cpu() -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    model = StepLoop(_fused_from(_stock_lstm()), H)
    x = _inputs()
    on_cpu = trace_custom(model, x)
    on_gpu = trace_custom(model.cuda(), x.cuda())
    assert on_gpu.meta.device.startswith("cuda")
    for key in on_cpu.keys():
        np.testing.assert_allclose(on_gpu[key], on_cpu[key], atol=1e-5, err_msg=key)
    assert on_gpu.meta.custom_cells["cell"].names == on_cpu.meta.custom_cells["cell"].names
