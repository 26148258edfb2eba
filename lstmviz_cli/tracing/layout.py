"""Where batch and time sit in a model's output, read from the shapes of its input and output.

A model's own layout decides how its output is indexed: `nn.LSTM(batch_first=False)` models return
(time, batch, ...), PyTorch's tutorial tagger returns `lstm_out.view(len(sentence), -1)` = (time,
classes), char-RNNs return `out.reshape(-1, vocab)` = (batch·time, vocab). Knowing the call's batch
B, steps T and layout, every common output shape has one reading; the one that has two (a 3-D
output when B == T) follows the input's layout and says so. NumPy and torch alike (no torch import).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, overload

import numpy as np

if TYPE_CHECKING:  # annotations only: this module works on NumPy and torch alike without importing torch
    import torch


@dataclass(frozen=True)
class OutputAxes:
    """How one output tensor is laid out: which axis is the batch, which is time, or neither.

    `time` None: the output has no time axis (one vector per sequence, e.g. a classifier's logits).
    `batch` None: the batch was dropped (B == 1 squeezed or viewed away). `flat`: batch and time
    are flattened into axis 0 (`reshape(-1, C)`), in the input's order. `layout` names the axes as
    the model returned them; `note` is set when the reading was a choice the page must state.
    """

    batch: int | None
    time: int | None
    flat: bool = False
    layout: str = ""
    note: str = ""

    @property
    def per_step(self) -> bool:
        return self.time is not None


def _names(ndim: int, batch: int | None, time: int | None) -> str:
    names = ["features"] * ndim
    if batch is not None:
        names[batch] = "batch"
    if time is not None:
        names[time] = "time"
    return "(" + ", ".join(names) + ")"


def locate_output_axes(shape: Sequence[int], *, batch: int, steps: int, batch_first: bool) -> OutputAxes:
    """The batch and time axes of an output of `shape`, for a call on `batch` sequences of `steps`.

    `batch_first` is the layout the model was called in (its input's axes (B, T) or (T, B)).
    Rules: a 3-D+ output is (B, T, ...) or (T, B, ...) by its first two sizes (the input's layout
    when both fit, i.e. B == T, with a note); a 2-D output is (B, C) when its first size is B, (T, C)
    when B == 1 and it has T rows, (B·T, C) flattened in the input's order when it has B·T rows;
    anything else has no time axis (first axis the batch), as a 1-D output has neither.
    """
    shape = tuple(int(d) for d in shape)
    ndim = len(shape)
    if ndim <= 1:
        return OutputAxes(None, None, layout=_names(ndim, None, None))
    first, second = shape[0], shape[1]
    if ndim == 2:
        if first == batch:
            return OutputAxes(0, None, layout=_names(2, 0, None))
        if batch == 1 and first == steps:
            return OutputAxes(None, 0, layout=_names(2, None, 0),
                              note=f"the model's output {shape} has one row per input step: read as (time, features)")
        if batch > 1 and steps > 1 and first == batch * steps:
            order = "(batch·time, features)" if batch_first else "(time·batch, features)"
            return OutputAxes(0 if batch_first else 1, 1 if batch_first else 0, flat=True, layout=order,
                              note=f"the model's output {shape} has batch × steps rows: read as {order}, "
                                   "flattened in the order of its input")
        return OutputAxes(0, None, layout=_names(2, 0, None))
    batch_major = first == batch and second == steps
    time_major = first == steps and second == batch
    if batch_major and time_major:
        axes = (0, 1) if batch_first else (1, 0)
        note = ""
        if batch > 1:
            note = (f"the model's output {shape} has batch = steps = {batch}: read as "
                    f"{_names(ndim, *axes)}, the layout of its input")
        return OutputAxes(*axes, layout=_names(ndim, *axes), note=note)
    if time_major:
        return OutputAxes(1, 0, layout=_names(ndim, 1, 0))
    if batch_major or first == batch:
        return OutputAxes(0, 1, layout=_names(ndim, 0, 1))
    if second == batch:
        return OutputAxes(1, 0, layout=_names(ndim, 1, 0))
    return OutputAxes(0, 1, layout=_names(ndim, 0, 1))


@overload
def to_batch_major(value: np.ndarray, axes: OutputAxes, *, batch: int, steps: int) -> np.ndarray: ...
@overload
def to_batch_major(value: torch.Tensor, axes: OutputAxes, *, batch: int, steps: int) -> torch.Tensor: ...
def to_batch_major(value: np.ndarray | torch.Tensor, axes: OutputAxes, *, batch: int, steps: int
                   ) -> np.ndarray | torch.Tensor:
    """`value` (a NumPy array or torch tensor) as (batch, time, ...) when it has a time axis.

    Outputs without a time axis are returned unchanged. A view where the layout allows one.
    """
    if axes.time is None:
        return value

    def move(v: np.ndarray | torch.Tensor, source: int, target: int) -> np.ndarray | torch.Tensor:
        if isinstance(v, np.ndarray):
            return np.moveaxis(v, source, target)
        return v.movedim(source, target)

    if axes.flat:
        rest = tuple(value.shape[1:])
        if axes.batch == 0:
            return value.reshape((batch, steps) + rest)
        return move(value.reshape((steps, batch) + rest), 1, 0)
    if axes.batch is None:
        return value[None]
    if (axes.batch, axes.time) == (0, 1):
        return value
    return move(move(value, axes.batch, 0), axes.time if axes.time > axes.batch else axes.time + 1, 1)
