"""Python warnings kept off the user's terminal: recorded, deduplicated, and turned into page notes."""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator

_LIMIT = 200  # characters of one warning kept for the page


def warning_line(message: warnings.WarningMessage) -> str:
    """`UserWarning: first line of the message` (shortened), how a note quotes a warning."""
    lines = str(message.message).strip().splitlines()
    text = f"{message.category.__name__}: {lines[0].strip() if lines else ''}".rstrip(": ")
    return text if len(text) <= _LIMIT else text[: _LIMIT - 3] + "..."


@contextlib.contextmanager
def captured_warnings() -> Iterator[list[str]]:
    """Record every warning raised inside the block instead of printing it.

    Yields a list that holds, once the block ends, each distinct warning as one line, in the order
    first raised. Filters set inside the block (e.g. the tracer's ignores) still apply.
    """
    lines: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # once per place: a warning in a loop is kept once, not per step
        try:
            yield lines
        finally:
            for message in caught:
                line = warning_line(message)
                if line not in lines:
                    lines.append(line)
