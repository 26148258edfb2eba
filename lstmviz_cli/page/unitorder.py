"""Which units a heatmap or highlighted text shows, in which order, and time bins for long windows.

Data preparation for the page's figures (the plot functions draw what this chose): per-unit
variance in bounded float64 chunks, variance or cluster order, top-variance units, time binning.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt

from lstmviz_cli.page.figuredata import FloatArray

MAX_COLUMNS = 400  # heatmaps wider than this many steps are averaged into bins


def bin_time(values: FloatArray, max_columns: int = MAX_COLUMNS) -> tuple[FloatArray, int]:
    """(time, units) -> (bins, units) of per-bin means, and the bin width (1: no binning).

    Keeps figures and the file bounded for long sequences; NaN (padding) is ignored in means.
    """
    steps = values.shape[0]
    if steps <= max_columns:
        return values, 1
    width = -(-steps // max_columns)
    n_bins = -(-steps // width)
    padded = np.full((n_bins * width, values.shape[1]), np.nan, dtype=np.float64)
    padded[:steps] = values
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN bin stays NaN
        binned = np.nanmean(padded.reshape(n_bins, width, values.shape[1]), axis=1)
    return binned.astype(np.float32), width


CHUNK_ROWS = 8192  # time steps per float64 chunk: a (100,000 x 1024) window is never copied whole


def _float_chunks(values: FloatArray) -> Iterator[FloatArray]:
    """(time, units) in float64 chunks of time, NaN (padding) as 0 like the whole-array code had it."""
    for start in range(0, values.shape[0], CHUNK_ROWS):
        yield np.nan_to_num(values[start : start + CHUNK_ROWS].astype(np.float64), nan=0.0)


def unit_scatter(values: FloatArray, *, full: bool) -> tuple[FloatArray, FloatArray]:
    """Per-unit means and either the per-unit sums of squared deviations (`full=False`) or the
    (units, units) scatter matrix (`full=True`), accumulated over time chunks in float64."""
    steps = max(values.shape[0], 1)
    mean = sum((chunk.sum(axis=0) for chunk in _float_chunks(values)), np.zeros(values.shape[1])) / steps
    shape = (values.shape[1],) * (2 if full else 1)
    scatter = np.zeros(shape)
    for chunk in _float_chunks(values):
        centred = chunk - mean
        scatter += centred.T @ centred if full else (centred**2).sum(axis=0)
    return mean, scatter


def unit_variance(values: FloatArray) -> FloatArray:
    """Variance over time of every column of (time, units), NaN counted as 0 (bounded memory)."""
    variance: FloatArray = unit_scatter(values, full=False)[1] / max(values.shape[0], 1)
    return variance


def order_units(values: FloatArray, method: str, *, variance: FloatArray | None = None) -> npt.NDArray[np.intp]:
    """Row order for a (time, units) array: "none", "variance" (highest first) or "cluster".

    "cluster" is average-linkage agglomerative clustering on 1 − correlation, rows in dendrogram
    leaf order, so units that move together sit together (deterministic: ties go to lower indices).
    `variance`: `unit_variance(values)` when the caller has it already.
    """
    units = values.shape[1]
    if method == "none" or units <= 1:
        return np.arange(units)
    if method == "variance":
        return np.argsort(-(unit_variance(values) if variance is None else variance), kind="stable")
    if method == "cluster":
        return np.asarray(_cluster_order(values))
    raise ValueError(f"unknown unit order {method!r}")


def _cluster_order(values: FloatArray) -> list[int]:
    """Leaf order of average-linkage clustering of the columns of `values` on 1 − Pearson r."""
    n = values.shape[1]
    _, scatter = unit_scatter(values, full=True)
    norms = np.sqrt(np.diag(scatter)).copy()
    norms[norms == 0] = 1.0
    dist = 1.0 - scatter / np.outer(norms, norms)
    np.fill_diagonal(dist, np.inf)
    members: list[list[int]] = [[k] for k in range(n)]
    sizes = np.ones(n)
    active = np.ones(n, dtype=bool)
    for _ in range(n - 1):
        flat = int(np.argmin(dist))
        i, j = divmod(flat, n)
        i, j = min(i, j), max(i, j)
        merged = (sizes[i] * dist[i] + sizes[j] * dist[j]) / (sizes[i] + sizes[j])
        dist[i, :] = merged
        dist[:, i] = merged
        dist[i, i] = np.inf
        dist[j, :] = np.inf
        dist[:, j] = np.inf
        members[i] = members[i] + members[j]
        sizes[i] += sizes[j]
        active[j] = False
    return members[int(np.flatnonzero(active)[0])]


def top_variance_units(values: FloatArray, count: int) -> list[int]:
    """The `count` units of a (time, units) array with the highest variance over time (ties: lower index)."""
    var = np.nan_to_num(np.nanvar(values, axis=0), nan=0.0)
    order = np.argsort(-var, kind="stable")
    return [int(u) for u in order[:count]]
