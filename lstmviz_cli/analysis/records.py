"""The analysis stage's records: plain data (NumPy arrays, no torch) that the page, the JSON and `lstmviz check` read.

`Analysis` holds everything one run's analysis found; its JSON form is written by `analysis.serialize`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from lstmviz_cli.analysis.checksettings import CheckConfig
from lstmviz_cli.analysis.evidence import (
    Attribution,
    ContextAblation,
    CorpusInfo,
    LayerTimescales,
    MethodNote,
    UnitAblation,
    UnitCorrelation,
    UnitExcerpts,
    UnitTests,
)
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.tracing.provenance import Provenance


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
    abs_max: float | None = None  # "c" only: the largest |c| over every valid step and unit
    # "c" only: mean |c| over the last quarter of sequence 0's steps / over its first quarter
    # (`stats.cell_quarters`; None with fewer than Thresholds.min_steps steps, or |c| = 0 at first)
    growth: float | None = None


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


@dataclass(frozen=True)
class SaliencyResult:
    """‖∂y/∂x_t‖ of one output at `step` for every input step, and gradient norms per parameter.

    `horizon` is the analysis's (`analyze_trace` returns a copy with it, from the thresholds'
    horizon_mass); 0 in the record `explain.saliency.compute_saliency` returns.
    """

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


@dataclass(frozen=True)
class FigureRef:
    """Which figure shows a number: its kind (the name `lstmviz figures` gives its file, e.g.
    "saturation") and the layer prefix (None: a whole-model figure). The page resolves it to the
    HTML id it gave that figure (`page.model.Page.anchor`); the analysis never builds page ids."""

    kind: str
    prefix: str | None = None


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
    figure: FigureRef | None  # the figure that shows it


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
    # The settings of the `lstmviz check` that judged this analysis (`analysis.checks.judge_analysis`):
    # set on the check --report page only, where findings and badges are the check's verdicts.
    check: CheckConfig | None = None
    # -- explanations with evidence (issue 18; `explain.orchestrate` fills them, `analysis.evidence`)
    attributions: list[Attribution] = field(default_factory=list)  # decompositions of the prediction
    explain_notes: list[MethodNote] = field(default_factory=list)  # methods refused, skipped or unavailable
    context_ablation: ContextAblation | None = None  # memory by context ablation
    timescales: list[LayerTimescales] = field(default_factory=list)  # forget timescales per layer
    unit_tests: UnitTests | None = None  # permutation p-values and controls of the ranked units
    ablations: list[UnitAblation] = field(default_factory=list)  # causal checks of units
    excerpts: list[UnitExcerpts] = field(default_factory=list)  # each h unit's top-activating contexts
    corpus: CorpusInfo | None = None  # corpus mode: what was read (None: one sample)
