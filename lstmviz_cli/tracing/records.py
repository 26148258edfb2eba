"""The traced data: plain NumPy records that every stage after tracing reads (no torch here).

Key scheme (a stable contract): ``"<module>/l<k>/<fwd|bwd>/<series>"`` where ``<module>`` is the
module's name in ``named_modules()``, ``<k>`` the layer index (0 for cells) and ``<series>`` one of
``SERIES[family]``. Arrays are float32 of shape ``(batch, time, units)``, time in input order for
both directions. A packed batch is as long as the padded input it came from, NaN past each length;
``"<module>/lengths"`` then holds the per-sequence lengths.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from lstmviz_cli.loading.records import LoadedModel, RecurrentConfig, SampleInput
from lstmviz_cli.tracing.verify import Verification

# Series recorded per recurrent family, in the order figures show them.
# LSTM: input, forget, candidate (cell input), output gates, cell state, hidden output;
#       "m" = o * tanh(c) before the projection, present only when proj_size > 0.
# GRU:  reset, update, new (candidate) gate, hidden state (PyTorch's formulation).
# RNN:  "a" is the pre-activation, h = nonlinearity(a).
SERIES: dict[str, tuple[str, ...]] = {
    "lstm": ("i", "f", "g", "o", "c", "h"),
    "gru": ("r", "z", "n", "h"),
    "rnn": ("a", "h"),
}
GATE_SERIES = frozenset({"i", "f", "o", "r", "z"})  # sigmoid outputs in [0, 1]
SERIES_NAMES = {
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


@dataclass
class LayerTrace:
    """Every recorded series of one layer and direction of one module."""

    module: str
    layer: int
    direction: str  # "fwd" | "bwd"
    config: RecurrentConfig
    series: dict[str, np.ndarray]  # name -> (batch, time, units) float32
    # The layer's parameters as NumPy arrays ("weight_ih", "weight_hh", "bias_ih", "bias_hh",
    # "weight_hr"), so weight figures need no torch.
    weights: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{self.module}/l{self.layer}/{self.direction}"

    @property
    def family(self) -> str:
        return self.config.family

    @property
    def label(self) -> str:
        """Human label, e.g. "lstm · layer 1 · backward"."""
        direction = "forward" if self.direction == "fwd" else "backward"
        if self.config.is_cell:
            return f"{self.module} (cell)"
        if self.config.bidirectional:
            return f"{self.module} · layer {self.layer} · {direction}"
        return f"{self.module} · layer {self.layer}"

    @property
    def input_width(self) -> int:
        """Width of x_t: the module's input for layer 0, else the layer below's output (both directions)."""
        if self.layer == 0:
            return self.config.input_size
        return self.config.output_size * (2 if self.config.bidirectional else 1)

    @property
    def steps(self) -> int:
        return int(next(iter(self.series.values())).shape[1])

    @property
    def units(self) -> int:
        return int(self.series["h"].shape[2]) if "h" in self.series else 0


@dataclass
class Trace:
    """The result of one hooked forward pass: gates and states for every recurrent layer."""

    layers: list[LayerTrace]
    modules: dict[str, RecurrentConfig]
    lengths: dict[str, np.ndarray] = field(default_factory=dict)  # module -> (batch,) int64, when padded
    verify_error: float | None = None  # max |recorded - real| over outputs; None: not verified
    # The model's first output tensor, for predictions. From `trace_sample`: batch-major, (batch,
    # time, ...) when it has a time axis, whatever the model's layout (meta["output_layout"] names
    # the model's own axes); from `trace`: as the model returned it.
    output: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    # -- mapping interface ---------------------------------------------------------------------
    def _arrays(self) -> Iterator[tuple[str, np.ndarray]]:
        for layer in self.layers:
            for name, array in layer.series.items():
                yield f"{layer.prefix}/{name}", array
        for module, lengths in sorted(self.lengths.items()):
            yield f"{module}/lengths", lengths

    def keys(self) -> list[str]:
        return [key for key, _ in self._arrays()]

    def __getitem__(self, key: str) -> np.ndarray:
        for name, array in self._arrays():
            if name == key:
                return array
        raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return key in self.keys()

    def layer(self, prefix: str) -> LayerTrace:
        """The LayerTrace whose prefix is e.g. "lstm/l0/fwd"."""
        for layer in self.layers:
            if layer.prefix == prefix:
                return layer
        raise KeyError(prefix)

    # -- persistence ---------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        """JSON-ready description: every key with its shape, each module's config, the error."""
        return {
            "keys": {key: list(array.shape) for key, array in self._arrays()},
            "modules": {name: cfg.to_dict() for name, cfg in sorted(self.modules.items())},
            "verify_error": self.verify_error,
            "meta": _jsonable(self.meta),
        }

    def save_npz(self, path: str | Path, *, dtype: str = "float32", extra: dict[str, Any] | None = None) -> None:
        """Write every series (and a `__summary__` JSON string) to one .npz file.

        `dtype="float16"` halves the file for very long traces; lengths stay integers. `extra`
        adds JSON-ready keys to the summary (the pipeline's "model": what is known of the model).
        """
        arrays = {
            key: (array if key.endswith("/lengths") else array.astype(dtype, copy=False))
            for key, array in self._arrays()
        }
        arrays["__summary__"] = np.array(json.dumps({**self.summary(), **(extra or {})}, sort_keys=True))
        # An open handle, not a name: NumPy would append ".npz" to a temporary file's name.
        with open(path, "wb") as handle:
            np.savez_compressed(handle, **arrays)


def _jsonable(value: Any) -> Any:
    """Best-effort conversion of metadata to JSON types (NumPy scalars, tuples, paths)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)




@dataclass
class Run:
    """One loaded model traced on one sample: what the analysis, the page and the commands read.

    `loaded` keeps the torch model (saliency and the other analyses that run it).
    """

    loaded: LoadedModel
    sample: SampleInput
    trace: Trace
    # The traced output against the real model (your code run plainly, or a TorchScript archive);
    # None when no real model exists (a rebuild from weights) or with --recurrent-only.
    end_to_end: Verification | None = None
    # Lines for stderr once the command has succeeded (an error stays one line): the tensor accounting.
    notes: list[str] = field(default_factory=list)
