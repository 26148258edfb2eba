"""Arithmetic on decomposed vectors: exact rules for sums, nonlinearities and products (NumPy only).

A decomposed vector is an array of shape (components, ...) whose sum over axis 0 is the vector;
row 0 is the baseline component (biases and the initial state), rows 1.. are the input steps.
Each rule hands out its result so that the rows sum to the exact result (up to float rounding):

* a nonlinearity f of a sum: the baseline row gets f(baseline) and every other row k gets
  a_k (f(z) - f(b)) / (z - b), its Aumann-Shapley value (the continuous Shapley value; for a
  function of a sum it is the secant slope times the row; Aumann & Shapley 1974);
* a product of two decomposed vectors: the Shapley value of the bilinear form with the baseline
  always present, so row k gets a_k b_0 + a_0 b_k + (a_k B + A b_k) / 2 (A, B: the non-baseline
  sums), each interaction between two rows split equally between them, and the baseline row
  gets a_0 b_0.

Both rules give the baseline row exactly what the operation makes of the baseline alone, so the
baseline row of every result is the network run on the baseline input.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# Below this |z - b| the secant slope is replaced by the derivative at the midpoint (exact to
# O(delta^2), where the difference quotient would lose digits to cancellation).
_SECANT_MIN = 1e-7


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # the logistic function without overflow


def _dsigmoid(x: np.ndarray) -> np.ndarray:
    s = sigmoid(x)
    return s * (1.0 - s)


def _dtanh(x: np.ndarray) -> np.ndarray:
    slope: np.ndarray = 1.0 - np.tanh(x) ** 2
    return slope


DERIVATIVES: dict[Callable[[np.ndarray], np.ndarray], Callable[[np.ndarray], np.ndarray]] = {
    sigmoid: _dsigmoid,
    np.tanh: _dtanh,
}


def linearise(parts: np.ndarray, fn: Callable[[np.ndarray], np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """fn(sum of parts) as decomposed rows, and fn of the total (for checks).

    parts: (components, ...) with row 0 the baseline. Returns (rows, fn(total)).
    """
    base = parts[0]
    total = parts.sum(axis=0)
    f_base, f_total = fn(base), fn(total)
    delta = total - base
    small = np.abs(delta) < _SECANT_MIN
    slope = np.where(small, DERIVATIVES[fn](base + 0.5 * delta),
                     (f_total - f_base) / np.where(small, 1.0, delta))
    out = parts * slope
    out[0] = f_base
    return out, f_total


def product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a * b (elementwise) of two decomposed vectors (components, ...) as decomposed rows."""
    a_rest, b_rest = a[1:].sum(axis=0), b[1:].sum(axis=0)
    out: np.ndarray = a * b[0] + a[0] * b + 0.5 * (a * b_rest + a_rest * b)
    out[0] = a[0] * b[0]
    return out
