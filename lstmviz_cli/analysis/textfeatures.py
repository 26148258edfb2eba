"""Built-in per-step features of a text (quotes, brackets, word and line position, ...) and token display."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from lstmviz_cli.errors import InputError

# Feature name -> one-line definition (shown next to the numbers in the report).
FEATURE_DEFINITIONS: dict[str, str] = {
    "inside_quotes": "1 from an opening double quote up to (not including) the closing one, else 0",
    "bracket_depth": "nesting depth of (, [ and { after reading the character",
    "position_in_word": "index of the character inside its word (letters/digits), 0 outside words",
    "position_in_line": "characters since the last newline",
    "whitespace": "1 for spaces, tabs and newlines",
    "uppercase": "1 for an uppercase letter",
    "digit": "1 for a digit",
    "end_of_sentence": "1 for '.', '!' or '?'",
}
_OPEN = "([{"
_CLOSE = ")]}"


def step_tokens(text: str | None, labels: list[str] | None, steps: int) -> list[str] | None:
    """One string per time step: the raw characters when the text aligns with the steps, else labels."""
    if text is not None and len(text) == steps:
        return list(text)
    if labels is not None and len(labels) == steps:
        return [str(label) for label in labels]
    return None


def text_features(tokens: list[str]) -> dict[str, np.ndarray]:
    """Every built-in feature for a sequence of tokens (characters or words), float64 of len(tokens).

    The state features (quotes, brackets, positions) describe the text *after* reading step t,
    which is what the network has seen when its state at step t is recorded.
    """
    n = len(tokens)
    features = {name: np.zeros(n, dtype=np.float64) for name in FEATURE_DEFINITIONS}
    quoted, depth, in_word, in_line = False, 0, 0, 0
    for t, token in enumerate(tokens):
        for ch in token:
            if ch == '"':
                quoted = not quoted
            elif ch in _OPEN:
                depth += 1
            elif ch in _CLOSE:
                depth = max(0, depth - 1)
            if ch == "\n":
                in_line = 0
            else:
                in_line += 1
            in_word = in_word + 1 if ch.isalnum() else 0
        features["inside_quotes"][t] = float(quoted)
        features["bracket_depth"][t] = float(depth)
        features["position_in_word"][t] = float(max(in_word - 1, 0)) if in_word else 0.0
        features["position_in_line"][t] = float(max(in_line - 1, 0))
        stripped = token.strip()
        features["whitespace"][t] = float(bool(token) and not stripped)
        features["uppercase"][t] = float(any(ch.isupper() for ch in token))
        features["digit"][t] = float(any(ch.isdigit() for ch in token))
        features["end_of_sentence"][t] = float(bool(stripped) and stripped[-1] in ".!?")
    return features


def read_labels_csv(path: Path, steps: int, *, padded_steps: int | None = None) -> dict[str, np.ndarray]:
    """User per-step labels: a CSV with a header row naming each feature and one row per step.

    `steps` are the valid steps of the sequence shown; a padded input (`padded_steps` > `steps`)
    may also have one row per padded step, and the rows past `steps` (padding) are then ignored.
    """
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            rows = [row for row in csv.reader(handle) if any(cell.strip() for cell in row)]
    except OSError as error:
        raise InputError(f"cannot read labels file {str(path)!r}: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise InputError(f"labels file {str(path)!r} is not UTF-8 text; save it as a UTF-8 CSV") from None
    if len(rows) < 2:
        raise InputError(f"labels file {str(path)!r} needs a header row and one row per time step")
    header = [name.strip() or f"column_{k}" for k, name in enumerate(rows[0])]
    body = rows[1:]
    padded = padded_steps is not None and padded_steps > steps
    if padded and len(body) == padded_steps:
        body = body[:steps]  # rows for the padding of sequence 0: nothing was computed there
    if len(body) != steps:
        expected = f"{steps} steps" + (f" ({padded_steps} with padding)" if padded else "")
        raise InputError(
            f"labels file {str(path)!r} has {len(body)} rows but the sample has {expected}; give one row per step"
        )
    values = np.zeros((steps, len(header)), dtype=np.float64)
    for r, row in enumerate(body):
        if len(row) != len(header):
            raise InputError(
                f"labels file {str(path)!r} row {r + 2} has {len(row)} columns, the header has {len(header)}"
            )
        for k, cell in enumerate(row):
            try:
                values[r, k] = float(cell)
            except ValueError:
                raise InputError(
                    f"labels file {str(path)!r} row {r + 2}, column {header[k]!r}: {cell!r} is not a number"
                ) from None
    if not np.isfinite(values).all():
        raise InputError(f"labels file {str(path)!r} holds NaN or infinite values; use numbers only")
    return {f"label:{name}": values[:, k] for k, name in enumerate(header)}
