"""The arguments a model's forward takes besides its input: lengths, masks, other arrays of an .npz.

`forward(text, text_lengths)` (the classic torchtext sentiment model) needs the sequence lengths,
and a model may ask for a mask or a second sequence. They are filled by the forward's signature:

1. `--forward-arg PARAM=ARRAY` maps an array of the `.npz` input (or `lengths`) to a parameter;
2. an `.npz` array named like a parameter goes to that parameter;
3. a parameter named like lengths (`lengths`, `text_lengths`, `seq_lens`, `x_len`, ... but not
   `max_len`) gets the `.npz`'s `lengths`; a required one gets every sequence's full length when
   the input has no `lengths` (said in a note);
4. any other required parameter is an error that says what to pass.

The plan is plain data (`ForwardPlan.params`, stored in `Trace.meta.forward_args`), so the
saliency pass builds the same arguments for batch element 0 alone.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from torch import nn

from lstmviz_cli.errors import InputError
from lstmviz_cli.loading.records import SampleInput
from lstmviz_cli.tracing.records import ForwardPlan

__all__ = ["LENGTHS", "ForwardPlan", "forward_kwargs", "is_lengths_name", "parse_forward_args", "plan_forward_args"]

LENGTHS = "lengths"  # the source name of the sample's lengths
_LENGTH_NAME = re.compile(r"(?:^|_)(?:len|lens|length|lengths|seqlen|seqlens)$", re.IGNORECASE)
_NOT_LENGTHS = re.compile(r"^(?:max|min|total|pad|padded)_", re.IGNORECASE)


def is_lengths_name(name: str) -> bool:
    """`lengths`, `text_lengths`, `seq_lens`, `x_len`: a parameter that takes sequence lengths."""
    return bool(_LENGTH_NAME.search(name)) and not _NOT_LENGTHS.match(name)


def parse_forward_args(specs: Iterable[str] | None) -> dict[str, str]:
    """`["text_lengths=lengths", "mask=m"]` -> {"text_lengths": "lengths", "mask": "m"}."""
    mapping: dict[str, str] = {}
    for spec in specs or ():
        param, sep, source = str(spec).partition("=")
        param, source = param.strip(), source.strip()
        if not sep or not param.isidentifier() or not source:
            raise InputError(f"--forward-arg {spec!r}: expected PARAMETER=ARRAY, e.g. text_lengths=lengths")
        if param in mapping:
            raise InputError(f"--forward-arg names {param!r} twice")
        mapping[param] = source
    return mapping


def _script_parameters(model: nn.Module) -> list[inspect.Parameter] | None:
    """A TorchScript module's forward parameters after `self`, from its schema (None: not scripted)."""
    schema = getattr(getattr(model, "forward", None), "schema", None)
    arguments = getattr(schema, "arguments", None)
    if not isinstance(model, torch.jit.ScriptModule) or arguments is None:
        return None
    return [inspect.Parameter(a.name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                              default=None if a.has_default_value() else inspect.Parameter.empty)
            for a in list(arguments)[1:]]


def _parameters(model: nn.Module) -> tuple[list[inspect.Parameter], bool] | None:
    """The forward's parameters after its input, and whether it takes **kwargs (None: unreadable).

    A TorchScript archive's are read from its schema (it has no Python signature).
    """
    scripted = _script_parameters(model)
    if scripted is not None:
        return scripted[1:], False
    try:
        signature = inspect.signature(model.forward)
    except (TypeError, ValueError, AttributeError):
        return None
    params = list(signature.parameters.values())
    var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
    positional = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_ONLY,
                                                   inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    rest = [p for p in params if p.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                            inspect.Parameter.KEYWORD_ONLY)]
    if positional:
        rest = [p for p in rest if p is not positional[0]]
    return rest, var_keyword


def plan_forward_args(model: nn.Module, sample: SampleInput, explicit: Mapping[str, str] | None = None) -> ForwardPlan:
    """Decide which arrays of `sample` fill the forward's other parameters (see the module docstring).

    Raises InputError naming the parameter, or the array, when a mapping cannot be made.
    """
    explicit = dict(explicit or {})
    arrays: Mapping[str, np.ndarray] = sample.arrays
    has_lengths = sample.lengths is not None
    available = sorted(arrays) + ([LENGTHS] if has_lengths else [])
    cls = type(model).__name__
    found = _parameters(model)
    plan = ForwardPlan()
    params, var_keyword = found if found is not None else ([], True)
    names = [p.name for p in params]
    for param, source in explicit.items():
        if param not in names and not var_keyword:
            raise InputError(f"--forward-arg {param}={source}: {cls}.forward has no parameter {param!r} "
                             f"(it takes {', '.join(names) or 'only its input'})")
        if source not in arrays and not (source == LENGTHS and has_lengths):
            others = (f"its other arrays: {', '.join(available)}" if available
                      else "other arrays come with an .npz input, next to the input array")
            raise InputError(f"--forward-arg {param}={source}: the input has no array {source!r} ({others})")
        plan.params[param] = source
    for p in params:
        if p.name in plan.params:
            continue
        required = p.default is inspect.Parameter.empty
        if p.name in arrays:
            plan.params[p.name] = p.name
        elif is_lengths_name(p.name) and (has_lengths or required):
            plan.params[p.name] = LENGTHS
            if not has_lengths:
                plan.full_lengths = True
                looks = [name for name, array in sorted(arrays.items()) if _could_be_lengths(array, sample)]
                hint = (f"; if {looks[0]!r} holds them, pass --forward-arg {p.name}={looks[0]}" if looks else "")
                plan.notes.append(f"{cls}.forward takes {p.name!r}; the input has no 'lengths', so every "
                                  f"sequence was given its full length{hint}")
        elif required:
            raise InputError(
                f"{cls}.forward needs {p.name!r}, which lstmviz cannot fill: save the input as an .npz with an "
                f"array named {p.name!r} next to it, or map one with --forward-arg {p.name}=ARRAY"
            )
    if sample.lengths is not None and LENGTHS not in plan.params.values() and int(np.min(sample.lengths)) < sample.steps:
        plan.notes.append(
            f"{cls}.forward takes no lengths, so it ran over the padding of the shorter sequences "
            f"(lengths {np.asarray(sample.lengths).tolist()}); name a parameter with --forward-arg PARAM=lengths"
        )
    return plan


def _could_be_lengths(array: np.ndarray, sample: SampleInput) -> bool:
    """One integer per sequence, each in 1..steps: an .npz array that may hold the lengths (`lens`)."""
    values = np.asarray(array)
    return (values.shape == (sample.batch,) and np.issubdtype(values.dtype, np.integer)
            and bool(((values >= 1) & (values <= sample.steps)).all()))


def forward_kwargs(plan: ForwardPlan, sample: SampleInput, *, device: str = "cpu", dtype: torch.dtype | None = None,
                   first_steps: int | None = None) -> dict[str, torch.Tensor]:
    """The plan's arguments as tensors: lengths int64 on the CPU (as `pack_padded_sequence` wants
    them), other arrays as stored on `device` (floating ones in the model's `dtype`).

    `first_steps`: the arguments for batch element 0 cut to its first `first_steps` steps (the
    saliency pass): lengths become `[first_steps]`; an array whose first axis is the batch keeps
    row 0, and its second axis is cut when it is as long as the input.
    """
    batch, steps = sample.batch, sample.steps
    kwargs: dict[str, torch.Tensor] = {}
    for param, source in plan.params.items():
        if source == LENGTHS:
            lengths = (np.full(batch, steps, dtype=np.int64) if sample.lengths is None
                       else np.asarray(sample.lengths, dtype=np.int64))
            if first_steps is not None:
                lengths = np.asarray([first_steps], dtype=np.int64)
            kwargs[param] = torch.as_tensor(lengths, dtype=torch.int64)
            continue
        array = np.asarray(sample.arrays[source])
        if first_steps is not None and array.ndim >= 1 and array.shape[0] == batch:
            array = array[:1]
            if array.ndim >= 2 and array.shape[1] == steps:
                array = array[:, :first_steps]
        tensor = torch.as_tensor(np.ascontiguousarray(array), device=device)
        if tensor.is_floating_point() and dtype is not None:
            tensor = tensor.to(dtype)
        kwargs[param] = tensor
    return kwargs
