"""The page's HTML ids: one function makes them, and each is handed out once per page.

Module names are user data in any script ("encoder", "слой", "层"), so an id keeps every letter,
mark and digit of every script and turns anything else into "-". Two names that still meet (".a"
and "-a", or "A" and "a") get "-2", "-3" suffixes in the order the page is built, which is fixed,
so ids are deterministic. Ids never contain "_": SVG ids inside a figure are prefixed with the
figure's id and "_" (`render.svgids`), so they can never meet a page id.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable


def slug(*parts: str) -> str:
    """An id fragment from names that may hold any character: letters, marks and digits of any script.

    `slug("heatmap", "lstm/l0/fwd") == "heatmap-lstm-l0-fwd"`; an empty result is "x".
    """
    text = unicodedata.normalize("NFC", "-".join(parts)).lower()
    safe = "".join(ch if unicodedata.category(ch)[0] in "LMN" else "-" for ch in text)
    return "-".join(piece for piece in safe.split("-") if piece) or "x"


class Ids:
    """Hands out the ids of one page: `take(*parts)` returns `slug(*parts)`, or it with "-2", "-3"... when taken."""

    def __init__(self, reserved: Iterable[str] = ()) -> None:
        self._taken: set[str] = set(reserved)

    def take(self, *parts: str) -> str:
        base = slug(*parts)
        candidate, count = base, 2
        while candidate in self._taken:
            candidate, count = f"{base}-{count}", count + 1
        self._taken.add(candidate)
        return candidate
