"""Plain-language findings with thresholds: dead units, saturated gates, pinned forget gates, exploding cell
state, vanishing gradient over time; and the layers too short to judge.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lstmviz_cli.analysis.memory import vanishing_ratio
from lstmviz_cli.analysis.pooled import LayerCounts
from lstmviz_cli.analysis.records import Analysis, FigureRef, Finding, SaliencyResult, Saturation
from lstmviz_cli.analysis.rows import valid_rows
from lstmviz_cli.analysis.saturation import gate_saturation
from lstmviz_cli.analysis.stats import cell_quarters
from lstmviz_cli.analysis.thresholds import Thresholds
from lstmviz_cli.tracing.records import SERIES_NAMES, LayerTrace, Trace

SEVERITIES = ("info", "warning", "error")
# A memory-gate unit is pinned when it spends at least this share of its steps past the threshold
# ("95% of steps > 0.98"): a count, so that a corpus can pool it.
PINNED_SHARE = 0.95


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


def _cell_finding(layer: LayerTrace, th: Thresholds, figure: FigureRef, peak: np.ndarray | None = None) -> Finding | None:
    """|c| past cell_max: a warning when it is still growing (exploding), info when it stays bounded.

    `peak`: the largest |c| per unit when pooled over a corpus (default: over the layer's trace);
    growth is always read from batch element 0 (the sequence shown).
    """
    if peak is None:
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


def _h_span(layer: LayerTrace) -> np.ndarray | None:
    """max - min of h per unit over every valid step of the layer's trace (None: no h, no step)."""
    if "h" not in layer.series:
        return None
    rows = valid_rows(layer.series["h"])
    if not len(rows):
        return None
    span: np.ndarray = rows.max(axis=0) - rows.min(axis=0)
    return span


def _memory_gate_shares(rows: np.ndarray, th: Thresholds) -> tuple[np.ndarray, np.ndarray]:
    """Per unit, the share of steps the memory gate spends below saturation_low and above forget_pinned_high."""
    return (rows < th.saturation_low).mean(axis=0), (rows > th.forget_pinned_high).mean(axis=0)


def diagnose(
    trace: Trace,
    *,
    saturation: list[Saturation] | None = None,
    saliency: SaliencyResult | None = None,
    thresholds: Thresholds | None = None,
    pooled: Mapping[str, LayerCounts] | None = None,
) -> list[Finding]:
    """Plain findings with thresholds: dead units, saturated gates, pinned forget gates,
    exploding cell state, vanishing gradient over time. Deterministic order (trace order, then code).

    `pooled` (corpus mode, `analysis.pooled`): per layer prefix the counts pooled over every
    sequence of a corpus, used instead of the trace's own (with the pooled `saturation`).
    """
    th = thresholds or Thresholds()
    saturation = saturation if saturation is not None else gate_saturation(trace, th)
    by_key = {(s.prefix, s.series): s for s in saturation}
    findings: list[Finding] = []
    short = {} if pooled is not None else unjudged_layers(trace, th)
    if pooled is not None:
        short = {p: c.values for p, c in pooled.items() if c.values < th.min_steps}
    for layer in trace.layers:
        prefix = layer.prefix
        if prefix in short:  # too few values to tell a dead or saturated unit from a short sample
            continue
        counts = pooled.get(prefix) if pooled is not None else None
        activity = FigureRef("activity", prefix)
        span = counts.h_span if counts is not None else _h_span(layer)
        if span is not None:
            dead = np.flatnonzero(span < th.dead_range)
            finding = _fraction_finding(
                "dead_units", prefix, dead, len(span), th.dead_fraction,
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
                if counts is not None and counts.low_share is not None and counts.pinned_share is not None:
                    low_share, pinned_share = counts.low_share, counts.pinned_share
                else:
                    low_share, pinned_share = _memory_gate_shares(valid_rows(layer.series[name]), th)
                keeps = "cannot forget" if name == "f" else "never update their state"
                drops = "keep no long-term memory" if name == "f" else "overwrite their state every step"
                if not layer.keeps_when_high:  # z written the other way round: near 1 it replaces the state
                    keeps, drops = drops, keeps
                label = SERIES_NAMES[name]
                # For a GRU, z near 1 keeps the old state (like f near 1 in an LSTM).
                finding = _fraction_finding(
                    "forget_pinned_low", prefix, np.flatnonzero(low_share >= PINNED_SHARE), n_units,
                    th.forget_pinned_fraction,
                    f"have the {label} pinned near 0 (95% of steps < {th.saturation_low:g}): they {drops}",
                    saturation_figure,
                )
                if finding:
                    findings.append(finding)
                finding = _fraction_finding(
                    "forget_pinned_high", prefix, np.flatnonzero(pinned_share >= PINNED_SHARE), n_units,
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
            finding = _cell_finding(layer, th, activity, counts.c_peak if counts is not None else None)
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
