"""State trajectories: c and h of batch element 0 on their first two principal components, and how jumpy they are."""

from __future__ import annotations

import math

import numpy as np

# rows.CHUNK_ROWS is read at call time (tests shrink it to exercise many chunks).
from lstmviz_cli.analysis import rows
from lstmviz_cli.analysis.records import Trajectory
from lstmviz_cli.analysis.rows import column_means, first_sequence, float64_chunks
from lstmviz_cli.analysis.units import UNIT_SERIES
from lstmviz_cli.tracing.records import Trace


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
    for chunk in float64_chunks(states):
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
    for start, chunk in zip(range(0, len(states), rows.CHUNK_ROWS), float64_chunks(states), strict=True):
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
            spread = math.sqrt(sum(float(((c - mean) ** 2).sum()) for c in float64_chunks(seq)) / len(seq))
            # Step lengths chunk by chunk; each chunk starts one row back to include its first step.
            steps = np.concatenate([
                np.sqrt((np.diff(seq[max(0, a - 1) : a + rows.CHUNK_ROWS].astype(np.float64), axis=0) ** 2).sum(axis=1))
                for a in range(0, len(seq), rows.CHUNK_ROWS)
            ])
            jumpiness = float(np.median(steps) / spread) if spread > 0 else 0.0
            result.append(Trajectory(layer.prefix, name, coords, explained, jumpiness))
    return result
