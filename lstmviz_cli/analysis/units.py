"""Interpretable units: every unit of c and h ranked by its Pearson correlation with per-step features."""

from __future__ import annotations

import numpy as np

from lstmviz_cli.analysis.evidence import UnitCorrelation
from lstmviz_cli.tracing.records import Trace

UNIT_SERIES = ("c", "h")  # the states whose units are ranked against features


def pearson_columns(states: np.ndarray, feature: np.ndarray) -> np.ndarray:
    """Pearson r of every column of `states` (time, units) with `feature` (time,); NaN where constant."""
    return pearson_matrix(np.asarray(states, dtype=np.float64), np.asarray(feature, dtype=np.float64)[:, None])[:, 0]


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
            r = pearson_matrix(x, f)
            for k, name in enumerate(names):
                for unit in np.flatnonzero(~np.isnan(r[:, k])):
                    found[name].append(UnitCorrelation(name, key, int(unit), float(r[unit, k])))
    ranked: list[UnitCorrelation] = []
    for name in names:
        found[name].sort(key=lambda u: (-abs(u.r), u.key, u.unit))
        ranked.extend(found[name][:per_feature])
    ranked.sort(key=lambda u: (-abs(u.r), u.feature, u.key, u.unit))
    return ranked


def pearson_matrix(x: np.ndarray, f: np.ndarray) -> np.ndarray:
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
    clipped: np.ndarray = np.clip(r, -1.0, 1.0)
    return clipped
