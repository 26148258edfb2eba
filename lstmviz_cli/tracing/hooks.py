"""Hooks as a context manager: per-instance forwards of stock layers, forward hooks of cells and of the path.

Everything is undone in `finally`: the per-instance forward, every hook handle.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence
from torch.utils.hooks import RemovableHandle

from lstmviz_cli.errors import ModelError
from lstmviz_cli.loading.modules import LAYER_TYPES, RECURRENT_TYPES, recurrent_config
from lstmviz_cli.tracing import gates as _gates
from lstmviz_cli.tracing.recorder import CellCall, Recorder, Segment, module_name
from lstmviz_cli.tracing.stockforward import TracedForward

CellHook = Callable[[nn.Module, tuple[object, ...], dict[str, object], object], None]
PathHook = Callable[[nn.Module, tuple[object, ...], object], None]


def _cell_hook(name: str, recorder: Recorder) -> CellHook:
    """Record one step per call of a stock cell: its input, previous and new states (cloned)."""
    def hook(module: nn.Module, args: tuple[object, ...], kwargs: dict[str, object], output: object) -> None:
        assert isinstance(module, nn.RNNCellBase)
        x = args[0]
        assert isinstance(x, torch.Tensor)
        hx = args[1] if len(args) > 1 else kwargs.get("hx")
        batched = x.dim() == 2
        if not batched:
            x = x.unsqueeze(0)

        def fix(t: torch.Tensor) -> torch.Tensor:
            return (t if batched else t.unsqueeze(0)).detach().clone()

        c_out: torch.Tensor | None = None
        c_prev: torch.Tensor | None = None
        if isinstance(module, nn.LSTMCell):
            assert isinstance(output, tuple)
            h_out, c_out = output
        else:
            assert isinstance(output, torch.Tensor)
            h_out = output
        if hx is None:
            zeros = torch.zeros(x.shape[0], module.hidden_size, dtype=x.dtype, device=x.device)
            h_prev, c_prev = zeros, (zeros if isinstance(module, nn.LSTMCell) else None)
        elif isinstance(hx, tuple):
            h_prev, c_prev = hx
        else:
            assert isinstance(hx, torch.Tensor)
            h_prev = hx
        # Clones: a user loop may update its state tensors in place after the call.
        recorder.cells.setdefault(name, []).append(CellCall(
            x=x.detach().clone(), h_prev=fix(h_prev), c_prev=None if c_prev is None else fix(c_prev),
            h=fix(h_out), c=None if c_out is None else fix(c_out),
        ))

    return hook


def finish_cell(module: nn.RNNCellBase, name: str, calls: list[CellCall], recorder: Recorder) -> None:
    """Gates of a stock cell's calls, one step per call, rebuilt and verified like a layer's."""
    batches = {call.x.shape[0] for call in calls}
    if len(batches) != 1:
        raise ModelError(f"{name}: the cell was called with varying batch sizes {sorted(batches)}; "
                         "lstmviz records one step per call and needs a fixed batch")
    x = torch.stack([c.x for c in calls])
    h = torch.stack([c.h for c in calls])
    h_prev = torch.stack([c.h_prev for c in calls])
    bias_ih = module.bias_ih if module.bias else None
    bias_hh = module.bias_hh if module.bias else None
    w = _gates.Weights(module.weight_ih, module.weight_hh, bias_ih, bias_hh)
    family = recurrent_config(module).family
    d = _gates.Direction(x=x, h=h, h_prev=_gates.explicit_prev(h_prev))
    if family == "lstm":
        d.c_prev = torch.stack([c.c_prev for c in calls if c.c_prev is not None])
        d.c_real = torch.stack([c.c for c in calls if c.c is not None])
        series, err = _gates.trace_lstm(d, w, recorder.spec, verify=recorder.verify, chunk=recorder.chunk)
    elif family == "gru":
        series, err = _gates.trace_gru(d, w, recorder.spec, verify=recorder.verify, chunk=recorder.chunk)
    else:
        series, err = _gates.trace_rnn(d, w, recorder.spec, verify=recorder.verify, chunk=recorder.chunk,
                                       nonlinearity=recurrent_config(module).nonlinearity)
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


def _path_hook(name: str, recorder: Recorder) -> PathHook:
    """Record `name` on the model's path once, at its first call; later calls only count.

    A loop (embedding → cell → head, 2,000 times) interleaves its modules' calls: collapsing by
    name keeps one entry per module, in first-call order, with its call count (the diagram's ×N).
    """
    def hook(module: nn.Module, args: tuple[object, ...], output: object) -> None:
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
    handles: list[RemovableHandle] = []
    replaced: list[tuple[nn.Module, bool, object]] = []
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
            elif isinstance(module, nn.RNNCellBase):
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
