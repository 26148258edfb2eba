"""The untrained control: how well does a random network of the same shape already track a feature?

A unit that follows quotes in a trained model means little if a freshly initialised model of the
same architecture, reading the same input, has a unit that follows them as well: recurrent
networks with random weights already carry short-term memory of their input. The control is the
feature's best |r| over every c and h unit of such a model. The copy is re-initialised by each
module's own `reset_parameters` (PyTorch's default initialisation) on the CPU under a fixed seed,
so the control is deterministic for a given torch version, and the caller's random state is left
as it was.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from lstmviz_cli.analysis.units import UNIT_SERIES, pearson_matrix, rank_units
from lstmviz_cli.errors import ExplainError
from lstmviz_cli.explain._run import model_input
from lstmviz_cli.tracing.tracer import trace

CONTROL_SEED = 0


def untrained_copy(model: nn.Module, seed: int = CONTROL_SEED) -> nn.Module:
    """A copy of `model` with every parameter freshly initialised (eval mode, the model's device).

    Raises ExplainError when a parameter belongs to a module without `reset_parameters` (a
    custom layer whose initialisation lstmviz cannot know).
    """
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    fresh = copy.deepcopy(model).to("cpu")
    covered: set[int] = set()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
                covered.update(id(p) for p in module.parameters(recurse=False))
    missing = [name for name, p in fresh.named_parameters() if id(p) not in covered]
    if missing:
        raise ExplainError(f"cannot build an untrained control: parameter {missing[0]!r} belongs to a "
                           "module without reset_parameters()")
    return fresh.to(device).eval()


def control_correlations(
    model: nn.Module,
    values: np.ndarray,
    features: Mapping[str, np.ndarray],
    *,
    batch_first: bool = True,
    seed: int = CONTROL_SEED,
) -> dict[str, float]:
    """feature -> best |r| over every c/h unit of an untrained copy of `model` on the same input.

    values: int (batch, time) token ids or float (batch, time, features) (batch element 0 is
    read, as `analysis.rank_units` does); features: name -> (time,) per-step values. Features
    without a defined correlation (constant) are left out. Raises ExplainError (see
    `untrained_copy`) and the tracer's errors.
    """
    fresh = untrained_copy(model, seed)
    x = model_input(fresh, values)
    traced = trace(fresh, x if batch_first or x.dim() < 2 else x.transpose(0, 1))
    best = rank_units(traced, dict(features), per_feature=1)
    return {u.feature: abs(u.r) for u in best}


def window_control(
    model: nn.Module,
    inputs: Sequence[tuple[np.ndarray, int]],
    features: Mapping[str, np.ndarray],
    *,
    batch_first: bool = True,
    seed: int = CONTROL_SEED,
) -> dict[str, float]:
    """The control over several sequences: feature -> best |r| over every c/h unit of an untrained copy.

    inputs: (a sequence's values, (time,) token ids or (time, features), and how many of its first
    steps count), in order; features: name -> values over those steps, concatenated in the same
    order (a corpus's test window, `analysis.pooled`). Each sequence is run whole (a backward
    direction reads the steps after the ones counted).
    """
    fresh = untrained_copy(model, seed)
    blocks: dict[str, list[np.ndarray]] = {}
    for values, used in inputs:
        x = model_input(fresh, np.asarray(values)[None])
        traced = trace(fresh, x if batch_first or x.dim() < 2 else x.transpose(0, 1))
        for layer in traced.layers:
            for series in UNIT_SERIES:
                if series in layer.series:
                    blocks.setdefault(f"{layer.prefix}/{series}", []).append(
                        np.asarray(layer.series[series][0, :used], dtype=np.float64))
    names = sorted(features)
    best: dict[str, float] = {}
    for parts in blocks.values():
        states = np.concatenate(parts)
        steps = min([len(states), *(len(features[n]) for n in names)])
        r = pearson_matrix(states[:steps], np.stack([np.asarray(features[n], np.float64)[:steps] for n in names], axis=1))
        for k, name in enumerate(names):
            column = np.abs(r[:, k])
            if np.isfinite(column).any():
                best[name] = max(best.get(name, 0.0), float(np.nanmax(column)))
    return best
