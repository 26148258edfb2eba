"""Is a unit's correlation with a feature a finding or luck? Block-permutation p-values. NumPy only.

Ranking Pearson r over every unit x feature of one sample always finds something: a random label
column reaches |r| = 0.125 on the sample char model. Each ranked pair therefore gets a p-value
from a permutation test that respects time:

* The null: the feature shuffled in contiguous blocks (a moving-block permutation after a random
  circular shift, so block boundaries fall anywhere; Künsch 1989, Politis & Romano 1992 for the
  circular form). Inside a block the feature keeps its autocorrelation; a plain shuffle would
  break it and make every smooth unit look significant against a smooth feature.
* Block length: the first lag at which the feature's autocorrelation reaches zero (its
  decorrelation lag: beyond it the feature carries no positive memory of itself), at most
  steps / `MIN_BLOCKS` so that there are enough blocks to permute (10 blocks: 3.6 million
  orders, times the shifts).
* Correction, family-wise: for each feature the statistic is the best |r| over all units tested
  (Westfall & Young's max-T, the resampling form of Holm/Bonferroni that knows the units are
  correlated), p = (1 + #{null best |r| >= |r|}) / (1 + permutations) (Phipson & Smyth 2010);
  then Bonferroni over the features. Family-wise control, not Benjamini-Hochberg's false
  discovery rate: each ranked row is a claim a reader acts on alone ("this unit tracks quotes"),
  and per-pair Holm or BH over thousands of pairs could not reach significance at all with
  permutation p-values, whose floor is 1 / (1 + permutations).

Rows are ranked by effect (|r|) among the significant ones; a feature none of whose units is
significant is not ranked, and its best unit is listed as such.

JSON (the report's ``units``)::

    {"ranked": [{"feature", "key", "unit", "r", "p", "control_r", "significant": true}],
     "not_significant": [{... the best unit of each feature with no significant unit ...}],
     "permutations": int, "alpha": float, "block_lengths": {feature: steps},
     "pairs_tested": int, "correction": str, "note": str}
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lstmviz_cli.analysis.units import UNIT_SERIES, pearson_matrix, rank_units
from lstmviz_cli.tracing.records import Trace

PERMUTATIONS = 2000  # block permutations per feature: the smallest p is features / 2001
SIGNIFICANCE_LEVEL = 0.05  # family-wise error rate over every unit x feature pair tested
MIN_BLOCKS = 10  # blocks are at most steps / MIN_BLOCKS long
PERMUTATION_SEED = 0
CORRECTION = "max-T over units (Westfall-Young), Bonferroni over features"


@dataclass(frozen=True)
class UnitEvidence:
    """One unit's correlation with one feature, its corrected p-value and the untrained control.

    r: Pearson r over the steps of batch element 0; p: family-wise corrected p-value;
    control_r: the same feature's best |r| over every unit of an untrained model of the same
    architecture on the same input (None when not computed).
    """

    feature: str
    key: str  # "<prefix>/<series>", e.g. "lstm/l0/fwd/c"
    unit: int
    r: float
    p: float
    significant: bool
    control_r: float | None = None

    @property
    def prefix(self) -> str:
        return self.key.rsplit("/", 1)[0]

    def to_json(self) -> dict[str, Any]:
        return {"feature": self.feature, "key": self.key, "unit": self.unit, "r": self.r, "p": self.p,
                "control_r": self.control_r, "significant": self.significant}


@dataclass(frozen=True)
class UnitTests:
    """Ranked unit-feature pairs with evidence, and what was tested."""

    ranked: tuple[UnitEvidence, ...]  # significant pairs, strongest |r| first
    not_significant: tuple[UnitEvidence, ...]  # the best unit of each feature without a significant one
    permutations: int
    alpha: float
    pairs_tested: int
    block_lengths: dict[str, int] = field(default_factory=dict)
    correction: str = CORRECTION

    @property
    def note(self) -> str:
        if not self.pairs_tested:
            return "no unit-feature pair could be tested (constant features or units)"
        if not self.ranked:
            return (f"no unit is significantly correlated with any feature (family-wise "
                    f"alpha {self.alpha:g} over {self.pairs_tested} pairs): units are not ranked")
        return ""

    def to_json(self) -> dict[str, Any]:
        return {
            "ranked": [u.to_json() for u in self.ranked],
            "not_significant": [u.to_json() for u in self.not_significant],
            "permutations": self.permutations,
            "alpha": self.alpha,
            "block_lengths": dict(self.block_lengths),
            "pairs_tested": self.pairs_tested,
            "correction": self.correction,
            "note": self.note,
        }


def block_length(feature: np.ndarray, min_blocks: int = MIN_BLOCKS) -> int:
    """The first lag where the feature's autocorrelation is <= 0, within [1, len / min_blocks]."""
    f = np.asarray(feature, dtype=np.float64)
    fc = f - f.mean()
    energy = float(fc @ fc)
    cap = max(1, len(f) // min_blocks)
    if energy <= 0.0:
        return 1
    for lag in range(1, cap + 1):
        if float(fc[:-lag] @ fc[lag:]) <= 0.0:
            return lag
    return cap


def block_permutations(steps: int, block: int, count: int, rng: np.random.Generator) -> np.ndarray:
    """(count, steps) index arrays: a random circular shift, then the blocks of `block` steps reordered.

    Every row is a permutation of range(steps); the last block may be shorter.
    """
    blocks = -(-steps // block)
    order = rng.random((count, blocks)).argsort(axis=1)
    index = (order[:, :, None] * block + np.arange(block)).reshape(count, -1)
    index = index[index < steps].reshape(count, steps)  # drops the short block's missing tail
    shift = rng.integers(0, steps, size=(count, 1))
    return (index + shift) % steps


def _state_blocks(trace: Trace, steps_cap: int) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(key, states (rows, units) float64, kept step indices) of every c/h series, batch element 0."""
    found = []
    for layer in trace.layers:
        for series in UNIT_SERIES:
            if series not in layer.series:
                continue
            seq = np.asarray(layer.series[series][0], dtype=np.float64)
            seq = seq[: min(seq.shape[0], steps_cap)]
            keep = np.flatnonzero(~np.isnan(seq).any(axis=1))
            if len(keep) >= 3:
                found.append((f"{layer.prefix}/{series}", seq[keep], keep))
    return found


def unit_significance(
    trace: Trace,
    features: Mapping[str, np.ndarray],
    *,
    per_feature: int = 5,
    permutations: int = PERMUTATIONS,
    alpha: float = SIGNIFICANCE_LEVEL,
    seed: int = PERMUTATION_SEED,
    control: Mapping[str, float] | None = None,
) -> UnitTests:
    """Corrected block-permutation p-values for the `per_feature` strongest units of every feature.

    trace: c and h of every layer (batch element 0, as `analysis.rank_units`); features: name ->
    (time,) values per step. control: feature -> best |r| of an untrained model
    (`control.control_correlations`), attached to each row. Deterministic for a given `seed`.
    Costs about features x permutations x steps x units multiply-adds (the sample char model,
    9 features, 2000 permutations, 384 units, 393 steps: 2.7e9, about a second).
    """
    names = sorted(features)
    steps = min([len(features[n]) for n in names], default=0)
    blocks = _state_blocks(trace, steps)
    rng = np.random.default_rng(seed)
    pvalues: dict[tuple[str, str, int], float] = {}
    lengths: dict[str, int] = {}
    tested_features = 0
    pairs = 0
    for name in names:
        f = np.asarray(features[name], dtype=np.float64)[:steps]
        observed = [np.abs(pearson_matrix(x, f[keep][:, None])[:, 0]) for _, x, keep in blocks]
        testable = sum(int(np.isfinite(o).sum()) for o in observed)
        if testable == 0:
            continue
        tested_features += 1
        pairs += testable
        lengths[name] = block_length(f)
        index = block_permutations(steps, lengths[name], permutations, rng)
        shuffled = f[index].T  # (steps, permutations)
        null = np.full(permutations, -np.inf)
        for _, x, keep in blocks:
            r = np.abs(pearson_matrix(x, shuffled[keep]))
            null = np.maximum(null, np.nanmax(np.where(np.isnan(r), -np.inf, r), axis=0))
        null.sort()
        for (key, _, _), obs in zip(blocks, observed, strict=True):
            # How many permutations reach each observed |r| (a hair of slack for float ties).
            exceed = permutations - np.searchsorted(null, obs - 1e-12, side="left")
            for unit in np.flatnonzero(np.isfinite(obs)):
                pvalues[(name, key, int(unit))] = (1.0 + exceed[unit]) / (1.0 + permutations)
    ranked, not_significant = [], []
    candidates = rank_units(trace, {n: features[n] for n in names}, per_feature=per_feature)
    best_seen: set[str] = set()
    for c in candidates:
        p = min(1.0, pvalues[(c.feature, c.key, c.unit)] * tested_features)
        row = UnitEvidence(feature=c.feature, key=c.key, unit=c.unit, r=c.r, p=p, significant=p <= alpha,
                           control_r=None if control is None else control.get(c.feature))
        if row.significant:
            ranked.append(row)
    for c in candidates:  # rank_units lists each feature's units strongest first
        if c.feature in best_seen or any(u.feature == c.feature for u in ranked):
            continue
        best_seen.add(c.feature)
        p = min(1.0, pvalues[(c.feature, c.key, c.unit)] * tested_features)
        not_significant.append(UnitEvidence(feature=c.feature, key=c.key, unit=c.unit, r=c.r, p=p,
                                            significant=False,
                                            control_r=None if control is None else control.get(c.feature)))
    return UnitTests(ranked=tuple(ranked), not_significant=tuple(not_significant),
                     permutations=permutations, alpha=alpha, pairs_tested=pairs, block_lengths=lengths)
