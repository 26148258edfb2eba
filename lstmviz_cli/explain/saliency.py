"""Gradient saliency over time: ‖∂y/∂x_t‖ of one output for every input step, and gradient norms per gate.

Runs the model (torch); results are NumPy records of `analysis.records`. A sequence too long for the
memory budget gets exact gradients over a window of the last steps before the target.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import cast

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from lstmviz_cli.analysis.records import SaliencyResult
from lstmviz_cli.families import FAMILIES
from lstmviz_cli.glyphs import display_token
from lstmviz_cli.loading.modules import LAYER_TYPES
from lstmviz_cli.loading.records import LoadedModel
from lstmviz_cli.tracing import sample
from lstmviz_cli.tracing.layout import locate_output_axes, to_batch_major
from lstmviz_cli.tracing.tracer import first_output

# Autograd keeps every step's activations: beyond this many bytes, only a window of the last steps
# before the target gets gradients (exact for those steps; see `_gradient_window`).
SALIENCY_BUDGET = 1 << 29  # 512 MiB: with the outputs and the float16 trace, T = 1e5 x 1024 stays under 4 GB
# Bytes autograd holds per step, per (series x unit) of a recurrent layer; measured ~8 for an LSTM
# (hidden 1024, T = 10,000: +0.55 GB), with margin.
_BYTES_PER_VALUE = 12
HEAD_CHUNK = 4096  # steps per no-grad call before a window (bounds the layer's input projection)


@contextmanager
def _gradients_allowed() -> Iterator[None]:
    """Autograd on, and cuDNN's RNN off (its backward refuses eval mode); the model's mode is untouched."""
    with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
        yield


RecurrentStack = nn.LSTM | nn.GRU | nn.RNN  # what isinstance(m, loading.modules.LAYER_TYPES) narrows to


def call_batch_major(model: nn.Module, x: torch.Tensor, batch_first: bool,
                     kwargs: Mapping[str, object] | None = None) -> torch.Tensor:
    """Run the model on batch-major input the way tracing.trace_sample does (time-major when asked).

    The output comes back batch-major, (batch, time, ...) when it has a time axis, read exactly as
    the tracer reads the model's output (`tracing.layout.locate_output_axes`).
    """
    call = x if batch_first or x.dim() < 2 else x.transpose(0, 1)
    batch, steps = int(x.shape[0]), int(x.shape[1]) if x.dim() >= 2 else 1
    out, stacked = first_output(model(call, **(kwargs or {})), steps, steps)
    if out is None:
        raise TypeError("the model returned NoneType, not a tensor")
    axes = locate_output_axes(out.shape, batch=batch, steps=steps,
                              batch_first=(batch_first or x.dim() < 2) and not stacked)
    major: torch.Tensor = to_batch_major(out, axes, batch=batch, steps=steps)
    return major


def step_norms(grad: torch.Tensor, steps: int, batch_first: bool) -> np.ndarray:
    """‖g_t‖ per step of batch element 0 of a gradient laid out like the model's own input.

    An embedding called on the model's (time, batch) input returns (time, batch, E); the time
    axis is found as for outputs, so the norms follow the model's steps, not its batch.
    """
    if grad.dim() < 2:
        return _numpy(grad.reshape(1, -1).norm(dim=1))
    axes = locate_output_axes(grad.shape, batch=1, steps=steps, batch_first=batch_first)
    if axes.time is None:  # one vector for the whole sequence: no per-step values to give
        raise ValueError(f"the input's gradient has shape {tuple(grad.shape)}, with no axis of {steps} steps")
    g: torch.Tensor = to_batch_major(grad, axes, batch=1, steps=steps)
    return _numpy(g[0].reshape(g.shape[1], -1).norm(dim=1))


def _numpy(values: torch.Tensor) -> np.ndarray:
    """A tensor as a float64 NumPy array on the CPU, out of autograd."""
    array: np.ndarray = values.detach().cpu().double().numpy()
    return array


def model_batch_first(loaded: LoadedModel) -> bool:
    """The layout the model's forward expects, decided exactly as the tracer decides it."""
    return sample.model_batch_first(loaded)


def first_embedding(model: nn.Module) -> nn.Embedding | None:
    """The model's first nn.Embedding (named_modules() order), if any."""
    for _, module in model.named_modules():
        if isinstance(module, nn.Embedding):
            return module
    return None


def _choose_target(vector: torch.Tensor, kind: str, labels: list[str] | None) -> tuple[torch.Tensor, str]:
    """The scalar y: the predicted output's log-probability (top-k outputs), the value (regression),
    or ‖h‖ ("state": a model without a known head outputs the last recurrent layer's states).

    The log-probability, not the raw logit: it measures what moves the model's confidence in its
    answer, so a step that shifts every logit alike does not count.
    """
    if kind == "values":
        return vector.sum(), "predicted value" if vector.numel() == 1 else "sum of the output values"
    if kind == "state":  # no output head: the model's output is the last recurrent layer's h
        return vector.norm(), "norm ‖h‖ of the last recurrent layer's output (no head: not a prediction)"
    index = int(vector.argmax())
    name = display_token(labels[index]) if labels is not None and index < len(labels) else f"class {index}"
    return torch.log_softmax(vector, dim=0)[index], f"log-probability of the predicted {name!r}"


def saliency_bytes_per_step(model: nn.Module) -> int:
    """What autograd keeps per time step for the model's stock recurrent layers (an estimate)."""
    total = 0
    for module in model.modules():
        if isinstance(module, LAYER_TYPES):
            series = {"LSTM": 4 + 3, "GRU": 3 + 2}.get(type(module).__name__, 3)
            directions = 2 if module.bidirectional else 1
            total += series * module.hidden_size * module.num_layers * directions * _BYTES_PER_VALUE
    return total


def saliency_window(model: nn.Module, steps: int, budget: int = SALIENCY_BUDGET) -> int | None:
    """How many steps up to the target get gradients: None (all of them) when they fit the budget.

    Raises ValueError when they do not fit and the model cannot be run in two pieces.
    """
    per_step = saliency_bytes_per_step(model)
    if per_step == 0 or steps * per_step <= budget:
        return None
    window = max(64, budget // per_step)
    if window >= steps:
        return None
    layers = [m for m in model.modules() if isinstance(m, LAYER_TYPES)]
    if any(m.bidirectional for m in layers):
        raise ValueError(
            f"{steps} steps need about {steps * per_step / 2**30:.1f} GiB of gradients, over the "
            f"{budget / 2**30:.1f} GiB budget, and a bidirectional layer reads the future: "
            "no exact window exists; pass a shorter input for saliency"
        )
    return window


@contextmanager
def _gradient_window(model: nn.Module, start: int) -> Iterator[None]:
    """Run each stock recurrent layer in two pieces: steps < `start` without autograd, the rest with it.

    The state at `start` is handed over exactly, so the model's outputs are unchanged and the
    gradients with respect to inputs at steps >= `start` are exact (earlier inputs reach the
    output only through that state, which is not differentiated). Memory is then bounded by the
    window. Only for unidirectional layers, restored in `finally` like the tracer's swap.

    Assumes, like the tracer's step labels, that a layer's time axis is the sample's: a model that
    reverses or resamples time before a recurrent layer would get its window in the wrong place.
    """
    swapped: list[RecurrentStack] = []

    def split(module: RecurrentStack) -> Callable[..., object]:
        # Called on unpacked tensors only past the first test below: the Tensor overload of forward.
        original = cast(Callable[..., tuple[torch.Tensor, object]], module.forward)

        def forward(input: torch.Tensor | PackedSequence, hx: object = None) -> object:
            if isinstance(input, PackedSequence) or input.dim() < 2:
                return original(input, hx)
            axis = 1 if module.batch_first and input.dim() == 3 else 0
            steps = int(input.shape[axis])
            if steps <= start:
                return original(input, hx)
            out: torch.Tensor | None = None
            state = hx
            with torch.no_grad():  # in chunks: the layer projects a whole call's inputs at once
                for first in range(0, start, HEAD_CHUNK):
                    count = min(HEAD_CHUNK, start - first)
                    piece, state = original(input.narrow(axis, first, count), state)
                    if out is None:  # one output tensor, filled in place (no list + cat copy)
                        shape = list(piece.shape)
                        shape[axis] = steps
                        out = piece.new_empty(shape)
                    out.narrow(axis, first, count).copy_(piece)
            tail, state = original(input.narrow(axis, start, steps - start), state)
            assert out is not None  # start > 0 steps ran above
            out.narrow(axis, start, steps - start).copy_(tail)  # autograd records the copy (CopySlices)
            return out, state

        return forward

    try:
        for module in model.modules():
            if isinstance(module, LAYER_TYPES):
                module.forward = split(module)  # type: ignore[assignment]  # an instance attribute, deleted below
                swapped.append(module)
        yield
    finally:
        for module in swapped:
            del module.forward


def compute_saliency(
    model: nn.Module,
    values: np.ndarray,
    *,
    step: int | None = None,
    kind: str = "topk",
    output_labels: list[str] | None = None,
    device: str = "cpu",
    batch_first: bool = True,
    budget: int | None = None,
    forward_kwargs: Mapping[str, object] | None = None,
) -> SaliencyResult:
    """‖∂y/∂x_t‖ for every input step t of batch element 0, with y one output at `step`.

    For token inputs x_t is the embedding's output (captured by a forward hook); for feature
    inputs it is the input itself. `step` picks the time step of a per-step output (default: the
    last); outputs without a time axis are read after the last step. Parameter gradient norms
    come from the same backward pass. The model is neither trained nor changed.

    When every step's gradients would not fit `budget` bytes, only the last steps up to the target
    are differentiated (`saliency_window`); earlier steps get NaN and `window_start` says where.
    `batch_first` is the layout the model is called in; `forward_kwargs` its other arguments (the
    lengths of batch element 0, ...). Steps are the model's own: outputs and the embedding's
    gradient are read along their time axis, wherever the model's layout puts it.
    """
    x = torch.as_tensor(np.asarray(values)[:1], device=device)
    total_steps = int(x.shape[1]) if x.dim() >= 2 else 1
    window = saliency_window(model, total_steps, SALIENCY_BUDGET if budget is None else budget)
    target_step = total_steps - 1 if step is None else min(int(step), total_steps - 1)
    start = 0 if window is None else max(0, target_step - window + 1)
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    captured: list[torch.Tensor] = []
    handle = None
    if x.dtype in (torch.int64, torch.int32, torch.int16, torch.uint8):
        embedding = first_embedding(model)
        if embedding is None:
            raise ValueError("token inputs without an nn.Embedding: no continuous input to differentiate")

        def _capture(_module: nn.Module, _inputs: tuple[object, ...], output: torch.Tensor) -> torch.Tensor:
            # Every call: a model that embeds one step per loop iteration calls it once per step.
            if output.requires_grad:  # keep the graph so the embedding weights get gradients too
                captured.append(output)
                return output
            leaf = output.detach().requires_grad_(True)  # a frozen embedding
            captured.append(leaf)
            return leaf

        handle = embedding.register_forward_hook(_capture)
    else:
        dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
        x = x.to(dtype).requires_grad_(True)
        captured.append(x)
    try:
        windowed = _gradient_window(model, start) if start > 0 else contextlib.nullcontext()
        with _gradients_allowed(), windowed:
            out = call_batch_major(model, x, batch_first, forward_kwargs)
            steps = int(x.shape[1])
            if out.dim() >= 3:
                at = steps - 1 if step is None else int(step)
                if not 0 <= at < out.shape[1]:
                    raise ValueError(f"saliency step {at} is outside the output's {out.shape[1]} steps")
                vector = out[0, at].reshape(-1)
            else:
                at = steps - 1
                vector = out[0].reshape(-1) if out.dim() == 2 else out.reshape(-1)
            y, target = _choose_target(vector, kind, output_labels)
            if not captured:
                raise ValueError("the model never called its embedding")
            wrt = captured + [p for _, p in params]
            grads = torch.autograd.grad(y, wrt, allow_unused=True)
    finally:
        if handle is not None:
            handle.remove()
    per_step = _input_step_norms(captured, grads[: len(captured)], x, total_steps, batch_first)
    grads = grads[len(captured):]
    if start > 0:
        per_step[:start] = np.nan  # not differentiated, not zero
    by_name = {name: grad for (name, _), grad in zip(params, grads, strict=True) if grad is not None}
    norms = {name: float(grad.norm().detach().cpu()) for name, grad in by_name.items()}
    return SaliencyResult(
        step=at,
        target=f"{target} at step {at}" + (f" (gradients through steps {start}–{at} only: memory budget)" if start else ""),
        values=per_step, param_norms=norms,
        gate_norms=_gate_norms(model, by_name), window_start=start,
    )


def _input_step_norms(captured: list[torch.Tensor], grads: Sequence[torch.Tensor | None], x: torch.Tensor, steps: int,
                      batch_first: bool) -> np.ndarray:
    """‖∂y/∂x_t‖ per step from the gradients of the captured inputs.

    The input itself is batch-major (built here). An embedding called once returns the sample's
    steps in the model's layout (`step_norms`); one called once per step (a loop over the
    sequence) gives one step per call. Other call patterns (a decoder re-embedding its own
    tokens) read the first call, the one that saw the sample.
    """
    if captured[0] is x:
        g = grads[0]
        if g is None:
            return np.zeros(steps)
        return _numpy(g[0].reshape(g.shape[1], -1).norm(dim=1))
    per_call = len(captured) == steps > 1 and all(c.dim() <= 2 and c.reshape(-1, c.shape[-1]).shape[0] == 1
                                                  for c in captured)
    if per_call:
        return np.array([0.0 if g is None else float(g.detach().double().norm().cpu()) for g in grads])
    g = grads[0]
    return np.zeros(steps) if g is None else step_norms(g, steps, batch_first)


def _gate_norms(model: nn.Module, grads: Mapping[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """Per recurrent layer and direction, the gradient norm reaching each gate's parameters.

    PyTorch stacks the gates' rows in W_ih, W_hh and the biases (LSTM i, f, g, o; GRU r, z, n);
    each gate's norm joins its rows of all four.
    """
    result: dict[str, dict[str, float]] = {}
    for name, module in model.named_modules():
        kind = type(module).__name__  # stock nn.LSTM / nn.GRU by name, as before: a subclass may rename its rows
        if kind not in ("LSTM", "GRU") or not isinstance(module, LAYER_TYPES):
            continue
        gates = FAMILIES[kind.lower()].gates
        label = name or type(module).__name__.lower()
        dot = f"{name}." if name else ""
        for layer in range(module.num_layers):
            for suffix, direction in (("", "fwd"), ("_reverse", "bwd"))[: 2 if module.bidirectional else 1]:
                found = [grads.get(f"{dot}{p}_l{layer}{suffix}") for p in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
                pieces = [g for g in found if g is not None]
                if not pieces:
                    continue
                rows = module.hidden_size
                result[f"{label}/l{layer}/{direction}"] = {
                    gate: float(sum(float(g[k * rows : (k + 1) * rows].pow(2).sum()) for g in pieces) ** 0.5)
                    for k, gate in enumerate(gates)
                }
    return result
