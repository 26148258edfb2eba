"""The diff page (`lstmviz diff`) as a Page: weights per gate, gate statistics, saturation, units that moved."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from lstmviz_cli.analysis.diff import DiffResult, WeightChange
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.families import SERIES_NAMES
from lstmviz_cli.glyphs import visible
from lstmviz_cli.page import captions
from lstmviz_cli.page.figuredata import SaturationChangeData, WeightHistogramsData
from lstmviz_cli.page.ids import Ids
from lstmviz_cli.page.model import (
    Block,
    Cell,
    FigureRef,
    FigureSpec,
    Page,
    Paragraph,
    Row,
    Section,
    Span,
    Table,
)


def _code(text: str) -> Cell:
    return Cell((Span(visible(text, 80), "code"),))


def _num(text: str, trend: Literal["", "up", "down"] = "") -> Cell:
    return Cell((text,), numeric=True, trend=trend)


def _weights(result: DiffResult, ids: Ids) -> Section:
    section_id = ids.take("weights")
    by_layer: dict[str, list[WeightChange]] = {}
    for change in result.weights:
        by_layer.setdefault(change.prefix, []).append(change)
    table = Table(
        ("layer", "gate", "mean before", "mean after", "std before", "std after", "relative change"),
        tuple(Row((
            _code(w.prefix), Cell((SERIES_NAMES.get(w.gate, "projection"),)), _num(f"{w.before_mean:.4f}"),
            _num(f"{w.after_mean:.4f}"), _num(f"{w.before_std:.4f}"), _num(f"{w.after_std:.4f}"),
            _num(f"{100 * w.rel_change:.2f}%"),
        )) for w in result.weights),
        numeric=(False, False, True, True, True, True, True),
    )
    figures = tuple(
        FigureSpec(
            id=ids.take("diff-weights", prefix), ref=FigureRef("weight-histograms", prefix),
            data=WeightHistogramsData(tuple(changes)), title=visible(prefix, 80),
            description=f"Weight histograms per gate of {prefix}, before (filled) and after (outline).",
        )
        for prefix, changes in by_layer.items()
    )
    lead = Paragraph((
        "Histograms share their bins: filled is before, outline is after. Relative change is ‖after − before‖ / "
        "‖before‖ over the gate's rows of W", Span("ih", "sub"), ", W", Span("hh", "sub"), " and both biases.",
    ))
    return Section(section_id, "Weights per gate", (lead, table, *figures))


def _gate_stats(result: DiffResult, ids: Ids) -> Section:
    rows = tuple(Row((
        _code(g.prefix), Cell((SERIES_NAMES.get(g.series, g.series),)), _num(f"{g.before_mean:.4f}"),
        _num(f"{g.after_mean:.4f}"),
        _num(f"{g.delta_mean:+.4f}", "up" if g.delta_mean > 0 else "down" if g.delta_mean < 0 else ""),
        _num(f"{g.before_std:.4f}"), _num(f"{g.after_std:.4f}"),
    )) for g in result.gate_stats)
    table = Table(("layer", "series", "mean before", "mean after", "Δ mean", "std before", "std after"), rows,
                  numeric=(False, False, True, True, True, True, True))
    return Section(ids.take("gate-stats"), "Gate statistics", (table,))


def _pct(value: float | None, sign: str = "") -> Cell:
    return _num("–" if value is None else f"{100 * value:{sign}.1f}%")


def _saturation(result: DiffResult, thresholds: Thresholds, ids: Ids) -> Section:
    section_id = ids.take("saturation")
    changes = [g for g in result.gate_stats if g.delta_saturated is not None]
    table = Table(
        ("layer", "gate", f"{captions.below(thresholds)} before", f"{captions.below(thresholds)} after",
         f"{captions.above(thresholds)} before", f"{captions.above(thresholds)} after", "Δ saturated"),
        tuple(Row((
            _code(g.prefix), Cell((SERIES_NAMES.get(g.series, g.series),)), _pct(g.before_low), _pct(g.after_low),
            _pct(g.before_high), _pct(g.after_high), _pct(g.delta_saturated, "+"),
        )) for g in changes),
        numeric=(False, False, True, True, True, True, True),
    )
    blocks: list[Block] = [Paragraph((captions.diff_saturation_lead(thresholds),)), table]
    if result.gate_stats:
        blocks.append(FigureSpec(
            id=ids.take("diff-saturation"), ref=FigureRef("saturation-change"),
            data=SaturationChangeData(tuple(result.gate_stats), thresholds),
            description=f"Share of saturated gate values ({captions.band(thresholds)}) per layer and gate, "
                        "before and after.",
        ))
    return Section(section_id, "Saturation before vs after", tuple(blocks))


def _units(result: DiffResult, ids: Ids) -> Section:
    rows = tuple(Row((
        _code(u.prefix), _num(str(u.unit)), _num(f"{u.activation_change:.4f}"), _num(f"{100 * u.weight_change:.2f}%"),
        Cell((", ".join(f"{name} {value:.3f}" for name, value in sorted(u.series_change.items())),)),
    )) for u in result.units)
    table = Table(("layer", "unit", "activation change", "weight change", "per series"), rows,
                  numeric=(False, True, True, True, False))
    lead = Paragraph(("Mean |after − before| of each unit's recorded series over the sample; weight change is the "
                      "relative change of the unit's rows in every gate.",))
    return Section(ids.take("units"), "Units that changed most", (lead, table), toc="Units that changed most")


def build_diff_page(result: DiffResult, thresholds: Thresholds) -> Page:
    """The page of `lstmviz diff`; `thresholds` are the ones both analyses used (they name the saturation band)."""
    ids = Ids()
    before, after = visible(result.before, 200), visible(result.after, 200)
    if result.unchanged:
        verdict = Paragraph(("No change: every weight and every recorded activation is identical.",), role="verdict")
    else:
        verdict = Paragraph((f"Largest weight change {result.max_weight_change:.3g}; largest activation change on the "
                             f"sample {result.max_activation_change:.3g}.",), role="verdict-changed")
    intro: Sequence[Block] = (
        Paragraph(("Both checkpoints traced on the same sample: ", Span(visible(result.sample, 300)), "."),
                  role="lead"),
        verdict,
    )
    sections = (_weights(result, ids), _gate_stats(result, ids), _saturation(result, thresholds, ids),
                _units(result, ids))
    return Page(
        title=f"lstmviz diff: {before} → {after}",
        heading=("What changed: ", Span(before, "code"), " → ", Span(after, "code")),
        sections=sections, intro=tuple(intro), layout="plain", heading_user=False,
    )
