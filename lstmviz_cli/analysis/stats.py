"""Gate statistics (report section "Gate statistics"): mean, spread and saturated shares of every series."""

from __future__ import annotations

import numpy as np

from lstmviz_cli.analysis.records import GateStat
from lstmviz_cli.analysis.rows import first_sequence, mean_std, valid_rows
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.tracing.records import GATE_SERIES, Trace


def cell_quarters(array: np.ndarray, min_steps: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Per unit, mean |c| over the first and over the last quarter of sequence 0's valid steps.

    How the cell state grows over a sample: the exploding-cell finding compares them unit by unit,
    the gate statistics (and the timeline) layer by layer. None with fewer than `min_steps` steps.
    """
    seq = first_sequence(array)
    if len(seq) < min_steps:
        return None
    quarter = max(1, len(seq) // 4)
    return (np.abs(seq[:quarter]).mean(axis=0, dtype=np.float64),
            np.abs(seq[-quarter:]).mean(axis=0, dtype=np.float64))


def _growth(array: np.ndarray, min_steps: int) -> float | None:
    quarters = cell_quarters(array, min_steps)
    if quarters is None:
        return None
    early, late = (float(q.mean()) for q in quarters)
    return late / early if early > 0 else None


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
            time_std = abs_max = growth = None
            if name == "c":
                abs_max = float(np.abs(rows).max())
                growth = _growth(array, th.min_steps)
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
                    abs_max=abs_max,
                    growth=growth,
                )
            )
    return stats
