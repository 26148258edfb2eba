"""The built-in text features of a batch of token sequences at once (corpus mode). NumPy only.

`textfeatures.text_features` walks one text character by character, which is what a corpus of
two million characters cannot afford. Here the same features are computed for a (batch, time)
array of token ids in a few array passes, when every token of the vocabulary is one character
(a character model): quotes by the parity of a running count, bracket depth by the running sum
clamped at zero (d_t = S_t - min(0, min_{s<=t} S_s), the solution of d_t = max(0, d_{t-1} + x_t)),
word and line positions by the distance to the last reset. Other vocabularies (words) fall back
to `text_features` sequence by sequence. Each sequence starts from a fresh state, as a single
sample does. Equal to `text_features` (tested on random texts).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lstmviz_cli.analysis.textfeatures import _CLOSE, _OPEN, FEATURE_DEFINITIONS, text_features


def _since_reset(reset: np.ndarray) -> np.ndarray:
    """(batch, time) steps since the last True of `reset` at or before t (t + 1 when none)."""
    steps = reset.shape[1]
    index = np.broadcast_to(np.arange(steps), reset.shape)
    last = np.maximum.accumulate(np.where(reset, index, -1), axis=1)
    since: np.ndarray = index - last
    return since


def batch_text_features(ids: np.ndarray, vocab: Sequence[str]) -> dict[str, np.ndarray]:
    """Every built-in feature of every sequence of `ids` (batch, time): name -> (batch, time) float64."""
    ids = np.asarray(ids, dtype=np.int64)
    if not all(len(token) == 1 for token in vocab):
        stacked = [text_features([vocab[i] for i in row]) for row in ids.tolist()]
        return {name: np.stack([f[name] for f in stacked]) if stacked else np.zeros(ids.shape)
                for name in FEATURE_DEFINITIONS}
    table = np.array(list(vocab))

    def lookup(test: np.ndarray) -> np.ndarray:
        values: np.ndarray = test[ids]
        return values

    quote = lookup(table == '"')
    bracket = lookup(np.isin(table, list(_OPEN)).astype(np.int64) - np.isin(table, list(_CLOSE)).astype(np.int64))
    alnum = lookup(np.array([ch.isalnum() for ch in vocab]))
    newline = lookup(table == "\n")
    features: dict[str, np.ndarray] = {}
    features["inside_quotes"] = (np.cumsum(quote, axis=1) % 2).astype(np.float64)
    running = np.cumsum(bracket, axis=1)
    features["bracket_depth"] = (running - np.minimum(0, np.minimum.accumulate(running, axis=1))).astype(np.float64)
    # position_in_word: (run length of letters/digits ending at t) - 1, 0 outside words.
    in_word = np.where(alnum, _since_reset(~alnum), 0)
    features["position_in_word"] = np.maximum(in_word - 1, 0).astype(np.float64)
    # position_in_line: characters since the last newline, minus one (0 at a newline and at the start).
    since = _since_reset(newline)
    features["position_in_line"] = np.where(newline, 0, np.maximum(since - 1, 0)).astype(np.float64)
    features["whitespace"] = lookup(np.array([not ch.strip() for ch in vocab])).astype(np.float64)
    features["uppercase"] = lookup(np.array([ch.isupper() for ch in vocab])).astype(np.float64)
    features["digit"] = lookup(np.array([ch.isdigit() for ch in vocab])).astype(np.float64)
    features["end_of_sentence"] = lookup(np.isin(table, [".", "!", "?"])).astype(np.float64)
    return {name: features[name] for name in FEATURE_DEFINITIONS}
