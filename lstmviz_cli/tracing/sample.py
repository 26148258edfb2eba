"""Trace a loaded model on a sample the way its forward expects: layout, lengths, other arguments, output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from lstmviz_cli._warncapture import captured_warnings
from lstmviz_cli.errors import InputError, LstmvizError, ModelError, VerificationError
from lstmviz_cli.tracing.cells import trace_custom
from lstmviz_cli.tracing.forwardargs import forward_kwargs, plan_forward_args
from lstmviz_cli.tracing.layout import locate_output_axes, to_batch_major
from lstmviz_cli.tracing.recorder import CELL_TYPES, LAYER_TYPES, RECURRENT_TYPES
from lstmviz_cli.tracing.records import Trace
from lstmviz_cli.tracing.tracer import first_output, trace


def model_batch_first(loaded: Any) -> bool:
    """The model call's layout: the loader's word if it gave one, else the first recurrent module's."""
    if "batch_first" in loaded.meta:
        return bool(loaded.meta["batch_first"])
    for _, module in loaded.model.named_modules():
        if isinstance(module, LAYER_TYPES):
            return bool(module.batch_first)
        if isinstance(module, CELL_TYPES):
            return True
    return True


def _sample_tensor(model: nn.Module, sample: Any, device: str) -> torch.Tensor:
    """The sample's values as a batch-major tensor in the model's dtype (token ids stay int64)."""
    if sample.kind == "tokens":
        return torch.as_tensor(np.asarray(sample.values), dtype=torch.int64, device=device)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    return torch.as_tensor(np.asarray(sample.values, dtype=np.float32), device=device).to(dtype)


def _layer_shapes(result: Trace) -> set[tuple[int, int]]:
    """The (batch, steps) of every recorded layer."""
    return {tuple(int(d) for d in next(iter(lt.series.values())).shape[:2]) for lt in result.layers
            if lt.series}


@dataclass
class _Attempt:
    """One run of the model in one layout: its trace, or the error it raised."""

    batch_first: bool
    result: Trace | None = None
    error: LstmvizError | None = None
    warnings: list[str] = field(default_factory=list)
    raw: list[Any] = field(default_factory=list)  # the model's return value (its first call)


def _transposed_input_error(sample: Any) -> InputError:
    b, t = sample.batch, sample.steps
    return InputError(
        f"the model steps through the first axis of its input: it ran {b} steps of {t} sequence(s), but "
        f"this input reads as {b} sequence(s) × {t} step(s) (lstmviz reads 3-D arrays as (batch, time, "
        "features) and 2-D token arrays as (batch, time), whatever the model's layout); save one sequence "
        "as (time, features) or a 1-D token array, and lstmviz feeds it in the model's own layout")


def trace_sample(
    loaded: Any, sample: Any, *, verify: bool = True, module: str | None = None,
    forward_args: Mapping[str, str] | None = None, **options: Any
) -> Trace:
    """Trace a LoadedModel on a SampleInput (always batch-major) the way its forward expects.

    Padded `sample.lengths` are packed when the model is a bare recurrent stack (padding would
    change its states); a model whose forward takes other arguments gets them from the sample
    (`tracing.forwardargs`: its lengths, arrays of an .npz, `forward_args` {parameter: array}); every
    series is as long as the padded input, NaN past each length. A model with no stock recurrent
    layer, or a named `module`, is opened up by the hand-written-cell tracer (`tracing.cells`).

    The model is called in its own layout: the loader's word, else its first stock layer's
    `batch_first`. When that is unknown or wrong (a hand-written cell looping `for x in inputs`
    over a (time, batch, features) tensor, a model that fails in that layout) the other layout is
    tried too; the one whose recorded (batch, steps) are the sample's is kept (`meta
    ["model_batch_first"]`). The model's output is stored batch-major, (batch, time, ...) when it
    has a time axis (`tracing.layout`; `meta["output_layout"]` names its own axes). Errors the model
    raises are one-line ModelErrors; `options` go to `trace`.
    """
    model, device = loaded.model, loaded.device
    x = _sample_tensor(model, sample, device)
    batch, steps = sample.batch, sample.steps
    bare = isinstance(model, LAYER_TYPES)
    lengths = None if sample.lengths is None else np.asarray(sample.lengths, dtype=np.int64)
    padded = lengths is not None and int(lengths.min()) < steps
    notes: list[str] = []
    kwargs: dict[str, Any] = {}
    plan = None
    packed_input = None
    if bare:
        if forward_args:
            raise InputError("--forward-arg: a bare nn.LSTM/GRU/RNN takes only its input")
        if padded:
            if sample.kind != "features":
                raise InputError("a bare recurrent stack takes feature arrays, not token ids")
            packed_input = pack_padded_sequence(x, torch.as_tensor(lengths), batch_first=True,
                                                enforce_sorted=False)
    else:
        plan = plan_forward_args(model, sample, forward_args)
        dtype = next((p.dtype for p in model.parameters()), torch.float32)
        kwargs = forward_kwargs(plan, sample, device=device, dtype=dtype)
        notes.extend(plan.notes)
    custom = module is not None or not any(isinstance(m, RECURRENT_TYPES) for m in model.modules())

    def attempt(batch_first: bool) -> _Attempt:
        tried = _Attempt(batch_first)
        if packed_input is not None:
            call_input: Any = packed_input
        else:
            call_input = x if batch_first or x.dim() < 2 else x.transpose(0, 1)
        # The model's whole return value (the tracers keep its first tensor only).
        handle = model.register_forward_hook(lambda _m, _a, out: tried.raw.append(out) if not tried.raw else None)
        with captured_warnings() as caught:
            try:
                if custom:
                    tried.result = trace_custom(model, call_input, module=module, verify=verify, **kwargs)
                else:
                    tried.result = trace(model, call_input, verify=verify, total_length=steps, **kwargs,
                                         **options)
            except VerificationError:
                raise
            except LstmvizError as error:
                tried.error = error
            except (RuntimeError, ValueError, IndexError, TypeError, AttributeError, KeyError) as exc:
                text = str(exc).strip()
                first_line = text.splitlines()[0] if text else type(exc).__name__
                tried.error = ModelError(f"the model failed on the sample ({sample.description}): {first_line}")
                tried.error.__cause__ = exc
            finally:
                handle.remove()
        tried.warnings = caught
        return tried

    preferred = model_batch_first(loaded)
    can_switch = packed_input is None and x.dim() >= 2 and "batch_first" not in loaded.meta and (batch, steps) != (1, 1)
    first = attempt(preferred)
    chosen = first
    shapes = _layer_shapes(first.result) if first.result is not None else set()
    transposed = bool(shapes) and shapes == {(steps, batch)} and batch != steps
    if can_switch and (first.error is not None or transposed):
        second = attempt(not preferred)
        if second.result is not None and _layer_shapes(second.result) == {(batch, steps)}:
            chosen = second
            layout = "(batch, time, …)" if second.batch_first else "(time, batch, …)"
            notes.append(f"the model reads its input as {layout}: lstmviz fed it in that layout "
                         f"({'it failed' if first.error is not None else 'it stepped over the wrong axis'} "
                         "in the other)")
        elif transposed:
            raise _transposed_input_error(sample)
    elif transposed:
        raise _transposed_input_error(sample)
    if chosen.error is not None:
        raise chosen.error
    result = chosen.result
    assert result is not None
    used_batch_first = True if packed_input is not None else (chosen.batch_first or x.dim() < 2)
    other = sorted({(lt.prefix, lt.steps) for lt in result.layers if lt.steps != steps})
    for prefix, count in other:
        notes.append(f"{prefix} ran {count} step{'s' if count != 1 else ''} on a {steps}-step input (the "
                     "model feeds it another sequence, or calls it repeatedly): its figures count its own steps")
    if custom and batch == steps > 1 and chosen is first:
        fed = "(batch, time, …)" if used_batch_first else "(time, batch, …)"
        notes.append(f"batch and time are both {batch}: the hand-written model was fed {fed}; lstmviz cannot "
                     "tell from shapes whether it steps over the other axis")
    stacked = False
    if chosen.raw:
        output, stacked = first_output(chosen.raw[0], steps, steps)
        result.output = None if output is None else output.detach().to("cpu", torch.float32).numpy()
    if result.output is not None:
        # A list of per-step tensors was stacked time first, whatever the call's layout.
        axes = locate_output_axes(result.output.shape, batch=batch, steps=steps,
                                  batch_first=used_batch_first and not stacked)
        result.output = np.ascontiguousarray(to_batch_major(result.output, axes, batch=batch, steps=steps))
        result.meta["output_layout"] = axes.layout
        if axes.note:
            notes.append(axes.note)
    result.meta.update({
        "sample": sample.description,
        "sample_kind": sample.kind,
        "batch": batch,
        "steps": steps,
        "packed": packed_input is not None,
        "model_batch_first": used_batch_first,
        "forward_args": None if plan is None else plan.to_meta(),
        "notes": notes,
        "model_warnings": chosen.warnings,
    })
    if sample.labels is not None:
        result.meta["labels"] = list(sample.labels)
    return result
