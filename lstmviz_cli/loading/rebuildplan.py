"""Plan the rebuild of a bare state dict: the one recurrent module, its Embedding and output head, and the rest.

Every key is accounted for: placed in a rebuilt module, or listed with the module it belongs to
and whether that module may run before the recurrent layers (then the loader refuses) or clearly
after them (then it is listed as not used and no prediction is read).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from lstmviz_cli.errors import CheckpointError
from lstmviz_cli.loading.findweights import is_loss_module
from lstmviz_cli.loading.records import HEAD_WIRINGS
from lstmviz_cli.loading.statedict import (
    RecurrentSpec,
    find_cell_prefixes,
    find_recurrent_prefixes,
    infer_recurrent,
)

# config "head_activation": the function between the Linears of a head chain (nn.Sequential of Linears).
HEAD_ACTIVATIONS = ("none", "relu", "tanh", "sigmoid", "gelu", "elu", "leaky_relu", "silu")
# A Linear with such a name scores steps for attention pooling: it is never taken as the output head.
# Kinds whose output width the keys tell.
_SHAPED = ("Linear", "BatchNorm", "LayerNorm", "Conv", "MultiheadAttention")
_ATTENTION_NAME = re.compile(r"(^|[._])(attn|attention|att|score|scorer|align|alignment|context)([._]|\d|$)", re.I)


@dataclass
class ModuleGroup:
    """The keys of one module that lstmviz did not place, and what their shapes say it is."""

    name: str
    keys: list[str]
    kind: str  # "Linear" | "BatchNorm" | "LayerNorm" | "Conv" | "MultiheadAttention" | "vector" | "loss" | "unknown"
    in_width: int | None
    out_width: int | None
    position: int  # index of its first key in the state dict

    def label(self) -> str:
        if self.kind == "loss":
            return f"{self.name} (a loss's weights)"
        if self.kind == "Linear" and len(self.keys) == 1:  # a weight alone: the keys cannot tell which
            return f"{self.name} (a bias-free Linear or an Embedding)"
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


def plan_rebuild(
    state: Mapping[str, torch.Tensor], config: Mapping[str, object], vocab_size: int | None = None, *,
    head: str | None = None, recurrent_only: bool = False, task: str | None = None, ordered: bool = True,
) -> RebuildPlan:
    """Find the one recurrent module, its Embedding and output head where unambiguous, and sort the rest.

    Every key is either placed (recurrent layers, Embedding, head) or listed in `unused`; unplaced
    modules are split into `front` (they may run before the recurrent layers: registered before
    them, or shapes that do not follow from their output) and `after` (registered after them and
    fed, by width, from their output). `head` ("all" | "last" | "final-states") overrides the
    config's "head_on"; `recurrent_only` rebuilds no head. `ordered`: the keys are in the model's
    registration order (false for safetensors, which sorts them). Raises CheckpointError on
    malformed keys.
    """
    groups = find_recurrent_prefixes(state)
    cells = find_cell_prefixes(state)
    if not groups and cells:
        shown = ", ".join(f"{(prefix or '<no prefix>')!r} (an nn.{kind})" for prefix, kind in cells.items())
        raise CheckpointError(
            f"the state dict holds the weights of a recurrent cell ({shown}): your code calls it in a loop, which "
            "the weights do not tell; pass --model-class module:Class (or file.py:Class) to run your model"
        )
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
    front, after = _sort_unplaced(rest, spec, rnn_pos, ordered)
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


def _head_wiring(config: Mapping[str, object], option: str | None, task: str | None) -> tuple[str, str]:
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


def _group_modules(state: Mapping[str, torch.Tensor], skip: set[str]) -> dict[str, list[str]]:
    """Keys by module prefix; a key without a dot (a bare parameter or buffer) is its own group."""
    groups: dict[str, list[str]] = {}
    for key in state:
        if key in skip:
            continue
        groups.setdefault(key.rsplit(".", 1)[0] if "." in key else key, []).append(key)
    return groups


_NORM_KEYS = {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}


def _describe_group(state: Mapping[str, torch.Tensor], name: str, keys: list[str], position: int) -> ModuleGroup:
    """What an unplaced module's keys and shapes say it is, with its input and output widths."""
    params = {key[len(name) + 1:] if key != name else "": state[key] for key in keys}
    names = set(params)
    tensors = {p: v for p, v in params.items() if isinstance(v, torch.Tensor)}
    weight = tensors.get("weight")

    def group(kind: str, width_in: int | None, width_out: int | None) -> ModuleGroup:
        return ModuleGroup(name, list(keys), kind, width_in, width_out, position)

    if is_loss_module(name):
        return group("loss", None, None)

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
    groups: list[ModuleGroup], spec: RecurrentSpec, rnn_pos: int, ordered: bool = True
) -> tuple[list[ModuleGroup], list[ModuleGroup]]:
    """(front, after): a module is after the recurrent layers only when its registration says so.

    Registered before the RNN in a state dict saved in registration order (`ordered`: torch.save
    keeps it, safetensors sorts its keys): front, whatever its shape (an attention scorer or an
    Embedding declared first runs before the RNN as often as not). Without that order, a module
    listed before the RNN is after only when it is a Linear (weight and bias) reading a width the
    RNN produces whose output cannot be the RNN's input. Registered after it: after when it reads a width the RNN or an earlier module after it produces,
    or when its output cannot be the RNN's input (a head reading pooled features, `cat(h_n, mean)`);
    a loss module's weights (`criterion.weight`) are never run by the forward: after, not a head.
    Anything else may feed the recurrent layers: front (when unsure, lstmviz refuses rather than
    trace a made-up input).
    """
    direction_width = spec.proj_size or spec.hidden_size
    available = {spec.output_width, direction_width}
    after: list[ModuleGroup] = []
    for g in sorted((g for g in groups if g.position > rnn_pos), key=lambda g: g.position):
        if g.kind == "loss":
            after.append(g)
        elif g.kind not in ("unknown", "vector") and g.in_width in available:
            after.append(g)
            if g.out_width is not None:
                available.add(g.out_width)
        elif g.kind == "vector" and g.in_width in available:
            after.append(g)
        elif g.kind in _SHAPED and g.out_width is not None and g.out_width != spec.input_size:
            after.append(g)  # cannot feed the recurrent layers: its output is not their input width
    if not ordered:
        for g in sorted((g for g in groups if g.position < rnn_pos), key=lambda g: g.position):
            if (g.kind == "Linear" and len(g.keys) == 2 and g.in_width in available
                    and g.out_width != spec.input_size):
                after.append(g)
                available.add(int(g.out_width or 0))
        after.sort(key=lambda g: g.position)
    front = sorted((g for g in groups if g not in after), key=lambda g: g.position)
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
    after = [g for g in after if g.kind != "loss"]  # never run by the forward
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


def _float_matrix(value: object) -> bool:
    return isinstance(value, torch.Tensor) and value.is_floating_point() and value.dim() == 2


def _pick_embedding(
    state: Mapping[str, torch.Tensor], others: dict[str, list[str]], spec: RecurrentSpec, order: list[str], rnn_pos: int,
    vocab_size: int | None,
) -> str | None:
    """An Embedding has exactly one `weight` whose columns equal the RNN's input size."""
    found = []
    for name, keys in others.items():
        weight = state.get(f"{name}.weight")
        if keys != [f"{name}.weight"] or weight is None or not _float_matrix(weight) or int(weight.shape[1]) != spec.input_size:
            continue
        if order.index(keys[0]) > rnn_pos and int(weight.shape[1]) == spec.output_width:
            continue  # saved after the RNN and shaped like a bias-free head: that is the head
        found.append(name)
    if len(found) > 1 and vocab_size:
        found = [n for n in found if int(state[f"{n}.weight"].shape[0]) == vocab_size]
    return found[0] if len(found) == 1 else None
