"""Gates of hand-written recurrent cells, recorded from their own sigmoid/tanh calls: no code changes.

While the model runs, a `TorchFunctionMode` sees every `torch.sigmoid`, `torch.tanh`, `Tensor.sigmoid`,
`F.sigmoid`, `nn.Sigmoid()`, `torch.special.expit` (and in-place variants) and files each result under
the innermost user-written module that is running and the call site in the user's source. Calls from
one site across time steps form one series, named after the variable the user assigns it to.

A module whose sites repeat (a cell called once per step, or a layer that loops inside) is then
matched to a structure by its arithmetic, not by its names: an LSTM when three sigmoids and a
candidate tanh satisfy c_t = f*c_{t-1} + i*g and h = o*tanh(c) reproduces what the module returned;
a GRU when h_t = z*h_{t-1} + (1-z)*n (either convention) does. Names only break ties and label the
series. The result is the same `LayerTrace` contract as stock layers.

Recording lives in `tracing.cellrecord`, recognising the structure in `tracing.cellfit`; this module
holds the entry points.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

from lstmviz_cli.errors import ModelError, VerificationError
from lstmviz_cli.loading.modules import RECURRENT_TYPES
from lstmviz_cli.tracing.cellfit import CustomCell, analyse_cell
from lstmviz_cli.tracing.cellrecord import (
    Event,
    display_name,
    group_sites,
    recording,
    tensors_in,
)
from lstmviz_cli.tracing.cellsource import Site
from lstmviz_cli.tracing.records import LayerTrace, PathEntry, Trace, TraceMeta
from lstmviz_cli.tracing.tracer import refuse_nan
from lstmviz_cli.tracing.verify import NO_VERIFY_REMEDY, VerifyPolicy


def _first_shape(value: object) -> list[int] | None:
    """The shape of the first tensor in `value` (a tensor, or a tuple/list/dict holding one)."""
    first = next(iter(tensors_in(value)), None)
    return None if first is None else list(first.shape)


def _record_path(model: nn.Module, path: list[PathEntry], leaves: set[str]) -> list[RemovableHandle]:
    """Forward hooks that write every module's first call (name, type, shapes) and call count on `path`,
    as the stock tracer's path hooks do (`hooks._path_hook`); `leaves` gets the names of modules without
    children. `_cell_path` keeps what the architecture diagram draws."""
    index: dict[str, int] = {}

    def hook_for(name: str) -> Callable[[nn.Module, tuple[object, ...], object], None]:
        def hook(module: nn.Module, args: tuple[object, ...], output: object) -> None:
            if name in index:
                path[index[name]]["calls"] += 1
                return
            index[name] = len(path)
            path.append({"name": name, "type": type(module).__name__, "input": _first_shape(args),
                         "output": _first_shape(output), "calls": 1})
            if not any(True for _ in module.children()):
                leaves.add(name)
        return hook

    return [m.register_forward_hook(hook_for(display_name(raw, m))) for raw, m in model.named_modules() if raw]


def _cell_path(path: list[PathEntry], leaves: set[str], cells: list[CustomCell]) -> list[PathEntry]:
    """The architecture's path: the opened cells, and the leaf modules outside them (embedding, head)."""
    names = {cell.module for cell in cells}
    return [entry for entry in path if entry["name"] in names or (
        entry["name"] in leaves and not any(entry["name"].startswith(cell + ".") for cell in names))]


def record_custom_cells(model: nn.Module, *inputs: object, module: str | None = None,
                        architecture: list[PathEntry] | None = None, **kwargs: object
                        ) -> tuple[list[CustomCell], object]:
    """Run `model(*inputs)` once (eval, no grad) and open up hand-written recurrent modules.

    `module` names one module (as in `named_modules()`; the model itself by its class name) to
    open; by default every user-written module whose activation call sites repeat within one
    forward pass (a cell called per step, or a layer looping inside) is opened. Returns the
    cells and the model's output; `architecture`, when given, receives the model's path for the
    architecture diagram (the cells and the leaf modules around them, in first-call order).
    """
    names = {display_name(raw, m): m for raw, m in model.named_modules()}
    if module is not None and module not in names:
        available = ", ".join(n for n, m in names.items() if not isinstance(m, RECURRENT_TYPES)) or "none"
        raise ModelError(f"--module {module!r} is not a module of {type(model).__name__}; its modules: {available}")
    was_training = model.training
    path: list[PathEntry] = []
    leaves: set[str] = set()
    handles = _record_path(model, path, leaves)
    try:
        model.eval()
        with torch.no_grad(), recording(model) as recorder:
            output = model(*inputs, **kwargs)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    by_module: dict[str, list[Event]] = {}
    for event in recorder.events:
        by_module.setdefault(event.module, []).append(event)
    if module is not None:
        inside = [m for m in by_module if m == module or m.startswith(module + ".")]
        if not inside:
            raise ModelError(f"module {module!r} made no sigmoid or tanh call in the forward pass")
        by_module = {module: [e for m in inside for e in by_module[m]]}
    cells: list[CustomCell] = []
    for name in names:  # named_modules() order: stable, parents first
        if name not in by_module:
            continue
        sites, notes = group_sites(by_module[name])
        if len(sites) < 2:
            continue
        calls = recorder.calls.get(name, [])
        steps = sites[0].values.shape[1]
        style = "cell" if len(calls) == steps else "loop"
        cell = CustomCell(module=name, class_name=type(names[name]).__name__, style=style,
                          family=None, sites=sites, notes=notes)
        first_in = calls[0][0][0] if calls and calls[0][0] else None
        analyse_cell(cell, calls, int(first_in.shape[-1]) if first_in is not None and first_in.dim() else 0)
        cells.append(cell)
    if architecture is not None:
        architecture.extend(_cell_path(path, leaves, cells))
    return cells, output


def trace_custom_cells(model: nn.Module, *inputs: object, module: str | None = None,
                       verify: bool | VerifyPolicy = True, **kwargs: object) -> list[LayerTrace]:
    """The LayerTraces of every recognised hand-written LSTM/GRU cell (see `trace_custom`)."""
    return trace_custom(model, *inputs, module=module, verify=verify, **kwargs).layers


def trace_custom(model: nn.Module, *inputs: object, module: str | None = None, verify: bool | VerifyPolicy = True,
                 **kwargs: object) -> Trace:
    """A complete `Trace` of the model's hand-written cells, shaped like the stock tracer's.

    `meta.custom_cells[module]` (a `CellInfo`) holds, per cell, the user's name and source line of
    each standard series (e.g. {"f": "forget_gate"}), how the mapping was decided and any notes;
    `meta.series_names[prefix]` repeats the names per LayerTrace prefix for headings.
    Raises ModelError when nothing recurrent was found, or a recognised cell's series are NaN, and
    VerificationError (when `verify`'s policy refuses) when a cell's equations could not be checked
    or miss what the module returned by more than its tolerance (`tracing.verify.GATE_TOLERANCE`).
    """
    policy = VerifyPolicy.of(verify)
    architecture: list[PathEntry] = []
    cells, output = record_custom_cells(model, *inputs, module=module, architecture=architecture, **kwargs)
    layers = [c.layer for c in cells if c.layer is not None]
    if not layers:
        detail = "; ".join(f"{c.module}: {c.notes[-1]}" for c in cells if c.notes) or \
            "no module calls sigmoid/tanh repeatedly in one forward pass"
        raise ModelError(f"no hand-written LSTM or GRU cell found in {type(model).__name__} ({detail})")
    for layer in layers:
        refuse_nan(layer)
    errors = {c.layer.prefix: c.verify_error for c in cells if c.layer is not None}
    known = [e for e in errors.values() if e is not None]
    verify_error = max(known) if known else None
    if policy.refuse:
        for cell in cells:
            if cell.layer is None or cell.verify_error is not None:
                continue
            if cell.mapping == "names":  # not lstmviz's failure: a model whose arithmetic it cannot check
                what = (f"{cell.layer.prefix}: the LSTM equations (c_t = f·c_(t−1) + i·g, h_t = o·tanh(c_t)) do "
                        "not hold on its sigmoid/tanh calls, so its gates are named from the source only, unverified")
                # A looser tolerance would not help (`check`): only --no-verify shows it.
                raise ModelError(policy.refusal(what) if policy.remedy == NO_VERIFY_REMEDY else what)
            raise VerificationError(policy.refusal(
                f"{cell.layer.prefix}: the module returns no hidden state lstmviz can compare with"))
        if verify_error is not None and not verify_error <= policy.tolerance:
            worst = max(errors, key=lambda p: errors[p] or 0.0)
            raise VerificationError(policy.refusal(
                f"the recorded gates of {worst} reproduce the module's returned hidden state only to "
                f"{verify_error:.2e} (tolerance {policy.tolerance_text})"), measured=verify_error)
    first = next(iter(tensors_in(output)), None)
    meta = TraceMeta(
        custom_cells={c.module: c.to_info() for c in cells},
        series_names={c.layer.prefix: c.names for c in cells if c.layer is not None},
        notes=[f"{c.module}: {note}" for c in cells if c.layer is not None for note in c.notes],
        verify_errors=errors,
        verify_tolerance=policy.tolerance,
        device=str(next((p.device for p in model.parameters()), "cpu")),
        path=architecture,
    )
    return Trace(layers=layers, modules={layer.module: layer.config for layer in layers},
                 verify_error=verify_error,
                 output=None if first is None else first.float().cpu().numpy(), meta=meta)


def describe_site(site: Site) -> str:
    """`file.py:42 in forward`, for messages and the report."""
    return f"{os.path.basename(site.filename)}:{site.lineno} in {site.function}"
