"""Per-unit memory timescales from the mean forget gate (Mahto et al., ICLR 2021). NumPy only.

A unit whose state keeps a share f of itself at every step forgets like exp(-t / tau) with
tau = -1 / ln f. Mahto et al. ("Multi-timescale representation learning in LSTM language
models") estimate each LSTM unit's timescale from its mean forget gate over the data and read a
layer's distribution of timescales. For a GRU, PyTorch's h = (1 - z) n + z h_prev keeps the
share z, so z plays the forget gate's role. Plain RNNs have no gate and get no timescale.

JSON (one entry per layer direction)::

    {"prefix": "lstm/l0/fwd", "gate": "f" | "z", "tau": [per unit, null when the gate is 1],
     "mean_gate": [per unit], "median_tau": float | null,
     "edges": [bin edges in steps], "counts": [units per bin]}
"""

from __future__ import annotations

import numpy as np

from lstmviz_cli.analysis.evidence import LayerTimescales
from lstmviz_cli.analysis.rows import column_means, valid_rows
from lstmviz_cli.tracing.records import Trace

# Histogram bins in steps: [0, 1), [1, 2), [2, 4), ..., [2^15, 2^16), [2^16, inf).
TIMESCALE_EDGES = np.concatenate([[0.0], 2.0 ** np.arange(0, 17), [np.inf]])
KEEP_GATE = {"lstm": "f", "gru": "z"}  # the gate whose value is the share of the state kept


def timescale(mean_gate: np.ndarray) -> np.ndarray:
    """tau = -1 / ln(f) in steps for mean keep-gate values f in [0, 1]; 0 for f = 0, inf for f = 1."""
    f = np.clip(np.asarray(mean_gate, dtype=np.float64), 0.0, 1.0)
    with np.errstate(divide="ignore"):
        return np.where(f >= 1.0, np.inf, -1.0 / np.log(f))


def forget_timescales(trace: Trace) -> list[LayerTimescales]:
    """Every LSTM/GRU layer direction's unit timescales, pooled over all sequences' valid steps.

    Layers whose keep gate was not recorded (`keep_series`) or that have no gate are skipped.
    Source: Mahto, Vo, Tran, Kim & Huth, "Multi-timescale representation learning in LSTM
    language models", ICLR 2021 (tau = -1 / ln of the mean forget gate).
    """
    result = []
    for layer in trace.layers:
        gate = KEEP_GATE.get(layer.family)
        if gate is None or gate not in layer.series:
            continue
        rows = valid_rows(layer.series[gate])
        if rows.size == 0:
            continue
        result.append(layer_timescales(layer.prefix, gate, column_means(rows)))
    return result


def layer_timescales(prefix: str, gate: str, mean_gate: np.ndarray) -> LayerTimescales:
    """The record of one layer from its keep gate's mean per unit (also pooled over a corpus)."""
    tau = timescale(mean_gate)
    counts, _ = np.histogram(tau, bins=TIMESCALE_EDGES)
    return LayerTimescales(prefix=prefix, gate=gate, mean_gate=np.asarray(mean_gate, dtype=np.float64), tau=tau,
                           edges=TIMESCALE_EDGES, counts=counts)
