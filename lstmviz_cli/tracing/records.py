"""The traced data: plain NumPy records that every stage after tracing reads (no torch here).

Key scheme (a stable contract): ``"<module>/l<k>/<fwd|bwd>/<series>"`` where ``<module>`` is the
module's name in ``named_modules()``, ``<k>`` the layer index (0 for cells) and ``<series>`` one of
``SERIES[family]``. Arrays are float32 of shape ``(batch, time, units)``, time in input order for
both directions. A packed batch is as long as the padded input it came from, NaN past each length;
``"<module>/lengths"`` then holds the per-sequence lengths.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TypedDict

import numpy as np

from lstmviz_cli.families import GATE_SERIES, SERIES, SERIES_NAMES
from lstmviz_cli.loading.records import JSON, LoadedModel, RecurrentConfig, SampleInput
from lstmviz_cli.tracing.verify import Verification

# The families' facts have one source (`lstmviz_cli.families`); re-exported for readers of traces.
__all__ = ["GATE_SERIES", "SERIES", "SERIES_NAMES", "CellInfo", "LayerTrace", "PathEntry", "Run", "SiteInfo",
           "Trace", "TraceMeta"]


@dataclass
class ForwardPlan:
    """Which forward parameter gets which array (`tracing.forwardargs`): {parameter: source}, source an
    .npz array name or "lengths"; `full_lengths` when the lengths are every sequence's full length
    (none were given). Plain data, so the saliency pass builds the same arguments for one sequence."""

    params: dict[str, str] = field(default_factory=dict)
    full_lengths: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def passes_lengths(self) -> bool:
        """The model was told the sequences' lengths (a parameter gets the sample's lengths)."""
        return "lengths" in self.params.values()

    def to_json(self) -> dict[str, JSON]:
        return {"params": dict(self.params), "full_lengths": self.full_lengths}


class PathEntry(TypedDict):
    """One module on the model's path, in first-call order (the architecture diagram's nodes)."""

    name: str  # named_modules() name (a bare recurrent model: its kind, "lstm")
    type: str  # the module's class name
    input: list[int] | None  # shape of its first input tensor (a PackedSequence: padded, its own layout)
    output: list[int] | None  # shape of its first output tensor
    calls: int  # how often it ran in the one forward pass (a cell in a loop: once per step)


@dataclass(frozen=True)
class SiteInfo:
    """One activation call site of a hand-written cell: the user's name for it and where it is."""

    name: str  # the variable it is assigned to, or `sigmoid@cell.py:42`
    where: str  # "cell.py:42"
    kind: str  # "sigmoid" | "tanh"
    shape: tuple[int, ...]  # (batch, time, units) of its recorded values

    def to_json(self) -> dict[str, JSON]:
        return {"name": self.name, "where": self.where, "kind": self.kind, "shape": list(self.shape)}


@dataclass(frozen=True)
class CellInfo:
    """What lstmviz recognised in one hand-written module (`tracing.cells`), for the page and the JSON."""

    class_name: str
    style: str  # "cell" (called once per step) | "loop" (loops over time inside one call)
    family: str | None  # "lstm" | "gru" | None when no structure was recognised
    names: dict[str, str]  # standard series -> the user's name, e.g. {"f": "forget_gate"}
    where: dict[str, str]  # standard series -> "file.py:42"
    mapping: str  # "structure" (proved by the arithmetic) | "names" (unverified) | "none"
    verify_error: float | None  # what `check` measures; None: not computed
    check: str  # the verified equations, in words (the badge's label)
    sites: tuple[SiteInfo, ...] = ()
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, JSON]:
        return {
            "class": self.class_name, "style": self.style, "family": self.family, "names": dict(self.names),
            "where": dict(self.where), "mapping": self.mapping, "verify_error": self.verify_error,
            "check": self.check, "sites": [site.to_json() for site in self.sites], "notes": list(self.notes),
        }


@dataclass
class TraceMeta:
    """What one traced run knows besides the arrays: typed, one field per fact.

    `to_json()` writes the keys `Trace.summary()["meta"]` (and the npz `__summary__`) carry; a field
    that is None was not recorded by the call that made the trace (e.g. `sample` for a plain
    `trace(model, x)`, `custom_cells` for stock layers) and is left out.
    """

    # -- the tracer (`tracing.tracer`, `tracing.cells`) -----------------------------------------
    device: str = "cpu"
    store_dtype: str = "float32"  # dtype of the stored series: "float32" | "float16" | "float64"
    path: list[PathEntry] = field(default_factory=list)  # leaf modules in first-call order
    not_called: list[str] = field(default_factory=list)  # recurrent modules the forward never called
    kept_series: list[str] | None = None  # trace(keep_series=...): the only series stored
    kept_units: list[int] | None = None  # trace(keep_units=...): the only units stored
    # max |recorded - real| per layer prefix; None: the layer could not be compared. Set when verified.
    verify_errors: dict[str, float | None] | None = None
    verify_tolerance: float | None = None  # the tolerance the tracer judged verify_errors by
    kernels: dict[str, str] | None = None  # layer prefix -> kernel route that ran it (`tracing.kernels`)
    # -- hand-written cells (`tracing.cells`) ------------------------------------------------------
    custom_cells: dict[str, CellInfo] | None = None  # module -> what was recognised
    series_names: dict[str, dict[str, str]] | None = None  # layer prefix -> {series: the user's name}
    # -- the sample, as the model took it (`tracing.sample`) --------------------------------------
    sample: str | None = None  # the sample's description, e.g. "x.npy: 9 steps × 4 features"
    sample_kind: str | None = None  # "tokens" | "features"
    batch: int | None = None
    steps: int | None = None  # the input's (padded) steps
    packed: bool | None = None  # the batch was packed for a bare recurrent stack
    model_batch_first: bool | None = None  # the layout the model was called in
    forward_args: ForwardPlan | None = None  # the forward's other arguments (lengths, .npz arrays)
    labels: list[str] | None = None  # display label per step of batch element 0
    # The model's first output: its axes as returned ("(batch, time, features)"), how many steps its
    # time axis has (None: no time axis), and whether those are the input's steps (a seq2seq decoder's
    # are its own).
    output_layout: str | None = None
    output_steps: int | None = None
    output_follows_input: bool | None = None
    notes: list[str] = field(default_factory=list)  # sentences for the page (how the input was read, ...)
    model_warnings: list[str] = field(default_factory=list)  # warnings the model raised while it ran
    # -- loading, added by the pipeline (`loading.summary`) --------------------------------------
    loading: dict[str, JSON] | None = None

    def to_json(self) -> dict[str, JSON]:
        """JSON-ready, the keys of the fields that were recorded (None fields left out)."""
        out: dict[str, JSON] = {}
        for item in fields(self):
            value = getattr(self, item.name)
            if value is None:
                continue
            if item.name == "custom_cells":
                value = {name: cell.to_json() for name, cell in value.items()}
            elif item.name == "forward_args":
                value = value.to_json()
            out[item.name] = _jsonable(value)
        return out


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
    # The family's memory gate (LSTM f, GRU z) near 1 keeps the state. False for a hand-written GRU
    # written h = (1 - z)·h + z·n (Cho et al.'s convention): its z near 1 replaces the state.
    keeps_when_high: bool = True

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
    # time, ...) when it has a time axis, whatever the model's layout (meta.output_layout names
    # the model's own axes); from `trace`: as the model returned it.
    output: np.ndarray | None = None
    meta: TraceMeta = field(default_factory=TraceMeta)

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

    def valid_steps(self, module: str | None = None) -> np.ndarray:
        """(batch,) valid steps of each sequence of `module` (default: the first traced layer's).

        Padding comes from the lengths a packed batch carried, never from the values: the tracer
        refuses NaN within a layer's valid steps, so NaN in a series is exactly this padding.
        """
        layer = self.layers[0] if module is None else next(lt for lt in self.layers if lt.module == module)
        lengths = self.lengths.get(layer.module)
        if lengths is not None:
            return np.asarray(lengths, dtype=np.int64)
        batch, steps = next(iter(layer.series.values())).shape[:2]
        return np.full(int(batch), int(steps), dtype=np.int64)

    def layer(self, prefix: str) -> LayerTrace:
        """The LayerTrace whose prefix is e.g. "lstm/l0/fwd"."""
        for layer in self.layers:
            if layer.prefix == prefix:
                return layer
        raise KeyError(prefix)

    # -- persistence ---------------------------------------------------------------------------
    def summary(self) -> dict[str, JSON]:
        """JSON-ready description: every key with its shape, each module's config, the error."""
        return {
            "keys": {key: list(array.shape) for key, array in self._arrays()},
            "modules": {name: cfg.to_dict() for name, cfg in sorted(self.modules.items())},
            "verify_error": self.verify_error,
            "meta": self.meta.to_json(),
        }

    def save_npz(self, path: str | Path, *, dtype: str = "float32", extra: Mapping[str, JSON] | None = None) -> None:
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
        save: Callable[..., None] = np.savez_compressed  # (file, **arrays): its stub types the keywords as options
        with open(path, "wb") as handle:
            save(handle, **arrays)


def _jsonable(value: object) -> JSON:
    """Metadata as JSON types (NumPy scalars and arrays, tuples; anything else as its text)."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return _jsonable(value.item())
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
