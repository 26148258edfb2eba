"""The loading stage's records: plain data (no torch) that every later stage reads.

`RecurrentConfig` describes a recurrent module, `ModelInfo` what the report says about the checkpoint
(with the `TensorAccounting` and `HeadInfo` of a model rebuilt from weights), `Metadata` the
checkpoint's metadata (the convention's keys as validated, and what the loader derives), `LoadedModel`
the ready-to-run model, `SampleInput` the sample in the one input convention (see `loading.inputs`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeAlias, TypedDict

import numpy as np

if TYPE_CHECKING:  # annotations only: the records import without torch
    import torch
    from torch import nn

# What JSON holds: the summaries, the npz `__summary__` and metadata read from files are made of these.
JSON: TypeAlias = "str | int | float | bool | None | list[JSON] | dict[str, JSON]"

HEAD_WIRINGS = ("all", "last", "final-states")
WIRING_TEXT = {
    "all": "every step's output",
    "last": "the last step's output",
    "final-states": "the final hidden states",
}
# Where a rebuilt head's wiring came from, as the page says it.
WIRING_SOURCES = {
    "option": "--head",
    "metadata": "the checkpoint's config 'head_on'",
    "task": "the declared task 'char-lm' (a next-token head reads every step)",
    "default": "assumed",
    "archive": "matched against the TorchScript archive's own output",
}


@dataclass(frozen=True)
class TensorAccounting:
    """Every tensor of the state dict a model was rebuilt from: placed, or listed as not used."""

    total: int
    unused: tuple[str, ...] = ()  # state-dict keys no rebuilt module holds, in the file's order
    front: tuple[str, ...] = ()  # unplaced modules that may run before the recurrent layers
    # None: rebuilt from weights; else the --model-class the tensors were loaded into.
    into: str | None = None

    @property
    def placed(self) -> int:
        return self.total - len(self.unused)

    def modules(self) -> list[tuple[str, list[str]]]:
        """The unused keys grouped by module, in order: [("norm", ["weight", "bias"]), ("h0", [""])]."""
        groups: dict[str, list[str]] = {}
        for key in self.unused:
            module, dot, param = key.rpartition(".")
            groups.setdefault(module if dot else key, []).append(param if dot else "")
        return list(groups.items())

    def unused_text(self, limit: int = 6) -> str:
        """Module-level and compact: "norm.{weight,bias,running_mean}, attn.v" (+ "… and 3 more modules")."""
        parts = []
        groups = self.modules()
        for module, params in groups[:limit]:
            named = [p for p in params if p]
            if not named:
                parts.append(module)
            elif len(named) == 1:
                parts.append(f"{module}.{named[0]}")
            else:
                parts.append(f"{module}.{{{','.join(named)}}}")
        more = len(groups) - limit
        return ", ".join(parts) + (f", … and {more} more modules" if more > 0 else "")

    def line(self) -> str:
        """The one line the CLI prints on stderr and the page repeats."""
        target, colon, cls = (self.into or "").rpartition(":")
        into = f"{target.replace(chr(92), '/').rsplit('/', 1)[-1]}{colon}{cls}"  # models.py:Net, not its folders
        how = "rebuilt from weights" if self.into is None else f"loaded into {into}"
        if not self.unused:
            return f"{how}: all {self.total} tensors placed"
        return f"{how}: placed {self.placed} of {self.total} tensors; not used ({len(self.unused)}): {self.unused_text()}"

    def to_json(self) -> dict[str, JSON]:
        return {"total": self.total, "placed": self.placed, "unused": list(self.unused), "front": list(self.front)}


@dataclass(frozen=True)
class HeadInfo:
    """The output head of a model rebuilt from weights, and how it is wired to the recurrent layers."""

    modules: tuple[str, ...]  # Linear prefixes in order, e.g. ("fc",) or ("fc.0", "fc.2")
    widths: tuple[int, ...]  # in, hidden..., out: (64, 32, 1)
    wiring: str  # "all" | "last" | "final-states"
    source: str  # "option" | "metadata" | "task" | "default" | "archive"
    activation: str | None = None  # between Linears of a chain (config 'head_activation')
    bidirectional: bool = False  # of the recurrent layers it reads (for "final-states" wording)

    @property
    def out_features(self) -> int:
        return self.widths[-1]

    @property
    def assumed(self) -> bool:
        return self.source == "default"

    def describe(self) -> str:
        """ "fc (Linear 64→19)" or "fc.0 → relu → fc.2 (Linear 64→32→1)". """
        widths = "→".join(str(w) for w in self.widths)
        if len(self.modules) == 1:
            return f"{self.modules[0]} (Linear {widths})"
        joiner = f" → {self.activation} → " if self.activation not in (None, "none", "identity") else " → "
        return f"{joiner.join(self.modules)} (Linear {widths})"

    def wiring_text(self) -> str:
        if self.wiring == "final-states":
            return ("the final hidden states of both directions, cat(h_n[-2], h_n[-1])" if self.bidirectional
                    else "the final hidden state h_n[-1]")
        return WIRING_TEXT[self.wiring]

    def basis(self) -> str:
        """The sentence the page writes where the prediction is."""
        described = self.describe()
        # A module named "head" would read "rebuilt head head (Linear 12→1)".
        reads = f"rebuilt {described if described.startswith('head ') else 'head ' + described} reading {self.wiring_text()}"
        if self.assumed:
            return f"assumed: {reads}; pass --head all|last|final-states to choose"
        return f"{reads} ({WIRING_SOURCES[self.source]})"

    def to_json(self) -> dict[str, JSON]:
        return {
            "modules": list(self.modules), "widths": list(self.widths), "activation": self.activation,
            "wiring": self.wiring, "wiring_text": self.wiring_text(), "source": self.source,
            "assumed": self.assumed,
        }


@dataclass(frozen=True)
class RecurrentConfig:
    """The configuration of one traced recurrent module (an nn.LSTM, a GRUCell, ...)."""

    kind: str  # the class name: "LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell"
    input_size: int
    hidden_size: int
    num_layers: int = 1
    bidirectional: bool = False
    proj_size: int = 0
    # The module's own layout; None when the model does not say: a cell (no time axis), a layer
    # rebuilt from weights (a state dict does not record it), a hand-written cell.
    batch_first: bool | None = None
    bias: bool = True
    nonlinearity: str = "tanh"

    @property
    def family(self) -> str:
        """"lstm", "gru" or "rnn": which gate equations apply."""
        return self.kind.lower().removesuffix("cell")

    @property
    def is_cell(self) -> bool:
        return self.kind.endswith("Cell")

    @property
    def output_size(self) -> int:
        """Width of h as seen by the next layer (proj_size when projected)."""
        return self.proj_size or self.hidden_size

    def to_dict(self) -> dict[str, JSON]:
        return {
            "kind": self.kind,
            "input_size": self.input_size,
            "hidden_size": self.hidden_size,
            "num_layers": self.num_layers,
            "bidirectional": self.bidirectional,
            "proj_size": self.proj_size,
            "batch_first": self.batch_first,
            "bias": self.bias,
            "nonlinearity": self.nonlinearity,
        }


@dataclass(frozen=True)
class ModelInfo:
    """What the report says about the checkpoint: plain data, built by the loader."""

    name: str  # the checkpoint's file name without directories
    path: str
    format: str  # "dict-checkpoint" | "state_dict" | "safetensors" | "torchscript" | "pickled-module"
    size_bytes: int
    n_params: int
    device: str
    unsafe: bool = False  # loaded through --trust-pickle / --trust-torchscript
    rebuilt: bool = False  # the model was rebuilt from a state dict by lstmviz
    task: str | None = None  # "char-lm" | "classification" | "regression" | None
    vocab: tuple[str, ...] | None = None  # token id -> display string
    output_labels: tuple[str, ...] | None = None  # class id -> label
    description: str | None = None
    # Where the weights were and how they were stored (the summary says so).
    weights_key: str | None = None  # key of the state dict in a dict checkpoint, e.g. "model_state", "checkpoint/model"
    key_prefix: str | None = None  # attribute prefix removed from the keys, e.g. "model." of a LightningModule
    lightning: bool = False  # a PyTorch Lightning checkpoint
    stored_dtype: str | None = None  # floating dtypes of the saved weights, e.g. "float16", "bfloat16/float32"
    run_dtype: str | None = None  # the dtype the model runs in (half precision is upcast on CPU)
    skipped: tuple[tuple[str, str], ...] = ()  # (where, class) of objects opened as plain data, e.g. ("vocab", "vocab_mod.Vocab")
    # (where, class) of your own objects (a trusted pickle) whose plain attributes were read as metadata.
    objects_read: tuple[tuple[str, str], ...] = ()
    vocab_source: str | None = None  # where the vocabulary was found when not under "vocab", e.g. "char_to_int"
    labels_source: str | None = None  # likewise for output labels, e.g. "idx2label"
    load_notes: tuple[str, ...] = ()  # what was found but not used (vocabularies that disagree, ...)
    # What a rebuild from weights placed and assumed (`tracing.provenance`); None/"" for the user's own model.
    model_class: str | None = None  # --model-class as given
    accounting: TensorAccounting | None = None  # every tensor of the state dict: placed or listed
    head: HeadInfo | None = None  # the rebuilt output head and its wiring; None: none rebuilt
    head_note: str = ""  # why no head was rebuilt
    recurrent_only: bool = False  # --recurrent-only: the recurrent layers alone, the sample as their input
    embedding: str | None = None  # the rebuilt Embedding's module name, e.g. "emb"; None: none rebuilt


class Metadata(TypedDict, total=False):
    """A checkpoint's metadata: every key optional, each with one type.

    Made once from the file's plain entries (a sidecar JSON, a dict checkpoint's keys, safetensors
    `__metadata__`, a TorchScript extra file) by `loading.metadata.check_meta`, which validates the
    convention's keys (the module docstring there) and keeps everything else under `other`; then
    completed by the loader (`metadata.infer_meta`, `device.place_model`).
    """

    # The convention's keys, as validated.
    config: dict[str, object]  # constructor kwargs / hyper-parameters (string keys)
    vocab: list[str]  # token id -> token (found under other names too: `loading.vocab`)
    task: object  # as given: "char-lm" | "classification" | "regression" is used (`metadata.known_task`), else noted
    input_format: str  # "text" | "tokens" | "features"
    sample_input: object  # text, token ids or nested floats (time, features), as given
    output_labels: list[str]  # class id -> label
    description: str
    batch_first: bool  # the model call's layout, when the file says so (else the first recurrent module's)
    # The input the model reads: the file's word where it gives an integer, else inferred from the model.
    vocab_size: int  # token ids are 0..vocab_size-1
    input_size: int  # features per step (a model lstmviz rebuilt)
    # What the loader derives.
    one_hot: bool  # a rebuilt model without an Embedding reads one-hot rows of the vocabulary
    one_hot_width: int  # your own model without an Embedding: one-hot rows if it refuses ids (`tracing.sample`)
    reads_features: bool  # your own model without an Embedding: a float array is its to read
    vocab_unused: str  # why the vocabulary found was not used
    vocab_level: str  # "char" | "word"
    upcast_from: str  # the half-precision dtype the model was stored in, run in float32 on CPU
    # The file's other plain entries (epoch, loss, an optimizer's plain settings, ...), as read; lstmviz reads none.
    other: dict[str, object]


@dataclass
class LoadedModel:
    """A ready-to-run model (torch nn.Module in eval mode on `device`) and what we know of it."""

    model: nn.Module
    info: ModelInfo
    # The checkpoint's metadata (`loading.metadata`): vocab, task, sample_input, config, ... as
    # validated from the file, completed by the loader.
    meta: Metadata = field(default_factory=Metadata)
    device: str = "cpu"
    # The TorchScript module itself (hooks do not fire inside it; `model` is its eager rebuild).
    scripted: torch.jit.ScriptModule | None = None


@dataclass
class SampleInput:
    """A sample ready to feed the model, with what a person needs to read the time axis."""

    values: np.ndarray  # int64 (batch, time) token ids, or float32 (batch, time, features)
    kind: str  # "tokens" | "features"
    labels: list[str] | None  # display label per time step of batch element 0 (chars, tokens)
    description: str  # e.g. "charlm.txt: 212 characters" — shown in the report summary
    text: str | None = None  # the raw text for character models (token highlighting)
    lengths: np.ndarray | None = None  # (batch,) valid steps per sequence, from an .npz's `lengths`
    trace_bytes: int = 0  # what the float32 trace of this sample will hold (`loading.budget`)
    one_hot: bool = False  # the values are one-hot rows the loader made from token ids (a rebuilt model)
    # The other arrays of an .npz input (not the input, not `lengths`), by name: candidates for the
    # model's other forward arguments (`tracing.forwardargs`), passed as stored.
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    # Your own model without an Embedding, given text or ids: the vocabulary's size, for one-hot
    # rows when the model refuses ids (`tracing.sample` tries ids first). None: not applicable.
    one_hot_width: int | None = None
    # `--batch-index`: (the sequence picked, the batch it was picked from); None: the sample as read.
    picked: tuple[int, int] | None = None

    @property
    def batch(self) -> int:
        return int(self.values.shape[0])

    @property
    def steps(self) -> int:
        return int(self.values.shape[1])
