"""Plain-language findings with thresholds: dead units, saturated gates, pinned forget gates, exploding cell
state, vanishing gradient over time; and the layers too short to judge.
"""

from __future__ import annotations

import numpy as np

from lstmviz_cli.analysis.memory import vanishing_ratio
from lstmviz_cli.analysis.records import Analysis, FigureRef, Finding, SaliencyResult, Saturation
from lstmviz_cli.analysis.rows import valid_rows
from lstmviz_cli.analysis.saturation import gate_saturation
from lstmviz_cli.analysis.stats import cell_quarters
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.tracing.records import SERIES_NAMES, LayerTrace, Trace

SEVERITIES = ("info", "warning", "error")


def units_text(units: list[int], limit: int = 8) -> str:
    """ "units 3, 7, 9 (+5 more)": how findings and tables name units."""
    shown = ", ".join(str(u) for u in units[:limit])
    more = f" (+{len(units) - limit} more)" if len(units) > limit else ""
    return f"unit{'s' if len(units) != 1 else ''} {shown}{more}"


def _fraction_finding(
    code: str, prefix: str, units: np.ndarray, n_units: int, limit: float, text: str, figure: FigureRef
) -> Finding | None:
    """A finding about a share of a layer's units: warning at or above `limit`, info below, none at 0."""
    listed = [int(u) for u in units]
    if not listed:
        return None
    fraction = len(listed) / max(n_units, 1)
    severity = "warning" if fraction >= limit else "info"
    message = f"{prefix}: {len(listed)} of {n_units} units ({100 * fraction:.0f}%) {text} — {units_text(listed)}"
    return Finding(code, severity, prefix, listed, fraction, limit, message, figure)


def _cell_finding(layer: LayerTrace, th: Thresholds, figure: FigureRef) -> Finding | None:
    """|c| past cell_max: a warning when it is still growing (exploding), info when it stays bounded."""
    rows = valid_rows(layer.series["c"])
    if not len(rows):
        return None
    peak = np.abs(rows).max(axis=0)
    big = np.flatnonzero(peak > th.cell_max)
    if not len(big):
        return None
    growing: list[int] = []
    quarters = cell_quarters(layer.series["c"], th.min_steps)  # the first and last quarter of one sequence
    if quarters is not None:
        early, late = quarters
        with np.errstate(divide="ignore", invalid="ignore"):
            growth = np.where(early > 0, late / np.maximum(early, 1e-12), np.inf)
        growing = [int(u) for u in big if growth[u] >= th.cell_growth]
    top = float(peak.max())
    prefix = layer.prefix
    if growing:
        severity = "error" if top >= 5 * th.cell_max else "warning"
        message = (
            f"{prefix}: cell state reaches |c| = {top:.1f} (> {th.cell_max:g}) and is still growing "
            f"(mean |c| of the last quarter ≥ {th.cell_growth:g}x the first) in {units_text(growing)}: "
            "exploding cell state"
        )
        return Finding("exploding_cell", severity, prefix, growing, top, th.cell_max, message, figure)
    units = [int(u) for u in big]
    message = (
        f"{prefix}: cell state reaches |c| = {top:.1f} (> {th.cell_max:g}) in {units_text(units)} but stays "
        "bounded over the sample (a counter-like unit; tanh(c) is saturated there)"
    )
    return Finding("exploding_cell", "info", prefix, units, top, th.cell_max, message, figure)


def unjudged_layers(trace: Trace, thresholds: Thresholds | None = None) -> dict[str, int]:
    """Layers with fewer than `min_steps` values per unit (valid steps over all sequences): prefix -> count."""
    th = thresholds or Thresholds()
    short: dict[str, int] = {}
    for layer in trace.layers:
        if not layer.series:
            continue
        count = len(valid_rows(next(iter(layer.series.values()))))
        if count < th.min_steps:
            short[layer.prefix] = count
    return short


def unjudged_note(prefix: str, count: int, thresholds: Thresholds) -> str:
    """The page's note for a layer whose findings were skipped."""
    return (
        f"{prefix}: dead-unit, saturation, forget-gate and cell-state findings skipped: each unit has "
        f"{count} value{'s' if count != 1 else ''} (valid steps over all sequences), fewer than the "
        f"{thresholds.min_steps} needed to judge"
    )


def diagnose(
    trace: Trace,
    *,
    saturation: list[Saturation] | None = None,
    saliency: SaliencyResult | None = None,
    thresholds: Thresholds | None = None,
) -> list[Finding]:
    """Plain findings with thresholds: dead units, saturated gates, pinned forget gates,
    exploding cell state, vanishing gradient over time. Deterministic order (trace order, then code)."""
    th = thresholds or Thresholds()
    saturation = saturation if saturation is not None else gate_saturation(trace, th)
    by_key = {(s.prefix, s.series): s for s in saturation}
    findings: list[Finding] = []
    short = unjudged_layers(trace, th)
    for layer in trace.layers:
        prefix = layer.prefix
        if prefix in short:  # too few values to tell a dead or saturated unit from a short sample
            continue
        activity = FigureRef("activity", prefix)
        if "h" in layer.series:
            rows = valid_rows(layer.series["h"])
            if len(rows):
                span = rows.max(axis=0) - rows.min(axis=0)
                dead = np.flatnonzero(span < th.dead_range)
                finding = _fraction_finding(
                    "dead_units", prefix, dead, rows.shape[1], th.dead_fraction,
                    f"never leave a band {th.dead_range:g} wide (dead units)", activity,
                )
                if finding:
                    findings.append(finding)
        memory_gate = "f" if layer.family == "lstm" else "z" if layer.family == "gru" else None
        for name in layer.series:
            sat = by_key.get((prefix, name))
            if sat is None:
                continue
            n_units = len(sat.frac_low)
            saturation_figure = FigureRef("saturation", prefix)
            if name == memory_gate:
                rows = valid_rows(layer.series[name])
                low_p95 = np.percentile(rows, 95, axis=0)
                high_p5 = np.percentile(rows, 5, axis=0)
                keeps = "cannot forget" if name == "f" else "never update their state"
                drops = "keep no long-term memory" if name == "f" else "overwrite their state every step"
                if not layer.keeps_when_high:  # z written the other way round: near 1 it replaces the state
                    keeps, drops = drops, keeps
                label = SERIES_NAMES[name]
                # For a GRU, z near 1 keeps the old state (like f near 1 in an LSTM).
                finding = _fraction_finding(
                    "forget_pinned_low", prefix, np.flatnonzero(low_p95 < th.saturation_low), n_units,
                    th.forget_pinned_fraction,
                    f"have the {label} pinned near 0 (95% of steps < {th.saturation_low:g}): they {drops}",
                    saturation_figure,
                )
                if finding:
                    findings.append(finding)
                finding = _fraction_finding(
                    "forget_pinned_high", prefix, np.flatnonzero(high_p5 > th.forget_pinned_high), n_units,
                    th.forget_pinned_fraction,
                    f"have the {label} pinned near 1 (95% of steps > {th.forget_pinned_high:g}): they {keeps}",
                    saturation_figure,
                )
                if finding:
                    findings.append(finding)
                continue
            always = np.flatnonzero(sat.frac_low + sat.frac_high >= th.saturated_unit)
            finding = _fraction_finding(
                "saturated_gate", prefix, always, n_units, th.saturated_fraction,
                f"have the {SERIES_NAMES[name]} saturated (< {th.saturation_low:g} or > "
                f"{th.saturation_high:g}) at least {100 * th.saturated_unit:.0f}% of the time",
                saturation_figure,
            )
            if finding:
                findings.append(finding)
        if "c" in layer.series:
            finding = _cell_finding(layer, th, activity)
            if finding:
                findings.append(finding)
    if saliency is not None:
        ratio = vanishing_ratio(saliency.values, saliency.step)
        if ratio is not None and ratio < th.vanishing_ratio:
            oldest = max(1, (saliency.step + 1 - saliency.window_start) // 10)
            findings.append(
                Finding(
                    "vanishing_gradient", "info", "", [], ratio, th.vanishing_ratio,
                    f"the gradient of the output at step {saliency.step} reaching the oldest {oldest} "
                    f"input steps is {ratio:.1e} of its peak: inputs older than ~{saliency.horizon} "
                    "steps barely influence it",
                    FigureRef("saliency"),
                )
            )
    return findings


def dead_units_by_layer(analysis: Analysis) -> dict[str, list[int]]:
    """Dead units per layer prefix, as the analysis's dead-units findings name them (`lstmviz check`, timelines)."""
    dead: dict[str, list[int]] = {}
    for finding in analysis.findings:
        if finding.code == "dead_units":
            dead[finding.prefix] = sorted(set(dead.get(finding.prefix, [])) | {int(u) for u in finding.units})
    return dead
