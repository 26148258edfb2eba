"""Causal check of a unit: silence (or clamp) it during the forward pass and measure what changes.

A unit that correlates with quotes may still be unused. To see whether the model uses it, the
recurrent stack is run layer by layer through PyTorch's own kernel (the op nn.LSTM/GRU/RNN's
forward calls), and every layer direction holding an ablated unit one step at a time (the same
kernel with one step), setting that unit of h to 0 (or to a chosen value) after every step, so
that the next step's gates, the layer above and the head all read the ablated value. No cell
equation is written here.

The unit's h, not its c: h is the unit's only output (to W_hh at the next step, to the layer
above, to the head); c reaches the rest of the network only through h, so with h set, the
unit has no other way to act. Projected LSTMs are refused: their unit's output (o tanh c before
the projection) is not exposed by the kernel.

Two interventions: silencing (h = 0, the classic ablation) and clamping to a value. Zero is
not neutral for a unit whose resting level is elsewhere (the sample char model's quote unit
sits at +0.32 outside quotes and -0.74 inside), so `feature_clamp` offers the question "does the
model use what this unit says about the feature?" directly: clamp the unit to its mean over
the steps where the feature is absent (or present), an interchange intervention in the sense of
activation patching (Geiger et al., NeurIPS 2021; Vig et al., NeurIPS 2020).

Measured, with the same kernel calls with and without the ablation (so that a unit nobody reads
changes exactly nothing): the watched output (the log-probability of the class predicted at
`step`, or the value for a regression) and the loss on the sample: for a character/token
language model ("char-lm") the next-token cross-entropy of every step, reported per step; for a
classifier the cross-entropy against the class predicted without the ablation.

JSON (one entry of the report's ``ablations``)::

    {"units": ["lstm/l0/fwd:49"], "step", "target", "target_label", "quantity",
     "target_before", "target_after", "loss": "next-token" | "predicted-class" | null,
     "loss_before", "loss_after", "step_loss_change": [per step] | null, "changed": bool}
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from lstmviz_cli.analysis.evidence import UnitAblation, UnitSpec, UnitTests
from lstmviz_cli.errors import ExplainError
from lstmviz_cli.explain._run import call_model, find_stack, model_input, output_at, target_value
from lstmviz_cli.explain.attribution import target_label
from lstmviz_cli.explain.saliency import RecurrentStack
from lstmviz_cli.tracing.kernels import fused_layer
from lstmviz_cli.tracing.records import Trace

# The layered run without ablation must reproduce the model's own output to this (relative).
REPLAY_TOLERANCE = 1e-4

_SPEC = re.compile(r"^(?P<prefix>[^\s,:=]+/l(?P<layer>\d+)/(?P<dir>fwd|bwd)):(?P<unit>\d+)(?:=(?P<value>[^\s,]+))?$")


def parse_unit_spec(text: str) -> UnitSpec:
    """"lstm/l0/fwd:49" (zero unit 49) or "lstm/l0/fwd:49=0.5" (clamp it to 0.5); ExplainError otherwise."""
    match = _SPEC.match(text.strip())
    if match is None and "," in text:
        raise ExplainError(f"unit {text!r}: name one unit per --ablate (repeat the option: "
                           "--ablate lstm/l0/fwd:49 --ablate lstm/l0/fwd:12)")
    if match is None:
        raise ExplainError(f"unit {text!r} is not of the form <module>/l<layer>/<fwd|bwd>:<unit>[=value], "
                           "e.g. 'lstm/l0/fwd:49'")
    value = None
    if match.group("value") is not None:
        try:
            value = float(match.group("value"))
        except ValueError:
            raise ExplainError(f"unit {text!r}: {match.group('value')!r} is not a number") from None
        if not np.isfinite(value):
            raise ExplainError(f"unit {text!r}: the clamp value must be finite")
    return UnitSpec(prefix=match.group("prefix"), unit=int(match.group("unit")), value=value)


def units_for_feature(tests: UnitTests, feature: str, count: int = 1) -> list[UnitSpec]:
    """The `count` strongest significant units for `feature` in a `UnitTests` (c and h of a unit count once)."""
    specs: list[UnitSpec] = []
    for row in tests.ranked:
        spec = UnitSpec(prefix=row.prefix, unit=row.unit)
        if row.feature == feature and spec not in specs:
            specs.append(spec)
    return specs[:count]


def feature_clamp(trace: Trace, unit: UnitSpec | str, feature: np.ndarray, *, present: bool = False) -> UnitSpec:
    """`unit` clamped to its mean h over the steps where `feature` is absent (or `present`).

    trace: the model's Trace on the same input; feature: (time,) values per step of batch
    element 0, "absent" where it is at its smallest value. NumPy only. Raises ExplainError when
    the unit is not in the trace or no step has the feature absent (present).
    """
    spec = parse_unit_spec(unit) if isinstance(unit, str) else unit
    key = f"{spec.prefix}/h"
    if key not in trace.keys():
        raise ExplainError(f"unit {str(spec)!r}: the trace has no series {key!r}")
    h = np.asarray(trace[key][0], dtype=np.float64)
    f = np.asarray(feature, dtype=np.float64)[: h.shape[0]]
    h = h[: len(f)]
    if not 0 <= spec.unit < h.shape[1]:
        raise ExplainError(f"unit {str(spec)!r}: the layer has units 0..{h.shape[1] - 1}")
    rows = (f > f.min()) if present else (f <= f.min())
    rows &= ~np.isnan(h).any(axis=1)
    if not rows.any():
        raise ExplainError(f"unit {str(spec)!r}: no step has the feature {'present' if present else 'absent'}")
    return UnitSpec(prefix=spec.prefix, unit=spec.unit, value=float(h[rows, spec.unit].mean()))


def _check_units(units: Sequence[UnitSpec], name: str,
                 stack: RecurrentStack) -> dict[tuple[int, int], dict[int, float]]:
    """(layer, direction) -> {unit: value}, validated against the stack; ExplainError otherwise."""
    clamps: dict[tuple[int, int], dict[int, float]] = {}
    width = _output_width(stack)
    for spec in units:
        if spec.module != name:
            raise ExplainError(f"unit {str(spec)!r}: the model's recurrent stack is {name!r}")
        if spec.layer >= stack.num_layers or (spec.direction and not stack.bidirectional):
            raise ExplainError(f"unit {str(spec)!r}: {name!r} has {stack.num_layers} layer(s)"
                               + ("" if stack.bidirectional else ", forward only"))
        if isinstance(stack, nn.LSTM) and stack.proj_size:
            raise ExplainError(f"unit {str(spec)!r}: ablating a unit of a projected LSTM needs its output "
                               "before the projection, which PyTorch's kernel does not expose")
        if not 0 <= spec.unit < width:
            raise ExplainError(f"unit {str(spec)!r}: the layer has units 0..{width - 1}")
        if spec.value is not None and not np.isfinite(spec.value):
            raise ExplainError(f"unit {str(spec)!r}: the clamp value must be finite")
        clamps.setdefault((spec.layer, spec.direction), {})[spec.unit] = spec.value or 0.0
    return clamps


def _output_width(stack: RecurrentStack) -> int:
    """Width of the stack's h: proj_size for a projected LSTM, else hidden_size."""
    return (stack.proj_size if isinstance(stack, nn.LSTM) else 0) or stack.hidden_size


@contextlib.contextmanager
def _layered(stack: RecurrentStack, stepped: set[tuple[int, int]],
             clamps: Mapping[tuple[int, int], Mapping[int, float | torch.Tensor]]) -> Iterator[None]:
    """Run `stack` layer by layer with the kernel; `stepped` directions one step at a time with `clamps`.

    Replaces the instance's forward (restored in `finally`), returning what nn.LSTM/GRU/RNN
    return for an unpacked batched input.
    """
    is_lstm = isinstance(stack, nn.LSTM)
    dirs = 2 if stack.bidirectional else 1
    layers = stack.num_layers

    def run_direction(x: torch.Tensor, state: torch.Tensor | tuple[torch.Tensor, torch.Tensor],
                      weights: list[torch.Tensor], d: int, stepwise: bool,
                      values: Mapping[int, float | torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        if not stepwise:  # the reverse direction reads time backwards
            seq = x if d == 0 else x.flip(0)
            result = fused_layer(stack, seq, None, state, weights, False)
            out = result[0] if d == 0 else result[0].flip(0)
            return out, result[1], (result[2] if is_lstm else None)
        steps = x.shape[0]
        pieces: list[torch.Tensor | None] = [None] * steps
        h, c = state if isinstance(state, tuple) else (state, None)
        # A tensor holds one value per batch row (NaN: that row is not clamped), in h's dtype and
        # device: the NaN test is made once, on the values as given (float64), before any rounding.
        rows = {unit: (torch.isnan(value).to(h.device), value.to(h.device, h.dtype))
                for unit, value in values.items() if isinstance(value, torch.Tensor)}
        scalars = {unit: value for unit, value in values.items() if not isinstance(value, torch.Tensor)}
        for t in range(steps - 1, -1, -1) if d else range(steps):
            step_state: torch.Tensor | tuple[torch.Tensor, torch.Tensor] = (h, c) if c is not None else h
            result = fused_layer(stack, x[t:t + 1], None, step_state, weights, False)
            h = result[1].clone()
            c = result[2] if is_lstm else None
            for unit, (free, value) in rows.items():
                h[0, :, unit] = torch.where(free, h[0, :, unit], value)
            for unit, scalar in scalars.items():
                h[..., unit] = scalar
            pieces[t] = h[0]
        return torch.stack([p for p in pieces if p is not None]), h, c

    def forward(input: torch.Tensor | PackedSequence,
                hx: torch.Tensor | tuple[torch.Tensor, torch.Tensor] | None = None) -> object:
        if isinstance(input, PackedSequence) or input.dim() != 3:
            raise ExplainError("unit ablation needs the recurrent stack to read a plain (batch, time, features) tensor")
        stack._update_flat_weights()
        x = input.transpose(0, 1) if stack.batch_first else input
        batch = x.shape[1]
        out_size = _output_width(stack)
        c0: torch.Tensor | None
        if hx is None:
            h0 = x.new_zeros(layers * dirs, batch, out_size)
            c0 = x.new_zeros(layers * dirs, batch, stack.hidden_size) if is_lstm else None
        elif isinstance(hx, tuple):  # an LSTM's (h_0, c_0)
            h0, c0 = hx
        else:
            h0, c0 = hx, None
        # Set for every weight of the layer by _update_flat_weights (torch types the list as Optional).
        flat = cast(list[torch.Tensor], stack._flat_weights)
        per = len(flat) // (layers * dirs)
        h_n, c_n = [], []
        for layer in range(layers):
            if not any((layer, d) in stepped for d in range(dirs)):
                sl = slice(layer * dirs, (layer + 1) * dirs)
                weights = flat[layer * dirs * per:(layer + 1) * dirs * per]
                result = fused_layer(stack, x, None, (h0[sl], c0[sl]) if c0 is not None else h0[sl], weights,
                                     stack.bidirectional)
                x = result[0]
                h_n.append(result[1])
                if is_lstm:
                    c_n.append(result[2])
                continue
            outs = []
            for d in range(dirs):
                k = layer * dirs + d
                state = (h0[k:k + 1], c0[k:k + 1]) if c0 is not None else h0[k:k + 1]
                out, hn, cn = run_direction(x, state, flat[k * per:(k + 1) * per], d, (layer, d) in stepped,
                                            clamps.get((layer, d), {}))
                outs.append(out)
                h_n.append(hn)
                if cn is not None:  # an LSTM's c_n
                    c_n.append(cn)
            x = torch.cat(outs, dim=2)
        output = x.transpose(0, 1) if stack.batch_first else x
        hidden = (torch.cat(h_n), torch.cat(c_n)) if is_lstm else torch.cat(h_n)
        return output, hidden

    stack.__dict__["forward"] = forward
    try:
        yield
    finally:
        stack.__dict__.pop("forward", None)


def ablate_units(
    model: nn.Module,
    values: np.ndarray,
    units: Sequence[UnitSpec | str],
    *,
    step: int | None = None,
    target: int | None = None,
    task: str | None = None,
    batch_first: bool = True,
    output_labels: Sequence[str] | None = None,
) -> UnitAblation:
    """Silence (or clamp) `units` of the model's recurrent stack on batch element 0 of `values`.

    units: specs like "lstm/l0/fwd:49" (zero) or "lstm/l0/fwd:49=0.5" (clamp), or UnitSpec.
    values: int (batch, time) token ids or float (batch, time, features). task: "char-lm" for
    next-token loss (per-step outputs over the token vocabulary), "regression" for no loss, else
    the loss is the cross-entropy against the class predicted without ablation. step / target:
    the watched output (default the last step and its predicted class).

    Raises ExplainError for a bad unit, a model without one nn.LSTM/GRU/RNN stack, a packed input,
    or when the layered replay does not reproduce the model's own output. Source: ablation of
    single units as in Radford, Jozefowicz & Sutskever (2017) and Lakretz et al. (NAACL 2019).
    """
    specs = tuple(parse_unit_spec(u) if isinstance(u, str) else u for u in units)
    if not specs:
        raise ExplainError("no unit to ablate")
    name, stack = find_stack(model)
    clamps = _check_units(specs, name, stack)
    stepped = set(clamps)
    x = model_input(model, values)
    steps = int(x.shape[1])
    quantity = "value" if task == "regression" else "log-probability"
    was_training = model.training
    threads = torch.get_num_threads()
    try:
        model.eval()
        # One kernel call per step of a small matrix: more threads only add their wake-up cost
        # (on a loaded 2-core machine, 5x slower); the caller's setting is restored.
        torch.set_num_threads(1)
        with torch.no_grad():
            real = call_model(model, x, batch_first)
            with _layered(stack, stepped, {}):
                before = call_model(model, x, batch_first)
            with _layered(stack, stepped, clamps):
                after = call_model(model, x, batch_first)
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    scale = max(1.0, float(real.abs().max()))
    if before.shape != real.shape or float((before - real).abs().max()) > REPLAY_TOLERANCE * scale:
        raise ExplainError("running the recurrent stack layer by layer does not reproduce the model's "
                           "output; unit ablation is not shown")
    vec_before, at = output_at(before, step, steps)
    vec_after, _ = output_at(after, step, steps)
    if target is None:
        target = int(torch.argmax(vec_before))
    if not 0 <= target < vec_before.shape[0]:
        raise ExplainError(f"target {target} is outside the model's {vec_before.shape[0]} outputs")
    loss_kind, loss_b, loss_a, per_b, per_a = _losses(task, x, before, after, vec_before, vec_after, target)
    return UnitAblation(
        units=specs, step=at, target=target, target_label=target_label(target, output_labels),
        quantity=quantity, target_before=target_value(vec_before, target, quantity),
        target_after=target_value(vec_after, target, quantity), loss_kind=loss_kind,
        loss_before=loss_b, loss_after=loss_a, step_loss_before=per_b, step_loss_after=per_a)


def ablate_variants(
    model: nn.Module,
    values: np.ndarray,
    variants: Sequence[Sequence[UnitSpec | str]],
    *,
    step: int | None = None,
    target: int | None = None,
    task: str | None = None,
    batch_first: bool = True,
    output_labels: Sequence[str] | None = None,
) -> list[UnitAblation]:
    """Several ablations of batch element 0 of `values` in one stepped run: one UnitAblation per variant.

    variants: one sequence of unit specs per check (as `ablate_units`' `units`). The input is
    repeated once per variant plus once unablated (row 0, the "before"), and each batch row gets
    its own clamps (a per-row value; NaN marks a row that keeps the unit's own value), so the
    stepped layers run once whatever the number of variants (the report's default checks: the
    top units, clamped and zeroed). Same arguments, errors and results as `ablate_units` run once
    per variant, up to float rounding between batch rows; every variant is validated before
    anything runs. A model that does not take the repeated batch (an initial state stored with
    batch 1, an output that merges the batch axis) is run once per variant instead.
    """
    if not variants:
        return []
    parsed = [tuple(parse_unit_spec(u) if isinstance(u, str) else u for u in units) for units in variants]
    if any(not specs for specs in parsed):
        raise ExplainError("no unit to ablate")
    name, stack = find_stack(model)
    rows = len(parsed) + 1
    clamps: dict[tuple[int, int], dict[int, torch.Tensor]] = {}
    for row, specs in enumerate(parsed, start=1):
        for where, units in _check_units(specs, name, stack).items():
            for unit, value in units.items():  # float64: the values as given, NaN only where not set
                column = clamps.setdefault(where, {}).setdefault(
                    unit, torch.full((rows,), float("nan"), dtype=torch.float64))
                column[row] = value
    x = model_input(model, values)
    steps = int(x.shape[1])
    batch = x.repeat(rows, *([1] * (x.dim() - 1)))
    out: torch.Tensor | None = None
    was_training = model.training
    threads = torch.get_num_threads()
    try:
        model.eval()
        torch.set_num_threads(1)  # as in ablate_units
        with torch.no_grad():
            single = call_model(model, x, batch_first)
            try:
                real: torch.Tensor | None = call_model(model, batch, batch_first)
            except ExplainError:
                raise
            except Exception:  # noqa: BLE001 - the model's own code does not take a batch of `rows`
                real = None
            if real is not None and single.shape[0] == 1 and real.shape == (rows, *single.shape[1:]):
                with _layered(stack, set(clamps), clamps):
                    out = call_model(model, batch, batch_first)
    finally:
        torch.set_num_threads(threads)
        model.train(was_training)
    if out is None or real is None:
        return [ablate_units(model, values, specs, step=step, target=target, task=task, batch_first=batch_first,
                             output_labels=output_labels) for specs in parsed]
    # The replay is checked against the model's own run of the same batch: a half-precision model's
    # kernels round a batch of one differently from a batch of several.
    before = out[:1]
    scale = max(1.0, float(real.abs().max()))
    if out.shape != real.shape or float((before - real[:1]).abs().max()) > REPLAY_TOLERANCE * scale:
        raise ExplainError("running the recurrent stack layer by layer does not reproduce the model's "
                           "output; unit ablation is not shown")
    vec_before, at = output_at(before, step, steps)
    if target is None:
        target = int(torch.argmax(vec_before))
    if not 0 <= target < vec_before.shape[0]:
        raise ExplainError(f"target {target} is outside the model's {vec_before.shape[0]} outputs")
    quantity = "value" if task == "regression" else "log-probability"
    result = []
    for row, specs in enumerate(parsed, start=1):
        after = out[row:row + 1]
        vec_after, _ = output_at(after, step, steps)
        loss_kind, loss_b, loss_a, per_b, per_a = _losses(task, x, before, after, vec_before, vec_after, target)
        result.append(UnitAblation(
            units=specs, step=at, target=target, target_label=target_label(target, output_labels),
            quantity=quantity, target_before=target_value(vec_before, target, quantity),
            target_after=target_value(vec_after, target, quantity), loss_kind=loss_kind,
            loss_before=loss_b, loss_after=loss_a, step_loss_before=per_b, step_loss_after=per_a))
    return result


_Losses = tuple[str | None, float | None, float | None, np.ndarray | None, np.ndarray | None]


def _losses(task: str | None, x: torch.Tensor, before: torch.Tensor, after: torch.Tensor, vec_before: torch.Tensor,
            vec_after: torch.Tensor, target: int) -> _Losses:
    """(kind, loss before, loss after, per-step before, per-step after) for the task."""
    if task == "regression":
        return None, None, None, None, None
    if task == "char-lm":
        if x.dtype != torch.int64 or before.dim() != 3 or before.shape[1] != x.shape[1]:
            raise ExplainError("next-token loss needs token ids in and one output per step out")
        if int(x.max()) >= before.shape[-1]:
            raise ExplainError("next-token loss needs the output to cover the token vocabulary")
        nxt = x[0, 1:]

        def per_step(out: torch.Tensor) -> np.ndarray:
            logp = torch.log_softmax(out[0, :-1].double(), dim=-1)
            losses: np.ndarray = (-logp.gather(1, nxt[:, None])[:, 0]).cpu().numpy()
            return losses

        b, a = per_step(before), per_step(after)
        return "next-token", float(b.mean()), float(a.mean()), b, a
    loss_b = -float(torch.log_softmax(vec_before.double(), dim=0)[target])
    loss_a = -float(torch.log_softmax(vec_after.double(), dim=0)[target])
    return "predicted-class", loss_b, loss_a, None, None
