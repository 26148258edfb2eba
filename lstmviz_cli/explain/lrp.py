"""Layer-wise relevance propagation for LSTM and GRU stacks (Arras, Montavon, Müller & Samek, 2017).

The output y (a logit, or a regression value) is handed backwards through the network as
"relevance", every step of every layer and direction of the exact trace, until it reaches the
input vectors; the relevance of input step t is the sum over its vector's dimensions.

* linear maps (the head, W_ih x + W_hh h + b, the sum c = f c_prev + i g, GRU h = (1-z) n + z h_prev):
  the epsilon rule, R_i = sum_j z_ij / (z_j + eps sign z_j) R_j with z_j the traced value, so the
  bias share b_j / (z_j + eps sign z_j) R_j and the stabiliser share stay behind ("rest");
* products of a gate and a signal (i * g, o * tanh c, f * c_prev, (1 - z) * n, z * h_prev,
  r * (W_hn h + b_hn)): "signal takes it all", the gate gets no relevance;
* tanh of the candidate and of the cell: relevance passes unchanged.

Values follow the authors' recommended setting (bias_factor 0: bias and stabiliser relevance not
redistributed to the inputs); that relevance, with what reaches the initial state, is `rest`, so
sum(values) + rest equals y up to the rounding of the traced denominators. GRU: the same rules
applied to PyTorch's GRU equations (the update gate z and reset gate r are gates).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from torch import nn

from lstmviz_cli.explain import _run  # _run.traced_run is read at call time: tests replace it
from lstmviz_cli.explain._run import resolve_target
from lstmviz_cli.explain.attribution import Attribution, checked, relative_error

LRP_EPSILON = 1e-3  # the stabiliser of the epsilon rule, as in Arras et al.'s code


def _stab(z: np.ndarray, eps: float) -> np.ndarray:
    """eps * sign(z), with sign(0) = +1 so that no denominator is zero."""
    return np.where(z >= 0, eps, -eps)


def layerwise_relevance(
    model: nn.Module,
    values: np.ndarray,
    *,
    target: int | None = None,
    step: int | None = None,
    batch_first: bool = True,
    output_labels: Sequence[str] | None = None,
    epsilon: float = LRP_EPSILON,
) -> Attribution:
    """Relevance of every input step for one output of `model` on batch element 0 of `values`.

    model: Embedding? -> nn.LSTM or nn.GRU (stacked, bidirectional, projected) -> nn.Linear on
    the last step or every step (verified on the run). values: int (batch, time) token ids or
    float (batch, time, features). target: output index (default the predicted class, the largest
    output); step: the output's time step (default the last).

    Returns an Attribution with values (time,) and rest = the relevance absorbed by biases and the
    epsilon stabiliser plus what reaches the initial state. Raises ExplainError for other model
    shapes, ConservationError when the recomputed pre-activations miss the traced gates or the
    relevance misses the real output. Source: Arras et al., "Explaining Recurrent Neural Network
    Predictions in Sentiment Analysis", WASSA 2017 (LRP for LSTMs, epsilon rule, signal-takes-all).
    """
    run = _run.traced_run(model, values, batch_first=batch_first)
    goal = resolve_target(run, target=target, step=step, output_labels=output_labels)
    cfg = run.config
    dirs = 2 if cfg.bidirectional else 1
    steps, width = run.steps, cfg.output_size
    read = steps - 1 if run.head_on == "last" else goal.step
    y = goal.value
    top = np.concatenate([np.asarray(run.layer(cfg.num_layers - 1, d).series["h"][0, read], np.float64)
                          for d in ("fwd", "bwd")[:dirs]])
    w_out = run.head_weight[goal.index]
    denom = y + _stab(np.array(y), epsilon)
    relevance = np.zeros((steps, width * dirs))
    relevance[read] = w_out * top / denom * y
    rest = float((run.head_bias[goal.index] + _stab(np.array(y), epsilon)) / denom * y)
    error = 0.0
    for layer in range(cfg.num_layers - 1, -1, -1):
        below = np.zeros((steps, run.x.shape[1] if layer == 0 else width * dirs))
        for d, direction in enumerate(("fwd", "bwd")[:dirs]):
            r_in, absorbed, err = _direction(run, layer, d, direction,
                                             relevance[:, d * width:(d + 1) * width], epsilon)
            below += r_in
            rest += absorbed
            error = max(error, err)
        relevance = below
    return checked("lrp", target=goal.index, target_label=goal.label, step=goal.step,
                   values=relevance.sum(axis=1), rest=rest, output=y, state_error=error,
                   note=f"epsilon {epsilon:g}; rest: bias and stabiliser relevance, and the initial state's")


def _direction(run: _run.TracedRun, layer: int, d: int, direction: str, r_h: np.ndarray,
               eps: float) -> tuple[np.ndarray, float, float]:
    """Relevance of this direction's inputs (time, input width), the relevance it absorbs, its check error.

    r_h (time, out): relevance arriving at h_t from above (the head or the next layer).
    """
    cfg = run.config
    lt = run.layer(layer, direction)
    s = {name: np.asarray(a[0], dtype=np.float64) for name, a in lt.series.items()}
    w = {k: v.astype(np.float64) for k, v in lt.weights.items()}
    if layer == 0:
        x = run.x
    else:
        below = [np.asarray(run.layer(layer - 1, dd).series["h"][0], np.float64)
                 for dd in ("fwd", "bwd")[: 2 if cfg.bidirectional else 1]]
        x = np.concatenate(below, axis=1)
    steps = run.steps
    k = layer * (2 if cfg.bidirectional else 1) + d
    reverse = direction == "bwd"
    order = list(range(steps - 1, -1, -1)) if not reverse else list(range(steps))  # backwards in reading order
    h0 = run.h0[k]
    r_x = np.zeros((steps, x.shape[1]))
    absorbed = 0.0
    error = 0.0
    hidden = cfg.hidden_size
    rows = w["weight_ih"].shape[0]
    b_ih = w.get("bias_ih", np.zeros(rows))
    b_hh = w.get("bias_hh", np.zeros(rows))
    r_rec = np.zeros(cfg.output_size)  # relevance reaching h_t from step t+1 (reading order)
    r_cell = np.zeros(hidden)  # LSTM: relevance reaching c_t from c_{t+1}
    for t in order:
        prev = t + 1 if reverse else t - 1
        first = not 0 <= prev < steps
        h_prev = h0 if first else s["h"][prev]
        r = r_h[t] + r_rec
        sl = slice(2 * hidden, 3 * hidden)  # the candidate's rows (LSTM g, GRU n)
        if cfg.family == "lstm":
            if "weight_hr" in w:  # h = W_hr m: epsilon rule, no bias
                den = s["h"][t] + _stab(s["h"][t], eps)
                absorbed += float((_stab(s["h"][t], eps) / den * r).sum())
                r = s["m"][t] * (w["weight_hr"].T @ (r / den))
            r_c = r_cell + r  # h = o * tanh(c): signal takes it all
            c = s["c"][t]
            den = c + _stab(c, eps)
            c_prev = run.cell0(k) if first else s["c"][prev]
            r_cell = s["f"][t] * c_prev / den * r_c  # to c_{t-1}
            r_new = s["i"][t] * s["g"][t] / den * r_c  # i * g: signal takes it all
            absorbed += float((_stab(c, eps) / den * r_c).sum())
            a_x = w["weight_ih"][sl] * x[t]
            a_h = w["weight_hh"][sl] * h_prev
            bias = b_ih[sl] + b_hh[sl]
            traced_candidate = s["g"][t]
            r_direct = 0.0
        else:
            h = s["h"][t]
            den = h + _stab(h, eps)
            r_direct = s["z"][t] * h_prev / den * r  # z * h_prev: signal takes it all
            r_new = (1.0 - s["z"][t]) * s["n"][t] / den * r  # (1 - z) * n: likewise
            absorbed += float((_stab(h, eps) / den * r).sum())
            a_x = w["weight_ih"][sl] * x[t]
            a_h = s["r"][t][:, None] * w["weight_hh"][sl] * h_prev  # r * (W_hn h): likewise
            bias = b_ih[sl] + s["r"][t] * b_hh[sl]
            traced_candidate = s["n"][t]
        pre = a_x.sum(axis=1) + a_h.sum(axis=1) + bias
        error = max(error, relative_error(np.tanh(pre), traced_candidate))
        share = r_new / (pre + _stab(pre, eps))  # tanh: relevance passes unchanged
        r_x[t] = share @ a_x
        r_rec = share @ a_h + r_direct
        absorbed += float(((bias + _stab(pre, eps)) * share).sum())
        if first:  # what reaches the initial state stays there
            absorbed += float(np.sum(r_rec)) + float(r_cell.sum())
            r_rec = np.zeros(cfg.output_size)
            r_cell = np.zeros(hidden)
    return r_x, absorbed, error
