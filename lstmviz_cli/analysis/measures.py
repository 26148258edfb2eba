"""The numbers a checkpoint is measured by over time: per-gate statistics, saturation, dead units, memory
horizon and verification error, each named so that two runs can be compared measure by measure.

`lstmviz check --json` writes them (`measures`), and `--baseline` compares a run against them
(`analysis.baseline`). Every value is read from the analysis (`gate_stats`, findings, saliency) or the
trace's own verification error, never recomputed, so the check, the page and the baseline agree.
Also what a run is compared *on*: its recurrent architecture and its sample (`architecture`,
`sample_fingerprint`), because a baseline of another model or another input compares nothing.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass

import numpy as np

from lstmviz_cli.analysis.records import Analysis, FigureRef
from lstmviz_cli.loading.records import SampleInput
from lstmviz_cli.output import json_number
from lstmviz_cli.tracing.records import Trace

# The measures, in the order tables list them; their tolerances are `checksettings.Tolerances`' fields.
MEASURES = ("gate_mean", "gate_std", "saturation", "dead_units", "memory_horizon", "verify_error")
LABELS = {
    "gate_mean": "gate mean", "gate_std": "gate std", "saturation": "saturation", "dead_units": "dead units",
    "memory_horizon": "memory horizon", "verify_error": "verification error",
}
# Sigmoid and tanh gates whose statistics are measured (an RNN's pre-activation "a" is no gate).
_GATES = ("i", "f", "g", "o", "r", "z", "n")
# The analysis's finding code for dead units; the check and the measures read its unit lists.
_DEAD_CODES = ("dead_units",)


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
    for layer in trace.layers:
        count = None if layer.prefix in unjudged else float(len(dead.get(layer.prefix, [])))
        found.append(Measure("dead_units", layer.prefix, None, count, FigureRef("activity", layer.prefix)))
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


def dead_units_by_layer(analysis: Analysis) -> dict[str, list[int]]:
    """Dead units per layer prefix, as the analysis's findings name them."""
    dead: dict[str, list[int]] = {}
    for finding in analysis.findings:
        if finding.code in _DEAD_CODES:
            dead.setdefault(finding.prefix, [])
            dead[finding.prefix] = sorted(set(dead[finding.prefix]) | {int(u) for u in finding.units})
    return dead


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
