"""The conservation check of a decomposition of one output over the input steps (no torch).

The record, `Attribution`, lives in `analysis.evidence` (the page and the JSON read it without torch).

JSON (one entry of the report's ``attributions`` list)::

    {"method": "cd" | "lrp", "target": int, "target_label": str, "step": int,
     "values": [relevance per input step], "rest": float, "output": float,
     "conservation_error": float, "state_error": float, "note": str}

``values[t] + ... + rest`` adds up to ``output``, the model's real output being explained;
``conservation_error`` says how well, relative to max(|output|, sum of |parts|).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmviz_cli.analysis.evidence import Attribution
from lstmviz_cli.errors import ConservationError
from lstmviz_cli.glyphs import display_token

# A decomposition whose parts miss the model's real output by more than this share is refused.
CONSERVATION_TOLERANCE = 1e-4
# Largest |recomputed - traced| (relative to max(1, |traced|)) allowed for the states and gates a
# decomposition runs through; the tracer's own verification tolerance.
STATE_TOLERANCE = 1e-4

METHOD_NAMES = {"cd": "contextual decomposition", "lrp": "layer-wise relevance propagation"}

__all__ = ["CONSERVATION_TOLERANCE", "STATE_TOLERANCE", "Attribution", "checked", "conservation_error",
           "relative_error", "target_label"]



def target_label(target: int, output_labels: Sequence[str] | None) -> str:
    """How an output index is named: its label (quoted, whitespace made visible) or "output N"."""
    if output_labels is not None and 0 <= target < len(output_labels):
        return repr(display_token(str(output_labels[target])))
    return f"output {target}"


def conservation_error(values: np.ndarray, rest: float, output: float) -> float:
    """|sum(values) + rest - output| relative to the scale of the sum: max(|output|, sum |parts|)."""
    parts = np.append(np.asarray(values, dtype=np.float64), rest)
    scale = max(abs(output), float(np.abs(parts).sum()), 1e-300)
    return float(abs(parts.sum() - output) / scale)


def checked(method: str, *, target: int, target_label: str, step: int, values: np.ndarray, rest: float,
            output: float, state_error: float, note: str = "") -> Attribution:
    """Build the record, refusing (ConservationError) a decomposition that does not add up."""
    name = METHOD_NAMES[method]
    if not state_error <= STATE_TOLERANCE:  # NaN fails too
        raise ConservationError(
            f"{name}: the propagated states differ from the traced ones by {state_error:.2e} "
            f"(tolerance {STATE_TOLERANCE:.0e}); the decomposition is not shown")
    error = conservation_error(values, rest, output)
    if not error <= CONSERVATION_TOLERANCE:
        raise ConservationError(
            f"{name}: the parts add up to the output {output:.6g} only to {error:.2e} relative "
            f"(tolerance {CONSERVATION_TOLERANCE:.0e}); the decomposition is not shown")
    return Attribution(method=method, target=target, target_label=target_label, step=step,
                       values=np.asarray(values, dtype=np.float64), rest=float(rest),
                       output=float(output), conservation_error=error, state_error=float(state_error),
                       note=note)


def relative_error(computed: np.ndarray, traced: np.ndarray) -> float:
    """max |computed - traced| / max(1, |traced|): float32 traces carry ~1e-7 relative rounding."""
    traced = np.asarray(traced, dtype=np.float64)
    return float(np.max(np.abs(computed - traced) / np.maximum(1.0, np.abs(traced)), initial=0.0))
