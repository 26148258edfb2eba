"""What lstmviz knows about the model it traced: where it came from, the head it assumed, what was verified.

`Provenance` is a plain record (no torch), built from a run by `describe_run` and read by the analysis,
the page, the JSON outputs and `lstmviz check`. One source for each of these facts: the page and the
JSON say the same thing because they read the same record. The tensor accounting and the rebuilt head
it carries are the loader's records (`loading.records`); the verification levels are `tracing.verify`'s.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lstmviz_cli.loading.records import HeadInfo, TensorAccounting
from lstmviz_cli.tracing.verify import Verification, recurrent_levels


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


IN_MEMORY = "in-memory"  # ModelInfo.format of a model object passed from Python (lstmviz_cli.report)


def _source(info: Any) -> str:
    if getattr(info, "format", None) == IN_MEMORY:
        return "in-memory"
    if getattr(info, "format", None) == "torchscript":
        return "torchscript"
    if getattr(info, "rebuilt", False):
        return "rebuilt"
    return "model-class" if getattr(info, "model_class", None) else "pickled-module"


_DESCRIPTIONS = {
    "in-memory": "your model object, passed from Python (lstmviz_cli.report), run as written",
    "rebuilt": "rebuilt by lstmviz from the state dict's weights (no model code ran)",
    "torchscript": "a TorchScript archive (--trust-torchscript): traced through a rebuild from its weights, "
                   "whose output is compared with the archive's own (below)",
    "pickled-module": "your pickled module (--trust-pickle), run as written",
}


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
