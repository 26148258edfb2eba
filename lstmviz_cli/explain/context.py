"""Context-ablation memory: how the output changes as input older than k steps is made neutral.

Khandelwal, He, Qi & Jurafsky ("Sharp Nearby, Fuzzy Far Away: How Neural Language Models Use
Context", ACL 2018) measure how far back a model reads by perturbing the context beyond a
distance and watching the output. Here the perturbation is "neutral input": the recurrent stack
reads the zero vector at every step more than k - 1 steps before the predicted step s (for token
models the embedding's output is replaced, i.e. a zero embedding). Why zero:

* W_ih 0 = 0: at a neutral step the stack's gates see only their biases and the recurrence, so
  the step adds no input of its own; one rule covers features and tokens alike;
* a pad token would not do: many vocabularies have none, and where there is one its learned
  embedding may carry meaning (an end-of-text marker);
* the sequence keeps its length and positions (truncating the context, Khandelwal et al.'s other
  probe, also moves where a last-step head reads and restarts the state).

The output watched is the log-probability of the class predicted on the full input (the value
itself for a regression), the quantity gradient saliency also differentiates. change(k) =
|y_k - y_full| for k = 0 (every step neutral) .. s + 1 (nothing neutral, change 0). The ablation
horizon is the smallest k from which every change(k') with k' >= k stays within
`ABLATION_TOLERANCE` of the largest change: the model reads about k steps back.

JSON::

    {"step": int, "target": int, "target_label": str, "neutral": "zero input",
     "kept": [k], "change": [|dy| per k], "output": y_full, "reference": max change,
     "horizon": int, "tolerance": float}
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from lstmviz_cli.analysis.evidence import ContextAblation
from lstmviz_cli.errors import ExplainError
from lstmviz_cli.explain._run import call_model, find_stack, model_input, output_at, target_value
from lstmviz_cli.explain.attribution import target_label

ABLATION_TOLERANCE = 0.1  # a change below this share of the largest change counts as none
ABLATION_MAX_POINTS = 512  # context lengths evaluated at most (geometric grid beyond)
_CHUNK_VALUES = 1 << 24  # input values (batch x time x features) per forward call


def ablation_horizon(kept: np.ndarray, change: np.ndarray, tolerance: float = ABLATION_TOLERANCE) -> int:
    """The smallest k from which change stays <= tolerance * max(change); 0 when nothing changes.

    kept: (n,) increasing context lengths; change: (n,) the output change at each.
    """
    change = np.asarray(change, dtype=np.float64)
    reference = float(change.max(initial=0.0))
    if reference <= 0.0:
        return 0
    above = np.flatnonzero(change > tolerance * reference)
    return int(kept[above[-1] + 1]) if above[-1] + 1 < len(kept) else int(kept[-1])


def context_grid(step: int, max_points: int = ABLATION_MAX_POINTS) -> np.ndarray:
    """Context lengths 0..step + 1: every one when few, else a geometric grid that keeps both ends."""
    if step + 2 <= max_points:
        return np.arange(step + 2)
    grid = np.unique(np.round(np.geomspace(1, step + 1, max_points - 1)).astype(np.int64))
    return np.concatenate([[0], grid])


def context_ablation(
    model: nn.Module,
    values: np.ndarray,
    *,
    step: int | None = None,
    target: int | None = None,
    task: str | None = None,
    batch_first: bool = True,
    output_labels: Sequence[str] | None = None,
    tolerance: float = ABLATION_TOLERANCE,
    max_points: int = ABLATION_MAX_POINTS,
) -> ContextAblation:
    """The context-ablation curve of batch element 0 of `values` and its memory horizon.

    model: any model with one nn.LSTM / nn.GRU / nn.RNN stack reading a plain tensor;
    values: int (batch, time) token ids or float (batch, time, features). step: the predicted
    step (default the last; must be the last when the output has no time axis); target: the
    class (default the one predicted on the full input); task "regression" watches the value
    itself instead of a log-probability; max_points: context lengths evaluated at most (each one
    forward; a geometric grid beyond, `context_grid`).

    Raises ExplainError for models without one recurrent stack, packed input or a bad step.
    Source: Khandelwal et al., ACL 2018 (context perturbation), with zero input as the neutral
    input (module docstring).
    """
    _, stack = find_stack(model)
    x = model_input(model, values)
    steps = int(x.shape[1])
    mask: list[torch.Tensor | None] = [None]  # (batch, time) 1 = keep, 0 = neutral; None: run unchanged

    def neutralise(_m: nn.Module, args: tuple[object, ...],
                   kwargs: dict[str, object]) -> tuple[tuple[object, ...], dict[str, object]] | None:
        if mask[0] is None:
            return None
        data = args[0] if args else kwargs["input"]
        if not isinstance(data, torch.Tensor) or data.dim() != 3:
            raise ExplainError("the recurrent stack reads a packed or unbatched input; "
                               "context ablation needs (batch, time, features)")
        keep = mask[0].to(data.device, data.dtype)  # not None: tested above
        data = data * (keep[:, :, None] if stack.batch_first else keep.t()[:, :, None])
        return ((data, *args[1:]), kwargs) if args else (args, {**kwargs, "input": data})

    quantity = "value" if task == "regression" else "log-probability"
    handle = stack.register_forward_pre_hook(neutralise, with_kwargs=True)
    was_training = model.training
    threads = torch.get_num_threads()
    try:
        model.eval()
        # One torch thread, as the unit ablation: on a loaded 2-core machine a second thread's
        # wake-ups made the char sample's 49 context lengths take 0.2-18 s instead of 0.05 s.
        torch.set_num_threads(1)
        with torch.no_grad():
            vector, at = output_at(call_model(model, x, batch_first), step, steps)
            if target is None:
                target = int(torch.argmax(vector))
            if not 0 <= target < vector.shape[0]:
                raise ExplainError(f"target {target} is outside the model's {vector.shape[0]} outputs")
            y_full = target_value(vector, target, quantity)
            grid = context_grid(at, max_points)
            width = int(np.prod(x.shape[2:])) if x.dim() > 2 else 1
            per_call = max(1, _CHUNK_VALUES // (steps * max(width, 64)))
            ys = []
            for first in range(0, len(grid), per_call):
                ks = grid[first:first + per_call]
                keep = torch.ones((len(ks), steps))
                for row, k in enumerate(ks):
                    keep[row, : at - int(k) + 1] = 0.0  # neutral before the last k steps up to `at`
                mask[0] = keep
                out = call_model(model, x.expand(len(ks), *x.shape[1:]), batch_first)
                for row in range(len(ks)):
                    vec = out[row, at] if out.dim() >= 3 else out[row]
                    ys.append(target_value(vec.reshape(-1), target, quantity))
    finally:
        torch.set_num_threads(threads)
        handle.remove()
        model.train(was_training)
    change = np.abs(np.array(ys) - y_full)
    return ContextAblation(step=at, target=target, target_label=target_label(target, output_labels),
                           quantity=quantity, kept=grid, change=change, output=y_full,
                           reference=float(change.max(initial=0.0)),
                           horizon=ablation_horizon(grid, change, tolerance), tolerance=tolerance)
