"""What a trace verified, level by level, and the tolerances it was judged by.

Verification levels, from the layers outwards:

    gates        every gate rebuilt from [x_t, h_(t-1)] reproduces the layer's own outputs (stock
                 nn.LSTM/GRU/RNN): "gates vs layer outputs"
    recurrence   hand-written cells: the captured gates satisfy the cell's recurrence
                 (c_t = f*c_(t-1) + i*g and h_t = o*tanh(c_t), or a GRU's h_t = z*h_(t-1) + (1-z)*n)
    names        hand-written cells whose gates were named from the source only: not verified
    model        the traced run's output against the user's own model run plainly (--model-class,
                 --trust-pickle) or against a TorchScript archive run as itself (--trust-torchscript)

Plain records (no torch), read by the page, the JSON outputs and `lstmviz check`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

# A model output within this (relative to its size) of the reference counts as the same output.
OUTPUT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Verification:
    """One level of verification the page claims, with its number."""

    level: str  # "gates" | "recurrence" | "names" | "model"
    label: str  # "gates vs layer outputs", "model output vs your model", ...
    error: float | None  # max |difference|; None when not computed
    status: str  # "ok" | "bad" | "not-checked"
    detail: str = ""

    def text(self) -> str:
        """ "gates vs layer outputs: 2.1e-07", "model output vs your model: exact"."""
        if self.status == "not-checked" or self.error is None:
            return f"{self.label}: {self.detail or 'not checked'}"
        if self.error == 0.0:
            return f"{self.label}: exact"
        if self.level == "model":
            return f"{self.label}: {'agrees to' if self.status == 'ok' else 'differs by'} {self.error:.2e}"
        return f"{self.label}: {self.error:.2e}" + ("" if self.status == "ok" else f" ({self.detail or 'over the tolerance'})")

    def to_json(self) -> dict[str, Any]:
        error = None if self.error is None or not math.isfinite(self.error) else float(f"{self.error:.6g}")
        return {"level": self.level, "label": self.label, "error": error, "status": self.status,
                "detail": self.detail}


def output_error(reference: Any, value: Any) -> float:
    """max |reference - value| of two NumPy arrays of one shape (inf when the shapes differ)."""
    a = np.asarray(reference, dtype=np.float64)
    b = np.asarray(value, dtype=np.float64)
    if a.shape != b.shape:
        return math.inf
    if a.size == 0:
        return 0.0
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.abs(np.where(both_nan, 0.0, a - b))
    return float(np.nan_to_num(diff, nan=math.inf).max())


def output_matches(error: float, reference: Any) -> bool:
    """Whether `error` is within OUTPUT_TOLERANCE of an output of this size."""
    ref = np.asarray(reference, dtype=np.float64)
    scale = float(np.nanmax(np.abs(ref))) if ref.size and np.isfinite(ref).any() else 0.0
    return math.isfinite(error) and error <= OUTPUT_TOLERANCE * max(1.0, scale)


GATE_TOLERANCE = 1e-4  # the tracer's own tolerance (tracing.tracer.VERIFY_TOLERANCE), for the badge's colour


def recurrent_levels(trace: Any) -> list[Verification]:
    """What the trace verified about the recurrent layers: gates (stock) or each hand-written cell."""
    meta = getattr(trace, "meta", {}) or {}
    cells = meta.get("custom_cells") or {}
    error = getattr(trace, "verify_error", None)
    if not cells:
        if error is None:
            return [Verification("gates", "gates vs layer outputs", None, "not-checked", "not checked (--no-verify)")]
        ok = math.isfinite(error) and error <= GATE_TOLERANCE
        return [Verification("gates", "gates vs layer outputs", float(error), "ok" if ok else "bad")]
    levels = []
    for module, cell in cells.items():
        if cell.get("family") is None:
            continue
        err = cell.get("verify_error")
        if cell.get("mapping") == "names":
            levels.append(Verification("names", f"{module}: gates named from the source only", None, "not-checked",
                                       "not verified: the LSTM equations did not check out"))
            continue
        check = cell.get("check") or "recurrence"
        if err is None or not math.isfinite(err):
            levels.append(Verification("recurrence", f"{module}: {check}", None, "not-checked", "not checked"))
            continue
        ok = err <= GATE_TOLERANCE
        levels.append(Verification("recurrence", f"{module}: {check}", float(err), "ok" if ok else "bad"))
    return levels
