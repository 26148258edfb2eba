"""Hand-built Traces with known answers for the analysis tests (no torch, no tracer)."""

from __future__ import annotations

import numpy as np

from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.tracing.records import LayerTrace, Trace


def lstm_layer(series: dict[str, np.ndarray], *, module: str = "lstm", layer: int = 0) -> LayerTrace:
    """An LSTM LayerTrace from (time, units) or (batch, time, units) arrays; missing series are filled."""
    arrays = {k: np.asarray(v, dtype=np.float32) for k, v in series.items()}
    arrays = {k: v[None] if v.ndim == 2 else v for k, v in arrays.items()}
    shape = next(iter(arrays.values())).shape
    rng = np.random.default_rng(0)
    for name in ("i", "f", "g", "o", "c", "h"):
        if name not in arrays:
            if name in "ifo":
                arrays[name] = rng.uniform(0.2, 0.8, size=shape).astype(np.float32)
            else:
                arrays[name] = rng.uniform(-0.5, 0.5, size=shape).astype(np.float32)
    ordered = {name: arrays[name] for name in ("i", "f", "g", "o", "c", "h")}
    config = RecurrentConfig(kind="LSTM", input_size=4, hidden_size=shape[2], num_layers=layer + 1)
    return LayerTrace(module=module, layer=layer, direction="fwd", config=config, series=ordered)


def make_trace(*layers: LayerTrace, output: np.ndarray | None = None) -> Trace:
    """A Trace of the given layers."""
    modules = {layer.module: layer.config for layer in layers}
    return Trace(layers=list(layers), modules=modules, output=output)
