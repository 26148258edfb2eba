"""Ids inside an inlined SVG made the figure's own, so a page of many figures has no duplicate id.

matplotlib names its elements `patch_1`, `axes_1`... in every figure, and its clip paths and markers
by a hash that repeats across figures; Graphviz names its `graph0`, `node1`, `edge1`. Nearly all of
them (about 3,000 of 3,100 on a report) are referenced by nothing: those are dropped. The few that
are referenced (`url(#...)`, `href="#..."`: clip paths, markers, hatches) get the figure's page id
and "_" in front, and so do the references. Page ids never contain "_" (`page.ids`), so an SVG id
can never meet a page id either.
"""

from __future__ import annotations

import re

_ID = re.compile(r'\sid="([^"]*)"')
_REFERENCE = re.compile(r'url\(#([^)"]+)\)|\s(?:xlink:)?href="#([^"]+)"')
_URL = re.compile(r"url\(#")
_HREF = re.compile(r'(\s(?:xlink:)?href=")#')


def scope_ids(svg: str, prefix: str) -> str:
    """`svg` with each referenced `id="x"` as `id="{prefix}_x"` (references following), the others dropped."""
    referenced = {a or b for a, b in _REFERENCE.findall(svg)}
    head = prefix + "_"

    def attribute(match: re.Match[str]) -> str:
        return f' id="{head}{match.group(1)}"' if match.group(1) in referenced else ""

    svg = _ID.sub(attribute, svg)
    svg = _URL.sub("url(#" + head, svg)
    return _HREF.sub(lambda m: m.group(1) + "#" + head, svg)
