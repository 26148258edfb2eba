"""What the model predicts for the sample, read from its own output tensor, and what that number rests on."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmviz_cli.analysis.records import Prediction
from lstmviz_cli.glyphs import display_token
from lstmviz_cli.loading.records import ModelInfo
from lstmviz_cli.tracing.provenance import Provenance


def _probabilities(vector: np.ndarray) -> np.ndarray:
    """Probabilities from logits, log-probabilities or probabilities, whichever the model outputs."""
    v = vector.astype(np.float64)
    if (v >= 0).all() and abs(v.sum() - 1.0) < 1e-3:
        return v
    if (v <= 0).all() and abs(np.exp(v).sum() - 1.0) < 1e-3:
        return np.exp(v)
    shifted = np.exp(v - v.max())
    probs: np.ndarray = shifted / shifted.sum()
    return probs


def predict(
    output: np.ndarray | None, info: ModelInfo | None, *, last_step: int | None = None, top_k: int = 5,
    provenance: Provenance | None = None,
) -> Prediction | None:
    """The model's prediction for batch element 0 from its first output tensor, or None.

    None when there is no prediction to read: no output, or (per `provenance`) a rebuild without
    a known head or --recurrent-only, whose output is the last recurrent layer's states. Classes
    only when they are classes: next tokens when the width is the vocabulary's (task char-lm or
    none declared), classes when it matches `output_labels` or the task is "classification"; a
    one-wide output is a value; anything else is shown as output values, never softmaxed.
    Per-step outputs are read after `last_step` (default the last step).
    """
    if output is None or (provenance is not None and not provenance.has_head):
        return None
    out = np.asarray(output, dtype=np.float64)
    if out.ndim == 0 or out.size == 0:
        return None
    step = None
    if out.ndim >= 3:
        step = out.shape[1] - 1 if last_step is None else int(last_step)
        vector = out[0, step].reshape(-1)
    elif out.ndim == 2:
        vector = out[0]
    else:
        vector = out
    basis = _basis(provenance)
    if not np.isfinite(vector).all():
        return Prediction(kind="values", items=[], step=step, note="the model's output holds NaN or inf", basis=basis)
    task = info.task if info else None
    vocab = info.vocab if info else None
    labels = info.output_labels if info else None
    width = vector.shape[0]
    after = f" after step {step}" if step is not None else ""
    at = f" at step {step}" if step is not None else ""
    if vocab is not None and len(vocab) == width and task in (None, "char-lm"):
        tokens = [display_token(str(v)) for v in vocab]
        return _top(vector, tokens, top_k, step, "most likely next tokens" + after, basis)
    if labels is not None and len(labels) == width and task != "regression":
        return _top(vector, [str(v) for v in labels], top_k, step, "most likely classes" + at, basis)
    if task == "classification":
        return _top(vector, [f"class {k}" for k in range(width)], top_k, step, "most likely classes" + at, basis)
    if task == "char-lm":
        return _top(vector, [f"token {k}" for k in range(width)], top_k, step, "most likely next tokens" + after, basis)
    names: Sequence[str] = labels if labels is not None and len(labels) == width else [f"y{k}" for k in range(width)]
    shown = min(width, 16)
    first = f", first {shown} of {width}" if width > shown else ""
    if width == 1 or task == "regression":
        note = "predicted value" + ("s" if width > 1 else "") + at + (f" ({first[2:]})" if first else "")
    else:
        note = (f"output values{at} (width {width}{first}; not read as classes: no vocabulary, output_labels "
                "or declared task says what they are)")
    return Prediction("values", [(str(names[k]), float(vector[k])) for k in range(shown)], step, note, basis)


def _top(vector: np.ndarray, names: list[str], top_k: int, step: int | None, note: str, basis: str) -> Prediction:
    probs = _probabilities(vector)
    order = np.argsort(-probs, kind="stable")[: min(top_k, len(names))]
    return Prediction("topk", [(names[k], float(probs[k])) for k in order], step, note, basis)


def _basis(provenance: Provenance | None) -> str:
    if provenance is None:
        return ""
    if provenance.head is not None:
        return provenance.head.basis()
    if provenance.source == "model-class":
        return "your model's own output (--model-class)"
    if provenance.source == "pickled-module":
        return "your model's own output (the pickled module)"
    if provenance.source == "in-memory":
        return "your model's own output (the model object passed from Python)"
    return ""
