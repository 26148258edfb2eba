"""What lstmviz knows about the model it traced: tensors placed, the head it assumed, what was verified.

Plain records (no torch), built by the loader and the pipeline, read by the analysis, the page, the
JSON outputs and `lstmviz check`. One source for each of these facts: the page and the JSON say
the same thing because they read the same record.

Verification levels, from the layers outwards:

    gates        every gate rebuilt from [x_t, h_(t-1)] reproduces the layer's own outputs (stock
                 nn.LSTM/GRU/RNN): "gates vs layer outputs"
    recurrence   hand-written cells: the captured gates satisfy the cell's recurrence
                 (c_t = f*c_(t-1) + i*g and h_t = o*tanh(c_t), or a GRU's h_t = z*h_(t-1) + (1-z)*n)
    names        hand-written cells whose gates were named from the source only: not verified
    model        the traced run's output against the user's own model run plainly (--model-class,
                 --trust-pickle) or against a TorchScript archive run as itself (--trust-torchscript)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

HEAD_WIRINGS = ("all", "last", "final-states")
WIRING_TEXT = {
    "all": "every step's output",
    "last": "the last step's output",
    "final-states": "the final hidden states",
}
# Where a rebuilt head's wiring came from, as the page says it.
WIRING_SOURCES = {
    "option": "--head",
    "metadata": "the checkpoint's config 'head_on'",
    "task": "the declared task 'char-lm' (a next-token head reads every step)",
    "default": "assumed",
    "archive": "matched against the TorchScript archive's own output",
}
# A model output within this (relative to its size) of the reference counts as the same output.
OUTPUT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class TensorAccounting:
    """Every tensor of the state dict a model was rebuilt from: placed, or listed as not used."""

    total: int
    unused: tuple[str, ...] = ()  # state-dict keys no rebuilt module holds, in the file's order
    front: tuple[str, ...] = ()  # unplaced modules that may run before the recurrent layers

    @property
    def placed(self) -> int:
        return self.total - len(self.unused)

    def modules(self) -> list[tuple[str, list[str]]]:
        """The unused keys grouped by module, in order: [("norm", ["weight", "bias"]), ("h0", [""])]."""
        groups: dict[str, list[str]] = {}
        for key in self.unused:
            module, dot, param = key.rpartition(".")
            groups.setdefault(module if dot else key, []).append(param if dot else "")
        return list(groups.items())

    def unused_text(self, limit: int = 6) -> str:
        """Module-level and compact: "norm.{weight,bias,running_mean}, attn.v" (+ "… and 3 more modules")."""
        parts = []
        groups = self.modules()
        for module, params in groups[:limit]:
            named = [p for p in params if p]
            if not named:
                parts.append(module)
            elif len(named) == 1:
                parts.append(f"{module}.{named[0]}")
            else:
                parts.append(f"{module}.{{{','.join(named)}}}")
        more = len(groups) - limit
        return ", ".join(parts) + (f", … and {more} more modules" if more > 0 else "")

    def line(self) -> str:
        """The one line the CLI prints on stderr and the page repeats."""
        if not self.unused:
            return f"rebuilt from weights: all {self.total} tensors placed"
        return (
            f"rebuilt from weights: placed {self.placed} of {self.total} tensors; "
            f"not used ({len(self.unused)}): {self.unused_text()}"
        )

    def to_json(self) -> dict[str, Any]:
        return {"total": self.total, "placed": self.placed, "unused": list(self.unused), "front": list(self.front)}


@dataclass(frozen=True)
class HeadInfo:
    """The output head of a model rebuilt from weights, and how it is wired to the recurrent layers."""

    modules: tuple[str, ...]  # Linear prefixes in order, e.g. ("fc",) or ("fc.0", "fc.2")
    widths: tuple[int, ...]  # in, hidden..., out: (64, 32, 1)
    wiring: str  # "all" | "last" | "final-states"
    source: str  # "option" | "metadata" | "task" | "default" | "archive"
    activation: str | None = None  # between Linears of a chain (config 'head_activation')
    bidirectional: bool = False  # of the recurrent layers it reads (for "final-states" wording)

    @property
    def out_features(self) -> int:
        return self.widths[-1]

    @property
    def assumed(self) -> bool:
        return self.source == "default"

    def describe(self) -> str:
        """ "fc (Linear 64→19)" or "fc.0 → relu → fc.2 (Linear 64→32→1)". """
        widths = "→".join(str(w) for w in self.widths)
        if len(self.modules) == 1:
            return f"{self.modules[0]} (Linear {widths})"
        joiner = f" → {self.activation} → " if self.activation not in (None, "none", "identity") else " → "
        return f"{joiner.join(self.modules)} (Linear {widths})"

    def wiring_text(self) -> str:
        if self.wiring == "final-states":
            return ("the final hidden states of both directions, cat(h_n[-2], h_n[-1])" if self.bidirectional
                    else "the final hidden state h_n[-1]")
        return WIRING_TEXT[self.wiring]

    def basis(self) -> str:
        """The sentence the page writes where the prediction is."""
        reads = f"rebuilt head {self.describe()} reading {self.wiring_text()}"
        if self.assumed:
            return f"assumed: {reads}; pass --head all|last|final-states to choose"
        return f"{reads} ({WIRING_SOURCES[self.source]})"

    def to_json(self) -> dict[str, Any]:
        return {
            "modules": list(self.modules), "widths": list(self.widths), "activation": self.activation,
            "wiring": self.wiring, "wiring_text": self.wiring_text(), "source": self.source,
            "assumed": self.assumed,
        }


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
        return f"{self.label}: {self.error:.2e}" + ("" if self.status == "ok" else " (over the tolerance)")

    def to_json(self) -> dict[str, Any]:
        error = None if self.error is None or not math.isfinite(self.error) else float(f"{self.error:.6g}")
        return {"level": self.level, "label": self.label, "error": error, "status": self.status,
                "detail": self.detail}


@dataclass(frozen=True)
class Provenance:
    """Everything the page and the JSON say about where the traced model came from."""

    source: str  # "rebuilt" | "torchscript" | "model-class" | "pickled-module"
    description: str  # one sentence: "rebuilt from weights", "your class models.py:Net", ...
    accounting: TensorAccounting | None = None
    head: HeadInfo | None = None
    head_note: str = ""  # why no head was rebuilt (a rebuild without a head)
    recurrent_only: bool = False
    verification: tuple[Verification, ...] = field(default_factory=tuple)

    @property
    def has_head(self) -> bool:
        """The traced output is a prediction: the user's own model's, or a rebuilt head that is known.

        A rebuild without a head outputs the last recurrent layer's states: never a prediction.
        """
        if self.recurrent_only:
            return False
        return self.source in ("model-class", "pickled-module") or self.head is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "description": self.description,
            "tensors": None if self.accounting is None else self.accounting.to_json(),
            "head": None if self.head is None else self.head.to_json(),
            "head_note": self.head_note,
            "recurrent_only": self.recurrent_only,
            "verification": [v.to_json() for v in self.verification],
        }


def output_error(reference: Any, value: Any) -> float:
    """max |reference - value| of two NumPy arrays of one shape (inf when the shapes differ)."""
    import numpy as np

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
    import numpy as np

    ref = np.asarray(reference, dtype=np.float64)
    scale = float(np.nanmax(np.abs(ref))) if ref.size and np.isfinite(ref).any() else 0.0
    return math.isfinite(error) and error <= OUTPUT_TOLERANCE * max(1.0, scale)


GATE_TOLERANCE = 1e-4  # the tracer's own tolerance (tracing.VERIFY_TOLERANCE), for the badge's colour


def _source(info: Any) -> str:
    if getattr(info, "format", None) == "torchscript":
        return "torchscript"
    if getattr(info, "rebuilt", False):
        return "rebuilt"
    return "model-class" if getattr(info, "model_class", None) else "pickled-module"


_DESCRIPTIONS = {
    "rebuilt": "rebuilt by lstmviz from the state dict's weights (no model code ran)",
    "torchscript": "a TorchScript archive (--trust-torchscript): traced through a rebuild from its weights, "
                   "whose output is compared with the archive's own (below)",
    "pickled-module": "your pickled module (--trust-pickle), run as written",
}


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


def describe_run(run: Any) -> Provenance:
    """The Provenance of a pipeline Run: where the model came from and every level verified."""
    loaded = getattr(run, "loaded", None)
    info = getattr(loaded, "info", None)
    source = _source(info)
    model_class = getattr(info, "model_class", None)
    description = (f"your class {model_class} (--model-class), run as written" if source == "model-class"
                   else _DESCRIPTIONS[source])
    recurrent_only = bool(getattr(info, "recurrent_only", False))
    levels = recurrent_levels(getattr(run, "trace", None))
    end_to_end = getattr(run, "end_to_end", None)
    if end_to_end is not None:
        levels.append(end_to_end)
    elif recurrent_only:
        levels.append(Verification("model", "model output", None, "not-checked",
                                   "not compared: --recurrent-only traces the recurrent layers alone"))
    elif source == "rebuilt":
        levels.append(Verification("model", "model output", None, "not-checked",
                                   "no model code to compare with (rebuilt from weights)"))
    return Provenance(
        source=source,
        description=description,
        accounting=getattr(info, "accounting", None),
        head=getattr(info, "head", None),
        head_note=getattr(info, "head_note", "") or "",
        recurrent_only=recurrent_only,
        verification=tuple(levels),
    )
