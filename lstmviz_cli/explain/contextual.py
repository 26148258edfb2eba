"""Contextual decomposition of one output over every input step (Murdoch, Liu & Yu, ICLR 2018).

Murdoch et al. split every state of an LSTM into the contribution of one phrase (beta) and of
everything else (gamma) by carrying both through the recursion: linear maps act on each part, a
gate's nonlinearity is split by its Shapley value over the parts with the bias entered first, and
products are assigned by rule. Run once per step that says what step t contributes, but the T
answers do not add up to the output (interactions between steps belong to no single step).

Here every input step is its own component, plus one baseline component (row 0: the biases and
the initial state), all carried through the recursion together so that the parts add up to the
output. The rules, at every step of every layer and direction (`_components.py`):

* linear maps (W_ih x, W_hh h, W_hr m, the head) act on each component; biases join row 0;
* every gate nonlinearity (i f g o; GRU r z n) and tanh(c): row 0 gets f(its own part), every
  other component its Aumann-Shapley share of f(z) - f(baseline), the continuous form of the
  Shapley value Murdoch et al. use (the discrete value over T + 1 players costs 2^T evaluations);
* every product (i g, f c, o tanh c; GRU (1 - z) n, z h, r (W_hn h + b_hn)): the Shapley value
  of the bilinear form with the baseline always present, so an interaction between two steps is
  split equally between them (Murdoch et al. give interactions to "everything else", which has
  no owner once every step is a component).

Row 0 is then exactly the network run on zero input vectors at every step, and "rest" is the
output the model gives for that input: each step's value is its share of the difference between
the real output and that. (Murdoch et al. give the bias-only part of an update to the phrase when
the phrase is at that step; with one component per step that makes the components carry the
model's default dynamics, which then interact: on the digit-sum LSTM over 40 steps it gave parts
of +-66,000 for a logit of 13. Kept in the baseline, the parts stayed within +-23.)

Every propagated gate and state is checked against the exact trace at every step, and the parts
against the model's real output.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from lstmviz_cli.errors import ExplainError
from lstmviz_cli.explain import _components as comp
from lstmviz_cli.explain import _run  # _run.traced_run is read at call time: tests replace it
from lstmviz_cli.explain._run import resolve_target
from lstmviz_cli.explain.attribution import Attribution, checked, relative_error

# Bytes of decomposed states (steps x components x units, float64) one decomposition may hold.
CD_BUDGET = 1 << 30


def contextual_decomposition(
    model: nn.Module,
    values: np.ndarray,
    *,
    target: int | None = None,
    step: int | None = None,
    batch_first: bool = True,
    output_labels: Sequence[str] | None = None,
) -> Attribution:
    """Split one output of `model` on batch element 0 of `values` over its input steps.

    model: Embedding? -> nn.LSTM or nn.GRU (stacked, bidirectional, projected) -> nn.Linear on
    the last step or every step (verified on the run). values: int (batch, time) token ids or
    float (batch, time, features). target: output index (default the largest output at `step`,
    the predicted class); step: the output's time step (default the last).

    Returns an Attribution with values (time,) and rest = the model's output when the recurrent
    stack reads zero vectors at every step (its biases and initial state alone). Raises
    ExplainError for other model shapes or when the decomposition would exceed `CD_BUDGET`
    bytes, ConservationError when the parts miss the traced states or the real
    output (tolerances in `attribution`). Source: Murdoch, Liu & Yu, "Beyond Word Importance:
    Contextual Decomposition to Extract Interactions from LSTMs", ICLR 2018, generalised to one
    component per step as described in this module's docstring.
    """
    run = _run.traced_run(model, values, batch_first=batch_first)
    goal = resolve_target(run, target=target, step=step, output_labels=output_labels)
    cfg = run.config
    dirs = 2 if cfg.bidirectional else 1
    steps = run.steps
    need = steps * (steps + 1) * cfg.output_size * dirs * 8 * 2
    if need > CD_BUDGET:
        raise ExplainError(
            f"contextual decomposition of {steps} steps needs about {need / 2**30:.1f} GiB "
            f"(budget {CD_BUDGET / 2**30:.0f} GiB); explain a shorter input")
    causal = not cfg.bidirectional
    stop = goal.step + 1 if causal else steps  # a causal stack's output at `step` sees no later step
    below: np.ndarray | None = None  # the layer below's decomposed output (time, components, width)
    error = 0.0
    for layer in range(cfg.num_layers):
        outs = []
        for d, direction in enumerate(("fwd", "bwd")[:dirs]):
            h, err = _direction(run, layer, d, direction, below, stop, causal)
            outs.append(h)
            error = max(error, err)
        below = outs[0] if dirs == 1 else np.concatenate(outs, axis=2)
    assert below is not None
    read = steps - 1 if run.head_on == "last" else goal.step
    parts = below[read] @ run.head_weight[goal.index]  # (components,)
    rest = float(parts[0] + run.head_bias[goal.index])
    return checked("cd", target=goal.index, target_label=goal.label, step=goal.step, values=parts[1:],
                   rest=rest, output=goal.value, state_error=error,
                   note="rest: the output for zero input vectors at every step (biases and initial state)")


def _weights(run: _run.TracedRun, layer: int, direction: str) -> dict[str, np.ndarray]:
    w = {k: v.astype(np.float64) for k, v in run.layer(layer, direction).weights.items()}
    rows = w["weight_ih"].shape[0]
    w.setdefault("bias_ih", np.zeros(rows))
    w.setdefault("bias_hh", np.zeros(rows))
    return w


def _direction(run: _run.TracedRun, layer: int, d: int, direction: str, below: np.ndarray | None, stop: int,
               causal: bool) -> tuple[np.ndarray, float]:
    """Decomposed h (time, components, out) of one layer direction, and its largest state error."""
    cfg = run.config
    lt = run.layer(layer, direction)
    w = _weights(run, layer, direction)
    steps = run.steps
    comps = steps + 1
    k = layer * (2 if cfg.bidirectional else 1) + d
    out = np.zeros((steps, comps, cfg.output_size))
    h_prev = np.zeros((comps, cfg.output_size))
    h_prev[0] = run.h0[k]
    c_prev = None
    if run.c0 is not None:  # an LSTM's cell state (TracedRun: zeros when the model passed none)
        c_prev = np.zeros((comps, cfg.hidden_size))
        c_prev[0] = run.c0[k]
    order = range(steps - 1, -1, -1) if direction == "bwd" else range(stop)
    error = 0.0
    series = {name: np.asarray(a[0], dtype=np.float64) for name, a in lt.series.items()}
    for t in order:
        # A causal stack's components after step t are still zero: only rows 0..t+1 are live.
        rows = slice(0, t + 2 if causal else comps)
        x_part = np.zeros((rows.stop, w["weight_ih"].shape[0]))
        if below is None:
            x_part[t + 1] = w["weight_ih"] @ run.x[t]
        else:
            x_part += below[t, rows] @ w["weight_ih"].T
        x_part[0] += w["bias_ih"]
        hh = h_prev[rows] @ w["weight_hh"].T
        hh[0] += w["bias_hh"]
        if c_prev is not None:
            h_new, c_new, err = _lstm_step(x_part + hh, c_prev[rows], w, series, t)
            c_prev[rows] = c_new
        else:
            h_new, err = _gru_step(x_part, hh, h_prev[rows], series, t)
        h_prev[rows] = h_new
        out[t, rows] = h_new
        error = max(error, err)
    return out, error


def _lstm_step(pre: np.ndarray, c_prev: np.ndarray, w: dict[str, np.ndarray],
               series: dict[str, np.ndarray], t: int) -> tuple[np.ndarray, np.ndarray, float]:
    a_i, a_f, a_g, a_o = np.split(pre, 4, axis=1)
    i, i_total = comp.linearise(a_i, comp.sigmoid)
    f, f_total = comp.linearise(a_f, comp.sigmoid)
    g, g_total = comp.linearise(a_g, np.tanh)
    o, o_total = comp.linearise(a_o, comp.sigmoid)
    c = comp.product(f, c_prev) + comp.product(i, g)
    tanh_c, _ = comp.linearise(c, np.tanh)
    m = comp.product(o, tanh_c)
    h = m @ w["weight_hr"].T if "weight_hr" in w else m
    checks = [(i_total, "i"), (f_total, "f"), (g_total, "g"), (o_total, "o"), (c.sum(axis=0), "c"),
              (h.sum(axis=0), "h")]
    if "m" in series:
        checks.append((m.sum(axis=0), "m"))
    err = max(relative_error(value, series[name][t]) for value, name in checks)
    return h, c, err


def _gru_step(x_part: np.ndarray, hh: np.ndarray, h_prev: np.ndarray, series: dict[str, np.ndarray],
              t: int) -> tuple[np.ndarray, float]:
    x_r, x_z, x_n = np.split(x_part, 3, axis=1)
    h_r, h_z, h_n = np.split(hh, 3, axis=1)
    r, r_total = comp.linearise(x_r + h_r, comp.sigmoid)
    z, z_total = comp.linearise(x_z + h_z, comp.sigmoid)
    n, n_total = comp.linearise(x_n + comp.product(r, h_n), np.tanh)
    keep = -z
    keep[0] += 1.0  # 1 - z: the constant belongs to the baseline component
    h = comp.product(keep, n) + comp.product(z, h_prev)
    checks = [(r_total, "r"), (z_total, "z"), (n_total, "n"), (h.sum(axis=0), "h")]
    return h, max(relative_error(value, series[name][t]) for value, name in checks)
