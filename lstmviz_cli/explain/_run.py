"""One traced run of a model whose wiring the decompositions need, found and verified, not assumed.

A decomposition over input steps is exact only for models of the shape lstmviz rebuilds: an
optional nn.Embedding -> one nn.LSTM/nn.GRU stack -> an nn.Linear head reading the last step or
every step. `traced_run` runs the exact tracer once (batch element 0) with hooks that capture what
the recurrent stack read, its initial state and the head, and checks that wiring by equality:
the stack's input is the embedding of the tokens (or the features themselves), the head's input
is the stack's output, and the model's output is the head's output. Anything else is refused.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence

from lstmviz_cli.errors import ExplainError
from lstmviz_cli.explain.attribution import target_label
from lstmviz_cli.explain.saliency import RecurrentStack, call_batch_major
from lstmviz_cli.loading.modules import CELL_TYPES, LAYER_TYPES
from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.tracing.recorder import module_name
from lstmviz_cli.tracing.records import LayerTrace, Trace
from lstmviz_cli.tracing.seeding import seeded
from lstmviz_cli.tracing.tracer import trace


@dataclass(frozen=True)
class TracedRun:
    """What a decomposition reads: the exact trace of batch element 0 and the verified wiring.

    `x` is the stack's input (time, input_size); `h0`/`c0` its initial state per layer and
    direction (layers * directions, units), zeros when the model passed none; `head_weight`
    (outputs, width) and `head_bias` (outputs,) the Linear head; `output` the model's real output
    for element 0, (time, outputs) when the head reads every step, else (outputs,).
    """

    trace: Trace
    module: str
    config: RecurrentConfig
    x: np.ndarray
    h0: np.ndarray
    c0: np.ndarray | None
    head_weight: np.ndarray
    head_bias: np.ndarray
    head_on: str  # "last" | "all"
    output: np.ndarray

    @property
    def steps(self) -> int:
        return int(self.x.shape[0])

    def layer(self, layer: int, direction: str) -> LayerTrace:
        return self.trace.layer(f"{self.module}/l{layer}/{direction}")

    def cell0(self, k: int) -> np.ndarray:
        """The initial cell state of layer-direction `k` (an LSTM's; ExplainError for a GRU, which has none)."""
        if self.c0 is None:
            raise ExplainError(f"the {self.config.family.upper()} stack has no cell state")
        state: np.ndarray = self.c0[k]
        return state

    def output_vector(self, step: int) -> np.ndarray:
        """The model's output vector that a prediction at `step` reads."""
        return self.output if self.head_on == "last" else self.output[step]


def model_input(model: nn.Module, values: np.ndarray) -> torch.Tensor:
    """Batch element 0 of `values` as a tensor for the model (int64 token ids or float features).

    `values`: int (batch, time) token ids or float (batch, time, features), batch-major like
    `SampleInput.values`; so is the result (`call_model` transposes for time-major models).
    """
    array = np.asarray(values)[:1]
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    if np.issubdtype(array.dtype, np.integer):
        x = torch.as_tensor(array, dtype=torch.int64, device=device)
    else:
        dtype = param.dtype if param is not None and param.is_floating_point() else torch.float32
        x = torch.as_tensor(np.asarray(array, dtype=np.float32), device=device).to(dtype)
    return x


def call_model(model: nn.Module, x: torch.Tensor, batch_first: bool) -> torch.Tensor:
    """The model's first output tensor on batch-major `x`, exactly as gradient saliency calls it.

    Every call starts from the traced run's random state (`tracing.seeding`), so a model that draws
    random numbers gives what the trace shows. PyTorch's notes that are expected here (a projected
    LSTM runs without oneDNN, a layer's weights are not one flat buffer) are not shown, as in the tracer.
    """
    with warnings.catch_warnings(), seeded():
        warnings.filterwarnings("ignore", message=".*projections is not supported with oneDNN.*")
        warnings.filterwarnings("ignore", message=".*contiguous chunk of memory.*")
        return call_batch_major(model, x, batch_first)


def find_stack(model: nn.Module) -> tuple[str, RecurrentStack]:
    """The model's one nn.LSTM / nn.GRU / nn.RNN, with its trace name; ExplainError otherwise."""
    stacks: list[tuple[str, RecurrentStack]] = [
        (name, m) for name, m in model.named_modules() if isinstance(m, LAYER_TYPES)
    ]
    if any(isinstance(m, CELL_TYPES) for m in model.modules()):
        raise ExplainError("the model steps a recurrent cell in its own loop; these explanations "
                           "need a stock nn.LSTM / nn.GRU / nn.RNN stack")
    if len(stacks) != 1:
        raise ExplainError(f"the model has {len(stacks)} recurrent stacks; these explanations need "
                           "exactly one nn.LSTM / nn.GRU / nn.RNN")
    name, module = stacks[0]
    return module_name(name, module), module


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


def traced_run(model: nn.Module, values: np.ndarray, *, batch_first: bool = True) -> TracedRun:
    """Trace batch element 0 exactly and capture the wiring a decomposition needs.

    Raises ExplainError when the model is not Embedding? -> one LSTM/GRU stack -> Linear head
    (checked on the real run, by equality of the tensors passed between the modules), and the
    tracer's own errors (VerificationError, ModelError) when the trace itself fails.
    """
    name, stack = find_stack(model)
    if isinstance(stack, nn.RNN):
        raise ExplainError("attribution over input steps supports nn.LSTM and nn.GRU, not nn.RNN")
    x = model_input(model, values)
    seen: dict[str, Any] = {}
    linears: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]] = []
    embeddings: list[torch.Tensor] = []

    def stack_pre(_m: nn.Module, args: tuple[object, ...], kwargs: dict[str, object]) -> None:
        seen.setdefault("input", args[0] if args else kwargs.get("input"))
        seen.setdefault("hx", args[1] if len(args) > 1 else kwargs.get("hx"))
        seen["calls"] = seen.get("calls", 0) + 1

    def stack_post(_m: nn.Module, _args: tuple[object, ...], output: tuple[torch.Tensor, object]) -> None:
        seen.setdefault("output", output[0])

    def linear_post(m: nn.Linear, args: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
        linears.append((m, args[0].detach().clone(), output.detach().clone()))

    def embedding_post(_m: nn.Module, _args: tuple[object, ...], output: torch.Tensor) -> None:
        embeddings.append(output.detach().clone())

    handles = [stack.register_forward_pre_hook(stack_pre, with_kwargs=True),
               stack.register_forward_hook(stack_post)]
    for module in model.modules():
        if isinstance(module, nn.Linear):
            handles.append(module.register_forward_hook(linear_post))
        elif isinstance(module, nn.Embedding):
            handles.append(module.register_forward_hook(embedding_post))
    try:
        with seeded():  # the traced run's random state (a model that draws random numbers)
            traced = trace(model, x if batch_first or x.dim() < 2 else x.transpose(0, 1))
    finally:
        for handle in handles:
            handle.remove()
    if seen.get("calls") != 1:
        raise ExplainError(f"the recurrent stack {name!r} ran {seen.get('calls', 0)} times in one "
                           "forward; attribution needs it to read the sequence once")
    stack_in, stack_out = seen["input"], seen["output"]
    if isinstance(stack_in, PackedSequence) or isinstance(stack_out, PackedSequence):
        raise ExplainError("the model packs its sequences; attribution needs one unpacked sequence")
    if stack_in.dim() != 3:
        raise ExplainError("the recurrent stack read an unbatched input; attribution needs (batch, time, features)")
    _check_input_per_step(x if batch_first else x.transpose(0, 1), stack_in, embeddings)
    if not stack.batch_first:
        stack_in, stack_out = stack_in.transpose(0, 1), stack_out.transpose(0, 1)
    weight, bias, head_on, out = _find_head(model, linears, stack_out, traced)
    cfg = traced.modules[name]
    dirs = 2 if cfg.bidirectional else 1
    h0 = np.zeros((cfg.num_layers * dirs, cfg.output_size))
    c0 = np.zeros((cfg.num_layers * dirs, cfg.hidden_size)) if cfg.family == "lstm" else None
    hx = seen["hx"]
    if hx is not None:
        h_init, c_init = hx if cfg.family == "lstm" else (hx, None)
        h0 = _to_numpy(h_init)[:, 0] if h_init.dim() == 3 else _to_numpy(h_init)
        if c_init is not None:
            c0 = _to_numpy(c_init)[:, 0] if c_init.dim() == 3 else _to_numpy(c_init)
    return TracedRun(trace=traced, module=name, config=cfg, x=_to_numpy(stack_in[0]), h0=h0, c0=c0,
                     head_weight=weight, head_bias=bias, head_on=head_on, output=out)


def _check_input_per_step(x: torch.Tensor, stack_in: torch.Tensor, embeddings: list[torch.Tensor]) -> None:
    """The stack's input at step t must come from input step t alone: the embedding row or the features.

    x and stack_in in the layouts the model and the stack were called with.
    """
    if x.dtype == torch.int64:
        if not any(e.shape == stack_in.shape and torch.equal(e, stack_in) for e in embeddings):
            raise ExplainError("the recurrent stack's input is not the embedding of the tokens; "
                               "attribution needs Embedding -> recurrent stack, step by step")
    elif x.shape != stack_in.shape or not torch.equal(x.to(stack_in.dtype), stack_in):
        raise ExplainError("the recurrent stack's input is not the model's input features; "
                           "attribution needs the features to reach the stack unchanged")


def _find_head(model: nn.Module, linears: list[tuple[nn.Linear, torch.Tensor, torch.Tensor]], stack_out: torch.Tensor,
               traced: Trace) -> tuple[np.ndarray, np.ndarray, str, np.ndarray]:
    """The nn.Linear that maps the stack's output to the model's output, and what it reads."""
    if traced.output is None:
        raise ExplainError("the model returned no tensor to explain")
    model_out = torch.as_tensor(traced.output)
    for module, head_in, head_out in linears:
        if head_in.shape == stack_out.shape and torch.equal(head_in, stack_out):
            head_on = "all"
        elif head_in.shape == stack_out[:, -1].shape and torch.equal(head_in, stack_out[:, -1]):
            head_on = "last"
        else:
            continue
        if head_out.shape != model_out.shape or not torch.equal(head_out.to("cpu", torch.float32), model_out):
            continue
        weight = _to_numpy(module.weight)
        bias = _to_numpy(module.bias) if module.bias is not None else np.zeros(weight.shape[0])
        return weight, bias, head_on, _to_numpy(head_out[0])
    raise ExplainError("the model's output is not an nn.Linear applied to the recurrent stack's "
                       "output (at the last step or every step); attribution needs that wiring")


@dataclass(frozen=True)
class Target:
    """Which output a decomposition explains: index, label, the step it is read at, its real value."""

    index: int
    label: str
    step: int
    value: float


def resolve_target(run: TracedRun, *, target: int | None, step: int | None,
                   output_labels: Sequence[str] | None = None) -> Target:
    """The output to explain: `target` (default the largest output, the predicted class) at `step`.

    `step` defaults to the last step and must be the last one when the head reads only it.
    Raises ExplainError for a step or target outside the output.
    """
    last = run.steps - 1
    if step is None:
        step = last
    if not 0 <= step <= last:
        raise ExplainError(f"step {step} is outside the sample's {run.steps} steps")
    if run.head_on == "last" and step != last:
        raise ExplainError(f"the model's head reads only the last step ({last}); step {step} has no output")
    vector = run.output_vector(step)
    if target is None:
        target = int(np.argmax(vector))
    if not 0 <= target < vector.shape[0]:
        raise ExplainError(f"target {target} is outside the model's {vector.shape[0]} outputs")
    return Target(index=target, label=target_label(target, output_labels), step=step,
                  value=float(vector[target]))


def output_at(out: torch.Tensor, step: int | None, steps: int) -> tuple[torch.Tensor, int]:
    """Element 0's output vector read at `step` (default the last), and that step.

    A per-step output (batch, time, ...) is read at `step`; an output without a time axis is read
    after the last step, and any other `step` is an ExplainError.
    """
    if out.dim() >= 3:
        at = steps - 1 if step is None else int(step)
        if not 0 <= at < out.shape[1]:
            raise ExplainError(f"step {at} is outside the output's {out.shape[1]} steps")
        return out[0, at].reshape(-1), at
    if step is not None and int(step) != steps - 1:
        raise ExplainError(f"the model's output has no time axis; it is read after the last step ({steps - 1})")
    return (out[0].reshape(-1) if out.dim() == 2 else out.reshape(-1)), steps - 1


def target_value(vector: torch.Tensor, target: int, quantity: str) -> float:
    """The watched quantity of one output vector: the target's log-probability, or its value."""
    v = vector.double()
    if quantity == "value":
        return float(v[target])
    return float(torch.log_softmax(v, dim=0)[target])
