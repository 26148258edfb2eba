"""Read sample sequences (npy/npz/csv/pt/txt/inline tokens) into one documented convention.

Convention, whatever the model's batch_first: float arrays 2-D are (time, features), 3-D are
(batch, time, features); integer arrays 1-D are one token sequence, 2-D are (batch, time).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class SampleInput:
    """A sample ready to feed the model, with what a person needs to read the time axis."""

    values: np.ndarray  # int64 (batch, time) token ids, or float32 (batch, time, features)
    kind: str  # "tokens" | "features"
    labels: list[str] | None  # display label per time step of batch element 0 (chars, tokens)
    description: str  # e.g. "charlm.txt: 212 characters" — shown in the report summary
    text: str | None = None  # the raw text for character models (token highlighting)
    lengths: np.ndarray | None = None  # (batch,) when sequences have unequal lengths
    extra: dict = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return int(self.values.shape[0])

    @property
    def steps(self) -> int:
        return int(self.values.shape[1])
