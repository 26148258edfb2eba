"""The batch index (`lstmviz report A.pt B.pt --out-dir D`, D/index.html) as a Page: one row per checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.model import (
    Cell,
    Inline,
    Page,
    Paragraph,
    Row,
    Span,
    SpanStyle,
    Table,
    inline,
)


@dataclass
class ReportSummary:
    """One row of index.html: what a reader needs to pick which report to open."""

    name: str
    file: str | None  # the report's file name inside out-dir, None when it failed
    format: str = ""
    n_params: int = 0
    layers: list[str] = field(default_factory=list)
    verify_error: float | None = None
    findings: dict[str, int] = field(default_factory=dict)  # severity -> count
    error: str | None = None


_SEVERITY_STYLE: dict[str, SpanStyle] = {"error": "sev-error", "warning": "sev-warning"}


def _layers(layers: Sequence[str]) -> tuple[Inline, ...]:
    parts: list[Inline] = []
    for k, layer in enumerate(layers):
        parts.extend([", "] if k else [])
        parts.append(Span(visible(layer, 80), "code"))
    return tuple(parts)


def _findings(counts: dict[str, int]) -> tuple[Inline, ...]:
    if not counts:
        return ("none",)
    parts: list[Inline] = []
    for k, (severity, count) in enumerate(counts.items()):
        parts.extend([", "] if k else [])
        parts.append(Span(f"{count} {severity}", _SEVERITY_STYLE.get(severity, "sev-info")))
    return tuple(parts)


def _row(summary: ReportSummary) -> Row:
    name = visible(summary.name, 200)
    if summary.error is not None or summary.file is None:
        return Row((Cell((name,)), Cell((Span(f"failed: {visible(summary.error or '', 400)}", "err"),), span=5)),
                   failed=True)
    return Row((
        Cell((Span(name, "link", href=summary.file),)), Cell((summary.format,)),
        Cell((f"{int(summary.n_params):,}",), numeric=True), Cell(_layers(summary.layers)),
        Cell(("-" if summary.verify_error is None else f"{summary.verify_error:.1e}",), numeric=True),
        Cell(_findings(summary.findings)),
    ))


def build_index_page(rows: Sequence[ReportSummary], *, title: str) -> Page:
    """index.html: one row per checkpoint, linking its report; a failed one says why."""
    failed = sum(1 for row in rows if row.error)
    lead = Paragraph(inline(
        f"{len(rows)} checkpoint{'' if len(rows) == 1 else 's'}",
        *((", ", Span(f"{failed} failed", "err")) if failed else ()),
        ". Each report is a self-contained HTML file in this folder.",
    ), role="lead")
    table = Table(
        ("checkpoint", "format", "parameters", "recurrent layers", "verification error", "findings"),
        tuple(_row(row) for row in rows), numeric=(False, False, True, False, True, False), wide=True,
    )
    shown = visible(title, 200)
    return Page(title=shown, heading=(shown,), sections=(), intro=(lead, table), layout="plain")
