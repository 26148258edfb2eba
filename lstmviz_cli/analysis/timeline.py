"""Gate statistics over training: a `Timeline` of runs' measures across checkpoints or epochs.

Each point holds the flat measures of that checkpoint or epoch (`analysis.measures.measure_run`, the list
its own `check --json` / `report --json` writes as "measures"); a chart reads them by kind, so a timeline
point and that run's own JSON are the same numbers:

    memory gate   each layer's `gate_mean` of its forget gate f (LSTM) or update gate z (GRU)
    saturation    each layer's `saturation` per sigmoid gate (what `lstmviz check --max-saturated` judges)
    dead units    each layer's `dead_units` (None for a layer too short to judge)
    memory        the `memory_horizon`
    largest |c|   each LSTM layer's `cell_max`;  |c| growth: its `cell_growth`

`lstmviz check` over several checkpoints and `lstmviz_cli.Monitor` build a `Timeline`;
`page.timeline` shows it as one table and one line chart per kind.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lstmviz_cli.analysis.measures import LABELS, Measure, layer_prefixes, measures_json
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.families import GATE_ORDER
from lstmviz_cli.loading.records import JSON


# -- the timeline ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimelinePoint:
    """One checkpoint or epoch: its label, its number on the x axis, and its measures (None: it failed)."""

    label: str  # "epoch_3.pt", "epoch 3"
    step: int | None  # the epoch or step number; None: points are placed in the order given
    measures: tuple[Measure, ...] | None  # `measure_run`'s list; None: no measures (see `error`)
    error: str | None = None  # why there are no measures (the one-line error of that checkpoint)
    passed: bool | None = None  # `lstmviz check`'s verdict on it; None: not checked
    link: str | None = None  # a file next to the timeline page showing this point (its report)

    def to_json(self) -> dict[str, JSON]:
        return {
            "label": self.label, "step": self.step, "error": self.error, "passed": self.passed, "link": self.link,
            "measures": None if self.measures is None else measures_json(self.measures),
        }


@dataclass(frozen=True)
class Timeline:
    """Measures in training order. `axis` names the x axis: "epoch", "step" or "checkpoint" (the order given)."""

    points: tuple[TimelinePoint, ...]
    axis: str = "checkpoint"

    def prefixes(self) -> list[str]:
        """Every layer of every point, in first-seen order (each point's in trace order)."""
        seen: dict[str, None] = {}
        for point in self.points:
            seen.update(dict.fromkeys(layer_prefixes(point.measures or ())))
        return list(seen)

    def to_json(self) -> dict[str, JSON]:
        """What `check --json` (several checkpoints) writes as "timeline", and Monitor as timeline.json."""
        return {"axis": self.axis, "points": [point.to_json() for point in self.points]}


@dataclass(frozen=True)
class Line:
    """One line of a timeline chart: a layer (and gate) over the points; None where it has no value."""

    label: str  # "lstm/l0/fwd" or "lstm/l0/fwd f"
    prefix: str
    gate: str | None  # the gate whose colour it takes; None: a quantity that is not a gate
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class MeasureKind:
    """One chart of the timeline: which measures it reads, its title, axis label and definition (the page's words).

    `measure` is a `measures.MEASURES` kind; `series` the gates it takes (None: every one, or none for a
    per-layer or whole-model measure); `per_gate`: one line per layer and gate, else one per layer.
    """

    key: str
    measure: str
    title: str
    axis: str
    definition: str
    series: tuple[str, ...] | None = None
    per_gate: bool = False
    integer: bool = False  # counts and steps: the table shows no decimals


KINDS: tuple[MeasureKind, ...] = (
    MeasureKind("memory_gate", "gate_mean", "Mean forget gate", "mean gate value",
                "mean of each layer's forget gate f over every valid step and unit (a GRU's update gate z, "
                "which keeps the state when near 1 as f does); near 1 keeps memory, near 0 forgets every step",
                series=("f", "z")),
    MeasureKind("saturation", "saturation", "Saturated gates", "share of values saturated",
                "share of each gate's values below the low or above the high saturation threshold", per_gate=True),
    MeasureKind("dead_units", "dead_units", "Dead units", "dead units", "units whose hidden state never leaves a "
                "narrow band (the dead-units finding); missing where a layer is too short to judge", integer=True),
    MeasureKind("memory_horizon", "memory_horizon", "Memory horizon", "steps back",
                f"how many steps back hold {Thresholds.horizon_mass:.0%} of the output's gradient saliency",
                integer=True),
    MeasureKind("cell_max", "cell_max", "Largest |c|", "largest |c|",
                "the largest absolute cell state over the sample (LSTM)"),
    MeasureKind("cell_growth", "cell_growth", "|c| growth", "late / early mean |c|",
                "mean |c| over the last quarter of the sample divided by that over its first quarter (LSTM): "
                "1 is steady. A short sample starting from c = 0 grows by construction; the exploding-cell "
                "finding needs both a large |c| and growth past the threshold"),
)
KIND = {kind.key: kind for kind in KINDS}


def lines(timeline: Timeline, key: str) -> list[Line]:
    """The lines of one chart (`KINDS` key) over the timeline's points; empty when no point has a value for it.

    Reads each point's measures of the chart's kind: one line per (layer, gate) they hold, in trace
    order and the legend's gate order; a point without that measure is a gap (None), never a zero.
    """
    kind = KIND[key]
    per_point: list[dict[tuple[str | None, str | None], float | None]] = []
    for point in timeline.points:
        per_point.append({(m.prefix, m.series): m.value for m in point.measures or ()
                          if m.measure == kind.measure and (kind.series is None or m.series in kind.series)})
    layers = {prefix: k for k, prefix in enumerate(timeline.prefixes())}
    keys = sorted(dict.fromkeys(key for values in per_point for key in values),
                  key=lambda pair: (-1 if pair[0] is None else layers.get(pair[0], len(layers)),
                                    GATE_ORDER.index(pair[1]) if pair[1] in GATE_ORDER else -1))
    found: list[Line] = []
    for prefix, series in keys:
        values = tuple(values.get((prefix, series)) for values in per_point)
        if all(value is None for value in values):
            continue
        if prefix is None:
            label = LABELS[kind.measure]
        else:
            label = f"{prefix} {series}" if kind.per_gate and series else prefix
        found.append(Line(label, prefix or "", series, values))
    return found


# -- checkpoints in training order ---------------------------------------------------------------------
_NUMBER = re.compile(r"\d+")


def training_order(names: Sequence[str]) -> tuple[list[int], list[int] | None, str]:
    """The order of checkpoint names along training, their step numbers, and what the numbers count.

    Names that differ only in their numbers (`epoch_2.pt`, `epoch_10.pt`; Lightning's
    `epoch=3-step=120.ckpt`) are ordered by those numbers, not as the shell sorts them (`epoch_10`
    before `epoch_2`); the first number that varies is the step, and the word before it names the
    axis ("epoch", "step"; else "checkpoint"). Other names keep the order given, with no step numbers.
    Returns (indices into `names` in order, steps in that order or None, axis name).
    """
    given = list(range(len(names)))
    if len(names) < 2:
        return given, None, "checkpoint"
    skeletons = {_NUMBER.sub("#", name) for name in names}
    numbers = [[int(n) for n in _NUMBER.findall(name)] for name in names]
    if len(skeletons) != 1 or not numbers[0]:
        return given, None, "checkpoint"
    varying = [k for k in range(len(numbers[0])) if len({tuple(n)[k] for n in numbers}) > 1]
    if not varying or len({tuple(n) for n in numbers}) != len(names):
        return given, None, "checkpoint"
    order = sorted(given, key=lambda i: numbers[i])
    first = varying[0]
    words = re.findall(r"[A-Za-z]+", _NUMBER.split(names[0])[first])
    axis = words[-1].lower() if words and words[-1].lower() in ("epoch", "step", "iter", "iteration") else "checkpoint"
    return order, [numbers[i][first] for i in order], "iteration" if axis == "iter" else axis
