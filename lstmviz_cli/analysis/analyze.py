"""Every analysis over one trace, in one call: `analyze_trace` (pure NumPy; the analyses that run the model
and the model's prediction are passed in, see `explain.orchestrate.analyze_run`).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from lstmviz_cli.analysis.findings import diagnose, unjudged_layers, unjudged_note
from lstmviz_cli.analysis.memory import memory_horizon
from lstmviz_cli.analysis.records import Analysis, MemoryProbe, Prediction, SaliencyResult
from lstmviz_cli.analysis.saturation import gate_saturation
from lstmviz_cli.analysis.stats import gate_statistics
from lstmviz_cli.analysis.textfeatures import FEATURE_DEFINITIONS, text_features
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.analysis.trajectories import state_trajectories
from lstmviz_cli.analysis.units import rank_units
from lstmviz_cli.tracing.provenance import Provenance
from lstmviz_cli.tracing.records import Trace


def analyze_trace(
    trace: Trace,
    *,
    prediction: Prediction | None = None,
    tokens: list[str] | None = None,
    text: bool = True,
    labels: dict[str, np.ndarray] | None = None,
    thresholds: Thresholds | None = None,
    saliency: SaliencyResult | None = None,
    memory_probe: MemoryProbe | None = None,
    notes: list[str] | None = None,
    provenance: Provenance | None = None,
) -> Analysis:
    """Every analysis over the trace; `saliency`/`memory_probe` come from `explain.saliency` and `explain.probe` (the model).

    `prediction` is the model's, read once by the caller (`analysis.prediction.predict`, which the
    orchestration also needs to choose saliency's target); None: the output is no prediction.
    The saliency given is not changed: the analysis returns a copy holding its memory horizon.
    `tokens` (one string per step of batch element 0) label the time axis and, when `text` is
    true, give the built-in text features; `labels` adds user features (read_labels_csv).
    `provenance` (what is known of the model) decides whether its output is a prediction.
    """
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
        saliency = replace(saliency, horizon=memory_horizon(saliency.values, saliency.step, th.horizon_mass))
    saturation = gate_saturation(trace, th)
    unjudged = unjudged_layers(trace, th)
    notes = list(notes or []) + [unjudged_note(prefix, count, th) for prefix, count in unjudged.items()]
    return Analysis(
        gate_stats=gate_statistics(trace, th),
        prediction=prediction,
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
