"""Gate saturation per unit (Karpathy, Johnson & Fei-Fei 2015): how often each gate sits near 0 or near 1."""

from __future__ import annotations

from lstmviz_cli.analysis.records import Saturation
from lstmviz_cli.analysis.rows import valid_rows
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.tracing.records import GATE_SERIES, Trace


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
