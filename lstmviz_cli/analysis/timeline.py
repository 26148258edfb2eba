"""Gate statistics over training: the `Measures` of one analysis, and a `Timeline` of them across checkpoints.

One record per checkpoint or epoch holds what a team watches while a recurrent model trains, read from
the analysis (nothing is recomputed, so a timeline point and that checkpoint's own `--json` agree):

    memory gate   mean of each layer's forget gate f (LSTM) or update gate z (GRU): GateStat.mean
    saturation    share of each gate's values below saturation_low or above saturation_high
                  (GateStat.frac_low + frac_high: the number `lstmviz check --max-saturated` judges)
    dead units    units whose h never leaves a band dead_range wide (the dead-units finding's count;
                  None for a layer too short to judge)
    largest |c|   GateStat.abs_max of the cell state (LSTM)
    |c| growth    mean |c| over the last quarter of sequence 0 / over its first quarter (GateStat.growth)
    memory        the saliency's memory horizon: steps back holding horizon_mass of the saliency

`lstmviz check` over several checkpoints and `lstmviz_cli.Monitor` build a `Timeline` from these;
`page.timeline` shows it as one table and one line chart per measure.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from lstmviz_cli.analysis.findings import dead_units_by_layer
from lstmviz_cli.analysis.records import Analysis, GateStat
from lstmviz_cli.families import GATE_ORDER, GATE_SERIES, SERIES_NAMES
from lstmviz_cli.output import json_number

_MEMORY_GATES = ("f", "z")  # the gate that keeps the state: LSTM f, GRU z (families.py)


@dataclass(frozen=True)
class LayerMeasures:
    """The measures of one layer and direction (`prefix`, e.g. "lstm/l0/fwd")."""

    prefix: str
    memory_gate: str | None  # "f" (LSTM), "z" (GRU), None (a plain RNN)
    memory_gate_mean: float | None
    saturated: tuple[tuple[str, float], ...]  # (gate, share saturated), in the legend's gate order
    dead_units: int | None  # None: too few steps to judge (the analysis's `unjudged`)
    cell_max: float | None  # the largest |c| (LSTM only)
    cell_growth: float | None  # mean |c| of the last quarter / the first (LSTM only; None: too short)

    def to_json(self) -> dict[str, object]:
        return {
            "prefix": self.prefix,
            "memory_gate": self.memory_gate,
            "memory_gate_mean": json_number(self.memory_gate_mean),
            "saturated": {gate: json_number(share) for gate, share in self.saturated},
            "dead_units": self.dead_units,
            "cell_max": json_number(self.cell_max),
            "cell_growth": json_number(self.cell_growth),
        }


@dataclass(frozen=True)
class Measures:
    """The measures of one analysis (one checkpoint or epoch), layer by layer, plus the memory horizon."""

    layers: tuple[LayerMeasures, ...]
    memory_horizon: int | None  # None: no saliency (the model could not be differentiated)

    def to_json(self) -> dict[str, object]:
        """JSON-ready (6 significant digits): what `report --json` and `check --json` write as "measures"."""
        return {"memory_horizon": self.memory_horizon, "layers": [layer.to_json() for layer in self.layers]}

    def scalars(self) -> dict[str, float]:
        """Flat `{name: value}` for experiment trackers (TensorBoard's add_scalar, wandb.log, mlflow.log_metrics).

        Names: "<prefix>/forget_gate_mean" (GRU: update_gate_mean), "<prefix>/saturated_<gate>",
        "<prefix>/dead_units", "<prefix>/cell_max", "<prefix>/cell_growth", "memory_horizon";
        measures that do not apply (or could not be judged) are left out.
        """
        values: dict[str, float | int | None] = {}
        for layer in self.layers:
            if layer.memory_gate is not None:
                name = SERIES_NAMES[layer.memory_gate].replace(" ", "_")
                values[f"{layer.prefix}/{name}_mean"] = layer.memory_gate_mean
            for gate, share in layer.saturated:
                values[f"{layer.prefix}/saturated_{gate}"] = share
            values[f"{layer.prefix}/dead_units"] = layer.dead_units
            values[f"{layer.prefix}/cell_max"] = layer.cell_max
            values[f"{layer.prefix}/cell_growth"] = layer.cell_growth
        values["memory_horizon"] = self.memory_horizon
        return {name: float(value) for name, value in values.items() if value is not None}


def measure(analysis: Analysis) -> Measures:
    """The measures of an analysis (cut to `--layers` or not: every layer it holds), in trace order."""
    stats: dict[str, dict[str, GateStat]] = {}
    for stat in analysis.gate_stats:
        stats.setdefault(stat.prefix, {})[stat.series] = stat
    dead = dead_units_by_layer(analysis)
    layers = []
    for prefix, by_series in stats.items():
        judged = prefix not in analysis.unjudged
        memory_gate = next((g for g in _MEMORY_GATES if g in by_series), None)
        saturated: list[tuple[str, float]] = []
        for gate in GATE_ORDER:
            shares = by_series[gate] if gate in by_series and gate in GATE_SERIES and judged else None
            if shares is not None and shares.frac_low is not None and shares.frac_high is not None:
                saturated.append((gate, float(shares.frac_low) + float(shares.frac_high)))
        cell = by_series.get("c")
        layers.append(LayerMeasures(
            prefix=prefix,
            memory_gate=memory_gate,
            memory_gate_mean=None if memory_gate is None else by_series[memory_gate].mean,
            saturated=tuple(saturated),
            dead_units=len(dead.get(prefix, [])) if judged else None,
            cell_max=None if cell is None else cell.abs_max,
            cell_growth=None if cell is None else cell.growth,
        ))
    horizon = None if analysis.saliency is None else int(analysis.saliency.horizon)
    return Measures(layers=tuple(layers), memory_horizon=horizon)


# -- the timeline ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class TimelinePoint:
    """One checkpoint or epoch: its label, its number on the x axis, and its measures (None: it failed)."""

    label: str  # "epoch_3.pt", "epoch 3"
    step: int | None  # the epoch or step number; None: points are placed in the order given
    measures: Measures | None
    error: str | None = None  # why there are no measures (the one-line error of that checkpoint)
    passed: bool | None = None  # `lstmviz check`'s verdict on it; None: not checked
    link: str | None = None  # a file next to the timeline page showing this point (its report)

    def to_json(self) -> dict[str, object]:
        return {
            "label": self.label, "step": self.step, "error": self.error, "passed": self.passed, "link": self.link,
            "measures": None if self.measures is None else self.measures.to_json(),
        }


@dataclass(frozen=True)
class Timeline:
    """Measures in training order. `axis` names the x axis: "epoch", "step" or "checkpoint" (the order given)."""

    points: tuple[TimelinePoint, ...]
    axis: str = "checkpoint"

    def prefixes(self) -> list[str]:
        """Every layer of every point, in first-seen order."""
        seen: dict[str, None] = {}
        for point in self.points:
            for layer in point.measures.layers if point.measures is not None else ():
                seen.setdefault(layer.prefix, None)
        return list(seen)

    def to_json(self) -> dict[str, object]:
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
    """One measure of the timeline: its key, title, axis label and definition (the page's words)."""

    key: str
    title: str
    axis: str
    definition: str
    integer: bool = False  # counts and steps: the table shows no decimals


MEASURES: tuple[MeasureKind, ...] = (
    MeasureKind("memory_gate", "Mean forget gate", "mean gate value",
                "mean of each layer's forget gate f over every valid step and unit (a GRU's update gate z, "
                "which keeps the state when near 1 as f does); near 1 keeps memory, near 0 forgets every step"),
    MeasureKind("saturation", "Saturated gates", "share of values saturated",
                "share of each gate's values below the low or above the high saturation threshold"),
    MeasureKind("dead_units", "Dead units", "dead units", "units whose hidden state never leaves a narrow band "
                "(the dead-units finding); missing where a layer is too short to judge", integer=True),
    MeasureKind("memory_horizon", "Memory horizon", "steps back",
                "how many steps back hold the horizon share of the output's gradient saliency", integer=True),
    MeasureKind("cell_max", "Largest |c|", "largest |c|", "the largest absolute cell state over the sample (LSTM)"),
    MeasureKind("cell_growth", "|c| growth", "late / early mean |c|",
                "mean |c| over the last quarter of the sample divided by that over its first quarter (LSTM): "
                "1 is steady. A short sample starting from c = 0 grows by construction; the exploding-cell "
                "finding needs both a large |c| and growth past the threshold"),
)


def lines(timeline: Timeline, key: str) -> list[Line]:
    """The lines of one measure (`MEASURES` key) over the timeline's points; empty when no point has it."""
    found: list[Line] = []
    if key == "memory_horizon":
        horizons = _floats([None if p.measures is None else p.measures.memory_horizon for p in timeline.points])
        return [Line("memory horizon", "", None, horizons)] if any(v is not None for v in horizons) else []
    for prefix in timeline.prefixes():
        per_point = [_layer(point, prefix) for point in timeline.points]
        if key == "saturation":
            for gate in GATE_ORDER:
                shares = _floats([None if m is None else dict(m.saturated).get(gate) for m in per_point])
                if any(v is not None for v in shares):
                    found.append(Line(f"{prefix} {gate}", prefix, gate, shares))
            continue
        values = _floats([None if m is None else _value(m, key) for m in per_point])
        if any(v is not None for v in values):
            colour = next((m.memory_gate for m in per_point if m is not None), None) if key == "memory_gate" else None
            found.append(Line(prefix, prefix, colour, values))
    return found


def _layer(point: TimelinePoint, prefix: str) -> LayerMeasures | None:
    if point.measures is None:
        return None
    return next((layer for layer in point.measures.layers if layer.prefix == prefix), None)


def _value(layer: LayerMeasures, key: str) -> float | None:
    if key == "memory_gate":
        return layer.memory_gate_mean
    if key == "dead_units":
        return None if layer.dead_units is None else float(layer.dead_units)
    if key == "cell_max":
        return layer.cell_max
    if key == "cell_growth":
        return layer.cell_growth
    raise KeyError(key)


def _floats(values: Sequence[float | int | None]) -> tuple[float | None, ...]:
    return tuple(None if v is None else float(v) for v in values)


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
