"""What each figure of a page draws, as data: one record per kind of plot or diagram.

A `FigureSpec` (`page.model`) holds one of these; `render.draw` maps each record type to its pure
plot function (matplotlib) or diagram builder (Graphviz). The page chooses and prepares the data
(which units, which steps, which text); render only draws it. Records hold NumPy arrays, so they
compare by identity (`eq=False`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from lstmviz_cli.analysis.diff import GateStatChange, WeightChange
from lstmviz_cli.analysis.evidence import ContextAblation, LayerTimescales
from lstmviz_cli.analysis.records import (
    GateStat,
    MemoryProbe,
    SaliencyResult,
    Saturation,
    Trajectory,
)
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.analysis.timeline import Line
from lstmviz_cli.loading.records import RecurrentConfig
from lstmviz_cli.tracing.records import LayerTrace

FloatArray = npt.NDArray[np.floating[Any]]


# -- plots (matplotlib) ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class HeatPanel:
    """One units × time panel: `values` is (rows, columns), rows already selected and ordered."""

    series: str
    values: FloatArray
    units: Sequence[int]  # unit index of each row
    source_name: str | None = None  # the user's own variable name for a hand-written cell's series
    # The colour scale's ends and what they are ("[0, 1]", "1st–99th percentile"); None: the series'
    # fixed scale (gates [0, 1], g/h/n [−1, 1], c ± its 99th percentile of |c|).
    limits: tuple[float, float] | None = None
    scale: str = ""


@dataclass(frozen=True, eq=False)
class HeatmapData:
    """Stacked heatmaps of one layer and direction; columns start at step `start`, `width` steps each."""

    panels: tuple[HeatPanel, ...]
    start: int
    width: int
    tokens: tuple[str, ...] | None
    mark: int | None = None  # column of --at-step, drawn as a dashed line
    label: str = ""  # the layer's label ("lstm · layer 0"): hover text and the exported file's metadata


@dataclass(frozen=True, eq=False)
class WeightsData:
    """W_ih and W_hh per gate, the biases and weight histograms of one layer and direction."""

    layer: LayerTrace


@dataclass(frozen=True, eq=False)
class GateStatsData:
    """Per layer: mean ± std of each bounded series and the saturated shares of each gate."""

    stats: tuple[GateStat, ...]
    prefixes: tuple[str, ...]
    labels: Mapping[str, str]  # prefix -> panel title


@dataclass(frozen=True, eq=False)
class SaturationData:
    """Karpathy-style saturation scatter of one layer's gates."""

    saturation: tuple[Saturation, ...]
    thresholds: Thresholds
    title: str


@dataclass(frozen=True, eq=False)
class SaliencyData:
    """Gradient saliency over input steps with the memory horizon shaded."""

    saliency: SaliencyResult
    tokens: tuple[str, ...] | None
    horizon_mass: float  # the share of the saliency the horizon holds (Thresholds.horizon_mass)


@dataclass(frozen=True, eq=False)
class MemoryProbeData:
    """The key-at-step-0 memory-length probe."""

    probe: MemoryProbe


@dataclass(frozen=True, eq=False)
class TrajectoryData:
    """PCA trajectories of one layer's states."""

    trajectories: tuple[Trajectory, ...]
    tokens: tuple[str, ...] | None
    title: str


@dataclass(frozen=True, eq=False)
class ActivityData:
    """Per unit of one layer: the range of h and the largest |c|, against their thresholds.

    `unjudged`: the values per unit of a layer too short to judge (`Analysis.unjudged`; no unit is
    marked dead or past a threshold), None when judged."""

    prefix: str
    h_range: FloatArray | None
    c_peak: FloatArray | None
    thresholds: Thresholds
    unjudged: int | None = None


@dataclass(frozen=True, eq=False)
class UnitPanel:
    """One ranked unit's activation over time against the feature it follows."""

    activation: FloatArray
    feature: FloatArray
    title: str


@dataclass(frozen=True, eq=False)
class UnitFeaturesData:
    """The best unit of each of the strongest features, one panel each."""

    panels: tuple[UnitPanel, ...]
    tokens: tuple[str, ...] | None


@dataclass(frozen=True, eq=False)
class AttributionPanel:
    """One method's share of the prediction per input step: its values and what the panel title says."""

    label: str  # "gradient saliency", "contextual decomposition", "layer-wise relevance (LRP)"
    values: FloatArray  # (steps,) per input step
    signed: bool  # decompositions are signed (a step can push against the prediction); saliency is not
    title: str


@dataclass(frozen=True, eq=False)
class AttributionData:
    """Gradient saliency beside the decompositions of one prediction, step by step with the tokens."""

    panels: tuple[AttributionPanel, ...]
    tokens: tuple[str, ...] | None
    step: int  # the predicted step (marked)


@dataclass(frozen=True, eq=False)
class TimescalesData:
    """Per layer, how many units forget on each timescale (tau = -1/ln mean f; GRU: z)."""

    layers: tuple[LayerTimescales, ...]
    labels: Mapping[str, str]  # prefix -> panel title


@dataclass(frozen=True, eq=False)
class ContextAblationData:
    """How much the output changes as the input older than k steps is zeroed; the three horizons marked."""

    ablation: ContextAblation
    saliency_horizon: int | None


@dataclass(frozen=True, eq=False)
class UnitAblationData:
    """A unit's causal check: the change of the next-token loss per step, steps with its feature shaded."""

    change: FloatArray  # (steps - 1,) loss after - loss before, per predicted step
    feature: FloatArray | None  # (steps - 1,) the feature the unit was ranked for (> min: present)
    title: str
    tokens: tuple[str, ...] | None


@dataclass(frozen=True, eq=False)
class WeightHistogramsData:
    """One layer's weight histograms per gate, before and after (the diff page)."""

    changes: tuple[WeightChange, ...]


@dataclass(frozen=True, eq=False)
class SaturationChangeData:
    """Saturated share per layer and gate, before and after (the diff page)."""

    changes: tuple[GateStatChange, ...]
    thresholds: Thresholds


@dataclass(frozen=True, eq=False)
class TimelineData:
    """One measure over checkpoints or epochs (`analysis.timeline`): a line per layer, or per layer and gate.

    `x` is each point's position (its epoch or step number, else 0, 1, ...); `ticks` the labels written
    under the points when they have no numbers. `limits` fixes the value axis ((0, 1) for gate means);
    `reference` draws a dashed horizontal line (a threshold) with its label.
    """

    lines: tuple[Line, ...]
    x: tuple[float, ...]
    ticks: tuple[str, ...] | None
    axis: str  # the x axis: "epoch", "step", "checkpoint"
    ylabel: str
    integer: bool = False  # counts: integer ticks on the value axis
    limits: tuple[float, float] | None = None  # a fixed value axis; None: the data's range
    floor: float | None = None  # the value axis starts here (0 for counts and shares)
    percent: bool = False  # values are shares, labelled as percentages
    reference: tuple[float, str] | None = None  # drawn when it lies near the data (else it would flatten it)


# -- diagrams (Graphviz) -----------------------------------------------------------------------------
@dataclass(frozen=True)
class PathStep:
    """One module on the data path, with the shapes it received and produced."""

    name: str
    kind: str
    inputs: tuple[tuple[int, ...], ...]
    outputs: tuple[tuple[int, ...], ...]
    calls: int = 1  # calls in one forward pass (a cell in a Python loop: once per step); drawn ×N


@dataclass(frozen=True)
class ArchitectureData:
    """Modules along the data path, with tensor shapes."""

    path: tuple[PathStep, ...]
    modules: Mapping[str, RecurrentConfig]


@dataclass(frozen=True)
class CellValues:
    """What the cell diagram writes on each gate: a mean over the sample or the values at one step."""

    values: Mapping[str, float]  # series -> unit-mean value
    caption: str  # "mean over the sample" | "at step 12 ('e')"


@dataclass(frozen=True)
class CellData:
    """One layer's cell with its gates, sized with the model's dimensions."""

    config: RecurrentConfig
    values: CellValues | None
    name: str  # the Graphviz graph name
    input_size: int | None = None  # width of x_t (LayerTrace.input_width)


@dataclass(frozen=True)
class UnrolledRow:
    """One layer and direction of the unrolled diagram: per-step shading values in [0, 1]."""

    key: str  # stable id fragment, e.g. "r0"
    group: int  # rows of one layer (both directions) share a group and their inputs
    label: str  # "lstm · layer 0 · forward" (user text: escaped by the diagram builder)
    backward: bool
    shade: Sequence[float]  # one value per step of the window
    carries_c: bool  # LSTM rows draw a c arrow beside the h arrow
    short: str = ""  # a label for a narrow column ("l0 fwd")


@dataclass(frozen=True)
class UnrolledData:
    """Layers × steps of a window, inputs below and outputs above."""

    rows: tuple[UnrolledRow, ...]
    window: tuple[int, int]
    total: int
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    shade_name: str


PlotData = (
    HeatmapData | WeightsData | GateStatsData | SaturationData | SaliencyData | MemoryProbeData | TrajectoryData
    | ActivityData | UnitFeaturesData | WeightHistogramsData | SaturationChangeData | TimelineData | AttributionData
    | TimescalesData | ContextAblationData | UnitAblationData
)
DiagramData = ArchitectureData | CellData | UnrolledData
FigureData = PlotData | DiagramData
DIAGRAM_TYPES = (ArchitectureData, CellData, UnrolledData)

