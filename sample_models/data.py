"""Deterministic synthetic data for the sample models: a structured corpus, digit sums, noisy sines.

Shared by train.py and the tests, so a test can draw a fresh held-out set from the same distribution.
"""

from __future__ import annotations

import random
import textwrap

import numpy as np

LINE_WIDTH = 48
NAMES = ["Anna", "Ben", "Clara", "David", "Elsa", "Felix", "Greta", "Hugo"]
# Narrative and dialogue use different words, so predicting the next character needs to know
# whether we are inside quotes: the structure a cell can learn and the report can show.
NARRATIVE = (
    "the old mill stood near a quiet town and the road ran past the stone gate "
    "by night they walked home under a dim light while rain fell on the river bank"
).split()
DIALOGUE = "we must go now i think you are right no never yes maybe why not come here listen wait please".split()
ASIDE = "see note map page list one two three as shown above below left".split()
OPEN = {"(": ")", "[": "]"}


def _words(rng: random.Random, vocab: list[str], lo: int, hi: int) -> list[str]:
    return [rng.choice(vocab) for _ in range(rng.randint(lo, hi))]


def _aside(rng: random.Random, depth: int = 0) -> str:
    """A bracketed remark that may nest another one inside, up to depth 3."""
    opener = "(" if depth % 2 == 0 else "["
    parts = _words(rng, ASIDE, 1, 3)
    if depth < 2 and rng.random() < 0.5:
        parts.insert(rng.randint(0, len(parts)), _aside(rng, depth + 1))
        parts += _words(rng, ASIDE, 0, 2)
    return opener + " ".join(parts) + OPEN[opener]


def _narrative(rng: random.Random) -> str:
    words = [rng.choice(NAMES + ["The", "A"])] + _words(rng, NARRATIVE, 3, 8)
    if rng.random() < 0.35:
        words.insert(rng.randint(2, len(words)), _aside(rng))
    return " ".join(words) + "."


def _dialogue(rng: random.Random) -> str:
    speech = " ".join(_words(rng, DIALOGUE, 2, 7))
    name = rng.choice(NAMES)
    if rng.random() < 0.5:
        return f'{name} said, "{speech.capitalize()}{rng.choice("!?.")}"'
    return f'"{speech.capitalize()}," said {name}.'


def generate_corpus(n_chars: int, seed: int) -> str:
    """Paragraphs of narrative, quoted dialogue and nested asides, wrapped to fixed-width lines."""
    rng = random.Random(seed)
    paragraphs: list[str] = []
    total = 0
    while total < n_chars:
        sentences = [_dialogue(rng) if rng.random() < 0.45 else _narrative(rng) for _ in range(rng.randint(2, 5))]
        paragraph = textwrap.fill(" ".join(sentences), width=LINE_WIDTH) + "\n\n"
        paragraphs.append(paragraph)
        total += len(paragraph)
    return "".join(paragraphs)[:n_chars]


def structure_signals(text: str) -> dict[str, np.ndarray]:
    """Per character: 1.0 while inside double quotes, and the bracket nesting depth."""
    inside = np.zeros(len(text), dtype=np.float64)
    depth = np.zeros(len(text), dtype=np.float64)
    quoted, level = False, 0
    for k, ch in enumerate(text):
        if ch == '"':
            quoted = not quoted
        elif ch in "([":
            level += 1
        elif ch in ")]":
            level = max(0, level - 1)
        inside[k] = float(quoted)
        depth[k] = float(level)
    return {"inside_quotes": inside, "bracket_depth": depth}


def digit_sequences(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two leading digits, then mostly zeros with a few distractor digits; label = their sum."""
    rng = np.random.default_rng(seed)
    x = np.zeros((n, length), dtype=np.int64)
    x[:, :2] = rng.integers(0, 10, size=(n, 2))
    noise = rng.random((n, length - 2)) < 0.15
    x[:, 2:] = np.where(noise, rng.integers(1, 10, size=(n, length - 2)), 0)
    return x, x[:, 0] + x[:, 1]


def sine_windows(n: int, window: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Windows of noisy sums of two sines (n, window, 1) and the next clean-plus-noise value (n, 1)."""
    rng = np.random.default_rng(seed)
    t = np.arange(window + 1, dtype=np.float64)
    freq = rng.uniform(0.05, 0.35, size=(n, 2, 1))
    phase = rng.uniform(0, 2 * np.pi, size=(n, 2, 1))
    amp = rng.uniform(0.3, 1.0, size=(n, 2, 1))
    series = (amp * np.sin(freq * t + phase)).sum(axis=1) + rng.normal(0, 0.05, size=(n, window + 1))
    series = series.astype(np.float32)
    return series[:, :window, None], series[:, window:]
