"""The recurrent families lstmviz knows, as one source: gate order, series, names, roles.

PyTorch stacks the gates of `weight_ih_l{k}` / `weight_hh_l{k}` / the biases row-block by row-block
in a fixed order per family (torch.nn.LSTM: i, f, g, o; torch.nn.GRU: r, z, n; torch.nn.RNN: one
block). Every module that splits, names, orders or colours gates reads it from here.

GRU follows PyTorch's formulation (torch.nn.GRU docs): n = tanh(W_in x + b_in + r * (W_hn h + b_hn)),
h' = (1 - z) * n + z * h, so z near 1 *keeps* the state, like f near 1 in an LSTM.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    """One recurrent family: its gate blocks in PyTorch's row order and the series lstmviz records."""

    name: str  # "lstm" | "gru" | "rnn"
    gates: tuple[str, ...]  # gate blocks of weight_ih / weight_hh, in PyTorch's row order
    series: tuple[str, ...]  # recorded series, in the order figures show them
    memory_gate: str | None  # the gate that decides how much state is kept (None: plain RNN)
    keeps_when_high: bool = True  # memory_gate near 1 keeps the state (true for LSTM f and GRU z)

    @property
    def n_gates(self) -> int:
        """Row blocks of the weight matrices: 4 (LSTM), 3 (GRU), 1 (RNN)."""
        return len(self.gates)


LSTM = Family("lstm", ("i", "f", "g", "o"), ("i", "f", "g", "o", "c", "h"), memory_gate="f")
GRU = Family("gru", ("r", "z", "n"), ("r", "z", "n", "h"), memory_gate="z")
# A plain RNN has one block: the pre-activation "a", h = nonlinearity(a).
RNN = Family("rnn", ("a",), ("a", "h"), memory_gate=None)
FAMILIES: dict[str, Family] = {f.name: f for f in (LSTM, GRU, RNN)}
FAMILY_BY_GATE_COUNT: dict[int, Family] = {f.n_gates: f for f in (LSTM, GRU, RNN)}

# Series per family (the trace key scheme's <series>); "m" = o * tanh(c) before an LSTM's
# projection is recorded too when proj_size > 0, just before "h".
SERIES: dict[str, tuple[str, ...]] = {f.name: f.series for f in FAMILIES.values()}
# Sigmoid outputs in [0, 1]: the series saturation is measured on.
GATE_SERIES = frozenset({"i", "f", "o", "r", "z"})
# Every gate a page can show, in legend order (LSTM's, then GRU's).
GATE_ORDER: tuple[str, ...] = ("i", "f", "g", "o", "r", "z", "n")
SERIES_NAMES: dict[str, str] = {
    "i": "input gate",
    "f": "forget gate",
    "g": "cell candidate",
    "o": "output gate",
    "c": "cell state",
    "h": "hidden state",
    "m": "pre-projection output",
    "r": "reset gate",
    "z": "update gate",
    "n": "new gate",
    "a": "pre-activation",
}


def family(name: str) -> Family:
    """The Family called `name` ("lstm", "gru", "rnn"; a cell's kind lower-cased without "cell").

    Raises KeyError for an unknown family.
    """
    return FAMILIES[name.lower().removesuffix("cell")]
