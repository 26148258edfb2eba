"""Rebuild a runnable model (Embedding -> RNN -> Linear) from a bare state dict's keys and shapes."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lstmviz_cli.errors import CheckpointError

_RNN_KEY = re.compile(
    r"^(?:(?P<prefix>.+)\.)?(?P<param>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)(?P<rev>_reverse)?$"
)
_FAMILY_BY_GATES = {4: "LSTM", 3: "GRU", 1: "RNN"}
_DEFAULT_NAMES = {"LSTM": "lstm", "GRU": "gru", "RNN": "rnn"}


@dataclass
class RecurrentSpec:
    """What the keys of one recurrent prefix say about the module that saved them."""

    prefix: str  # "" when the keys had no prefix
    kind: str  # "LSTM" | "GRU" | "RNN"
    input_size: int
    hidden_size: int
    num_layers: int
    bidirectional: bool
    bias: bool
    proj_size: int
    nonlinearity: str = "tanh"
    keys: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        """Module name in the rebuilt model: the original prefix, else "lstm"/"gru"/"rnn"."""
        return self.prefix or _DEFAULT_NAMES[self.kind]

    @property
    def output_width(self) -> int:
        return (self.proj_size or self.hidden_size) * (2 if self.bidirectional else 1)


@dataclass
class RebuildPlan:
    """The modules found in a state dict and the keys lstmviz could not place."""

    rnn: RecurrentSpec
    embedding: str | None = None  # prefix of the Embedding, if one was recognised
    head: str | None = None  # prefix of the Linear applied to every step, if recognised
    ignored: list[str] = field(default_factory=list)
    head_on: str = "all"  # config "head_on": "all" (every step) or "last" (the last step only)


class RebuiltModel(nn.Module):
    """Embedding (optional) -> recurrent stack (batch_first) -> Linear on every step (optional).

    Submodules keep the checkpoint's own names (nested prefixes stay nested), so trace keys read
    like the user's model.
    """

    def __init__(
        self, rnn_name: str, embedding_name: str | None, head_name: str | None, head_on: str = "all"
    ) -> None:
        super().__init__()
        self.lstmviz_rnn = rnn_name
        self.lstmviz_embedding = embedding_name
        self.lstmviz_head = head_name
        self.lstmviz_head_on = head_on  # "all": the head reads every step; "last": the last step only

    # Callers (the tracer) may pass `lengths=` for a padded batch of unequal sequences.
    lstmviz_accepts_lengths = True

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, time[, features]) -> per-step outputs; with `lengths`, the RNN sees a PackedSequence."""
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        steps = int(x.shape[1])
        if self.lstmviz_embedding is not None:
            x = self.get_submodule(self.lstmviz_embedding)(x)
        rnn = self.get_submodule(self.lstmviz_rnn)
        if lengths is None:
            out, _state = rnn(x)
        else:
            lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu()
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            out, _state = pad_packed_sequence(rnn(packed)[0], batch_first=True, total_length=steps)
        if self.lstmviz_head is not None:
            if self.lstmviz_head_on == "last":  # each sequence's own last step
                rows = torch.arange(out.shape[0], device=out.device)
                out = out[rows, lengths.to(out.device) - 1] if lengths is not None else out[:, -1]
            out = self.get_submodule(self.lstmviz_head)(out)
        return out


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def check_float_tensors(state: Mapping[str, Any], keys: list[str]) -> None:
    """Refuse integer, boolean or complex weights: no recurrent kernel runs on them."""
    for key in keys:
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"state dict entry {key!r} is a {type(value).__name__}, not a tensor")
        if not value.is_floating_point():
            raise CheckpointError(
                f"tensor {key!r} has dtype {str(value.dtype).removeprefix('torch.')}; "
                "weights must be floating point (float32, float64, float16 or bfloat16)"
            )


def find_recurrent_prefixes(state: Mapping[str, Any]) -> dict[str, list[str]]:
    """Group the recurrent keys (weight_ih_l0, ...) by their module prefix."""
    groups: dict[str, list[str]] = {}
    for key in state:
        match = _RNN_KEY.match(key)
        if match:
            groups.setdefault(match.group("prefix") or "", []).append(key)
    return groups


def infer_recurrent(state: Mapping[str, Any], prefix: str, keys: list[str], config: Mapping[str, Any]) -> RecurrentSpec:
    """Infer sizes, layers, direction, bias, projection and family from one prefix's keys."""
    check_float_tensors(state, keys)
    dot = f"{prefix}." if prefix else ""
    params: dict[tuple[int, bool], dict[str, str]] = {}
    for key in keys:
        match = _RNN_KEY.match(key)
        assert match is not None
        slot = (int(match.group("layer")), bool(match.group("rev")))
        params.setdefault(slot, {})[match.group("param")] = key
    layers = sorted({layer for layer, _ in params})
    for expected, layer in enumerate(layers):
        if layer != expected:
            raise CheckpointError(
                f"recurrent keys of {prefix or 'the state dict'!r} skip layer {expected} "
                f"(found layers {layers}); key {dot}weight_ih_l{layer} has no predecessor"
            )
    reverse_layers = {layer for layer, rev in params if rev}
    bidirectional = bool(reverse_layers)
    if bidirectional and reverse_layers != set(layers):
        missing = min(set(layers) - reverse_layers)
        raise CheckpointError(
            f"only some layers of {prefix or 'the state dict'!r} have _reverse weights: "
            f"{dot}weight_ih_l{missing}_reverse is missing"
        )
    first = params.get((0, False), {})
    for needed in ("weight_ih", "weight_hh"):
        if needed not in first:
            raise CheckpointError(f"state dict lacks {dot}{needed}_l0 (the first layer's {needed} weights)")
    w_hh = state[first["weight_hh"]]
    w_ih = state[first["weight_ih"]]
    if w_hh.dim() != 2 or w_ih.dim() != 2:
        bad = first["weight_hh"] if w_hh.dim() != 2 else first["weight_ih"]
        raise CheckpointError(f"tensor {bad!r} has shape {_shape(state[bad])}; expected a 2-D weight matrix")
    if "weight_hr" in first:
        w_hr = state[first["weight_hr"]]
        if w_hr.dim() != 2:
            raise CheckpointError(f"tensor {first['weight_hr']!r} has shape {_shape(w_hr)}; expected 2-D")
        proj_size, hidden = _shape(w_hr)
    else:
        proj_size, hidden = 0, int(w_hh.shape[1])
    rows = int(w_hh.shape[0])
    if hidden <= 0 or rows % hidden or rows // hidden not in _FAMILY_BY_GATES or (proj_size and rows != 4 * hidden):
        raise CheckpointError(
            f"tensor {first['weight_hh']!r} has shape {_shape(w_hh)}, which is not 4, 3 or 1 times the "
            f"hidden size {hidden} (LSTM, GRU, RNN)"
        )
    if int(w_ih.shape[1]) <= 0:
        raise CheckpointError(f"tensor {first['weight_ih']!r} has shape {_shape(w_ih)}: the input size is 0")
    if proj_size and not 0 < proj_size < hidden:
        raise CheckpointError(
            f"tensor {first['weight_hr']!r} has shape {_shape(state[first['weight_hr']])}: proj_size must be "
            f"between 1 and hidden size - 1 ({hidden - 1})"
        )
    kind = _FAMILY_BY_GATES[rows // hidden]
    has_bias = "bias_ih" in first or "bias_hh" in first
    spec = RecurrentSpec(
        prefix=prefix,
        kind=kind,
        input_size=int(w_ih.shape[1]),
        hidden_size=hidden,
        num_layers=len(layers),
        bidirectional=bidirectional,
        bias=has_bias,
        proj_size=proj_size,
        nonlinearity=str(config.get("nonlinearity", "tanh")) if kind == "RNN" else "tanh",
        keys=list(keys),
    )
    if spec.nonlinearity not in ("tanh", "relu"):
        raise CheckpointError(f"config nonlinearity {spec.nonlinearity!r} must be 'tanh' or 'relu'")
    _check_shapes(state, spec, params)
    return spec


def _check_shapes(state: Mapping[str, Any], spec: RecurrentSpec, params: dict[tuple[int, bool], dict[str, str]]) -> None:
    """Every key must have the shape the l0 weights imply, and every slot all its keys."""
    gates = {"LSTM": 4, "GRU": 3, "RNN": 1}[spec.kind] * spec.hidden_size
    out = spec.proj_size or spec.hidden_size
    dot = f"{spec.prefix}." if spec.prefix else ""
    for layer in range(spec.num_layers):
        for rev in (False, True) if spec.bidirectional else (False,):
            suffix = f"_l{layer}" + ("_reverse" if rev else "")
            expected = {
                "weight_ih": (gates, spec.input_size if layer == 0 else out * (2 if spec.bidirectional else 1)),
                "weight_hh": (gates, out),
            }
            if spec.bias:
                expected.update(bias_ih=(gates,), bias_hh=(gates,))
            if spec.proj_size:
                expected["weight_hr"] = (spec.proj_size, spec.hidden_size)
            present = params.get((layer, rev), {})
            for param, shape in expected.items():
                key = f"{dot}{param}{suffix}"
                if param not in present:
                    raise CheckpointError(f"state dict lacks {key!r} (the other layers of {spec.name!r} have it)")
                actual = _shape(state[key])
                if actual != shape:
                    raise CheckpointError(
                        f"inconsistent shapes: {key!r} is {actual} but the other weights of "
                        f"{spec.name!r} (hidden size {spec.hidden_size}) need {shape}"
                    )
            extra = set(present) - set(expected)
            if extra:
                key = f"{dot}{sorted(extra)[0]}{suffix}"
                raise CheckpointError(f"unexpected key {key!r}: the other layers of {spec.name!r} do not have it")


def plan_rebuild(state: Mapping[str, Any], config: Mapping[str, Any], vocab_size: int | None = None) -> RebuildPlan:
    """Find the one recurrent module and, where unambiguous, its Embedding and Linear head."""
    groups = find_recurrent_prefixes(state)
    if not groups:
        raise CheckpointError(
            "the state dict holds no recurrent layer (no '*weight_ih_l0' keys of an nn.LSTM, GRU or RNN); "
            "if your model builds its own cell, pass --model-class module:Class (or file.py:Class)"
        )
    if len(groups) > 1:
        names = ", ".join(repr(p or "<no prefix>") for p in sorted(groups))
        raise CheckpointError(
            f"the state dict holds {len(groups)} recurrent modules ({names}) and lstmviz cannot tell how "
            "they connect; pass --model-class module:Class (or file.py:Class) to build your model"
        )
    prefix, keys = next(iter(groups.items()))
    spec = infer_recurrent(state, prefix, keys, config)
    others = _group_modules(state, set(keys))
    order = list(state)
    rnn_pos = min(order.index(k) for k in keys)
    embedding = _pick_embedding(state, others, spec, order, rnn_pos, vocab_size)
    head = _pick_head(state, others, spec, order, rnn_pos, exclude=embedding)
    used = set(keys)
    for name in (embedding, head):
        if name is not None:
            used.update(others[name])
    ignored = [k for k in state if k not in used]
    head_on = str(config.get("head_on", "all"))
    if head_on not in ("all", "last"):
        raise CheckpointError(f"config 'head_on' must be 'all' or 'last', got {head_on!r}")
    return RebuildPlan(rnn=spec, embedding=embedding, head=head, ignored=ignored, head_on=head_on)


def _group_modules(state: Mapping[str, Any], skip: set[str]) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for key in state:
        if key in skip or "." not in key:
            continue
        groups.setdefault(key.rsplit(".", 1)[0], []).append(key)
    return groups


def _float_matrix(value: Any) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() == 2


def _pick_embedding(
    state: Mapping[str, Any], others: dict[str, list[str]], spec: RecurrentSpec, order: list[str], rnn_pos: int,
    vocab_size: int | None,
) -> str | None:
    """An Embedding has exactly one `weight` whose columns equal the RNN's input size."""
    found = []
    for name, keys in others.items():
        weight = state.get(f"{name}.weight")
        if keys != [f"{name}.weight"] or not _float_matrix(weight) or int(weight.shape[1]) != spec.input_size:
            continue
        if order.index(keys[0]) > rnn_pos and int(weight.shape[1]) == spec.output_width:
            continue  # saved after the RNN and shaped like a bias-free head: that is the head
        found.append(name)
    if len(found) > 1 and vocab_size:
        found = [n for n in found if int(state[f"{n}.weight"].shape[0]) == vocab_size]
    return found[0] if len(found) == 1 else None


def _pick_head(
    state: Mapping[str, Any], others: dict[str, list[str]], spec: RecurrentSpec, order: list[str], rnn_pos: int,
    exclude: str | None,
) -> str | None:
    """A Linear head: `weight` (out, rnn output width) and an optional matching `bias`."""
    found = []
    for name, keys in others.items():
        weight = state.get(f"{name}.weight")
        if name == exclude or not _float_matrix(weight) or int(weight.shape[1]) != spec.output_width:
            continue
        bias = state.get(f"{name}.bias")
        if sorted(keys) not in ([f"{name}.weight"], sorted([f"{name}.weight", f"{name}.bias"])):
            continue
        if bias is not None and (not bias.is_floating_point() or _shape(bias) != (int(weight.shape[0]),)):
            continue
        if keys == [f"{name}.weight"] and order.index(keys[0]) < rnn_pos and int(weight.shape[1]) == spec.input_size:
            continue  # saved before the RNN and shaped like an embedding
        found.append(name)
    return found[0] if len(found) == 1 else None


def build_model(state: Mapping[str, Any], plan: RebuildPlan) -> RebuiltModel:
    """Instantiate the planned modules and load their weights (strictly)."""
    spec = plan.rnn
    model = RebuiltModel(spec.name, plan.embedding, plan.head, plan.head_on)
    cls = {"LSTM": nn.LSTM, "GRU": nn.GRU, "RNN": nn.RNN}[spec.kind]
    kwargs: dict[str, Any] = dict(
        input_size=spec.input_size, hidden_size=spec.hidden_size, num_layers=spec.num_layers,
        bias=spec.bias, batch_first=True, bidirectional=spec.bidirectional,
    )
    if spec.kind == "LSTM":
        kwargs["proj_size"] = spec.proj_size
    if spec.kind == "RNN":
        kwargs["nonlinearity"] = spec.nonlinearity
    # Built in float32 whatever the saved dtype (load_state_dict casts): inputs are float32.
    rnn = cls(**kwargs)
    _load_sub(rnn, state, spec.prefix)
    if plan.embedding is not None:  # registered first, so named_modules() reads in data-flow order
        weight = state[f"{plan.embedding}.weight"]
        embedding = nn.Embedding(int(weight.shape[0]), int(weight.shape[1]))
        _load_sub(embedding, state, plan.embedding)
        _attach(model, plan.embedding, embedding)
    _attach(model, spec.name, rnn)
    if plan.head is not None:
        weight = state[f"{plan.head}.weight"]
        has_bias = f"{plan.head}.bias" in state
        head = nn.Linear(int(weight.shape[1]), int(weight.shape[0]), bias=has_bias)
        _load_sub(head, state, plan.head)
        _attach(model, plan.head, head)
    return model


def _load_sub(module: nn.Module, state: Mapping[str, Any], prefix: str) -> None:
    dot = f"{prefix}." if prefix else ""
    own = set(module.state_dict())
    sub = {k[len(dot):]: v for k, v in state.items() if k.startswith(dot) and k[len(dot):] in own}
    module.load_state_dict(sub, strict=True)


def _attach(root: nn.Module, name: str, module: nn.Module) -> None:
    """Register `module` at a dotted path, creating empty containers for the parents."""
    parts = name.split(".")
    parent = root
    for part in parts[:-1]:
        child = parent._modules.get(part)
        if child is None:
            child = nn.Module()
            parent.add_module(part, child)
        parent = child
    if parts[-1] in parent._modules or not parts[-1].isidentifier() and not parts[-1].isdigit():
        raise CheckpointError(f"cannot rebuild module {name!r}: its name clashes with another module")
    parent.add_module(parts[-1], module)
