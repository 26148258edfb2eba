"""The HTML ids of the report's analysis figures, which findings and `lstmviz check` cases link to."""

from __future__ import annotations


def anchor_id(*parts: str) -> str:
    """An HTML id built from names that may hold any character (module names are user data)."""
    text = "-".join(parts)
    safe = "".join(ch if ch.isalnum() else "-" for ch in text.lower())
    return "-".join(piece for piece in safe.split("-") if piece) or "x"


def figure_anchor(kind: str, prefix: str | None = None) -> str:
    """The HTML id of an analysis figure; findings link to it."""
    return anchor_id("fig", kind, *([prefix] if prefix else []))
