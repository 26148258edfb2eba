"""One hooked forward pass that records every gate of every recurrent layer into a `Trace`.

How it stays about as fast as the forward itself: while tracing, each nn.LSTM/GRU/RNN instance runs
its layers one at a time through the same fused op its own forward uses (so the intermediate layers'
h sequences come out of the kernel, at no extra cost), and returns exactly what its forward returns
(`tracing.stockforward`, `tracing.kernels`). Gates are then rebuilt from [x_t, h_{t-1}] in batched
matmuls (`tracing.gates`). Cells are recorded by forward hooks, one step per call (`tracing.hooks`).
Everything is undone in `finally`: the per-instance forward, every hook handle, and the model's
training mode. `trace_sample` (`tracing.sample`) feeds a loaded model its sample.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pad_packed_sequence

from lstmviz_cli.errors import ModelError, VerificationError
from lstmviz_cli.loading.modules import recurrent_config
from lstmviz_cli.tracing import gates as _gates
from lstmviz_cli.tracing.hooks import finish_cell, hooked
from lstmviz_cli.tracing.kernels import KERNELS
from lstmviz_cli.tracing.precision import full_float32
from lstmviz_cli.tracing.recorder import Recorder, Segment
from lstmviz_cli.tracing.records import SERIES, SERIES_NAMES, LayerTrace, Trace, TraceMeta
from lstmviz_cli.tracing.verify import GATE_TOLERANCE, VerifyPolicy


def _first_tensor(value: object, total_length: int | None = None) -> torch.Tensor | None:
    """The first tensor in a (nested) value; a PackedSequence padded batch-first (to `total_length`)."""
    if isinstance(value, PackedSequence):
        longest = int(value.batch_sizes.shape[0])
        total = total_length if total_length is not None and total_length >= longest else None
        return pad_packed_sequence(value, batch_first=True, total_length=total)[0]
    if isinstance(value, torch.Tensor):
        return value
    if isinstance(value, (tuple, list)):
        for item in value:
            found = _first_tensor(item, total_length)
            if found is not None:
                return found
    if isinstance(value, dict):
        return _first_tensor(list(value.values()), total_length)
    return None


def first_output(value: object, steps: int, total_length: int | None = None) -> tuple[torch.Tensor | None, bool]:
    """The model's first output tensor, and whether it was stacked from a list of per-step tensors.

    A Python list of exactly `steps` tensors of one shape (d2l's `outputs.append(H)` per step) is
    stacked along a new leading time axis; anything else is `_first_tensor` (a PackedSequence is
    padded to `total_length`).
    """
    while isinstance(value, (tuple, list, dict)) and value:
        if isinstance(value, list) and len(value) == steps > 1 and all(
                isinstance(v, torch.Tensor) and v.shape == value[0].shape for v in value):
            return torch.stack(value), True
        value = next(iter(value.values())) if isinstance(value, dict) else value[0]
    return _first_tensor(value, total_length), False


def _device_of(model: nn.Module, inputs: Sequence[object]) -> str:
    for p in model.parameters():
        return str(p.device)
    first = _first_tensor(list(inputs))
    return str(first.device) if first is not None else "cpu"


def _concat(segments: list[Segment]) -> tuple[dict[str, np.ndarray], float | None]:
    if len(segments) == 1:
        return segments[0].series, segments[0].error
    names = segments[0].series.keys()
    batches = {s.series[n].shape[0] for s in segments for n in names}
    if len(batches) != 1:
        raise ModelError("a recurrent module was called several times with different batch "
                         f"sizes {sorted(batches)}; lstmviz concatenates calls along time")
    series = {n: np.concatenate([s.series[n] for s in segments], axis=1) for n in names}
    errors = [s.error for s in segments if s.error is not None]
    return series, (max(errors) if errors else None)


def trace(model: nn.Module, *inputs: object, verify: bool | VerifyPolicy = True, tolerance: float = GATE_TOLERANCE,
          store_dtype: str = "float32", keep_series: Iterable[str] | None = None,
          keep_units: Sequence[int] | None = None, chunk_steps: int | None = None,
          total_length: int | None = None, kernel: str = "auto", **kwargs: object) -> Trace:
    """Run `model(*inputs, **kwargs)` once in eval mode and record every recurrent gate.

    Verification: every layer's rebuilt gates must reproduce its own outputs to `tolerance` (max
    |recorded - real|, default `tracing.verify.GATE_TOLERANCE`), else VerificationError; the errors
    are `verify_error` and `meta.verify_errors`. `verify=False` skips it (fastest); a
    `VerifyPolicy` chooses what is computed, refused and suggested (the CLI's --no-verify, `lstmviz
    check --max-verify-error`). A layer whose series turn NaN within its valid steps is a ModelError
    naming the layer and the first step, with or without verification.

    Memory options for very long sequences (the arrays are what a trace costs):
    `store_dtype="float16"` halves them; `keep_series=("f", "c", "h")` keeps only those series;
    `keep_units=[0, 5, 9]` keeps only those units. Verification always runs on full precision.
    `chunk_steps` bounds the gate workspace (time steps per batched matmul; default ~32 MB).
    `kernel` chooses the route stock layers run through (`tracing.kernels`): "auto" (oneDNN's
    workspace where it applies, else the fused op), "fused" (always the fused op, gates rebuilt), or
    "onednn-workspace"; `meta.kernels` says which ran each layer.
    A module called several times (a decoder loop) has its calls concatenated along time.

    Packed sequences are recorded as long as the padded input they came from, NaN past each
    length: `total_length` steps, or else the other of the first two sizes of the first input
    tensor when one of them is the packed batch (a model that packs its padded (B, T) or (T, B)
    input inside); a PackedSequence passed in directly is as long as its longest sequence.
    """
    spec = _gates.StoreSpec(
        dtype=np.dtype(store_dtype),
        series=None if keep_series is None else frozenset(keep_series),
        units=_gates.select_units(keep_units),
    )
    if spec.dtype not in (np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.float64)):
        raise ValueError(f"store_dtype must be float32, float16 or float64, not {store_dtype!r}")
    policy = VerifyPolicy.of(verify)
    if not isinstance(verify, VerifyPolicy) and tolerance != GATE_TOLERANCE:
        policy = VerifyPolicy(compute=policy.compute, tolerance=float(tolerance), refuse=policy.refuse)
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, not {kernel!r}")
    recorder = Recorder(spec=spec, verify=policy.compute, chunk=chunk_steps, total_length=total_length,
                        kernel=kernel)
    first_input = next((v for v in inputs if isinstance(v, torch.Tensor)), None)
    if first_input is not None:
        recorder.input_dims = tuple(int(d) for d in first_input.shape[:2])
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad(), full_float32(), warnings.catch_warnings(), hooked(model, recorder) as found:
            # cuDNN warns that one layer's weights are not one flat buffer; the copy is intended.
            warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
            # Projected LSTMs run PyTorch's own kernel instead of oneDNN: expected, not news.
            warnings.filterwarnings("ignore", message=".*projections is not supported with oneDNN.*")
            if not found:
                raise ModelError(f"{type(model).__name__} has no nn.LSTM, nn.GRU, nn.RNN or "
                                 "cell module to trace")
            output = model(*inputs, **kwargs)
            for name, calls in recorder.cells.items():
                cell = found[name]
                assert isinstance(cell, nn.RNNCellBase)
                finish_cell(cell, name, calls, recorder)
    finally:
        model.train(was_training)
    return _assemble(model, inputs, found, recorder, output, policy)


def _assemble(model: nn.Module, inputs: Sequence[object], found: dict[str, nn.Module],
              recorder: Recorder, output: object, policy: VerifyPolicy) -> Trace:
    layers: list[LayerTrace] = []
    lengths: dict[str, np.ndarray] = {}
    errors: dict[str, float | None] = {}
    routes: dict[str, str] = {}
    modules = {name: recurrent_config(module) for name, module in found.items()}
    for (name, layer, direction), segments in recorder.segments.items():
        series, err = _concat(segments)
        order = [s for s in SERIES[modules[name].family] if s in series]
        if "m" in series:
            order.insert(order.index("h"), "m") if "h" in order else order.append("m")
        layers.append(LayerTrace(module=name, layer=layer, direction=direction,
                                 config=modules[name], series={s: series[s] for s in order},
                                 weights=segments[0].weights))
        errors[f"{name}/l{layer}/{direction}"] = err
        route = segments[0].route
        if route is not None:
            routes[f"{name}/l{layer}/{direction}"] = route
        seg_lengths = segments[0].lengths
        steps = next(iter(series.values())).shape[1] if series else 0
        if len(segments) == 1 and seg_lengths is not None and (
                len(set(seg_lengths.tolist())) > 1 or int(seg_lengths.min()) < steps):
            lengths[name] = seg_lengths
    layers.sort(key=lambda lt: (list(found).index(lt.module), lt.layer, lt.direction != "fwd"))
    traced = {lt.module for lt in layers}
    first = _first_tensor(output, recorder.total_length)
    meta = TraceMeta(
        path=recorder.path,
        device=_device_of(model, inputs),
        store_dtype=recorder.spec.dtype.name,
        not_called=sorted(set(found) - traced),
        kept_series=None if recorder.spec.series is None else sorted(recorder.spec.series),
        kept_units=None if recorder.spec.units is None else recorder.spec.units.tolist(),
        kernels=routes or None,
    )
    for traced_layer in layers:
        refuse_nan(traced_layer, lengths.get(traced_layer.module))
    verify_error = None
    if policy.compute:
        meta.verify_errors = errors
        meta.verify_tolerance = policy.tolerance
        known = [e for e in errors.values() if e is not None]
        verify_error = float(max(known)) if known else 0.0
        if policy.refuse and not verify_error <= policy.tolerance:  # NaN fails too
            worst = max(errors, key=lambda k: _severity(errors[k]))
            raise VerificationError(policy.refusal(
                f"the recorded gates of {worst} reproduce the module's outputs only to "
                f"{verify_error:.2e} (tolerance {policy.tolerance_text})"), measured=verify_error)
    return Trace(layers=layers, modules=modules, lengths=lengths, verify_error=verify_error,
                 output=None if first is None else first.detach().to("cpu", torch.float32).numpy(),
                 meta=meta)


def _severity(error: float | None) -> float:
    """How bad a layer's error is, for naming the worst: NaN worst of all, not compared least."""
    if error is None:
        return -1.0
    return math.inf if math.isnan(error) else error


def refuse_nan(layer: LayerTrace, lengths: np.ndarray | None = None) -> None:
    """Raise ModelError when `layer` is NaN within its valid steps (before each packed length).

    NaN is padding only past a packed sequence's length; anywhere else the model computed it (a
    non-finite value fed to the layer, an overflow), and no figure can be drawn from it. A NaN in
    any gate reaches h (through c for an LSTM), so the output series is checked: one float32 sum
    per sequence, the step searched only when it is NaN.
    """
    name = next((n for n in ("h", "m", "c") if n in layer.series), None)
    for key in [name] if name is not None else list(layer.series):
        array = layer.series[key]
        for sequence in range(array.shape[0]):
            valid = array[sequence, : int(lengths[sequence]) if lengths is not None else array.shape[1]]
            if not np.isnan(valid.sum()):
                continue
            step = int(np.argmax(np.isnan(valid).any(axis=1)))
            where = f"step {step}" + (f" of sequence {sequence}" if sequence else "")
            raise ModelError(
                f"{layer.prefix} is NaN from {where} on (its {SERIES_NAMES.get(key, key)}): the model feeds it "
                "non-finite values there, or computes them; lstmviz cannot show a trace of NaN"
            )
