"""The records of the explanations with evidence (issue 18): plain data, no torch.

`explain/` computes them (decompositions, context ablation, unit ablation, controls, the corpus
reduction), the analysis holds them (`records.Analysis`), the page and the JSON summary read them.
Each record has a `to_json()`: the shape of its entry in the report's JSON (`analysis.serialize`
rounds the numbers), documented on the record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np


def _num(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


# -- attribution over input steps ----------------------------------------------------------------
@dataclass(frozen=True)
class Attribution:
    """One output of the model split over the input steps, plus what no step owns.

    values: (time,) float64, the share of each input step (0 for steps the output cannot see);
    rest: the bias / initial-state share; output: the model's real output that values + rest add
    up to; conservation_error: |sum(values) + rest - output| / max(|output|, sum |parts|);
    state_error: the largest relative difference between the states the method propagated and the
    traced ones.

    JSON: {"method": "cd" | "lrp", "target", "target_label", "step", "values": [per step], "rest",
    "output", "conservation_error", "state_error", "note"}
    """

    method: str  # "cd" | "lrp"
    target: int  # index of the explained output (class / output unit)
    target_label: str
    step: int  # time step of the explained output
    values: np.ndarray
    rest: float
    output: float
    conservation_error: float
    state_error: float
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "target": self.target,
            "target_label": self.target_label,
            "step": self.step,
            "values": [float(v) for v in self.values],
            "rest": float(self.rest),
            "output": float(self.output),
            "conservation_error": float(self.conservation_error),
            "state_error": float(self.state_error),
            "note": self.note,
        }

    def top_steps(self, count: int = 5) -> list[int]:
        """The steps with the largest relevance, largest first (ties by step)."""
        order = sorted(range(len(self.values)), key=lambda t: (-self.values[t], t))
        return order[:count]


MethodStatus = Literal["refused", "skipped", "unavailable"]


@dataclass(frozen=True)
class MethodNote:
    """An explanation that is not shown, and why: refused (it did not add up), skipped (over its
    time or memory budget: how to run it is in the reason) or unavailable (not for this model).

    JSON: {"method", "status", "reason"}
    """

    method: str  # "cd" | "lrp" | "context" | "ablation" | "significance" | "control" | "corpus"
    status: MethodStatus
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "status": self.status, "reason": self.reason}


# -- memory ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ContextAblation:
    """change(k) of one output as the stack's input before step - k + 1 is replaced by zeros.

    kept: (n,) int context lengths k (0 = everything neutral, step + 1 = the full input);
    change: (n,) float64 |y_k - y_full|; horizon: the ablation memory horizon in steps.

    JSON: {"step", "target", "target_label", "quantity", "neutral": "zero input", "kept": [k],
    "change": [|dy| per k], "output": y_full, "reference": max change, "horizon", "tolerance"}
    """

    step: int
    target: int
    target_label: str
    quantity: str  # "log-probability" | "value"
    kept: np.ndarray
    change: np.ndarray
    output: float
    reference: float
    horizon: int
    tolerance: float
    neutral: str = "zero input"

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "target": self.target,
            "target_label": self.target_label,
            "quantity": self.quantity,
            "neutral": self.neutral,
            "kept": [int(k) for k in self.kept],
            "change": [float(v) for v in self.change],
            "output": float(self.output),
            "reference": float(self.reference),
            "horizon": int(self.horizon),
            "tolerance": float(self.tolerance),
        }


@dataclass(frozen=True)
class LayerTimescales:
    """Timescales of every unit of one layer direction.

    mean_gate: (units,) mean of the keep gate over every valid step of every sequence;
    tau: (units,) -1 / ln(mean_gate) in steps (inf where the mean gate is 1 in float32);
    edges: (bins + 1,) the histogram's bin edges in steps; counts: (bins,) units per bin.

    JSON: {"prefix", "gate": "f" | "z", "tau": [per unit, null when the gate is 1],
    "mean_gate": [per unit], "median_tau": float | null, "edges": [bin edges], "counts": [units per bin]}
    """

    prefix: str
    gate: str
    mean_gate: np.ndarray
    tau: np.ndarray
    edges: np.ndarray
    counts: np.ndarray

    @property
    def median(self) -> float:
        return float(np.median(self.tau)) if self.tau.size else float("nan")

    def to_json(self) -> dict[str, Any]:
        return {
            "prefix": self.prefix,
            "gate": self.gate,
            "tau": [_num(v) for v in self.tau],
            "mean_gate": [float(v) for v in self.mean_gate],
            "median_tau": _num(self.median),
            "edges": [_num(v) for v in self.edges],
            "counts": [int(v) for v in self.counts],
        }


# -- units with evidence -------------------------------------------------------------------------------
@dataclass
class UnitCorrelation:
    """One unit's Pearson correlation with one per-step feature, and its evidence once tested.

    p: the family-wise corrected permutation p-value (`explain.significance`); significant: p at or
    below the level; control_r: the same feature's best |r| in an untrained model of the same
    architecture (`explain.control`). None: not tested / not computed.
    """

    feature: str
    key: str  # "<prefix>/<series>", e.g. "lstm/l0/fwd/c"
    unit: int
    r: float
    p: float | None = None
    significant: bool | None = None
    control_r: float | None = None

    @property
    def prefix(self) -> str:
        return self.key.rsplit("/", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "key": self.key, "unit": self.unit, "r": self.r, "p": self.p,
                "control_r": self.control_r, "significant": self.significant}


@dataclass(frozen=True)
class UnitTests:
    """Ranked unit-feature pairs with evidence, and what was tested.

    ranked: the significant pairs, strongest |r| first; not_significant: the best unit of each
    feature without a significant one. `steps` is how many steps the permutation test read (the
    first ones of the sample or corpus, `explain.significance`).

    JSON (the report's "units", with "features"): {"ranked": [{"feature", "key", "unit", "r", "p",
    "control_r", "significant"}], "not_significant": [...], "permutations", "alpha", "block_lengths":
    {feature: steps}, "pairs_tested", "correction", "steps", "note"}
    """

    ranked: tuple[UnitCorrelation, ...]
    not_significant: tuple[UnitCorrelation, ...]
    permutations: int
    alpha: float
    pairs_tested: int
    block_lengths: dict[str, int] = field(default_factory=dict)
    correction: str = "max-T over units (Westfall-Young), Bonferroni over features"
    steps: int = 0

    @property
    def note(self) -> str:
        if not self.pairs_tested:
            return "no unit-feature pair could be tested (constant features or units)"
        tested = max(len(self.block_lengths), 1)
        floor = tested / (1 + self.permutations)  # the smallest corrected p-value the test can give
        if not self.ranked and floor > self.alpha:
            needed = math.ceil(tested / self.alpha) - 1
            return (f"no unit can be significant with {self.permutations:,} permutations: over {tested} features "
                    f"the smallest p-value they can give is {floor:.2g}, above alpha {self.alpha:g} "
                    f"(--permutations {needed:,} or more can reach it): units are not ranked")
        if not self.ranked:
            return (f"no unit is significantly correlated with any feature (family-wise "
                    f"alpha {self.alpha:g} over {self.pairs_tested} pairs): units are not ranked")
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ranked": [u.to_json() for u in self.ranked],
            "not_significant": [u.to_json() for u in self.not_significant],
            "permutations": self.permutations,
            "alpha": self.alpha,
            "block_lengths": dict(self.block_lengths),
            "pairs_tested": self.pairs_tested,
            "correction": self.correction,
            "steps": self.steps,
            "note": self.note,
        }


@dataclass(frozen=True)
class UnitSpec:
    """One unit of h to ablate: `prefix` "lstm/l0/fwd", `unit` index, `value` (None: zero)."""

    prefix: str
    unit: int
    value: float | None = None

    def __str__(self) -> str:
        return f"{self.prefix}:{self.unit}" + ("" if self.value is None else f"={self.value:g}")

    @property
    def module(self) -> str:
        return self.prefix.rsplit("/", 2)[0]

    @property
    def layer(self) -> int:
        return int(self.prefix.rsplit("/", 2)[1][1:])

    @property
    def direction(self) -> int:
        return 1 if self.prefix.endswith("/bwd") else 0


# Changes of the watched output or loss below this are "no change" (a float rounding).
NO_EFFECT_TOLERANCE = 1e-6


@dataclass(frozen=True)
class UnitAblation:
    """What changes when `units` are silenced or clamped: the watched output and the loss on the sample.

    step_loss_before/after: (time - 1,) next-token losses per step (char-lm only, else None).
    `how` says what was done in words ("set to 0", "clamped to +0.32, its mean where inside quotes
    is absent"); `feature` the feature the unit was ranked for (None: chosen by --ablate), and
    `present_change` / `absent_change` the mean per-step loss change where that feature is present
    / absent (char-lm with a feature only).

    JSON: {"units": ["lstm/l0/fwd:49"], "how", "feature", "step", "target", "target_label", "quantity",
    "target_before", "target_after", "loss": "next-token" | "predicted-class" | null, "loss_before",
    "loss_after", "present_change", "absent_change", "step_loss_change": [per step] | null, "changed"}
    """

    units: tuple[UnitSpec, ...]
    step: int
    target: int
    target_label: str
    quantity: str  # "log-probability" | "value"
    target_before: float
    target_after: float
    loss_kind: str | None  # "next-token" | "predicted-class" | None (regression)
    loss_before: float | None
    loss_after: float | None
    step_loss_before: np.ndarray | None = None
    step_loss_after: np.ndarray | None = None
    how: str = ""
    feature: str | None = None
    present_change: float | None = None
    absent_change: float | None = None

    @property
    def target_change(self) -> float:
        return self.target_after - self.target_before

    @property
    def loss_change(self) -> float | None:
        if self.loss_before is None or self.loss_after is None:
            return None
        return self.loss_after - self.loss_before

    @property
    def changed(self) -> bool:
        """False when neither the watched output nor the loss moved beyond `NO_EFFECT_TOLERANCE`."""
        moved = abs(self.target_change) > NO_EFFECT_TOLERANCE
        return moved or (self.loss_change is not None and abs(self.loss_change) > NO_EFFECT_TOLERANCE)

    def to_json(self) -> dict[str, Any]:
        step_change = None
        if self.step_loss_before is not None and self.step_loss_after is not None:
            step_change = [float(v) for v in self.step_loss_after - self.step_loss_before]
        return {
            "units": [str(u) for u in self.units],
            "how": self.how,
            "feature": self.feature,
            "step": self.step,
            "target": self.target,
            "target_label": self.target_label,
            "quantity": self.quantity,
            "target_before": self.target_before,
            "target_after": self.target_after,
            "loss": self.loss_kind,
            "loss_before": self.loss_before,
            "loss_after": self.loss_after,
            "present_change": self.present_change,
            "absent_change": self.absent_change,
            "step_loss_change": step_change,
            "changed": self.changed,
        }


# -- the corpus: excerpts and what was read ------------------------------------------------------------
@dataclass(frozen=True)
class Excerpt:
    """A context where a unit fires: `before` + `token` + `after`, the unit's value at `token`.

    sequence: the corpus sequence it comes from (0 = the sample shown); step: the token's step there.
    """

    sequence: int
    step: int
    value: float
    before: tuple[str, ...]
    token: str
    after: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"sequence": self.sequence, "step": self.step, "value": self.value,
                "before": list(self.before), "token": self.token, "after": list(self.after)}


@dataclass(frozen=True)
class UnitExcerpts:
    """The contexts where one unit of h is highest and lowest over everything read.

    JSON: {"prefix", "unit", "mean", "highest": [excerpt], "lowest": [excerpt]} with an excerpt
    {"sequence", "step", "value", "before": [token], "token", "after": [token]}.
    """

    prefix: str
    unit: int
    mean: float  # the unit's mean over every step read
    highest: tuple[Excerpt, ...]
    lowest: tuple[Excerpt, ...]

    def to_json(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "unit": self.unit, "mean": self.mean,
                "highest": [e.to_json() for e in self.highest], "lowest": [e.to_json() for e in self.lowest]}


@dataclass(frozen=True)
class CorpusInfo:
    """What corpus mode read: how many sequences and steps, how they were split, and in how many batches.

    JSON: {"source", "split", "sequences", "steps", "batches", "shown": 0}
    """

    source: str  # e.g. "corpus.txt" or "texts/"
    split: str  # "lines" | "paragraphs" | "files" | "batch"
    sequences: int
    steps: int
    batches: int

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "split": self.split, "sequences": self.sequences, "steps": self.steps,
                "batches": self.batches, "shown": 0}
