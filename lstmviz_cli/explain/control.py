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
from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from lstmviz_cli.analysis.units import rank_units
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
