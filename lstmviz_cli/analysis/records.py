"""The analysis stage: pure NumPy over a Trace — gate statistics, saturation, units, memory, findings.

JSON schema of `Analysis.to_json()` (what `lstmviz report ... --json summary.json` writes, next to
`"generator": "lstmviz-generated"`; floats rounded to 6 significant digits; NaN/inf become null;
everything about "units" and "steps" refers to batch element 0 unless said otherwise):

    thresholds     {name: number}: every Thresholds field used (saturation_low, saturation_high, ...)
    prediction     null | {"kind": "topk"|"values", "step": int|null, "note": str, "basis": str,
                           "items": [{"label": str, "value": probability or predicted value}]}
                   # null when the output is no prediction: a rebuild without a known head, or
                   # --recurrent-only. "basis" says what the number rests on (the rebuilt head and
                   # its wiring, "assumed: ..." when guessed, or "your model's own output").
    model          {"source": "rebuilt"|"torchscript"|"model-class"|"pickled-module", "description",
                    "tensors": null | {"total", "placed", "unused": [key], "front": [module]},
                    "head": null | {"modules", "widths", "activation", "wiring", "wiring_text",
                                    "source", "assumed"},
                    "head_note": str, "recurrent_only": bool,
                    "verification": [{"level": "gates"|"recurrence"|"names"|"model", "label",
                                      "error": number|null, "status": "ok"|"bad"|"not-checked",
                                      "detail"}]}
    gate_stats     [{"prefix": "lstm/l0/fwd", "series": "f", "mean", "std",
                     "frac_low", "frac_high",      # share < saturation_low / > saturation_high; null
                                                   # for series that are not sigmoid gates
                     "time_std"}]                  # "c" only: mean over units of the std over time
    saturation     [{"prefix", "series", "frac_low": [per unit], "frac_high": [per unit]}]
    units          {"features": {feature: definition},
                    "ranked": [{"feature", "key": "lstm/l0/fwd/c", "unit": int, "r": float}]}
                   # Pearson r over the steps; the 5 strongest units per feature, sorted by |r|
    saliency       null | {"step": int, "target": str, "values": [‖∂y/∂x_t‖ per input step],
                           "horizon": int, "window_start": int (steps before it: null values),
                           "horizon_mass": 0.9, "param_norms": {name: ‖∂y/∂θ‖},
                           "gate_norms": {prefix: {gate: ‖∂y/∂θ‖ over that gate's rows}}}
    memory_probe   null | {"prefix", "state": "c"|"h", "lengths": [int], "dependence": [0..1]}
    trajectories   [{"prefix", "series", "explained": [pc1, pc2], "jumpiness": float}]
    findings       [{"code", "severity": "info"|"warning"|"error", "prefix", "units": [int],
                     "value", "threshold", "message", "anchor"}]
                   # codes: dead_units, saturated_gate, forget_pinned_low, forget_pinned_high,
                   # exploding_cell, vanishing_gradient; "anchor" is the report figure's HTML id
    notes          [str]: analyses that were skipped, and why
    unjudged       {prefix: values per unit}: layers with fewer than thresholds.min_steps values per
                   unit, whose dead/saturated/forget-gate/cell findings were skipped (see notes)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from lstmviz_cli.loading.records import ModelInfo
from lstmviz_cli.tracing.provenance import Provenance
from lstmviz_cli.tracing.records import GATE_SERIES, SERIES_NAMES, LayerTrace, Trace

SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True)
class Thresholds:
    """Every threshold the analysis uses; `lstmviz check` overrides the same fields."""

    saturation_low: float = 0.1  # a gate value below this is left-saturated (Karpathy et al. 2015)
    saturation_high: float = 0.9  # ... above this, right-saturated
    dead_range: float = 0.02  # a unit whose h stays within a band this wide is dead
    dead_fraction: float = 0.1  # warn when at least this fraction of a layer's units is dead
    saturated_unit: float = 0.9  # a gate unit saturated (either side) this often is "always saturated"
    saturated_fraction: float = 0.75  # warn when at least this fraction of a gate's units is
    forget_pinned_high: float = 0.98  # a forget unit above this 95% of the time cannot forget
    forget_pinned_fraction: float = 0.5  # warn when this fraction of forget units is pinned
    cell_max: float = 50.0  # |c| above this is large (counters reach ~20-60)
    cell_growth: float = 2.0  # ... and exploding when its late mean |c| is this many times the early one
    vanishing_ratio: float = 1e-3  # saliency of the oldest steps / peak below this is vanishing
    horizon_mass: float = 0.9  # the memory horizon holds this share of the saliency
    # Dead, saturated, forget-gate and cell-state findings (and the check's memory horizon) need
    # this many values per unit (valid steps over all sequences) to judge: a unit seen once has
    # zero range and would read as dead.
    min_steps: int = 4

    def to_json(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass
class GateStat:
    """Summary numbers of one series of one layer over every valid step of every sequence."""

    prefix: str
    series: str
    mean: float
    std: float
    frac_low: float | None  # fraction of values < saturation_low (gates only)
    frac_high: float | None  # fraction of values > saturation_high (gates only)
    time_std: float | None = None  # "c" only: mean over units of the std over time


@dataclass
class Prediction:
    """What the model predicts for the sample: top-k labels with probabilities, or raw values."""

    kind: str  # "topk" | "values"
    items: list[tuple[str, float]]
    step: int | None = None  # the time step the prediction is read at (None: no time axis)
    note: str = ""
    basis: str = ""  # what the number rests on: "your model's own output", the rebuilt head and its wiring


@dataclass
class Saturation:
    """Per unit, the fraction of steps a gate is left- (< low) and right-saturated (> high)."""

    prefix: str
    series: str
    frac_low: np.ndarray  # (units,)
    frac_high: np.ndarray  # (units,)


@dataclass
class UnitCorrelation:
    """One unit's Pearson correlation with one per-step feature."""

    feature: str
    key: str  # "<prefix>/<series>", e.g. "lstm/l0/fwd/c"
    unit: int
    r: float


@dataclass
class SaliencyResult:
    """‖∂y/∂x_t‖ of one output at `step` for every input step, and gradient norms per parameter."""

    step: int
    target: str  # what y is, e.g. "logit of 'e' at step 211"
    values: np.ndarray  # (time,) float64
    param_norms: dict[str, float] = field(default_factory=dict)
    horizon: int = 0
    # prefix -> gate -> ‖∂y/∂θ‖ over that gate's rows of W_ih, W_hh and the biases
    gate_norms: dict[str, dict[str, float]] = field(default_factory=dict)
    # Steps before this were run without gradients (a long sequence under the memory budget):
    # their values are NaN, and the gradient norms cover steps window_start..step only.
    window_start: int = 0


@dataclass
class MemoryProbe:
    """How much the recurrent stack's final cell state still depends on step 0, per length."""

    prefix: str
    lengths: list[int]
    dependence: list[float]  # spread of the final state across keys, relative to length 1
    state: str = "c"


@dataclass
class Trajectory:
    """PCA of one state series over time (batch element 0)."""

    prefix: str
    series: str
    coords: np.ndarray  # (time, 2)
    explained: tuple[float, float]  # share of variance per component
    jumpiness: float  # median step length / RMS distance from the mean: ~0 smooth, ~1 jumpy


@dataclass
class Finding:
    """One diagnostic result; the report shows it and `lstmviz check` turns it into pass/fail."""

    code: str
    severity: str  # "info" | "warning" | "error"
    prefix: str
    units: list[int]
    value: float
    threshold: float
    message: str
    anchor: str  # HTML id of the figure that shows it


@dataclass
class Analysis:
    """Everything the analysis stage found, as plain data."""

    gate_stats: list[GateStat]
    prediction: Prediction | None
    saturation: list[Saturation] = field(default_factory=list)
    features: dict[str, np.ndarray] = field(default_factory=dict)  # per-step feature values
    feature_definitions: dict[str, str] = field(default_factory=dict)
    units: list[UnitCorrelation] = field(default_factory=list)
    saliency: SaliencyResult | None = None
    memory_probe: MemoryProbe | None = None
    trajectories: list[Trajectory] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    thresholds: Thresholds = field(default_factory=Thresholds)
    notes: list[str] = field(default_factory=list)
    tokens: list[str] | None = None  # one string per step of batch element 0, when known
    # Layers too short to judge (prefix -> values per unit, below thresholds.min_steps): their
    # dead/saturated/forget/cell findings were skipped, and `lstmviz check` skips them too.
    unjudged: dict[str, int] = field(default_factory=dict)
    provenance: Provenance | None = None  # what is known of the model and what was verified

    def to_json(self) -> dict[str, Any]:
        """JSON-ready, deterministic (fixed key order, rounded floats, no NaN). Schema: module docstring."""
        return {
            "thresholds": self.thresholds.to_json(),
            "prediction": None
            if self.prediction is None
            else {
                "kind": self.prediction.kind,
                "step": self.prediction.step,
                "note": self.prediction.note,
                "basis": self.prediction.basis,
                "items": [{"label": label, "value": _num(value)} for label, value in self.prediction.items],
            },
            "model": None if self.provenance is None else self.provenance.to_json(),
            "gate_stats": [
                {
                    "prefix": s.prefix,
                    "series": s.series,
                    "mean": _num(s.mean),
                    "std": _num(s.std),
                    "frac_low": _num(s.frac_low),
                    "frac_high": _num(s.frac_high),
                    "time_std": _num(s.time_std),
                }
                for s in self.gate_stats
            ],
            "saturation": [
                {
                    "prefix": s.prefix,
                    "series": s.series,
                    "frac_low": [_num(v) for v in s.frac_low],
                    "frac_high": [_num(v) for v in s.frac_high],
                }
                for s in self.saturation
            ],
            "units": {
                "features": dict(self.feature_definitions),
                "ranked": [
                    {"feature": u.feature, "key": u.key, "unit": u.unit, "r": _num(u.r)} for u in self.units
                ],
            },
            "saliency": None
            if self.saliency is None
            else {
                "step": self.saliency.step,
                "target": self.saliency.target,
                "values": [_num(v) for v in self.saliency.values],
                "horizon": self.saliency.horizon,
                "window_start": self.saliency.window_start,
                "horizon_mass": self.thresholds.horizon_mass,
                "param_norms": {k: _num(v) for k, v in sorted(self.saliency.param_norms.items())},
                "gate_norms": {
                    prefix: {gate: _num(v) for gate, v in gates.items()}
                    for prefix, gates in sorted(self.saliency.gate_norms.items())
                },
            },
            "memory_probe": None
            if self.memory_probe is None
            else {
                "prefix": self.memory_probe.prefix,
                "state": self.memory_probe.state,
                "lengths": list(self.memory_probe.lengths),
                "dependence": [_num(v) for v in self.memory_probe.dependence],
            },
            "trajectories": [
                {
                    "prefix": t.prefix,
                    "series": t.series,
                    "explained": [_num(v) for v in t.explained],
                    "jumpiness": _num(t.jumpiness),
                }
                for t in self.trajectories
            ],
            "findings": [
                {
                    "code": f.code,
                    "severity": f.severity,
                    "prefix": f.prefix,
                    "units": list(f.units),
                    "value": _num(f.value),
                    "threshold": _num(f.threshold),
                    "message": f.message,
                    "anchor": f.anchor,
                }
                for f in self.findings
            ],
            "notes": list(self.notes),
            "unjudged": dict(self.unjudged),
        }


def _num(value: float | None) -> float | None:
    """A JSON-safe float: 6 significant digits (stable across platforms), None for NaN/inf/None."""
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return float(f"{value:.6g}")


# -- helpers ------------------------------------------------------------------------------------


def anchor_id(*parts: str) -> str:
    """An HTML id built from names that may hold any character (module names are user data)."""
    text = "-".join(parts)
    safe = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    return "-".join(piece for piece in safe.split("-") if piece) or "x"


CHUNK_ROWS = 8192  # rows per float64 chunk in reductions over long traces (bounded temporaries)


def _without_padding(flat: np.ndarray) -> np.ndarray:
    """Rows that are not padding (NaN); the array itself, not a copy, when there is none."""
    keep = ~np.isnan(flat).any(axis=1)
    return flat if keep.all() else flat[keep]


def valid_rows(array: np.ndarray) -> np.ndarray:
    """(batch, time, units) -> (n, units) of every step that is not padding (NaN rows dropped).

    In the stored dtype, and a view when nothing is padded: a T = 100,000 x 1024 series is 0.4 GB
    in float32 and would be 0.8 GB more per float64 copy. Reductions that need float64 take it
    chunk by chunk (`mean_std`).
    """
    return _without_padding(np.asarray(array).reshape(-1, array.shape[-1]))


def first_sequence(array: np.ndarray) -> np.ndarray:
    """(batch, time, units) -> (time', units) of batch element 0 without padded steps (stored dtype)."""
    return _without_padding(np.asarray(array[0]))


def _chunks(rows: np.ndarray) -> Any:
    for start in range(0, len(rows), CHUNK_ROWS):
        yield rows[start : start + CHUNK_ROWS].astype(np.float64)


def column_means(rows: np.ndarray) -> np.ndarray:
    """Per-column float64 means of (n, units), chunk by chunk."""
    total = np.zeros(rows.shape[1])
    for chunk in _chunks(rows):
        total += chunk.sum(axis=0)
    return total / max(len(rows), 1)


def mean_std(rows: np.ndarray, axis: int | None = None) -> tuple[Any, Any]:
    """Float64 mean and (population) std of all values (axis None) or per column (axis 0), in chunks."""
    means = column_means(rows)
    mean = means.mean() if axis is None else means
    squares = np.zeros(rows.shape[1])
    for chunk in _chunks(rows):
        squares += ((chunk - mean) ** 2).sum(axis=0)
    n = max(len(rows), 1)
    if axis is None:
        return float(mean), float(np.sqrt(squares.sum() / (n * rows.shape[1])))
    return mean, np.sqrt(squares / n)


# -- gate statistics (report section "Gate statistics") -----------------------------------------


def gate_statistics(trace: Trace, thresholds: Thresholds | None = None) -> list[GateStat]:
    """Mean, std and saturated fractions of every series of every layer, in trace order."""
    th = thresholds or Thresholds()
    stats: list[GateStat] = []
    for layer in trace.layers:
        for name, array in layer.series.items():
            rows = valid_rows(array)
            if rows.size == 0:
                continue
            is_gate = name in GATE_SERIES
            time_std = None
            if name == "c":
                per_seq = [first_sequence(array[b : b + 1]) for b in range(array.shape[0])]
                stds = [mean_std(seq, axis=0)[1].mean() for seq in per_seq if len(seq) > 1]
                time_std = float(np.mean(stds)) if stds else 0.0
            mean, std = mean_std(rows)
            stats.append(
                GateStat(
                    prefix=layer.prefix,
                    series=name,
                    mean=mean,
                    std=std,
                    frac_low=float((rows < th.saturation_low).mean()) if is_gate else None,
                    frac_high=float((rows > th.saturation_high).mean()) if is_gate else None,
                    time_std=time_std,
                )
            )
    return stats


# -- prediction (report summary) ----------------------------------------------------------------


def _probabilities(vector: np.ndarray) -> np.ndarray:
    """Probabilities from logits, log-probabilities or probabilities, whichever the model outputs."""
    v = vector.astype(np.float64)
    if (v >= 0).all() and abs(v.sum() - 1.0) < 1e-3:
        return v
    if (v <= 0).all() and abs(np.exp(v).sum() - 1.0) < 1e-3:
        return np.exp(v)
    shifted = np.exp(v - v.max())
    return shifted / shifted.sum()


def predict(
    output: np.ndarray | None, info: ModelInfo | None, *, last_step: int | None = None, top_k: int = 5,
    provenance: Provenance | None = None,
) -> Prediction | None:
    """The model's prediction for batch element 0 from its first output tensor, or None.

    None when there is no prediction to read: no output, or (per `provenance`) a rebuild without
    a known head or --recurrent-only, whose output is the last recurrent layer's states. Classes
    only when they are classes: next tokens when the width is the vocabulary's (task char-lm or
    none declared), classes when it matches `output_labels` or the task is "classification"; a
    one-wide output is a value; anything else is shown as output values, never softmaxed.
    Per-step outputs are read after `last_step` (default the last step).
    """
    from lstmviz_cli.analysis.textfeatures import display_token

    if output is None or (provenance is not None and not provenance.has_head):
        return None
    out = np.asarray(output, dtype=np.float64)
    if out.ndim == 0 or out.size == 0:
        return None
    step = None
    if out.ndim >= 3:
        step = out.shape[1] - 1 if last_step is None else int(last_step)
        vector = out[0, step].reshape(-1)
    elif out.ndim == 2:
        vector = out[0]
    else:
        vector = out
    basis = _basis(provenance)
    if not np.isfinite(vector).all():
        return Prediction(kind="values", items=[], step=step, note="the model's output holds NaN or inf", basis=basis)
    task = info.task if info else None
    vocab = info.vocab if info else None
    labels = info.output_labels if info else None
    width = vector.shape[0]
    after = f" after step {step}" if step is not None else ""
    at = f" at step {step}" if step is not None else ""
    if vocab is not None and len(vocab) == width and task in (None, "char-lm"):
        names = [display_token(str(v)) for v in vocab]
        return _top(vector, names, top_k, step, "most likely next tokens" + after, basis)
    if labels is not None and len(labels) == width and task != "regression":
        return _top(vector, [str(v) for v in labels], top_k, step, "most likely classes" + at, basis)
    if task == "classification":
        return _top(vector, [f"class {k}" for k in range(width)], top_k, step, "most likely classes" + at, basis)
    if task == "char-lm":
        return _top(vector, [f"token {k}" for k in range(width)], top_k, step, "most likely next tokens" + after, basis)
    names = labels if labels is not None and len(labels) == width else [f"y{k}" for k in range(width)]
    shown = min(width, 16)
    first = f", first {shown} of {width}" if width > shown else ""
    if width == 1 or task == "regression":
        note = "predicted value" + ("s" if width > 1 else "") + at + (f" ({first[2:]})" if first else "")
    else:
        note = (f"output values{at} (width {width}{first}; not read as classes: no vocabulary, output_labels "
                "or declared task says what they are)")
    return Prediction("values", [(str(names[k]), float(vector[k])) for k in range(shown)], step, note, basis)


def _top(vector: np.ndarray, names: list[str], top_k: int, step: int | None, note: str, basis: str) -> Prediction:
    probs = _probabilities(vector)
    order = np.argsort(-probs, kind="stable")[: min(top_k, len(names))]
    return Prediction("topk", [(names[k], float(probs[k])) for k in order], step, note, basis)


def _basis(provenance: Provenance | None) -> str:
    if provenance is None:
        return ""
    if provenance.head is not None:
        return provenance.head.basis()
    if provenance.source == "model-class":
        return "your model's own output (--model-class)"
    if provenance.source == "pickled-module":
        return "your model's own output (the pickled module)"
    return ""


# -- saturation (Karpathy, Johnson & Fei-Fei 2015) -------------------------------------------------


def gate_saturation(trace: Trace, thresholds: Thresholds | None = None) -> list[Saturation]:
    """Per gate and unit: fraction of valid steps below `saturation_low` and above `saturation_high`."""
    th = thresholds or Thresholds()
    result: list[Saturation] = []
    for layer in trace.layers:
        for name, array in layer.series.items():
            if name not in GATE_SERIES:
                continue
            rows = valid_rows(array)
            if rows.size == 0:
                continue
            result.append(
                Saturation(
                    prefix=layer.prefix,
                    series=name,
                    frac_low=(rows < th.saturation_low).mean(axis=0),
                    frac_high=(rows > th.saturation_high).mean(axis=0),
                )
            )
    return result


# -- interpretable units --------------------------------------------------------------------------

UNIT_SERIES = ("c", "h")  # the states whose units are ranked against features


def pearson_columns(states: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson r of every column of `states` (time, units) with `feature` (time,); NaN where constant."""
    return _pearson_matrix(np.asarray(states, dtype=np.float64), np.asarray(feature, dtype=np.float64)[:, None])[:, 0]


def rank_units(
    trace: Trace, features: dict[str, np.ndarray], *, per_feature: int = 5
) -> list[UnitCorrelation]:
    """For every feature, the `per_feature` units (of c and h, all layers) with the largest |r|.

    Uses batch element 0 (the sequence the features describe). Features that are constant over the
    sample are skipped (no correlation is defined). Sorted by |r| descending, ties by name.
    """
    names = sorted(features)
    found: dict[str, list[UnitCorrelation]] = {name: [] for name in names}
    for layer in trace.layers:
        for series in UNIT_SERIES:
            if series not in layer.series or not names:
                continue
            key = f"{layer.prefix}/{series}"
            seq = np.asarray(layer.series[series][0], dtype=np.float64)
            steps = min(seq.shape[0], *(len(features[name]) for name in names))
            seq = seq[:steps]
            keep = ~np.isnan(seq).any(axis=1)
            if keep.sum() < 3:
                continue
            x = seq[keep]
            f = np.stack([np.asarray(features[name], dtype=np.float64)[:steps][keep] for name in names], axis=1)
            # Every unit against every feature in one product (Pearson r = cosine of centred vectors).
            r = _pearson_matrix(x, f)
            for k, name in enumerate(names):
                for unit in np.flatnonzero(~np.isnan(r[:, k])):
                    found[name].append(UnitCorrelation(name, key, int(unit), float(r[unit, k])))
    ranked: list[UnitCorrelation] = []
    for name in names:
        found[name].sort(key=lambda u: (-abs(u.r), u.key, u.unit))
        ranked.extend(found[name][:per_feature])
    ranked.sort(key=lambda u: (-abs(u.r), u.feature, u.key, u.unit))
    return ranked


def _pearson_matrix(x: np.ndarray, f: np.ndarray) -> np.ndarray:
    """(units, features) Pearson r of the columns of x (time, units) with those of f (time, features)."""
    xc = x - x.mean(axis=0)
    fc = f - f.mean(axis=0)
    x_norm = np.sqrt((xc**2).sum(axis=0))
    f_norm = np.sqrt((fc**2).sum(axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc.T @ fc) / np.outer(x_norm, f_norm)
    # A unit (or feature) that never moves has no correlation; tiny norms are float noise.
    r[x_norm < 1e-8 * np.sqrt(len(x)), :] = np.nan
    r[:, f_norm < 1e-12] = np.nan
    return np.clip(r, -1.0, 1.0)


# -- memory over time -----------------------------------------------------------------------------


def memory_horizon(values: np.ndarray, step: int, mass: float = 0.9) -> int:
    """How many steps back from `step` (itself included) hold `mass` of the saliency up to `step`.

    1 means the output depends on the current input alone; step + 1 means the oldest inputs matter.
    """
    s = np.abs(np.asarray(values, dtype=np.float64)[: step + 1])
    s = np.nan_to_num(s, nan=0.0)
    total = s.sum()
    if total <= 0:
        return 0
    backward = np.cumsum(s[::-1]) / total
    return int(np.searchsorted(backward, mass - 1e-12) + 1)


def vanishing_ratio(values: np.ndarray, step: int) -> float | None:
    """Mean saliency of the oldest 10% of steps (at least one) over the peak; None when too short.

    Steps without a value (NaN: before a saliency window) are not counted: "oldest" is the oldest computed.
    """
    s = np.abs(np.asarray(values, dtype=np.float64)[: step + 1])
    s = s[np.isfinite(s)]
    if len(s) < 10 or s.max() <= 0:
        return None
    oldest = s[: max(1, len(s) // 10)]
    return float(oldest.mean() / s.max())


# -- state trajectories ---------------------------------------------------------------------------


def pca_2d(states: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Project (time, units) onto its first two principal components (deterministic signs).

    Returns the (time, 2) coordinates and each component's share of the variance.
    """
    states = np.asarray(states)
    coords = np.zeros((states.shape[0], 2))
    mean = column_means(states)
    # SVD of the small (units, units) scatter matrix instead of the (time, units) data: the same
    # components, and long sequences cost chunked matmuls rather than an SVD of a tall matrix.
    scatter = np.zeros((states.shape[1], states.shape[1]))
    for chunk in _chunks(states):
        centred = chunk - mean
        scatter += centred.T @ centred
    if states.shape[0] < 2 or not np.any(scatter):
        return coords, (0.0, 0.0)
    _, var, vt = np.linalg.svd(scatter)
    k = min(2, len(var))
    for j in range(k):
        # SVD signs are arbitrary: make each component's largest loading positive.
        if vt[j, np.argmax(np.abs(vt[j]))] < 0:
            vt[j] *= -1
    for start, chunk in zip(range(0, len(states), CHUNK_ROWS), _chunks(states), strict=True):
        coords[start : start + len(chunk), :k] = (chunk - mean) @ vt[:k].T
    share = var / var.sum()
    explained = (float(share[0]), float(share[1]) if k > 1 else 0.0)
    return coords, explained


def state_trajectories(trace: Trace) -> list[Trajectory]:
    """PCA trajectory of c and h (GRU/RNN: h) of every layer, batch element 0."""
    result: list[Trajectory] = []
    for layer in trace.layers:
        for name in UNIT_SERIES:
            if name not in layer.series:
                continue
            seq = first_sequence(layer.series[name])
            if len(seq) < 2:
                continue
            coords, explained = pca_2d(seq)
            mean = column_means(seq)
            spread = math.sqrt(sum(float(((c - mean) ** 2).sum()) for c in _chunks(seq)) / len(seq))
            # Step lengths chunk by chunk; each chunk starts one row back to include its first step.
            steps = np.concatenate([
                np.sqrt((np.diff(seq[max(0, a - 1) : a + CHUNK_ROWS].astype(np.float64), axis=0) ** 2).sum(axis=1))
                for a in range(0, len(seq), CHUNK_ROWS)
            ])
            jumpiness = float(np.median(steps) / spread) if spread > 0 else 0.0
            result.append(Trajectory(layer.prefix, name, coords, explained, jumpiness))
    return result


# -- diagnostics ----------------------------------------------------------------------------------


def figure_anchor(kind: str, prefix: str | None = None) -> str:
    """The HTML id of an analysis figure; findings link to it."""
    return anchor_id("fig", kind, *([prefix] if prefix else []))


def units_text(units: list[int], limit: int = 8) -> str:
    """ "units 3, 7, 9 (+5 more)": how findings and tables name units."""
    shown = ", ".join(str(u) for u in units[:limit])
    more = f" (+{len(units) - limit} more)" if len(units) > limit else ""
    return f"unit{'s' if len(units) != 1 else ''} {shown}{more}"


def _fraction_finding(
    code: str, prefix: str, units: np.ndarray, n_units: int, limit: float, text: str, anchor: str
) -> Finding | None:
    """A finding about a share of a layer's units: warning at or above `limit`, info below, none at 0."""
    listed = [int(u) for u in units]
    if not listed:
        return None
    fraction = len(listed) / max(n_units, 1)
    severity = "warning" if fraction >= limit else "info"
    message = f"{prefix}: {len(listed)} of {n_units} units ({100 * fraction:.0f}%) {text} — {units_text(listed)}"
    return Finding(code, severity, prefix, listed, fraction, limit, message, anchor)


def _cell_finding(layer: LayerTrace, th: Thresholds, anchor: str) -> Finding | None:
    """|c| past cell_max: a warning when it is still growing (exploding), info when it stays bounded."""
    rows = valid_rows(layer.series["c"])
    if not len(rows):
        return None
    peak = np.abs(rows).max(axis=0)
    big = np.flatnonzero(peak > th.cell_max)
    if not len(big):
        return None
    seq = np.abs(first_sequence(layer.series["c"]))
    quarter = max(1, len(seq) // 4)
    growing: list[int] = []
    if len(seq) >= th.min_steps:  # growth compares the first and last quarter of one sequence
        early = seq[:quarter].mean(axis=0)
        late = seq[-quarter:].mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = np.where(early > 0, late / np.maximum(early, 1e-12), np.inf)
        growing = [int(u) for u in big if growth[u] >= th.cell_growth]
    top = float(peak.max())
    prefix = layer.prefix
    if growing:
        severity = "error" if top >= 5 * th.cell_max else "warning"
        message = (
            f"{prefix}: cell state reaches |c| = {top:.1f} (> {th.cell_max:g}) and is still growing "
            f"(mean |c| of the last quarter ≥ {th.cell_growth:g}x the first) in {units_text(growing)}: "
            "exploding cell state"
        )
        return Finding("exploding_cell", severity, prefix, growing, top, th.cell_max, message, anchor)
    units = [int(u) for u in big]
    message = (
        f"{prefix}: cell state reaches |c| = {top:.1f} (> {th.cell_max:g}) in {units_text(units)} but stays "
        "bounded over the sample (a counter-like unit; tanh(c) is saturated there)"
    )
    return Finding("exploding_cell", "info", prefix, units, top, th.cell_max, message, anchor)


def unjudged_layers(trace: Trace, thresholds: Thresholds | None = None) -> dict[str, int]:
    """Layers with fewer than `min_steps` values per unit (valid steps over all sequences): prefix -> count."""
    th = thresholds or Thresholds()
    short: dict[str, int] = {}
    for layer in trace.layers:
        if not layer.series:
            continue
        count = len(valid_rows(next(iter(layer.series.values()))))
        if count < th.min_steps:
            short[layer.prefix] = count
    return short


def unjudged_note(prefix: str, count: int, thresholds: Thresholds) -> str:
    """The page's note for a layer whose findings were skipped."""
    return (
        f"{prefix}: dead-unit, saturation, forget-gate and cell-state findings skipped: each unit has "
        f"{count} value{'s' if count != 1 else ''} (valid steps over all sequences), fewer than the "
        f"{thresholds.min_steps} needed to judge"
    )


def diagnose(
    trace: Trace,
    *,
    saturation: list[Saturation] | None = None,
    saliency: SaliencyResult | None = None,
    thresholds: Thresholds | None = None,
) -> list[Finding]:
    """Plain findings with thresholds: dead units, saturated gates, pinned forget gates,
    exploding cell state, vanishing gradient over time. Deterministic order (trace order, then code)."""
    th = thresholds or Thresholds()
    saturation = saturation if saturation is not None else gate_saturation(trace, th)
    by_key = {(s.prefix, s.series): s for s in saturation}
    findings: list[Finding] = []
    short = unjudged_layers(trace, th)
    for layer in trace.layers:
        prefix = layer.prefix
        if prefix in short:  # too few values to tell a dead or saturated unit from a short sample
            continue
        activity = figure_anchor("activity", prefix)
        if "h" in layer.series:
            rows = valid_rows(layer.series["h"])
            if len(rows):
                span = rows.max(axis=0) - rows.min(axis=0)
                dead = np.flatnonzero(span < th.dead_range)
                finding = _fraction_finding(
                    "dead_units", prefix, dead, rows.shape[1], th.dead_fraction,
                    f"never leave a band {th.dead_range:g} wide (dead units)", activity,
                )
                if finding:
                    findings.append(finding)
        memory_gate = "f" if layer.family == "lstm" else "z" if layer.family == "gru" else None
        for name in layer.series:
            sat = by_key.get((prefix, name))
            if sat is None:
                continue
            n_units = len(sat.frac_low)
            anchor = figure_anchor("saturation", prefix)
            if name == memory_gate:
                rows = valid_rows(layer.series[name])
                low_p95 = np.percentile(rows, 95, axis=0)
                high_p5 = np.percentile(rows, 5, axis=0)
                keeps = "cannot forget" if name == "f" else "never update their state"
                drops = "keep no long-term memory" if name == "f" else "overwrite their state every step"
                label = SERIES_NAMES[name]
                # For a GRU, z near 1 keeps the old state (like f near 1 in an LSTM).
                finding = _fraction_finding(
                    "forget_pinned_low", prefix, np.flatnonzero(low_p95 < th.saturation_low), n_units,
                    th.forget_pinned_fraction,
                    f"have the {label} pinned near 0 (95% of steps < {th.saturation_low:g}): they {drops}",
                    anchor,
                )
                if finding:
                    findings.append(finding)
                finding = _fraction_finding(
                    "forget_pinned_high", prefix, np.flatnonzero(high_p5 > th.forget_pinned_high), n_units,
                    th.forget_pinned_fraction,
                    f"have the {label} pinned near 1 (95% of steps > {th.forget_pinned_high:g}): they {keeps}",
                    anchor,
                )
                if finding:
                    findings.append(finding)
                continue
            always = np.flatnonzero(sat.frac_low + sat.frac_high >= th.saturated_unit)
            finding = _fraction_finding(
                "saturated_gate", prefix, always, n_units, th.saturated_fraction,
                f"have the {SERIES_NAMES[name]} saturated (< {th.saturation_low:g} or > "
                f"{th.saturation_high:g}) at least {100 * th.saturated_unit:.0f}% of the time",
                anchor,
            )
            if finding:
                findings.append(finding)
        if "c" in layer.series:
            finding = _cell_finding(layer, th, activity)
            if finding:
                findings.append(finding)
    if saliency is not None:
        ratio = vanishing_ratio(saliency.values, saliency.step)
        if ratio is not None and ratio < th.vanishing_ratio:
            oldest = max(1, (saliency.step + 1 - saliency.window_start) // 10)
            findings.append(
                Finding(
                    "vanishing_gradient", "info", "", [], ratio, th.vanishing_ratio,
                    f"the gradient of the output at step {saliency.step} reaching the oldest {oldest} "
                    f"input steps is {ratio:.1e} of its peak: inputs older than ~{saliency.horizon} "
                    "steps barely influence it",
                    figure_anchor("saliency"),
                )
            )
    return findings


# -- the stage ------------------------------------------------------------------------------------


def thresholds_from_view(view: Any) -> Thresholds:
    """Thresholds from ViewOptions (fields it lacks keep their defaults)."""
    low = getattr(view, "saturation_low", None)
    high = getattr(view, "saturation_high", None)
    th = Thresholds(
        saturation_low=Thresholds.saturation_low if low is None else float(low),
        saturation_high=Thresholds.saturation_high if high is None else float(high),
    )
    if not 0.0 < th.saturation_low < th.saturation_high < 1.0:
        from lstmviz_cli.errors import InputError

        raise InputError(
            f"saturation thresholds must satisfy 0 < low < high < 1; got low={th.saturation_low:g}, "
            f"high={th.saturation_high:g}"
        )
    return th


def analyze_trace(
    trace: Trace,
    *,
    info: ModelInfo | None = None,
    tokens: list[str] | None = None,
    text: bool = True,
    labels: dict[str, np.ndarray] | None = None,
    thresholds: Thresholds | None = None,
    saliency: SaliencyResult | None = None,
    memory_probe: MemoryProbe | None = None,
    last_step: int | None = None,
    notes: list[str] | None = None,
    provenance: Provenance | None = None,
) -> Analysis:
    """Every analysis over the trace; `saliency`/`memory_probe` come from saliency.py (the model).

    `tokens` (one string per step of batch element 0) label the time axis and, when `text` is
    true, give the built-in text features; `labels` adds user features (read_labels_csv).
    `provenance` (what is known of the model) decides whether its output is a prediction.
    """
    from lstmviz_cli.analysis.textfeatures import FEATURE_DEFINITIONS, text_features

    th = thresholds or Thresholds()
    features: dict[str, np.ndarray] = {}
    definitions: dict[str, str] = {}
    if tokens is not None and text:
        features.update(text_features(tokens))
        definitions.update(FEATURE_DEFINITIONS)
    for name, values in sorted((labels or {}).items()):
        features[name] = np.asarray(values, dtype=np.float64)
        definitions[name] = "user label from --labels"
    if saliency is not None:
        saliency.horizon = memory_horizon(saliency.values, saliency.step, th.horizon_mass)
    saturation = gate_saturation(trace, th)
    unjudged = unjudged_layers(trace, th)
    notes = list(notes or []) + [unjudged_note(prefix, count, th) for prefix, count in unjudged.items()]
    return Analysis(
        gate_stats=gate_statistics(trace, th),
        prediction=predict(trace.output, info, last_step=last_step, provenance=provenance),
        saturation=saturation,
        features=features,
        feature_definitions=definitions,
        units=rank_units(trace, features) if features else [],
        saliency=saliency,
        memory_probe=memory_probe,
        trajectories=state_trajectories(trace),
        findings=diagnose(trace, saturation=saturation, saliency=saliency, thresholds=th),
        thresholds=th,
        notes=notes,
        tokens=tokens,
        unjudged=unjudged,
        provenance=provenance,
    )


def analyze_run(run: Any, view: Any) -> Analysis:
    """The pipeline's analysis stage: the trace's numbers, plus saliency from the model when it can run.

    A model that cannot be differentiated (or probed) costs only that section, with a note saying
    why; user mistakes (a step outside the sample, a bad labels file) are errors.
    """
    from lstmviz_cli.analysis.textfeatures import read_labels_csv, step_tokens
    from lstmviz_cli.errors import InputError
    from lstmviz_cli.tracing.provenance import describe_run

    trace: Trace = run.trace
    facts = describe_run(run)
    sample = getattr(run, "sample", None)
    loaded = getattr(run, "loaded", None)
    info = getattr(loaded, "info", None)
    th = thresholds_from_view(view)
    notes: list[str] = []
    if trace.meta.get("store_dtype") == "float16":
        notes.append(
            "this long trace is kept as float16 to bound memory: figures and statistics carry about 3 "
            "significant digits (verification ran in float32; `lstmviz trace` writes full precision)"
        )
    notes.extend(str(note) for note in trace.meta.get("notes", []) or [])
    notes.extend(f"the model warned while it ran: {line}" for line in trace.meta.get("model_warnings", []) or [])
    if facts.recurrent_only:
        notes.append(
            "--recurrent-only: the recurrent layers were fed the sample directly; every statistic and "
            "finding here is about them alone, not about the model with the layers in front of them"
        )
    steps = None  # the valid steps of batch element 0 (the sequence the page shows)
    tokens = None
    if sample is not None:
        steps = _first_length(trace, sample)
        tokens = step_tokens(getattr(sample, "text", None), sample.labels, sample.steps)
        tokens = tokens[:steps] if tokens is not None else None
    last_step = None
    if steps is not None and trace.output is not None and np.asarray(trace.output).ndim >= 3:
        last_step = min(steps, np.asarray(trace.output).shape[1]) - 1
    labels = None
    labels_path = getattr(view, "labels", None)
    if labels_path is not None:
        if steps is None:
            raise InputError("--labels needs a sample input to align its rows with")
        # One row per step of the input as padded, or per valid step of batch element 0.
        labels = read_labels_csv(labels_path, steps, padded_steps=sample.steps)
    chosen = getattr(view, "saliency_step", None)
    if chosen is not None and steps is not None and not 0 <= chosen < steps:
        if steps < sample.steps and steps <= chosen < sample.steps:
            raise InputError(
                f"--saliency-step {chosen} is padding of sequence 0, which has {steps} valid steps of "
                f"{sample.steps}: the model was not run there; choose a step in 0..{steps - 1}"
            )
        raise InputError(f"--saliency-step {chosen} is outside the sample's steps 0..{steps - 1}")
    prediction = predict(trace.output, info, last_step=last_step, provenance=facts)
    # Without a prediction the model's output is the last recurrent layer's own states: the
    # saliency is then of ‖h‖ at that step, and says so.
    kind = prediction.kind if prediction else ("topk" if facts.has_head else "state")
    saliency = probe = None
    model = getattr(loaded, "model", None)
    if model is not None and sample is not None:
        from lstmviz_cli._warncapture import captured_warnings
        from lstmviz_cli.explain import saliency as saliency_mod

        values = np.asarray(sample.values)[:1, :steps]
        device = getattr(loaded, "device", "cpu")
        batch_first = trace.meta.get("model_batch_first")
        if batch_first is None or trace.meta.get("packed"):
            batch_first = saliency_mod.model_batch_first(loaded)
        with captured_warnings() as caught:
            try:
                saliency = saliency_mod.compute_saliency(
                    model,
                    values,
                    step=chosen if chosen is not None else last_step,
                    kind=kind,
                    output_labels=list(info.output_labels or info.vocab or []) if info else None,
                    device=device,
                    batch_first=bool(batch_first),
                    forward_kwargs=_saliency_forward_kwargs(trace, sample, model, device, steps),
                )
            except Exception as error:  # noqa: BLE001 - the model is the user's code: lose one section only
                notes.append(f"gradient saliency skipped: {type(error).__name__}: {_first_line(error)}")
            if saliency is not None and chosen is not None and saliency.step != chosen:
                notes.append(
                    f"--saliency-step {chosen} ignored: the model's output has no time axis, so the saliency "
                    f"is of its output after the last step ({saliency.step})"
                )
            if getattr(view, "memory_probe", False):
                try:
                    probe = saliency_mod.memory_probe(model, values, device=device)
                except Exception as error:  # noqa: BLE001 - as above
                    notes.append(f"memory-length probe skipped: {type(error).__name__}: {_first_line(error)}")
        known = set(trace.meta.get("model_warnings", []) or [])
        notes.extend(f"the model warned while its saliency was computed: {line}" for line in caught
                     if line not in known)
    return analyze_trace(
        trace,
        info=info,
        tokens=tokens,
        text=getattr(sample, "text", None) is not None,
        labels=labels,
        thresholds=th,
        saliency=saliency,
        memory_probe=probe,
        last_step=last_step,
        notes=notes,
        provenance=facts,
    )


def _first_length(trace: Trace, sample: Any) -> int:
    """Valid steps of batch element 0: its length when the model was told the lengths (packed, or
    passed to its forward), else every step of the input (a model that ran over the padding)."""
    lengths = getattr(sample, "lengths", None)
    plan = trace.meta.get("forward_args") or {}
    told = trace.meta.get("packed") or "lengths" in (plan.get("params") or {}).values()
    return int(lengths[0]) if lengths is not None and (told or "packed" not in trace.meta) else sample.steps


def _first_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return lines[0] if lines else type(error).__name__


def _saliency_forward_kwargs(trace: Trace, sample: Any, model: Any, device: str, steps: int) -> dict[str, Any]:
    """The forward's other arguments (lengths, .npz arrays) for batch element 0 cut to `steps`."""
    from lstmviz_cli.tracing.forwardargs import ForwardPlan, forward_kwargs

    plan = ForwardPlan.from_meta(trace.meta.get("forward_args"))
    if not plan.params:
        return {}
    dtype = next((p.dtype for p in model.parameters()), None)
    return forward_kwargs(plan, sample, device=device, dtype=dtype, first_steps=steps)


__all__ = [
    "SEVERITIES",
    "Analysis",
    "Finding",
    "GateStat",
    "MemoryProbe",
    "Prediction",
    "SaliencyResult",
    "Saturation",
    "Thresholds",
    "Trajectory",
    "UnitCorrelation",
    "analyze_run",
    "analyze_trace",
    "anchor_id",
    "diagnose",
    "figure_anchor",
    "gate_saturation",
    "gate_statistics",
    "memory_horizon",
    "pca_2d",
    "predict",
    "rank_units",
    "state_trajectories",
    "units_text",
    "unjudged_layers",
]
