"""A page as plain JSON-able data: sections, blocks, ids, captions and the words on the page, no drawing.

What golden tests compare (`tests/gold/page/*.json`) and what a person reads to see what a page
holds without opening it. Figures appear as their id, reference, kind of data and words; their
numbers are the figure data's, which the figure tests check.
"""

from __future__ import annotations

import math
from typing import Any

from lstmviz_cli.page.model import (
    Banner,
    Block,
    Card,
    Cell,
    Checks,
    Definitions,
    ExcerptBrowser,
    FigureSpec,
    Findings,
    Grid,
    Heading,
    Highlight,
    HypothesisSearch,
    Inline,
    KeyValues,
    Legend,
    Page,
    Paragraph,
    SequencePicker,
    Table,
    UnitExplorer,
    UnitPicker,
)

JSON = dict[str, Any]


def text(parts: tuple[Inline, ...]) -> str:
    """The words of inline parts, code and user text marked `like this` so the golden files show them."""
    return "".join(part if isinstance(part, str) else f"`{part.text}`" if part.text else f"[{part.style}]"
                   for part in parts)


def _cell(cell: Cell) -> str:
    return text(cell.parts)


def _value(value: float) -> float | None:
    return None if not math.isfinite(value) else round(value, 3)


def block_outline(block: Block, page: Page) -> JSON:
    """One block as data."""
    if isinstance(block, Paragraph):
        return {"paragraph": block.role, "id": block.id, "text": text(block.parts)}
    if isinstance(block, Heading):
        return {"heading": text(block.parts)}
    if isinstance(block, KeyValues):
        return {"keyvalues": [[row.key, row.value, row.badge.text if row.badge else None, list(row.details)]
                              for row in block.rows]}
    if isinstance(block, Table):
        return {"table": block.caption, "columns": list(block.columns),
                "rows": [[_cell(cell) for cell in row.cells] for row in block.rows]}
    if isinstance(block, FigureSpec):
        figure: JSON = {"figure": block.id, "ref": [block.ref.kind, block.ref.prefix], "data": type(block.data).__name__,
                        "title": block.title, "caption": block.caption, "description": block.description}
        if block.sequence is not None:
            figure["sequence"] = block.sequence
        return figure
    if isinstance(block, SequencePicker):
        return {"sequences": block.id, "choices": list(block.choices)}
    if isinstance(block, Highlight):
        return {"highlight": block.id, "caption": block.caption, "scale": block.scale,
                "tokens": "".join(block.tokens), "values": [_value(v) for v in block.values[:12]],
                "titles": list(block.titles[:3])}
    if isinstance(block, UnitPicker):
        return {"picker": [ident for ident, _ in block.choices]}
    if isinstance(block, UnitExplorer):
        return {"explorer": block.id, "start": block.start, "tokens": len(block.tokens),
                "series": [[s.label, s.series, list(s.values.shape)] for s in block.series]}
    if isinstance(block, Legend):
        return {"legend": [[item.swatch, item.text] for item in block.items]}
    if isinstance(block, Findings):
        return {"findings": [[row.severity, row.layer, row.message, row.value, row.threshold, row.definition,
                              page.anchor(row.figure) if row.figure else None] for row in block.rows]}
    if isinstance(block, Banner):
        return {"banner": block.status, "id": block.id, "title": block.title, "text": text(block.parts)}
    if isinstance(block, Checks):
        return {"checks": [[row.status, row.name, row.value, row.limit, row.baseline, row.delta, page.evidence(row)]
                           for row in block.rows]}
    if isinstance(block, Definitions):
        return {"definitions": [list(item) for item in block.items]}
    if isinstance(block, Card):
        return {"card": block.title, "id": block.id, "blocks": [block_outline(b, page) for b in block.blocks]}
    if isinstance(block, Grid):
        return {"grid": block.kind, "blocks": [block_outline(b, page) for b in block.items]}
    if isinstance(block, ExcerptBrowser):
        return {"excerpts": block.id, "units": [u.key for u in block.units[:6]], "count": len(block.units),
                "first": [[e.before, e.token, e.after, e.value, e.where] for e in block.units[0].highest[:2]]
                if block.units else []}
    if isinstance(block, HypothesisSearch):
        return {"hypothesis": block.id, "tokens": "".join(block.tokens[:40]), "steps": len(block.tokens),
                "units": list(block.units[:4]), "columns": len(block.units), "bytes": len(block.data),
                "threshold": block.threshold}
    raise TypeError(f"no outline for {type(block).__name__}")


def outline(page: Page) -> JSON:
    """The whole page as data: title, contents, every section's blocks, notes."""
    return {
        "title": page.title,
        "heading": text(page.heading),
        "layout": page.layout,
        "toc": [list(entry) for entry in page.toc()],
        "intro": [block_outline(block, page) for block in page.intro],
        "sections": [
            {"id": section.id, "title": section.title,
             "blocks": [block_outline(block, page) for block in section.blocks]}
            for section in page.sections
        ],
        "notes": list(page.notes),
    }
