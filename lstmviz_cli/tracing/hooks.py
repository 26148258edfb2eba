"""Hooks as a context manager: per-instance forwards of stock layers, forward hooks of cells and of the path.

Everything is undone in `finally`: the per-instance forward, every hook handle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstmviz_cli.errors import ModelError
from lstmviz_cli.loading.modules import LAYER_TYPES, RECURRENT_TYPES, recurrent_config
from lstmviz_cli.tracing import gates as _gates
from lstmviz_cli.tracing.recorder import CellCall, Recorder, Segment, module_name
from lstmviz_cli.tracing.stockforward import TracedForward


def _cell_hook(name: str, recorder: Recorder):
    def hook(module: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        x = args[0]
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        batched = x.dim() == 2
        if not batched:
            x = x.unsqueeze(0)
        is_lstm = isinstance(module, nn.LSTMCell)
        h_out, c_out = output if is_lstm else (output, None)
        if hx is None:
            zeros = torch.zeros(x.shape[0], module.hidden_size, dtype=x.dtype, device=x.device)
            h_prev, c_prev = zeros, (zeros if is_lstm else None)
        else:
            h_prev, c_prev = hx if is_lstm else (hx, None)
        fix = (lambda t: t.unsqueeze(0)) if not batched else (lambda t: t)  # noqa: E731
        # Clones: a user loop may update its state tensors in place after the call.
        recorder.cells.setdefault(name, []).append(CellCall(
            x=x.detach().clone(), h_prev=fix(h_prev).detach().clone(),
            c_prev=None if c_prev is None else fix(c_prev).detach().clone(),
            h=fix(h_out).detach().clone(), c=None if c_out is None else fix(c_out).detach().clone(),
        ))

    return hook


def finish_cell(module: nn.Module, name: str, calls: list[CellCall], recorder: Recorder) -> None:
    batches = {call.x.shape[0] for call in calls}
    if len(batches) != 1:
        raise ModelError(f"{name}: the cell was called with varying batch sizes {sorted(batches)}; "
                         "lstmviz records one step per call and needs a fixed batch")
    stack = lambda attr: torch.stack([getattr(c, attr) for c in calls])  # noqa: E731
    x, h, h_prev = stack("x"), stack("h"), stack("h_prev")
    w = _gates.Weights(module.weight_ih, module.weight_hh, getattr(module, "bias_ih", None),
                       getattr(module, "bias_hh", None))
    family = recurrent_config(module).family
    d = _gates.Direction(x=x, h=h, h_prev=_gates.explicit_prev(h_prev))
    common = {"verify": recorder.verify, "chunk": recorder.chunk}
    if family == "lstm":
        d.c_prev, d.c_real = stack("c_prev"), stack("c")
        series, err = _gates.trace_lstm(d, w, recorder.spec, **common)
    elif family == "gru":
        series, err = _gates.trace_gru(d, w, recorder.spec, **common)
    else:
        series, err = _gates.trace_rnn(d, w, recorder.spec, nonlinearity=module.nonlinearity,
                                       **common)
    recorder.add((name, 0, "fwd"), Segment(series, err, w.to_numpy()))


def _shape(value: object, recorder: Recorder, batch_first: bool = True) -> list[int] | None:
    """The shape of the first tensor in `value`. A PackedSequence has none: it is shown as the padded
    tensor it was packed from (the input's length, `Recorder.padded_length`), in the layout of the
    module that takes or returns it (`batch_first`: a time-major nn.LSTM's is (T, B, F))."""
    if isinstance(value, PackedSequence):
        sizes = value.batch_sizes
        total = recorder.padded_length(int(sizes[0]), int(sizes.shape[0]))
        return list(pad_packed_sequence(value, batch_first=batch_first, total_length=total)[0].shape)
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    if isinstance(value, (tuple, list)) and value:
        return _shape(value[0], recorder, batch_first)
    if isinstance(value, dict) and value:
        return _shape(next(iter(value.values())), recorder, batch_first)
    return None


def _path_hook(name: str, recorder: Recorder):
    """Record `name` on the model's path once, at its first call; later calls only count.

    A loop (embedding → cell → head, 2,000 times) interleaves its modules' calls: collapsing by
    name keeps one entry per module, in first-call order, with its call count (the diagram's ×N).
    """
    def hook(module: nn.Module, args: tuple, output: Any) -> None:
        index = recorder.path_index.get(name)
        if index is not None:
            recorder.path[index]["calls"] += 1
            return
        recorder.path_index[name] = len(recorder.path)
        batch_first = bool(module.batch_first) if isinstance(module, LAYER_TYPES) else True
        recorder.path.append({"name": name, "type": type(module).__name__,
                              "input": _shape(args, recorder, batch_first),
                              "output": _shape(output, recorder, batch_first), "calls": 1})

    return hook


@contextlib.contextmanager
def hooked(model: nn.Module, recorder: Recorder) -> Iterator[dict[str, nn.Module]]:
    """Install the per-instance forwards and hook handles; remove every one of them on exit."""
    found: dict[str, nn.Module] = {}
    handles = []
    replaced: list[tuple[nn.Module, bool, Any]] = []
    try:
        for raw, module in model.named_modules():
            name = module_name(raw, module)
            recurrent = isinstance(module, RECURRENT_TYPES)
            if recurrent:
                found[name] = module
            if recurrent and isinstance(module, LAYER_TYPES):
                had = "forward" in module.__dict__
                replaced.append((module, had, module.__dict__.get("forward")))
                module.__dict__["forward"] = TracedForward(module, name, recorder)
            elif recurrent:
                handles.append(module.register_forward_hook(_cell_hook(name, recorder),
                                                            with_kwargs=True))
            if recurrent or not any(True for _ in module.children()):
                handles.append(module.register_forward_hook(_path_hook(raw or name, recorder)))
        yield found
    finally:
        for handle in handles:
            handle.remove()
        for module, had, previous in replaced:
            if had:
                module.__dict__["forward"] = previous
            else:
                module.__dict__.pop("forward", None)
