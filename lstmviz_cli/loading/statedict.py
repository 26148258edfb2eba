"""Rebuild a runnable model (Embedding -> RNN -> Linear head) from a bare state dict's keys and shapes.

Every key is accounted for: placed in a rebuilt module, or listed with the module it belongs to
and whether that module may run before the recurrent layers (then the loader refuses) or clearly
after them (then it is listed as not used and no prediction is read).
"""

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


HEAD_WIRINGS = ("all", "last", "final-states")
# config "head_activation": the function between the Linears of a head chain (nn.Sequential of Linears).
HEAD_ACTIVATIONS = ("none", "relu", "tanh", "sigmoid", "gelu", "elu", "leaky_relu", "silu")
# A Linear with such a name scores steps for attention pooling: it is never taken as the output head.
_ATTENTION_NAME = re.compile(r"(^|[._])(attn|attention|att|score|scorer|align|alignment|context)([._]|\d|$)", re.I)


@dataclass
class ModuleGroup:
    """The keys of one module that lstmviz did not place, and what their shapes say it is."""

    name: str
    keys: list[str]
    kind: str  # "Linear" | "BatchNorm" | "LayerNorm" | "Conv" | "MultiheadAttention" | "vector" | "unknown"
    in_width: int | None
    out_width: int | None
    position: int  # index of its first key in the state dict

    def label(self) -> str:
        return self.name if self.kind in ("unknown", "vector") else f"{self.name} ({self.kind})"


@dataclass
class HeadPlan:
    """The output head: Linears applied in order, with a known activation between them."""

    modules: list[str]
    widths: list[int]  # in, hidden..., out
    wiring: str  # "all" (every step) | "last" (the last step) | "final-states" (h_n of the last layer)
    source: str  # "option" | "metadata" | "task" | "default"
    activation: str | None = None


@dataclass
class RebuildPlan:
    """The modules found in a state dict, and every key lstmviz could not place."""

    rnn: RecurrentSpec
    total: int  # tensors in the state dict
    embedding: str | None = None  # prefix of the Embedding, if one was recognised
    head: HeadPlan | None = None
    unused: list[str] = field(default_factory=list)  # keys no rebuilt module holds, in state order
    front: list[ModuleGroup] = field(default_factory=list)  # unplaced: may run before the recurrent layers
    after: list[ModuleGroup] = field(default_factory=list)  # unplaced: clearly after them
    head_note: str = ""  # why no head was rebuilt
    recurrent_only: bool = False

    @property
    def ignored(self) -> list[str]:
        return self.unused


class RebuiltModel(nn.Module):
    """Embedding (optional) -> recurrent stack (batch_first) -> Linear head (optional).

    Submodules keep the checkpoint's own names (nested prefixes stay nested), so trace keys read
    like the user's model. Without a head the output is the last recurrent layer's output at every
    step (batch, time, width): hidden states, not a prediction.
    """

    def __init__(
        self, rnn_name: str, embedding_name: str | None, head_name: str | list[str] | None,
        head_on: str = "all", head_activation: str | None = None,
    ) -> None:
        super().__init__()
        self.lstmviz_rnn = rnn_name
        self.lstmviz_embedding = embedding_name
        names = [head_name] if isinstance(head_name, str) else list(head_name or [])
        self.lstmviz_head_modules = names
        self.lstmviz_head = names[0] if len(names) == 1 else (names or None)
        # "all": the head reads every step; "last": each sequence's last step; "final-states": the
        # last layer's final hidden states (both directions concatenated, as cat(h_n[-2], h_n[-1])).
        self.lstmviz_head_on = head_on
        self.lstmviz_head_activation = head_activation

    # Callers (the tracer) may pass `lengths=` for a padded batch of unequal sequences.
    lstmviz_accepts_lengths = True

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """(batch, time[, features]) -> head outputs, or per-step RNN outputs without a head.

        With `lengths`, the RNN sees a PackedSequence and "last" reads each sequence's own last step.
        """
        from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

        steps = int(x.shape[1])
        if self.lstmviz_embedding is not None:
            x = self.get_submodule(self.lstmviz_embedding)(x)
        rnn = self.get_submodule(self.lstmviz_rnn)
        if lengths is None:
            out, state = rnn(x)
        else:
            lengths = torch.as_tensor(lengths, dtype=torch.int64).cpu()
            packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
            packed_out, state = rnn(packed)
            out, _ = pad_packed_sequence(packed_out, batch_first=True, total_length=steps)
        if not self.lstmviz_head_modules:
            return out
        if self.lstmviz_head_on == "last":  # each sequence's own last step
            rows = torch.arange(out.shape[0], device=out.device)
            out = out[rows, lengths.to(out.device) - 1] if lengths is not None else out[:, -1]
        elif self.lstmviz_head_on == "final-states":
            h_n = state[0] if isinstance(state, tuple) else state
            out = torch.cat([h_n[-2], h_n[-1]], dim=-1) if rnn.bidirectional else h_n[-1]
        for k, name in enumerate(self.lstmviz_head_modules):
            if k:
                out = _activate(out, self.lstmviz_head_activation)
            out = self.get_submodule(name)(out)
        return out


def _activate(x: torch.Tensor, name: str | None) -> torch.Tensor:
    from torch.nn import functional

    if name in (None, "none"):
        return x
    return getattr(functional, name)(x) if name not in ("tanh", "sigmoid") else getattr(torch, name)(x)


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


def plan_rebuild(
    state: Mapping[str, Any], config: Mapping[str, Any], vocab_size: int | None = None, *,
    head: str | None = None, recurrent_only: bool = False, task: str | None = None,
) -> RebuildPlan:
    """Find the one recurrent module, its Embedding and output head where unambiguous, and sort the rest.

    Every key is either placed (recurrent layers, Embedding, head) or listed in `unused`; unplaced
    modules are split into `front` (they may run before the recurrent layers: registered before
    them, or shapes that do not follow from their output) and `after` (registered after them and
    fed, by width, from their output). `head` ("all" | "last" | "final-states") overrides the
    config's "head_on"; `recurrent_only` rebuilds no head. Raises CheckpointError on malformed keys.
    """
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
    wiring, source = _head_wiring(config, head, task)
    activation = config.get("head_activation")
    if activation is not None and activation not in HEAD_ACTIVATIONS:
        raise CheckpointError(
            f"config 'head_activation' {activation!r} must be one of {', '.join(HEAD_ACTIVATIONS)}"
        )
    others = _group_modules(state, set(keys))
    order = list(state)
    rnn_pos = min(order.index(k) for k in keys)
    embedding = _pick_embedding(state, others, spec, order, rnn_pos, vocab_size)
    position = {key: k for k, key in enumerate(order)}
    rest = [
        _describe_group(state, name, group_keys, position[group_keys[0]])
        for name, group_keys in others.items() if name != embedding
    ]
    front, after = _sort_unplaced(rest, spec, rnn_pos)
    plan = RebuildPlan(rnn=spec, total=len(state), embedding=embedding, front=front, after=after,
                       recurrent_only=recurrent_only)
    if recurrent_only:
        plan.head_note = "--recurrent-only traces the recurrent layers alone"
    else:
        plan.head, plan.head_note = _pick_head(after, front, spec, wiring, source, activation)
    used = set(keys)
    if embedding is not None:
        used.update(others[embedding])
    if plan.head is not None:
        for name in plan.head.modules:
            used.update(others[name])
    plan.unused = [k for k in state if k not in used]
    return plan


def _head_wiring(config: Mapping[str, Any], option: str | None, task: str | None) -> tuple[str, str]:
    """(wiring, where it came from): the --head option, config "head_on", a char-lm task, else assumed."""
    if option is not None:
        if option not in HEAD_WIRINGS:
            raise CheckpointError(f"--head {option!r}: choose one of {', '.join(HEAD_WIRINGS)}")
        return option, "option"
    if config.get("head_on") is not None:
        value = str(config["head_on"]).replace("_", "-")
        if value not in HEAD_WIRINGS:
            raise CheckpointError(
                f"config 'head_on' must be one of {', '.join(repr(w) for w in HEAD_WIRINGS)}, got {config['head_on']!r}"
            )
        return value, "metadata"
    if task == "char-lm":
        return "all", "task"
    return "all", "default"


def _group_modules(state: Mapping[str, Any], skip: set[str]) -> dict[str, list[str]]:
    """Keys by module prefix; a key without a dot (a bare parameter or buffer) is its own group."""
    groups: dict[str, list[str]] = {}
    for key in state:
        if key in skip:
            continue
        groups.setdefault(key.rsplit(".", 1)[0] if "." in key else key, []).append(key)
    return groups


_NORM_KEYS = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def _describe_group(state: Mapping[str, Any], name: str, keys: list[str], position: int) -> ModuleGroup:
    """What an unplaced module's keys and shapes say it is, with its input and output widths."""
    params = {key[len(name) + 1:] if key != name else "": state[key] for key in keys}
    names = set(params)
    tensors = {p: v for p, v in params.items() if isinstance(v, torch.Tensor)}
    weight = tensors.get("weight")

    def group(kind: str, width_in: int | None, width_out: int | None) -> ModuleGroup:
        return ModuleGroup(name, list(keys), kind, width_in, width_out, position)

    if weight is not None and weight.dim() == 2 and names <= {"weight", "bias"}:
        return group("Linear", int(weight.shape[1]), int(weight.shape[0]))
    if names <= _NORM_KEYS and ("running_mean" in tensors or (weight is not None and weight.dim() == 1)):
        width = int((weight if weight is not None else tensors["running_mean"]).shape[0])
        return group("BatchNorm" if "running_mean" in names else "LayerNorm", width, width)
    if weight is not None and weight.dim() in (3, 4, 5) and names <= {"weight", "bias"}:
        return group("Conv", int(weight.shape[1]), int(weight.shape[0]))
    proj = tensors.get("in_proj_weight")
    if proj is not None and proj.dim() == 2 and int(proj.shape[0]) == 3 * int(proj.shape[1]):
        return group("MultiheadAttention", int(proj.shape[1]), int(proj.shape[1]))
    if len(tensors) == 1 and len(keys) == 1 and next(iter(tensors.values())).dim() == 1:
        return group("vector", int(next(iter(tensors.values())).shape[0]), None)
    return group("unknown", None, None)


def _sort_unplaced(
    groups: list[ModuleGroup], spec: RecurrentSpec, rnn_pos: int
) -> tuple[list[ModuleGroup], list[ModuleGroup]]:
    """(front, after): a module is after the recurrent layers only when order and widths both say so.

    After the RNN in the state dict (registration order) and reading a width the RNN or an earlier
    head module produces: after. Registered before the RNN, only a Linear reading such a width
    whose output could not be the RNN's input (a head declared first). Anything else may feed the
    recurrent layers: front (when unsure, lstmviz refuses rather than trace a made-up input).
    """
    direction_width = spec.proj_size or spec.hidden_size
    available = {spec.output_width, direction_width}
    after: list[ModuleGroup] = []
    pending = sorted(groups, key=lambda g: g.position)
    for g in [g for g in pending if g.position > rnn_pos]:
        if g.kind != "unknown" and g.in_width in available:
            after.append(g)
            if g.out_width is not None:
                available.add(g.out_width)
    for g in [g for g in pending if g.position < rnn_pos]:
        if g.kind == "Linear" and g.in_width in available and g.out_width != spec.input_size:
            after.append(g)
            available.add(int(g.out_width or 0))
    after.sort(key=lambda g: g.position)
    front = [g for g in pending if g not in after]
    return front, after


def _pick_head(
    after: list[ModuleGroup], front: list[ModuleGroup], spec: RecurrentSpec, wiring: str, source: str,
    activation: str | None,
) -> tuple[HeadPlan | None, str]:
    """The head when the keys make it unambiguous, else (None, why not).

    Unambiguous: the modules after the recurrent layers are Linears forming one chain from the
    recurrent output width (fc, or fc.0 -> fc.2, ...), none named like an attention scorer, and
    nothing unplaced in front; a chain of several Linears needs its activation (config
    "head_activation") since the keys cannot tell it.
    """
    if front:
        return None, "modules that cannot be rebuilt may run before the recurrent layers"
    if not after:
        return None, "the state dict holds no output layer after the recurrent layers"
    names = ", ".join(g.label() for g in after)
    others = [g for g in after if g.kind != "Linear"]
    if others:
        return None, f"{names} after the recurrent layers include modules lstmviz does not rebuild"
    scorers = [g.name for g in after if _ATTENTION_NAME.search(g.name)]
    if scorers:
        return None, (f"{', '.join(scorers)} looks like an attention scorer: how the recurrent output is "
                      "pooled before the head is not known")
    chain = [after[0]]
    if after[0].in_width != spec.output_width:  # e.g. one direction's h_n[-1] of a bidirectional stack
        return None, f"{after[0].label()} does not read the recurrent output width {spec.output_width}"
    for g in after[1:]:
        if g.in_width != chain[-1].out_width:
            readers = [x.name for x in after if x.in_width == spec.output_width]
            what = (f"{len(readers)} Linears read the recurrent output ({', '.join(readers)}): which one is the "
                    "head is not known" if len(readers) > 1 else f"{names} do not form one chain of Linears")
            return None, what
        chain.append(g)
    widths = [int(chain[0].in_width or 0)] + [int(g.out_width or 0) for g in chain]
    if len(chain) > 1 and activation is None:
        arrow = " → ".join(g.name for g in chain)
        return None, (f"{arrow} ({len(chain)} Linears, {'→'.join(map(str, widths))}) not rebuilt: the activation "
                      "between them is not known; set config 'head_activation' (e.g. \"relu\") or pass --model-class")
    return HeadPlan(modules=[g.name for g in chain], widths=widths, wiring=wiring, source=source,
                    activation=activation if len(chain) > 1 else None), ""


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


def build_model(state: Mapping[str, Any], plan: RebuildPlan) -> RebuiltModel:
    """Instantiate the planned modules and load their weights (strictly)."""
    spec = plan.rnn
    head = plan.head
    model = RebuiltModel(
        spec.name, plan.embedding, head.modules if head else None, head.wiring if head else "all",
        head.activation if head else None,
    )
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
    for name in head.modules if head else []:
        weight = state[f"{name}.weight"]
        linear = nn.Linear(int(weight.shape[1]), int(weight.shape[0]), bias=f"{name}.bias" in state)
        _load_sub(linear, state, name)
        _attach(model, name, linear)
    return model


def _load_sub(module: nn.Module, state: Mapping[str, Any], prefix: str) -> None:
    dot = f"{prefix}." if prefix else ""
    own = set(module.state_dict())
    sub = {k[len(dot):]: v for k, v in state.items() if k.startswith(dot) and k[len(dot):] in own}
    module.load_state_dict(sub, strict=True)


def _attach(root: nn.Module, name: str, module: nn.Module) -> None:
    """Register `module` at a dotted path, creating empty containers for the parents.

    Any name a state dict can hold works (an nn.ModuleDict key such as "rnn-1" is not an
    identifier, and `get_submodule` reaches it all the same); only a name that is already taken
    (another module, or an attribute of nn.Module such as "training") is refused.
    """
    parts = name.split(".")
    parent = root
    try:
        for part in parts[:-1]:
            child = parent._modules.get(part)
            if child is None:
                child = nn.Module()
                parent.add_module(part, child)
            parent = child
        if parts[-1] in parent._modules:
            raise KeyError(parts[-1])
        parent.add_module(parts[-1], module)
    except KeyError:
        raise CheckpointError(
            f"cannot rebuild module {name!r}: its name clashes with another module or a torch attribute; "
            "pass --model-class module:Class (or file.py:Class) to build your model"
        ) from None
