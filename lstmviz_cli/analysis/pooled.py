"""Statistics pooled over a corpus, reduced batch by batch as its traces are produced. NumPy only.

Corpus mode (`explain.corpus`) traces a corpus in batches of equal-length sequences; each batch's
`Trace` is folded into a `CorpusReducer` and dropped, so memory does not grow with the corpus.
Per layer and series the reducer keeps a fixed number of numbers per unit, merged exactly from
per-batch moments (Chan, Golub & LeVeque's pairwise update, float64 between batches):

* count, mean and sum of squared deviations per unit (gate statistics, timescales);
* for gates, how many values are below `saturation_low` / above `saturation_high` (saturation),
  and for the memory gate above `forget_pinned_high` (the pinned-forget finding);
* minimum and maximum per unit (dead units from h, |c| peaks);
* for c and h: the scatter matrix (units x units; PCA trajectories) and the co-moments with every
  text feature (Pearson r pooled over every step of every sequence);
* for h: each unit's highest and lowest values with the tokens around them (`TopContexts`);
* the first `window_steps` steps of c, h and the features, concatenated (the permutation test,
  which cannot stream: `explain.significance.evidence_for_units`).

Every pooled number equals the in-memory analysis of the same sequences as one batch (checked by
the tests against `analysis.stats`, `saturation`, `units`, `findings`), up to float rounding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from lstmviz_cli.analysis.evidence import Excerpt, UnitCorrelation, UnitExcerpts
from lstmviz_cli.analysis.records import GateStat, Saturation, Trajectory
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.analysis.units import UNIT_SERIES
from lstmviz_cli.tracing.records import GATE_SERIES, LayerTrace, Trace

MEMORY_GATE = {"lstm": "f", "gru": "z"}  # the gate whose value is the share of the state kept
EXCERPTS_PER_UNIT = 5  # contexts kept per unit and direction (highest, lowest)
CONTEXT_BEFORE = 24  # tokens shown before the firing token
CONTEXT_AFTER = 8  # ... and after it
SEGMENT = CONTEXT_BEFORE + CONTEXT_AFTER  # one candidate per segment of a sequence: distinct contexts


def _rows(array: np.ndarray) -> np.ndarray:
    """(batch, time, units) -> (n, units) float32 of the steps that are not padding (NaN)."""
    flat = np.asarray(array).reshape(-1, array.shape[-1])
    keep = ~np.isnan(flat).any(axis=1)
    flat = flat if keep.all() else flat[keep]
    return flat.astype(np.float32, copy=False)


@dataclass
class Moments:
    """Count, mean and sum of squared deviations per column, merged batch by batch (float64)."""

    n: int = 0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None

    def add(self, count: int, mean: np.ndarray, m2: np.ndarray) -> None:
        """Merge a batch's count, column means and squared deviations (Chan et al. 1979)."""
        if count == 0:
            return
        if self.mean is None or self.m2 is None:
            self.n, self.mean, self.m2 = count, mean.astype(np.float64), m2.astype(np.float64)
            return
        total = self.n + count
        delta = mean - self.mean
        self.mean = self.mean + delta * (count / total)
        self.m2 = self.m2 + m2 + delta**2 * (self.n * count / total)
        self.n = total


@dataclass
class CrossMoments:
    """Co-moments of the columns of x (units) with those of f (features), merged batch by batch."""

    x: Moments = field(default_factory=Moments)
    f: Moments = field(default_factory=Moments)
    cross: np.ndarray | None = None  # (units, features) sum of (x - mean x)(f - mean f)

    def add(self, x_centred: np.ndarray, x_mean: np.ndarray, f: np.ndarray) -> None:
        """x_centred: (n, units) minus its batch mean x_mean; f: (n, features) float64."""
        n = len(f)
        if n == 0:
            return
        f_mean = f.mean(axis=0)
        fc = f - f_mean
        cross = (x_centred.T @ fc.astype(x_centred.dtype)).astype(np.float64)
        if self.cross is None or self.x.mean is None or self.f.mean is None:
            self.cross = cross
        else:
            total = self.x.n + n
            self.cross = self.cross + cross + np.outer(x_mean - self.x.mean, f_mean - self.f.mean) * (self.x.n * n / total)
        self.x.add(n, x_mean, np.einsum("ij,ij->j", x_centred, x_centred).astype(np.float64))
        self.f.add(n, f_mean, (fc**2).sum(axis=0))

    def pearson(self) -> np.ndarray:
        """(units, features) Pearson r; NaN where a unit or a feature never moves (as `units.pearson_matrix`)."""
        assert self.cross is not None and self.x.m2 is not None and self.f.m2 is not None
        x_norm, f_norm = np.sqrt(self.x.m2), np.sqrt(self.f.m2)
        with np.errstate(invalid="ignore", divide="ignore"):
            r = self.cross / np.outer(x_norm, f_norm)
        r[x_norm < 1e-8 * math.sqrt(max(self.x.n, 1)), :] = np.nan
        r[:, f_norm < 1e-12] = np.nan
        clipped: np.ndarray = np.clip(r, -1.0, 1.0)
        return clipped


@dataclass
class SeriesAccumulator:
    """Everything pooled about one series of one layer (see the module docstring)."""

    prefix: str
    series: str
    moments: Moments = field(default_factory=Moments)
    low: np.ndarray | None = None  # values < saturation_low per unit (gates)
    high: np.ndarray | None = None  # values > saturation_high per unit (gates)
    pinned: np.ndarray | None = None  # values > forget_pinned_high per unit (the memory gate)
    minimum: np.ndarray | None = None
    maximum: np.ndarray | None = None
    scatter: np.ndarray | None = None  # c, h: sum of centred outer products (units, units)
    cross: CrossMoments | None = None  # c, h with the features
    seq_std_sum: float = 0.0  # c: sum over sequences of the unit-mean std over time
    sequences: int = 0


def _add_count(total: np.ndarray | None, value: np.ndarray) -> np.ndarray:
    return value.astype(np.int64) if total is None else total + value


class TopContexts:
    """Each unit's `count` highest and lowest values over everything read, with the tokens around them.

    One candidate per segment of `SEGMENT` steps of a sequence, so that the contexts kept are
    distinct places, not neighbouring steps of one place. Ties keep the earlier sequence and step.
    """

    def __init__(self, count: int = EXCERPTS_PER_UNIT, before: int = CONTEXT_BEFORE, after: int = CONTEXT_AFTER) -> None:
        self.count, self.before, self.after = count, before, after
        self.segment = before + after
        # Per direction ("highest", "lowest"): values (k, units), sequence, step, token windows (k, units, width).
        self._kept: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}

    def add(self, values: np.ndarray, ids: np.ndarray, sequences: np.ndarray) -> None:
        """values: (batch, time, units) of one series; ids: (batch, time) token ids of the same steps;
        sequences: (batch,) the corpus index of each sequence."""
        batch, steps, units = values.shape
        width = self.before + 1 + self.after
        padded_ids = np.full((batch, steps + width), -1, dtype=np.int64)
        padded_ids[:, self.before:self.before + steps] = ids
        x = np.asarray(values)
        segments = -(-steps // self.segment)
        full = steps // self.segment
        for direction, sign in (("highest", 1.0), ("lowest", -1.0)):
            # Each segment's extreme first (a reduction along contiguous units; 5x faster than
            # reduceat), then the position only inside the few segments kept.
            reduce = np.fmax.reduce if sign > 0 else np.fmin.reduce  # NaN (padding) ignored
            parts = []
            if full:
                parts.append(reduce(x[:, : full * self.segment].reshape(batch, full, self.segment, units), axis=2))
            if full < segments:
                parts.append(reduce(x[:, full * self.segment:], axis=1)[:, None, :])
            seg_val = sign * np.concatenate(parts, axis=1).astype(np.float64)  # (batch, segments, units)
            seg_val = np.where(np.isnan(seg_val), -np.inf, seg_val).reshape(-1, units)
            k = min(self.count, len(seg_val))
            # The k largest per unit, then in order (earlier sequence and segment first on ties).
            keep = np.argpartition(-seg_val, k - 1, axis=0)[:k] if k < len(seg_val) else \
                np.broadcast_to(np.arange(len(seg_val))[:, None], seg_val.shape)
            ranked = np.lexsort((keep, -np.take_along_axis(seg_val, keep, axis=0)), axis=0)
            order = np.take_along_axis(keep, ranked, axis=0)
            cand_val = np.take_along_axis(seg_val, order, axis=0)
            local_seq, seg = order // segments, order % segments
            span = np.arange(self.segment)
            where = seg[:, :, None] * self.segment + span  # (k, units, segment) steps of each kept segment
            inside = where < steps
            picked = x[local_seq[:, :, None], np.minimum(where, steps - 1), np.arange(units)[None, :, None]]
            picked = np.where(inside & ~np.isnan(picked), sign * picked.astype(np.float64), -np.inf)
            cand_step = seg * self.segment + picked.argmax(axis=2)
            cand_seq = np.asarray(sequences, dtype=np.int64)[local_seq]
            offsets = cand_step[:, :, None] + np.arange(width)[None, None, :]
            cand_win = padded_ids[local_seq[:, :, None], offsets]
            if direction in self._kept:
                old_val, old_seq, old_step, old_win = self._kept[direction]
                cand_val = np.concatenate([old_val, cand_val])
                cand_seq = np.concatenate([old_seq, cand_seq])
                cand_step = np.concatenate([old_step, cand_step])
                cand_win = np.concatenate([old_win, cand_win])
                order = np.argsort(-cand_val, axis=0, kind="stable")[: self.count]
                cand_val = np.take_along_axis(cand_val, order, axis=0)
                cand_seq = np.take_along_axis(cand_seq, order, axis=0)
                cand_step = np.take_along_axis(cand_step, order, axis=0)
                cand_win = np.take_along_axis(cand_win, order[:, :, None], axis=0)
            self._kept[direction] = (cand_val, cand_seq, cand_step, cand_win)

    def excerpts(self, prefix: str, means: np.ndarray, token_text: Callable[[int], str]) -> list[UnitExcerpts]:
        """One UnitExcerpts per unit (units whose every value was NaN get none)."""
        if "highest" not in self._kept:
            return []
        result = []
        units = self._kept["highest"][0].shape[1]
        for unit in range(units):
            sides: dict[str, tuple[Excerpt, ...]] = {}
            for direction, sign in (("highest", 1.0), ("lowest", -1.0)):
                val, seq, step, win = self._kept[direction]
                found = []
                for row in range(val.shape[0]):
                    if not np.isfinite(val[row, unit]):
                        continue
                    window = [int(i) for i in win[row, unit]]
                    before = tuple(token_text(i) for i in window[: self.before] if i >= 0)
                    after = tuple(token_text(i) for i in window[self.before + 1:] if i >= 0)
                    found.append(Excerpt(sequence=int(seq[row, unit]), step=int(step[row, unit]),
                                         value=float(sign * val[row, unit]), before=before,
                                         token=token_text(window[self.before]), after=after))
                sides[direction] = tuple(found)
            if sides["highest"]:
                result.append(UnitExcerpts(prefix=prefix, unit=unit, mean=float(means[unit]),
                                           highest=sides["highest"], lowest=sides["lowest"]))
        return result


@dataclass(frozen=True)
class LayerCounts:
    """What the findings read about one layer, pooled (`analysis.findings.diagnose`'s `pooled`).

    values: values per unit; h_span: max - min of h per unit; low_share / pinned_share: the share
    of steps the memory gate spends below saturation_low / above forget_pinned_high per unit;
    c_peak: the largest |c| per unit.
    """

    values: int
    h_span: np.ndarray | None = None
    memory_gate: str | None = None
    low_share: np.ndarray | None = None
    pinned_share: np.ndarray | None = None
    c_peak: np.ndarray | None = None


@dataclass
class Pooled:
    """What a corpus reduction found: the analysis's records pooled over every sequence read."""

    sequences: int
    steps: int
    gate_stats: list[GateStat]
    saturation: list[Saturation]
    layers: dict[str, LayerCounts]
    units: list[UnitCorrelation]
    keep_gate_means: dict[str, tuple[str, np.ndarray]]  # prefix -> (gate, mean per unit): timescales
    scatter: dict[tuple[str, str], tuple[int, np.ndarray, np.ndarray]]  # (prefix, series) -> (n, mean, scatter)
    excerpts: list[UnitExcerpts]
    window: list[tuple[str, np.ndarray]]  # (key, states (steps, units)) of the first steps read
    window_features: dict[str, np.ndarray]  # name -> (steps,) over the same steps
    # The inputs of the window's sequences and how many of each one's first steps it holds.
    window_inputs: list[tuple[np.ndarray, int]] = field(default_factory=list)


class CorpusReducer:
    """Folds traces of batches of sequences into pooled statistics (module docstring).

    layers: the traced model's layers (one trace's `layers`: prefixes, families, series names);
    features: names of the per-step features `add` is given; window_steps: steps of c, h and the
    features kept for the permutation test; token_text: id -> token for excerpts (None: no
    excerpts, e.g. feature inputs).
    """

    def __init__(self, layers: Sequence[LayerTrace], thresholds: Thresholds, *, features: Sequence[str] = (),
                 window_steps: int = 0, excerpts: bool = True, per_feature: int = 5) -> None:
        self.thresholds = thresholds
        self.features = tuple(sorted(features))
        self.window_steps = window_steps
        self.per_feature = per_feature
        self.sequences = 0
        self.steps = 0
        self.layers = [(layer.prefix, layer.family, tuple(layer.series)) for layer in layers]
        self._acc: dict[tuple[str, str], SeriesAccumulator] = {}
        self._top: dict[str, TopContexts] = {}
        for prefix, _family, names in self.layers:
            for name in names:
                acc = SeriesAccumulator(prefix, name)
                if name in UNIT_SERIES and self.features:
                    acc.cross = CrossMoments()
                self._acc[(prefix, name)] = acc
            if excerpts and "h" in names:
                self._top[prefix] = TopContexts()
        self._window: dict[str, list[np.ndarray]] = {}
        self._window_features: dict[str, list[np.ndarray]] = {name: [] for name in self.features}
        self._window_filled = 0
        self._buffers: dict[tuple[int, ...], np.ndarray] = {}
        # (a sequence's input, how many of its first steps are in the window), in window order.
        self.window_inputs: list[tuple[np.ndarray, int]] = []

    def add(self, trace: Trace, *, ids: np.ndarray | None = None, features: Mapping[str, np.ndarray] | None = None,
            sequences: np.ndarray | None = None, inputs: np.ndarray | None = None) -> None:
        """Fold one batch in: `trace` of (batch, time) sequences of equal length (padding as NaN is
        also accepted), `ids` its token ids (batch, time) for excerpts, `features` name -> (batch,
        time), `sequences` the corpus index of each sequence (default: the next ones in order),
        `inputs` the batch as the model read it (kept for the sequences of the test window)."""
        th = self.thresholds
        batch, steps = trace.layers[0].series[next(iter(trace.layers[0].series))].shape[:2]
        index = np.arange(self.sequences, self.sequences + batch) if sequences is None else np.asarray(sequences)
        feats = None
        if self.features:
            if features is None:
                raise ValueError("the reducer was built with features; add() needs them")
            feats = np.stack([np.asarray(features[n], dtype=np.float64).reshape(-1) for n in self.features], axis=1)
        for layer in trace.layers:
            gate = MEMORY_GATE.get(layer.family)
            first_series = next(iter(layer.series.values()))
            valid = ~np.isnan(np.asarray(first_series)[:, :, 0].reshape(-1))
            padded = not valid.all()
            layer_feats = None if feats is None else (feats[valid] if padded else feats)
            for name, array in layer.series.items():
                acc = self._acc[(layer.prefix, name)]
                flat = np.asarray(array).reshape(-1, array.shape[-1])
                rows = (flat[valid] if padded else flat).astype(np.float32, copy=False)
                n = len(rows)
                if n == 0:
                    continue
                mean = rows.sum(axis=0, dtype=np.float64) / n
                # Centred in a reused buffer: fresh multi-megabyte arrays cost page faults every batch.
                centred = np.subtract(rows, mean.astype(np.float32), out=self._scratch(rows.shape))
                if name in UNIT_SERIES:
                    scatter = (centred.T @ centred).astype(np.float64)
                    m2 = np.diag(scatter).copy()
                    acc.scatter = scatter if acc.scatter is None or acc.moments.mean is None else (
                        acc.scatter + scatter
                        + np.outer(mean - acc.moments.mean, mean - acc.moments.mean) * (acc.moments.n * n / (acc.moments.n + n)))
                    if acc.cross is not None and layer_feats is not None:
                        acc.cross.add(centred, mean, layer_feats)
                else:
                    m2 = np.einsum("ij,ij->j", centred, centred).astype(np.float64)
                acc.moments.add(n, mean, m2)
                if name in GATE_SERIES:
                    acc.low = _add_count(acc.low, np.count_nonzero(rows < th.saturation_low, axis=0))
                    acc.high = _add_count(acc.high, np.count_nonzero(rows > th.saturation_high, axis=0))
                    if name == gate:
                        acc.pinned = _add_count(acc.pinned, np.count_nonzero(rows > th.forget_pinned_high, axis=0))
                if name in ("h", "c"):
                    low, high = rows.min(axis=0).astype(np.float64), rows.max(axis=0).astype(np.float64)
                    acc.minimum = low if acc.minimum is None else np.minimum(acc.minimum, low)
                    acc.maximum = high if acc.maximum is None else np.maximum(acc.maximum, high)
                if name == "c":
                    self._add_time_std(acc, np.asarray(array), padded)
                if name == "h" and layer.prefix in self._top and ids is not None:
                    self._top[layer.prefix].add(array, ids, index)
        self._fill_window(trace, feats, inputs)
        self.sequences += batch
        valid_steps = next(iter(trace.layers[0].series.values()))
        self.steps += int((~np.isnan(np.asarray(valid_steps)).any(axis=2)).sum())

    def _scratch(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 buffer of `shape`, reused across series and batches of the same shape."""
        buffer = self._buffers.get(shape)
        if buffer is None:
            self._buffers.clear()  # one shape at a time: memory stays bounded
            buffer = self._buffers[shape] = np.empty(shape, dtype=np.float32)
        return buffer

    @staticmethod
    def _add_time_std(acc: SeriesAccumulator, seq: np.ndarray, padded: bool) -> None:
        """Each sequence's std over time per unit, averaged over units (`GateStat.time_std`)."""
        if padded:
            with np.errstate(invalid="ignore"):
                stds = np.nanstd(seq.astype(np.float64), axis=1).mean(axis=1)
            counted = (~np.isnan(seq).any(axis=2)).sum(axis=1) > 1
        else:
            stds = np.sqrt(np.maximum(seq.var(axis=1, dtype=np.float64), 0.0)).mean(axis=1)
            counted = np.full(len(seq), seq.shape[1] > 1)
        acc.seq_std_sum += float(stds[counted].sum())
        acc.sequences += int(counted.sum())

    def _fill_window(self, trace: Trace, feats: np.ndarray | None, inputs: np.ndarray | None) -> None:
        """Keep the first `window_steps` valid steps of c, h (and the features), sequences concatenated,
        and the inputs of the sequences they come from (the untrained control reads the same steps)."""
        room = self.window_steps - self._window_filled
        if room <= 0:
            return
        first = trace.layers[0].series[next(iter(trace.layers[0].series))]
        valid_2d = ~np.isnan(np.asarray(first)).any(axis=2)
        valid = valid_2d.reshape(-1)
        take = np.flatnonzero(valid)[:room]
        if inputs is not None:
            used = np.bincount(take // valid_2d.shape[1], minlength=valid_2d.shape[0])
            for row in np.flatnonzero(used):
                self.window_inputs.append((np.asarray(inputs[row]), int(used[row])))
        for layer in trace.layers:
            for name in UNIT_SERIES:
                if name in layer.series:
                    flat = np.asarray(layer.series[name]).reshape(-1, layer.series[name].shape[-1])
                    self._window.setdefault(f"{layer.prefix}/{name}", []).append(flat[take].astype(np.float64))
        if feats is not None:
            for k, name in enumerate(self.features):
                self._window_features[name].append(feats[take, k])
        self._window_filled += len(take)

    def result(self, token_text: Callable[[int], str] | None = None) -> Pooled:
        """The pooled records (see `Pooled`); `token_text` names the tokens of excerpts."""
        gate_stats: list[GateStat] = []
        saturation: list[Saturation] = []
        counts: dict[str, LayerCounts] = {}
        cross_r: list[tuple[str, np.ndarray]] = []
        keep_means: dict[str, tuple[str, np.ndarray]] = {}
        scatter: dict[tuple[str, str], tuple[int, np.ndarray, np.ndarray]] = {}
        excerpts: list[UnitExcerpts] = []
        for prefix, family, names in self.layers:
            gate = MEMORY_GATE.get(family)
            values = 0
            h_span = low_share = pinned_share = c_peak = None
            memory_gate = None
            for name in names:
                acc = self._acc[(prefix, name)]
                m = acc.moments
                if m.mean is None or m.m2 is None:
                    continue
                grand = float(m.mean.mean())
                units = len(m.mean)
                total_m2 = float(m.m2.sum() + m.n * ((m.mean - grand) ** 2).sum())
                std = math.sqrt(max(total_m2, 0.0) / (m.n * units))
                is_gate = name in GATE_SERIES
                gate_stats.append(GateStat(
                    prefix=prefix, series=name, mean=grand, std=std,
                    frac_low=float(acc.low.sum() / (m.n * units)) if is_gate and acc.low is not None else None,
                    frac_high=float(acc.high.sum() / (m.n * units)) if is_gate and acc.high is not None else None,
                    time_std=(acc.seq_std_sum / acc.sequences if acc.sequences else 0.0) if name == "c" else None,
                ))
                if is_gate and acc.low is not None and acc.high is not None:
                    saturation.append(Saturation(prefix=prefix, series=name, frac_low=acc.low / m.n,
                                                 frac_high=acc.high / m.n))
                values = m.n
                if name == gate and acc.low is not None and acc.pinned is not None:
                    memory_gate, low_share, pinned_share = name, acc.low / m.n, acc.pinned / m.n
                    keep_means[prefix] = (name, m.mean.copy())
                if name == "h" and acc.minimum is not None and acc.maximum is not None:
                    h_span = acc.maximum - acc.minimum
                if name == "c" and acc.minimum is not None and acc.maximum is not None:
                    c_peak = np.maximum(np.abs(acc.minimum), np.abs(acc.maximum))
                if acc.scatter is not None:
                    scatter[(prefix, name)] = (m.n, m.mean.copy(), acc.scatter.copy())
                if acc.cross is not None and acc.cross.cross is not None:
                    cross_r.append((f"{prefix}/{name}", acc.cross.pearson()))
                if name == "h" and prefix in self._top and token_text is not None:
                    excerpts.extend(self._top[prefix].excerpts(prefix, m.mean, token_text))
            if values:
                counts[prefix] = LayerCounts(values=values, h_span=h_span, memory_gate=memory_gate,
                                             low_share=low_share, pinned_share=pinned_share, c_peak=c_peak)
        return Pooled(
            sequences=self.sequences, steps=self.steps, gate_stats=gate_stats, saturation=saturation,
            layers=counts, units=self._rank(cross_r), keep_gate_means=keep_means, scatter=scatter,
            excerpts=excerpts,
            window=[(key, np.concatenate(parts)) for key, parts in self._window.items()],
            window_features={n: np.concatenate(p) if p else np.zeros(0) for n, p in self._window_features.items()},
            window_inputs=list(self.window_inputs),
        )

    def _rank(self, cross_r: list[tuple[str, np.ndarray]]) -> list[UnitCorrelation]:
        """For every feature the `per_feature` units with the largest pooled |r| (as `units.rank_units`)."""
        found: dict[str, list[UnitCorrelation]] = {name: [] for name in self.features}
        for key, r in cross_r:
            for k, name in enumerate(self.features):
                for unit in np.flatnonzero(~np.isnan(r[:, k])):
                    found[name].append(UnitCorrelation(name, key, int(unit), float(r[unit, k])))
        ranked: list[UnitCorrelation] = []
        for name in self.features:
            found[name].sort(key=lambda u: (-abs(u.r), u.key, u.unit))
            ranked.extend(found[name][: self.per_feature])
        ranked.sort(key=lambda u: (-abs(u.r), u.feature, u.key, u.unit))
        return ranked


def pooled_trajectories(pooled: Pooled, trace: Trace) -> list[Trajectory]:
    """PCA trajectories of c and h of batch element 0 of `trace` on the components of the whole corpus.

    The components and their shares of the variance are the corpus's (its pooled scatter); the
    coordinates are the shown sequence's; jumpiness is its median step length over the corpus's
    RMS distance from its mean.
    """
    result: list[Trajectory] = []
    for layer in trace.layers:
        for name in UNIT_SERIES:
            if (layer.prefix, name) not in pooled.scatter or name not in layer.series:
                continue
            n, mean, scatter = pooled.scatter[(layer.prefix, name)]
            seq = np.asarray(layer.series[name][0], dtype=np.float64)
            seq = seq[~np.isnan(seq).any(axis=1)]
            if len(seq) < 2 or not np.any(scatter):
                continue
            _, var, vt = np.linalg.svd(scatter)
            k = min(2, len(var))
            for j in range(k):
                if vt[j, np.argmax(np.abs(vt[j]))] < 0:
                    vt[j] *= -1
            coords = np.zeros((len(seq), 2))
            coords[:, :k] = (seq - mean) @ vt[:k].T
            share = var / var.sum()
            spread = math.sqrt(float(np.trace(scatter)) / n)
            steps = np.sqrt((np.diff(seq, axis=0) ** 2).sum(axis=1))
            jumpiness = float(np.median(steps) / spread) if spread > 0 else 0.0
            result.append(Trajectory(layer.prefix, name, coords, (float(share[0]), float(share[1]) if k > 1 else 0.0),
                                     jumpiness))
    return result


def sample_excerpts(trace: Trace, ids: np.ndarray, token_text: Callable[[int], str]) -> list[UnitExcerpts]:
    """Every h unit's highest and lowest contexts in one traced sample (all its sequences)."""
    result: list[UnitExcerpts] = []
    for layer in trace.layers:
        if "h" not in layer.series:
            continue
        top = TopContexts()
        h = layer.series["h"]
        top.add(h, ids[:, : h.shape[1]], np.arange(h.shape[0]))
        with np.errstate(invalid="ignore"):
            means = np.nanmean(np.asarray(h, dtype=np.float64).reshape(-1, h.shape[-1]), axis=0)
        result.extend(top.excerpts(layer.prefix, means, token_text))
    return result
