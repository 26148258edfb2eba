"""Trace a loaded model on a sample the way its forward expects: layout, lengths, other arguments, output."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from lstmviz_cli._warncapture import captured_warnings
from lstmviz_cli.errors import InputError, LstmvizError, ModelError, VerificationError, first_line
from lstmviz_cli.loading.inputs import one_hot
from lstmviz_cli.loading.modules import CELL_TYPES, LAYER_TYPES, RECURRENT_TYPES
from lstmviz_cli.loading.records import LoadedModel, SampleInput
from lstmviz_cli.tracing.cells import trace_custom
from lstmviz_cli.tracing.forwardargs import forward_kwargs, plan_forward_args
from lstmviz_cli.tracing.layout import locate_output_axes, to_batch_major
from lstmviz_cli.tracing.precision import tf32_note
from lstmviz_cli.tracing.records import Trace
from lstmviz_cli.tracing.seeding import SEED, seeded
from lstmviz_cli.tracing.tracer import first_output, trace
from lstmviz_cli.tracing.verify import VerifyPolicy


def model_batch_first(loaded: LoadedModel) -> bool:
    """The model call's layout: the loader's word if it gave one, else the first recurrent module's."""
    if "batch_first" in loaded.meta:
        return bool(loaded.meta["batch_first"])
    for _, module in loaded.model.named_modules():
        if isinstance(module, LAYER_TYPES):
            return bool(module.batch_first)
        if isinstance(module, CELL_TYPES):
            return True
    return True


def sample_tensor(values: np.ndarray, kind: str, model: nn.Module, device: str) -> torch.Tensor:
    """A sample's values as a batch-major tensor in the model's dtype (token ids stay int64)."""
    if kind == "tokens":
        return torch.as_tensor(np.asarray(values), dtype=torch.int64, device=device)
    dtype = next((p.dtype for p in model.parameters()), torch.float32)
    return torch.as_tensor(np.asarray(values, dtype=np.float32), device=device).to(dtype)


def _layer_shapes(result: Trace) -> set[tuple[int, int]]:
    """The (batch, steps) of every recorded layer."""
    shapes: set[tuple[int, int]] = set()
    for lt in result.layers:
        if lt.series:
            batch, steps = next(iter(lt.series.values())).shape[:2]
            shapes.add((int(batch), int(steps)))
    return shapes


@dataclass
class _Attempt:
    """One run of the model in one layout and encoding: its trace, or the error it raised."""

    batch_first: bool
    one_hot: bool = False
    result: Trace | None = None
    error: LstmvizError | None = None
    warnings: list[str] = field(default_factory=list)
    raw: list[object] = field(default_factory=list)  # the model's return value (its first call)
    drew_random: bool = False  # the model drew random numbers while it ran


def _transposed_input_error(sample: SampleInput) -> InputError:
    b, t = sample.batch, sample.steps
    return InputError(
        f"the model steps through the first axis of its input: it ran {b} steps of {t} sequence(s), but "
        f"this input reads as {b} sequence(s) × {t} step(s) (lstmviz reads 3-D arrays as (batch, time, "
        "features) and 2-D token arrays as (batch, time), whatever the model's layout); save one sequence "
        "as (time, features) or a 1-D token array, and lstmviz feeds it in the model's own layout")


def trace_sample(
    loaded: LoadedModel, sample: SampleInput, *, verify: bool | VerifyPolicy = True, module: str | None = None,
    forward_args: Mapping[str, str] | None = None, store_dtype: str = "float32",
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
    tried too; the one whose recorded (batch, steps) are the sample's is kept
    (`meta.model_batch_first`). Token ids for your own model without an Embedding
    (`sample.one_hot_width`) are tried as ids, then as one-hot rows; when the rows are what it
    reads, `sample` becomes them (values, kind) and a note says so. Each run starts from the same
    random state (`tracing.seeding`): a model that draws random numbers is traced reproducibly.
    The model's output is stored batch-major, (batch, time, ...) when it has a time axis
    (`tracing.layout`; `meta.output_layout` names its own axes, `meta.output_steps` its length).
    Errors the model raises are one-line ModelErrors.
    """
    policy = VerifyPolicy.of(verify)
    model, device = loaded.model, loaded.device
    batch, steps = sample.batch, sample.steps
    bare = isinstance(model, LAYER_TYPES)
    lengths = None if sample.lengths is None else np.asarray(sample.lengths, dtype=np.int64)
    padded = lengths is not None and int(lengths.min()) < steps
    notes: list[str] = []
    precision = tf32_note(device)
    if precision is not None:
        notes.append(precision)
    kwargs: dict[str, torch.Tensor] = {}
    plan = None
    packed_input = None
    x = sample_tensor(sample.values, sample.kind, model, device)
    rows = (one_hot(np.asarray(sample.values), sample.one_hot_width)
            if sample.one_hot_width and sample.kind == "tokens" else None)
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

    def attempt(batch_first: bool, as_rows: bool = False) -> _Attempt:
        tried = _Attempt(batch_first, one_hot=as_rows)
        values = x if not as_rows or rows is None else sample_tensor(rows, "features", model, device)
        call_input: object
        if packed_input is not None:
            call_input = packed_input
        else:
            call_input = values if batch_first or values.dim() < 2 else values.transpose(0, 1)
        # The model's whole return value (the tracers keep its first tensor only).
        handle = model.register_forward_hook(lambda _m, _a, out: tried.raw.append(out) if not tried.raw else None)
        with captured_warnings() as caught, seeded() as rng:
            try:
                if custom:
                    tried.result = trace_custom(model, call_input, module=module, verify=policy, **kwargs)
                else:
                    # `kwargs` are the model's own arguments (tensors named by its forward), never the tracer's.
                    tried.result = trace(model, call_input, verify=policy, total_length=steps,
                                         store_dtype=store_dtype, **kwargs)  # type: ignore[arg-type]
            except VerificationError:
                raise
            except LstmvizError as error:
                tried.error = error
            except (RuntimeError, ValueError, IndexError, TypeError, AttributeError, KeyError) as exc:
                tried.error = ModelError(f"the model failed on the sample ({sample.description}): {first_line(exc)}")
                tried.error.__cause__ = exc
            finally:
                handle.remove()
        tried.warnings = caught
        tried.drew_random = rng.drew
        return tried

    preferred = model_batch_first(loaded)
    can_switch = packed_input is None and x.dim() >= 2 and "batch_first" not in loaded.meta and (batch, steps) != (1, 1)

    def fits(tried: _Attempt) -> bool:
        return tried.result is not None and _layer_shapes(tried.result) == {(batch, steps)}

    first = attempt(preferred)
    chosen = first
    shapes = _layer_shapes(first.result) if first.result is not None else set()
    transposed = bool(shapes) and shapes == {(steps, batch)} and batch != steps
    if can_switch and (first.error is not None or transposed):
        second = attempt(not preferred)
        if fits(second):
            chosen = second
            layout = "(batch, time, …)" if second.batch_first else "(time, batch, …)"
            notes.append(f"the model reads its input as {layout}: lstmviz fed it in that layout "
                         f"({'it failed' if first.error is not None else 'it stepped over the wrong axis'} "
                         "in the other)")
        elif transposed and rows is None:
            raise _transposed_input_error(sample)
    elif transposed and rows is None:
        raise _transposed_input_error(sample)
    if rows is not None and not fits(chosen):
        # Your own model without an Embedding that did not take the ids: its one-hot rows.
        for batch_first in [preferred, not preferred] if can_switch else [preferred]:
            tried = attempt(batch_first, as_rows=True)
            if fits(tried):
                chosen = tried
                layout = "(batch, time, vocabulary)" if batch_first else "(time, batch, vocabulary)"
                notes.append(f"the model did not take token ids: it was fed their one-hot rows over the "
                             f"{rows.shape[-1]}-token vocabulary, as {layout}")
                sample.values, sample.kind = rows, "features"
                break
    if chosen.error is not None:
        raise chosen.error
    if chosen.result is None or (transposed and chosen is first):
        raise _transposed_input_error(sample)
    result = chosen.result
    if sample.one_hot:
        notes.append(f"the tokens were fed as one-hot rows over the {np.asarray(sample.values).shape[-1]}-token "
                     "vocabulary (the model has no Embedding; its input size is the vocabulary's)")
    used_batch_first = True if packed_input is not None else (chosen.batch_first or x.dim() < 2)
    other = sorted({(lt.prefix, lt.steps) for lt in result.layers if lt.steps != steps})
    for prefix, count in other:
        notes.append(f"{prefix} ran {count} step{'s' if count != 1 else ''} on a {steps}-step input (the "
                     "model feeds it another sequence, or calls it repeatedly): its figures count its own steps")
    if custom and batch == steps > 1 and chosen is first:
        fed = "(batch, time, …)" if used_batch_first else "(time, batch, …)"
        notes.append(f"batch and time are both {batch}: the hand-written model was fed {fed}; lstmviz cannot "
                     "tell from shapes whether it steps over the other axis")
    if chosen.drew_random:
        notes.append(f"the model draws random numbers while it runs: lstmviz ran it from a fixed random state "
                     f"(seed {SEED}), the same for every run of the model")
    _state_layouts(result, rebuilt=loaded.info.rebuilt, fed_batch_first=used_batch_first)
    meta = result.meta
    stacked = False
    if chosen.raw:
        output, stacked = first_output(chosen.raw[0], steps, steps)
        result.output = None if output is None else output.detach().to("cpu", torch.float32).numpy()
    if result.output is not None:
        # A list of per-step tensors was stacked time first, whatever the call's layout.
        axes = locate_output_axes(result.output.shape, batch=batch, steps=steps,
                                  batch_first=used_batch_first and not stacked)
        result.output = np.ascontiguousarray(to_batch_major(result.output, axes, batch=batch, steps=steps))
        meta.output_layout = axes.layout
        if axes.time is not None:
            meta.output_steps = int(result.output.shape[1])
            meta.output_follows_input = meta.output_steps == steps
            if not meta.output_follows_input:
                notes.append(f"the model's output has {meta.output_steps} steps of its own on a {steps}-step input "
                             "(a decoder, say): its prediction is read at its last step, not at an input step")
        if axes.note:
            notes.append(axes.note)
    meta.sample = sample.description
    meta.sample_kind = sample.kind
    meta.batch = batch
    meta.steps = steps
    meta.packed = packed_input is not None
    meta.model_batch_first = used_batch_first
    meta.forward_args = plan
    meta.notes.extend(notes)  # after the tracer's own (a hand-written cell's convention, ...)
    meta.model_warnings = chosen.warnings
    if sample.labels is not None:
        meta.labels = list(sample.labels)
    return result


def _state_layouts(result: Trace, *, rebuilt: bool, fed_batch_first: bool) -> None:
    """Each traced module's `batch_first` as the model says it: a layer rebuilt from weights does not
    say (None: lstmviz's rebuild is batch-first by its own choice); a hand-written loop takes the layout
    it was fed; a cell has none."""
    configs = {}
    for name, cfg in result.modules.items():
        if rebuilt and not cfg.is_cell:
            configs[name] = replace(cfg, batch_first=None)
        elif result.meta.custom_cells is not None and not cfg.is_cell:
            configs[name] = replace(cfg, batch_first=fed_batch_first)
        else:
            configs[name] = cfg
    result.modules = configs
    for layer in result.layers:
        layer.config = configs[layer.module]
