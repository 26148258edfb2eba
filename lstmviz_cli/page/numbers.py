"""How numbers are written on the page: "–" for a missing value, fixed digits, percentages."""

from __future__ import annotations


def fixed(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"
