"""What a bare state dict's recurrent keys say: the module's family, sizes, layers, direction, projection.

Keys such as ``encoder.rnn.weight_ih_l1_reverse`` are grouped by prefix; the shapes of layer 0 imply every
other key's shape, and a missing or extra key is a one-line error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch

from lstmviz_cli.errors import CheckpointError
from lstmviz_cli.families import FAMILY_BY_GATE_COUNT, family

_RNN_KEY = re.compile(
    r"^(?:(?P<prefix>.+)\.)?(?P<param>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)(?P<rev>_reverse)?$"
)


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
        return self.prefix or family(self.kind).name

    @property
    def output_width(self) -> int:
        return (self.proj_size or self.hidden_size) * (2 if self.bidirectional else 1)


def _shape(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(int(d) for d in t.shape)


def check_float_tensors(state: Mapping[str, object], keys: list[str]) -> None:
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


def find_recurrent_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    """Group the recurrent keys (weight_ih_l0, ...) by their module prefix."""
    groups: dict[str, list[str]] = {}
    for key in state:
        match = _RNN_KEY.match(key)
        if match:
            groups.setdefault(match.group("prefix") or "", []).append(key)
    return groups


_CELL_KEY = re.compile(r"^(?:(?P<prefix>.+)\.)?weight_hh$")


def find_cell_prefixes(state: Mapping[str, torch.Tensor]) -> dict[str, str]:
    """Cells' weights (`cell.weight_ih`, `cell.weight_hh`, no `_l0`): {prefix: "LSTMCell" | "GRUCell" | "RNNCell"}."""
    cells: dict[str, str] = {}
    for key, value in state.items():
        match = _CELL_KEY.match(key)
        if not match or not isinstance(value, torch.Tensor) or value.dim() != 2:
            continue
        prefix = match.group("prefix") or ""
        weight_ih = state.get(f"{prefix}.weight_ih" if prefix else "weight_ih")
        rows, hidden = int(value.shape[0]), int(value.shape[1])
        family = FAMILY_BY_GATE_COUNT.get(rows // hidden) if hidden and rows % hidden == 0 else None
        if isinstance(weight_ih, torch.Tensor) and family is not None:
            cells[prefix] = f"{family.name.upper()}Cell"
    return cells


def infer_recurrent(state: Mapping[str, torch.Tensor], prefix: str, keys: list[str], config: Mapping[str, object]) -> RecurrentSpec:
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
    if hidden <= 0 or rows % hidden or rows // hidden not in FAMILY_BY_GATE_COUNT or (proj_size and rows != 4 * hidden):
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
    kind = FAMILY_BY_GATE_COUNT[rows // hidden].name.upper()
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


def _check_shapes(state: Mapping[str, torch.Tensor], spec: RecurrentSpec, params: dict[tuple[int, bool], dict[str, str]]) -> None:
    """Every key must have the shape the l0 weights imply, and every slot all its keys."""
    gates = family(spec.kind).n_gates * spec.hidden_size
    out = spec.proj_size or spec.hidden_size
    dot = f"{spec.prefix}." if spec.prefix else ""
    for layer in range(spec.num_layers):
        for rev in (False, True) if spec.bidirectional else (False,):
            suffix = f"_l{layer}" + ("_reverse" if rev else "")
            expected: dict[str, tuple[int, ...]] = {
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
