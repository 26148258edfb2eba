"""What a trace verified, level by level, and the tolerances it was judged by.

Verification levels, from the layers outwards:

    gates        every gate rebuilt from [x_t, h_(t-1)] reproduces the layer's own outputs (stock
                 nn.LSTM/GRU/RNN): "gates vs layer outputs"
    recurrence   hand-written cells: the captured gates satisfy the cell's recurrence
                 (c_t = f*c_(t-1) + i*g and h_t = o*tanh(c_t), or a GRU's h_t = z*h_(t-1) + (1-z)*n)
    names        hand-written cells whose gates were named from the source only: not verified
    model        the traced run's output against the user's own model run plainly (--model-class,
                 --trust-pickle) or against a TorchScript archive run as itself (--trust-torchscript)

The tolerances are stated here once: the tracer, the hand-written-cell tracer, the badges, `lstmviz
check`'s default and the CLI's help read them. Plain records (no torch, no NumPy: the CLI reads the
tolerance for its help text), read by the page, the JSON outputs and `lstmviz check`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the CLI imports this module for its help text: no NumPy at import time
    from lstmviz_cli.loading.records import JSON

# The verification tolerance: the largest max |recorded - real| over a layer's outputs (gates vs
# layer outputs) or a cell's recurrence that counts as verified. `trace(..., tolerance=)` and
# `lstmviz check --max-verify-error` replace it for one run; the trace records the one in force.
GATE_TOLERANCE = 1e-4
# A model output within this (relative to its size) of the reference counts as the same output.
OUTPUT_TOLERANCE = 1e-4
# What a refusal suggests, by the command that runs: `report`/`trace`/`figures` take --no-verify,
# `check` judges the error itself against --max-verify-error.
NO_VERIFY_REMEDY = "rerun with --no-verify to see the trace anyway"
CHECK_REMEDY = "pass a larger --max-verify-error to accept it"


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

    def to_json(self) -> dict[str, JSON]:
        error = None if self.error is None or not math.isfinite(self.error) else float(f"{self.error:.6g}")
        return {"level": self.level, "label": self.label, "error": error, "status": self.status,
                "detail": self.detail}




@dataclass(frozen=True)
class VerifyPolicy:
    """How one run verifies: whether the errors are computed, the tolerance they are judged by,
    whether a run over it is refused, and what the refusal suggests.

    `trace(..., verify=True)` is `VerifyPolicy()`; `verify=False` computes nothing (the fastest
    trace). The CLI's `--no-verify` computes and shows every error but refuses none (`refuse`
    false: the page shows them in red); `lstmviz check` judges at its --max-verify-error.
    """

    compute: bool = True
    tolerance: float = GATE_TOLERANCE
    refuse: bool = True
    remedy: str = NO_VERIFY_REMEDY

    @classmethod
    def of(cls, verify: bool | VerifyPolicy) -> VerifyPolicy:
        """A policy from the `verify` argument the tracers take (a bool, or a policy as it is)."""
        if isinstance(verify, VerifyPolicy):
            return verify
        return cls() if verify else cls(compute=False, refuse=False)

    @classmethod
    def for_check(cls, max_verify_error: float | None) -> VerifyPolicy:
        """`lstmviz check`: judged at its --max-verify-error, looser or tighter (None: not judged)."""
        if max_verify_error is None:
            return cls(refuse=False, remedy=CHECK_REMEDY)
        return cls(tolerance=float(max_verify_error), remedy=CHECK_REMEDY)

    @property
    def tolerance_text(self) -> str:
        """The tolerance as the refusals write it: "1e-04", or "0" (not "0e+00")."""
        return f"{self.tolerance:.0e}" if self.tolerance else "0"

    def refusal(self, what: str) -> str:
        """`what` went over the tolerance: the one-line refusal, with the running command's remedy."""
        return f"{what}; {self.remedy}"
