"""Corpus mode: trace every sequence of a corpus and pool what the analysis needs, in bounded memory.

Sequences are read lazily (`loading.corpus`), grouped by length inside a bounded read-ahead (so
that a batch needs no padding, whatever the model), traced batch by batch with the same exact
tracer as the sample (`tracing.sample.trace_sample`, verified), and each batch's trace is folded
into an `analysis.pooled.CorpusReducer` and dropped. Tracing (torch) and reducing (NumPy) overlap:
the reduction of one batch runs in a worker thread while the next batch is traced, both libraries
release the GIL in their kernels, and one worker keeps the batches in order (deterministic).
Memory holds at most two batches' traces, the read-ahead, and the reducer's fixed-size state.

Threads: while a corpus streams, torch keeps one thread fewer than it had (at least one) and NumPy's
OpenBLAS runs on one thread, so that the tracer and the reducer each have a core. Left alone,
OpenBLAS's worker threads spin while they wait for work and took the tracer's core: on the 2-core
CI machine the same corpus took 25-30 s instead of 7 s.
"""

from __future__ import annotations

import contextlib
import ctypes
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lstmviz_cli.analysis.evidence import CorpusInfo
from lstmviz_cli.analysis.pooled import CorpusReducer, Pooled
from lstmviz_cli.analysis.textbatch import batch_text_features
from lstmviz_cli.analysis.textfeatures import FEATURE_DEFINITIONS
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.loading.corpus import Corpus, CorpusSequence, check_sequence
from lstmviz_cli.loading.inputs import one_hot as one_hot_rows
from lstmviz_cli.loading.records import LoadedModel, SampleInput
from lstmviz_cli.tracing.records import Trace
from lstmviz_cli.tracing.sample import trace_sample

BATCH_BYTES = 96 << 20  # bytes of recorded series per traced batch
MAX_BATCH = 256  # sequences per traced batch
READ_AHEAD_STEPS = 1 << 20  # steps of sequences held at once to group them by length
READ_AHEAD_SEQUENCES = 4096

Progress = Callable[[int, int], None]  # (sequences done, sequences in all)


@dataclass(frozen=True)
class Batch:
    """Sequences of one length: (batch, time) ids or (batch, time, features) values, first index."""

    values: np.ndarray
    first: int  # corpus index of the first sequence (excerpts name sequences by it)
    indices: tuple[int, ...]


def batches(corpus: Corpus, reference: SampleInput, per_step_bytes: int) -> Iterator[Batch]:
    """The corpus's sequences in batches of one length each, read ahead at most READ_AHEAD_* at a time."""
    buffer: list[CorpusSequence] = []
    held = 0
    for sequence in corpus:
        check_sequence(sequence, corpus.meta, reference, corpus.source)
        buffer.append(sequence)
        held += len(sequence.values)
        if held >= READ_AHEAD_STEPS or len(buffer) >= READ_AHEAD_SEQUENCES:
            yield from _grouped(buffer, per_step_bytes)
            buffer, held = [], 0
    yield from _grouped(buffer, per_step_bytes)


def _grouped(buffer: list[CorpusSequence], per_step_bytes: int) -> Iterator[Batch]:
    by_length: dict[int, list[CorpusSequence]] = {}
    for sequence in buffer:  # in order of each length's first appearance
        by_length.setdefault(len(sequence.values), []).append(sequence)
    for length, group in by_length.items():
        size = max(1, min(MAX_BATCH, BATCH_BYTES // max(1, length * per_step_bytes)))
        for start in range(0, len(group), size):
            part = group[start:start + size]
            yield Batch(values=np.stack([s.values for s in part]), first=part[0].index,
                        indices=tuple(s.index for s in part))


def reduce_corpus(
    loaded: LoadedModel,
    corpus: Corpus,
    reference: SampleInput,
    shown: Trace,
    thresholds: Thresholds,
    *,
    text_features: bool,
    window_steps: int,
    progress: Progress | None = None,
) -> tuple[Pooled, CorpusInfo]:
    """Trace every sequence of `corpus` and pool the analysis over all of them.

    reference: the corpus's first sequence as the report's sample (its kind, width and one-hot
    conversion apply to every sequence); shown: that sample's trace (the layers to expect);
    text_features: compute the built-in text features (a text corpus); window_steps: steps kept
    for the permutation test. Raises the tracer's errors and InputError for a sequence the model
    cannot read.
    """
    vocab = corpus.meta.get("vocab")
    tokens = reference.kind == "tokens" or reference.one_hot
    vocab_list = [str(t) for t in vocab] if isinstance(vocab, (list, tuple)) else None
    names = tuple(FEATURE_DEFINITIONS) if text_features and vocab_list is not None else ()
    reducer = CorpusReducer(shown.layers, thresholds, features=names, window_steps=window_steps,
                            excerpts=tokens)
    per_step = 4 * sum(layer.series[s].shape[2] for layer in shown.layers for s in layer.series)
    one_hot = reference.one_hot
    done = 0
    count = 0
    pending: Future[None] | None = None
    with _shared_cores(), ThreadPoolExecutor(max_workers=1, thread_name_prefix="lstmviz-reduce") as pool:
        for batch in batches(corpus, reference, per_step):
            ids = batch.values if tokens else None
            values = batch.values
            if one_hot:
                values = one_hot_rows(values, int(reference.values.shape[2]))  # the first sequence's width
            sample = SampleInput(values=values, kind="features" if one_hot or not tokens else "tokens",
                                 labels=None, description=f"{corpus.source}: batch of {len(batch.indices)}",
                                 one_hot=one_hot, one_hot_width=reference.one_hot_width)
            traced = trace_sample(loaded, sample)
            features = batch_text_features(ids, vocab_list) if names and ids is not None and vocab_list else None
            if pending is not None:
                pending.result()  # one batch reduced at a time, in order
            pending = pool.submit(reducer.add, traced, ids=ids, features=features,
                                  sequences=np.array(batch.indices), inputs=batch.values)
            count += 1
            done += len(batch.indices)
            if progress is not None:
                progress(done, corpus.count)
        if pending is not None:
            pending.result()

    def token_text(i: int) -> str:
        return vocab_list[i] if vocab_list is not None and 0 <= i < len(vocab_list) else str(i)

    pooled = reducer.result(token_text if tokens else None)
    info = CorpusInfo(source=corpus.source, split=corpus.split, sequences=pooled.sequences, steps=pooled.steps,
                      batches=count)
    return pooled, info


# The OpenBLAS entry points NumPy's wheels (scipy-openblas, 64-bit ints) and distributions export.
_OPENBLAS_SETTERS = ("scipy_openblas_set_num_threads64_", "openblas_set_num_threads64_", "openblas_set_num_threads")
_OPENBLAS_GETTERS = ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads64_", "openblas_get_num_threads")


def _openblas() -> tuple[Callable[[int], object], Callable[[], int]] | None:
    """(set, get) of the thread count of an OpenBLAS already loaded in this process (Linux), or None."""
    try:
        maps = Path("/proc/self/maps").read_text()
    except OSError:
        return None
    paths = sorted({line.split()[-1] for line in maps.splitlines() if "openblas" in line and line.split()[-1].startswith("/")})
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(library, n) for n in _OPENBLAS_SETTERS if hasattr(library, n)), None)
        getter = next((getattr(library, n) for n in _OPENBLAS_GETTERS if hasattr(library, n)), None)
        if setter is not None and getter is not None:
            getter.restype = ctypes.c_int
            return (lambda n, f=setter: f(ctypes.c_int(n))), (lambda f=getter: int(f()))
    return None


@contextlib.contextmanager
def _shared_cores() -> Iterator[None]:
    """One core for the reducer: torch one thread fewer (at least one), OpenBLAS one thread; restored after."""
    threads = torch.get_num_threads()
    blas = _openblas()
    before = blas[1]() if blas is not None else None
    try:
        torch.set_num_threads(max(1, threads - 1))
        if blas is not None:
            blas[0](1)
        yield
    finally:
        torch.set_num_threads(threads)
        if blas is not None and before is not None:
            blas[0](before)
