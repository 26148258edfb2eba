"""Memory over time, read from a saliency curve: the horizon that holds most of it, and vanishing gradients."""

from __future__ import annotations

import numpy as np


def memory_horizon(values: np.ndarray, step: int, mass: float = 0.9) -> int:
    """How many steps back from `step` (itself included) hold `mass` of the saliency up to `step`.

    1 means the output depends on the current input alone; step + 1 means the oldest inputs matter.
    """
    s = np.abs(np.asarray(values, dtype=np.float64)[: step + 1])
    s = np.nan_to_num(s, nan=0.0)
    total = s.sum()
    if total <= 0:
        return 0
    backward = np.cumsum(s[::-1]) / total
    return int(np.searchsorted(backward, mass - 1e-12) + 1)


def vanishing_ratio(values: np.ndarray, step: int) -> float | None:
    """Mean saliency of the oldest 10% of steps (at least one) over the peak; None when too short.

    Steps without a value (NaN: before a saliency window) are not counted: "oldest" is the oldest computed.
    """
    s = np.abs(np.asarray(values, dtype=np.float64)[: step + 1])
    s = s[np.isfinite(s)]
    if len(s) < 10 or s.max() <= 0:
        return None
    oldest = s[: max(1, len(s) // 10)]
    return float(oldest.mean() / s.max())
