"""Every run of the user's model starts from the same random state, and the caller's is given back.

A model that draws random numbers in its forward (`h0 = torch.randn(...)`, as tutorials do) gives a
different output on every call: the traced run and the plain re-run that verifies it would disagree,
and two reports of one checkpoint would differ. Each run of the model is wrapped in `seeded()`:
torch (CPU and every initialised CUDA device), NumPy's global generator and Python's `random` are
seeded with `SEED`, and the caller's states are restored afterwards. On a GPU the block also runs
in full float32 (`tracing.precision.full_float32`: TF32 off), so that every run of the model agrees.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from lstmviz_cli.tracing.precision import full_float32

SEED = 0  # the random state every run of the model starts from (documented in the README)


@dataclass
class SeededRun:
    """What happened to the random state inside one `seeded()` block."""

    drew: bool = False  # the model drew random numbers (torch's, NumPy's or Python's generator advanced)


@contextlib.contextmanager
def seeded(seed: int = SEED) -> Iterator[SeededRun]:
    """Run the block from the random state `seed`; restore the caller's states afterwards."""
    cuda_started: Callable[[], bool] = torch.cuda.is_initialized  # (unannotated in torch)
    devices = list(range(torch.cuda.device_count())) if cuda_started() else []
    python_state = random.getstate()
    numpy_state = np.random.get_state()
    run = SeededRun()
    with torch.random.fork_rng(devices=devices), full_float32():
        torch.manual_seed(seed)
        random.seed(seed)
        np.random.seed(seed)
        torch_start = torch.get_rng_state()
        cuda_start = [torch.cuda.get_rng_state(d) for d in devices]
        python_start = random.getstate()
        numpy_start = _numpy_position()
        try:
            yield run
        finally:
            run.drew = (
                not torch.equal(torch.get_rng_state(), torch_start)
                or any(not torch.equal(torch.cuda.get_rng_state(d), s) for d, s in zip(devices, cuda_start, strict=True))
                or random.getstate() != python_start
                or _numpy_position() != numpy_start
            )
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def _numpy_position() -> tuple[bytes, int]:
    """NumPy's global Mersenne Twister: its key and position (what a draw changes)."""
    _name, key, position, *_rest = np.random.get_state(legacy=True)
    return bytes(np.asarray(key).tobytes()), int(position)
