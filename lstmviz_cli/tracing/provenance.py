"""What lstmviz knows about the model it traced: where it came from, the head it assumed, what was verified.

`Provenance` is a plain record (no torch), built from a run by `describe_run` and read by the analysis,
the page, the JSON outputs and `lstmviz check`. One source for each of these facts: the page and the
JSON say the same thing because they read the same record. The tensor accounting and the rebuilt head
it carries are the loader's records (`loading.records`); the verification levels are `tracing.verify`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from lstmviz_cli.loading.records import JSON, HeadInfo, ModelInfo, TensorAccounting
from lstmviz_cli.tracing.records import Run, Trace
from lstmviz_cli.tracing.verify import GATE_TOLERANCE, Verification


@dataclass(frozen=True)
class Provenance:
    """Everything the page and the JSON say about where the traced model came from."""

    source: str  # "rebuilt" | "torchscript" | "model-class" | "pickled-module" | "in-memory"
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
        return self.source in ("model-class", "pickled-module", "in-memory") or self.head is not None

    def to_json(self) -> dict[str, JSON]:
        return {
            "source": self.source,
            "description": self.description,
            "tensors": None if self.accounting is None else self.accounting.to_json(),
            "head": None if self.head is None else self.head.to_json(),
            "head_note": self.head_note,
            "recurrent_only": self.recurrent_only,
            "verification": [v.to_json() for v in self.verification],
        }


IN_MEMORY = "in-memory"  # ModelInfo.format of a model object passed from Python (lstmviz_cli.report)


def _source(info: ModelInfo) -> str:
    if info.format == IN_MEMORY:
        return "in-memory"
    if info.model_class:
        return "model-class"
    if info.format == "torchscript":
        return "torchscript"
    return "rebuilt" if info.rebuilt else "pickled-module"


_DESCRIPTIONS = {
    "in-memory": "your model object, passed from Python (lstmviz_cli.report), run as written",
    "rebuilt": "rebuilt by lstmviz from the state dict's weights (no model code ran)",
    "torchscript": "a TorchScript archive (--trust-torchscript): traced through a rebuild from its weights, "
                   "whose output is compared with the archive's own (below)",
    "pickled-module": "your pickled module (--trust-pickle), run as written",
}


def recurrent_levels(trace: Trace) -> list[Verification]:
    """What the trace verified about the recurrent layers: gates (stock) or each hand-written cell.

    Judged by the tolerance the trace was verified at (`meta.verify_tolerance`, e.g. `lstmviz check
    --max-verify-error`), else the default: an error over it is "bad" (red on the page).
    """
    tolerance = trace.meta.verify_tolerance if trace.meta.verify_tolerance is not None else GATE_TOLERANCE
    cells = trace.meta.custom_cells or {}
    error = trace.verify_error
    if not cells:
        if error is None:
            return [Verification("gates", "gates vs layer outputs", None, "not-checked", "not checked")]
        ok = math.isfinite(error) and error <= tolerance
        return [Verification("gates", "gates vs layer outputs", float(error), "ok" if ok else "bad")]
    levels = []
    for module, cell in cells.items():
        if cell.family is None:
            continue
        err = cell.verify_error
        if cell.mapping == "names":
            levels.append(Verification("names", f"{module}: gates named from the source only", None, "not-checked",
                                       "not verified: the LSTM equations did not check out"))
            continue
        check = cell.check or "recurrence"
        if err is None or not math.isfinite(err):
            levels.append(Verification("recurrence", f"{module}: {check}", None, "not-checked", "not checked"))
            continue
        ok = err <= tolerance
        levels.append(Verification("recurrence", f"{module}: {check}", float(err), "ok" if ok else "bad"))
    return levels


def describe_run(run: Run) -> Provenance:
    """The Provenance of a pipeline Run: where the model came from and every level verified."""
    info = run.loaded.info
    source = _source(info)
    description = (f"your class {info.model_class} (--model-class), run as written" if source == "model-class"
                   else _DESCRIPTIONS[source])
    levels = recurrent_levels(run.trace)
    if run.end_to_end is not None:
        levels.append(run.end_to_end)
    elif info.recurrent_only:
        levels.append(Verification("model", "model output", None, "not-checked",
                                   "not compared: --recurrent-only traces the recurrent layers alone"))
    elif source == "rebuilt":
        levels.append(Verification("model", "model output", None, "not-checked",
                                   "no model code to compare with (rebuilt from weights)"))
    return Provenance(
        source=source,
        description=description,
        accounting=info.accounting,
        head=info.head,
        head_note=info.head_note,
        recurrent_only=info.recurrent_only,
        verification=tuple(levels),
    )
