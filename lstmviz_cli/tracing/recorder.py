"""What one traced forward pass records, and how recurrent modules are recognised, named and configured.

A `Recorder` collects `Segment`s per (module, layer, direction) in call order (a module called twice
yields two), the calls of each cell, and the model's path of leaf modules for the architecture diagram.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from lstmviz_cli.loading.modules import RECURRENT_TYPES, recurrent_config
from lstmviz_cli.tracing import gates as _gates
from lstmviz_cli.tracing.records import PathEntry


@dataclass
class Segment:
    """One call's recording of one layer direction (a module called twice yields two segments)."""

    series: dict[str, np.ndarray]
    error: float | None
    weights: dict[str, np.ndarray]
    lengths: np.ndarray | None = None
    route: str | None = None  # the kernel route that ran the layer (`tracing.kernels`); None: a cell


@dataclass
class CellCall:
    x: torch.Tensor
    h_prev: torch.Tensor
    c_prev: torch.Tensor | None
    h: torch.Tensor
    c: torch.Tensor | None


@dataclass
class Recorder:
    """Collects segments per (module, layer, direction) in call order, and the model's path."""

    spec: _gates.StoreSpec
    verify: bool
    chunk: int | None
    kernel: str = "auto"  # the kernel route wanted: "auto" | "fused" | "onednn-workspace"
    segments: dict[tuple[str, int, str], list[Segment]] = field(default_factory=dict)
    cells: dict[str, list[CellCall]] = field(default_factory=dict)
    path: list[PathEntry] = field(default_factory=list)
    path_index: dict[str, int] = field(default_factory=dict)  # module name -> its entry in `path`
    # Packed sequences are padded back to this many steps (the padded input's length, which a
    # PackedSequence does not carry): given by the caller, or read from the model call's input.
    total_length: int | None = None
    input_dims: tuple[int, ...] = ()  # the first two sizes of the call's first input tensor

    def add(self, key: tuple[str, int, str], segment: Segment) -> None:
        self.segments.setdefault(key, []).append(segment)

    def padded_length(self, batch: int, longest: int) -> int | None:
        """Steps to pad a packed batch of `batch` sequences to (None: its longest, `longest`).

        The caller's `total_length`, else the call input's other axis when one of its first two
        sizes is the batch (both readings agree when they are equal); never shorter than `longest`.
        """
        steps = self.total_length
        if steps is None and len(self.input_dims) >= 2:
            first, second = self.input_dims[:2]
            steps = second if first == batch else first if second == batch else None
        return steps if steps is not None and steps >= longest else None


def module_name(name: str, module: nn.Module) -> str:
    """named_modules() name; the model itself (name "") is called after its kind: "lstm", "gru"."""
    if name or not isinstance(module, RECURRENT_TYPES):
        return name
    return recurrent_config(module).kind.lower()
