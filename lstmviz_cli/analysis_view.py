"""What `templates/_analysis.html.j2` shows: sections of readings, tables, figures and highlighted tokens.

Every section is a plain dict of the same shape so the template stays one loop:
``{"id", "title", "reading", "definitions": [(term, text)], "figures": [{"id", "caption", "svg"}],
"tables": [{"caption", "columns", "rows"}], "highlights": [{"caption", "tokens": [{"text", "color",
"title"}]}], "findings": [...]}``. Only matplotlib SVG goes through ``|safe``; every other string
(tokens, module names) is escaped by Jinja.
"""

from __future__ import annotations

from typing import Any

from lstmviz_cli.analysis import Analysis, GateStat
from lstmviz_cli.tracedata import SERIES_NAMES


def _fmt(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def _section(section_id: str, title: str, reading: str) -> dict[str, Any]:
    return {
        "id": section_id,
        "title": title,
        "reading": reading,
        "definitions": [],
        "figures": [],
        "tables": [],
        "highlights": [],
        "findings": [],
    }


def _gate_stats_reading(stats: list[GateStat], low: float, high: float) -> str:
    """One paragraph from the numbers: the most right- and left-saturated gates, and the cell's spread."""
    gates = [s for s in stats if s.frac_high is not None]
    if not gates:
        return "This model has no sigmoid gates to summarise (a plain RNN)."
    parts = []
    top = max(gates, key=lambda s: (s.frac_high or 0.0, s.prefix, s.series))
    parts.append(
        f"The most right-saturated gate is the {SERIES_NAMES[top.series]} of {top.prefix}: "
        f"{_pct(top.frac_high)} of its values are above {high:g} (mean {top.mean:.2f})."
    )
    bottom = max(gates, key=lambda s: (s.frac_low or 0.0, s.prefix, s.series))
    if (bottom.frac_low or 0.0) > 0.0:
        parts.append(
            f"The most left-saturated is the {SERIES_NAMES[bottom.series]} of {bottom.prefix}: "
            f"{_pct(bottom.frac_low)} below {low:g}."
        )
    forget = [s for s in gates if s.series == "f"]
    for s in forget:
        if (s.frac_high or 0.0) >= 0.5:
            parts.append(
                f"{s.prefix} forget gates are right-saturated {_pct(s.frac_high)} of the time: "
                "this layer mostly carries its memory forward."
            )
        elif (s.frac_low or 0.0) >= 0.5:
            parts.append(
                f"{s.prefix} forget gates are left-saturated {_pct(s.frac_low)} of the time: "
                "this layer mostly resets its memory at every step."
            )
    return " ".join(parts)


def gate_stats_section(analysis: Analysis) -> dict[str, Any]:
    """The gate statistics table (report section 8)."""
    th = analysis.thresholds
    section = _section(
        "gate-statistics",
        "Gate statistics",
        _gate_stats_reading(analysis.gate_stats, th.saturation_low, th.saturation_high),
    )
    section["definitions"] = [
        ("mean, std", "over every valid time step, unit and sequence of the sample"),
        (f"< {th.saturation_low:g}", "fraction of gate values below the left-saturation threshold"),
        (f"> {th.saturation_high:g}", "fraction of gate values above the right-saturation threshold"),
        ("std over time", "cell state only: each unit's standard deviation over time, averaged over units"),
    ]
    rows = [
        [
            s.prefix,
            f"{s.series} ({SERIES_NAMES.get(s.series, s.series)})",
            _fmt(s.mean),
            _fmt(s.std),
            _pct(s.frac_low),
            _pct(s.frac_high),
            _fmt(s.time_std),
        ]
        for s in analysis.gate_stats
    ]
    section["tables"].append(
        {
            "caption": "Per layer and series",
            "columns": ["layer", "series", "mean", "std", f"< {th.saturation_low:g}", f"> {th.saturation_high:g}", "std over time"],
            "rows": rows,
        }
    )
    return section


def prediction_rows(analysis: Analysis) -> list[tuple[str, str]]:
    """The prediction as (label, formatted number) rows for the summary."""
    if analysis.prediction is None:
        return []
    if analysis.prediction.kind == "topk":
        return [(label, _pct(value)) for label, value in analysis.prediction.items]
    return [(label, f"{value:.4g}") for label, value in analysis.prediction.items]


def analysis_context(run: Any, analysis: Analysis, view: Any) -> dict[str, Any]:
    """Everything `_analysis.html.j2` renders, plus the table-of-contents entries it adds."""
    sections = [gate_stats_section(analysis)]
    return {
        "toc": [(s["id"], s["title"]) for s in sections],
        "sections": sections,
        "prediction": {
            "note": analysis.prediction.note if analysis.prediction else "",
            "rows": prediction_rows(analysis),
        },
        "notes": list(analysis.notes),
    }
