"""How to load and trace (`LoadOptions`); what the page shows is `page.view.ViewOptions`, what the
analysis does `analysis.options.AnalysisOptions`.

Plain dataclasses, no heavy imports: `cli.py` reads them at import time.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LoadOptions:
    """How to load the checkpoint and the sample, and how strictly to verify the trace."""

    checkpoint: Path
    input: Path | None = None
    tokens: str | None = None
    device: str = "cpu"
    trust_pickle: bool = False
    trust_torchscript: bool = False
    model_class: str | None = None
    model_kwargs: str | None = None
    verify: bool = True
    module: str | None = None  # hand-written cell to open up (`tracing.cells`); None: automatic
    max_memory: str | None = None  # e.g. "2G" or "50%"; None: a quarter of RAM
    weights_key: str | None = None  # which state dict of a dict checkpoint holding several ("model", "ckpt/model")
    # "PARAM=ARRAY" pairs: arrays of an .npz input (or its lengths) for the model's forward
    forward_args: tuple[str, ...] = ()
    head: str | None = None  # a rebuilt head's wiring: "all" | "last" | "final-states"; None: metadata/assumed
    recurrent_only: bool = False  # trace the recurrent layers alone, the sample as their direct input
    batch_index: int | None = None  # trace only this sequence of a batched sample (None: all of them)
