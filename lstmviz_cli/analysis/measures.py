"""The numbers a run is measured by: one flat list of named `Measure`s, the one source of every output that
follows a model's gate statistics over runs.

    gate_mean, gate_std   per layer and gate (i f g o r z n): GateStat.mean / .std over every valid value
    saturation            per layer and sigmoid gate: share of values below saturation_low or above
                          saturation_high (GateStat.frac_low + frac_high; what --max-saturated judges)
    dead_units            per layer: units whose h never leaves a band dead_range wide (the dead-units finding)
    cell_max, cell_growth per LSTM layer: the largest |c| (GateStat.abs_max) and mean |c| over the last
                          quarter of sequence 0 / over its first quarter (GateStat.growth)
    memory_horizon        whole model: steps back holding horizon_mass of the output's saliency
    verify_error          whole model: max |recorded - real| of the trace

A value is None where it could not be measured: a layer too short to judge (`Analysis.unjudged`), a
model without saliency, a sample too short for |c| growth. `measure_run` makes the list once; every
reader takes it from there: `lstmviz check --json` and `lstmviz report --json` write it as `measures`
(`measures_json`), `--baseline` compares a run against an earlier one name by name (`analysis.baseline`),
a timeline reads it by kind across checkpoints or epochs (`analysis.timeline`), and `scalars` flattens it
for experiment trackers. Every value is read from the analysis (`gate_stats`, findings, saliency) or the
trace's own verification error, never recomputed, so the check, the page, the baseline and the timeline
agree. Also what a run is compared *on*: its recurrent architecture and its sample (`architecture`,
`sample_fingerprint`), because a baseline of another model or another input compares nothing.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lstmviz_cli.analysis.findings import dead_units_by_layer
from lstmviz_cli.analysis.records import Analysis, FigureRef
from lstmviz_cli.loading.records import JSON, SampleInput
from lstmviz_cli.output import json_number
from lstmviz_cli.tracing.records import Trace

# The measures, in the order the list holds them; their tolerances are `checksettings.Tolerances`' fields.
MEASURES = ("gate_mean", "gate_std", "saturation", "dead_units", "cell_max", "cell_growth", "memory_horizon",
            "verify_error")
LABELS = {
    "gate_mean": "gate mean", "gate_std": "gate std", "saturation": "saturation", "dead_units": "dead units",
    "cell_max": "cell max", "cell_growth": "cell growth", "memory_horizon": "memory horizon",
    "verify_error": "verification error",
}
# Sigmoid and tanh gates whose statistics are measured (an RNN's pre-activation "a" is no gate).
_GATES = ("i", "f", "g", "o", "r", "z", "n")


@dataclass(frozen=True)
class Measure:
    """One named number of one run: `value` None when it could not be measured (and why is on the page)."""

    measure: str  # one of MEASURES
    prefix: str | None  # the layer ("lstm/l0/fwd"); None for whole-model measures
    series: str | None  # the gate ("f"); None for per-layer and whole-model measures
    value: float | None
    figure: FigureRef | None = None  # the report figure that shows it

    @property
    def name(self) -> str:
        """ "gate mean lstm/l0/fwd f", "dead units lstm/l0/fwd", "memory horizon": stable across runs."""
        return " ".join(part for part in (LABELS[self.measure], self.prefix, self.series) if part)

    @property
    def scalar_name(self) -> str:
        """ "lstm/l0/fwd/gate_mean_f", "lstm/l0/fwd/dead_units", "memory_horizon": the name as a tracker tag
        (layer first, so TensorBoard and W&B group a layer's numbers; no spaces, which TensorBoard rewrites)."""
        leaf = f"{self.measure}_{self.series}" if self.series else self.measure
        return f"{self.prefix}/{leaf}" if self.prefix else leaf

    def to_json(self) -> dict[str, JSON]:
        """One entry of the JSON's `measures`: {"name", "measure", "prefix", "series", "value"}."""
        return {"name": self.name, "measure": self.measure, "prefix": self.prefix, "series": self.series,
                "value": json_number(self.value)}


def measure_run(trace: Trace, analysis: Analysis) -> list[Measure]:
    """Every measure of a run, in a stable order (measure kind, then trace order), values rounded as the JSON
    writes them (6 significant digits: the same model measures exactly the same against its own JSON)."""
    unjudged = analysis.unjudged
    found: list[Measure] = []
    gates = [stat for stat in analysis.gate_stats if stat.series in _GATES]
    found += [Measure("gate_mean", s.prefix, s.series, json_number(s.mean), FigureRef("gate-stats")) for s in gates]
    found += [Measure("gate_std", s.prefix, s.series, json_number(s.std), FigureRef("gate-stats")) for s in gates]
    for stat in analysis.gate_stats:
        if stat.frac_low is None or stat.frac_high is None:
            continue
        share = None if stat.prefix in unjudged else json_number(float(stat.frac_low) + float(stat.frac_high))
        found.append(Measure("saturation", stat.prefix, stat.series, share, FigureRef("saturation", stat.prefix)))
    dead = dead_units_by_layer(analysis)
    for layer in trace.layers:  # one per recurrent layer, in trace order (`layer_prefixes` reads them)
        count = None if layer.prefix in unjudged else float(len(dead.get(layer.prefix, [])))
        found.append(Measure("dead_units", layer.prefix, None, count, FigureRef("activity", layer.prefix)))
    cells = [stat for stat in analysis.gate_stats if stat.series == "c"]
    found += [Measure("cell_max", s.prefix, None, json_number(s.abs_max), FigureRef("activity", s.prefix))
              for s in cells]
    found += [Measure("cell_growth", s.prefix, None, json_number(s.growth), FigureRef("activity", s.prefix))
              for s in cells]
    found.append(Measure("memory_horizon", None, None, memory_horizon(analysis), FigureRef("saliency")))
    error = trace.verify_error
    found.append(Measure("verify_error", None, None,
                         None if error is None else json_number(error) if math.isfinite(error) else math.inf))
    return found


def memory_horizon(analysis: Analysis) -> float | None:
    """The saliency's memory horizon in steps; None without saliency or with too few steps to judge."""
    saliency = analysis.saliency
    if saliency is None:
        return None
    counted = sum(math.isfinite(float(v)) for v in saliency.values)
    return None if counted < analysis.thresholds.min_steps else float(saliency.horizon)


def measures_json(measures: Sequence[Measure]) -> list[JSON]:
    """The JSON's `measures`, as `lstmviz check --json`, `lstmviz report --json` and a timeline's points write it."""
    return [measure.to_json() for measure in measures]


def scalars(measures: Sequence[Measure]) -> dict[str, float]:
    """Every measured value as a flat {tag: value} for experiment trackers (TensorBoard's add_scalar,
    wandb.log, mlflow.log_metrics), by `Measure.scalar_name`; measures without a value are left out."""
    return {m.scalar_name: float(m.value) for m in measures if m.value is not None}


def layer_prefixes(measures: Sequence[Measure]) -> list[str]:
    """The recurrent layers measured, in trace order (the dead-units measures: one per layer)."""
    ordered = [m.prefix for m in measures if m.measure == "dead_units" and m.prefix is not None]
    ordered += [m.prefix for m in measures if m.prefix is not None]
    return list(dict.fromkeys(ordered))


def architecture(trace: Trace) -> list[dict[str, str | int]]:
    """The recurrent layers a run measured: prefix, kind and sizes (what a baseline must share)."""
    return [
        {"prefix": layer.prefix, "kind": layer.config.kind, "input_size": layer.input_width,
         "hidden_size": layer.config.hidden_size, "proj_size": layer.config.proj_size}
        for layer in trace.layers
    ]


def sample_fingerprint(sample: SampleInput) -> dict[str, str | int]:
    """The sample a run measured on: its shape and a SHA-256 of its values (dtype, shape and bytes)."""
    values = np.ascontiguousarray(sample.values)
    digest = hashlib.sha256()
    digest.update(f"{values.dtype.str}{values.shape}".encode())
    digest.update(values.tobytes())
    return {"batch": sample.batch, "steps": sample.steps, "sha256": digest.hexdigest()}
