"""What the analysis stage is asked to do beyond its defaults: `AnalysisOptions`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lstmviz_cli.analysis.thresholds import Thresholds


@dataclass(frozen=True)
class AnalysisOptions:
    """Options of the analysis stage (`explain.orchestrate.analyze_run`); the CLI's report flags.

    The saturation defaults are the Thresholds' own (one source).
    """

    labels: Path | None = None  # per-step user labels CSV for the interpretable-units ranking
    saturation_low: float = Thresholds.saturation_low  # gate values below this are left-saturated
    saturation_high: float = Thresholds.saturation_high  # gate values above this are right-saturated
    saliency_step: int | None = None  # the output step whose gradient saliency is shown (default last)
    memory_probe: bool = False  # run the key-at-start memory-length probe
    # -- explanations with evidence (issue 18; `explain.gather`) ------------------------------
    attribution: str = "auto"  # decompositions: "auto" (LRP; CD when cheap), "none", or "cd,lrp"
    ablate: tuple[str, ...] = ()  # units to ablate, "lstm/l0/fwd:49" or "lstm/l0/fwd:49=0.5"
    ablate_mode: str = "clamp"  # what --ablate and the default checks do: "clamp" (to a mean) | "zero"
    ablate_top: int = 3  # the top-ranked units checked causally by default (0: none)
    permutations: int = 2000  # block permutations per feature for the units' p-values (0: none)
    corpus: Path | None = None  # corpus mode: every sequence of this corpus is pooled (the sample is its first)
