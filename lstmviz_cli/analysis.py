"""The analysis stage: pure NumPy over a Trace — gate statistics, saturation, units, memory, findings.

JSON schema of `Analysis.to_json()` (what `lstmviz report --json summary.json` writes; every
float rounded to 6 significant digits, no NaN: missing values are null):

    {
      "thresholds": {"saturation_low": 0.1, "saturation_high": 0.9, ...},   # Thresholds fields
      "prediction": null | {"kind": "topk" | "values", "step": int | null, "note": str,
                            "items": [{"label": str, "value": float}, ...]},
      "gate_stats": [{"prefix": "lstm/l0/fwd", "series": "f", "mean", "std",
                      "frac_low", "frac_high",    # null for series that are not [0, 1] gates
                      "time_std"}],               # for "c": mean over units of its std over time
      "saturation": [{"prefix", "series", "frac_low": [per unit], "frac_high": [per unit]}],
      "units": {"features": {name: definition},
                "ranked": [{"feature", "key": "lstm/l0/fwd/c", "unit": int, "r": float}]},
                # sorted by |r| descending; the top `units_per_feature` per feature
      "saliency": null | {"step": int, "target": str, "values": [per input step ‖∂y/∂x_t‖],
                          "horizon": int, "horizon_mass": 0.9,
                          "param_norms": {parameter name: gradient norm}},
      "memory_probe": null | {"prefix", "lengths": [int], "dependence": [float]},
      "trajectories": [{"prefix", "series", "explained": [pc1, pc2], "jumpiness": float}],
      "findings": [{"code", "severity": "info" | "warning" | "error", "prefix",
                    "units": [int], "value", "threshold", "message", "anchor"}],
      "notes": [str]                               # analyses skipped and why
    }
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from lstmviz_cli.tracedata import GATE_SERIES, LayerTrace, ModelInfo, Trace

SEVERITIES = ("info", "warning", "error")


@dataclass(frozen=True)
class Thresholds:
    """Every threshold the analysis uses; `lstmviz check` overrides the same fields."""

    saturation_low: float = 0.1  # a gate value below this is left-saturated (Karpathy et al. 2015)
    saturation_high: float = 0.9  # ... above this, right-saturated
    dead_range: float = 0.02  # a unit whose h stays within a band this wide is dead
    dead_fraction: float = 0.1  # warn when at least this fraction of a layer's units is dead
    saturated_unit: float = 0.9  # a gate unit saturated (either side) this often is "always saturated"
    saturated_fraction: float = 0.5  # warn when at least this fraction of a gate's units is
    forget_pinned_fraction: float = 0.5  # warn when this fraction of forget units is pinned
    cell_max: float = 20.0  # |c| above this is an exploding cell state
    vanishing_ratio: float = 1e-3  # saliency of the oldest steps / peak below this is vanishing
    horizon_mass: float = 0.9  # the memory horizon holds this share of the saliency

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
                "items": [{"label": label, "value": _num(value)} for label, value in self.prediction.items],
            },
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
                "horizon_mass": self.thresholds.horizon_mass,
                "param_norms": {k: _num(v) for k, v in sorted(self.saliency.param_norms.items())},
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


def valid_rows(array: np.ndarray) -> np.ndarray:
    """(batch, time, units) -> (n, units) of every step that is not padding (NaN rows dropped)."""
    flat = np.asarray(array, dtype=np.float64).reshape(-1, array.shape[-1])
    return flat[~np.isnan(flat).any(axis=1)]


def first_sequence(array: np.ndarray) -> np.ndarray:
    """(batch, time, units) -> (time', units) of batch element 0 without padded steps."""
    seq = np.asarray(array[0], dtype=np.float64)
    return seq[~np.isnan(seq).any(axis=1)]


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
                stds = [seq.std(axis=0).mean() for seq in per_seq if len(seq) > 1]
                time_std = float(np.mean(stds)) if stds else 0.0
            stats.append(
                GateStat(
                    prefix=layer.prefix,
                    series=name,
                    mean=float(rows.mean()),
                    std=float(rows.std()),
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
    output: np.ndarray | None, info: ModelInfo | None, *, last_step: int | None = None, top_k: int = 5
) -> Prediction | None:
    """The model's prediction for batch element 0 from its first output tensor.

    char-lm: top-k next tokens after `last_step` (default the last step); classification: top-k
    classes; regression: the predicted values. Without a task, the output's width decides.
    """
    from lstmviz_cli.textfeatures import display_token

    if output is None:
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
    if not np.isfinite(vector).all():
        return Prediction(kind="values", items=[], step=step, note="the model's output holds NaN or inf")
    task = info.task if info else None
    vocab = info.vocab if info else None
    labels = info.output_labels if info else None
    width = vector.shape[0]
    if task is None:
        if vocab is not None and len(vocab) == width:
            task = "char-lm"
        elif labels is not None and len(labels) == width or width > 4:
            task = "classification"
        else:
            task = "regression"
    if task == "regression":
        names = labels if labels is not None and len(labels) == width else [f"y{k}" for k in range(width)]
        shown = min(width, 16)
        note = "predicted value" + ("s" if width > 1 else "")
        if width > shown:
            note += f" (first {shown} of {width})"
        return Prediction("values", [(str(names[k]), float(vector[k])) for k in range(shown)], step, note)
    probs = _probabilities(vector)
    order = np.argsort(-probs, kind="stable")[: min(top_k, width)]
    if task == "char-lm" and vocab is not None and len(vocab) == width:
        names = [display_token(str(v)) for v in vocab]
        note = "most likely next tokens" + (f" after step {step}" if step is not None else "")
    else:
        names = [str(v) for v in labels] if labels is not None and len(labels) == width else [
            f"class {k}" for k in range(width)
        ]
        note = "most likely classes"
    return Prediction("topk", [(names[k], float(probs[k])) for k in order], step, note)


# -- the stage ------------------------------------------------------------------------------------


def thresholds_from_view(view: Any) -> Thresholds:
    """Thresholds from ViewOptions (fields it lacks keep their defaults)."""
    return Thresholds(
        saturation_low=float(getattr(view, "saturation_low", None) or Thresholds.saturation_low),
        saturation_high=float(getattr(view, "saturation_high", None) or Thresholds.saturation_high),
    )


def analyze_trace(
    trace: Trace,
    *,
    info: ModelInfo | None = None,
    tokens: list[str] | None = None,
    labels: dict[str, np.ndarray] | None = None,
    thresholds: Thresholds | None = None,
    saliency: SaliencyResult | None = None,
    memory_probe: MemoryProbe | None = None,
    last_step: int | None = None,
) -> Analysis:
    """Every analysis that needs only the trace (and, optionally, results computed from the model)."""
    th = thresholds or Thresholds()
    analysis = Analysis(
        gate_stats=gate_statistics(trace, th),
        prediction=predict(trace.output, info, last_step=last_step),
        thresholds=th,
        tokens=tokens,
    )
    return analysis


def analyze_run(run: Any, view: Any) -> Analysis:
    """The pipeline's analysis stage: the trace's numbers, plus saliency from the model when it can run."""
    trace: Trace = run.trace
    sample = getattr(run, "sample", None)
    loaded = getattr(run, "loaded", None)
    info = getattr(loaded, "info", None)
    last_step = None
    if sample is not None and getattr(sample, "lengths", None) is not None and trace.output is not None:
        if np.asarray(trace.output).ndim >= 3:
            last_step = int(np.asarray(sample.lengths)[0]) - 1
    return analyze_trace(trace, info=info, thresholds=thresholds_from_view(view), last_step=last_step)


__all__ = [
    "Analysis",
    "Finding",
    "GateStat",
    "LayerTrace",
    "MemoryProbe",
    "Prediction",
    "SaliencyResult",
    "Saturation",
    "SEVERITIES",
    "Thresholds",
    "Trajectory",
    "UnitCorrelation",
    "analyze_run",
    "analyze_trace",
    "gate_statistics",
    "predict",
]
