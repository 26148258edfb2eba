"""The valid rows of a trace's series (padding dropped) and float64 reductions over them in bounded chunks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal, overload

import numpy as np

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


def float64_chunks(rows: np.ndarray) -> Iterator[np.ndarray]:
    """(n, units) rows as float64, CHUNK_ROWS at a time (a float16 trace is never copied whole)."""
    for start in range(0, len(rows), CHUNK_ROWS):
        yield rows[start : start + CHUNK_ROWS].astype(np.float64)


def column_means(rows: np.ndarray) -> np.ndarray:
    """Per-column float64 means of (n, units), chunk by chunk."""
    total = np.zeros(rows.shape[1])
    for chunk in float64_chunks(rows):
        total += chunk.sum(axis=0)
    return total / max(len(rows), 1)


@overload
def mean_std(rows: np.ndarray, axis: None = None) -> tuple[float, float]: ...


@overload
def mean_std(rows: np.ndarray, axis: Literal[0]) -> tuple[np.ndarray, np.ndarray]: ...


def mean_std(rows: np.ndarray, axis: Literal[0] | None = None) -> tuple[float, float] | tuple[np.ndarray, np.ndarray]:
    """Float64 mean and (population) std of all values (axis None) or per column (axis 0), in chunks."""
    means = column_means(rows)
    mean = means.mean() if axis is None else means
    squares = np.zeros(rows.shape[1])
    for chunk in float64_chunks(rows):
        squares += ((chunk - mean) ** 2).sum(axis=0)
    n = max(len(rows), 1)
    if axis is None:
        return float(mean), float(np.sqrt(squares.sum() / (n * rows.shape[1])))
    return mean, np.sqrt(squares / n)
