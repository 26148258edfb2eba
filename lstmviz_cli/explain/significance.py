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

Cost bound: the test reads the first `significance_steps(...)` steps (the budget
`SIGNIFICANCE_BUDGET` of multiply-adds, at least `MIN_TEST_STEPS`), the ranking every step; a
corpus tests its first sequences, concatenated (`evidence_for_units`). A test over fewer steps is valid,
only less powerful; `UnitTests.steps` says how many it read.

JSON (the report's ``units``)::

    {"ranked": [{"feature", "key", "unit", "r", "p", "control_r", "significant": true}],
     "not_significant": [{... the best unit of each feature with no significant unit ...}],
     "permutations": int, "alpha": float, "block_lengths": {feature: steps},
     "pairs_tested": int, "correction": str, "steps": int, "note": str}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from lstmviz_cli.analysis.evidence import UnitCorrelation, UnitTests
from lstmviz_cli.analysis.units import UNIT_SERIES, pearson_matrix, rank_units
from lstmviz_cli.tracing.records import Trace

PERMUTATIONS = 2000  # block permutations per feature: the smallest p is features / 2001
MAX_PERMUTATIONS = 100_000  # more is refused: each feature holds (permutations x steps) indices and values
SIGNIFICANCE_LEVEL = 0.05  # family-wise error rate over every unit x feature pair tested
MIN_BLOCKS = 10  # blocks are at most steps / MIN_BLOCKS long
PERMUTATION_SEED = 0
# The test reads at most as many steps as this many multiply-adds allow (about half a second), and
# at least MIN_TEST_STEPS; the ranking by |r| reads every step.
SIGNIFICANCE_BUDGET = 4e9
MIN_TEST_STEPS = 200
CORRECTION = "max-T over units (Westfall-Young), Bonferroni over features"
# A ranked pair with its evidence (p, significant, control_r) is a UnitCorrelation (analysis.records).
UnitEvidence = UnitCorrelation


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


def significance_steps(features: int, units: int, permutations: int = PERMUTATIONS,
                       budget: float = SIGNIFICANCE_BUDGET) -> int:
    """How many steps the permutation test reads within `budget` multiply-adds (at least MIN_TEST_STEPS).

    The test costs about features x permutations x units x steps multiply-adds.
    """
    per_step = max(1, features) * max(1, permutations) * max(1, units)
    return max(MIN_TEST_STEPS, int(budget // per_step))


def state_blocks(trace: Trace, steps_cap: int) -> list[tuple[str, np.ndarray]]:
    """(key, states (steps, units) float64) of every c/h series of batch element 0, its first `steps_cap` steps."""
    found = []
    for layer in trace.layers:
        for series in UNIT_SERIES:
            if series not in layer.series:
                continue
            seq = np.asarray(layer.series[series][0, :steps_cap], dtype=np.float64)
            found.append((f"{layer.prefix}/{series}", seq))
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
    max_steps: int | None = None,
) -> UnitTests:
    """Corrected block-permutation p-values for the `per_feature` strongest units of every feature.

    trace: c and h of every layer (batch element 0, as `analysis.rank_units`); features: name ->
    (time,) values per step. control: feature -> best |r| of an untrained model
    (`control.control_correlations`), attached to each row. max_steps: test only the first steps
    (default: as many as `significance_steps` allows; the ranking itself reads every step).
    Deterministic for a given `seed`. Costs about features x permutations x steps x units
    multiply-adds (the sample char model, 9 features, 2000 permutations, 384 units, 393 steps:
    2.7e9, about a third of a second).
    """
    names = sorted(features)
    candidates = rank_units(trace, {n: features[n] for n in names}, per_feature=per_feature)
    units = sum(layer.series[s].shape[2] for layer in trace.layers for s in UNIT_SERIES if s in layer.series)
    cap = max_steps if max_steps is not None else significance_steps(len(names), units, permutations)
    steps = min([len(features[n]) for n in names] + [trace.layers[0].steps if trace.layers else 0, cap])
    blocks = state_blocks(trace, steps)
    window = {n: np.asarray(features[n], dtype=np.float64)[:steps] for n in names}
    return evidence_for_units(blocks, window, candidates, permutations=permutations, alpha=alpha, seed=seed,
                      control=control)


def evidence_for_units(
    blocks: Sequence[tuple[str, np.ndarray]],
    features: Mapping[str, np.ndarray],
    candidates: Sequence[UnitCorrelation],
    *,
    permutations: int = PERMUTATIONS,
    alpha: float = SIGNIFICANCE_LEVEL,
    seed: int = PERMUTATION_SEED,
    control: Mapping[str, float] | None = None,
) -> UnitTests:
    """p-values of `candidates` (ranked pairs, strongest first per feature) from block permutations.

    blocks: (key, states (steps, units)) of every c/h series over the steps tested (NaN rows, such
    as padding, are left out); features: name -> (steps,) over the same steps. A corpus passes the
    first sequences read, concatenated in time (`analysis.pooled`), and candidates ranked over the
    whole corpus: the test is then of the correlation over the steps tested. A candidate whose
    unit cannot be tested there (constant) gets p = 1.
    """
    names = sorted(features)
    steps = min([len(features[n]) for n in names], default=0)
    kept = []
    for key, states in blocks:
        states = np.asarray(states, dtype=np.float64)[:steps]
        keep = np.flatnonzero(~np.isnan(states).any(axis=1))
        if len(keep) >= 3:
            kept.append((key, states[keep], keep))
    rng = np.random.default_rng(seed)
    pvalues: dict[tuple[str, str, int], float] = {}
    lengths: dict[str, int] = {}
    tested_features = 0
    pairs = 0
    for name in names:
        f = np.asarray(features[name], dtype=np.float64)[:steps]
        observed = [np.abs(pearson_matrix(x, f[keep][:, None])[:, 0]) for _, x, keep in kept]
        testable = sum(int(np.isfinite(o).sum()) for o in observed)
        if testable == 0:
            continue
        tested_features += 1
        pairs += testable
        lengths[name] = block_length(f)
        index = block_permutations(steps, lengths[name], permutations, rng)
        shuffled = f[index].T  # (steps, permutations)
        null = np.full(permutations, -np.inf)
        for _, x, keep in kept:
            r = np.abs(pearson_matrix(x, shuffled[keep]))
            null = np.maximum(null, np.nanmax(np.where(np.isnan(r), -np.inf, r), axis=0))
        null.sort()
        for (key, _, _), obs in zip(kept, observed, strict=True):
            # How many permutations reach each observed |r| (a hair of slack for float ties).
            exceed = permutations - np.searchsorted(null, obs - 1e-12, side="left")
            for unit in np.flatnonzero(np.isfinite(obs)):
                pvalues[(name, key, int(unit))] = float((1.0 + exceed[unit]) / (1.0 + permutations))
    ranked, not_significant = [], []
    best_seen: set[str] = set()

    def evidence(c: UnitCorrelation, significant: bool | None = None) -> UnitCorrelation:
        p = float(min(1.0, pvalues.get((c.feature, c.key, c.unit), 1.0) * max(tested_features, 1)))
        return UnitCorrelation(feature=c.feature, key=c.key, unit=c.unit, r=c.r, p=p,
                               significant=p <= alpha if significant is None else significant,
                               control_r=None if control is None else control.get(c.feature))

    for c in candidates:
        row = evidence(c)
        if row.significant:
            ranked.append(row)
    for c in candidates:  # each feature's units come strongest first
        if c.feature in best_seen or any(u.feature == c.feature for u in ranked):
            continue
        best_seen.add(c.feature)
        not_significant.append(evidence(c, significant=False))
    ranked.sort(key=lambda u: (-abs(u.r), u.feature, u.key, u.unit))
    return UnitTests(ranked=tuple(ranked), not_significant=tuple(not_significant),
                     permutations=permutations, alpha=alpha, pairs_tested=pairs, block_lengths=lengths,
                     steps=steps, correction=CORRECTION)
