"""The timeline page: gate statistics across checkpoints or epochs, one table and one line chart per measure.

Built from an `analysis.timeline.Timeline`, by `lstmviz check` over several checkpoints (`--report`) and
by `lstmviz_cli.Monitor` (its index.html). Rendered by the one HTML renderer like every page.
"""

from __future__ import annotations

from collections.abc import Mapping

from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.analysis.timeline import (
    KINDS,
    Line,
    MeasureKind,
    Timeline,
    TimelinePoint,
    lines,
)
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page.build import FOOTER
from lstmviz_cli.page.figuredata import TimelineData
from lstmviz_cli.page.ids import Ids
from lstmviz_cli.page.model import (
    Block,
    Cell,
    FigureRef,
    FigureSpec,
    Inline,
    Page,
    Paragraph,
    Row,
    Section,
    Span,
    Table,
    inline,
)

SUBTITLE = "Gate statistics across training · each point is that {what}'s own analysis of the same sample"


def point_label(point: TimelinePoint, axis: str) -> str:
    """How a point is named in a table's first column (headed by the axis): its number, else its name."""
    return str(point.step) if point.step is not None and axis != "checkpoint" else point.label


def _title(kind: MeasureKind, found: list[Line]) -> str:
    if kind.key != "memory_gate":
        return kind.title
    gates = {line.gate for line in found}
    if gates == {"z"}:
        return "Mean update gate"
    return "Mean forget / update gate" if "z" in gates else kind.title


def _number(value: float | None, kind: MeasureKind) -> str:
    if value is None:
        return "–"
    if kind.integer:
        return f"{value:.0f}"
    if kind.key == "saturation":
        return f"{100 * value:.1f}%"
    return f"{value:.4g}"


def _line_label(line: Line) -> tuple[Inline, ...]:
    if line.gate is not None and line.label.endswith(f" {line.gate}"):
        return (Span(visible(line.prefix, 80), "code"), f" {line.gate}")
    return (Span(visible(line.label, 80), "code"),) if line.prefix else (line.label,)


def _measure_section(timeline: Timeline, kind: MeasureKind, ids: Ids,
                     references: Mapping[str, tuple[float, str]]) -> Section | None:
    found = lines(timeline, kind.key)
    if not found:
        return None
    section_id = ids.take("timeline", kind.key)
    numbered = all(point.step is not None for point in timeline.points) and timeline.axis != "checkpoint"
    x = tuple(float(p.step) if numbered and p.step is not None else float(k) for k, p in enumerate(timeline.points))
    ticks = None if numbered else tuple(point.label for point in timeline.points)
    title = _title(kind, found)
    figure = FigureSpec(
        id=ids.take("timeline", kind.key, "chart"), ref=FigureRef(f"timeline-{kind.key}"),
        data=TimelineData(tuple(found), x, ticks, timeline.axis, kind.axis, integer=kind.integer,
                          limits=(0.0, 1.0) if kind.key == "memory_gate" else None,
                          floor=None if kind.key in ("memory_gate", "cell_growth") else 0.0,
                          percent=kind.key == "saturation", reference=references.get(kind.key)),
        description=f"{title} across {len(timeline.points)} {timeline.axis}s, one line per "
                    + ("layer and gate." if kind.key == "saturation" else "layer." if found[0].prefix else "model."),
        frame="analysis",
    )
    header_cells: list[str] = [timeline.axis]
    header_cells.extend(" ".join(part if isinstance(part, str) else part.text for part in _line_label(line)).strip()
                        for line in found)
    rows = []
    for k, point in enumerate(timeline.points):
        name = Cell((visible(point_label(point, timeline.axis), 120),), user=True)
        if point.measures is None:
            rows.append(Row((name, Cell((Span(visible(point.error or "failed", 300), "err"),), span=len(found))),
                            failed=True))
            continue
        rows.append(Row((name, *(Cell((_number(line.values[k], kind),), numeric=True) for line in found))))
    table = Table(tuple(header_cells), tuple(rows), numeric=(False, *(True for _ in found)), analysis=True)
    definition = kind.definition
    if kind.key == "memory_gate" and {line.gate for line in found} == {"z"}:
        definition = ("mean of each layer's update gate z over every valid step and unit; near 1 keeps the state, "
                      "near 0 overwrites it every step")
    lead = Paragraph((definition[0].upper() + definition[1:] + ".",), role="reading")
    return Section(section_id, title, (lead, figure, table), analysis=True)


def _overview(timeline: Timeline, ordering: str, what: str) -> tuple[Block, ...]:
    points = timeline.points
    failed = sum(point.measures is None for point in points)
    checked = [point.passed for point in points if point.passed is not None]
    lead = Paragraph(inline(
        f"{len(points)} {timeline.axis}{'' if len(points) == 1 else 's'}",
        *((", ", Span(f"{failed} failed", "err")) if failed else ()),
        *((f"; the check failed on {checked.count(False)} of {len(checked)}" if False in checked
           else f"; all {len(checked)} passed the check") if checked else ("",)),
        ". ", ordering,
    ), role="lead")
    numbered = timeline.axis != "checkpoint"
    columns = [timeline.axis] if numbered else []
    columns.append(what)
    if checked:
        columns.append("check")
    rows = []
    for point in points:
        label: Inline = Span(visible(point.label, 200), "link", href=point.link) if point.link else visible(
            point.label, 200)
        cells = [Cell((point_label(point, timeline.axis),))] if numbered else []
        cells.append(Cell((label,), user=True))
        if point.measures is None:
            cells.append(Cell((Span(f"failed: {visible(point.error or '', 300)}", "err"),)))
        elif checked:
            verdict: Inline = ("–" if point.passed is None else Span("passed", "sev-info") if point.passed
                               else Span("failed", "err"))
            cells.append(Cell((verdict,)))
        rows.append(Row(tuple(cells), failed=point.measures is None))
    if any(point.measures is None for point in points) and not checked:
        columns.append("")
    return lead, Table(tuple(columns), tuple(rows), wide=True)


def build_timeline_page(timeline: Timeline, *, title: str, ordering: str = "", what: str = "checkpoint",
                        thresholds: Thresholds | None = None,
                        references: Mapping[str, tuple[float, str]] | None = None) -> Page:
    """The timeline as a Page: an overview of the points, then one section per measure that has values.

    `ordering` says how the points were ordered (a sentence for the lead); `what` names a point's file
    ("checkpoint", "report"). Charts draw `references` (measure key -> (value, label)) as dashed
    lines; by default the analysis thresholds of |c|.
    """
    th = thresholds or Thresholds()
    shown_references = {
        "cell_max": (th.cell_max, f"large |c| (> {th.cell_max:g})"),
        "cell_growth": (th.cell_growth, f"growth threshold {th.cell_growth:g}×"),
        **(references or {}),
    }
    ids = Ids(("unit-picker", "lstmviz-picker"))
    sections = [section for kind in KINDS
                if (section := _measure_section(timeline, kind, ids, shown_references)) is not None]
    shown = visible(title, 200)
    return Page(title=shown, heading=(shown,), sections=tuple(sections), subtitle=SUBTITLE.format(what=what),
                intro=_overview(timeline, ordering, what), footer=FOOTER)
