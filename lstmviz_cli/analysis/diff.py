"""What changed between two checkpoints of one architecture, as plain data (NumPy, no torch).

Gate statistics and saturation come from the analysis of each checkpoint (the same numbers their
reports show); the diff only subtracts them. Activations are compared on one shared sample.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lstmviz_cli.analysis.records import Analysis
from lstmviz_cli.errors import InputError
from lstmviz_cli.families import FAMILIES
from lstmviz_cli.tracing.records import LayerTrace, Trace

HIST_BINS = 40
TOP_UNITS = 8
_EPS = 1e-12


@dataclass
class WeightChange:
    """One gate's weights (input and recurrent matrices and biases together) before and after."""

    prefix: str
    gate: str  # "i", "f", ... or "proj" for weight_hr
    before_mean: float
    before_std: float
    after_mean: float
    after_std: float
    rel_change: float  # ||after - before|| / ||before||
    max_abs_change: float
    bin_edges: list[float]
    hist_before: list[int]
    hist_after: list[int]


@dataclass
class GateStatChange:
    """One series of one layer: the analysis's statistics of both checkpoints."""

    prefix: str
    series: str
    before_mean: float
    after_mean: float
    before_std: float
    after_std: float
    before_low: float | None  # share of values < saturation_low (gates)
    after_low: float | None
    before_high: float | None  # share of values > saturation_high (gates)
    after_high: float | None

    @property
    def delta_mean(self) -> float:
        return self.after_mean - self.before_mean

    @property
    def delta_saturated(self) -> float | None:
        if self.before_low is None or self.before_high is None or self.after_low is None or self.after_high is None:
            return None
        return (self.after_low + self.after_high) - (self.before_low + self.before_high)


@dataclass
class UnitChange:
    """How much one unit's behaviour changed on the shared sample, and its weights."""

    prefix: str
    unit: int
    activation_change: float  # mean over steps and series of |after - before|
    weight_change: float  # ||Δ rows of this unit in every gate|| / ||rows before||
    series_change: dict[str, float] = field(default_factory=dict)


@dataclass
class DiffResult:
    """Everything the diff page and its JSON (`analysis.serialize.diff_json`) show."""

    before: str
    after: str
    sample: str
    weights: list[WeightChange]
    gate_stats: list[GateStatChange]
    units: list[UnitChange]  # the most changed units per layer, most changed first
    max_weight_change: float
    max_activation_change: float

    @property
    def unchanged(self) -> bool:
        """True when no weight and no activation moved at all (a model against itself)."""
        return self.max_weight_change == 0.0 and self.max_activation_change == 0.0


# -- architecture --------------------------------------------------------------------------------------
def architecture_difference(before: Trace, after: Trace) -> str | None:
    """The first difference between two traced architectures, in words; None when they match."""
    names_a, names_b = sorted(before.modules), sorted(after.modules)
    if names_a != names_b:
        only_a = sorted(set(names_a) - set(names_b))
        only_b = sorted(set(names_b) - set(names_a))
        if only_a:
            return f"recurrent module {only_a[0]!r} is only in BEFORE"
        return f"recurrent module {only_b[0]!r} is only in AFTER"
    for name in names_a:
        cfg_a, cfg_b = before.modules[name].to_dict(), after.modules[name].to_dict()
        for key in cfg_a:
            if cfg_a[key] != cfg_b.get(key):
                return f"{name}: {key} is {cfg_a[key]!r} in BEFORE but {cfg_b.get(key)!r} in AFTER"
    layers_a = {layer.prefix: layer for layer in before.layers}
    layers_b = {layer.prefix: layer for layer in after.layers}
    if sorted(layers_a) != sorted(layers_b):
        return f"traced layers differ: {sorted(layers_a)} vs {sorted(layers_b)}"
    for prefix, layer in layers_a.items():
        other = layers_b[prefix]
        for key in sorted(set(layer.weights) | set(other.weights)):
            a, b = layer.weights.get(key), other.weights.get(key)
            shape_a = None if a is None else a.shape
            shape_b = None if b is None else b.shape
            if shape_a != shape_b:
                return f"{prefix}: {key} has shape {shape_a} in BEFORE but {shape_b} in AFTER"
    return None


def require_same_architecture(before: Trace, after: Trace) -> None:
    """Raise a one-line InputError naming the difference when the two cannot be compared."""
    difference = architecture_difference(before, after)
    if difference is not None:
        raise InputError(f"cannot diff different architectures: {difference}")


# -- comparisons ----------------------------------------------------------------------------------------
def _gate_blocks(layer: LayerTrace) -> dict[str, list[np.ndarray]]:
    """Each gate's parameters (its rows of weight_ih, weight_hh, bias_ih, bias_hh), flattened."""
    family = FAMILIES.get(layer.family)
    gates = family.gates if family is not None else ()  # row blocks of weight_ih / weight_hh / biases
    hidden = layer.config.hidden_size
    blocks: dict[str, list[np.ndarray]] = {g: [] for g in gates}
    for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        array = layer.weights.get(key)
        if array is None:
            continue
        for k, gate in enumerate(gates):
            blocks[gate].append(np.asarray(array[k * hidden : (k + 1) * hidden], dtype=np.float64).reshape(-1))
    if "weight_hr" in layer.weights:
        blocks["proj"] = [np.asarray(layer.weights["weight_hr"], dtype=np.float64).reshape(-1)]
    return blocks


def compare_weights(before: LayerTrace, after: LayerTrace) -> list[WeightChange]:
    """Per gate: distribution (shared-bin histograms), mean/std and relative change of the weights."""
    changes: list[WeightChange] = []
    blocks_a, blocks_b = _gate_blocks(before), _gate_blocks(after)
    for gate, parts in blocks_a.items():
        if not parts:
            continue
        a = np.concatenate(parts)
        b = np.concatenate(blocks_b[gate])
        low, high = float(min(a.min(), b.min())), float(max(a.max(), b.max()))
        if high <= low:
            high = low + 1.0
        edges = np.linspace(low, high, HIST_BINS + 1)
        delta = b - a
        norm = float(np.linalg.norm(a))
        changes.append(WeightChange(
            prefix=before.prefix, gate=gate,
            before_mean=float(a.mean()), before_std=float(a.std()),
            after_mean=float(b.mean()), after_std=float(b.std()),
            rel_change=float(np.linalg.norm(delta) / max(norm, _EPS)),
            max_abs_change=float(np.abs(delta).max()) if delta.size else 0.0,
            bin_edges=[float(e) for e in edges],
            hist_before=[int(c) for c in np.histogram(a, edges)[0]],
            hist_after=[int(c) for c in np.histogram(b, edges)[0]],
        ))
    return changes


def compare_gate_stats(before: Analysis, after: Analysis) -> list[GateStatChange]:
    """Pair the two analyses' gate statistics (prefix, series) in the BEFORE order."""
    index = {(s.prefix, s.series): s for s in after.gate_stats}
    changes = []
    for a in before.gate_stats:
        b = index.get((a.prefix, a.series))
        if b is None:
            continue
        changes.append(GateStatChange(
            prefix=a.prefix, series=a.series, before_mean=a.mean, after_mean=b.mean,
            before_std=a.std, after_std=b.std, before_low=a.frac_low, after_low=b.frac_low,
            before_high=a.frac_high, after_high=b.frac_high,
        ))
    return changes


def compare_units(before: LayerTrace, after: LayerTrace, *, top: int = TOP_UNITS) -> list[UnitChange]:
    """Units ranked by how much their activations moved on the shared sample (weights as a tiebreak)."""
    per_series: dict[str, np.ndarray] = {}
    for name, array in before.series.items():
        other = after.series.get(name)
        if other is None or other.shape != array.shape:
            continue
        diff = np.abs(np.asarray(other, np.float64) - np.asarray(array, np.float64))
        per_series[name] = np.nanmean(diff.reshape(-1, diff.shape[-1]), axis=0)
    if not per_series:
        return []
    units = min(v.shape[0] for v in per_series.values())
    score = np.mean([v[:units] for v in per_series.values()], axis=0)
    weight = _unit_weight_change(before, after, units)
    order = sorted(range(units), key=lambda u: (-score[u], -weight[u], u))[:top]
    return [
        UnitChange(prefix=before.prefix, unit=int(u), activation_change=float(score[u]),
                   weight_change=float(weight[u]),
                   series_change={name: float(v[u]) for name, v in per_series.items() if u < v.shape[0]})
        for u in order
    ]


def _unit_weight_change(before: LayerTrace, after: LayerTrace, units: int) -> np.ndarray:
    """Relative change of each unit's rows across every gate block of weight_ih/weight_hh/biases."""
    hidden = before.config.hidden_size
    family = FAMILIES.get(before.family)
    gates = family.n_gates if family is not None else 1
    num = np.zeros(hidden)
    den = np.zeros(hidden)
    for key in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        if key not in before.weights or key not in after.weights:
            continue
        a = np.asarray(before.weights[key], np.float64).reshape(gates, hidden, -1)
        b = np.asarray(after.weights[key], np.float64).reshape(gates, hidden, -1)
        num += ((b - a) ** 2).sum(axis=(0, 2))
        den += (a**2).sum(axis=(0, 2))
    result = np.sqrt(num) / np.maximum(np.sqrt(den), _EPS)
    out = np.zeros(units)
    out[: min(units, hidden)] = result[: min(units, hidden)]
    return out


def diff_traces(before: Trace, after: Trace, before_analysis: Analysis, after_analysis: Analysis, *,
                before_name: str, after_name: str, sample: str) -> DiffResult:
    """The whole comparison. Both traces must come from the same sample."""
    require_same_architecture(before, after)
    weights: list[WeightChange] = []
    units: list[UnitChange] = []
    max_act = 0.0
    for layer in before.layers:
        other = after.layer(layer.prefix)
        weights.extend(compare_weights(layer, other))
        units.extend(compare_units(layer, other))
        for name, array in layer.series.items():
            if name in other.series and other.series[name].shape == array.shape:
                delta = np.abs(np.asarray(other.series[name], np.float64) - np.asarray(array, np.float64))
                if delta.size and np.isfinite(delta).any():
                    max_act = max(max_act, float(np.nanmax(delta)))
    return DiffResult(
        before=before_name, after=after_name, sample=sample, weights=weights,
        gate_stats=compare_gate_stats(before_analysis, after_analysis), units=units,
        max_weight_change=max((w.max_abs_change for w in weights), default=0.0),
        max_activation_change=max_act,
    )
